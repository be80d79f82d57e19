"""The in-memory ordered index (pastedb.core.index), driven through IndexTester.

IndexTester keeps keys in a fixed arena standing in for the pool and
overwrites the bytes of any key the index no longer names, so a stale Ref
shows up as a wrong answer here.
"""

import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pastedb.core.index import IndexTester, _hash_for_test
from sortedcontainers import SortedDict


def model_seek(sd, how, key):
    """What seek_<how> must return, given the SortedDict model."""
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


def model_walk(sd, key, reverse, inclusive):
    """What items_from must return, given the SortedDict model."""
    keys = sd.keys()
    if key is None:
        return list(reversed(keys)) if reverse else list(keys)
    if reverse:
        end = sd.bisect_right(key) if inclusive else sd.bisect_left(key)
        return list(reversed(keys[:end]))
    start = sd.bisect_left(key) if inclusive else sd.bisect_right(key)
    return list(keys[start:])


@pytest.fixture
def ix():
    return IndexTester(1 << 20)


# ---------------------------------------------------------------- unit tests


def test_hash_is_xxh64():
    # Published XXH64 vectors (seed 0): the short path, the tail and the
    # 32-byte stripe loop.
    assert _hash_for_test(b"") == 0xEF46DB3751D8E999
    assert _hash_for_test(b"abc") == 0x44BC2CF5AD770999
    assert _hash_for_test(b"Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1
    assert _hash_for_test(b"abc", 1) != _hash_for_test(b"abc", 2)


def test_empty(ix):
    assert len(ix) == 0
    assert ix.get(b"") is None
    assert ix.get(b"x") is None
    assert ix.remove(b"x") is False
    assert ix.first() is None and ix.last() is None
    for how in ("ge", "gt", "le", "lt"):
        assert ix.seek(how, b"") is None
        assert ix.seek(how, b"m") is None
    assert ix.items_from() == [] and ix.items_from(reverse=True) == []
    assert ix.items_from(b"a") == [] and ix.items_from(b"a", reverse=True) == []
    assert ix.check_invariants()
    assert ix.stats()["table_cap"] == 0


def test_memcmp_order(ix):
    keys = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"a",
        b"a\x00",
        b"a\x00\x00",
        b"a\x01",
        b"ab",
        b"abc",
        b"b",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
        b"x" * 1000,
        b"x" * 999 + b"y",
        b"x" * 1000 + b"\x00",
        b"x" * 999,
    ]
    shuffled = keys[:]
    random.Random(7).shuffle(shuffled)
    for i, k in enumerate(shuffled):
        assert ix.put(k, i, len(k)) is False
    assert len(ix) == len(keys)
    assert ix.items_from() == sorted(keys)
    assert ix.items_from(reverse=True) == sorted(keys, reverse=True)
    assert ix.first() == b"" and ix.last() == b"\xff\xff"
    for i, k in enumerate(shuffled):
        assert ix.get(k) == (i, len(k))
    # Prefixes, extensions and NUL-padded variants of stored keys are distinct keys.
    for k in (b"a\x00\x00\x00", b"abcd", b"\x00\x00\x00", b"x" * 1001, b"x" * 998):
        assert ix.get(k) is None
    ix.check_invariants()


def test_empty_key(ix):
    assert ix.put(b"", 5, 0) is False
    assert ix.get(b"") == (5, 0)
    assert ix.put(b"a", 6, 1) is False
    assert ix.seek("ge", b"") == b""
    assert ix.seek("gt", b"") == b"a"
    assert ix.seek("lt", b"") is None
    assert ix.seek("le", b"") == b""
    assert ix.seek("lt", b"a") == b""
    assert ix.put(b"", 7, 0) is True
    assert ix.get(b"") == (7, 0)
    assert ix.remove(b"") is True
    assert ix.get(b"") is None
    assert ix.items_from() == [b"a"]
    ix.check_invariants()


def test_binary_keys_with_nul(ix):
    keys = [bytes([a, b, c]) for a in (0, 1, 255) for b in (0, 128) for c in (0, 7)]
    keys += [b"\x00" * n for n in range(6)]
    for i, k in enumerate(keys):
        ix.put(k, i, 1)
    want = sorted(set(keys))
    assert ix.items_from() == want
    for k in want:
        assert ix.get(k) is not None
    ix.check_invariants()


def test_long_keys_share_prefix(ix):
    prefix = (bytes(range(256)) * 4)[:999]
    keys = [prefix + bytes([b]) for b in range(0, 256, 5)]
    keys.append(prefix)
    random.Random(1).shuffle(keys)
    for i, k in enumerate(keys):
        ix.put(k, i, len(k))
    assert ix.items_from() == sorted(keys)
    assert ix.seek("gt", prefix) == prefix + b"\x00"
    assert ix.seek("lt", prefix + b"\x03") == prefix + b"\x00"
    assert ix.seek("ge", prefix + b"\x03") == prefix + b"\x05"
    ix.check_invariants()


