"""Recovery fuzzer: damage a database's files at random and check that

  * pastedb.open() either raises CorruptionError naming the file, or returns
    only values that were written for their keys (values are self-describing);
  * pastedb-check reports the damage (exit 1) or finds nothing wrong (exit 0);
  * pastedb-check --repair leaves a database that checks clean (exit 0) and
    opens, holding only values that were written for their keys.

Usage:  python tools/fuzz_recovery.py [--seconds 60] [--seed N] [--dir DIR]
The test suite runs a small budget of the same loop (tests/test_recovery_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pastedb  # noqa: E402


def value_for(key: bytes, n: int, size: int) -> bytes:
    head = b"%s|%d|" % (key, n)
    size = max(size, len(head))
    body = (head * (size // len(head) + 1))[:size]
    return body + zlib.crc32(key + body).to_bytes(4, "little")


def value_ok(key: bytes, value: bytes) -> bool:
    body, tag = value[:-4], value[-4:]
    return (len(value) >= 4 and body.startswith(key + b"|")
            and zlib.crc32(key + body).to_bytes(4, "little") == tag)


def build(path: Path, rnd: random.Random) -> None:
    """A database with overwrites, deletes, batches, several chunks sometimes,
    and sometimes a checkpoint."""
    with pastedb.open(path, persist="none", sync=False) as db:
        for n in range(rnd.choice([50, 400, 5000])):
            k = b"k%03d" % rnd.randrange(300)
            x = rnd.random()
            if x < 0.7:
                db.put(k, value_for(k, n, rnd.choice([0, 20, 300, 3000])))
            elif x < 0.85:
                db.delete(k)
            else:
                with db.batch() as b:
                    for i in range(rnd.randrange(2, 5)):
                        kk = b"k%03d" % rnd.randrange(300)
                        b.put(kk, value_for(kk, n * 10 + i, 50))
            if rnd.random() < 0.002:
                db.checkpoint()


def damage(pool: Path, rnd: random.Random) -> str:
    data = bytearray(pool.read_bytes())
    size = len(data)
    # Bias toward the interesting part: header, log, early data.
    hot = min(size, 1 << 20)
    kind = rnd.choice(["flip", "flip", "zero", "truncate", "garbage", "append"])
    if kind == "flip":
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(hot)
            data[i] ^= 1 << rnd.randrange(8)
    elif kind == "zero":
        i = rnd.randrange(hot)
        n = rnd.choice([1, 8, 64, 512, 4096])
        data[i:i + n] = bytes(min(n, size - i))
    elif kind == "garbage":
        i = rnd.randrange(hot)
        n = rnd.choice([8, 64, 512])
        data[i:i + n] = os.urandom(min(n, size - i))
    elif kind == "truncate":
        del data[rnd.randrange(hot):]
    else:
        data += os.urandom(rnd.choice([1, 100, 5000]))
    pool.write_bytes(bytes(data))
    return kind


def run_check(path: Path, *args: str) -> tuple[int, dict | None]:
    r = subprocess.run([sys.executable, "-m", "pastedb.check", str(path), "--json", *args],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, None


def read_checked(path: Path) -> str:
    """Open and read everything; returns 'ok' or 'corruption'.  Raises on any
    wrong value or any other exception."""
    try:
        with pastedb.open(path, persist="none") as db:
            for k, v in db.items():
                if not value_ok(k, v):
                    raise AssertionError(f"{path}: wrong bytes under {k!r}: {v[:40]!r}")
        return "ok"
    except pastedb.CorruptionError as e:
        if str(path) not in str(e) and (e.path is None or str(path) not in e.path):
            raise AssertionError(f"CorruptionError does not name the file: {e}") from e
        return "corruption"


def fuzz_once(work: Path, seed: int, with_check: bool = True) -> str:
    rnd = random.Random(seed)
    d = work / f"db{seed}"
    build(d, rnd)
    kind = damage(d / "pool", rnd)
    outcome = read_checked(d)
    if not with_check:
        shutil.rmtree(d)
        return f"{kind}:{outcome}"
    code, report = run_check(d)
    assert code in (0, 1), f"seed {seed}: pastedb-check exit {code}"
    assert report is not None and report["ok"] == (code == 0)
    if outcome == "corruption":
        assert code == 1, f"seed {seed}: open found corruption, pastedb-check did not"
    if code == 1:
        rcode, rreport = run_check(d, "--repair")
        if rcode == 1 and rreport is not None and any(
                p.get("kind") == "no-log" for p in rreport.get("problems", [])):
            # The damage took every log record (say, a cut before the log
            # chunk): repair refuses to invent an empty database.
            shutil.rmtree(d)
            return f"{kind}:{outcome}:unrepairable"
        assert rcode == 0, f"seed {seed} ({kind}): repair left problems (exit {rcode})"
        code2, _ = run_check(d)
        assert code2 == 0, f"seed {seed} ({kind}): check after repair exit {code2}"
        assert read_checked(d) == "ok", f"seed {seed} ({kind}): repaired database corrupt"
    shutil.rmtree(d)
    return f"{kind}:{outcome}:check{code}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="pastedb-fuzz-"))
    end = time.monotonic() + a.seconds
    counts: dict[str, int] = {}
    seed = a.seed
    while time.monotonic() < end:
        out = fuzz_once(work, seed)
        counts[out] = counts.get(out, 0) + 1
        seed += 1
    for k in sorted(counts):
        print(f"{counts[k]:6d}  {k}")
    print(f"{sum(counts.values())} runs, seeds {a.seed}..{seed - 1}, no failure")


if __name__ == "__main__":
    main()
