"""The persistent copy-on-write B-tree (pastedb.core.btree), driven through BTreeTester.

Structure: after every commit ``check()`` must be clean (order, fill, checksums,
every page reachable once or free, nothing leaked) and the contents must equal a
SortedDict model.  Durability: a crash at every I/O operation of a commit
(with each pending write kept, torn or lost), SIGKILL of a committing child
process, torn or zeroed meta pages, flipped bytes anywhere in the file.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tally
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pastedb.core.btree_testing import BTreeTester, synth_ref
from sortedcontainers import SortedDict

import pastedb
from pastedb.core.format import REF_SIZE, crc32c

PAGE = 4096
REPO_ROOT = Path(__file__).resolve().parent.parent


def ref(n: int, key: bytes) -> tuple:
    """A distinguishable Ref for (n, key): (koff, voff, vlen, lsn, klen, vcrc, expire_ms)."""
    return (n * 3, n * 7 + 1, n % 1000, n, len(key), (n * 2654435761) & 0xFFFFFFFF, 0)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "index.btree"


def fill(t: BTreeTester, keys, n0: int = 0) -> dict:
    """One committed txn putting keys; returns {key: ref}."""
    t.begin()
    out = {}
    for i, k in enumerate(keys):
        t.put(k, ref(n0 + i, k))
        out[k] = ref(n0 + i, k)
    t.commit(n0)
    return out


def model_seek(sd: SortedDict, how: str, key: bytes):
    keys = sd.keys()
    if how == "ge":
        i = sd.bisect_left(key)
        return keys[i] if i < len(keys) else None
    if how == "gt":
        i = sd.bisect_right(key)
        return keys[i] if i < len(keys) else None
    if how == "le":
        i = sd.bisect_right(key) - 1
        return keys[i] if i >= 0 else None
    i = sd.bisect_left(key) - 1
    return keys[i] if i >= 0 else None


def seek(cur, how: str, key: bytes):
    got = getattr(cur, "seek_" + how)(key)
    return None if got is None else got[0]


# ---------------------------------------------------------------- basics


def test_empty_tree(path):
    with BTreeTester(path) as t:
        assert (t.count, t.txn, t.depth, t.applied_lsn) == (0, 0, 0, 0)
        assert t.get(b"a") is None
        assert t.items() == []
        assert t.check() == []
        c = t.cursor()
        assert c.first() is None and c.last() is None and c.seek_ge(b"") is None
        c.close()
        t.begin()
        assert not t.delete(b"missing")
        t.commit(7)
        assert t.applied_lsn == 7 and t.check() == []
    assert os.path.getsize(path) == 2 * PAGE
    assert not os.path.exists(str(path) + ".new")


def test_put_get_replace_delete(path):
    with BTreeTester(path) as t:
        t.begin()
        assert t.put(b"k", ref(1, b"k")) is False
        assert t.put(b"k", ref(2, b"k")) is True
        assert t.put(b"", ref(3, b"")) is False                 # the empty key is a key
        assert t.get(b"k") == ref(2, b"k") and t.get(b"") == ref(3, b"")
        assert t.count == 2
        t.commit(1)
        t.begin()
        assert t.delete(b"k") is True and t.delete(b"k") is False
        assert t.get(b"k") is None and t.count == 1
        t.commit(2)
        assert t.items() == [(b"", ref(3, b""))]


def test_misuse_reports_errors(path):
    with BTreeTester(path) as t:
        with pytest.raises(OSError) as e:
            t.put(b"k", ref(1, b"k"))                       # no write txn
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError):
            t.commit()
        t.begin()
        with pytest.raises(OSError):
            t.begin()                                        # one writer
        with pytest.raises(ValueError):
            t.put(b"x" * 1025, ref(1, b""))                  # ST_TOO_BIG
        assert t.delete(b"x" * 1025) is False
        t.put(b"k", ref(1, b"k"))                            # the txn is still fine
        t.commit(1)
        with pytest.raises(pastedb.Error):
            t.cursor(write=True)
    t.close()
    with pytest.raises(pastedb.Error):
        t.get(b"k")
    with pytest.raises(FileNotFoundError):
        BTreeTester(path.parent / "absent", create=False)


def test_reopen_preserves_last_commit_and_drops_open_txn(path):
    rnd = random.Random(5)
    keys = [b"%08d" % rnd.randrange(10**8) for _ in range(3000)]
    with BTreeTester(path) as t:
        want = fill(t, keys)
        t.begin()
        t.put(b"uncommitted", ref(0, b"uncommitted"))
        for k in keys[:500]:
            t.delete(k)
    with BTreeTester(path) as t:
        assert t.applied_lsn == 0 and t.count == len(want)
        assert t.items() == sorted(want.items())
        assert t.get(b"uncommitted") is None
        assert t.check() == []


def test_abort_discards_everything(path):
    with BTreeTester(path, sync=False) as t:
        want = fill(t, [b"k%05d" % i for i in range(2000)])
        pages, txn = t.page_count, t.txn
        t.begin()
        for i in range(0, 2000, 2):
            t.delete(b"k%05d" % i)
        for i in range(5000):
            t.put(b"new%05d" % i, ref(i, b""))
        assert t.count == 1000 + 5000
        t.abort()
        assert (t.count, t.txn, t.page_count) == (2000, txn, pages)
        assert t.items() == sorted(want.items())
        t.begin()                                            # the next txn starts clean
        t.put(b"after", ref(1, b"after"))
        t.commit(9)
        want[b"after"] = ref(1, b"after")
        assert t.items() == sorted(want.items()) and t.check() == []


def test_1024_byte_keys(path):
    rnd = random.Random(11)
    model = {}
    with BTreeTester(path, sync=False) as t:
        for c in range(12):
            t.begin()
            for i in range(150):
                k = rnd.randbytes(1024) if rnd.random() < 0.7 else rnd.randbytes(rnd.randrange(1025))
                if model and rnd.random() < 0.35:
                    k = rnd.choice(sorted(model))
                    assert t.delete(k)
                    del model[k]
                else:
                    t.put(k, ref(i, k))
                    model[k] = ref(i, k)
            t.commit(c)
            assert t.check() == []
        assert t.depth >= 4                                  # fan-out 3 at worst: a deep tree
        assert t.items() == sorted(model.items())
        t.begin()
        for k in list(model):
            assert t.delete(k)
        t.commit(99)
        assert t.count == 0 and t.depth == 0 and t.check() == []


# ---------------------------------------------------------------- cursors


@pytest.fixture
def even_tree(path):
    """Keys 00000, 00002, ... 09998 (5000 keys, several levels)."""
    t = BTreeTester(path, sync=False)
    want = fill(t, [b"%05d" % i for i in range(0, 10000, 2)])
    yield t, SortedDict(want)
    t.close()


def test_cursor_walks_both_directions(even_tree):
    t, sd = even_tree
    assert t.depth >= 2
    c = t.cursor()
    fwd, got = [], c.first()
    while got is not None:
        fwd.append(got)
        got = c.next()
    assert fwd == list(sd.items())
    assert c.next() is None                                # stays at the end
    back, got = [], c.last()
    while got is not None:
        back.append(got)
        got = c.prev()
    assert back == list(reversed(sd.items()))
    assert t.scan_count() == len(sd) == t.scan_count(reverse=True)


def test_cursor_seeks_at_every_boundary(even_tree):
    t, sd = even_tree
    c = t.cursor()
    probes = [b"", b"0", b"00000", b"00000\x00", b"09998", b"09999", b"1", b"\xff" * 1100]
    probes += [b"%05d" % i for i in range(-1, 10001)]
    for key in probes:
        for how in ("ge", "gt", "le", "lt"):
            assert seek(c, how, key) == model_seek(sd, how, key), (how, key)


def test_cursor_direction_changes_cross_leaves(even_tree):
    t, sd = even_tree
    keys = list(sd.keys())
    c = t.cursor()
    rnd = random.Random(3)
    for _ in range(200):
        i = rnd.randrange(len(keys))
        assert c.seek_ge(keys[i])[0] == keys[i]
        for _ in range(rnd.randrange(1, 120)):
            if rnd.random() < 0.5:
                got, i = c.next(), i + 1
            else:
                got, i = c.prev(), i - 1
            if not 0 <= i < len(keys):
                assert got is None
                break
            assert got[0] == keys[i]


def test_write_cursor_sees_txn_and_reseeks_after_changes(even_tree):
    t, sd = even_tree
    t.begin()
    t.put(b"00001", ref(1, b"00001"))
    c = t.cursor(write=True)
    assert c.seek_ge(b"00000")[0] == b"00000"
    assert c.next()[0] == b"00001"
    # Changes behind and ahead of the cursor, with splits and merges.
    for i in range(3, 4000, 2):
        t.put(b"%05d" % i, ref(i, b""))
    for i in range(4, 3000, 2):
        t.delete(b"%05d" % i)
    assert c.next()[0] == b"00002"
    assert c.next()[0] == b"00003"
    assert c.prev()[0] == b"00002"
    t.commit(1)
    with pytest.raises(OSError):
        c.next()                                           # its txn ended
    assert t.check() == []


def test_read_cursor_pins_its_snapshot(path):
    """Pages a read cursor can reach are not reused while it is open; after it
    closes they are."""
    with BTreeTester(path, sync=False) as t:
        want = fill(t, [b"k%05d" % i for i in range(3000)], n0=1)
        c = t.cursor()
        assert (c.snapshot_lsn, c.snapshot_count) == (1, 3000)
        for n in range(2, 12):                                 # rewrite every page many times
            t.begin()
            for i in range(3000):
                t.put(b"k%05d" % i, ref(n, b""))
            for i in range(0, 3000, 3):
                t.delete(b"k%05d" % i)
            t.commit(n)
            assert t.check() == []
        grown = t.page_count
        got, walked = c.first(), []
        while got is not None:
            walked.append(got)
            got = c.next()
        assert walked == sorted(want.items())
        assert t.readers == 1
        c.close()
        assert t.readers == 0
        for n in range(12, 30):
            t.begin()
            for i in range(1, 3000, 3):
                t.put(b"k%05d" % i, ref(n, b""))
            t.commit(n)
        assert t.page_count <= grown                          # the pinned pages came back
        c.renew()
        assert c.snapshot_lsn == 29
        assert t.check() == []


def test_read_cursors_in_another_thread_while_committing(path):
    """Readers pin a snapshot and walk it without the GIL while the writer
    rewrites, deletes and commits: every walk sees exactly its snapshot."""
    import threading

    t = BTreeTester(path, sync=False)
    fill(t, [b"k%05d" % i for i in range(20000)])
    stop, seen, errors = threading.Event(), [], []

    def reader():                                # fast walks, GIL released
        try:
            while not stop.is_set():
                walked, entries, lsn = t.scan_snapshot()
                assert walked == entries, (walked, entries, lsn)
                seen.append(lsn)
        except BaseException as e:               # reported by the main thread
            errors.append(e)

    def slow_reader():                           # one snapshot held across many commits
        try:
            while not stop.is_set():
                c = t.cursor()
                got, walked, last = c.first(), 0, b""
                while got is not None:
                    assert got[0] > last or walked == 0
                    last, walked = got[0], walked + 1
                    if walked % 500 == 0:
                        time.sleep(0.002)
                    got = c.next()
                assert walked == c.snapshot_count
                c.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader), threading.Thread(target=slow_reader)]
    for th in threads:
        th.start()
    rnd = random.Random(6)
    try:
        for n in range(1, 80):
            t.begin()
            t.put_many([b"k%05d" % rnd.randrange(30000) for _ in range(2000)], n * 10000)
            t.delete_many([b"k%05d" % rnd.randrange(30000) for _ in range(1500)])
            t.commit(n)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors
    assert len(set(seen)) > 3                    # the walks really spanned many commits
    assert t.check() == []
    t.close()


# ---------------------------------------------------------------- model-based


BIG = [bytes([65 + i]) * 1024 for i in range(12)] + [b"B" * 1000 + bytes([i]) for i in range(12)]
KEYS = st.one_of(
    st.binary(max_size=3),
    st.integers(0, 600).map(lambda n: b"m%04d" % n),
    st.integers(0, len(BIG) - 1).map(BIG.__getitem__),
)
HOWS = st.sampled_from(["ge", "gt", "le", "lt"])


class BTreeMachine(RuleBasedStateMachine):
    """The tree against SortedDict; structure checked after every commit."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="btree-model-")
        self.path = os.path.join(self.dir, "t")
        self.t = BTreeTester(self.path, sync=False)
        self.committed = SortedDict()
        self.current = None                 # the write txn's model while one is open
        self.lsn = 0
        self.n = 0

    def txn(self) -> SortedDict:
        if self.current is None:
            self.t.begin()
            self.current = SortedDict(self.committed)
        return self.current

    def view(self) -> SortedDict:
        return self.committed if self.current is None else self.current

    @rule(key=KEYS)
    def put(self, key):
        m = self.txn()
        self.n += 1
        assert self.t.put(key, ref(self.n, key)) == (key in m)
        m[key] = ref(self.n, key)

    @rule(key=KEYS)
    def delete(self, key):
        m = self.txn()
        assert self.t.delete(key) == (key in m)
        m.pop(key, None)

    @rule(seed=st.integers(0, 2**32), count=st.integers(1, 400), big=st.booleans())
    def put_many(self, seed, count, big):
        m = self.txn()
        rnd = random.Random(seed)
        keys = [b"m%04d" % rnd.randrange(600) + (b"." * rnd.randrange(900) if big else b"")
                for _ in range(count)]
        self.t.put_many(keys, self.n)
        for i, k in enumerate(keys):
            m[k] = synth_ref(self.n + i, len(k))
        self.n += count

    @rule(seed=st.integers(0, 2**32), frac=st.floats(0.1, 1.0))
    def delete_many(self, seed, frac):
        m = self.txn()
        rnd = random.Random(seed)
        victims = [k for k in m if rnd.random() < frac]
        assert self.t.delete_many(victims) == len(victims)
        for k in victims:
            del m[k]

    @rule()
    def commit(self):
        if self.current is None:
            self.t.begin()
            self.current = SortedDict(self.committed)
        self.lsn += 1
        self.t.commit(self.lsn)
        self.committed, self.current = self.current, None
        assert self.t.check() == []
        assert self.t.items() == list(self.committed.items())
        assert self.t.applied_lsn == self.lsn

    @precondition(lambda self: self.current is not None)
    @rule()
    def abort(self):
        self.t.abort()
        self.current = None

    @rule()
    def reopen(self):
        self.t.close()
        self.current = None
        self.t = BTreeTester(self.path, sync=False)
        assert self.t.applied_lsn == self.lsn
        assert self.t.items() == list(self.committed.items())

    @rule(key=KEYS, how=HOWS, write=st.booleans(), steps=st.integers(0, 30))
    def cursor(self, key, how, write, steps):
        if write:
            self.txn()
        m = self.view() if write else self.committed
        c = self.t.cursor(write=write)
        got = getattr(c, "seek_" + how)(key)
        want = model_seek(m, how, key)
        assert (got and got[0]) == want
        if want is None:
            return
        assert got[1] == m[want]
        i = m.index(want)
        for s in range(steps):
            forward = (s // 4) % 2 == 0
            got, i = (c.next(), i + 1) if forward else (c.prev(), i - 1)
            if not 0 <= i < len(m):
                assert got is None
                return
            assert got == m.peekitem(i)
        c.close()

    @rule(key=KEYS)
    def get(self, key):
        assert self.t.get(key) == self.view().get(key)

    @invariant()
    def counts(self):
        assert self.t.count == len(self.view())

    def teardown(self):
        self.t.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestBTreeModel = BTreeMachine.TestCase
TestBTreeModel.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- space


def test_free_pages_are_reused_under_churn(path):
    """Overwrite commits of the same keys: the file stops growing."""
    rnd = random.Random(2)
    keys = [b"user:%06d" % i for i in range(5000)]
    with BTreeTester(path, sync=False) as t:
        fill(t, keys)
        sizes = []
        for n in range(300):
            t.begin()
            for k in rnd.sample(keys, 40):
                t.put(k, ref(n, k))
            for k in rnd.sample(keys, 5):
                t.delete(k)
                t.put(k, ref(n, k))
            t.commit(n)
            sizes.append(t.page_count)
        assert t.check() == []
        # A steady state: three generations of changed pages at most.
        assert sizes[-1] == max(sizes[100:]), sizes[100:]
        assert sizes[-1] <= sizes[20] + 10
    assert os.path.getsize(path) == sizes[-1] * PAGE


def test_deleted_space_is_reused(path):
    with BTreeTester(path, sync=False) as t:
        fill(t, [b"a%06d" % i for i in range(20000)])
        peak = t.page_count
        t.begin()
        for i in range(20000):
            t.delete(b"a%06d" % i)
        t.commit(1)
        assert t.count == 0 and t.check() == []
        # every page is free but the metas and the free-list pages (one per
        # run: reusable now, freed by this txn)
        assert t.page_count - 2 - 2 <= t.free_pages <= t.page_count - 2 - 1
        t.begin()                                          # a txn in between: the pages age
        t.commit(2)
        fill(t, [b"b%06d" % i for i in range(20000)], n0=3)
        assert t.page_count <= peak + 10
        assert t.check() == []


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_sequential_inserts_fill_pages(path, order):
    """Appends split at the page end, so pages end up ~80% full, not 50%."""
    keys = [b"seq:%08d" % i for i in range(40000)]
    if order == "descending":
        keys.reverse()
    with BTreeTester(path, sync=False) as t:
        for b in range(0, len(keys), 5000):
            t.begin()
            t.put_many(keys[b:b + 5000], b)
            t.commit(b)
        assert t.check() == []
        leaves = sum(1 for _, level in t.tree_pages() if level == 0)
    payload = len(keys) * (2 + 12 + REF_SIZE + 2)
    assert payload / (leaves * (PAGE - 32)) > 0.75


# ---------------------------------------------------------------- damage


def flip(path, offset: int, xor: int = 0x40) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ xor]))


