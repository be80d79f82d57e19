"""Type stubs for the on-disk format module (pastedb.core.format)."""

import mmap
import struct

Buffer = bytes | bytearray | memoryview | mmap.mmap

# pool file
BUF_SIZE: int
SUPER_SLOT: int
HEADER_SIZE: int
POOL_VERSION: int
SEG_SIZE: int
MAP_ALIGN: int
POOL_MAGIC: bytes
POOL_FILE: str
INDEX_FILE: str
LOCK_FILE: str
# log
REC_SIZE: int
CHUNK_SIZE: int
CHUNK_SLOTS: int
REC_PUT: int
REC_DEL: int
REC_LINK: int
F_BATCH: int
MAX_KEY_LEN: int
MAX_VALUE_LEN: int
# index file
PAGE_SIZE: int
PAGE_HDR: int
REF_SIZE: int
REF_SIZE_V1: int
PT_META: int
PT_LEAF: int
PT_BRANCH: int
PT_FREE: int
BTREE_VERSION: int
BTREE_VERSION_V1: int
BTREE_VERSION_V2: int
KEY_ESC: int
MAX_DATABASES: int
TREE_MAGIC: bytes

# superblock slot verdicts (names: SB_STATES)
SB_VALID: int
SB_EMPTY: int
SB_SHORT: int
SB_BAD_MAGIC: int
SB_BAD_CRC: int
SB_BAD_VERSION: int
SB_BAD_BUF_SIZE: int
SB_STATES: tuple[str, ...]
# log chunk verdicts
CK_OK: int
CK_IN_HEADER: int
CK_UNALIGNED: int
CK_BEYOND_EOF: int
# log slot verdicts (names: RV_NAMES)
RV_OK: int
RV_LINK: int
RV_EMPTY: int
RV_STALE: int
RV_BAD_LINK: int
RV_LINK_POS: int
RV_BAD_TYPE: int
RV_KEY_BOUNDS: int
RV_KEY_EOF: int
RV_BAD_CRC: int
RV_VALUE_BOUNDS: int
RV_BAD_VCRC: int
RV_NAMES: tuple[str, ...]

# layouts, built from the C structs
SB: struct.Struct
SB_FIELDS: tuple[str, ...]
SB_CRC_COVER: int
REC: struct.Struct
REC_FIELDS: tuple[str, ...]
PAGE_HEADER: struct.Struct
PAGE_HEADER_FIELDS: tuple[str, ...]
META: struct.Struct
META_FIELDS: tuple[str, ...]

def crc32c_is_hardware() -> bool: ...
def crc32c(data: Buffer, crc: int = 0) -> int: ...
def crc32c_many(items: list[bytes] | tuple[bytes, ...]) -> list[int]: ...
def record_crc_of(key: Buffer, rec: Buffer) -> int: ...
def seal_record(rec: bytearray, key: Buffer) -> None: ...
def bit_flip_candidates(msg: Buffer, want: int, region: int) -> list[tuple[int, int]]: ...
def superblock_slot(header: Buffer, index: int) -> tuple[str, dict[str, int | bytes]]: ...
def encode_superblock(seq: int, log_head_off: int, log_head_lsn: int, created_ns: int,
                      tree_lsn: int, tree_live: int, alloc_tail: int) -> tuple[int, bytes]: ...
def chunk_verdict(off: int, size: int) -> int: ...
def record_verdict(buf: Buffer, off: int, expect_lsn: int, last_slot: bool = False,
                   check_value: bool = True) -> int: ...
def record_plausible(buf: Buffer, off: int) -> bool: ...
def record_verifies(buf: Buffer, off: int) -> bool: ...
def walk_chunk(buf: Buffer, chunk: int, base_lsn: int,
               check_value: bool = True) -> tuple[bytes, int]: ...
def encode_chain(head: int, first_lsn: int, hint: int,
                 records: list[tuple[int, bytes, int, int, int, int, int]]
                 ) -> tuple[list[tuple[int, bytes]], list[int], int]: ...
def scan_runs(buf: Buffer, start: int,
              stop: int) -> tuple[list[tuple[int, int, int, int, int]], int]: ...
def verify_values(buf: Buffer, spans: list[tuple[int, int, int]]) -> list[bool]: ...
def page_verdict(page: Buffer, pgno: int, max_txn: int, want: int,
                 ref_size: int = ...) -> int: ...
def seal_page(page: bytearray) -> None: ...
