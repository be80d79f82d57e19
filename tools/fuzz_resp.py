#!/usr/bin/env python
"""Mutation fuzzer for the RESP request parser (pastedb.core.resp).

Builds valid request streams (multibulk and inline), mutates them, and feeds
each input three ways: all at once, split at random points, and split with the
incomplete tail moved to a fresh buffer after every read (as the server does).
The three must agree exactly -- same commands, same error message -- and the
only exception allowed is ValueError.  Anything else, or a disagreement, is
printed with a reproducer and the exit status is 1.

    python tools/fuzz_resp.py --seconds 60 [--seed N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter

# Runnable by hand from a checkout built in place (setup.py build_ext --inplace).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pastedb.core.resp import Parser, encode_command  # noqa: E402

TOKENS = [
    b"\r\n", b"\r", b"\n", b"*", b"$", b"-1", b"0", b"-", b"+", b"9" * 25,
    b"2147483648", b"*0\r\n", b"*-1\r\n", b"$0\r\n\r\n", b'"', b"'", b"\\x4", b"\\",
    b"\x00", b" ", b"\t",
]


def random_command(rng: random.Random) -> list[bytes]:
    n = rng.choice([1, 1, 2, 3, 5, rng.randint(0, 40)]) or 1
    alphabet = rng.choice([b"abcXYZ", b"\r\n$*\" '\\x0", bytes(range(256))])
    return [
        bytes(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 3, 10, rng.randint(0, 300)])))
        for _ in range(n)
    ]


def inline_command(rng: random.Random) -> bytes:
    words = [
        rng.choice([b"get", b"SET", b"k", b'"a b"', b"'x y'", b'"\\x41\\n"', b"''", b'""'])
        for _ in range(rng.randint(0, 5))
    ]
    sep = rng.choice([b" ", b"\t", b"  "])
    return sep.join(words) + rng.choice([b"\r\n", b"\n"])


def valid_stream(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.7:
            parts.append(encode_command(random_command(rng)))
        elif r < 0.9:
            parts.append(inline_command(rng))
        else:
            parts.append(rng.choice([b"*0\r\n", b"*-1\r\n", b"\r\n", b"\n"]))
    return b"".join(parts)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randint(0, len(buf))
        if op == 0 and buf:                       # flip a byte
            buf[min(i, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:                             # insert a protocol token
            buf[i:i] = rng.choice(TOKENS)
        elif op == 2 and buf:                     # delete a run
            del buf[i:i + rng.randint(1, 8)]
        elif op == 3 and buf:                     # duplicate a run
            j = rng.randint(0, len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 16)]
        elif op == 4:                             # random bytes
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:                                     # truncate
            del buf[i:]
    return bytes(buf)


def outcome(data: bytes, chunks: list[int] | None, move_tail: bool, limits: dict) -> tuple:
    """(commands, error message or None, bytes left pending) for one way of feeding."""
    p = Parser(**limits)
    cmds: list = []
    pieces = [data] if chunks is None else split(data, chunks)
    for k, piece in enumerate(pieces):
        try:
            cmds += p.feed(piece, move_tail=move_tail, move_to=k % 3)
        except ValueError as e:
            return cmds + e.commands, str(e), None
    return cmds, None, p.pending


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    out, prev = [], 0
    for c in cuts + [len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


def check(data: bytes, rng: random.Random, limits: dict) -> tuple:
    """Feed `data` three ways; return the whole-buffer outcome or raise AssertionError."""
    whole = outcome(data, None, False, limits)
    cuts = [rng.randint(0, len(data)) for _ in range(rng.randint(1, 8))]
    for move_tail in (False, True):
        got = outcome(data, cuts, move_tail, limits)
        if got != whole:
            raise AssertionError(
                f"split {sorted(set(cuts))} move_tail={move_tail} disagrees:\n"
                f"  whole: {whole!r}\n  split: {got!r}"
            )
    if len(data) < 200:
        # byte at a time: every split point at once
        got = outcome(data, list(range(1, len(data))), True, limits)
        if got != whole:
            raise AssertionError(f"byte-at-a-time disagrees:\n  whole: {whole!r}\n  bytes: {got!r}")
    return whole


def run(seconds: float, seed: int, verbose: bool = True) -> Counter:
    """Fuzz for `seconds`; returns counters.  Raises on the first failure."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    limits_choices = [
        {},
        {"max_inline": 16, "max_args": 4, "max_bulk_len": 64},
        {"max_inline": 64, "max_args": 1000, "max_bulk_len": 1 << 20},
    ]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = valid_stream(rng)
        if rng.random() < 0.85:
            data = mutate(rng, data)
        limits = rng.choice(limits_choices)
        try:
            cmds, err, _pending = check(data, rng, limits)
        except AssertionError:
            raise
        except Exception as e:  # anything but ValueError is a bug
            raise AssertionError(f"{type(e).__name__}: {e} on input {data!r} limits {limits}") from e
        counts["inputs"] += 1
        counts["commands"] += len(cmds)
        # one bucket for "expected '$', got <any byte>"
        counts["error: " + err.split(", got")[0] if err else "no error"] += 1
    if verbose:
        for k, v in sorted(counts.items()):
            print(f"{v:10d}  {k}")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed}, {args.seconds:g} s")
    try:
        run(args.seconds, seed)
    except AssertionError as e:
        print(f"FAIL (seed {seed}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
