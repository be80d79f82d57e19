"""kill -9 in the middle of writing: every acknowledged write survives, exactly.

A child interpreter opens the database and runs a deterministic sequence of
puts, overwrites, deletes, batches (and now and then a checkpoint), printing a
line after each call returns.  The parent kills it with SIGKILL at a random
moment, reopens the database and compares it with the model:

  * sync=True: for each writer thread, the keys it owns must equal the model
    state after its last acknowledged op, or after the one op it may have had
    in flight -- nothing else.  That covers "acknowledged writes are there with
    their exact value", "later acknowledged writes to a key win", "no value that
    was never written" and "batches are all or nothing" in one comparison.
  * sync=False: the child calls db.sync() every few ops and says so; the state
    must still be exactly one of the two (sync=False writes survive the process
    being killed), and so include everything synced.

The same database is carried through all iterations of a test, so recovery
after recovery (and checkpoints interrupted by the kill) are covered too.
--crash-runs N sets the iterations (default 15; --slow: 200).  The op
sequences depend only on the seed printed in a failure; PASTEDB_CRASH_SEED=S
reruns one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import tally

import pastedb

# Shared by the parent (to build the model) and the child (to run it): the op
# sequences must be byte-for-byte the same on both sides.
SHARED = r'''
import hashlib
import os
import random
import sys
import threading

NKEYS = 24


def value_for(key, opid, length):
    """key and op id, then a pattern derived from both: any foreign or torn
    bytes make the value differ from every value the model knows."""
    head = b"%s|%s|" % (key, opid)
    block = hashlib.blake2b(head, digest_size=32).digest()
    return head + (block * (length // 32 + 1))[:length]


def value_length(rng):
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.70:
        return rng.randrange(1, 120)
    if r < 0.92:
        return rng.randrange(120, 6000)
    return rng.choice([65536, 70000, 300_000])          # the big-copy path, own extents


def thread_ops(seed, tag, t, checkpoints):
    """The endless op sequence of writer thread t: ("put", k, v), ("del", k),
    ("batch", [...]) or ("checkpoint",).  Thread t only touches keys b"t<t>:..."."""
    rng = random.Random("%s/%s/%s" % (seed, tag, t))
    i = 0
    while True:
        opid = b"%s.%d.%d" % (tag.encode(), t, i)

        def key():
            return b"t%d:k%02d" % (t, rng.randrange(NKEYS))

        r = rng.random()
        if r < 0.55:
            k = key()
            yield ("put", k, value_for(k, opid, value_length(rng)))
        elif r < 0.72:
            yield ("del", key())
        elif r < 0.97 or not checkpoints:
            sub = []
            for j in range(rng.randrange(2, 9)):
                k = key()
                if rng.random() < 0.75:
                    sub.append(("put", k, value_for(k, opid + b".%d" % j, value_length(rng))))
                else:
                    sub.append(("del", k))
            yield ("batch", sub)
        else:
            yield ("checkpoint",)
        i += 1


def apply_to_model(model, op):
    if op[0] == "put":
        model[op[1]] = op[2]
    elif op[0] == "del":
        model.pop(op[1], None)
    elif op[0] == "batch":
        for sub in op[1]:
            apply_to_model(model, sub)


def apply_to_db(db, op):
    if op[0] == "put":
        db.put(op[1], op[2])
    elif op[0] == "del":
        db.delete(op[1])
    elif op[0] == "batch":
        with db.batch() as b:
            for sub in op[1]:
                if sub[0] == "put":
                    b.put(sub[1], sub[2])
                else:
                    b.delete(sub[1])
    else:
        # a checkpoint, then relocation, truncation and segment reuse
        db.compact()


def child_main(path, mode, nthreads, seed, tag):
    import pastedb

    sync = mode == "sync"
    db = pastedb.open(path, sync=sync)
    # The indexer checkpoints every few dozen records, so the kill lands in
    # the middle of checkpoints (tree commit, superblock flip) often.
    db._checkpoint_policy(every=random.Random(seed).choice([16, 64, 1000]), interval=0.002)
    os.write(1, b"READY\n")

    def writer(t):
        try:
            for i, op in enumerate(thread_ops(seed, tag, t, checkpoints=(t == 0))):
                apply_to_db(db, op)
                # One write(2) per line: a pipe never splits or mixes them.
                os.write(1, b"A %d %d\n" % (t, i))
                if not sync and i % 16 == 15:
                    db.sync()
                    os.write(1, b"S %d %d\n" % (t, i))
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(70)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
'''

shared = {"__name__": "pastedb_crash_shared"}
exec(compile(SHARED, "<pastedb crash child>", "exec"), shared)
thread_ops = shared["thread_ops"]
apply_to_model = shared["apply_to_model"]

CHILD_START_TIMEOUT = 30.0       # seconds until READY and the first ack
MAX_KILL_DELAY = 0.300


def child_env():
    env = dict(os.environ)
    root = str(Path(pastedb.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_and_kill(path, mode, nthreads, seed, tag, rng):
    """Start the child, let it ack for a random 0-300 ms, kill -9 it.  Returns
    (lines, kill_delay)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SHARED, str(path), mode, str(nthreads), seed, tag],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=child_env())
        lines = []
        first_ack = threading.Event()

        def read():
            for line in proc.stdout:
                if line.endswith(b"\n"):
                    lines.append(line.decode())
                    if line.startswith(b"A "):
                        first_ack.set()
            first_ack.set()                                  # EOF: the child died early

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        delay = rng.uniform(0, MAX_KILL_DELAY)
        try:
            if not first_ack.wait(CHILD_START_TIMEOUT):
                pytest.fail("crash child never acknowledged a write")
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            rc = proc.wait()
            reader.join(30)
            proc.stdout.close()
        if rc != -signal.SIGKILL:
            err.seek(0)
            pytest.fail(f"crash child exited with {rc} before the kill:\n"
                        f"{err.read().decode(errors='replace')}")
        tally.kill()
    return lines, delay


