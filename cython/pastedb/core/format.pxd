# format.pxd -- the on-disk format of a pastedb database, in one place.
#
# Every struct, magic, version and constant of the two files, their checksum
# (CRC32C), and the code that encodes and verifies them.  The engine, the log,
# the pool and the B-tree cimport it; pastedb-check, the tests and the tools
# use its Python edge (format.pyi).  Nothing else knows a byte offset.
#
# A database directory holds
#   pool    superblock, log chunks, keys and values (below)
#   index   the persistent B-tree, key -> Ref into the pool (further below)
#   LOCK    an fcntl record lock: one writer process
# All integers are little-endian (native on x86-64 and aarch64).
#
# ---------------------------------------------------------------- pool file
#   [0, 4096)        two superblock slots of SUPER_SLOT bytes (Superblock)
#   [4096, size)     buffers of BUF_SIZE bytes, handed out as extents of
#                    contiguous buffers: log chunks and data extents (keys
#                    and values, packed back to back).  Space is reclaimed in
#                    segments of SEG_SIZE bytes; log chunks are carved four to
#                    a segment.
#
# Superblock: the slot with the higher `seq` whose crc verifies wins; an
# update writes slot seq % 2 (the other one), so a torn slot write loses
# nothing.  Version 1 (before the index checkpoint fields) had its crc at
# byte 56; a slot that verifies as version 1 is an old database, not damage.
#
# ---------------------------------------------------------------- the log
# The log never holds a value: each record names where a key and its value
# already lie in the pool.  Records are REC_SIZE bytes (one cache line) in log
# chunks of CHUNK_SIZE bytes; the last slot of every chunk is a LINK record
# naming the next chunk (a checkpoint may also end a chunk early with a LINK,
# so that the new log head is a fresh chunk).  The superblock names the first
# chunk and the LSN it starts at; replay follows the links.
#
# A record is valid when (rec_check tests it in this order)
#   - its lsn is exactly the next expected one (so a stale record left in a
#     reused chunk, or a zeroed slot, ends the log);
#   - a LINK: klen 0, and it names a CHUNK_SIZE chunk inside the file;
#   - otherwise it is a PUT or DEL, not in a chunk's last slot, its key inside
#     the file and at most MAX_KEY_LEN bytes;
#   - crc == crc32c(key bytes || record bytes 4..63);
#   - a PUT's value lies inside the file, at most MAX_VALUE_LEN bytes, and
#     vcrc == crc32c(value bytes): the checksum covers record, key and value.
# expire_ms (a PUT's absolute expiry time, wall-clock ms since the Unix
# epoch, 0 = none; DEL and LINK: 0) sits where version-1 databases wrote a
# zero `reserved` field, under the same crc: old logs read as "no expiry".
# An EXPIRE or PERSIST is a PUT naming the same key and value bytes with the
# new expire_ms (no value is copied).
# Records of an all-or-nothing batch carry F_BATCH and count down batch_left
# to 0; an incomplete batch at the end of the log never happened.
#
# Torn tail versus damage: every record carries durable_hint, the durable_lsn
# known when it was appended.  If replay meets an invalid record at lsn N and
# a later record in the chunk sits at its exact position with durable_hint >=
# N, record N had been acknowledged: that is damage, not a torn tail
# (walk_acknowledged).
#
# ---------------------------------------------------------------- index file
# A sequence of PAGE_SIZE pages; page n lives at byte n * PAGE_SIZE.
#   page 0, page 1   meta pages (PT_META).  Transaction T writes page T & 1.
#                    The valid one (checksum, magic, version, sane fields)
#                    with the higher txn wins; neither valid: ST_CORRUPT.
#   page 2 ...       leaf, branch and free-list pages, in any order.
# Every page starts with a PageHeader; `crc` is crc32c of bytes [4, PAGE_SIZE)
# of the page.  A page is also checked for its own page number (a misdirected
# write), its type and level, txn <= the snapshot's txn, and its slot layout
# (page_verify), before anything in it is used.
# Leaf and branch pages are slotted: after the header an array of `count` u16
# slot offsets, in key order; the cells they name are packed downward from
# the page end.
#   leaf cell    u16 klen | key bytes | Ref (REF_SIZE bytes, index.pxd's Ref)
#                (version 1: REF_SIZE_V1 bytes, the Ref up to vcrc: no expiry)
#   branch cell  u16 klen | key bytes | u32 child
# Keys compare as memcmp, the shorter first on a common prefix (key_cmp).
# Free-list pages (PT_FREE): header (count = entries, link = next page of the
# chain), u64 free_txn at byte 32, then `count` u32 page numbers.
# (btree.pxd describes how the tree uses these pages: fill, splits, commit order.)

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

