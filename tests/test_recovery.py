"""Recovery from torn tails and damage, by editing the real files.

The file layout is read from the formats documented in pool.pxd (superblock
slots), reflog.pxd (64-byte records) and btree.pxd (the index file) -- see
poolfmt.py -- so the tests find the log wherever the allocator put it.  The
rule checked everywhere: after damage, open either raises CorruptionError
naming the damaged file, or every key it returns has exactly the bytes last
written -- never wrong bytes.  A torn tail (bytes after the last acknowledged
record) is cut back silently except for a note, and everything acknowledged
is intact.

A clean close checkpoints every write into the index file and moves the log
head on; open() replays only the records after the index's applied_lsn (but
still verifies every record from the head).  Tests run in two variants (the
`where` fixture): "log-only" (poolfmt.unindexed(): the files as kill -9 leaves
them, with records the index does not hold yet) and "indexed"
(poolfmt.settle(): the index holds every record, and the superblock still
names the old log head -- a crash between the index commit and the
superblock write -- so open() reads and verifies records the index covers).
Records behind the log head (a completed checkpoint) get their own tests.
"""

from __future__ import annotations

import os
import random
import shutil
import struct

import pytest
from poolfmt import (  # noqa: E402,F401  (the layout, shared with test_check.py)
    CHUNK_SLOTS,
    F_BATCH,
    HEADER_SIZE,
    REC,
    REC_DEL,
    REC_FIELDS,
    REC_LINK,
    REC_PUT,
    REC_SIZE,
    SB,
    SUPER_SLOT,
    flip,
    index_items,
    index_state,
    overwrite,
    session,
    superblock,
    unindexed,
    walk_chain,
)

import pastedb


def pool_file(db_path):
    return db_path / "pool"


def index_file(db_path):
    return db_path / "index"


def log_records(data: bytes) -> list[dict]:
    """The records of the first log chunk, in order, up to the first slot that
    does not carry the next lsn (enough for these tests' small logs)."""
    sb = superblock(data)
    out = []
    off, lsn = sb["log_head_off"], sb["log_head_lsn"]
    while True:
        rec = dict(zip(REC_FIELDS, REC.unpack_from(data, off), strict=True), off=off)
        if rec["lsn"] != lsn or rec["type"] not in (REC_PUT, REC_DEL):
            return out
        out.append(rec)
        off += REC_SIZE
        lsn += 1


def log_chain(data: bytes) -> list[dict]:
    """Every record of the log, following LINK records from chunk to chunk
    (LINK records included, type REC_LINK)."""
    sb = superblock(data)
    return walk_chain(data, sb["log_head_off"], sb["log_head_lsn"])


def log_puts(data: bytes) -> list[dict]:
    return [r for r in log_chain(data) if r["type"] == REC_PUT]


def log_end(data: bytes) -> tuple[int, int]:
    """(byte offset, LSN) of the slot after the last record of the log in
    force (after a checkpoint's LINK: the first slot of the fresh chunk)."""
    last = log_chain(data)[-1]
    if last["type"] == REC_LINK:
        return last["voff"], last["lsn"] + 1
    return last["off"] + REC_SIZE, last["lsn"] + 1


def closed(db_path, n, value=lambda i: b"value %05d" % i, key=lambda i: b"k%05d" % i):
    """n puts, closed cleanly (checkpoints only at the close): the log head
    moved past every record, which only the index names now."""
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        db._checkpoint_policy(every=1 << 62, interval=10**6)
        for i in range(n):
            db[key(i)] = expect[key(i)] = value(i)
    return expect


@pytest.fixture(params=["indexed", "log-only"])
def where(request) -> str:
    return request.param


def build(db_path, n=20, seed=1, where="indexed"):
    """n acknowledged puts of distinct keys, one record each; returns the model."""
    rng = random.Random(seed)
    expect = {}
    with session(db_path, where) as db:
        for i in range(n):
            k = b"key%03d" % i
            v = rng.randbytes(rng.randrange(8, 200))
            db[k] = v
            expect[k] = v
        assert db.stats()["log_next_lsn"] == n + 1
    st = index_state(db_path)
    assert (st["applied_lsn"] >= n) if where == "indexed" else (st["applied_lsn"] == 0)
    return expect


