"""The lazy persistent index: pending table + B-tree, checkpoints, bounded replay.

* a model test (hypothesis) drives puts, deletes, batches, checkpoints and
  reopens against a SortedDict, in both index modes, with the indexer thread
  checkpointing on its own in between -- every get, len() and ordered range
  (both directions) must match the model, and the B-tree file must pass its
  structure check (order, fill, checksums, every page reachable once);
* iteration stays ordered and complete while writers and the indexer run;
* kill -9 of a process that checkpoints in a loop (explicitly and from the
  indexer) never loses an acknowledged write and never leaves a database that
  does not open;
* open replays only the records after the last checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from killed import background_rounds, run_until_killed
from pastedb.core.btree_testing import BTreeTester
from sortedcontainers import SortedDict

import pastedb

ROOT = Path(__file__).resolve().parent.parent


def tree_problems(db_path: Path) -> list:
    t = BTreeTester(db_path / "index", create=False)
    try:
        return t.check()
    finally:
        t.close()


def check_against_model(db, model: SortedDict, probe: list[bytes]) -> None:
    assert len(db) == len(model)
    for k in probe:
        assert db.get(k) == model.get(k), k
    assert list(db.items()) == list(model.items())
    assert list(db.keys(reverse=True)) == list(reversed(model.keys()))
    if model:
        keys = list(model.keys())
        lo, hi = keys[len(keys) // 3], keys[(2 * len(keys)) // 3]
        assert list(db.keys(lo, hi)) == list(model.irange(lo, hi, inclusive=(True, False)))
        assert list(db.keys(lo, hi, reverse=True)) == \
            list(model.irange(lo, hi, inclusive=(True, False), reverse=True))


KEYS = st.binary(min_size=0, max_size=6).map(lambda b: b"k" + b)
VALUES = st.binary(max_size=300)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, VALUES),
        st.tuples(st.just("del"), KEYS),
        st.tuples(st.just("batch"), st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)),
                                             min_size=1, max_size=6)),
        st.tuples(st.just("checkpoint")),
        st.tuples(st.just("compact")),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("check")),
    ),
    min_size=1, max_size=60)


@pytest.mark.parametrize("mode", ["lazy", "eager"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, every=st.sampled_from([1, 3, 50, 10 ** 9]))
def test_model(tmp_path_factory, mode, ops, every):
    path = tmp_path_factory.mktemp("lazy") / "db"
    model: SortedDict = SortedDict()
    seen: set[bytes] = set()

    def opened():
        d = pastedb.open(path, sync=False, persist="none", index=mode)
        d._checkpoint_policy(every=every, interval=0.001 if every < 10 ** 9 else 3600)
        return d

    db = opened()
    try:
        for op in ops:
            if op[0] == "put":
                db.put(op[1], op[2])
                model[op[1]] = op[2]
                seen.add(op[1])
            elif op[0] == "del":
                assert db.delete(op[1]) == (op[1] in model)
                model.pop(op[1], None)
                seen.add(op[1])
            elif op[0] == "batch":
                with db.batch() as b:
                    for k, v in op[1]:
                        seen.add(k)
                        if v is None:
                            b.delete(k)
                            model.pop(k, None)
                        else:
                            b.put(k, v)
                            model[k] = v
            elif op[0] == "checkpoint":
                db.checkpoint()
                assert db.stats()["index_pending"] == 0
            elif op[0] == "compact":
                db.compact()
                assert db.stats()["index_pending"] == 0
            elif op[0] == "reopen":
                db.close()
                assert tree_problems(path) == []
                db = opened()
                assert db.stats()["recovered_records"] == 0
            else:
                check_against_model(db, model, sorted(seen))
        check_against_model(db, model, sorted(seen))
        st_ = db.stats()
        assert st_["keys"] == len(model)
        assert st_["live_bytes"] == sum(len(k) + len(v) for k, v in model.items())
    finally:
        db.close()
    assert tree_problems(path) == []
    t = BTreeTester(path / "index", create=False)
    try:
        assert [k for k, _ in t.items()] == list(model.keys())
    finally:
        t.close()
    shutil.rmtree(path.parent)        # one directory an example: keep the run's disk small


def test_checkpoint_advances_the_log_head_and_bounds_replay(db_path):
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=10 ** 9, interval=3600)
    for i in range(20000):
        db.put(b"k%06d" % i, b"v%d" % i)
    before = db.stats()
    assert before["index_pending"] == 20000 and before["index_keys"] == 0
    db.checkpoint()
    after = db.stats()
    assert after["index_pending"] == 0 and after["index_keys"] == 20000
    assert after["log_head_lsn"] > before["log_head_lsn"]
    assert after["index_applied_lsn"] == after["log_next_lsn"] - 1   # LINK records count too
    db.close()


CHILD = r'''
import os, sys, time
sys.path.insert(0, {root!r})
import pastedb
path, n_after, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = pastedb.open(path, sync=True)
if policy == "never":
    db._checkpoint_policy(every=10 ** 9, interval=3600)
for i in range(1000):
    db.put(b"base%04d" % i, b"b" * 100)
db.checkpoint()
for i in range(n_after):
    db.put(b"tail%04d" % i, b"t" * 100)
os.write(1, b"DONE\n")
time.sleep(60)
'''


def run_until_done(args: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT))] + args,
                            stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line == b"DONE\n", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("n_after", [0, 7, 300])
def test_open_after_a_crash_replays_only_the_unapplied_tail(db_path, n_after):
    run_until_done([str(db_path), str(n_after), "never"])
    with pastedb.open(db_path) as db:
        st_ = db.stats()
        assert st_["recovered_records"] == n_after
        assert st_["index_keys"] == 1000
        assert len(db) == 1000 + n_after
        assert db.get(b"tail%04d" % (n_after - 1)) == (b"t" * 100 if n_after else None)


def test_iteration_while_writers_and_the_indexer_run(db_path):
    """Stable keys never change; churn keys are rewritten and deleted while
    readers iterate and the indexer checkpoints every few records.  Every
    pass must be strictly ordered, hold every stable key with its value, and
    every churn value must be one written for that key."""
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=40, interval=0.001)
    stable = {b"s%05d" % i: b"stable-%05d" % i for i in range(0, 6000, 2)}
    with db.batch() as b:
        for k, v in stable.items():
            b.put(k, v)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                k = b"s%05d" % (rng.randrange(3000) * 2 + 1)     # odd: churn keys
                if rng.random() < 0.3:
                    db.delete(k)
                else:
                    db.put(k, k + b"=" + str(rng.random()).encode())
        except BaseException as e:          # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    passes = 0
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline or passes < 4:
            rev = passes % 2 == 1
            items = list(db.items(reverse=rev))
            keys = [k for k, _ in items]
            assert keys == sorted(keys, reverse=rev)
            assert len(set(keys)) == len(keys)
            got_stable = {k: v for k, v in items if int(k[1:]) % 2 == 0}
            assert got_stable == stable
            for k, v in items:
                if int(k[1:]) % 2:
                    assert v.startswith(k + b"=")
            passes += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert db.stats()["checkpoints"] > 0
    db.close()
    assert tree_problems(db_path) == []


KILL_CHILD = r'''
import hashlib, os, random, sys, threading
sys.path.insert(0, {root!r})
import pastedb
path, seed = sys.argv[1], int(sys.argv[2])
db = pastedb.open(path, sync=True)
db._checkpoint_policy(every=random.Random(seed).choice([4, 32, 256]), interval=0.001)
def value(k, i):
    return k + b"|%d|" % i + hashlib.sha256(k + b"%d" % i).digest() * (i % 40)
{background}
background(db.checkpoint)
rng = random.Random(seed)
i = 0
os.write(1, b"READY\n")
while True:
    k = b"k%03d" % rng.randrange(200)
    if rng.random() < 0.15:
        os.write(1, b"D %s %d\n" % (k, i))
        db.delete(k)
        os.write(1, b"A %d\n" % i)
    else:
        os.write(1, b"P %s %d\n" % (k, i))
        db.put(k, value(k, i))
        os.write(1, b"A %d\n" % i)
    i += 1
'''


def kv_value(k: bytes, i: int) -> bytes:
    return k + b"|%d|" % i + hashlib.sha256(k + b"%d" % i).digest() * (i % 40)


def test_kill_during_checkpoints_loses_nothing(tmp_path, crash_runs):
    """kill -9 while one thread checkpoints in a loop and the indexer does too:
    each reopen must hold every acknowledged write (the in-flight one may or
    may not be there) and pass the B-tree's structure check."""
    path = tmp_path / "db"
    model: dict[bytes, bytes] = {}
    rng = random.Random(os.environ.get("PASTEDB_CRASH_SEED", "lazy-ckpt"))
    for run in range(max(3, crash_runs // 2)):
        seed = rng.randrange(1 << 30)
        out = run_until_killed(KILL_CHILD, [str(path), str(seed)], rng.uniform(0.05, 0.6))
        assert background_rounds(out) >= 1, "no checkpoint ran before the kill"
        inflight = None
        for line in out.splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] in ("P", "D") and len(parts) == 3:
                inflight = (parts[0], parts[1].encode(), int(parts[2]))
            elif parts[0] == "A" and inflight is not None and len(parts) == 2 \
                    and int(parts[1]) == inflight[2]:
                kind, k, i = inflight
                if kind == "P":
                    model[k] = kv_value(k, i)
                else:
                    model.pop(k, None)
                inflight = None
        with pastedb.open(path) as db:
            got = dict(db.items())
            assert len(db) == len(got)
        if inflight is not None:
            kind, k, i = inflight
            alt = dict(model)
            if kind == "P":
                alt[k] = kv_value(k, i)
            else:
                alt.pop(k, None)
            assert got in (model, alt), f"run {run} seed {seed}"
            model = got
        else:
            assert got == model, f"run {run} seed {seed}"
        assert tree_problems(path) == [], f"run {run} seed {seed}"