# ---------------------------------------------------------------- constants
cdef enum:
    # pool file
    BUF_SIZE = 2048                   # one packet buffer (netmap's size); extents align to it
    SUPER_SLOT = 2048                 # bytes per superblock slot
    HEADER_SIZE = 4096                # both slots
    POOL_VERSION = 2                  # 2: index checkpoint fields (tree_lsn, tree_live, alloc_tail)
    SB_V1_CRC_AT = 56                 # version 1: where its crc was (it covered [0, 56))
    SEG_SHIFT = 20                    # space is reclaimed in segments of 1 MiB
    SEG_SIZE = 1048576
    MAP_ALIGN = 2097152               # the file grows (and is mapped) in steps of 2 MiB
    # log
    REC_SIZE = 64
    CHUNK_SIZE = 262144               # 4096 record slots
    CHUNK_SLOTS = 4096
    REC_PUT = 1
    REC_DEL = 2
    REC_LINK = 3
    F_BATCH = 1                       # part of an all-or-nothing batch
    MAX_KEY_LEN = 1024
    MAX_VALUE_LEN = 536870912         # 512 MiB, as Redis's proto-max-bulk-len
    # index file
    PAGE_SIZE = 4096
    PAGE_HDR = 32                     # sizeof(PageHeader)
    PAGE_CAP = 4064                   # PAGE_SIZE - PAGE_HDR: bytes for slots and cells
    REF_SIZE = 48                     # packed Ref in a leaf cell (index.pxd's Ref)
    REF_SIZE_V1 = 40                  # BTREE_VERSION 1: the Ref without expire_ms
    MAX_DEPTH = 32                    # deeper is damage (a cycle)
    PT_META = 1
    PT_LEAF = 2
    PT_BRANCH = 3
    PT_FREE = 4
    META_PAGES = 2                    # pages 0 and 1
    FREE_HDR = 40                     # header + u64 free_txn
    FREE_PER_PAGE = 1014              # (PAGE_SIZE - FREE_HDR) / 4
    BTREE_VERSION = 3                 # 3: keys carry their database (the keyspace encoding below)
    BTREE_VERSION_V2 = 2              # expire_ms in the leaf Ref, one keyspace; the engine
                                      # moves it to 3 on a writer's open (engine.pyx _keyspace)
    BTREE_VERSION_V1 = 1              # opens read-only; the engine converts it (engine.pyx)
    # keyspace (numbered databases)
    KEY_ESC = 0xFF                    # first byte of every key stored under an explicit database
    MAX_DATABASES = 256               # databases 0..255

# Superblock slot verdicts (sb_check).
cdef enum:
    SB_VALID = 0
    SB_EMPTY = 1                      # all zeros: never written
    SB_SHORT = 2                      # the file ends inside the slot
    SB_BAD_MAGIC = 3
    SB_BAD_CRC = 4
    SB_BAD_VERSION = 5                # verifies, but another format version
    SB_BAD_BUF_SIZE = 6

# Log chunk verdicts (chunk_check): can `off` be a log chunk of this file?
cdef enum:
    CK_OK = 0
    CK_IN_HEADER = 1
    CK_UNALIGNED = 2
    CK_BEYOND_EOF = 3