@pytest.mark.parametrize("p8", [b"abcdefgh", b"\x00" * 8, b"\xff" * 8])
def test_keys_around_the_8_byte_prefix(ix, p8):
    # The skip list compares a cached 8-byte prefix first; keys equal there
    # must still order by the bytes after it and by length.
    keys = [p8 + bytes([b]) for b in (0x00, 0x01, 0x7F, 0x80, 0xFF)]
    keys += [
        p8,
        p8[:7],
        p8[:7] + b"\x00",
        p8[:7] + b"\xff",
        p8 + b"\x00\x00",
        p8 + b"\x01\x00",
        p8 + b"\xff\xff",
        p8[:1],
    ]
    keys = sorted(set(keys))
    shuffled = keys[:]
    random.Random(11).shuffle(shuffled)
    for k in shuffled:
        ix.put(k, 0, len(k))
    assert ix.items_from() == keys
    ix.check_invariants()
    stored = SortedDict(dict.fromkeys(keys))
    probes = keys + [p8 + b"\x00\x01", p8 + b"\x02", p8[:6], p8 + b"\xff\xff\xff"]
    for probe in probes:
        for how in ("ge", "gt", "le", "lt"):
            assert ix.seek(how, probe) == model_seek(stored, how, probe), (how, probe)
    for k in shuffled[::2]:
        assert ix.remove(k)
        del stored[k]
    assert ix.items_from() == list(stored.keys())
    ix.check_invariants()


def test_replace_updates_ref_and_keeps_order(ix):
    for k in (b"a", b"b", b"c"):
        ix.put(k, 1, 1)
    before = ix.get_ref(b"b")
    assert ix.put(b"b", 99, 42) is True
    after = ix.get_ref(b"b")
    assert (after["voff"], after["vlen"]) == (99, 42)
    assert after["lsn"] > before["lsn"]
    # The replacement names the new key bytes; the old ones were scribbled.
    assert after["koff"] != before["koff"]
    assert len(ix) == 3
    assert ix.items_from() == [b"a", b"b", b"c"]
    assert ix.seek("ge", b"b") == b"b" and ix.seek("le", b"b") == b"b"
    for _ in range(5):
        assert ix.put(b"b", 7, 7) is True
    assert ix.get(b"b") == (7, 7)
    ix.check_invariants()


def test_remove(ix):
    keys = [b"%03d" % i for i in range(100)]
    for k in keys:
        ix.put(k, 0, 0)
    assert ix.remove(b"000") is True  # first
    assert ix.remove(b"099") is True  # last
    assert ix.remove(b"050") is True  # middle
    assert ix.remove(b"050") is False
    assert ix.remove(b"05") is False  # a prefix of stored keys
    left = [k for k in keys if k not in (b"000", b"099", b"050")]
    assert ix.items_from() == left
    assert ix.items_from(reverse=True) == left[::-1]
    assert ix.first() == b"001" and ix.last() == b"098"
    assert ix.seek("lt", b"051") == b"049" and ix.seek("gt", b"049") == b"051"
    ix.check_invariants()
    for k in left:
        assert ix.remove(k) is True
    assert len(ix) == 0 and ix.items_from() == [] and ix.first() is None
    ix.check_invariants()
    # The table gave its memory back on the way down.
    assert ix.stats()["table_cap"] <= 32
    assert ix.stats()["level"] == 1
    ix.put(b"again", 1, 1)
    assert ix.items_from() == [b"again"]
    ix.check_invariants()


@pytest.mark.parametrize(
    "probe", [b"", b"a", b"b", b"b\x00", b"c", b"d", b"f", b"f\x00", b"g", b"\xff"]
)
@pytest.mark.parametrize("how", ["ge", "gt", "le", "lt"])
def test_seek_boundaries(ix, how, probe):
    stored = SortedDict({b"b": 0, b"d": 0, b"f": 0})
    for k in stored:
        ix.put(k, 0, 0)
    assert ix.seek(how, probe) == model_seek(stored, how, probe)
    inclusive = how in ("ge", "le")
    reverse = how in ("le", "lt")
    assert ix.items_from(probe, reverse=reverse, inclusive=inclusive) == model_walk(
        stored, probe, reverse, inclusive
    )


