"""pastedb-check: verification and repair of real database files.

Databases are built with pastedb.open, closed, then damaged at offsets found by
parsing the pool file with the layouts of pool.pxd (superblock) and reflog.pxd
(64-byte records).  The checker runs as a child process
(``python -m pastedb.check``), as a user runs it, so its exit code, its locking
and its output are what is tested.
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
from poolfmt import (  # noqa: F401  (the layout, shared with test_recovery.py)
    CHUNK_SIZE,
    CHUNK_SLOTS,
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
from pastedb.check import crc32c, crc32c_many

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


def superblock(data: bytes) -> dict:
    """The slot in force: valid magic, higher seq."""
    best = None
    for slot in (0, 1):
        f = SB.unpack_from(data, slot * SUPER_SLOT)
        if f[0] == b"PASTEDB\0" and (best is None or f[3] > best["seq"]):
            best = {"slot": slot, "seq": f[3], "head": f[4], "lsn": f[6]}
    assert best is not None
    return best


def chain(data: bytes) -> list[dict]:
    """Every record of the log in force, LINKs included, in order."""
    sb = superblock(data)
    return walk_chain(data, sb["head"], sb["lsn"])


def puts(data: bytes) -> list[dict]:
    return [r for r in chain(data) if r["type"] == REC_PUT]


def build(db_path, n=30, seed=1) -> dict:
    """n acknowledged puts of distinct keys; returns the model."""
    rng = random.Random(seed)
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        for i in range(n):
            k = b"key%03d" % i
            v = rng.randbytes(rng.randrange(8, 300))
            db[k] = v
            expect[k] = v
    return expect


def contents(db_path) -> dict:
    with pastedb.open(db_path, create=False) as db:
        return dict(db.items())


def assert_repaired(db_path, expect, lost=()):
    """After --repair: the check passes and open() returns exactly the model
    minus the lost keys."""
    rc, after = check_json(db_path)
    assert rc == 0 and after["ok"], after["problems"]
    want = {k: v for k, v in expect.items() if k not in set(lost)}
    assert contents(db_path) == want
    assert after["keys"] == len(want)


# ------------------------------------------------------------------ CRC32C


def test_crc32c_matches_the_engine_definition():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283            # the CRC-32C check value
    rng = random.Random(4)
    data = rng.randbytes(3 << 20 | 12345)
    # chaining equals one pass; the lane-parallel path equals the byte loop
    assert crc32c(data[100000:], crc32c(data[:100000])) == crc32c(data)
    reg = 0xFFFFFFFF
    from pastedb.check import _T
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


def test_clean_database(db_path):
    rng = random.Random(2)
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
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
    assert d["log"]["end"] == "clean" and d["log"]["invalid_records"] == 0
    assert d["log"]["dels"] == 100 and d["log"]["batches"] == 1
    # the human summary says the same
    r = run_check(db_path)
    assert r.returncode == 0
    assert f"{len(expect):,} keys" in r.stdout and "OK" in r.stdout
    # --quiet says nothing when all is well
    r = run_check(db_path, "--quiet")
    assert r.returncode == 0 and r.stdout == ""


def test_clean_database_after_checkpoint_and_many_chunks(db_path):
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        for i in range(CHUNK_SLOTS + 500):
            db[b"a%05d" % i] = expect[b"a%05d" % i] = b"%d" % i
        db.checkpoint()
        for i in range(50):
            db[b"a%05d" % i] = expect[b"a%05d" % i] = b"after"
    rc, d = check_json(db_path)
    assert rc == 0, d["problems"]
    assert d["keys"] == len(expect)
    assert d["log"]["chunks"] == 2 and d["log"]["links"] == 1
    assert d["superblock"]["in_force"] == 0                 # seq 2 after the checkpoint


def test_repair_of_a_clean_database_changes_nothing(db_path):
    build(db_path)
    before = pool(db_path).read_bytes()
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["performed"] is False
    assert pool(db_path).read_bytes() == before


# ------------------------------------------------------------------ crash artefacts are not problems


@pytest.mark.parametrize("junk", ["random", "half-record"])
def test_torn_tail_is_information(db_path, junk):
    expect = build(db_path)
    path = pool(db_path)
    data = path.read_bytes()
    last = puts(data)[-1]
    tail = last["off"] + REC_SIZE
    if junk == "random":
        bad = random.Random(3).randbytes(3 * REC_SIZE)
    else:
        rec = bytearray(data[last["off"]:tail])
        struct.pack_into("<Q", rec, 16, last["lsn"] + 1)
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
    with pastedb.open(db_path, persist="none") as db:
        with db.batch() as b:
            for i in range(5):
                b.put(b"batch%d" % i, b"v")
    path = pool(db_path)
    recs = puts(path.read_bytes())
    overwrite(path, recs[-1]["off"], bytes(REC_SIZE))         # its last record never landed
    rc, d = check_json(db_path)
    assert rc == 0 and d["keys"] == len(expect)
    assert d["log"]["dropped_batch"] == 4


# ------------------------------------------------------------------ damage


def test_flipped_byte_in_an_acknowledged_value(db_path):
    expect = build(db_path)
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
    assert [(k["key"], k["lsn"]) for k in d["repair"]["lost"]] == [("key012", victim["lsn"])]
    assert [x["lsn"] for x in d["repair"]["dropped_records"]] == [victim["lsn"]]
    assert d["before"]["problems"][0]["offset"] == victim["voff"]
    assert_repaired(db_path, expect, lost=[key])
    # and the repaired database keeps working
    with pastedb.open(db_path) as db:
        db[key] = b"rewritten"
    assert contents(db_path)[key] == b"rewritten"
    assert check_json(db_path)[0] == 0


def test_damaged_value_superseded_later_loses_nothing(db_path):
    expect = build(db_path, n=10)
    with pastedb.open(db_path, persist="none") as db:
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
def test_flipped_byte_in_a_middle_record(db_path, byte):
    expect = build(db_path)
    path = pool(db_path)
    rec = puts(path.read_bytes())[7]
    flip(path, rec["off"] + byte)
    rc, d = check_json(db_path)
    assert rc == 1
    assert any(p["offset"] == rec["off"] for p in d["problems"]), d["problems"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    # the record's key is reported (as the damaged record names it)
    assert [k["key"] for k in d["repair"]["lost"]] == ["key007"]
    assert_repaired(db_path, expect, lost=[b"key007"])


def test_flipped_bit_in_a_key_names_the_right_key(db_path):
    # key004's last byte ^ 0x04 reads "key000", another live key: the repair
    # must drop key004 (identified through the CRC), not the intact key000.
    expect = build(db_path)
    path = pool(db_path)
    rec = puts(path.read_bytes())[4]
    flip(path, rec["koff"] + rec["klen"] - 1, 0x04)
    rc, d = check_json(db_path)
    assert rc == 1 and [p["offset"] for p in d["problems"]] == [rec["off"]]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and [k["key"] for k in d["repair"]["lost"]] == ["key004"]
    assert_repaired(db_path, expect, lost=[b"key004"])


def test_damaged_record_of_an_overwritten_key_does_not_resurrect_the_old_value(db_path):
    expect = build(db_path, n=10)
    with pastedb.open(db_path, persist="none") as db:
        db[b"key004"] = b"second value"
        db[b"key050"] = expect[b"key050"] = b"later"
    path = pool(db_path)
    rec = puts(path.read_bytes())[10]                         # the second write of key004
    flip(path, rec["off"] + 33)                               # its voff: the record fails its crc
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    assert [k["key"] for k in d["repair"]["lost"]] == ["key004"]
    assert_repaired(db_path, expect, lost=[b"key004"])       # not the first value


def test_damaged_member_of_a_committed_batch(db_path):
    expect = build(db_path, n=5)
    with pastedb.open(db_path, persist="none") as db:
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


def test_damaged_link_record(db_path):
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        for i in range(CHUNK_SLOTS + 300):
            db[b"k%05d" % i] = expect[b"k%05d" % i] = b"v%d" % i
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


def test_zeroed_end_of_a_full_chunk(db_path):
    # The last record of the first chunk and its LINK are zeroed: open() sees
    # an empty slot and would cut the log there; the next chunk is found by
    # scanning and its records prove the cut lost acknowledged writes.
    expect = {}
    with pastedb.open(db_path, persist="none") as db:
        for i in range(CHUNK_SLOTS + 300):
            db[b"k%05d" % i] = expect[b"k%05d" % i] = b"v%d" % i
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


def test_truncated_pool_file(db_path):
    expect = build(db_path)
    path = pool(db_path)
    recs = puts(path.read_bytes())
    with open(path, "r+b") as f:
        f.truncate(recs[20]["voff"] + 1)
    rc, d = check_json(db_path)
    assert rc == 1
    assert any(p["kind"] == "truncated" for p in d["problems"]), d["problems"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    assert [k["key"] for k in d["repair"]["lost"]] == ["key020"]
    assert len(d["repair"]["dropped_records"]) == 10           # key020 and the 9 after it
    got = contents(db_path)
    assert got == {k: expect[k] for k in list(expect)[:20]}


def test_zeroed_superblock_slot_in_force(db_path):
    expect = build(db_path)
    with pastedb.open(db_path, persist="none") as db:
        db.checkpoint()
        for i in range(5):
            db[b"after%d" % i] = expect[b"after%d" % i] = b"v%d" % i
        del db[b"key001"]
        del expect[b"key001"]
    path = pool(db_path)
    sb = superblock(path.read_bytes())
    overwrite(path, sb["slot"] * SUPER_SLOT, bytes(SUPER_SLOT))
    # open() would fall back to the older slot and silently lose the writes
    # made after the checkpoint; the check says so.
    rc, d = check_json(db_path)
    assert rc == 1
    assert [p["kind"] for p in d["problems"]] == ["lost-chain"]
    assert d["keys"] == len(expect)
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_zeroed_superblock_never_checkpointed(db_path):
    expect = build(db_path)
    path = pool(db_path)
    overwrite(path, 0, bytes(HEADER_SIZE))                    # both slots
    rc, d = check_json(db_path)
    assert rc == 1
    assert d["problems"][0]["kind"] == "superblock" and d["problems"][0]["offset"] == 0
    assert d["superblock"]["in_force"] is None
    with pytest.raises(pastedb.CorruptionError):
        pastedb.open(db_path)
    rc, d = check_json(db_path, "--repair")                   # rebuilt from a scan
    assert rc == 0 and d["repair"]["performed"] and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_garbage_in_both_superblock_slots_after_checkpoints(db_path):
    expect = build(db_path)
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


def test_rebuild_passes_over_the_chain_of_a_crashed_checkpoint(db_path):
    # A checkpoint whose superblock never landed leaves an orphan chain (the
    # same keys, later LSNs); the reopened database then wrote one more key
    # into the old chain.  With both superblock slots lost as well, the scan
    # must rebuild from the old chain, not the orphan.
    expect = build(db_path)
    path = pool(db_path)
    with pastedb.open(db_path, persist="none") as db:
        header = path.read_bytes()[:HEADER_SIZE]
        db.checkpoint()
    overwrite(path, 0, header)                                # the crash: old superblock
    with pastedb.open(db_path, persist="none") as db:
        db[b"one more"] = expect[b"one more"] = b"write"
    assert check_json(db_path)[0] == 0                        # the orphan is no problem
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


def test_overlapping_references_are_doubly_owned_bytes(db_path):
    # Forge a record (with valid checksums) whose value lies inside another
    # live key's value: no checksum catches it, the ownership check does.
    expect = build(db_path, n=10)
    path = pool(db_path)
    data = path.read_bytes()
    recs = puts(data)
    owner, forged = recs[2], recs[6]
    voff, vlen = owner["voff"] + 1, owner["vlen"] - 2
    value = data[voff:voff + vlen]
    rec = bytearray(data[forged["off"]:forged["off"] + REC_SIZE])
    struct.pack_into("<I", rec, 8, crc32c(value))
    struct.pack_into("<QQ", rec, 32, voff, vlen)
    key = data[forged["koff"]:forged["koff"] + forged["klen"]]
    struct.pack_into("<I", rec, 0, crc32c(key + bytes(rec[4:])))
    overwrite(path, forged["off"], bytes(rec))
    expect[key] = value
    assert contents(db_path) == expect                        # open() sees nothing wrong
    rc, d = check_json(db_path)
    assert rc == 1 and d["overlaps"] == 1
    [p] = d["problems"]
    assert p["kind"] == "overlap" and p["offset"] == voff
    rc, d = check_json(db_path, "--repair")
    assert rc == 0 and d["repair"]["relocated"] == 1 and d["repair"]["lost"] == []
    assert_repaired(db_path, expect)


def test_reference_into_a_log_chunk(db_path):
    expect = build(db_path, n=10)
    path = pool(db_path)
    data = path.read_bytes()
    recs = puts(data)
    forged = recs[4]
    voff, vlen = recs[0]["off"], 3 * REC_SIZE                 # the first log records
    value = data[voff:voff + vlen]
    rec = bytearray(data[forged["off"]:forged["off"] + REC_SIZE])
    struct.pack_into("<I", rec, 8, crc32c(value))
    struct.pack_into("<QQ", rec, 32, voff, vlen)
    key = data[forged["koff"]:forged["koff"] + forged["klen"]]
    struct.pack_into("<I", rec, 0, crc32c(key + bytes(rec[4:])))
    overwrite(path, forged["off"], bytes(rec))
    rc, d = check_json(db_path)
    assert rc == 1
    assert [p["kind"] for p in d["problems"]] == ["overlap"]
    assert "log chunk" in d["problems"][0]["message"]
    rc, d = check_json(db_path, "--repair")
    assert rc == 0
    expect[key] = value
    assert_repaired(db_path, expect)


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
                db._crash_image(img / "pool", taken)
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