# Log slot verdicts (rec_check), in the order they are tested.
cdef enum:
    RV_OK = 0                         # a valid PUT or DEL
    RV_LINK = 1                       # a valid LINK
    RV_EMPTY = 2                      # not the expected lsn, all 64 bytes zero
    RV_STALE = 3                      # not the expected lsn
    RV_BAD_LINK = 4                   # LINK fields impossible
    RV_LINK_POS = 5                   # a PUT/DEL in a chunk's last slot
    RV_BAD_TYPE = 6
    RV_KEY_BOUNDS = 7                 # key inside the header, or too long
    RV_KEY_EOF = 8                    # key (partly) beyond the end of the file
    RV_BAD_CRC = 9                    # crc32c(key || record[4:64]) mismatch
    RV_VALUE_BOUNDS = 10              # value too long or (partly) beyond the end of the file
    RV_BAD_VCRC = 11                  # the value fails its crc
    RV_CHUNK_END = 12                 # walk_step, tolerant: the chunk ended without a LINK

# Log walk policies (walk_start).
cdef enum:
    WALK_STRICT = 0                   # open(): stop at the first invalid slot
    WALK_TOLERANT = 1                 # the checker: classify every slot of a chunk up to its LINK

# B-tree page verdicts (page_verify).
cdef enum:
    PV_OK = 0
    PV_CRC = 1
    PV_PGNO = 2
    PV_TYPE = 3
    PV_LEVEL = 4
    PV_TXN = 5
    PV_EMPTY = 6
    PV_LAYOUT = 7
    PV_ORDER = 8

# The crc register a chain of pdb updates starts from (crc32c_update).
cdef extern from *:
    """
    #define PDB_CRC_START 0xFFFFFFFFu
    #define PDB_META_MAX_PAGES (((uint64_t)1 << 40) / 4096)
    """
    const uint32_t CRC_START "PDB_CRC_START"
    # Page numbers are u32; the tree never reserves more than 1 TiB.
    const uint64_t META_MAX_PAGES "PDB_META_MAX_PAGES"


# ---------------------------------------------------------------- structs

# One superblock slot (at byte 0 or SUPER_SLOT of the pool file).
cdef packed struct Superblock:
    char magic[8]                     # b"PASTEDB\0"
    uint32_t version                  # POOL_VERSION
    uint32_t buf_size                 # BUF_SIZE at creation
    uint64_t seq                      # bumped on every superblock write; written to slot seq % 2
    uint64_t log_head_off             # first log chunk to replay (byte offset)
    uint64_t log_head_size            # its size in bytes (CHUNK_SIZE)
    uint64_t log_head_lsn             # LSN of the first record in it
    uint64_t created_ns               # creation time (informational)
    uint64_t tree_lsn                 # applied_lsn of the index checkpoint this slot goes with
    uint64_t tree_live                # key + value bytes of the live entries in that checkpoint
    uint64_t alloc_tail               # allocator high-water mark when the checkpoint was cut
    uint32_t crc                      # crc32c of the slot bytes before this field


# One log record slot.
cdef packed struct LogRecord:
    uint32_t crc                      # see above; holds the key's partial crc before append
    uint8_t type                      # REC_PUT / REC_DEL / REC_LINK
    uint8_t flags                     # F_BATCH
    uint16_t klen                     # key length
    uint32_t vcrc                     # crc32c of the value (PUT)
    uint32_t batch_left               # records of the batch still to come after this one
    uint64_t lsn                      # log sequence number, consecutive from 1
    uint64_t koff                     # key offset in the pool file
    uint64_t voff                     # value offset (LINK: next chunk offset)
    uint64_t vlen                     # value length (LINK: next chunk size)
    uint64_t durable_hint             # durable_lsn when this record was appended
    uint64_t expire_ms                # PUT: absolute expiry, ms since the Unix epoch; 0 none


