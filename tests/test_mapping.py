"""DB as a MutableMapping, and the bulk calls (put_many, get_many,
delete_many, limit=), on real files.

* a hypothesis state machine drives every mapping method against a dict;
* pop and setdefault are atomic under racing threads;
* put_many and delete_many are all or nothing across kill -9 and in
  power-loss images, and durable when they return;
* bad arguments fail before anything is written.
"""

from __future__ import annotations

import collections.abc
import faulthandler
import os
import random
import threading

import pytest
import tally
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from killed import run_until_killed

import pastedb


@pytest.fixture(autouse=True)
def deadlock_watchdog():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


keys = st.binary(min_size=0, max_size=12)
# Mostly small values; a few past the engine's large-copy threshold (64 KiB),
# made from a short pattern so hypothesis need not draw 70,000 bytes.
values = st.binary(min_size=0, max_size=300) | st.tuples(
    st.binary(min_size=1, max_size=8), st.integers(70000, 70010)).map(
    lambda t: (t[0] * t[1])[:t[1]])
pairs = st.lists(st.tuples(keys, values), max_size=40)


class MappingMachine(RuleBasedStateMachine):
    """Every mapping method, checked against a dict after each step."""

    @initialize(path=st.just(None))
    def setup(self, path):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="pastedb-mapping-")
        self.db = pastedb.open(os.path.join(self.dir, "db"), persist="none")
        self.model: dict[bytes, bytes] = {}

    @rule(k=keys, v=values)
    def setitem(self, k, v):
        self.db[k] = v
        self.model[k] = v

    @rule(k=keys)
    def delitem(self, k):
        if k in self.model:
            del self.db[k]
            del self.model[k]
        else:
            with pytest.raises(KeyError):
                del self.db[k]

    @rule(k=keys, use_default=st.booleans())
    def pop(self, k, use_default):
        if use_default:
            assert self.db.pop(k, b"dflt") == self.model.pop(k, b"dflt")
        elif k in self.model:
            assert self.db.pop(k) == self.model.pop(k)
        else:
            with pytest.raises(KeyError):
                self.db.pop(k)

    @rule()
    def popitem(self):
        if not self.model:
            with pytest.raises(KeyError):
                self.db.popitem()
            return
        k, v = self.db.popitem()
        assert k == min(self.model)                  # the smallest key, documented
        assert self.model.pop(k) == v

    @rule(k=keys, v=values)
    def setdefault(self, k, v):
        assert self.db.setdefault(k, v) == self.model.setdefault(k, v)

    @rule(items=pairs, as_dict=st.booleans())
    def update(self, items, as_dict):
        self.db.update(dict(items) if as_dict else items)
        self.model.update(items)

    @rule(items=pairs)
    def put_many(self, items):
        self.db.put_many(items)
        self.model.update(items)

    @rule(ks=st.lists(keys, max_size=20))
    def delete_many(self, ks):
        self.db.delete_many(ks)
        for k in ks:
            self.model.pop(k, None)

    @rule(ks=st.lists(keys, max_size=20))
    def get_many(self, ks):
        assert self.db.get_many(ks) == [self.model.get(k) for k in ks]

    @rule(limit=st.integers(0, 5), reverse=st.booleans(), what=st.sampled_from(["keys", "items", "values"]))
    def limited(self, limit, reverse, what):
        want = sorted(self.model, reverse=reverse)[:limit]
        got = list(getattr(self.db, what)(reverse=reverse, limit=limit))
        if what == "keys":
            assert got == want
        elif what == "values":
            assert got == [self.model[k] for k in want]
        else:
            assert got == [(k, self.model[k]) for k in want]

    @rule()
    def clear(self):
        self.db.clear()
        self.model.clear()

    @invariant()
    def same(self):
        assert len(self.db) == len(self.model)
        assert dict(self.db.items()) == self.model
        assert self.db == self.model and not (self.db != self.model)
        assert list(reversed(self.db)) == sorted(self.model, reverse=True)

    def teardown(self):
        import shutil
        self.db.close()
        # reopened from the files: the same mapping
        with pastedb.open(os.path.join(self.dir, "db"), persist="none") as db:
            assert dict(db.items()) == self.model
        shutil.rmtree(self.dir)


MappingMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                            deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_mapping_machine = MappingMachine.TestCase


def test_registered_as_mutable_mapping(db):
    assert isinstance(db, collections.abc.MutableMapping)
    assert isinstance(db, collections.abc.Mapping)
    db.update([(b"b", b"2"), (b"a", b"1")])
    assert dict(db) == {b"a": b"1", b"b": b"2"}
    assert sorted(db) == [b"a", b"b"]
    assert db == {b"a": b"1", b"b": b"2"} and db != {b"a": b"1"}
    assert (db == [1, 2]) is False                     # not a mapping: not equal
    with pytest.raises(TypeError):
        hash(db)                                         # a mutable mapping, like dict


def test_bad_arguments_write_nothing(db):
    db[b"keep"] = b"1"
    with pytest.raises(TypeError):
        db.put_many([(b"a", b"1"), (b"b", None)])
    with pytest.raises(ValueError):
        db.put_many([(b"a", b"1"), (b"x" * 1025, b"2")])
    with pytest.raises(TypeError):
        db.put_many([(b"a", b"1"), ("str", b"2")])
    with pytest.raises(TypeError):
        db.delete_many([b"keep", 5])
    assert dict(db) == {b"keep": b"1"}
    with pytest.raises(TypeError):
        db.get_many(["text"])
    with pytest.raises(TypeError):
        db.update(a=b"1")                                # str keys
    with pytest.raises(TypeError):
        db.setdefault(b"absent")                         # would store None
    assert db.setdefault(b"keep") == b"1"                # present: default unused
    with pytest.raises(TypeError):
        db.pop(b"keep", 1, 2)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError):
            db.keys(limit=bad)
    assert list(db.keys(limit=0)) == []
    assert db.get_many([]) == [] and db.put_many([]) is None and db.delete_many([]) is None
    assert db.get_many([b"x" * 5000]) == [None]          # longer than any key: absent


def test_bulk_calls_with_large_and_mixed_values(db):
    rnd = random.Random(7)
    items = {b"k%04d" % i: rnd.randbytes(rnd.choice([0, 10, 3000, 70000, 300000]))
             for i in range(300)}
    db.put_many(items)
    assert db.get_many(list(items)) == list(items.values())
    assert db.get_many([b"k0001", b"nope", b"k0001"]) == [items[b"k0001"], None, items[b"k0001"]]
    db.delete_many(list(items)[::2])
    for n, (k, v) in enumerate(items.items()):
        assert db.get(k) == (None if n % 2 == 0 else v)
    db.put_many([(b"dup", b"1"), (b"dup", b"2")])        # the last one wins
    assert db[b"dup"] == b"2"