def last_acks(lines, kind, nthreads):
    """Per thread, the index of the last op reported with `kind` ("A" or "S"), or -1."""
    last = [-1] * nthreads
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == kind:
            t, i = int(parts[1]), int(parts[2])
            assert i == last[t] + 1 or kind == "S", f"acks out of order: {line!r}"
            last[t] = max(last[t], i)
    return last


def describe(actual, expect):
    missing = sorted(set(expect) - set(actual))
    extra = sorted(set(actual) - set(expect))
    wrong = sorted(k for k in set(actual) & set(expect) if actual[k] != expect[k])
    out = []
    if missing:
        out.append(f"missing {missing[:5]}")
    if extra:
        out.append(f"unexpected {extra[:5]} = {[actual[k][:40] for k in extra[:5]]}")
    for k in wrong[:5]:
        out.append(f"{k!r}: have {actual[k][:40]!r}... len {len(actual[k])}, "
                   f"want {expect[k][:40]!r}... len {len(expect[k])}")
    return "; ".join(out)


def crash_loop(db_path, mode, nthreads, runs):
    seed = os.environ.get("PASTEDB_CRASH_SEED") or str(random.randrange(1 << 32))
    rng = random.Random(seed)                            # kill delays: reproducible too
    base = [dict() for _ in range(nthreads)]             # thread t's keys, as verified
    total_acked = 0
    for it in range(runs):
        tag = f"i{it}"
        lines, delay = run_and_kill(db_path, mode, nthreads, seed, tag, rng)
        acked = last_acks(lines, "A", nthreads)
        synced = last_acks(lines, "S", nthreads)
        total_acked += sum(a + 1 for a in acked)
        with pastedb.open(db_path) as db:
            actual = dict(db.items())
            # the index and the iterator agree
            for k, v in actual.items():
                assert db.get(k) == v
            assert len(db) == len(actual)
        where = (f"seed={seed} iteration={it} mode={mode} threads={nthreads} "
                 f"kill after {delay * 1000:.0f} ms")
        prefixes = [b"t%d:" % t for t in range(nthreads)]
        stray = [k for k in actual if not k.startswith(tuple(prefixes))]
        assert not stray, f"{where}: keys nobody wrote: {stray[:5]}"
        for t in range(nthreads):
            mine = {k: v for k, v in actual.items() if k.startswith(prefixes[t])}
            ops = thread_ops(seed, tag, t, checkpoints=(t == 0))
            state = dict(base[t])
            for _ in range(acked[t] + 1):
                apply_to_model(state, next(ops))
            at_ack = dict(state)
            in_flight = next(ops)
            apply_to_model(state, in_flight)
            if mine == at_ack or mine == state:
                base[t] = mine
                continue
            pytest.fail(
                f"{where}: thread {t} acknowledged op {acked[t]} (synced through "
                f"{synced[t]}), in flight {in_flight[0]}; the database holds neither the "
                f"state after the acknowledged op ({describe(mine, at_ack)}) nor after the "
                f"in-flight one ({describe(mine, state)})")
    return total_acked


def test_kill9_durable_one_writer(db_path, crash_runs):
    acked = crash_loop(db_path, "sync", 1, crash_runs)
    assert acked >= crash_runs                         # the child really did work each time


def test_kill9_durable_writer_threads(db_path, crash_runs):
    acked = crash_loop(db_path, "sync", 4, crash_runs)
    assert acked >= crash_runs


def test_kill9_sync_false(db_path, crash_runs):
    acked = crash_loop(db_path, "nosync", 2, crash_runs)
    assert acked >= crash_runs


def test_model_helpers_are_deterministic():
    # The parent's model is only as good as this: same seed, same ops.
    a = thread_ops("s", "i0", 0, True)
    b = thread_ops("s", "i0", 0, True)
    ops_a = [next(a) for _ in range(200)]
    assert ops_a == [next(b) for _ in range(200)]
    kinds = {op[0] for op in ops_a}
    assert kinds == {"put", "del", "batch", "checkpoint"}
    c = thread_ops("s", "i1", 0, True)
    assert [next(c) for _ in range(200)] != ops_a