def test_items_from_limit(ix):
    for i in range(10):
        ix.put(b"k%d" % i, i, 1)
    assert ix.items_from(b"k3", limit=2) == [b"k3", b"k4"]
    assert ix.items_from(b"k3", reverse=True, limit=2) == [b"k3", b"k2"]
    assert ix.items_from(limit=0) == []


def test_clear(ix):
    for i in range(1000):
        ix.put(b"%d" % i, i, 1)
    ix.clear()
    assert len(ix) == 0 and ix.first() is None and ix.last() is None
    assert ix.get(b"5") is None
    ix.check_invariants()
    ix.put(b"5", 1, 1)
    assert ix.get(b"5") == (1, 1) and ix.items_from() == [b"5"]
    ix.check_invariants()


def test_arena_full_leaves_index_unchanged():
    ix = IndexTester(8)
    ix.put(b"abcd", 1, 1)
    with pytest.raises(MemoryError):
        ix.put(b"efghi", 2, 2)
    assert len(ix) == 1 and ix.items_from() == [b"abcd"]
    ix.check_invariants()


def test_rejects_none_key(ix):
    with pytest.raises(TypeError):
        ix.put(None, 0, 0)
    with pytest.raises(TypeError):
        ix.get(None)


# -------------------------------------------------------------------- scale


def test_scale_200k_random_keys():
    rng = random.Random(20240601)
    n = 200_000
    keys = [rng.randbytes(rng.randint(1, 24)) for _ in range(n)]
    distinct = sorted(set(keys))
    ix = IndexTester(32 << 20)
    assert ix.put_all(keys) == len(distinct)
    assert len(ix) == len(distinct)
    assert ix.count_found(keys) == n
    assert ix.items_from() == distinct
    assert ix.items_from(reverse=True) == distinct[::-1]
    stored = set(distinct)
    extended = [k + b"\x00" for k in distinct[:1000]]
    assert ix.count_found(extended) == sum(1 for k in extended if k in stored)
    ix.check_invariants()
    for k in distinct[::2]:
        assert ix.remove(k)
    assert ix.items_from() == distinct[1::2]
    assert ix.count_found(distinct[::2]) == 0
    ix.check_invariants()


# ----------------------------------------------------------- model checking

# A narrow alphabet so keys collide, share prefixes and differ by a trailing
# NUL, on both sides of the 8-byte prefix the skip list compares first; plus
# arbitrary short binary keys.
keys_st = st.one_of(
    st.lists(st.sampled_from([0x00, 0x01, 0x61, 0x7F, 0x80, 0xFF]), max_size=4).map(bytes),
    st.lists(st.sampled_from([0x00, 0x61, 0xFF]), min_size=6, max_size=11).map(bytes),
    st.binary(max_size=12),
)


class IndexMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.ix = IndexTester(4 << 20)
        self.model = SortedDict()
        self.voff = 0

    def _put(self, key):
        self.voff += 1
        existed = self.ix.put(key, self.voff, len(key))
        assert existed == (key in self.model)
        self.model[key] = (self.voff, len(key))

    @rule(key=keys_st)
    def put(self, key):
        self._put(key)

    @rule(keys=st.lists(keys_st, min_size=10, max_size=60))
    def put_batch(self, keys):
        # Batches push the table through several grows.
        for k in keys:
            self._put(k)

    @rule(key=keys_st)
    def remove(self, key):
        assert self.ix.remove(key) == (key in self.model)
        self.model.pop(key, None)

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def remove_existing_batch(self, data):
        # Mass removal drives backward-shift deletion and table shrinking.
        victims = data.draw(st.lists(st.sampled_from(list(self.model.keys())), max_size=40))
        for k in victims:
            assert self.ix.remove(k) == (k in self.model)
            self.model.pop(k, None)

    @rule(key=keys_st)
    def get(self, key):
        assert self.ix.get(key) == self.model.get(key)

    @rule(key=keys_st, how=st.sampled_from(["ge", "gt", "le", "lt"]))
    def seek(self, key, how):
        assert self.ix.seek(how, key) == model_seek(self.model, how, key)

    @rule(key=st.one_of(st.none(), keys_st), reverse=st.booleans(), inclusive=st.booleans())
    def walk(self, key, reverse, inclusive):
        assert self.ix.items_from(key, reverse=reverse, inclusive=inclusive) == model_walk(
            self.model, key, reverse, inclusive
        )

    @rule()
    def clear(self):
        self.ix.clear()
        self.model.clear()

    @invariant()
    def agrees(self):
        assert len(self.ix) == len(self.model)
        keys = self.model.keys()
        assert self.ix.first() == (keys[0] if keys else None)
        assert self.ix.last() == (keys[-1] if keys else None)
        self.ix.check_invariants()


IndexMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIndexMachine = IndexMachine.TestCase
