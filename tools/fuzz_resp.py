#!/usr/bin/env python
"""Mutation fuzzer for the RESP request parser (pastedb.core.resp), and for
the glob matcher of KEYS / SCAN MATCH (pastedb.core.pattern).

Builds valid request streams (multibulk and inline), mutates them, and feeds
each input three ways: all at once, split at random points, and split with the
incomplete tail moved to a fresh buffer after every read (as the server does).
The three must agree exactly -- same commands, same error message -- and the
only exception allowed is ValueError.  Anything else, or a disagreement, is
printed with a reproducer and the exit status is 1.

The glob fuzzer compares pastedb.core.pattern.match with a line-by-line port
of Redis 7.0's stringmatchlen (exponential, so on short inputs only) and
replays the worst patterns known (the CVE-2022-36021 family) on long keys.

HOSTILE_CASES are the client behaviours that once stalled or exhausted the
server; tests/test_resp_fuzz.py replays each against the real server process.

    python tools/fuzz_resp.py --seconds 60 [--seed N] [--glob]
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

from pastedb.core.pattern import match as glob_match  # noqa: E402
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


# ---------------------------------------------------------------- glob patterns

def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def _lower(c: int) -> int:
    return c + 32 if 65 <= c <= 90 else c


def redis_stringmatch(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    """Redis 7.0's stringmatchlen (util.c), ported line by line, including
    the skipLongerMatches fix and the reads of the NUL after the pattern."""
    pat = [_signed(b) for b in pattern] + [0, 0]
    st = [_signed(b) for b in string] + [0]
    skip = [False]

    def eq(a: int, b: int) -> bool:
        return (_lower(a) == _lower(b)) if nocase else a == b

    def impl(p: int, plen: int, s: int, slen: int) -> bool:
        while plen and slen:
            c = pat[p]
            if c == 42:                                   # '*'
                while plen and pat[p + 1] == 42:
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p + 1, plen - 1, s, slen):
                        return True
                    if skip[0]:
                        return False
                    s += 1
                    slen -= 1
                skip[0] = True
                return False
            elif c == 63:                                 # '?'
                s += 1
                slen -= 1
            elif c == 91:                                 # '['
                p += 1
                plen -= 1
                neg = pat[p] == 94
                if neg:
                    p += 1
                    plen -= 1
                hit = False
                while True:
                    if pat[p] == 92 and plen >= 2:
                        p += 1
                        plen -= 1
                        if pat[p] == st[s]:
                            hit = True
                    elif pat[p] == 93:
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and pat[p + 1] == 45:
                        lo, hi, ch = pat[p], pat[p + 2], st[s]
                        if lo > hi:
                            lo, hi = hi, lo
                        if nocase:
                            lo, hi, ch = _lower(lo), _lower(hi), _lower(ch)
                        p += 2
                        plen -= 2
                        if lo <= ch <= hi:
                            hit = True
                    elif eq(pat[p], st[s]):
                        hit = True
                    p += 1
                    plen -= 1
                if neg:
                    hit = not hit
                if not hit:
                    return False
                s += 1
                slen -= 1
            else:
                if c == 92 and plen >= 2:                 # '\\'
                    p += 1
                    plen -= 1
                if not eq(pat[p], st[s]):
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while pat[p] == 42 and plen > 0:
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(0, len(pattern), 0, len(string))


GLOB_BYTES = b"ab*?[]^-\\Aa\x00\xe9"

# The exponential cases: many stars and a tail that cannot match.
WORST_PATTERNS = [
    b"a*" * 12 + b"b",
    b"a*" * 20 + b"b",
    b"*a" * 30 + b"*b",
    b"*?" * 40 + b"b",
    b"*[a-z]" * 30 + b"*b",
    b"[^b]*" * 30 + b"b",
]


def random_glob(rng: random.Random) -> tuple[bytes, bytes]:
    pattern = bytes(rng.choice(GLOB_BYTES) for _ in range(rng.randint(0, 12)))
    key = bytes(rng.choice(b"abAB-^\\]\x00\xe9") for _ in range(rng.randint(0, 10)))
    return pattern, key


def check_glob(pattern: bytes, key: bytes, nocase: bool) -> None:
    want = redis_stringmatch(pattern, key, nocase)
    got = glob_match(pattern, key, nocase)
    if got != want:
        raise AssertionError(f"glob {pattern!r} key {key!r} nocase={nocase}: "
                             f"pastedb says {got}, Redis says {want}")


def run_glob(seconds: float, seed: int, verbose: bool = True) -> Counter:
    """Compare the matcher with Redis's for `seconds`; then time the worst
    patterns on long keys (each must take well under a second)."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pattern, key = random_glob(rng)
        nocase = rng.random() < 0.3
        check_glob(pattern, key, nocase)
        counts["matched" if glob_match(pattern, key, nocase) else "not matched"] += 1
    for pattern in WORST_PATTERNS:
        for key in (b"a" * 40, b"a" * 4000):
            t0 = time.perf_counter()
            glob_match(pattern, key)
            counts["worst case max us"] = max(counts["worst case max us"],
                                              int((time.perf_counter() - t0) * 1e6))
    if verbose:
        for k, v in sorted(counts.items()):
            print(f"{v:10d}  {k}")
    return counts


# ---------------------------------------------------------------- hostile clients
# What one client once did to stall or exhaust the whole server.  Each case is
# a list of commands to send down one connection without reading the replies
# (the replay checks that another connection is still answered meanwhile).
HOSTILE_CASES = {
    "keys-12-stars": [[b"SET", b"a" * 40, b"1"], [b"KEYS", b"a*" * 12 + b"b"]],
    "keys-20-stars": [[b"SET", b"a" * 40, b"1"], [b"KEYS", b"a*" * 20 + b"b"]],
    "scan-match-20-stars": [[b"SET", b"a" * 40, b"1"],
                            [b"SCAN", b"0", b"MATCH", b"a*" * 20 + b"b", b"COUNT", b"1000"]],
    "slow-reader-1mib": [[b"SET", b"big", b"x" * (1 << 20)]] + [[b"GET", b"big"]] * 3000,
    "huge-pipeline": [[b"PING"]] * 200000,
    "multi-shutdown": [[b"MULTI"], [b"SET", b"foo", b"bar"], [b"SHUTDOWN"], [b"EXEC"]],
    # LCS's table is quadratic in the values: it is capped, not built.
    "lcs-of-two-large-values": [[b"SET", b"a", b"x" * (1 << 20)], [b"SET", b"b", b"y" * (1 << 20)],
                                [b"LCS", b"a", b"b"]] * 20,
    "setrange-far-offset": [[b"SETRANGE", b"k", b"%d" % (1 << 40), b"x"]] * 1000,
    "append-growing-value": [[b"APPEND", b"k", b"x" * 65536]] * 200,
    "randomkey-many": [[b"MSET"] + [b"k%d" % i if j % 2 == 0 else b"v" for i in range(500)
                                    for j in range(2)]] + [[b"RANDOMKEY"]] * 20000,
    "watch-many-keys": [[b"WATCH"] + [b"w%d" % i for i in range(100000)],
                        [b"MSET"] + [b"w%d" % (i // 2) for i in range(20000)], [b"UNWATCH"]],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--glob", action="store_true", help="fuzz the glob matcher instead")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed}, {args.seconds:g} s")
    try:
        (run_glob if args.glob else run)(args.seconds, seed)
    except AssertionError as e:
        print(f"FAIL (seed {seed}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
