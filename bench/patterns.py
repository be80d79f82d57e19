"""KEYS with the worst glob patterns: time per call over N keys, pastedb vs redis-server.

The patterns are the CVE-2022-36021 family (many stars and a tail that cannot
match) and a few variants; the keys are 40 (the exploit's) or 400 bytes of
'a'.  For each pattern: the median time of KEYS over N such keys through the
real server (redis-py), the time a PING on another connection waited while
that KEYS ran, and the matcher alone in-process on one key.  Reported, never
asserted (tests assert only that the server keeps answering).

    python -m bench.patterns [--keys 10000] [--reps 3] [--key-len 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench.common import now_ns


def _worst_patterns() -> list[bytes]:
    """The fuzz tool's list (tools/fuzz_resp.py: WORST_PATTERNS), its one home."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tools", "fuzz_resp.py")
    spec = importlib.util.spec_from_file_location("fuzz_resp", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.WORST_PATTERNS)


PATTERNS = _worst_patterns()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], port: int):
    import redis

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port, socket_timeout=600)
    for _ in range(300):
        try:
            r.ping()
            return proc, r
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not start")


def pinger(other, done: threading.Event, wait: list[float]) -> None:
    """PING until done; wait[0] gets the longest round trip."""
    while not done.is_set():
        t0 = now_ns()
        other.ping()
        wait[0] = max(wait[0], (now_ns() - t0) / 1e9)


def measure(r, port: int, pattern: bytes, reps: int) -> tuple[float, float]:
    """(median KEYS seconds, worst PING wait seconds during KEYS)."""
    import redis

    times, waits = [], []
    for _ in range(reps):
        other = redis.Redis(port=port, socket_timeout=600)
        other.ping()
        done = threading.Event()
        wait = [0.0]

        t = threading.Thread(target=pinger, args=(other, done, wait), daemon=True)
        t0 = now_ns()
        t.start()
        assert r.keys(pattern) == []
        times.append((now_ns() - t0) / 1e9)
        done.set()
        t.join()
        waits.append(wait[0])
        other.close()
    return statistics.median(times), max(waits)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--key-len", type=int, default=40)
    ap.add_argument("--no-redis", action="store_true", help="pastedb only")
    args = ap.parse_args(argv)
    from pastedb.core.pattern import match

    servers = [("pastedb", lambda d, p: [sys.executable, "-m", "pastedb", "serve", d,
                                         "--port", str(p)])]
    redis_server = shutil.which("redis-server")
    if redis_server and not args.no_redis:
        servers.append(("redis-server", lambda d, p: [redis_server, "--port", str(p), "--dir", d,
                                                      "--save", "", "--appendonly", "no"]))
    keys = {b"a" * (args.key_len - 8) + b"%08d" % i: b"v" for i in range(args.keys)}
    # All-'a' keys are the worst case for these patterns: make the first one so.
    keys[b"a" * args.key_len] = b"v"
    results: dict[str, dict[bytes, tuple[float, float]]] = {}
    for name, cmd in servers:
        d = tempfile.mkdtemp(prefix="bench-patterns-")
        port = free_port()
        proc, r = start(cmd(d, port), port)
        try:
            pipe = r.pipeline(transaction=False)
            for k, v in keys.items():
                pipe.set(k, v)
            pipe.execute()
            results[name] = {p: measure(r, port, p, args.reps) for p in PATTERNS}
        finally:
            r.close()
            proc.terminate()
            proc.wait(60)
            shutil.rmtree(d, ignore_errors=True)
    print(f"KEYS over {len(keys)} keys of {args.key_len} bytes, median of {args.reps} "
          f"(ping = longest wait of a PING on another connection meanwhile)")
    head = f"{'pattern':<28} {'matcher 1 key':>14}"
    for name in results:
        head += f" {name + ' KEYS':>20} {'ping':>9}"
    print(head)
    for p in PATTERNS:
        t0 = now_ns()
        for _ in range(100):
            match(p, b"a" * args.key_len)
        one = (now_ns() - t0) / 100 / 1e3
        label = p.decode()
        label = label if len(label) <= 26 else label[:23] + "..."
        line = f"{label:<28} {one:>11.1f} us"
        for name in results:
            keys_s, ping_s = results[name][p]
            line += f" {keys_s * 1e3:>17.1f} ms {ping_s * 1e3:>6.1f} ms"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