# The header of every index page.
cdef packed struct PageHeader:
    uint32_t crc                      # crc32c of page bytes [4, PAGE_SIZE)
    uint32_t pgno                     # this page's number
    uint64_t txn                      # transaction that wrote the page
    uint8_t type                      # PT_META / PT_LEAF / PT_BRANCH / PT_FREE
    uint8_t level                     # 0 for leaves; branch: height above the leaves
    uint16_t count                    # slots (leaf/branch) or page numbers (free list)
    uint16_t upper                    # offset of the lowest cell byte (leaf/branch)
    uint16_t used                     # bytes in slots + live cells (the fill measure)
    uint32_t link                     # branch: child 0; free list: next chain page
    uint32_t reserved                 # zero


# The body of a meta page, at byte PAGE_HDR (header type PT_META, header txn
# == txn, header pgno == 0 or 1).
cdef packed struct MetaBody:
    char magic[8]                     # b"PDBTREE\0"
    uint32_t version                  # BTREE_VERSION
    uint32_t page_size                # PAGE_SIZE
    uint64_t txn                      # transaction id of this commit (0 at creation)
    uint64_t page_count               # high-water mark: pages [0, page_count) are in use or free
    uint64_t entries                  # keys in the tree
    uint64_t applied_lsn              # caller's opaque log position this commit covers
    uint64_t free_entries             # page numbers held by the free-list chain
    uint32_t root                     # root page, 0 when the tree is empty
    uint32_t depth                    # levels (0 empty, 1 a single leaf)
    uint32_t free_head                # first free-list page, 0 when none
    uint32_t reserved                 # zero


# A walk along a log chain (walk_start / walk_step).
cdef struct LogWalk:
    const char *base                  # the mapped pool file
    uint64_t size                     # its size in bytes
    uint64_t chunk                    # chunk the next step reads in
    uint64_t slot                     # slot the next step reads
    uint64_t lsn                      # the lsn that slot must carry
    int policy                        # WALK_STRICT / WALK_TOLERANT
    int check_value                   # verify PUT values' crc too


# ---------------------------------------------------------------- CRC32C
# crc32c_update takes and returns the internal (pre-inverted) register: start
# from CRC_START, finish with crc32c_final.  Never fail.
cdef uint32_t crc32c_update(uint32_t state, const void *p, size_t n) noexcept nogil
cdef uint32_t crc32c_buf(const void *p, size_t n) noexcept nogil
cdef int crc32c_is_hw() noexcept nogil

cdef inline uint32_t crc32c_final(uint32_t state) noexcept nogil:
    return state ^ CRC_START


# [off, off + n) is not inside [HEADER_SIZE, size), the part of a pool file
# of `size` bytes that keys and values may occupy (overflow-safe).
cdef inline int span_outside(uint64_t off, uint64_t n, uint64_t size) noexcept nogil:
    return off < HEADER_SIZE or off > size or n > size - off


# A value's bytes at voff of a pool file (base, size bytes) may be returned:
# at most MAX_VALUE_LEN, inside the file, matching the crc their record carried.
cdef inline int value_verifies(const char *base, uint64_t size, uint64_t voff, uint64_t vlen,
                               uint32_t vcrc) noexcept nogil:
    return (vlen <= MAX_VALUE_LEN and not span_outside(voff, vlen, size)
            and crc32c_buf(base + voff, vlen) == vcrc)


# ---------------------------------------------------------------- superblock
# The one owner of the superblock bytes.  sb_check: an SB_* verdict for the
# slot at p, of which `avail` bytes exist in the file.
cdef int sb_check(const char *p, uint64_t avail) noexcept nogil
# The slot in force of the header at p (`avail` bytes of the file): 0 and
# *out (and *slot, may be NULL), ST_VERSION when a slot of another version
# verifies, ST_CORRUPT when no slot does.
cdef int sb_read(const char *p, uint64_t avail, Superblock *out, int *slot) noexcept nogil
# Seal sb (magic, version, buf_size, crc) and lay out the SUPER_SLOT bytes of
# its slot in `out`; returns the slot's file offset ((seq % 2) * SUPER_SLOT).
# The caller writes them and makes them durable.  Never fails.
cdef uint64_t sb_encode(Superblock *sb, char *out) noexcept nogil


