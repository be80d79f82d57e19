"""pastedb-check's C passes (checkcore.pyx) against their definitions.

Each pass is compared, on random states, with the obvious Python statement
of what it computes: the union of byte ranges counted byte by byte, and the
ownership sweep over sorted (start, end, prio, what, key) tuples.  The real
databases (damaged and not) are in test_check.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pastedb.core.checkcore import (
    Entry,
    owned_twice,
    referenced_bytes,
    state_sums,
)
from pastedb.core.format import CHUNK_SIZE, HEADER_SIZE

offsets = st.integers(min_value=HEADER_SIZE, max_value=HEADER_SIZE + 400)
lengths = st.integers(min_value=0, max_value=60)


@st.composite
def states(draw):
    n = draw(st.integers(min_value=0, max_value=12))
    state = {}
    for i in range(n):
        key = draw(st.binary(min_size=1, max_size=3)) + b"%d" % i
        state[key] = Entry(draw(st.integers(1, 50)), draw(offsets), len(key), draw(offsets),
                           draw(lengths), 0, draw(st.sampled_from(["log", "tree"])),
                           draw(st.integers(0, 3)))
    return state


def covered(ranges):
    return len({b for s, e in ranges for b in range(s, e)})


@settings(max_examples=300, deadline=None)
@given(states(), st.lists(st.tuples(offsets, offsets), max_size=6))
def test_referenced_bytes_is_the_union(state, ranges):
    spans = list(ranges)
    for e in state.values():
        if e.src == "tree":
            spans += [(e.koff, e.koff + e.klen), (e.voff, e.voff + e.vlen)]
    assert referenced_bytes(list(ranges), state) == covered(spans)


@settings(max_examples=300, deadline=None)
@given(states())
def test_sums_and_extent(state):
    tree = [e for e in state.values() if e.src == "tree"]
    assert state_sums(state) == (len(tree), sum(e.klen + e.vlen for e in state.values()),
                                 max((max(e.koff + e.klen, e.voff + e.vlen) for e in tree),
                                     default=0))


def sweep(chunks, state):
    """What owned_twice computes, stated over Python tuples."""
    spans = [(c, c + CHUNK_SIZE, 0, "log chunk", b"") for c in chunks]
    spans.append((0, HEADER_SIZE, 0, "header", b""))
    for key, e in state.items():
        if e.klen:
            spans.append((e.koff, e.koff + e.klen, e.lsn, "key", key))
        if e.vlen:
            spans.append((e.voff, e.voff + e.vlen, e.lsn, "value", key))
    spans.sort()
    out, cur_end, cur = [], -1, None
    for span in spans:
        start, end = span[0], span[1]
        if cur is not None and start < cur_end:
            a, b = (span, cur) if span[2] >= cur[2] else (cur, span)
            if a[3] in ("key", "value"):
                out.append((a, b, start, min(end, cur_end)))
        if end > cur_end:
            cur_end, cur = end, span
    return out


@settings(max_examples=300, deadline=None)
@given(states(), st.lists(st.sampled_from([0, HEADER_SIZE, HEADER_SIZE + 200]), max_size=2,
                          unique=True))
def test_owned_twice_is_the_sweep(state, chunks):
    assert owned_twice(chunks, state) == sweep(chunks, state)


def test_entry_is_a_value():
    e = Entry(7, 4096, 3, 4099, 10, 0xDEADBEEF, "tree", 5)
    assert e.ref() == (4096, 4099, 10, 7, 3, 0xDEADBEEF, 5)
    assert e == Entry(7, 4096, 3, 4099, 10, 0xDEADBEEF, "tree", 5)
    assert e != Entry(7, 4096, 3, 4099, 10, 0xDEADBEEF, "log", 5)
    assert Entry(1, 4096, 1, 4097, 0, 0).src == "log"
    assert "vcrc=3735928559" in repr(e)