def open_or_corruption(db_path, damaged="pool"):
    """Open and read everything, or return the CorruptionError (checked to
    name the damaged file and the repair tool)."""
    path = pool_file(db_path) if damaged == "pool" else index_file(db_path)
    try:
        with pastedb.open(db_path, create=False) as db:
            items = dict(db.items())
            for k, v in items.items():
                assert db[k] == v
            return items
    except pastedb.CorruptionError as e:
        assert isinstance(e, pastedb.Error)
        assert str(path) in str(e)
        assert e.path == str(path)
        assert "pastedb-check --repair" in str(e)
        return e


def assert_never_wrong(result, expect, may_lose=()):
    """Either open refused (CorruptionError), or it returned exactly the
    acknowledged bytes of every key -- none missing except those in
    `may_lose` (what the damage itself took), none foreign, none altered."""
    if isinstance(result, pastedb.CorruptionError):
        return
    for k, v in result.items():
        assert k in expect, f"a key nobody wrote: {k!r}"
        assert v == expect[k], f"{k!r} came back with different bytes"
    missing = sorted(set(expect) - set(result) - set(may_lose))
    assert not missing, (f"open succeeded but lost {len(missing)} acknowledged keys, "
                         f"e.g. {missing[:3]!r}")


# ------------------------------------------------------------------ the layout itself


def test_layout_as_documented(db_path):
    from pastedb.core.format import crc32c

    rng = random.Random(1)
    expect = closed(db_path, 5, value=lambda i: rng.randbytes(rng.randrange(8, 200)),
                    key=lambda i: b"key%03d" % i)
    data = pool_file(db_path).read_bytes()
    sb = superblock(data)
    assert sb["version"] == 2 and sb["buf_size"] == 2048
    assert sb["log_head_off"] >= HEADER_SIZE and sb["log_head_size"] == 256 << 10
    assert sb["crc"] == crc32c(data[sb["slot"] * SUPER_SLOT:sb["slot"] * SUPER_SLOT + 80])
    # the close checkpointed the five writes: the superblock goes with an
    # index commit that covers them (and a LINK the checkpoint may have
    # ended the chunk with), and names a log head at or after them
    assert sb["seq"] == 2 and sb["tree_lsn"] >= 5 and 1 <= sb["log_head_lsn"] <= sb["tree_lsn"] + 1
    assert sb["tree_live"] == sum(len(k) + len(v) for k, v in expect.items())
    # the log the database started with: the first chunk, after the header
    chain = walk_chain(data, HEADER_SIZE, 1)
    recs = [r for r in chain if r["type"] == REC_PUT]
    assert [r["lsn"] for r in recs] == [1, 2, 3, 4, 5]
    assert all(r["type"] == REC_LINK for r in chain[5:])
    for r, (k, v) in zip(recs, expect.items(), strict=True):
        assert r["type"] == REC_PUT
        assert data[r["koff"]:r["koff"] + r["klen"]] == k
        assert data[r["voff"]:r["voff"] + r["vlen"]] == v
        assert crc32c(v) == r["vcrc"]
        assert max(r["koff"] + r["klen"], r["voff"] + r["vlen"]) <= sb["alloc_tail"]
    # the slot after the last record: empty, or the checkpoint's LINK
    tail = recs[-1]["off"] + REC_SIZE
    assert data[tail:tail + REC_SIZE] == bytes(REC_SIZE) or chain[5]["off"] == tail
    # the index file: applied_lsn as the superblock says, one Ref per key,
    # naming the records' bytes
    st = index_state(db_path)
    assert st["applied_lsn"] == sb["tree_lsn"] and st["count"] == 5 and st["check"] == []
    items = index_items(db_path)
    assert [k for k, _ in items] == sorted(expect)
    by_key = {data[r["koff"]:r["koff"] + r["klen"]]: r for r in recs}
    for k, (koff, voff, vlen, lsn, klen, vcrc, _expire) in items:
        r = by_key[k]
        assert (koff, voff, vlen, lsn, klen, vcrc) == \
            (r["koff"], r["voff"], r["vlen"], r["lsn"], r["klen"], r["vcrc"])
    # the other slot: the creation's (seq 1, no checkpoint yet)
    other = SB.unpack_from(data, (1 - sb["slot"]) * SUPER_SLOT)
    assert other[3] == 1 and other[8] == 0 and other[6] == 1