# ---------------------------------------------------------------- log records
# CK_* verdict: can a CHUNK_SIZE log chunk start at off in a file of `size` bytes?
cdef int chunk_check(uint64_t off, uint64_t size) noexcept nogil
# The crc state after the key bytes: what a staged record's crc holds until
# rec_seal.
cdef uint32_t key_crc_state(const char *key, uint32_t klen) noexcept nogil
# crc32c_buf(key || record bytes 4..63), from the key's state.
cdef uint32_t record_crc(uint32_t key_state, const LogRecord *rec) noexcept nogil
# RV_* verdict for the record at rec in the file mapped at base (size bytes),
# expected to carry expect_lsn; last_slot: it is in a chunk's last slot.
cdef int rec_check(const char *base, uint64_t size, const LogRecord *rec, uint64_t expect_lsn,
                   int last_slot, int check_value) noexcept nogil
# Could the 64 bytes at rec be a record at all (the checker's file scan)?  1/0.
cdef int rec_plausible(const LogRecord *rec, uint64_t size) noexcept nogil

# The one log walker.  walk_start: 0, or ST_CORRUPT when the head cannot be a
# chunk.  walk_step: the RV_* verdict of the slot at (chunk, slot), *rec set
# to it (NULL for RV_CHUNK_END).  RV_OK moves to the next slot, RV_LINK to the
# chunk it names.  An invalid slot: WALK_STRICT stays on it (it is where the
# log ends); WALK_TOLERANT moves on to the next slot, and returns RV_CHUNK_END
# (staying put) once the chunk has no slot left.
cdef int walk_start(LogWalk *w, const char *base, uint64_t size, uint64_t head_off,
                    uint64_t head_lsn, int policy, int check_value) noexcept nogil
cdef int walk_step(LogWalk *w, const LogRecord **rec) noexcept nogil
# After a strict walk stopped at an invalid slot: 1 when a record had been
# acknowledged at or after it (damage, not a torn tail), else 0; *torn gets 1
# when the slot holds anything (not all zeros).  Looks at the rest of the chunk and, for a broken LINK
# slot, at the first slots of every chunk-aligned offset in the file.
cdef int walk_acknowledged(const LogWalk *w, int *torn) noexcept nogil


