"""The on-disk layout the damage tests poke at, read with struct: one copy for
test_check.py and test_recovery.py.  Mirrors pool.pxd (Superblock) and
reflog.pxd (LogRecord); test_recovery.py's test_layout_as_documented checks
it against real files."""

from __future__ import annotations

import struct

HEADER_SIZE = 4096
SUPER_SLOT = 2048
REC_SIZE = 64
CHUNK_SIZE = 262144
CHUNK_SLOTS = 4096                                # records per log chunk
SB = struct.Struct("<8sIIQQQQQI")                 # pool.pxd: Superblock
REC = struct.Struct("<IBBHIIQQQQQQ")              # reflog.pxd: LogRecord
REC_FIELDS = ("crc", "type", "flags", "klen", "vcrc", "batch_left", "lsn", "koff", "voff",
              "vlen", "durable_hint", "reserved")
REC_PUT, REC_DEL, REC_LINK, F_BATCH = 1, 2, 3, 1


def walk_chain(data: bytes, head: int, lsn: int) -> list[dict]:
    """Every record of the log starting at chunk `head` with `lsn`, following
    LINK records (included), up to the first slot without the next lsn."""
    out = []
    chunk, slot = head, 0
    while True:
        off = chunk + slot * REC_SIZE
        rec = dict(zip(REC_FIELDS, REC.unpack_from(data, off), strict=True), off=off)
        if rec["lsn"] != lsn or rec["type"] not in (REC_PUT, REC_DEL, REC_LINK):
            return out
        out.append(rec)
        lsn += 1
        if rec["type"] == REC_LINK:
            chunk, slot = rec["voff"], 0
        else:
            slot += 1


def flip(path, offset, mask=0x01):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def overwrite(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