# ------------------------------------------------------------------ torn tails


def test_garbage_appended_to_the_pool_file(db_path):
    expect = build(db_path)
    size = os.path.getsize(pool_file(db_path))
    with open(pool_file(db_path), "ab") as f:
        f.write(random.Random(2).randbytes(5000))
    with pastedb.open(db_path, create=False) as db:
        assert dict(db.items()) == expect
        db[b"after"] = b"garbage"
        expect[b"after"] = b"garbage"
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
    assert os.path.getsize(pool_file(db_path)) >= size


@pytest.mark.parametrize("junk", ["random", "ff", "half-record"])
def test_garbage_after_the_last_record(db_path, junk, where):
    expect = build(db_path, where=where)
    path = pool_file(db_path)
    data = path.read_bytes()
    last = log_puts(data)[-1]
    tail, tail_lsn = log_end(data)
    if junk == "random":
        bad = random.Random(3).randbytes(3 * REC_SIZE)
    elif junk == "ff":
        bad = b"\xff" * REC_SIZE
    else:
        # the next record half written: the first 32 bytes of a plausible one
        rec = bytearray(data[last["off"]:last["off"] + REC_SIZE])
        struct.pack_into("<Q", rec, 16, tail_lsn)
        bad = bytes(rec[:32])
    overwrite(path, tail, bad)
    with pastedb.open(db_path, create=False) as db:
        assert dict(db.items()) == expect
        note = db.stats()["recovery_note"]
        assert note and str(path) in note
        # the tail was cut: new writes go where the junk was and survive
        db[b"after"] = b"1"
        expect[b"after"] = b"1"
        data = path.read_bytes()                 # (before a checkpoint moves the head on)
        after = log_puts(data)[-1]
        assert (after["off"], after["lsn"]) == (tail, tail_lsn)
        assert data[after["koff"]:after["koff"] + after["klen"]] == b"after"
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        assert db.stats()["recovery_note"] is None


def test_incomplete_batch_at_the_tail_is_dropped_whole(db_path):
    expect = build(db_path, n=10, where="log-only")
    with unindexed(db_path) as db:                    # killed before a checkpoint took the batch
        with db.batch() as b:
            for i in range(5):
                b.put(b"batch%d" % i, b"v%d" % i)
            b.delete(b"key000")
    path = pool_file(db_path)
    recs = log_records(path.read_bytes())
    assert len(recs) == 16
    assert all(r["flags"] & F_BATCH for r in recs[10:])
    assert [r["batch_left"] for r in recs[10:]] == [5, 4, 3, 2, 1, 0]
    # the crash came before the last two records of the batch were written
    overwrite(path, recs[14]["off"], bytes(2 * REC_SIZE))
    with pastedb.open(db_path, create=False) as db:
        assert dict(db.items()) == expect                    # none of the batch
        assert "batch" in db.stats()["recovery_note"]
        db[b"after"] = b"1"
        expect[b"after"] = b"1"
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect


def test_torn_tail_in_a_later_session(db_path, where):
    expect = build(db_path, n=10, where=where)
    with session(db_path, where) as db:
        for i in range(5):
            db[b"s2-%d" % i] = b"x" * i
            expect[b"s2-%d" % i] = b"x" * i
    path = pool_file(db_path)
    data = path.read_bytes()
    assert len(log_puts(data)) == 15
    overwrite(path, log_end(data)[0], random.Random(5).randbytes(REC_SIZE))
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect


# ------------------------------------------------------------------ damage


@pytest.mark.parametrize("byte", [0, 4, 5, 9, 13, 17, 25, 33, 41, 49, 60])
def test_flipped_bit_in_a_middle_record(db_path, byte, where):
    # (indexed: the index holds what the record wrote, but open() still
    # verifies every record from the log head and must not cut the log at one)
    expect = build(db_path, where=where)
    path = pool_file(db_path)
    rec = log_records(path.read_bytes())[7]
    flip(path, rec["off"] + byte)
    before = path.read_bytes()
    result = open_or_corruption(db_path)
    assert isinstance(result, pastedb.CorruptionError), (
        "an acknowledged record in the middle of the log no longer verifies: "
        "open must refuse, not cut the log there")
    assert path.read_bytes() == before                     # open repaired nothing by itself
    assert_never_wrong(result, expect)