# ---------------------------------------------------------------- index pages
cdef inline uint16_t ld16(const char *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline uint32_t ld32(const char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline PageHeader *page_hdr(const char *p) noexcept nogil:
    return <PageHeader *>p


cdef inline uint16_t slot_off(const char *p, int i) noexcept nogil:
    return ld16(p + PAGE_HDR + 2 * i)


cdef inline int key_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen) noexcept nogil:
    # memcmp order, shorter first on a common prefix (index.key_compare's order).
    cdef uint32_t n = alen if alen < blen else blen
    cdef int c = 0
    if n:
        c = memcmp(a, b, n)
    if c != 0:
        return c
    return (alen > blen) - (alen < blen)


# Set the page's crc (bytes [4, PAGE_SIZE)).
cdef void page_seal(char *p) noexcept nogil
# PV_* verdict: everything page pgno must satisfy, as a `want` page (PT_*)
# reached from a snapshot of txn max_txn, before any byte of it is trusted;
# after PV_OK every slot, key length and cell lies inside the page.
# ref_size: REF_SIZE, or REF_SIZE_V1 for a version-1 tree.
cdef int page_verify(const char *p, uint32_t pgno, uint64_t max_txn, int want,
                     uint32_t ref_size) noexcept nogil
# 1 when the page is a valid meta page for `slot` (*out filled; out.version
# BTREE_VERSION, BTREE_VERSION_V2 or BTREE_VERSION_V1), 0 when not, ST_VERSION when it
# verifies but was written by another format version.
cdef int meta_read(const char *p, uint32_t slot, MetaBody *out) noexcept nogil
# ---------------------------------------------------------------- keyspace
# Numbered databases share one log, one pool and one tree.  From
# BTREE_VERSION 3 on, the key stored for user key k of database n is
#     k                      when n == 0 and k does not start with byte 0xFF,
#     0xFF, n, k             otherwise (so 0xFF, 0x00, k for such a key of database 0).
# Database 0 is then exactly the stored keys below 0xFF 0x01 and database n
# (n >= 1) those in [0xFF n, 0xFF n+1) (255: from 0xFF 0xFF on), each in its
# users' byte order; the common keys of database 0 are stored as given.  A
# key starting with 0xFF, or of a database other than 0, is limited to
# MAX_KEY_LEN - 2 bytes.  A version-2 tree holds one keyspace, its keys as
# given (db_of_key's answer is meaningless for it).
cdef inline int db_of_key(const char *k, uint32_t klen) noexcept nogil:
    """The database a stored key (version 3) belongs to."""
    if klen >= 2 and <unsigned char>k[0] == KEY_ESC:
        return <unsigned char>k[1]
    return 0
cdef inline uint32_t key_prefix_len(const char *k, uint32_t klen) noexcept nogil:
    """Bytes of the database prefix in front of a stored key's user key (0 or 2)."""
    return 2 if klen >= 2 and <unsigned char>k[0] == KEY_ESC else 0
# The leaf Ref size of a tree of this (valid) version.
cdef inline uint32_t ref_size_of(uint32_t version) noexcept nogil:
    return REF_SIZE_V1 if version == BTREE_VERSION_V1 else REF_SIZE
# Lay out meta page `slot` for m (magic and page size set here; version
# m.version, or BTREE_VERSION when 0).
cdef void meta_build(char *p, uint32_t slot, MetaBody *m) noexcept nogil


# ---------------------------------------------------------------- reader table
# READERS (readers.pxd owns it): which other processes read the database, so
# the writer never frees or reuses what they can still reach.  Not durable
# state: a shared mapping of RDR_FILE_SIZE bytes, never synced; every writer
# open rewrites the header.
#   [0, 64)              ReaderHeader
#   [64, RDR_FILE_SIZE)  RDR_SLOTS ReaderSlot
# A reader owns slot i while it holds a POSIX write lock on byte
# RDR_LOCK_BASE + i of the file (past its end; a lock needs no bytes).  The
# kernel drops the lock when the process dies, so a crashed reader's slot
# is stale at once and never pins anything (LMDB keeps pids and probes
# them; a lock cannot be fooled by a reused pid).  All fields are int64,
# read and written with sequentially consistent atomics.
cdef extern from *:
    """
    #define PDB_RDR_MAGIC 0x0044414552424450LL   /* "PDBREAD" + NUL, little-endian */
    """
    const int64_t RDR_MAGIC "PDB_RDR_MAGIC"

cdef enum:
    RDR_VERSION = 1
    RDR_FILE_SIZE = 4096
    RDR_SLOTS = 126                   # (RDR_FILE_SIZE - 64) / 32
    RDR_LOCK_BASE = 1048576           # slot i's lock byte

cdef struct ReaderHeader:
    int64_t magic                     # RDR_MAGIC
    int64_t version                   # RDR_VERSION
    int64_t writer_pid                # the writer's pid; 0 when none has the database open
    int64_t writer_epoch              # bumped by every writer open and close
    int64_t durable_lsn               # every log record <= this is durable (the writer's)
    int64_t tree_txn                  # the newest tree commit the writer has published
    int64_t reserved[2]

cdef struct ReaderSlot:
    int64_t pid                       # the owner's pid (informative; the lock decides)
    int64_t txn                       # tree commit it reads; 0: opening (pins every page)
    int64_t lsn                       # log position its state is at; 0: opening (pins all)
    int64_t reserved
