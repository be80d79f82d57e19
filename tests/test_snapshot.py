"""db.snapshot(): one moment of the database, whatever follows.

A writer thread runs puts, deletes, bulk calls, checkpoints and compaction
while another thread takes snapshots and reads each one several times, with
the writer going on in between: every read of a snapshot must equal the
model after some prefix of the writer's operations that lies between what
was acknowledged when snapshot() was called and what had begun when it
returned -- the same prefix for every read of that snapshot."""

from __future__ import annotations

import faulthandler
import random
import threading
import time

import pytest

import pastedb


@pytest.fixture(autouse=True)
def deadlock_watchdog():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def value(k: bytes, n: int, rnd: random.Random) -> bytes:
    size = rnd.choice([0, 30, 900, 9000, 70000])
    return (b"%s@%d;" % (k, n) * (size // 8 + 1))[:size] or b"%d" % n


@pytest.mark.parametrize("sync", [True, False])
def test_every_read_of_a_snapshot_sees_one_moment(db_path, sync):
    db = pastedb.open(db_path, sync=sync, persist="none" if not sync else "auto")
    db._checkpoint_policy(every=300, interval=0.02)
    keys = [b"k%02d" % i for i in range(40)]
    states: list[dict[bytes, bytes]] = [{}]      # states[i]: after the first i operations
    lock = threading.Lock()
    begun = 0
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        nonlocal begun
        rnd = random.Random(11)
        model: dict[bytes, bytes] = {}
        n = 0
        try:
            while not stop.is_set():
                n += 1
                r = rnd.random()
                with lock:
                    begun += 1
                if r < 0.5:
                    k = rnd.choice(keys)
                    v = value(k, n, rnd)
                    db[k] = v
                    model[k] = v
                elif r < 0.7:
                    k = rnd.choice(keys)
                    db.delete(k)
                    model.pop(k, None)
                elif r < 0.85:
                    items = [(k, value(k, n, rnd)) for k in rnd.sample(keys, 6)]
                    db.put_many(items)
                    model.update(items)
                elif r < 0.95:
                    ks = rnd.sample(keys, 5)
                    db.delete_many(ks)
                    for k in ks:
                        model.pop(k, None)
                elif r < 0.98:
                    db.checkpoint()
                else:
                    db.compact()
                with lock:
                    states.append(dict(model))
        except Exception as e:                       # reported by the test thread
            errors.append(repr(e))

    t = threading.Thread(target=writer)
    t.start()
    rnd = random.Random(12)
    try:
        for round_ in range(25):
            with lock:
                acked = len(states) - 1
            snap = db.snapshot()
            with lock:
                started = begun
            try:
                reads = []
                for _ in range(3):
                    reads.append(dict(snap.items()))
                    threading.Event().wait(rnd.random() * 0.02)   # the writer goes on
                    k = rnd.choice(keys)
                    assert snap.get(k) == reads[-1].get(k)
                    assert (k in snap) == (k in reads[-1])
                    assert snap.get_many(keys) == [reads[-1].get(x) for x in keys]
                    assert len(snap) == len(reads[-1])
                    assert list(snap.keys(reverse=True)) == sorted(reads[-1], reverse=True)
                assert reads[0] == reads[1] == reads[2], f"round {round_}: the snapshot moved"
                with lock:
                    candidates = states[acked:started + 1]
                assert reads[0] in candidates, (
                    f"round {round_}: not the state after any of operations {acked}..{started}")
            finally:
                snap.close()
            assert not errors, errors
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    assert len(states) > 50                          # the writer made progress meanwhile
    assert db.stats()["snapshots"] == 0
    db.close()


def test_snapshot_life(db_path):
    db = pastedb.open(db_path)
    db[b"a"] = b"1"
    s1 = db.snapshot()
    s2 = db.snapshot()
    assert db.stats()["snapshots"] == 2
    db[b"a"] = b"2"
    with s1 as s:
        assert s[b"a"] == b"1"
        with s.view(b"a") as mv:
            assert mv == b"1"
    assert s1.closed and db.stats()["snapshots"] == 1
    s1.close()                                       # idempotent
    with pytest.raises(pastedb.Error):
        s1.get(b"a")
    db.close()                                       # closes what is still open
    assert s2.closed
    with pastedb.open(db_path, readonly=True) as ro:
        with pytest.raises(pastedb.Error):
            ro.snapshot()


def test_a_snapshot_keeps_its_values_through_reclamation(db_path):
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=1000, interval=3600)
    old = {b"big%d" % i: bytes([i]) * (1 << 20) for i in range(4)}
    db.put_many(old)
    db.checkpoint()
    with db.snapshot() as s:
        for gen in range(12):
            db.put_many({k: bytes([100 + gen]) * (1 << 20) for k in old})
            db.checkpoint()
        db.compact()
        assert db.stats()["freed_segments"] >= 0
        assert dict(s.items()) == old                 # read after the churn: still the old bytes
    db.close()


def test_a_snapshot_sees_expiry_as_at_its_moment(db_path):
    db = pastedb.open(db_path)
    db.put(b"short", b"1", ttl=0.5)
    db.put(b"long", b"2", ttl=3600)
    db.put(b"never", b"3")
    with db.snapshot() as s:
        time.sleep(0.8)                            # past short's expiry, on every clock
        db.checkpoint()                            # active expiry may delete it meanwhile
        assert b"short" not in db and len(db) == 2
        assert s[b"short"] == b"1" and len(s) == 3    # the snapshot's clock stood still
        assert sorted(s) == [b"long", b"never", b"short"]
    db.close()


def test_backup_keeps_each_keys_absolute_expiry(tmp_path):
    db = pastedb.open(tmp_path / "db")
    db.put(b"a", b"1", ttl=3600)
    db.put(b"b", b"2")
    at = db.expire_at_ms(b"a")
    db.backup(tmp_path / "copy")
    db.close()
    with pastedb.open(tmp_path / "copy") as copy:
        assert dict(copy.items()) == {b"a": b"1", b"b": b"2"}
        assert copy.expire_at_ms(b"a") == at and copy.expire_at_ms(b"b") == 0


def test_a_snapshot_taken_during_a_checkpoint_keeps_the_deletes_it_applies(db_path):
    """A snapshot whose tree is the commit before a running checkpoint's, and
    whose log position is past that checkpoint's cut, holds the checkpoint's
    deletes in its own pending table -- and a delete's key is bytes of the
    pool.  The free pass must not release them while such a reader lives:
    it did (the reader's log position was all it asked), the segments were
    reused, and the deleted keys came back to life in the snapshot."""
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=10**9, interval=3600)
    dead = [b"key%06d" % i for i in range(20000)]
    filler = {b"filler%07d" % i: b"f" for i in range(150000)}
    hits = 0
    for attempt in range(12):
        db.put_many([(k, b"v" * 100) for k in dead])
        db.checkpoint()
        db.delete_many(dead)                     # tombstones, alone in their segments
        db[b"big"] = b"x" * (3 << 20)
        db.delete(b"big")
        db.put_many(filler.items())              # a pending table that takes a while to apply
        t = threading.Thread(target=db.checkpoint)
        t.start()
        snap = db.snapshot()
        t.join()
        st = snap._h.stats()
        in_window = st["index_applied_lsn"] < db.stats()["index_applied_lsn"] <= st["reader_lsn"]
        hits += in_window
        db.compact()
        db.put_many([(b"new%06d" % i, b"Q" * 300) for i in range(100000)])   # reuse what is free
        db.checkpoint()
        try:
            assert snap.get(dead[0]) is None and dead[-1] not in snap
            assert list(snap.keys()) == sorted(filler), f"attempt {attempt}: deleted keys are back"
            assert len(snap) == len(filler)
        finally:
            snap.close()
        db.delete_many([b"new%06d" % i for i in range(100000)])
        if hits >= 2:
            break
    assert hits >= 1, "no snapshot landed inside a checkpoint (apply phase too short here?)"
    db.checkpoint()
    db.compact()
    st = db.stats()
    assert st["freed_segments"] > 0                  # with the snapshots gone, space comes back
    db.close()
