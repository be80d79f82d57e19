"""A hypothesis state machine: pastedb against a plain dict (SortedDict for order).

Every rule does the same thing to the database and to the model and compares
answers; reopen and checkpoint rules check that what is on disk is exactly the
model.  Keys come from a tiny alphabet so overwrites, deletes and prefix
relations collide all the time.  --slow runs many more examples.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sortedcontainers import SortedDict

import pastedb

keys = st.lists(st.sampled_from([b"", b"\x00", b"a", b"b", b"\xff"]), max_size=3).map(b"".join)
prefixes = st.sampled_from([b"", b"\x00", b"a", b"ab", b"b", b"\xff", b"\xff\xff", b"a\xff", b"c"])
small_values = st.binary(max_size=24)
big_values = st.builds(lambda n, b: b * n,
                       st.sampled_from([65535, 65536, 65537, 300_001]), st.binary(min_size=1,
                                                                                  max_size=3))
values = st.one_of(small_values, small_values, small_values, big_values)
wrappers = st.sampled_from([bytes, bytearray, memoryview])
batch_ops = st.lists(
    st.one_of(st.tuples(st.just("put"), keys, small_values), st.tuples(st.just("del"), keys)),
    max_size=8)


class DBMachine(RuleBasedStateMachine):
    base_dir = None                       # set by the test function

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="model-", dir=self.base_dir)
        self.db = None
        self.sync_mode = True
        self.model = SortedDict()

    @initialize(sync=st.booleans())
    def open_db(self, sync):
        self.db = pastedb.open(self.dir, persist="none", sync=sync)
        self.sync_mode = sync

    def teardown(self):
        if self.db is not None:
            self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------------------- helpers
    def expected_range(self, start=None, stop=None, prefix=None, reverse=False):
        if prefix is not None:
            out = [k for k in self.model if k.startswith(prefix)]
        else:
            out = list(self.model.irange(start, stop, inclusive=(True, False)))
        if reverse:
            out.reverse()
        return out

    # -------------------------------------------------------------- rules
    @rule(k=keys, v=values, kw=wrappers, vw=wrappers, setitem=st.booleans())
    def put(self, k, v, kw, vw, setitem):
        if setitem:
            self.db[kw(k)] = vw(v)
        else:
            assert self.db.put(kw(k), vw(v)) is None
        self.model[k] = v

    @rule(k=keys, kw=wrappers)
    def get(self, k, kw):
        assert self.db.get(kw(k)) == self.model.get(k)
        assert self.db.get(kw(k), b"<default>") == self.model.get(k, b"<default>")
        assert (kw(k) in self.db) == (k in self.model)

    @rule(k=keys)
    def getitem(self, k):
        if k in self.model:
            assert self.db[k] == self.model[k]
        else:
            with pytest.raises(KeyError):
                self.db[k]

    @rule(k=keys, use_del=st.booleans())
    def delete(self, k, use_del):
        if use_del:
            if k in self.model:
                del self.db[k]
            else:
                with pytest.raises(KeyError):
                    del self.db[k]
        else:
            assert self.db.delete(k) == (k in self.model)
        self.model.pop(k, None)

    @rule(ops=batch_ops, fail=st.booleans())
    def batch(self, ops, fail):
        try:
            with self.db.batch() as b:
                for op in ops:
                    if op[0] == "put":
                        b.put(op[1], op[2])
                    else:
                        b.delete(op[1])
                assert len(b) == len(ops)
                if fail:
                    raise _Discard()
        except _Discard:
            pass
        if not fail:
            for op in ops:
                if op[0] == "put":
                    self.model[op[1]] = op[2]
                else:
                    self.model.pop(op[1], None)

    @rule(sync=st.booleans(), persist=st.sampled_from(["none", "none", "none", "msync"]))
    def reopen(self, sync, persist):
        self.db.close()
        self.db = pastedb.open(self.dir, create=False, persist=persist, sync=sync)
        self.sync_mode = sync
        assert dict(self.db.items()) == dict(self.model)

    @rule()
    def checkpoint(self):
        self.db.checkpoint()

    @precondition(lambda self: not self.sync_mode)
    @rule()
    def sync(self):
        self.db.sync()
        st = self.db.stats()
        assert st["log_durable_lsn"] == st["log_next_lsn"] - 1

    @rule(start=st.none() | keys, stop=st.none() | keys, reverse=st.booleans(),
          what=st.sampled_from(["keys", "values", "items"]))
    def scan(self, start, stop, reverse, what):
        want = self.expected_range(start, stop, reverse=reverse)
        got = list(getattr(self.db, what)(start, stop, reverse=reverse))
        self.compare(what, got, want)

    @rule(prefix=prefixes, reverse=st.booleans(), what=st.sampled_from(["keys", "values", "items"]))
    def scan_prefix(self, prefix, reverse, what):
        want = self.expected_range(prefix=prefix, reverse=reverse)
        got = list(getattr(self.db, what)(prefix=prefix, reverse=reverse))
        self.compare(what, got, want)

    def compare(self, what, got, want):
        if what == "keys":
            assert got == want
        elif what == "values":
            assert got == [self.model[k] for k in want]
        else:
            assert got == [(k, self.model[k]) for k in want]

    @rule(take=st.integers(0, 4), k=keys, v=small_values, reverse=st.booleans())
    def iterate_while_writing(self, take, k, v, reverse):
        # A cursor stays usable across writes; whatever it returns is in
        # order and is, key by key, the state before or after the write.
        before = dict(self.model)
        it = self.db.items(reverse=reverse)
        got = list(itertools.islice(it, take))
        self.db[k] = v
        self.model[k] = v
        got.extend(it)
        ks = [key for key, _ in got]
        assert ks == sorted(set(ks), reverse=reverse)
        for key, value in got:
            assert before.get(key) == value or self.model.get(key) == value

    @invariant()
    def length(self):
        if self.db is not None:
            assert len(self.db) == len(self.model)


class _Discard(Exception):
    """Raised inside a batch block to discard it."""


def test_model(tmp_path, slow):
    DBMachine.base_dir = str(tmp_path)
    run_state_machine_as_test(DBMachine, settings=settings(
        max_examples=600 if slow else 60,
        stateful_step_count=60 if slow else 40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))
