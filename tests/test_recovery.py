"""Recovery from torn tails and damage, by editing the real pool file.

The file layout is read from the formats documented in pool.pxd (superblock
slots) and reflog.pxd (64-byte records), so the tests find the log wherever
the allocator put it.  The rule checked everywhere: after damage, open either
raises CorruptionError naming the pool file, or every key it returns has
exactly the bytes last written -- never wrong bytes.  A torn tail (bytes
after the last acknowledged record) is cut back silently except for a note,
and everything acknowledged is intact.
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
    overwrite,
    walk_chain,
)

import pastedb


def pool_file(db_path):
    return db_path / "pool"


def superblock(data: bytes) -> dict:
    """The superblock slot in force (valid magic, higher seq)."""
    best = None
    for slot in (0, 1):
        f = SB.unpack_from(data, slot * SUPER_SLOT)
        sb = dict(zip(("magic", "version", "buf_size", "seq", "log_head_off", "log_head_size",
                       "log_head_lsn", "created_ns", "crc"), f, strict=True), slot=slot)
        if sb["magic"] == b"PASTEDB\0" and (best is None or sb["seq"] > best["seq"]):
            best = sb
    assert best is not None, "no superblock slot has the magic"
    return best


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


def build(db_path, n=20, seed=1):
    """n acknowledged puts of distinct keys, one record each; returns the model."""
    rng = random.Random(seed)
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        for i in range(n):
            k = b"key%03d" % i
            v = rng.randbytes(rng.randrange(8, 200))
            db[k] = v
            expect[k] = v
        assert db.stats()["log_next_lsn"] == n + 1
    return expect


def open_or_corruption(db_path):
    """Open and read everything, or return the CorruptionError (checked to
    name the pool file and the repair tool)."""
    try:
        with pastedb.open(db_path, create=False) as db:
            items = dict(db.items())
            for k, v in items.items():
                assert db[k] == v
            return items
    except pastedb.CorruptionError as e:
        assert isinstance(e, pastedb.Error)
        assert str(pool_file(db_path)) in str(e)
        assert e.path == str(pool_file(db_path))
        assert "pastedb-check --repair" in str(e)
        return e


def assert_never_wrong(result, expect):
    if isinstance(result, pastedb.CorruptionError):
        return
    for k, v in result.items():
        assert k in expect, f"a key nobody wrote: {k!r}"
        assert v == expect[k], f"{k!r} came back with different bytes"


# ------------------------------------------------------------------ the layout itself


def test_layout_as_documented(db_path):
    expect = build(db_path, n=5)
    data = pool_file(db_path).read_bytes()
    sb = superblock(data)
    assert sb["version"] == 1 and sb["buf_size"] == 2048 and sb["log_head_lsn"] == 1
    assert sb["log_head_off"] >= HEADER_SIZE
    recs = log_records(data)
    assert [r["lsn"] for r in recs] == [1, 2, 3, 4, 5]
    for r, (k, v) in zip(recs, expect.items(), strict=True):
        assert r["type"] == REC_PUT
        assert data[r["koff"]:r["koff"] + r["klen"]] == k
        assert data[r["voff"]:r["voff"] + r["vlen"]] == v
    # the slot after the last record is empty
    tail = recs[-1]["off"] + REC_SIZE
    assert data[tail:tail + REC_SIZE] == bytes(REC_SIZE)


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
def test_garbage_after_the_last_record(db_path, junk):
    expect = build(db_path)
    path = pool_file(db_path)
    data = path.read_bytes()
    recs = log_records(data)
    tail = recs[-1]["off"] + REC_SIZE
    if junk == "random":
        bad = random.Random(3).randbytes(3 * REC_SIZE)
    elif junk == "ff":
        bad = b"\xff" * REC_SIZE
    else:
        # the next record half written: the first 32 bytes of a plausible one
        rec = bytearray(data[recs[-1]["off"]:tail])
        struct.pack_into("<Q", rec, 16, recs[-1]["lsn"] + 1)
        bad = bytes(rec[:32])
    overwrite(path, tail, bad)
    with pastedb.open(db_path, create=False) as db:
        assert dict(db.items()) == expect
        note = db.stats()["recovery_note"]
        assert note and str(path) in note
        # the tail was cut: new writes go where the junk was and survive
        db[b"after"] = b"1"
        expect[b"after"] = b"1"
    data = path.read_bytes()
    assert [r["lsn"] for r in log_records(data)] == list(range(1, len(expect) + 1))
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        assert db.stats()["recovery_note"] is None


def test_incomplete_batch_at_the_tail_is_dropped_whole(db_path):
    expect = build(db_path, n=10)
    with pastedb.open(db_path, persist="none") as db:
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


def test_torn_tail_in_a_later_session(db_path):
    expect = build(db_path, n=10)
    with pastedb.open(db_path, persist="none") as db:
        for i in range(5):
            db[b"s2-%d" % i] = b"x" * i
            expect[b"s2-%d" % i] = b"x" * i
    path = pool_file(db_path)
    recs = log_records(path.read_bytes())
    assert len(recs) == 15
    overwrite(path, recs[-1]["off"] + REC_SIZE, random.Random(5).randbytes(REC_SIZE))
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect


# ------------------------------------------------------------------ damage


@pytest.mark.parametrize("byte", [0, 4, 5, 9, 13, 17, 25, 33, 41, 49, 60])
def test_flipped_bit_in_a_middle_record(db_path, byte):
    expect = build(db_path)
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


@pytest.mark.parametrize("where", ["value", "key"])
def test_flipped_bit_in_a_middle_key_or_value(db_path, where):
    build(db_path)
    path = pool_file(db_path)
    rec = log_records(path.read_bytes())[10]
    if where == "value":
        flip(path, rec["voff"] + rec["vlen"] // 2, 0x80)
    else:
        flip(path, rec["koff"] + 1, 0x80)
    result = open_or_corruption(db_path)
    assert isinstance(result, pastedb.CorruptionError)


def test_every_position_never_returns_wrong_bytes(db_path, tmp_path):
    # One bit flipped in each record, key and value in turn (a fresh copy of
    # the database each time).  Damage before the last record must be
    # reported; damage to the last record alone is indistinguishable from a
    # torn tail and may cut it -- but no answer may ever carry wrong bytes.
    expect = build(db_path, n=12, seed=9)
    pristine = pool_file(db_path).read_bytes()
    recs = log_records(pristine)
    keys = list(expect)
    trial = tmp_path / "trial"
    for j, rec in enumerate(recs):
        spots = {"record": rec["off"] + 20, "key": rec["koff"] + rec["klen"] - 1,
                 "value": rec["voff"] + rec["vlen"] - 1}
        for what, offset in spots.items():
            shutil.rmtree(trial, ignore_errors=True)
            trial.mkdir()
            data = bytearray(pristine)
            data[offset] ^= 0x04
            (trial / "pool").write_bytes(bytes(data))
            result = open_or_corruption(trial)
            assert_never_wrong(result, expect)
            if j < len(recs) - 1:
                assert isinstance(result, pastedb.CorruptionError), (j, what)
            elif not isinstance(result, pastedb.CorruptionError):
                assert result == {k: expect[k] for k in keys[:-1]}, (j, what)


def test_damage_to_a_value_after_checkpoint(db_path):
    expect = build(db_path)
    with pastedb.open(db_path, persist="none") as db:
        db.checkpoint()
        db[b"after"] = b"checkpoint"
        expect[b"after"] = b"checkpoint"
    path = pool_file(db_path)
    data = path.read_bytes()
    recs = log_records(data)                     # the checkpoint's chain
    assert len(recs) == len(expect)
    flip(path, recs[3]["voff"], 0x10)
    result = open_or_corruption(db_path)
    assert isinstance(result, pastedb.CorruptionError)


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


def test_flipped_bit_in_the_superblock_in_force(db_path):
    build(db_path)
    path = pool_file(db_path)
    sb = superblock(path.read_bytes())
    flip(path, sb["slot"] * SUPER_SLOT + 24)               # log_head_off
    result = open_or_corruption(db_path)
    assert isinstance(result, pastedb.CorruptionError)


def test_older_superblock_slot_damaged(db_path):
    # After a checkpoint both slots are valid; losing the older one loses nothing.
    expect = build(db_path)
    with pastedb.open(db_path, persist="none") as db:
        db.checkpoint()
        db[b"after"] = b"1"
        expect[b"after"] = b"1"
    path = pool_file(db_path)
    sb = superblock(path.read_bytes())
    assert sb["seq"] == 2
    overwrite(path, (1 - sb["slot"]) * SUPER_SLOT, random.Random(8).randbytes(SUPER_SLOT))
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect


def test_truncated_pool_file(db_path):
    # Cut inside the data: whatever open does, it may not invent bytes.
    expect = build(db_path)
    path = pool_file(db_path)
    recs = log_records(path.read_bytes())
    with open(path, "r+b") as f:
        f.truncate(recs[10]["voff"] + 1)
    assert_never_wrong(open_or_corruption(db_path), expect)


def test_truncated_pool_file_loses_nothing_silently(db_path):
    # The log chunk itself is intact: only the data extent holding the keys and
    # values of the last ten acknowledged puts was cut off.
    expect = build(db_path)
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
    with pastedb.open(db_path, persist="none") as db:
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


def test_flipped_bit_in_a_link_record(db_path):
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        for i in range(CHUNK_SLOTS + 900):
            db[b"k%05d" % i] = b"v%d" % i
            expect[b"k%05d" % i] = b"v%d" % i
    path = pool_file(db_path)
    data = path.read_bytes()
    links = [r for r in log_chain(data) if r["type"] == REC_LINK]
    assert len(links) == 1
    assert links[0]["off"] == superblock(data)["log_head_off"] + (CHUNK_SLOTS - 1) * REC_SIZE
    flip(path, links[0]["off"] + 20)                    # a bit of its lsn
    result = open_or_corruption(db_path)
    assert_never_wrong(result, expect)
    assert isinstance(result, pastedb.CorruptionError) or result == expect, (
        f"open returned {len(result)} of {len(expect)} acknowledged keys without an error")


def test_recovered_database_keeps_working_through_many_chunks(db_path):
    # More records than one log chunk holds, reopened with a torn tail in the
    # last chunk (found through stats: the first chunk is full).
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
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
        assert db.stats()["recovered_records"] == 6100
