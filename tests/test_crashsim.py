"""Power-loss simulation and I/O-error injection (persist="crashsim", faults=...).

The crashsim backend keeps the image a power loss would leave: barriers update
it, and writes since the last barrier may each survive whole, torn at a
512-byte sector, or vanish.  Recovery from every such image must keep every
acknowledged write exactly, apply batches all or nothing, and never return
bytes that were not written for a key.  The log makes recovery a *prefix* of
the operations after the last barrier, which is what the checks demand.
"""

from __future__ import annotations

import errno
import os
import random
import zlib

import pytest
import tally

import pastedb


def value_for(key: bytes, n: int, size: int) -> bytes:
    """Self-describing value: garbage or a value of another key is detectable."""
    head = b"%s|%d|" % (key, n)
    body = (head * (size // len(head) + 1))[:size]
    return body + zlib.crc32(key + body).to_bytes(4, "little")


def apply(state: dict, op) -> None:
    kind = op[0]
    if kind == "put":
        state[op[1]] = op[2]
    elif kind == "del":
        state.pop(op[1], None)
    else:                                     # ("batch", [ops])
        for sub in op[1]:
            apply(state, sub)


def run_op(db, op) -> bool:
    """Issue op; False when it wrote nothing (deleting an absent key)."""
    kind = op[0]
    if kind == "put":
        db.put(op[1], op[2])
    elif kind == "del":
        return db.delete(op[1])
    else:
        with db.batch() as b:
            for sub in op[1]:
                if sub[0] == "put":
                    b.put(sub[1], sub[2])
                else:
                    b.delete(sub[1])
    return True


def random_op(rnd: random.Random, n: int):
    key = b"k%02d" % rnd.randrange(24)
    x = rnd.random()
    if x < 0.55:
        return ("put", key, value_for(key, n, rnd.choice([0, 10, 100, 1000, 3000])))
    if x < 0.75:
        return ("del", key)
    subs = []
    for i in range(rnd.randrange(2, 6)):
        k = b"k%02d" % rnd.randrange(24)
        subs.append(("put", k, value_for(k, n * 10 + i, rnd.choice([5, 200])))
                    if rnd.random() < 0.8 else ("del", k))
    return ("batch", subs)


def read_all(path) -> dict:
    with pastedb.open(path, persist="none") as db:
        return dict(db.items())


def recover_image(db, tmp_path, name: str, seed: int) -> dict:
    d = tmp_path / name
    d.mkdir()
    db._crash_image(d, seed)
    tally.image()
    return read_all(d)


def assert_prefix(recovered: dict, base: dict, ops: list) -> int:
    """recovered must be base + some prefix of ops; returns the prefix length."""
    state = dict(base)
    if recovered == state:
        return 0
    for i, op in enumerate(ops, 1):
        apply(state, op)
        if recovered == state:
            return i
    for k, v in recovered.items():             # say what is wrong, precisely
        assert v[-4:] == zlib.crc32(k + v[:-4]).to_bytes(4, "little") and \
            v.startswith(k + b"|"), f"garbage under {k!r}: {v[:40]!r}"
    raise AssertionError("recovered state is not the durable state plus a prefix of the "
                         f"later operations ({len(ops)} ops after the last barrier)")


@pytest.fixture
def images(request):
    return 2000 if request.config.getoption("--slow") else 200


def test_crash_images_keep_every_acknowledged_write(tmp_path, images):
    rnd = random.Random(1234)
    db = pastedb.open(tmp_path / "db", persist="crashsim", sync=False)
    durable: dict = {}
    since: list = []
    taken = 0
    n = 0
    try:
        while taken < images:
            op = random_op(rnd, n)
            n += 1
            run_op(db, op)
            since.append(op)
            if rnd.random() < 0.15:
                db.sync()                      # a barrier: everything so far is acknowledged
                for o in since:
                    apply(durable, o)
                since = []
            if rnd.random() < 0.02:
                db.checkpoint()                # log compaction, itself crash-safe
                for o in since:
                    apply(durable, o)
                since = []
            if since and rnd.random() < 0.5:
                got = recover_image(db, tmp_path, f"img{taken}", seed=taken)
                assert_prefix(got, durable, since)
                taken += 1
                if taken % 50 == 0:            # keep the temp dir small
                    for p in tmp_path.glob("img*"):
                        for f in p.iterdir():
                            f.unlink()
                        p.rmdir()
    finally:
        db.close()


def test_crash_image_after_sync_true_puts_loses_nothing(tmp_path):
    with pastedb.open(tmp_path / "db", persist="crashsim") as db:
        expect = {}
        for i in range(200):
            k = b"k%03d" % (i % 70)
            v = value_for(k, i, 700)
            db.put(k, v)
            expect[k] = v
            if i % 20 == 0:
                assert recover_image(db, tmp_path, f"img{i}", i) == expect
        # Nothing is pending after a durable put: every image is the same.
        assert recover_image(db, tmp_path, "last", 99) == expect


def workload(seed: int, count: int = 40) -> list:
    rnd = random.Random(seed)
    return [random_op(rnd, n) for n in range(count)]


def check_fault_run(tmp_path, name: str, faults: dict) -> bool:
    """Run the workload with `faults` armed; returns True if a fault fired.
    After a failure nothing more may be acknowledged unless the failure left
    the database healthy; the reopened database (and a power-loss image) must
    hold every acknowledged operation and nothing that was never issued."""
    ops = workload(7)
    d = tmp_path / name
    db = pastedb.open(d, persist="crashsim", faults=faults)
    acked, maybe = [], []                      # (index, op)
    try:
        for i, op in enumerate(ops):
            try:
                wrote = run_op(db, op)
            except (OSError, pastedb.Error) as e:
                if isinstance(e, OSError):
                    assert e.errno in (errno.EIO, errno.ENOSPC), e
                maybe.append((i, op))
            else:
                if wrote:                      # a delete of an absent key logs nothing
                    acked.append((i, op))
        fired = any(db._faults_fired().values())
        img = tmp_path / (name + "-img")
        img.mkdir()
        db._crash_image(img, 5)
        tally.image()
    finally:
        db.close()
    # A failed operation before the last acknowledged one never reached the
    # log (a failed barrier stops all later acknowledgements, so it can only
    # have been a failed copy into the pool).  After the last acknowledged
    # one, the log may hold any prefix of the failed operations.
    last_acked = acked[-1][0] if acked else -1
    tail = [m for m in maybe if m[0] > last_acked]
    base: dict = {}
    for _, op in acked:
        apply(base, op)
    for path in (d, img):
        got = read_all(path)
        assert_prefix(got, base, [op for _, op in tail])
    return fired


@pytest.mark.parametrize("kind", ["barrier", "write", "grow"])
@pytest.mark.parametrize("persistent", [False, True])
def test_io_errors_at_every_position(tmp_path, kind, persistent):
    # SQLite-style: fail the n-th operation, raising n until the workload
    # completes without the fault firing.
    n = 1
    while check_fault_run(tmp_path, f"{kind}-{persistent}-{n}",
                          {kind: n, "persistent": persistent}):
        n += 1
        assert n < 500
    assert n > 1 or kind == "grow"


def test_failed_barrier_stops_acknowledging(tmp_path):
    db = pastedb.open(tmp_path / "db", persist="crashsim", faults={"barrier": 2})
    try:
        db.put(b"a", b"1")
        with pytest.raises(OSError):
            db.put(b"b", b"2")
        for _ in range(3):
            with pytest.raises(pastedb.Error):
                db.put(b"c", b"3")
        assert db.stats()["failed"]
    finally:
        db.close()
    got = read_all(tmp_path / "db")
    assert got.get(b"a") == b"1" and b"c" not in got


def test_enospc_on_growth_fails_the_write_and_keeps_the_rest(tmp_path):
    db = pastedb.open(tmp_path / "db", persist="crashsim", faults={"grow": 1, "persistent": True})
    try:
        db.put(b"small", b"x")
        with pytest.raises(OSError) as e:
            db.put(b"big", os.urandom(32 << 20))      # needs the file to grow
        assert e.value.errno == errno.ENOSPC
        db.put(b"small2", b"y")                        # the database stays usable
    finally:
        db.close()
    assert read_all(tmp_path / "db") == {b"small": b"x", b"small2": b"y"}