def test_both_metas_invalid_raise_corruption_naming_the_file(path):
    with BTreeTester(path) as t:
        fill(t, [b"k%d" % i for i in range(100)])
    for slot in (0, 1):
        flip(path, slot * PAGE + 40)
    with pytest.raises(pastedb.CorruptionError) as e:
        BTreeTester(path)
    assert str(path) in str(e.value) and e.value.path == str(path)
    with open(path, "wb") as f:                       # not a b-tree at all
        f.write(b"hello")
    with pytest.raises(pastedb.CorruptionError):
        BTreeTester(path)


def test_unknown_version_is_refused(path):
    with BTreeTester(path) as t:
        fill(t, [b"x"])
    data = bytearray(path.read_bytes())
    for slot in (0, 1):
        page = bytearray(data[slot * PAGE:(slot + 1) * PAGE])
        struct.pack_into("<I", page, 32 + 8, 99)            # MetaBody.version
        struct.pack_into("<I", page, 0, crc32c(bytes(page[4:])))
        data[slot * PAGE:(slot + 1) * PAGE] = page
    path.write_bytes(data)
    with pytest.raises(pastedb.CorruptionError) as e:
        BTreeTester(path)
    assert "version" in str(e.value)


@pytest.mark.parametrize("damage", ["zero", "torn", "stale", "garbage"])
def test_damaged_newer_meta_falls_back_to_the_older_commit(path, damage):
    with BTreeTester(path) as t:
        old = fill(t, [b"k%05d" % i for i in range(4000)], n0=1)
        newer = (t.txn + 1) & 1                          # the slot the next commit writes
        before = path.read_bytes()[newer * PAGE:(newer + 1) * PAGE]
        t.begin()
        for i in range(0, 4000, 2):
            t.delete(b"k%05d" % i)
        for i in range(1000):
            t.put(b"n%05d" % i, ref(i, b""))
        t.commit(2)
        # Txn 3 writes its pages and dies before its meta: it may only have
        # used pages that neither meta reaches, so commit 1 stays whole too.
        t.begin()
        for i in range(4000):
            t.put(b"k%05d" % i, ref(3, b""))
        t.fail_io_at(2)                                  # the barrier after the page writes
        with pytest.raises(OSError):
            t.commit(3)
    data = bytearray(path.read_bytes())
    at = newer * PAGE
    if damage == "zero":
        data[at:at + PAGE] = bytes(PAGE)
    elif damage == "torn":                    # the write stopped after the header's first bytes
        data[at + 16:at + PAGE] = before[16:]
    elif damage == "stale":                   # the write never reached the disk
        data[at:at + PAGE] = before
    else:
        data[at + 100:at + 140] = os.urandom(40)
    path.write_bytes(data)
    with BTreeTester(path) as t:
        assert t.applied_lsn == 1
        assert t.items() == sorted(old.items())
        assert t.check() == []
        t.begin()                                        # and it carries on from there
        t.put(b"z", ref(1, b"z"))
        t.commit(3)
        assert t.check() == []
    with BTreeTester(path) as t:
        assert t.applied_lsn == 3 and t.count == len(old) + 1