@pytest.mark.parametrize("what", ["value", "key"])
def test_flipped_bit_in_a_middle_key_or_value(db_path, what, where):
    build(db_path, where=where)
    path = pool_file(db_path)
    rec = log_records(path.read_bytes())[10]
    if what == "value":
        flip(path, rec["voff"] + rec["vlen"] // 2, 0x80)
    else:
        flip(path, rec["koff"] + 1, 0x80)
    result = open_or_corruption(db_path)
    assert isinstance(result, pastedb.CorruptionError)


def every_position(db_path, tmp_path, where, whats):
    """Yield (j, what, result) for one bit flipped in each record, key and
    value in turn (a fresh copy of the database each time)."""
    expect = build(db_path, n=12, seed=9, where=where)
    pristine = pool_file(db_path).read_bytes()
    tree = index_file(db_path).read_bytes()
    recs = log_records(pristine)
    trial = tmp_path / "trial"
    for j, rec in enumerate(recs):
        spots = {"record": rec["off"] + 20, "key": rec["koff"] + rec["klen"] - 1,
                 "value": rec["voff"] + rec["vlen"] - 1}
        for what in whats:
            shutil.rmtree(trial, ignore_errors=True)
            trial.mkdir()
            data = bytearray(pristine)
            data[spots[what]] ^= 0x04
            (trial / "pool").write_bytes(bytes(data))
            (trial / "index").write_bytes(tree)
            yield expect, j, len(recs), what, open_or_corruption(trial)


def test_every_position_never_returns_wrong_bytes(db_path, tmp_path, where):
    # Damage before the last record must be reported.  Damage to the last
    # record alone: with the log only, it is indistinguishable from a torn
    # tail and may cut it; with the index holding it (its applied_lsn proves
    # the record was durable), open() must refuse or return the index's
    # intact copy -- a damaged value of it included.  No answer may ever
    # carry wrong bytes.
    for expect, j, n, what, result in every_position(db_path, tmp_path, where,
                                                     ["record", "key", "value"]):
        torn_tail = j == n - 1 and where == "log-only"    # the last record may be cut
        assert_never_wrong(result, expect, may_lose=list(expect)[-1:] if torn_tail else ())
        if j < n - 1:
            assert isinstance(result, pastedb.CorruptionError), (j, what)
        elif not isinstance(result, pastedb.CorruptionError):
            keys = list(expect)
            assert result == ({k: expect[k] for k in keys[:-1]} if where == "log-only"
                              else expect), (j, what)


def closed_two_chunks(db_path):
    expect = closed(db_path, CHUNK_SLOTS + 300)
    assert superblock(pool_file(db_path).read_bytes())["log_head_lsn"] > CHUNK_SLOTS
    return expect


def test_damage_to_a_value_in_the_log_heads_chunk(db_path):
    # The index holds it, and open() verifies every record from the log head.
    build(db_path)
    path = pool_file(db_path)
    recs = log_records(path.read_bytes())
    flip(path, recs[3]["voff"], 0x10)
    assert isinstance(open_or_corruption(db_path), pastedb.CorruptionError)


def test_damage_to_a_value_before_the_log_head(db_path):
    # Checkpointed past it: only the index names the value now.
    expect = closed_two_chunks(db_path)
    koff, voff, vlen, lsn, klen, vcrc, _expire = dict(index_items(db_path))[b"k00003"]
    flip(pool_file(db_path), voff, 0x10)
    assert_never_wrong(open_or_corruption(db_path), expect)


def test_a_write_after_a_cut_record_the_index_covers_survives_a_crash(db_path):
    expect = build(db_path, n=12)
    path = pool_file(db_path)
    last = log_chain(path.read_bytes())[-1]
    flip(path, last["off"] + 20)                 # the log's last record, which the index holds
    try:
        with unindexed(db_path) as db:           # then killed before any checkpoint
            assert dict(db.items()) == expect
            db[b"acknowledged"] = expect[b"acknowledged"] = b"after the cut"
    except pastedb.CorruptionError:
        return                                   # refusing to open is right too
    assert open_or_corruption(db_path) == expect


def test_zeroed_superblock(db_path):
    build(db_path)
    path = pool_file(db_path)
    overwrite(path, 0, bytes(HEADER_SIZE))
    before = path.read_bytes()
    with pytest.raises(pastedb.CorruptionError) as ei:
        pastedb.open(db_path)
    assert str(path) in str(ei.value)
    assert ei.value.path == str(path)
    assert "pastedb-check --repair" in str(ei.value) or "pastedb-check" in str(ei.value)
    assert path.read_bytes() == before
    # and it stays refused: no silent re-creation over the damaged file
    with pytest.raises(pastedb.CorruptionError):
        pastedb.open(db_path, create=True)


def test_garbage_superblock(db_path):
    build(db_path)
    path = pool_file(db_path)
    overwrite(path, 0, random.Random(7).randbytes(HEADER_SIZE))
    with pytest.raises(pastedb.CorruptionError) as ei:
        pastedb.open(db_path)
    assert ei.value.path == str(path)


@pytest.mark.parametrize("how", ["closed", "killed"])
def test_flipped_bit_in_the_superblock_in_force(db_path, how):
    if how == "closed":
        expect = closed(db_path, 20)
    else:
        expect = build(db_path, where="log-only")
    path = pool_file(db_path)
    sb = superblock(path.read_bytes())
    flip(path, sb["slot"] * SUPER_SLOT + 24)               # log_head_off
    result = open_or_corruption(db_path)
    if how == "killed":
        # the only slot ever written (never checkpointed)
        assert sb["seq"] == 1 and isinstance(result, pastedb.CorruptionError)
    else:
        # the older slot names the same log (an older head) and an older
        # index checkpoint the index file covers: nothing is lost
        assert sb["seq"] == 2 and result == expect


def test_older_superblock_slot_damaged(db_path):
    # After a checkpoint both slots are valid; losing the older one loses nothing.
    expect = closed(db_path, 20)
    with pastedb.open(db_path, persist="none") as db:
        db.checkpoint()
        db[b"after"] = b"1"
        expect[b"after"] = b"1"
    path = pool_file(db_path)
    sb = superblock(path.read_bytes())
    assert sb["seq"] >= 3                                  # two checkpoints (two closes)
    overwrite(path, (1 - sb["slot"]) * SUPER_SLOT, random.Random(8).randbytes(SUPER_SLOT))
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect


def test_truncated_pool_file(db_path, where):
    # Cut inside the data: whatever open does, it may not invent bytes.
    expect = build(db_path, where=where)
    path = pool_file(db_path)
    recs = log_records(path.read_bytes())
    with open(path, "r+b") as f:
        f.truncate(recs[10]["voff"] + 1)
    assert_never_wrong(open_or_corruption(db_path), expect)


def test_truncated_pool_file_loses_nothing_silently(db_path, where):
    # The log chunk itself is intact: only the data extent holding the keys and
    # values of the last ten acknowledged puts was cut off.
    expect = build(db_path, where=where)
    path = pool_file(db_path)
    recs = log_records(path.read_bytes())
    assert recs[-1]["off"] < recs[10]["koff"]            # the records lie before the cut
    with open(path, "r+b") as f:
        f.truncate(recs[10]["voff"] + 1)
    result = open_or_corruption(db_path)
    assert isinstance(result, pastedb.CorruptionError) or result == expect, (
        f"open returned {len(result)} of {len(expect)} acknowledged keys without an error")


def test_leftover_pool_new_from_a_crashed_create(db_path):
    db_path.mkdir()
    (db_path / "pool.new").write_bytes(b"half-built" * 1000)
    with pastedb.open(db_path) as db:
        db[b"k"] = b"v"
    assert not (db_path / "pool.new").exists()
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"k": b"v"}


