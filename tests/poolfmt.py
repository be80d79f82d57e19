"""The on-disk layout the damage tests poke at: one place for test_check.py,
test_recovery.py and tools/fuzz_recovery.py.  Every constant and struct
layout comes from the format module (pastedb.core.format, whose Python
layouts are built from the C structs); test_recovery.py's
test_layout_as_documented checks them against real files.

A database directory holds `pool` (superblock, log chunks, data) and `index`
(the persistent B-tree, key -> Ref into the pool).  The keys of a database are
the index's entries overlaid with the log records after the index's
applied_lsn; a checkpoint (the indexer thread, db.checkpoint(), close()) moves
the log head forward, so most tests that damage log records need records the
index does not hold yet: `unindexed()` makes such a database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from pastedb.core.format import (  # noqa: F401  (re-exported for the tests)
    CHUNK_SIZE,
    CHUNK_SLOTS,
    F_BATCH,
    HEADER_SIZE,
    INDEX_FILE,
    META,
    META_FIELDS,
    PAGE_HDR,
    PAGE_SIZE,
    POOL_MAGIC,
    POOL_VERSION,
    REC,
    REC_DEL,
    REC_FIELDS,
    REC_LINK,
    REC_PUT,
    REC_SIZE,
    SB,
    SB_FIELDS,
    SUPER_SLOT,
)


def superblock(data: bytes) -> dict:
    """The superblock slot in force: valid magic, the higher seq (the tests
    only damage slots on purpose, so the magic is enough to tell)."""
    best = None
    for slot in (0, 1):
        sb = dict(zip(SB_FIELDS, SB.unpack_from(data, slot * SUPER_SLOT), strict=True),
                  slot=slot)
        if sb["magic"] == POOL_MAGIC and (best is None or sb["seq"] > best["seq"]):
            best = sb
    assert best is not None, "no superblock slot has the magic"
    return best


def walk_chain(data: bytes, head: int, lsn: int) -> list[dict]:
    """Every record of the log starting at chunk `head` with `lsn`, following
    LINK records (included), up to the first slot without the next lsn."""
    out = []
    chunk, slot = head, 0
    while True:
        off = chunk + slot * REC_SIZE
        if off + REC_SIZE > len(data):
            return out
        rec = dict(zip(REC_FIELDS, REC.unpack_from(data, off), strict=True), off=off)
        if rec["lsn"] != lsn or rec["type"] not in (REC_PUT, REC_DEL, REC_LINK):
            return out
        out.append(rec)
        lsn += 1
        if rec["type"] == REC_LINK:
            chunk, slot = rec["voff"], 0
        else:
            slot += 1


def chain_from_head(data: bytes) -> list[dict]:
    """The records open() reads: from the log head the superblock names."""
    sb = superblock(data)
    return walk_chain(data, sb["log_head_off"], sb["log_head_lsn"])


def index_metas(path) -> list[dict]:
    """Both meta pages of an index file, as stored (no validation)."""
    data = Path(path).read_bytes()[:2 * PAGE_SIZE]
    return [dict(zip(META_FIELDS, META.unpack_from(data, n * PAGE_SIZE + PAGE_HDR), strict=True),
                 page=n) for n in (0, 1)]


def index_items(db_path) -> list[tuple[bytes, tuple]]:
    """(key, Ref) of every entry of the index file's last commit; Ref =
    (koff, voff, vlen, lsn, klen, vcrc, expire_ms)."""
    from pastedb.core.btree_testing import BTreeTester
    with BTreeTester(os.path.join(db_path, INDEX_FILE), create=False) as t:
        return t.items()


def index_state(db_path) -> dict:
    from pastedb.core.btree_testing import BTreeTester
    with BTreeTester(os.path.join(db_path, INDEX_FILE), create=False) as t:
        return {"applied_lsn": t.applied_lsn, "count": t.count, "txn": t.txn,
                "check": t.check(), "pages": t.tree_pages()}


@contextlib.contextmanager
def unindexed(db_path, **options):
    """Open `db_path` (persist="none") with checkpoints turned off, yield the
    DB, and on leaving keep the files as a kill -9 at that moment leaves them
    (every write is in the page cache with persist="none"; close() would
    checkpoint, so the files are copied first and put back after it).  The
    writes made inside the block are then log records after the index's
    applied_lsn, which the next open replays."""
    db_path = Path(db_path)
    options.setdefault("persist", "none")
    db = pastedb_open(db_path, **options)
    try:
        db._checkpoint_policy(every=1 << 62, interval=10**6)
        yield db
        db.sync()
        keep = db_path.parent / (db_path.name + ".killed")
        if keep.exists():
            shutil.rmtree(keep)
        keep.mkdir()
        for name in ("pool", INDEX_FILE):
            shutil.copyfile(db_path / name, keep / name)
    finally:
        db.close()
    for name in ("pool", INDEX_FILE):
        os.replace(keep / name, db_path / name)
    keep.rmdir()


def settle(db_path) -> None:
    """Checkpoint everything into the index (open and close), then put the
    superblock back as it was: the state a crash leaves between the index
    commit and the superblock write -- the old log head, and an index that
    covers every record from it on (open() verifies them and skips them)."""
    pool = Path(db_path) / "pool"
    with open(pool, "rb") as f:
        header = f.read(HEADER_SIZE)
    with pastedb_open(db_path, persist="none"):
        pass
    overwrite(pool, 0, header)


@contextlib.contextmanager
def session(db_path, where="indexed"):
    """A writing session, killed (unindexed); where="indexed": then settled,
    so the index covers the records while they stay in the log open() reads."""
    with unindexed(db_path) as db:
        yield db
    if where == "indexed":
        settle(db_path)


def pastedb_open(path, **options):
    import pastedb
    return pastedb.open(path, **options)


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