def test_flipped_byte_in_a_tree_page_is_corruption_not_a_crash(path):
    with BTreeTester(path) as t:
        want = fill(t, [b"k%05d" % i for i in range(5000)])
        pages = t.tree_pages()
    leaves = [pg for pg, level in pages if level == 0]
    root = pages[0][0]
    for victim in (leaves[len(leaves) // 2], root):
        pristine = path.read_bytes()
        flip(path, victim * PAGE + 1000)
        with BTreeTester(path) as t:
            with pytest.raises(pastedb.CorruptionError) as e:
                t.items()
            assert str(path) in str(e.value)
            if victim == root:
                with pytest.raises(pastedb.CorruptionError):
                    t.get(b"k00000")
            problems = t.check()
            assert any(f"page {victim} " in p and "checksum" in p for p in problems), problems
            with pytest.raises(pastedb.CorruptionError):
                t.scan_count()
            t.begin()                                     # a write that reaches it fails too
            with pytest.raises(pastedb.CorruptionError):
                for k in sorted(want):
                    t.put(k, ref(0, k))
            t.abort()
        path.write_bytes(pristine)
    with BTreeTester(path) as t:
        assert t.check() == [] and t.items() == sorted(want.items())


def test_flipped_byte_in_the_free_list(path):
    with BTreeTester(path) as t:
        fill(t, [b"k%05d" % i for i in range(3000)])
        t.begin()
        for i in range(0, 3000, 2):
            t.delete(b"k%05d" % i)
        t.commit(1)
        assert t.free_pages > 0
        tree = {pg for pg, _ in t.tree_pages()}
    # the free-list page is the one page that is neither in the tree nor listed free
    data = path.read_bytes()
    chain = [pg for pg in range(2, len(data) // PAGE)
             if pg not in tree and data[pg * PAGE + 16] == 4]           # PT_FREE
    assert chain
    flip(path, chain[-1] * PAGE + 50)
    with BTreeTester(path) as t:
        assert t.count == 1500 and len(t.items()) == 1500              # reads still work
        with pytest.raises(pastedb.CorruptionError):
            t.begin()                                                  # writes need the list
        assert any("free-list page" in p for p in t.check())


def test_random_byte_flips_give_right_answers_or_corruption(path):
    """Anywhere in the file: every read returns exactly a committed state or
    raises CorruptionError -- never garbage, never a crash -- and whenever a
    read fails, check() names a problem too."""
    rnd = random.Random(8)
    with BTreeTester(path) as t:
        state = fill(t, [rnd.randbytes(rnd.randrange(1, 40)) for _ in range(3000)])
        states = {0: sorted(state.items())}
        t.begin()
        for k in list(state)[:1000]:
            t.delete(k)
            del state[k]
        t.commit(1)
        states[1] = sorted(state.items())
    pristine = path.read_bytes()
    outcomes = {"clean": 0, "corrupt": 0, "fell back": 0}
    positions = [rnd.randrange(len(pristine)) for _ in range(70)]
    positions += [rnd.randrange(2 * PAGE) for _ in range(10)]           # the meta pages
    for pos in positions:
        data = bytearray(pristine)
        data[pos] ^= 1 << rnd.randrange(8)
        path.write_bytes(data)
        try:
            t = BTreeTester(path)
        except pastedb.CorruptionError:                       # that takes both metas
            raise AssertionError(f"one flip at {pos} broke both metas") from None
        with t:
            problems = t.check()
            want = states[t.applied_lsn]
            try:
                assert t.items() == want
                assert all(t.get(k) == v for k, v in want[::50])
                outcomes["fell back" if t.applied_lsn == 0 else "clean"] += 1
            except pastedb.CorruptionError:
                outcomes["corrupt"] += 1
                assert problems, pos
    assert outcomes["corrupt"] > 10 and outcomes["fell back"] > 0, outcomes


def test_truncated_file_is_corruption(path):
    with BTreeTester(path) as t:
        fill(t, [b"k%05d" % i for i in range(5000)])
        size = t.page_count * PAGE
    os.truncate(path, size // 2)
    with BTreeTester(path) as t:
        with pytest.raises(pastedb.CorruptionError):
            t.items()
        assert any("file holds" in p for p in t.check())


# ---------------------------------------------------------------- crashes


def test_io_error_before_the_meta_keeps_the_tree_usable(path):
    with BTreeTester(path) as t:
        want = fill(t, [b"k%04d" % i for i in range(2000)])
        t.begin()
        t.put(b"lost", ref(1, b"lost"))
        t.fail_io_at(1)                          # the first page write fails
        with pytest.raises(OSError) as e:
            t.commit(5)
        assert e.value.errno == errno.EIO
        t.fail_io_at(0)
        assert not t.in_txn and t.items() == sorted(want.items())
        t.begin()
        t.put(b"kept", ref(2, b"kept"))
        t.commit(6)
        assert t.get(b"kept") and t.get(b"lost") is None and t.check() == []


@pytest.mark.parametrize("which", ["meta write", "last barrier"])
def test_io_error_at_the_meta_fails_the_handle(tmp_path, which):
    """A failure writing or syncing the meta leaves the handle unable to know
    which state the disk holds: no more commits (ST_FAILED) until reopened."""
    path, probe = tmp_path / "t", tmp_path / "probe"

    def txn(t):
        t.begin()
        for i in range(0, 300, 3):
            t.put(b"k%04d" % i, ref(7, b""))

    with BTreeTester(path) as t:
        fill(t, [b"k%04d" % i for i in range(300)])
    shutil.copy(path, probe)
    with BTreeTester(probe) as t:                            # count the commit's I/O ops
        txn(t)
        t.fail_io_at(10**9)
        t.commit(5)
        ops = t.io_ops
    with BTreeTester(path) as t:
        txn(t)
        t.fail_io_at(ops - 1 if which == "meta write" else ops)
        with pytest.raises(OSError):
            t.commit(5)
        t.fail_io_at(0)
        with pytest.raises(pastedb.Error, match="barrier failed"):
            t.begin()
        assert t.count == 300                                # reads still work
    with BTreeTester(path) as t:
        assert t.applied_lsn == (0 if which == "meta write" else 5)
        assert t.check() == []


def test_crash_at_every_io_of_a_commit(tmp_path, slow):
    """A commit is stopped at each of its writes and barriers in turn (the
    failing write possibly torn), and every image a power loss could then
    leave must reopen to exactly the old or the new state, check() clean."""
    rnd = random.Random(4)
    base = tmp_path / "base"
    with BTreeTester(base, sync=False) as t:
        before = fill(t, [b"k%05d" % rnd.randrange(50000) for _ in range(6000)], n0=1)
    base_bytes = base.read_bytes()
    after = dict(before)
    ops = []
    for i in range(400):
        k = b"k%05d" % rnd.randrange(50000)
        if rnd.random() < 0.4 and k in after:
            ops.append(("del", k))
            del after[k]
        else:
            ops.append(("put", k))
            after[k] = ref(10**6 + i, k)
    states = {1: sorted(before.items()), 2: sorted(after.items())}
    work = tmp_path / "work"
    variants = 6 if slow else 2
    crash_points = 0
    for at in range(1, 10_000):
        work.write_bytes(base_bytes)
        t = BTreeTester(work, crashsim=True)
        t.begin()
        for i, (op, k) in enumerate(ops):
            t.put(k, ref(10**6 + i, k)) if op == "put" else t.delete(k)
        t.fail_io_at(at, torn=rnd.choice((0, 0, 512, 2048)))
        try:
            t.commit(2)
            t.close()
            break                                       # past the last I/O: the commit is done
        except OSError:
            pass
        # Power-loss images from the I/O layer's simulator: the durable
        # file plus each write since the last barrier whole, lost or torn
        # at a 512-byte sector.
        images = []
        for v in range(variants):
            img_dir = tmp_path / f"img{at}-{v}"
            t.crash_image(img_dir, rnd.randrange(1 << 30))
            tally.image()
            images.append(img_dir / "work")
        t.close()
        crash_points += 1
        for img_path in images:
            with BTreeTester(img_path, sync=False) as r:
                assert r.check() == [], (at, r.check())
                assert r.applied_lsn in (1, 2)
                assert r.items() == states[r.applied_lsn], at
                r.begin()                               # and it takes writes again
                r.put(b"zz", ref(0, b"zz"))
                r.commit(3)
                assert r.check() == []
    assert crash_points >= 10                            # pages, barrier, meta, barrier
    with BTreeTester(work) as t:
        assert t.applied_lsn == 2 and t.items() == states[2]


CHILD = r"""
import random, sys
from pastedb.core.btree_testing import BTreeTester
exec(sys.argv[3])
t = BTreeTester(sys.argv[1], create=True, sync=sys.argv[2] == "1")
i = t.applied_lsn
print("open", i, flush=True)
while True:
    i += 1
    puts, dels = batch(i)
    t.begin()
    t.put_many(puts, i * 100000)
    t.delete_many(dels)
    t.commit(i)
    print(i, flush=True)
"""

BATCH = r"""
def batch(i):
    rnd = random.Random(i)
    puts = [b"key%05d" % x + b"." * (x % 97) for x in
            (rnd.randrange(20000) for _ in range(rnd.randrange(10, 3000)))]
    dels = [b"key%05d" % x + b"." * (x % 97) for x in
            (rnd.randrange(20000) for _ in range(rnd.randrange(0, 1500)))]
    return puts, dels
"""


def test_sigkill_during_commits(tmp_path, crash_runs):
    """A child commits batches as fast as it can and is SIGKILLed at random
    moments; each reopen must show exactly a committed state: the last one
    the child reported, or the one whose commit was in flight."""
    namespace: dict = {"random": random}
    exec(BATCH, namespace)
    batch = namespace["batch"]
    path = tmp_path / "crash.btree"
    rnd = random.Random(7)
    model: dict = {}
    applied = 0
    progressed = 0
    for run in range(crash_runs):
        sync = "1" if run % 2 else "0"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), sync, BATCH],
                                 cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = child.stdout.readline().split()
        assert first == [b"open", str(applied).encode()], (first, child.stderr.read())
        time.sleep(rnd.uniform(0.01, 0.3))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err
        tally.kill()
        reported = [int(x) for x in out.split()] or [applied]
        with BTreeTester(path, sync=False) as t:
            now = t.applied_lsn
            assert reported[-1] <= now <= reported[-1] + 1, (reported[-1], now)
            for i in range(applied + 1, now + 1):
                puts, dels = batch(i)
                for j, k in enumerate(puts):
                    model[k] = synth_ref(i * 100000 + j, len(k))
                for k in dels:
                    model.pop(k, None)
            progressed += now - applied
            applied = now
            assert t.check() == []
            assert t.count == len(model)
            assert t.items() == sorted(model.items())
    assert progressed > 0


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_million_keys(tmp_path):
    """1,000,000 random keys in commits of 10,000; prints the figures."""
    path = tmp_path / "big.btree"
    rnd = random.Random(1)
    keys = [b"user:%016x" % rnd.getrandbits(64) for _ in range(1_000_000)]
    t = BTreeTester(path, sync=False)
    t0 = time.perf_counter()
    for b in range(0, len(keys), 10_000):
        t.begin()
        t.put_many(keys[b:b + 10_000], b)
        t.commit(b)
    insert = time.perf_counter() - t0
    probe = rnd.sample(keys, 200_000)
    t0 = time.perf_counter()
    assert t.get_many(probe) == len(probe)
    get_ns = (time.perf_counter() - t0) / len(probe) * 1e9
    distinct = len(set(keys))
    t0 = time.perf_counter()
    assert t.scan_count() == distinct
    scan = distinct / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    problems = t.check()
    check_s = time.perf_counter() - t0
    assert problems == []
    depth = t.depth
    t.close()
    t0 = time.perf_counter()
    t = BTreeTester(path, sync=False)
    open_ms = (time.perf_counter() - t0) * 1e3
    assert t.count == distinct
    t.close()
    size = os.path.getsize(path)
    print(f"\n1M keys: insert {insert:.2f} s ({len(keys) / insert:,.0f} keys/s, 100 commits), "
          f"get {get_ns:.0f} ns/op, scan {scan:,.0f} keys/s, file {size / 2**20:.1f} MiB, "
          f"depth {depth}, open {open_ms:.2f} ms, check {check_s:.2f} s")