def test_incomplete_batch_spanning_a_chunk_link(db_path):
    # A batch that starts in the first chunk and ends in the second, cut
    # before its last record: none of it may survive, and the log must go on
    # from where the batch began.
    expect = {}
    with unindexed(db_path) as db:                 # killed: no checkpoint took the batch
        for i in range(4000):
            db[b"a%04d" % i] = b"x"
            expect[b"a%04d" % i] = b"x"
        with db.batch() as b:
            for i in range(300):
                b.put(b"b%04d" % i, b"y")
            b.delete(b"a0000")
    path = pool_file(db_path)
    chain = log_chain(path.read_bytes())
    links = [r for r in chain if r["type"] == REC_LINK]
    assert len(links) == 1 and chain[-1]["batch_left"] == 0
    assert chain[4000]["flags"] & F_BATCH and chain[4000]["off"] < links[0]["off"]
    overwrite(path, chain[-1]["off"], bytes(REC_SIZE))
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        for i in range(200):
            db[b"c%04d" % i] = b"z"
            expect[b"c%04d" % i] = b"z"
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect


@pytest.mark.parametrize("how", ["killed", "settled", "closed"])
def test_flipped_bit_in_a_link_record(db_path, how):
    # killed: the LINK is in the log open() replays; settled: in the log
    # open() reads, the index covering it; closed: behind the log head
    # (open() never reads it again)
    if how == "closed":
        expect = closed(db_path, CHUNK_SLOTS + 900, value=lambda i: b"v%d" % i)
    else:
        expect = {}
        with session(db_path, "indexed" if how == "settled" else "log-only") as db:
            for i in range(CHUNK_SLOTS + 900):
                db[b"k%05d" % i] = b"v%d" % i
                expect[b"k%05d" % i] = b"v%d" % i
    path = pool_file(db_path)
    data = path.read_bytes()
    link = [r for r in walk_chain(data, HEADER_SIZE, 1) if r["type"] == REC_LINK][0]
    assert link["off"] == HEADER_SIZE + (CHUNK_SLOTS - 1) * REC_SIZE
    assert (superblock(data)["log_head_lsn"] > link["lsn"]) == (how == "closed")
    flip(path, link["off"] + 20)                        # a bit of its lsn
    result = open_or_corruption(db_path)
    assert_never_wrong(result, expect)
    assert isinstance(result, pastedb.CorruptionError) or result == expect, (
        f"open returned {len(result)} of {len(expect)} acknowledged keys without an error")
    if how == "closed":
        assert result == expect


