"""pastedb-check: verification and repair of real database files.

Databases are built with pastedb.open, closed, then damaged at offsets found by
parsing the files with the layouts of pool.pxd (superblock), reflog.pxd
(64-byte records) and btree.pxd (the index file) -- see poolfmt.py.  The
checker runs as a child process (``python -m pastedb.check``), as a user runs
it, so its exit code, its locking and its output are what is tested.

A database's keys are the index file's entries overlaid with the log records
after the index's applied_lsn.  Damage tests run in two variants (the `where`
fixture): "log-only" (the files as a kill -9 leaves them before any
checkpoint: the records after the index's applied_lsn, which only the log
holds -- poolfmt.unindexed()) and "indexed" (then a checkpoint put every
record into the index, but the superblock naming the new log head never
landed -- the crash between the two: the records the index covers are still
the log open() reads).  Records behind the log head (a completed checkpoint)
are tested separately: open() does not read them at all.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import tally
from poolfmt import (  # noqa: F401  (the layout, shared with test_recovery.py)
    CHUNK_SIZE,
    CHUNK_SLOTS,
    HEADER_SIZE,
    INDEX_FILE,
    PAGE_SIZE,
    REC,
    REC_DEL,
    REC_FIELDS,
    REC_LINK,
    REC_PUT,
    REC_SIZE,
    SB,
    SUPER_SLOT,
    chain_from_head,
    flip,
    index_items,
    index_metas,
    index_state,
    overwrite,
    session,
    settle,
    superblock,
    unindexed,
    walk_chain,
)

import pastedb
from pastedb.core.format import crc32c, crc32c_many

REPO_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers


def run_check(db_path, *args, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pastedb.check", str(db_path), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def check_json(db_path, *args):
    r = run_check(db_path, "--json", *args)
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout)


def pool(db_path) -> Path:
    return Path(db_path) / "pool"


def index(db_path) -> Path:
    return Path(db_path) / INDEX_FILE


def chain(data: bytes) -> list[dict]:
    """Every record of the log in force, LINKs included, in order."""
    return chain_from_head(data)


def puts(data: bytes) -> list[dict]:
    return [r for r in chain(data) if r["type"] == REC_PUT]


def log_end(data: bytes) -> tuple[int, int]:
    """(byte offset, LSN) of the slot after the last record of the log in
    force (a LINK at the end names a fresh chunk: its first slot)."""
    last = chain(data)[-1]
    if last["type"] == REC_LINK:
        return last["voff"], last["lsn"] + 1
    return last["off"] + REC_SIZE, last["lsn"] + 1


@pytest.fixture(params=["indexed", "log-only"])
def where(request) -> str:
    return request.param


def build(db_path, n=30, seed=1, where="indexed") -> dict:
    """n acknowledged puts of distinct keys; returns the model."""
    rng = random.Random(seed)
    expect = {}
    with session(db_path, where) as db:
        for i in range(n):
            k = b"key%03d" % i
            v = rng.randbytes(rng.randrange(8, 300))
            db[k] = v
            expect[k] = v
    st = index_state(db_path)
    assert (st["applied_lsn"] >= n) if where == "indexed" else (st["applied_lsn"] == 0)
    assert len(puts(pool(db_path).read_bytes())) == n        # all in the log open() reads
    return expect


def build_history(db_path, seed=5) -> dict:
    """Overwrites, deletes and batches over several log chunks, checkpointed
    several times so the log head moved on (the chunks before it are only
    history); the last writes after the last explicit checkpoint.  Closed
    cleanly.  Only the explicit checkpoints run (a few chunks of log, which
    the engine does not reuse: they share the superblock's segment), so the
    whole history stays in the file and the index can be rebuilt from it."""
    rng = random.Random(seed)
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        db._checkpoint_policy(every=1 << 62, interval=10**6)
        for n in range(2 * CHUNK_SLOTS + 700):
            k = b"h%04d" % rng.randrange(2500)
            x = rng.random()
            if x < 0.75:
                db[k] = expect[k] = b"%s=%d" % (k, n) * rng.randrange(1, 6)
            elif x < 0.9:
                if db.delete(k):
                    del expect[k]
            else:
                with db.batch() as b:
                    for i in range(3):
                        kk = b"h%04d" % rng.randrange(2500)
                        b.put(kk, b"batch %d/%d" % (n, i))
                        expect[kk] = b"batch %d/%d" % (n, i)
            if n % 3000 == 2999:
                db.checkpoint()
    sb = superblock(pool(db_path).read_bytes())
    assert sb["log_head_lsn"] > CHUNK_SLOTS and sb["seq"] >= 3     # the head moved on
    return expect


def contents(db_path) -> dict:
    with pastedb.open(db_path, create=False) as db:
        return dict(db.items())


def assert_repaired(db_path, expect, lost=()):
    """After --repair: the check passes and open() returns exactly the model
    minus the lost keys."""
    rc, after = check_json(db_path)
    assert rc == 0 and after["ok"], after["problems"]
    assert after["index"]["state"] == "ok"
    want = {k: v for k, v in expect.items() if k not in set(lost)}
    assert contents(db_path) == want
    assert after["keys"] == len(want)
    rc, again = check_json(db_path)                           # and the open left it clean
    assert rc == 0, again["problems"]


def lost_keys(d) -> list[str]:
    return [k["key"] for k in d["repair"]["lost"]]


# ------------------------------------------------------------------ CRC32C


def _crc_table():
    # The CRC-32C definition, bit by bit (Castagnoli, reflected 0x82F63B78):
    # the reference the C implementation is checked against.
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_T = _crc_table()


def test_crc32c_matches_the_engine_definition():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283            # the CRC-32C check value
    rng = random.Random(4)
    data = rng.randbytes(3 << 20 | 12345)
    # chaining equals one pass; the lane-parallel path equals the byte loop
    assert crc32c(data[100000:], crc32c(data[:100000])) == crc32c(data)
    reg = 0xFFFFFFFF
    for b in data[:70001]:
        reg = _T[(reg ^ b) & 0xFF] ^ (reg >> 8)
    assert crc32c(data[:70001]) == reg ^ 0xFFFFFFFF
    items = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(3000)] + [data[:200000]]
    assert crc32c_many(items) == [crc32c(x) for x in items]


def test_record_checksums_agree_with_real_files(db_path):
    build(db_path, n=5)
    data = pool(db_path).read_bytes()
    for r in puts(data):
        key = data[r["koff"]:r["koff"] + r["klen"]]
        assert crc32c(key + data[r["off"] + 4:r["off"] + REC_SIZE]) == r["crc"]
        assert crc32c(data[r["voff"]:r["voff"] + r["vlen"]]) == r["vcrc"]


# ------------------------------------------------------------------ consistent databases


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "killed"])
def test_clean_database(db_path, closed):
    rng = random.Random(2)
    expect = {}
    with (pastedb.open(db_path, persist="none") if closed else unindexed(db_path)) as db:
        for i in range(300):
            k = b"k%04d" % i
            expect[k] = rng.randbytes(rng.randrange(0, 500))
            db[k] = expect[k]
        for i in range(0, 300, 3):
            del db[b"k%04d" % i]
            del expect[b"k%04d" % i]
        with db.batch() as b:
            for i in range(10):
                b.put(b"batch%d" % i, b"v" * i)
                expect[b"batch%d" % i] = b"v" * i
        db[b""] = b""
        expect[b""] = b""
        db[b"big"] = expect[b"big"] = rng.randbytes(300000)
        stats = db.stats()
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["ok"] is True and d["problems"] == []
    assert d["keys"] == len(expect) == stats["keys"]
    assert d["live_bytes"] == stats["live_bytes"]
    assert d["file_bytes"] == os.path.getsize(pool(db_path))
    assert d["index_file_bytes"] == os.path.getsize(index(db_path))
    assert d["log"]["end"] == "clean" and d["log"]["invalid_records"] == 0
    ix = d["index"]
    assert ix["state"] == "ok" and ix["check_problems"] == []
    if closed:
        # the close checkpointed everything: the index has every key, and
        # nothing from the log head on is left to replay
        assert ix["applied_lsn"] == d["log"]["end_lsn"] - 1
        assert d["keys_from_index"] == len(expect) == ix["entries"]
        assert d["log"]["replayed_records"] == 0
    else:
        assert ix["applied_lsn"] == 0 and ix["entries"] == 0
        assert d["keys_from_index"] == 0
        assert d["log"]["replayed_records"] == d["log"]["valid_records"]
        assert d["log"]["dels"] == 100 and d["log"]["batches"] == 1
    assert contents(db_path) == expect
    # the human summary says the same
    r = run_check(db_path)
    assert r.returncode == 0
    assert f"{len(expect):,} keys" in r.stdout and "OK" in r.stdout
    assert str(index(db_path)) in r.stdout
    # --quiet says nothing when all is well
    r = run_check(db_path, "--quiet")
    assert r.returncode == 0 and r.stdout == ""


def test_checkpointed_several_times_verifies_clean(db_path):
    expect = build_history(db_path)
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["keys"] == len(expect) == d["keys_from_index"]
    sb = superblock(pool(db_path).read_bytes())
    assert d["log"]["head_lsn"] == sb["log_head_lsn"] > CHUNK_SLOTS
    assert d["log"]["chunks"] == 1 and d["log"]["replayed_records"] == 0
    assert d["index"]["applied_lsn"] == sb["tree_lsn"] == d["log"]["end_lsn"] - 1
    assert d["live_bytes"] == sum(len(k) + len(v) for k, v in expect.items())
    assert contents(db_path) == expect
    # more writes after the last checkpoint, left in the log only
    with unindexed(db_path) as db:
        for i in range(50):
            db[b"h%04d" % i] = expect[b"h%04d" % i] = b"after %d" % i
        db.delete(b"h0100")
        expect.pop(b"h0100", None)
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["keys"] == len(expect)
    assert d["log"]["replayed_records"] >= 50
    assert contents(db_path) == expect


def test_repair_of_a_clean_database_changes_nothing(db_path):
    build(db_path)
    before = pool(db_path).read_bytes(), index(db_path).read_bytes()
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["performed"] is False
    assert (pool(db_path).read_bytes(), index(db_path).read_bytes()) == before
    assert sorted(p.name for p in db_path.iterdir()) == ["LOCK", "READERS", "index", "pool"]


def test_missing_index_that_nothing_needs_yet(db_path):
    # Never checkpointed (the superblock's tree_lsn is 0): open() creates an
    # empty index and replays the whole log, so a missing one is no problem.
    expect = build(db_path, where="log-only")
    assert superblock(pool(db_path).read_bytes())["tree_lsn"] == 0
    index(db_path).unlink()
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["index"]["state"] == "absent" and d["keys"] == len(expect)
    assert any(n["kind"] == "index" for n in d["notes"])
    assert contents(db_path) == expect
    assert check_json(db_path)[0] == 0


# ------------------------------------------------------------------ crash artefacts are not problems


@pytest.mark.parametrize("junk", ["random", "half-record"])
def test_torn_tail_is_information(db_path, junk, where):
    expect = build(db_path, where=where)
    path = pool(db_path)
    data = path.read_bytes()
    last = puts(data)[-1]
    tail, tail_lsn = log_end(data)
    if junk == "random":
        bad = random.Random(3).randbytes(3 * REC_SIZE)
    else:
        rec = bytearray(data[last["off"]:last["off"] + REC_SIZE])
        struct.pack_into("<Q", rec, 16, tail_lsn)
        bad = bytes(rec[:32])
    overwrite(path, tail, bad)
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["ok"] and d["keys"] == len(expect)
    assert d["log"]["end"] == "torn"
    torn = [n for n in d["notes"] if n["kind"] == "torn-tail"]
    assert torn and torn[0]["offset"] == tail and torn[0]["file"] == str(path)
    assert contents(db_path) == expect                        # and open() agrees


def test_incomplete_batch_at_the_tail_is_information(db_path):
    expect = build(db_path, n=10)
    with unindexed(db_path) as db:                           # the crash came before the checkpoint
        with db.batch() as b:
            for i in range(5):
                b.put(b"batch%d" % i, b"v")
    path = pool(db_path)
    recs = puts(path.read_bytes())
    overwrite(path, recs[-1]["off"], bytes(REC_SIZE))         # its last record never landed
    rc, d = check_json(db_path)
    assert rc == 0 and d["keys"] == len(expect)
    assert d["log"]["dropped_batch"] == 4
    assert contents(db_path) == expect


def test_a_record_the_index_covers_is_never_a_torn_tail(db_path):
    # The index's applied_lsn proves that every record up to it was durable:
    # a missing last record there is damage, not a torn tail.  (open() cuts
    # it silently and hands its LSN to the next write, which the next open
    # skips: see the note in the report.)
    expect = build(db_path, n=10)
    with session(db_path) as db:                             # then checkpointed
        with db.batch() as b:
            for i in range(5):
                b.put(b"batch%d" % i, b"v%d" % i)
                expect[b"batch%d" % i] = b"v%d" % i
    path = pool(db_path)
    recs = puts(path.read_bytes())
    assert index_state(db_path)["applied_lsn"] >= recs[-1]["lsn"]
    # its last record, and whatever followed it (a checkpoint's LINK), gone
    overwrite(path, recs[-1]["off"], bytes(2 * REC_SIZE))
    rc, d = check_json(db_path)
    assert rc == 1
    [p] = d["problems"]
    # the batch is incomplete now, so the log ends where it began
    assert p["kind"] == "log-short" and p["offset"] == recs[-5]["off"]
    assert "index" in p["message"] and "skip" in p["message"]
    assert d["keys"] == len(expect) and d["keys_lost"] == 0
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == [] and d["repair"]["log_rewritten"]
    assert_repaired(db_path, expect)


# ------------------------------------------------------------------ damage to the log


def test_flipped_byte_in_an_acknowledged_value(db_path, where):
    expect = build(db_path, where=where)
    path = pool(db_path)
    victim = puts(path.read_bytes())[12]
    key = b"key012"
    flip(path, victim["voff"] + victim["vlen"] // 2, 0x80)
    r = run_check(db_path)
    assert r.returncode == 1
    assert str(path) in r.stdout and str(victim["voff"]) in r.stdout
    rc, d = check_json(db_path)
    assert rc == 1 and d["ok"] is False
    [p] = d["problems"]
    assert p["kind"] == "value-crc" and p["file"] == str(path) and p["offset"] == victim["voff"]
    assert "key012" in p["message"]
    assert [k["key"] for k in d["lost"]] == ["key012"]
    with pytest.raises(pastedb.CorruptionError):             # what open() makes of it
        pastedb.open(db_path)

    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert d["repair"]["performed"] is True
    assert d["repair"]["log_rewritten"] and d["repair"]["index_rebuilt"]
    assert [(k["key"], k["lsn"]) for k in d["repair"]["lost"]] == [("key012", victim["lsn"])]
    assert [x["lsn"] for x in d["repair"]["dropped_records"]] == [victim["lsn"]]
    assert d["before"]["problems"][0]["offset"] == victim["voff"]
    assert_repaired(db_path, expect, lost=[key])
    # the old index is kept, not deleted
    assert (db_path / "index.before-repair").exists()
    # and the repaired database keeps working
    with pastedb.open(db_path) as db:
        db[key] = b"rewritten"
    assert contents(db_path)[key] == b"rewritten"
    assert check_json(db_path)[0] == 0


def test_damaged_value_superseded_later_loses_nothing(db_path, where):
    expect = build(db_path, n=10, where=where)
    with session(db_path, where) as db:
        db[b"key003"] = expect[b"key003"] = b"newer"
        db[b"key099"] = expect[b"key099"] = b"last"
    path = pool(db_path)
    old = puts(path.read_bytes())[3]
    flip(path, old["voff"])
    rc, d = check_json(db_path)
    assert rc == 1 and d["keys_lost"] == 0                     # open() refuses all the same
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


@pytest.mark.parametrize("byte", [0, 5, 17, 25, 49])
def test_flipped_byte_in_a_middle_record(db_path, byte, where):
    expect = build(db_path, where=where)
    path = pool(db_path)
    rec = puts(path.read_bytes())[7]
    flip(path, rec["off"] + byte)
    rc, d = check_json(db_path)
    assert rc == 1
    assert any(p["offset"] == rec["off"] for p in d["problems"]), d["problems"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    if where == "log-only":
        # the record's key is reported (as the damaged record names it)
        assert lost_keys(d) == ["key007"]
        assert_repaired(db_path, expect, lost=[b"key007"])
    else:
        # the index holds what the record wrote: nothing is lost
        assert lost_keys(d) == []
        assert_repaired(db_path, expect)


def test_flipped_bit_in_a_key_names_the_right_key(db_path, where):
    # key004's last byte ^ 0x04 reads "key000", another live key.
    expect = build(db_path, where=where)
    path = pool(db_path)
    rec = puts(path.read_bytes())[4]
    flip(path, rec["koff"] + rec["klen"] - 1, 0x04)
    rc, d = check_json(db_path)
    assert rc == 1
    rc2, r = check_json(db_path, "--repair")
    assert rc2 == 0
    if where == "log-only":
        # the repair must drop key004 (identified through the CRC), not the
        # intact key000
        assert [p["offset"] for p in d["problems"]] == [rec["off"]]
        assert lost_keys(r) == ["key004"]
        assert_repaired(db_path, expect, lost=[b"key004"])
    else:
        # the index has its own copy of the key: the value is intact, the
        # repair copies key and value to fresh space, nothing is lost
        assert sorted((p["kind"], p["offset"]) for p in d["problems"]) == \
            sorted([("record-crc", rec["off"]), ("key-bytes", rec["koff"])])
        assert lost_keys(r) == [] and r["repair"]["relocated"] == 1
        assert_repaired(db_path, expect)


def test_damaged_record_of_an_overwritten_key_does_not_resurrect_the_old_value(db_path, where):
    expect = build(db_path, n=10, where=where)
    with session(db_path, where) as db:
        db[b"key004"] = b"second value"
        db[b"key050"] = expect[b"key050"] = b"later"
    path = pool(db_path)
    data = path.read_bytes()
    rec = puts(data)[10]                                      # the second write of key004
    assert data[rec["koff"]:rec["koff"] + rec["klen"]] == b"key004"
    flip(path, rec["off"] + 33)                               # its voff: the record fails its crc
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    if where == "log-only":
        assert lost_keys(d) == ["key004"]
        assert_repaired(db_path, expect, lost=[b"key004"])   # not the first value
    else:
        assert lost_keys(d) == []                             # the index has the second value
        expect[b"key004"] = b"second value"
        assert_repaired(db_path, expect)


def test_damaged_member_of_a_committed_batch(db_path, where):
    expect = build(db_path, n=5, where=where)
    with session(db_path, where) as db:
        with db.batch() as b:
            for i in range(6):
                b.put(b"batch%d" % i, b"value %d" % i)
                expect[b"batch%d" % i] = b"value %d" % i
        db[b"after"] = expect[b"after"] = b"x"
    path = pool(db_path)
    rec = puts(path.read_bytes())[7]                          # batch2
    flip(path, rec["voff"])
    rc, d = check_json(db_path)
    assert rc == 1 and [k["key"] for k in d["lost"]] == ["batch2"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    assert_repaired(db_path, expect, lost=[b"batch2"])


def build_two_chunks(db_path, where):
    expect = {}
    with session(db_path, where) as db:
        for i in range(CHUNK_SLOTS + 300):
            db[b"k%05d" % i] = expect[b"k%05d" % i] = b"v%d" % i
    return expect


def closed_two_chunks(db_path):
    """More than a chunk of log, closed cleanly: the checkpoint moved the
    log head past the first chunk (open() does not read it any more)."""
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        db._checkpoint_policy(every=1 << 62, interval=10**6)
        for i in range(CHUNK_SLOTS + 300):
            db[b"k%05d" % i] = expect[b"k%05d" % i] = b"v%d" % i
    assert superblock(pool(db_path).read_bytes())["log_head_lsn"] > CHUNK_SLOTS
    return expect


def test_damaged_link_record(db_path):
    expect = build_two_chunks(db_path, "log-only")
    path = pool(db_path)
    [link] = [r for r in chain(path.read_bytes()) if r["type"] == REC_LINK]
    flip(path, link["off"] + 20)                              # a bit of its lsn
    rc, d = check_json(db_path)
    assert rc == 1
    assert any(p["offset"] == link["off"] and p["kind"] in ("link", "record-lsn")
               for p in d["problems"]), d["problems"]
    assert d["keys"] == len(expect)                           # the next chunk was found
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_damage_before_the_log_head_matters_only_to_a_rebuild(db_path):
    # Closed cleanly, the log head is the second chunk: open() never reads the
    # first one.  A damaged LINK there is no problem while the index is good;
    # with the index gone, the rebuild from the whole log bridges it.
    expect = closed_two_chunks(db_path)
    path = pool(db_path)
    data = path.read_bytes()
    sb = superblock(data)
    link = [r for r in walk_chain(data, HEADER_SIZE, 1) if r["type"] == REC_LINK][0]
    assert link["off"] == HEADER_SIZE + (CHUNK_SLOTS - 1) * REC_SIZE
    assert link["lsn"] < sb["log_head_lsn"]                 # behind the head
    flip(path, link["off"] + 20)
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert contents(db_path) == expect
    index(db_path).unlink()
    rc, d = check_json(db_path)
    assert rc == 1 and [p["kind"] for p in d["problems"]] == ["index"]
    assert d["keys"] == len(expect)
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == [] and not d["repair"]["log_rewritten"]
    assert_repaired(db_path, expect)


def test_zeroed_end_of_a_full_chunk(db_path):
    # The last record of the first chunk and its LINK are zeroed: open() sees
    # an empty slot and would cut the log there; the next chunk is found by
    # scanning and its records prove the cut lost acknowledged writes.
    expect = build_two_chunks(db_path, "log-only")
    path = pool(db_path)
    recs = chain(path.read_bytes())
    link = next(r for r in recs if r["type"] == REC_LINK)
    overwrite(path, link["off"] - REC_SIZE, bytes(2 * REC_SIZE))
    rc, d = check_json(db_path)
    assert rc == 1
    assert d["problems"][0]["kind"] == "record-missing"
    assert d["problems"][0]["offset"] == link["off"] - REC_SIZE
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    assert [x["lsn"] for x in d["repair"]["dropped_records"]] == [link["lsn"] - 1, link["lsn"]]
    assert d["repair"]["lost"] == []                          # its key cannot be known
    lost_key = b"k%05d" % (CHUNK_SLOTS - 2)
    assert_repaired(db_path, expect, lost=[lost_key])


def test_truncated_pool_file(db_path, where):
    expect = build(db_path, where=where)
    path = pool(db_path)
    recs = puts(path.read_bytes())
    with open(path, "r+b") as f:
        f.truncate(recs[20]["voff"] + 1)
    rc, d = check_json(db_path)
    assert rc == 1
    assert any(p["kind"] == "truncated" for p in d["problems"]), d["problems"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    dropped = d["repair"]["dropped_records"]                  # key020 and the 9 after it
    assert [x["lsn"] for x in dropped[:10]] == [recs[i]["lsn"] for i in range(20, 30)]
    assert all("LINK" in x["reason"] for x in dropped[10:])   # (a checkpoint's LINK after them)
    if where == "log-only":
        # the keys of the 9 after it were cut off too: they cannot be named
        assert lost_keys(d) == ["key020"]
    else:
        # the index has its own copy of every key: all ten are named
        assert lost_keys(d) == ["key%03d" % i for i in range(20, 30)]
    got = contents(db_path)
    assert got == {k: expect[k] for k in list(expect)[:20]}
    assert check_json(db_path)[0] == 0


# ------------------------------------------------------------------ superblocks


def test_lost_newer_superblock_slot_loses_nothing(db_path):
    # The older slot names an older index checkpoint and an older head of the
    # same log (the log is never rewritten in place): with the index, that is
    # the same database.  (open() agrees.)
    expect = {}
    with pastedb.open(db_path, persist="none") as db:         # closed: seq 2, the index at 30+
        for i in range(30):
            db[b"key%03d" % i] = expect[b"key%03d" % i] = b"v%d" % i
    with unindexed(db_path) as db:
        for i in range(5):
            db[b"after%d" % i] = expect[b"after%d" % i] = b"v%d" % i
        del db[b"key001"]
        del expect[b"key001"]
    path = pool(db_path)
    sb = superblock(path.read_bytes())
    assert sb["seq"] == 2 and sb["tree_lsn"] >= 30
    overwrite(path, sb["slot"] * SUPER_SLOT, bytes(SUPER_SLOT))
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["superblock"]["in_force"] == 1 - sb["slot"] and d["keys"] == len(expect)
    assert contents(db_path) == expect


def test_lost_superblock_slot_after_a_repair(db_path):
    # A repair writes a new log chain; losing the superblock slot that names
    # it brings back the old chain, which ends long before the new index's
    # applied_lsn (log-short); the chain that reaches it is found by scanning,
    # and a second repair rebuilds from it.
    expect = build(db_path)
    path = pool(db_path)
    victim = puts(path.read_bytes())[12]
    flip(path, victim["voff"])
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and lost_keys(d) == ["key012"]
    slot = d["repair"]["superblock_slot"]
    overwrite(path, slot * SUPER_SLOT, bytes(SUPER_SLOT))
    new_head = d["repair"]["new_head_off"]
    rc, d = check_json(db_path)
    assert rc == 1
    assert "log-short" in [p["kind"] for p in d["problems"]]
    assert any(n["kind"] == "rebuild-source" and n["offset"] == new_head for n in d["notes"])
    assert d["keys"] == len(expect) - 1
    with pytest.raises(pastedb.CorruptionError):
        pastedb.open(db_path)
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert_repaired(db_path, expect, lost=[b"key012"])


def test_zeroed_superblock(db_path, where):
    expect = build(db_path, where=where)
    path = pool(db_path)
    overwrite(path, 0, bytes(HEADER_SIZE))                    # both slots
    rc, d = check_json(db_path)
    assert rc == 1
    assert d["problems"][0]["kind"] == "superblock" and d["problems"][0]["offset"] == 0
    assert d["superblock"]["in_force"] is None
    assert d["keys"] == len(expect)
    with pytest.raises(pastedb.CorruptionError):
        pastedb.open(db_path)
    rc, d = check_json(db_path, "--repair")                   # rebuilt from a scan
    assert rc == 0 and d["repair"]["performed"] and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_garbage_in_both_superblock_slots_after_checkpoints(db_path):
    expect = build(db_path, where="log-only")
    with pastedb.open(db_path, persist="none") as db:
        db.checkpoint()
        db[b"x"] = expect[b"x"] = b"1"
        db.checkpoint()
        db[b"y"] = expect[b"y"] = b"2"
        del db[b"key000"]
        del expect[b"key000"]
    overwrite(pool(db_path), 0, random.Random(7).randbytes(HEADER_SIZE))
    rc, d = check_json(db_path)
    assert rc == 1
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert_repaired(db_path, expect)


def test_crash_between_the_index_commit_and_the_superblock(db_path):
    # A checkpoint commits the index, then writes the superblock: a crash in
    # between leaves the old superblock with the newer index -- consistent
    # (the replay skips what the index holds).  Then with both slots lost the
    # repair rebuilds from a scan.
    expect = build(db_path, where="log-only")
    path = pool(db_path)
    header = path.read_bytes()[:HEADER_SIZE]
    with pastedb.open(db_path, persist="none") as db:
        db[b"x"] = expect[b"x"] = b"1"
        db.checkpoint()
        db[b"y"] = expect[b"y"] = b"2"
        del db[b"key005"]
        del expect[b"key005"]
    overwrite(path, 0, header)                                # the superblock writes were lost
    assert index_state(db_path)["applied_lsn"] > superblock(header)["tree_lsn"]
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert contents(db_path) == expect
    overwrite(path, 0, bytes(HEADER_SIZE))
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    assert_repaired(db_path, expect)


def test_nothing_to_rebuild_from(db_path):
    db_path.mkdir()
    (db_path / "pool").write_bytes(bytes(4 << 20))
    rc, d = check_json(db_path)
    assert rc == 1 and not d["ok"]
    r = run_check(db_path, "--repair")
    assert r.returncode == 1
    assert "nothing" in r.stdout
    assert (db_path / "pool").read_bytes() == bytes(4 << 20)  # and wrote nothing
    assert not index(db_path).exists()


# ------------------------------------------------------------------ bytes owned twice


def forge(data: bytes, rec: dict, voff: int, vlen: int) -> tuple[bytes, bytes, bytes]:
    """The record `rec` rewritten (with valid checksums) to name the value at
    [voff, voff + vlen); returns (record bytes, key, value)."""
    value = data[voff:voff + vlen]
    out = bytearray(data[rec["off"]:rec["off"] + REC_SIZE])
    struct.pack_into("<I", out, 8, crc32c(value))
    struct.pack_into("<QQ", out, 32, voff, vlen)
    key = data[rec["koff"]:rec["koff"] + rec["klen"]]
    struct.pack_into("<I", out, 0, crc32c(key + bytes(out[4:])))
    return bytes(out), key, value


def test_overlapping_references_are_doubly_owned_bytes(db_path):
    # Forge a record (with valid checksums) whose value lies inside another
    # live key's value: no checksum catches it, the ownership check does.
    expect = build(db_path, n=10, where="log-only")
    path = pool(db_path)
    data = path.read_bytes()
    recs = puts(data)
    owner, forged = recs[2], recs[6]
    voff = owner["voff"] + 1
    rec, key, value = forge(data, forged, voff, owner["vlen"] - 2)
    overwrite(path, forged["off"], rec)
    expect[key] = value
    assert contents(db_path) == expect                        # open() sees nothing wrong
    rc, d = check_json(db_path)
    assert rc == 1 and d["overlaps"] == 1
    [p] = d["problems"]
    assert p["kind"] == "overlap" and p["offset"] == voff
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["relocated"] == 1 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_overlapping_reference_in_the_index(db_path):
    # The same, forged into the index file (a valid commit): open() serves it.
    from pastedb.core.btree_testing import BTreeTester

    expect = build(db_path, n=10)
    data = pool(db_path).read_bytes()
    refs = dict(index_items(db_path))
    owner = refs[b"key002"]
    voff, vlen = owner[1] + 1, owner[2] - 2
    value = data[voff:voff + vlen]
    with BTreeTester(str(index(db_path)), create=False) as t:
        applied = t.applied_lsn
        t.begin()
        koff, _v, _l, lsn, klen, _c, _e = refs[b"key006"]
        t.put(b"key006", (koff, voff, vlen, lsn, klen, crc32c(value)))
        t.commit(applied)
    expect[b"key006"] = value
    assert contents(db_path) == expect
    rc, d = check_json(db_path)
    assert rc == 1 and d["overlaps"] == 1
    [p] = d["problems"]
    assert p["kind"] == "overlap" and p["offset"] == voff and "key006" in p["message"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["relocated"] == 1 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_reference_into_a_log_chunk(db_path):
    expect = build(db_path, n=10, where="log-only")
    path = pool(db_path)
    data = path.read_bytes()
    recs = puts(data)
    forged = recs[4]
    rec, key, value = forge(data, forged, recs[0]["off"], 3 * REC_SIZE)   # the first records
    overwrite(path, forged["off"], rec)
    rc, d = check_json(db_path)
    assert rc == 1
    assert [p["kind"] for p in d["problems"]] == ["overlap"]
    assert "log chunk" in d["problems"][0]["message"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    expect[key] = value
    assert_repaired(db_path, expect)


# ------------------------------------------------------------------ the index file


def test_deleted_index_is_rebuilt_from_the_whole_log(db_path):
    expect = build_history(db_path)
    index(db_path).unlink()
    with pytest.raises(pastedb.CorruptionError) as ei:
        pastedb.open(db_path)
    assert ei.value.path == str(index(db_path))
    assert "pastedb-check --repair" in str(ei.value)
    rc, d = check_json(db_path)
    assert rc == 1
    [p] = d["problems"]                                       # (no "log-gone": it is all there)
    assert p["kind"] == "index" and p["file"] == str(index(db_path)) and "missing" in p["message"]
    assert d["index"]["state"] == "missing"
    assert d["keys"] == len(expect) and d["keys_lost"] == 0    # from the whole log
    assert d["log"]["head_lsn"] == 1                          # the chain from its start
    r = run_check(db_path)
    assert r.returncode == 1 and str(index(db_path)) in r.stdout
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    rep = d["repair"]
    assert rep["performed"] and rep["index_rebuilt"] and not rep["log_rewritten"]
    assert rep["lost"] == [] and rep["index_backup"] is None and rep["kept_keys"] == len(expect)
    assert_repaired(db_path, expect)
    # every acknowledged key comes back with its value, and the database works on
    with pastedb.open(db_path) as db:
        assert db.stats()["recovered_records"] == 0          # the new index covers the log
        db[b"new"] = expect[b"new"] = b"after the repair"
        db.checkpoint()
    assert contents(db_path) == expect
    assert check_json(db_path)[0] == 0


def test_deleted_index_with_records_after_its_checkpoint(db_path):
    # The log holds writes the index did not have yet: the rebuild takes them
    # too, and a torn tail stays cut.
    expect = build_history(db_path)
    with unindexed(db_path) as db:
        for i in range(30):
            db[b"h%04d" % i] = expect[b"h%04d" % i] = b"late %d" % i
        with db.batch() as b:
            b.delete(b"h0031")
            expect.pop(b"h0031", None)
            b.put(b"late", b"batch")
            expect[b"late"] = b"batch"
    last = chain(pool(db_path).read_bytes())[-1]
    overwrite(pool(db_path), last["off"] + REC_SIZE, random.Random(1).randbytes(100))
    index(db_path).unlink()
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert d["repair"]["lost"] == [] and not d["repair"]["log_rewritten"]
    assert_repaired(db_path, expect)


def test_deleted_index_when_the_older_log_is_gone(db_path):
    # The engine reuses the log chunks behind its head once the index holds
    # them.  Without the index, the keys last written before the head are
    # gone and cannot even be named: the check says so, and the repair keeps
    # what the log still has, reporting from which LSN on.
    before, after = {}, {}
    with pastedb.open(db_path, persist="none") as db:
        db._checkpoint_policy(every=1 << 62, interval=10**6)
        for i in range(300):
            db[b"old%03d" % i] = before[b"old%03d" % i] = b"before %d" % i
        db.checkpoint()
        for i in range(0, 300, 2):
            db[b"old%03d" % i] = after[b"old%03d" % i] = b"rewritten %d" % i
        db[b"new"] = after[b"new"] = b"after the checkpoint"
        del db[b"old001"]
    data = pool(db_path).read_bytes()
    # the checkpoint ended the first chunk with a LINK (the log head moved to
    # a fresh chunk, and the close moved it on again)
    link = [r for r in walk_chain(data, HEADER_SIZE, 1) if r["type"] == REC_LINK][0]
    assert link["lsn"] == 301 and link["off"] < HEADER_SIZE + CHUNK_SIZE
    head_lsn = link["lsn"] + 1                                # where the surviving log starts
    assert superblock(data)["log_head_lsn"] >= head_lsn
    # the first chunk, reused for something else
    overwrite(pool(db_path), HEADER_SIZE, random.Random(4).randbytes(CHUNK_SIZE))
    assert contents(db_path) == {**{k: v for k, v in before.items() if k != b"old001"}, **after}
    index(db_path).unlink()
    rc, d = check_json(db_path)
    assert rc == 1
    kinds = [p["kind"] for p in d["problems"]]
    assert "index" in kinds and "log-gone" in kinds
    gone = next(p for p in d["problems"] if p["kind"] == "log-gone")
    assert f"LSN {head_lsn}" in gone["message"] and "cannot be known" in gone["message"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert d["repair"]["lost_before_lsn"] == head_lsn
    # what the log still has comes back, with the right values; nothing else
    assert contents(db_path) == after
    assert check_json(db_path)[0] == 0


def leaf_page(db_path) -> int:
    pages = index_state(db_path)["pages"]
    return next(pg for pg, level in pages if level == 0)


@pytest.mark.parametrize("page", ["leaf", "branch"])
def test_flipped_byte_in_an_index_page(db_path, page):
    expect = build_history(db_path)
    pages = index_state(db_path)["pages"]
    pg = next(p for p, level in pages if (level == 0) == (page == "leaf"))
    flip(index(db_path), pg * PAGE_SIZE + 200, 0x10)
    damaged = index(db_path).read_bytes()
    with pytest.raises(pastedb.CorruptionError) as ei:         # reading it fails loudly
        contents(db_path)
    assert ei.value.path == str(index(db_path))
    rc, d = check_json(db_path)
    assert rc == 1
    assert d["problems"] and all(p["kind"] == "index" and p["file"] == str(index(db_path))
                                 for p in d["problems"])
    assert f"page {pg}" in d["problems"][0]["message"]
    assert d["index"]["state"] == "damaged" and d["keys"] == len(expect)
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert d["repair"]["index_rebuilt"] and not d["repair"]["log_rewritten"]
    assert d["repair"]["lost"] == []
    backup = Path(d["repair"]["index_backup"])
    assert backup == db_path / "index.before-repair" and backup.read_bytes() == damaged
    assert_repaired(db_path, expect)


def test_index_without_a_valid_meta_page(db_path):
    expect = build_history(db_path)
    overwrite(index(db_path), 0, bytes(2 * PAGE_SIZE))
    with pytest.raises(pastedb.CorruptionError) as ei:
        pastedb.open(db_path)
    assert ei.value.path == str(index(db_path))
    rc, d = check_json(db_path)
    assert rc == 1 and d["index"]["state"] == "damaged"
    [p] = d["problems"]
    assert p["kind"] == "index" and "cannot be used" in p["message"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_index_that_lost_its_last_commit(db_path):
    # Its newest meta page is damaged: the tree falls back to the commit
    # before, which covers less of the log than the superblock says.
    expect = build_history(db_path)
    metas = index_metas(index(db_path))
    newest = max(metas, key=lambda m: m["txn"])
    flip(index(db_path), newest["page"] * PAGE_SIZE + 100)
    rc, d = check_json(db_path)
    assert rc == 1 and d["index"]["state"] == "stale"
    [p] = d["problems"]
    assert p["kind"] == "index" and "lost a commit" in p["message"]
    with pytest.raises(pastedb.CorruptionError):
        pastedb.open(db_path)
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_value_named_only_by_the_index_is_verified(db_path):
    # Its log record lies before the log head, so open() does not see it
    # (only a read of that key would): the check must find it, and the
    # repair drops the key, reporting it.
    expect = closed_two_chunks(db_path)
    refs = dict(index_items(db_path))
    koff, voff, vlen, lsn, klen, vcrc, _expire = refs[b"k00010"]
    assert lsn < superblock(pool(db_path).read_bytes())["log_head_lsn"]
    flip(pool(db_path), voff + vlen - 1)
    rc, d = check_json(db_path)
    assert rc == 1
    [p] = d["problems"]
    assert p["kind"] == "value-crc" and p["offset"] == voff and p["file"] == str(pool(db_path))
    assert "k00010" in p["message"] and "index" in p["message"]
    assert [k["key"] for k in d["lost"]] == ["k00010"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    assert lost_keys(d) == ["k00010"] and d["repair"]["lost"][0]["lsn"] == lsn
    assert not d["repair"]["log_rewritten"]                  # a new index suffices
    assert_repaired(db_path, expect, lost=[b"k00010"])


def test_index_entry_beyond_the_end_of_the_file(db_path):
    # A cut pool file takes values the index still names (their records lie
    # before the log head): every such key is named LOST.
    expect = closed_two_chunks(db_path)
    refs = dict(index_items(db_path))
    cut = refs[b"k04000"][1] + 1                               # inside k04000's value
    gone = sorted(k for k, r in refs.items() if r[1] + r[2] > cut)
    with open(pool(db_path), "r+b") as f:
        f.truncate(cut)
    rc, d = check_json(db_path)
    assert rc == 1
    rc, d = check_json(db_path, "--repair")
    assert rc == 0, d["problems"]
    assert lost_keys(d) == [k.decode() for k in gone] and b"k04000" in gone
    assert_repaired(db_path, expect, lost=gone)


# ------------------------------------------------------------------ cannot run


def test_not_a_pastedb_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_check(empty)
    assert r.returncode == 2 and "not a pastedb database" in r.stderr
    r = run_check(tmp_path / "missing")
    assert r.returncode == 2 and "does not exist" in r.stderr
    (tmp_path / "file").write_bytes(b"x")
    assert run_check(tmp_path / "file").returncode == 2
    rc, d = check_json(empty)
    assert rc == 2 and d["ok"] is False and "error" in d
    assert run_check(empty, "--bogus-option").returncode == 2


def test_locked_database(db_path):
    build(db_path)
    with pastedb.open(db_path) as db:
        r = run_check(db_path)
        assert r.returncode == 2
        assert "open in another process" in r.stderr
        r = run_check(db_path, "--repair")
        assert r.returncode == 2
        db[b"still"] = b"works"                               # our lock was not disturbed
    assert run_check(db_path).returncode == 0


# ------------------------------------------------------------------ no false alarms


def test_power_loss_images_are_never_reported_as_damage(tmp_path):
    # Images a power loss could leave (persist="crashsim", see test_crashsim)
    # hold torn tails and orphaned checkpoint chains, never damage: the check
    # must pass each one and find exactly the keys open() then recovers.
    from pastedb.check import verify

    rnd = random.Random(77)
    db = pastedb.open(tmp_path / "db", persist="crashsim", sync=False)
    taken = n = 0
    try:
        while taken < 40:
            key = b"k%02d" % rnd.randrange(20)
            x = rnd.random()
            if x < 0.6:
                db.put(key, rnd.randbytes(rnd.choice([0, 10, 300, 3000])))
            elif x < 0.8:
                db.delete(key)
            else:
                with db.batch() as b:
                    for _ in range(rnd.randrange(2, 5)):
                        b.put(b"k%02d" % rnd.randrange(20), b"batch%d" % n)
            n += 1
            if rnd.random() < 0.15:
                db.sync()
            if rnd.random() < 0.05:
                db.checkpoint()
            if rnd.random() < 0.4:
                img = tmp_path / f"img{taken}"
                img.mkdir()
                db._crash_image(img, taken)
                tally.image()
                res = verify(str(img))
                try:
                    assert res.ok, [p.message for p in res.problems]
                    keys = set(res.replay.state) if res.replay else set()
                finally:
                    res.checker.close()
                assert keys == set(contents(img)), taken
                taken += 1
    finally:
        db.close()
