"""Space reclamation: dead segments are reused, compact() gives space back,
and no reuse ever hands out bytes a reader, the tree or recovery still needs.

* an overwrite-heavy workload stays bounded, and after compact() the pool
  file is within 1.5x of the live bytes (plus a fixed slack);
* power-loss images taken at random moments of a workload that overwrites,
  deletes, checkpoints and compacts (segments freed and reused all along)
  hold exactly the acknowledged state;
* kill -9 of a process that overwrites while another thread compacts in a
  loop never loses an acknowledged write;
* readers and iterators running during reuse only ever see values written
  for their key.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
import tally
from killed import background_rounds, run_until_killed
from pastedb.core.btree_testing import BTreeTester

import pastedb

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def value_for(key: bytes, gen: int, size: int) -> bytes:
    head = b"%s/%d/" % (key, gen)
    body = hashlib.blake2b(head, digest_size=32).digest()
    return head + (body * (size // 32 + 1))[:size]


def test_overwrites_reuse_segments_and_compact_gives_space_back(db_path):
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=4000, interval=3600)
    keys = [b"key%06d" % i for i in range(30000)]
    for gen in range(10):
        for k in keys:
            db.put(k, value_for(k, gen, 1000))
    st = db.stats()
    assert st["space_reclaim"] and st["freed_segments"] > 0 and st["reused_segments"] > 0
    live = st["live_bytes"]
    # Without reuse the pool would hold all ten generations.
    assert st["pool_file_bytes"] < 10 * live * 0.6
    db.compact()
    st = db.stats()
    assert st["live_bytes"] == live
    assert st["pool_file_bytes"] <= 1.5 * live + 16 * MiB, st
    assert os.path.getsize(db_path / "pool") == st["pool_file_bytes"]
    for k in keys:
        assert db.get(k) == value_for(k, 9, 1000)
    db.close()
    with pastedb.open(db_path) as db:
        assert len(db) == len(keys)
        for k in keys[::7]:
            assert db.get(k) == value_for(k, 9, 1000)
        # and the reclaimed space is used again
        for k in keys:
            db.put(k, value_for(k, 10, 1000))
        assert db.stats()["pool_file_bytes"] <= 3 * live + 32 * MiB
    t = BTreeTester(db_path / "index", create=False)
    try:
        assert t.check() == []
    finally:
        t.close()



@pytest.mark.parametrize("vsize", [256 * 1024 + 100, MiB + 8])
def test_large_values_are_packed_and_stay_within_the_space_bound(db_path, vsize):
    # Values just over a quarter or a whole segment once got whole 1 MiB
    # segments of their own (257 KiB took 1 MiB: the file was 4x the data).
    # Packed end to end, across segment boundaries, they cost their bytes --
    # also when every key is overwritten and the dead segments are reused.
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=200, interval=3600)
    keys = [b"big%05d" % i for i in range((160 * MiB) // vsize)]
    for gen in range(3):
        for k in keys:
            db.put(k, value_for(k, gen, vsize))
        db.checkpoint()
        st = db.stats()
        live = st["live_bytes"]
        assert live == sum(len(k) + len(value_for(k, gen, vsize)) for k in keys)
        if gen == 0:
            # nothing dead yet: the stated bound (1.5x + 64 MiB) holds
            # (before the packing the file was 5x the data here)
            assert st["file_bytes"] <= st["space_bound_bytes"], st
        else:
            # overwrites as fast as sync=False goes outrun the background
            # free passes for a while; measured 2.4x at the worst (11x
            # before the packing)
            assert st["file_bytes"] <= 3 * live + 64 * MiB, st
    for k in keys:
        assert db.get(k) == value_for(k, 2, vsize)
    db.close()
    with pastedb.open(db_path) as db:
        assert len(db) == len(keys)
        for k in keys[::5]:
            assert db.get(k) == value_for(k, 2, vsize)


def test_large_values_fill_a_fresh_file_end_to_end(db_path):
    # the first generation alone: the allocator's mark (what the file must
    # hold) is within a few segments of the data written
    db = pastedb.open(db_path, sync=False)
    vsize = 256 * 1024 + 100
    keys = [b"big%05d" % i for i in range(400)]
    for k in keys:
        db.put(k, value_for(k, 0, vsize))
    db.checkpoint()
    data = sum(len(k) + len(value_for(k, 0, vsize)) for k in keys)
    st = db.stats()
    db.close()
    # the file is grown ahead of the allocator in steps; what is not free
    # and not that step is the data, its log and the superblock segment
    used = st["pool_file_bytes"] - st["free_bytes"]
    assert used <= data * 1.1 + 48 * MiB, (used, data, st)
    assert used < data * 2, "large values are not packed: one segment each"

def test_a_growing_file_is_no_full_disk_and_compact_ends(db_path):
    # A growth of the file in the foreground (a burst the background grower
    # did not keep up with) once marked the disk full on a disk with room:
    # compact() then went on round after round (it relocates while a full
    # disk gives it less than it needs), and with a snapshot holding the
    # freed segments each round's moves grew the file again: 8.5 M
    # relocations of 150,000 keys in 71 rounds over 66 s, and a file of
    # 130 MB became 2.6 GB.
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=10**9, interval=3600)
    dead = [b"key%06d" % i for i in range(20000)]
    keys = [b"filler%07d" % i for i in range(150000)]
    db.put_many((k, b"v" * 100) for k in dead)
    db.checkpoint()
    db.delete_many(dead)
    db[b"big"] = b"x" * (3 * MiB)
    db.delete(b"big")
    db.put_many((k, b"f") for k in keys)
    assert not db.stats()["disk_full"]
    with db.snapshot() as snap:
        db.checkpoint()
        for _ in range(3):
            db.compact()
        st = db.stats()
        assert not st["disk_full"]
        assert st["relocated_keys"] <= 3 * len(keys), st     # one move a round at most
        assert st["pool_file_bytes"] < 400 * MiB, st
        assert len(snap) == len(keys)
    assert len(db) == len(keys) and db[keys[1]] == b"f"
    db.close()


def test_compact_keeps_every_key_of_a_mixed_database(db_path):
    rng = random.Random(11)
    model: dict[bytes, bytes] = {}
    with pastedb.open(db_path, sync=False) as db:
        db._checkpoint_policy(every=500, interval=3600)
        for i in range(40000):
            k = b"k%05d" % rng.randrange(8000)
            r = rng.random()
            if r < 0.2:
                db.delete(k)
                model.pop(k, None)
            else:
                size = rng.choice([0, 10, 300, 3000, 70000]) if r < 0.95 else 400_000
                v = value_for(k, i, size)
                db.put(k, v)
                model[k] = v
            if i % 9000 == 8999:
                db.compact()
                assert dict(db.items()) == model
        db.compact()
        assert dict(db.items()) == model
        assert db.stats()["live_bytes"] == sum(len(k) + len(v) for k, v in model.items())
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == model


def test_readers_during_reuse_see_only_their_keys_values(db_path):
    """Writers overwrite a small key set fast (segments die and are reused
    every few checkpoints) while readers get and iterate: every value read
    must be one written for that key."""
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=300, interval=0.001)
    keys = [b"r%04d" % i for i in range(500)]
    for k in keys:
        db.put(k, value_for(k, 0, 2000))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(3)
        gen = 1
        try:
            while not stop.is_set():
                k = rng.choice(keys)
                db.put(k, value_for(k, gen, rng.choice([100, 2000, 9000])))
                gen += 1
                if gen % 5000 == 0:
                    db.compact()
        except BaseException as e:      # pragma: no cover - reported below
            errors.append(e)

    def check(k: bytes, v: bytes) -> None:
        head, _, _ = v.partition(b"/")
        assert head == k, (k, v[:40])
        gen = int(v.split(b"/")[1])
        assert v == value_for(k, gen, len(v) - len(b"%s/%d/" % (k, gen)))

    w = threading.Thread(target=writer)
    w.start()
    try:
        deadline = time.monotonic() + 4
        rng = random.Random(5)
        passes = 0
        while time.monotonic() < deadline:
            for _ in range(2000):
                k = rng.choice(keys)
                check(k, db.get(k))
            for k, v in db.items():
                check(k, v)
            passes += 1
    finally:
        stop.set()
        w.join()
    assert not errors, errors
    st = db.stats()
    assert st["reused_segments"] > 0, st
    db.close()


def test_power_loss_images_with_reuse_hold_the_acknowledged_state(tmp_path):
    """crashsim: every barrier updates the durable image; images taken at
    random moments (pending writes kept, torn or lost) must open and hold
    exactly the acknowledged state -- with segments being freed and reused
    throughout (the free pass, reuse and the cleaner all run; crashsim only
    skips cutting the file)."""
    rng = random.Random(21)
    d = tmp_path / "db"
    db = pastedb.open(d, persist="crashsim")
    db._checkpoint_policy(every=40, interval=3600)
    model: dict[bytes, bytes] = {}
    images = 0
    keys = [b"p%03d" % i for i in range(60)]
    try:
        for i in range(1200):
            k = rng.choice(keys)
            if rng.random() < 0.15:
                db.delete(k)
                model.pop(k, None)
            else:
                v = value_for(k, i, rng.choice([50, 900, 5000, 5000, 300_000]))
                db.put(k, v)
                model[k] = v
            if i % 200 == 199:
                db.compact()
            if rng.random() < 0.012:
                img = tmp_path / f"img{images}"
                img.mkdir()
                db._crash_image(img, rng.randrange(1 << 30))
                tally.image()
                with pastedb.open(img) as got:
                    assert dict(got.items()) == model, f"image {images} at op {i}"
                shutil.rmtree(img)
                images += 1
        assert db.stats()["reused_segments"] > 0
    finally:
        db.close()
    assert images >= 6


KILL_CHILD = r'''
import hashlib, os, random, sys, threading
sys.path.insert(0, {root!r})
import pastedb
path, seed = sys.argv[1], int(sys.argv[2])
db = pastedb.open(path, sync=True)
db._checkpoint_policy(every=64, interval=0.001)
def value(k, i):
    head = b"%s/%d/" % (k, i)
    return head + hashlib.blake2b(head, digest_size=32).digest() * (1 + i % 64)
{background}
background(db.compact)
rng = random.Random(seed)
i = 0
os.write(1, b"READY\n")
while True:
    k = b"k%03d" % rng.randrange(120)
    os.write(1, b"P %s %d\n" % (k, i))
    db.put(k, value(k, i))
    os.write(1, b"A %d\n" % i)
    i += 1
'''


def kill_value(k: bytes, i: int) -> bytes:
    head = b"%s/%d/" % (k, i)
    return head + hashlib.blake2b(head, digest_size=32).digest() * (1 + i % 64)


def test_kill_during_compaction_loses_nothing(tmp_path, crash_runs):
    path = tmp_path / "db"
    model: dict[bytes, bytes] = {}
    rng = random.Random(os.environ.get("PASTEDB_CRASH_SEED", "space-kill"))
    for run in range(max(3, crash_runs // 2)):
        seed = rng.randrange(1 << 30)
        out = run_until_killed(KILL_CHILD, [str(path), str(seed)], rng.uniform(0.1, 0.8))
        assert background_rounds(out) >= 1, "no compaction ran before the kill"
        inflight = None
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "P":
                inflight = (parts[1].encode(), int(parts[2]))
            elif len(parts) == 2 and parts[0] == "A" and inflight and int(parts[1]) == inflight[1]:
                model[inflight[0]] = kill_value(*inflight)
                inflight = None
        with pastedb.open(path) as db:
            got = dict(db.items())
        if inflight is not None and got.get(inflight[0]) == kill_value(*inflight):
            model[inflight[0]] = kill_value(*inflight)
        assert got == model, f"run {run} seed {seed}"
