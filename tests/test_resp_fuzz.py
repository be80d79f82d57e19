"""Fuzzing the RESP request parser: arbitrary and mutated input must never crash
or hang, must fail only with ValueError, and must give the same commands and the
same error however the bytes are split across reads or moved between buffers.

The default budget is small; ``pytest --slow`` runs tools/fuzz_resp.py's
mutation loop for a minute as well.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pastedb.core.resp import Parser, encode_command

SMALL = {"max_inline": 32, "max_args": 6, "max_bulk_len": 64}
LIMITS = st.sampled_from([{}, SMALL])


def outcome(pieces, move_tail, limits):
    p = Parser(**limits)
    cmds: list = []
    for k, piece in enumerate(pieces):
        try:
            cmds += p.feed(piece, move_tail=move_tail, move_to=k % 4)
        except ValueError as e:
            return cmds + e.commands, str(e), None
    return cmds, None, p.pending


def split_at(data: bytes, cuts) -> list[bytes]:
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]


def check_consistent(data: bytes, cuts, limits) -> None:
    whole = outcome([data], False, limits)
    for move_tail in (False, True):
        assert outcome(split_at(data, cuts), move_tail, limits) == whole
    if len(data) <= 300:
        every = list(range(1, len(data)))
        assert outcome(split_at(data, every), True, limits) == whole
    cmds, err, _ = whole
    assert err is None or err.startswith("ERR ")
    assert all(isinstance(a, bytes) for c in cmds for a in c)
    assert all(c for c in cmds)                      # empty commands are never returned


FUZZ = settings(max_examples=300, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=8),
       limits=LIMITS)
def test_random_bytes(data, cuts, limits):
    check_consistent(data, cuts, limits)


# Bytes that steer the parser into its interesting states.
ALPHABET = st.sampled_from([b"*", b"$", b"\r", b"\n", b"\r\n", b"-", b"0", b"1", b"3", b"9",
                            b'"', b"'", b"\\", b"x", b"4", b" ", b"\t", b"\x00", b"a", b"\xff"])


@FUZZ
@given(tokens=st.lists(ALPHABET, max_size=120), cuts=st.lists(st.integers(0, 300), max_size=8),
       limits=LIMITS)
def test_protocol_alphabet(tokens, cuts, limits):
    check_consistent(b"".join(tokens), cuts, limits)


frames = st.one_of(
    st.lists(st.binary(max_size=30), min_size=1, max_size=5).map(encode_command),
    st.lists(st.sampled_from([b"get", b'"a\\x41 b"', b"'c d'", b"k"]), max_size=4)
      .map(lambda ws: b" ".join(ws) + b"\r\n"),
    st.sampled_from([b"*0\r\n", b"*-1\r\n", b"\r\n"]),
)


@st.composite
def mutated_stream(draw):
    buf = bytearray(b"".join(draw(st.lists(frames, min_size=1, max_size=5))))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(buf)))
        op = draw(st.integers(0, 4))
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] = draw(st.integers(0, 255))
        elif op == 1:
            buf[i:i] = draw(ALPHABET)
        elif op == 2:
            del buf[i:i + draw(st.integers(1, 6))]
        elif op == 3:
            buf[i:i] = draw(st.sampled_from([b"-1", b"99999999999999999999", b"2147483648",
                                             b"\r\n", b"*1\r\n", b"$1\r\n"]))
        else:
            del buf[i:]
    return bytes(buf)


@FUZZ
@given(data=mutated_stream(), cuts=st.lists(st.integers(0, 600), max_size=8), limits=LIMITS)
def test_mutated_frames(data, cuts, limits):
    check_consistent(data, cuts, limits)


def test_long_lines_do_not_hang():
    # Worst cases for rescanning: a length line or inline line arriving byte by
    # byte right up to the 64 KiB limit must stay linear (a rescan per read would
    # be ~2 G byte compares here and time out: the watchdog fails the run
    # with every thread's stack after 60 s instead of letting it hang).
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        for head in (b"*", b"*1\r\n$", b""):
            p = Parser()
            p.feed(head)
            with pytest.raises(ValueError, match="too big"):
                for _ in range(64 * 1024 // 16 + 1):
                    p.feed(b"1" * 16)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _load_tool():
    path = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "fuzz_resp.py")
    spec = importlib.util.spec_from_file_location("fuzz_resp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fuzz_tool_short_run():
    counts = _load_tool().run(1.0, seed=1234, verbose=False)
    assert counts["inputs"] > 100


@pytest.mark.slow
def test_fuzz_tool_long_run():
    _load_tool().run(60.0, seed=random.randrange(1 << 32), verbose=False)


@pytest.mark.slow
@settings(max_examples=10000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_stream(), cuts=st.lists(st.integers(0, 600), max_size=12), limits=LIMITS)
def test_mutated_frames_long(data, cuts, limits):
    check_consistent(data, cuts, limits)