def test_setdefault_and_pop_are_atomic_under_threads(db_path):
    db = pastedb.open(db_path, persist="none")
    threads = 8
    for round_ in range(30):
        key = b"race%d" % round_
        got: list = [None] * threads
        barrier = threading.Barrier(threads)

        def one(i, key=key, got=got, barrier=barrier):
            barrier.wait()
            got[i] = db.setdefault(key, b"thread%d" % i)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(set(got)) == 1 and db[key] == got[0]   # one winner, seen by all

        popped: list = [None] * threads

        def pop(i, key=key, popped=popped, barrier=barrier):
            barrier.wait()
            popped[i] = db.pop(key, None)
        ts = [threading.Thread(target=pop, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert [p for p in popped if p is not None] == [got[0]]   # exactly one pop got it
        assert key not in db
    # pop racing writers: each value popped was written, and popped once
    stop = threading.Event()
    written: set = set()
    seen: list = []

    def writer(w):
        n = 0
        while not stop.is_set():
            v = b"w%d-%d" % (w, n)
            written.add(v)
            db[b"hot"] = v
            n += 1

    def popper():
        while not stop.is_set():
            v = db.pop(b"hot", None)
            if v is not None:
                seen.append(v)
    ts = [threading.Thread(target=writer, args=(w,)) for w in range(2)] + \
         [threading.Thread(target=popper) for _ in range(3)]
    for t in ts:
        t.start()
    threading.Event().wait(1.0)
    stop.set()
    for t in ts:
        t.join()
    assert seen and len(seen) == len(set(seen)) and set(seen) <= written
    db.close()


KILL_CHILD = r'''
import os, sys
sys.path.insert(0, {root!r})
import pastedb
path = sys.argv[1]
db = pastedb.open(path)
db._checkpoint_policy(every=500, interval=0.01)
keys = [b"g%03d" % i for i in range(100)]
v = int(sys.argv[2])
os.write(1, b"READY\n")
while True:
    v += 1
    if v % 5 == 0:
        db.delete_many(keys)
    else:
        db.put_many([(k, b"%s=%d;" % (k, v) * (1 + v % 40)) for k in keys])
    os.write(1, b"A %d\n" % v)
'''


def test_put_many_and_delete_many_are_all_or_nothing_across_kill(tmp_path, crash_runs):
    """The child's call number c puts all 100 keys at version c, or (c % 5 == 0)
    deletes them all.  After each kill the database holds the state of the
    last acknowledged call or of the one in flight, never a mix."""
    path = tmp_path / "db"
    rng = random.Random(os.environ.get("PASTEDB_CRASH_SEED", "bulk-kill"))

    def state_after(c: int) -> int | None:
        return None if c % 5 == 0 else c

    prev: int | None = None                              # empty before the first run
    start = 0
    calls = 0
    for run in range(max(4, crash_runs // 2)):
        out = run_until_killed(KILL_CHILD, [str(path), str(start)], rng.uniform(0.05, 0.5))
        acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("A ")]
        with pastedb.open(path) as db:
            got = dict(db.items())
        state: int | None = None
        if got:
            versions = {int(v.split(b";")[0].split(b"=")[1]) for v in got.values()}
            assert len(versions) == 1 and len(got) == 100, f"run {run}: torn batch {versions}"
            state = versions.pop()
            for k, v in got.items():
                assert v == b"%s=%d;" % (k, state) * (1 + state % 40)
        last = acked[-1] if acked else start
        allowed = {state_after(last) if acked else prev, state_after(last + 1)}
        assert state in allowed, f"run {run}: state {state}, allowed {allowed}"
        prev = state
        start = last + 1
        calls += len(acked)
    assert calls > 0                                     # the kills landed among bulk calls


def test_bulk_calls_are_durable_when_they_return(tmp_path):
    db = pastedb.open(tmp_path / "db", persist="crashsim")
    model: dict[bytes, bytes] = {}
    rnd = random.Random(3)
    try:
        for n in range(12):
            if n % 3 == 2:
                ks = rnd.sample(sorted(model), min(len(model), 30))
                db.delete_many(ks)
                for k in ks:
                    del model[k]
            else:
                items = [(b"d%03d" % rnd.randrange(200), rnd.randbytes(rnd.choice([5, 900, 9000])))
                         for _ in range(50)]
                db.put_many(items)
                model.update(items)
            img = tmp_path / f"img{n}"
            db._crash_image(img, rnd.randrange(1 << 30))
            tally.image()
            with pastedb.open(img, persist="none") as got:
                assert dict(got.items()) == model, f"image {n}"
    finally:
        db.close()


def test_view_is_pinned_across_reclamation_and_refused_after_release(db_path):
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=2000, interval=3600)
    big = bytes(range(256)) * 4096                        # 1 MiB: a segment of its own
    db[b"big"] = big
    db.checkpoint()
    with db.view(b"big") as mv:
        assert mv.readonly and len(mv) == len(big)
        head = mv[:4096]                                   # a slice outlives the block
        # Overwrite and churn until the first value's segment would be reclaimed.
        for gen in range(30):
            db[b"big"] = bytes([gen]) * len(big)
            for i in range(200):
                db[b"f%03d" % i] = bytes([gen]) * 3000
            db.checkpoint()
        db.compact()
        assert mv == big                                   # still the bytes it was, in place
    with pytest.raises(ValueError):
        mv[0]
    with pytest.raises(pastedb.Error):
        db.close()                                         # the slice still pins it
    assert head == big[:4096]
    del head
    freed_before = db.stats()["freed_segments"]
    for gen in range(5):
        db[b"big"] = bytes([100 + gen]) * len(big)
        db.checkpoint()
    db.compact()
    assert db.stats()["freed_segments"] > freed_before    # reclamation goes on once released
    with pytest.raises(KeyError):
        db.view(b"absent")
    with db.view(b"big") as mv:
        with pytest.raises(TypeError):
            mv[0] = 1                                      # read-only
    db.close()


def test_view_of_a_damaged_value_raises(db_path):
    with pastedb.open(db_path) as db:
        db[b"k"] = b"A" * 5000
        db.checkpoint()
        pool = db_path / "pool"
    data = pool.read_bytes()
    at = data.index(b"A" * 5000)
    with open(pool, "r+b") as f:
        f.seek(at + 100)
        f.write(b"B")
    with pastedb.open(db_path) as db:
        with pytest.raises(pastedb.CorruptionError):
            db.view(b"k")


def test_put_many_with_a_ttl(db):
    db.put_many({b"a": b"1", b"b": b"2"}, ttl=3600)
    assert 3500 < db.ttl(b"a") <= 3600 and 3500 < db.ttl(b"b") <= 3600
    db.put_many([(b"a", b"3")])
    assert db.ttl(b"a") is None                          # no ttl: cleared, as put() does
    db.put_many({b"b": b"x", b"c": b"y"}, ttl=0)          # ttl <= 0: deleted, as put() does
    assert b"b" not in db and b"c" not in db and db[b"a"] == b"3"


def test_clear_is_atomic_against_a_concurrent_writer(db_path):
    """A writer creates new keys and overwrites old ones while clear() runs:
    afterwards the database must be exactly the writes after one position of
    the writer's sequence (those before it gone, those after it kept) -- a
    clear that listed keys and deleted them later would keep new keys made
    in between but delete overwrites made in between."""
    db = pastedb.open(db_path, persist="none")
    for round_ in range(4):
        ops: list[tuple[bytes, bytes]] = [(b"g%04d" % i, b"r%d-init" % round_) for i in range(1000)]
        db.put_many(ops)
        db.checkpoint()
        cleared = threading.Event()
        stop = threading.Event()

        def writer(ops=ops, cleared=cleared, stop=stop, round_=round_):
            i = 0
            after = 0
            while not stop.is_set():
                for k, v in ((b"n%06d" % i, b"r%d-%d" % (round_, i)),
                             (b"g%04d" % (i % 1000), b"r%d-%d" % (round_, i))):
                    db[k] = v
                    ops.append((k, v))
                i += 1
                if cleared.is_set():
                    after += 1
                    if after > 20:
                        return
        t = threading.Thread(target=writer)
        t.start()
        threading.Event().wait(0.02)
        db.clear()
        cleared.set()
        t.join(60)
        got = dict(db.items())
        state: dict[bytes, bytes] = {}
        found = False
        for pos in range(len(ops), -1, -1):           # state: the writes at positions >= pos
            if len(state) == len(got) and state == got:
                found = True
                break
            if pos:
                k, v = ops[pos - 1]
                state.setdefault(k, v)
        assert found, f"round {round_}: {len(got)} keys left match no single clear point"
        db.clear()
    db.close()
