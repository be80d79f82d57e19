"""Crashes during open and recovery.

Open writes: it zeroes the torn tail of the log, issues a barrier, may start
a fresh log chain and superblock, and close checkpoints.  A database left by
a power loss (an image from the I/O layer's simulator, with writes pending
after its last barrier) is opened again

  * on the simulator, with an image taken before every I/O operation of that
    open and of the close after it (power loss during recovery), and
  * in a child process that SIGKILLs itself at its n-th I/O operation of open
    (kill -9 during the recovery writes, on the real fdatasync path),

and every image, and the database after every kill, must open with all that
was acknowledged before the first crash and nothing else than a prefix of the
operations after it.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys

import tally
from test_crashsim import apply, assert_prefix, random_op, read_all, run_op

import pastedb

CHILD = r"""
import sys
import pastedb
db = pastedb.open(sys.argv[1], faults={"from_open": True, "kill": int(sys.argv[2])})
print("OPENED", db._vfs.counted()["kill"], flush=True)
db.close()
"""


def crashed_database(directory, seed: int):
    """A database as a power loss left it: returns (its directory, the
    acknowledged state, the operations after the last barrier)."""
    rnd = random.Random(seed)
    work = directory / "writer"
    db = pastedb.open(work, persist="crashsim", sync=False)
    db._checkpoint_policy(every=40)
    durable: dict = {}
    since: list = []
    try:
        for n in range(rnd.randrange(60, 200)):
            op = random_op(rnd, n)
            if run_op(db, op):
                since.append(op)
            if rnd.random() < 0.1:
                db.sync()
                for o in since:
                    apply(durable, o)
                since = []
        if not since:                             # something for recovery to cut
            op = random_op(rnd, 10_000)
            if run_op(db, op):
                since.append(op)
        crashed = directory / "crashed"
        db._crash_image(crashed, seed)
        tally.image()
    finally:
        db.close()
    shutil.rmtree(work)
    return crashed, durable, since


def copy_of(crashed, name: str):
    """A fresh copy of the crashed database beside it, to open."""
    work = crashed.parent / name
    shutil.copytree(crashed, work)
    return work


def test_power_loss_during_recovery(tmp_path, slow):
    rounds = 150 if slow else 8
    images = 0
    for r in range(rounds):
        d = tmp_path / f"r{r}"
        crashed, durable, since = crashed_database(d, seed=1000 + r)
        work = copy_of(crashed, "work")
        prefix = str(d / "img-")
        db = pastedb.open(work, persist="crashsim",
                          faults={"from_open": True, "images": (1, prefix, r)})
        vfs = db._vfs
        try:
            recovered = dict(db.items())
        finally:
            db.close()
        taken = vfs.images_taken
        assert taken >= 2, taken                   # the recovery did write (tail, barrier, ...)
        assert_prefix(recovered, durable, since)
        for n in range(taken):
            assert_prefix(read_all(f"{prefix}{n}"), durable, since)
        images += taken
        tally.image(taken)
        shutil.rmtree(d)
    assert images >= rounds * 2


def test_kill_during_recovery(tmp_path, slow):
    rounds = 60 if slow else 3
    kills = 0
    for r in range(rounds):
        d = tmp_path / f"r{r}"
        crashed, durable, since = crashed_database(d, seed=2000 + r)
        probe = copy_of(crashed, "probe")
        out = subprocess.run([sys.executable, "-c", CHILD, str(probe), str(10**9)],
                             capture_output=True, timeout=120, check=True).stdout.split()
        assert out[0] == b"OPENED"
        ops = int(out[1])                          # I/O operations of this open
        assert ops >= 2
        points = range(1, ops + 1) if slow else sorted(random.Random(r).sample(
            range(1, ops + 1), min(ops, 6)))
        for at in points:
            work = copy_of(crashed, f"kill{at}")
            proc = subprocess.run([sys.executable, "-c", CHILD, str(work), str(at)],
                                  capture_output=True, timeout=120)
            assert proc.returncode == -signal.SIGKILL, (at, proc.returncode, proc.stderr)
            assert b"OPENED" not in proc.stdout
            kills += 1
            tally.kill()
            assert_prefix(read_all(work), durable, since)
            # and recovery after the interrupted recovery is stable
            assert_prefix(read_all(work), durable, since)
            shutil.rmtree(work)
        shutil.rmtree(d)
    assert kills >= (10 if not slow else 100)