@pytest.mark.parametrize("how", ["killed", "closed"])
def test_recovered_database_keeps_working_through_many_chunks(db_path, how):
    # More records than one log chunk holds, reopened: after a kill -9 every
    # record is replayed; after a clean close none (the index has them).
    expect = {}
    with (unindexed(db_path) if how == "killed" else pastedb.open(db_path, persist="none")) as db:
        with db.batch() as b:
            for i in range(6000):
                b.put(b"%05d" % i, b"v%d" % i)
                expect[b"%05d" % i] = b"v%d" % i
        for i in range(100):
            db[b"single%d" % i] = b"s"
            expect[b"single%d" % i] = b"s"
        assert db.stats()["log_chunks_allocated"] >= 1
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        assert db.stats()["recovered_records"] == (6100 if how == "killed" else 0)
        db[b"one more"] = expect[b"one more"] = b"x"
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        assert db.stats()["recovered_records"] == 0


# ------------------------------------------------------------------ the index file


def test_missing_index_file(db_path):
    closed(db_path, 20)
    index_file(db_path).unlink()
    before = pool_file(db_path).read_bytes()
    result = open_or_corruption(db_path, damaged="index")
    assert isinstance(result, pastedb.CorruptionError)
    # and it stays refused: no silent re-creation of an empty index
    with pytest.raises(pastedb.CorruptionError):
        pastedb.open(db_path, create=True)
    assert not index_file(db_path).exists()
    assert pool_file(db_path).read_bytes() == before


def test_missing_index_file_of_a_database_never_checkpointed(db_path):
    # Nothing was ever checkpointed (the superblock's tree_lsn is 0): the
    # whole log is replayed into a new, empty index.
    expect = build(db_path, where="log-only")
    index_file(db_path).unlink()
    assert open_or_corruption(db_path) == expect


@pytest.mark.parametrize("what", ["leaf", "branch", "newest meta", "both metas"])
def test_damaged_index_file(db_path, what):
    expect = closed_two_chunks(db_path)
    st = index_state(db_path)
    path = index_file(db_path)
    if what == "both metas":
        overwrite(path, 0, bytes(2 * 4096))
    elif what == "newest meta":
        flip(path, (st["txn"] & 1) * 4096 + 100)
    else:
        pg = next(p for p, level in st["pages"] if (level == 0) == (what == "leaf"))
        flip(path, pg * 4096 + 300, 0x20)
    result = open_or_corruption(db_path, damaged="index")
    assert isinstance(result, pastedb.CorruptionError)
    assert_never_wrong(result, expect)
