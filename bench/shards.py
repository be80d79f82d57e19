"""Shards: N pastedb shards behind twemproxy (nutcracker) against N redis-server
``appendfsync always`` shards behind the same proxy, N = 1, 2, 3, in one run.

Each set-up is made by ``pastedb cluster up`` (pastedb.cluster: the same
nutcracker.yml for both engines -- ketama, murmur, one connection per shard),
on a fresh directory; the keyspace is written first (not timed) through the
proxy, then redis-benchmark drives the proxy: durable SET and GET of 1 KiB
values over 10,000 random keys at 50 clients.  Repetitions alternate the
engines (pastedb, redis, pastedb, ...); medians, ratio = pastedb / redis.

Also measured once per engine at the largest N: kill -9 of shard 0 the
moment one more SET run ends, then the time until it answers again (`cluster
up` brings it back on its directory), and how many log records pastedb
replayed.

Caveat printed with the figures: every shard, the proxy and redis-benchmark
share this machine's cores, so N shards measure the proxy and the co-located
processes, not N machines.

Needs nutcracker (PATH or /usr/sbin), redis-server and redis-benchmark.
Profiles: --smoke (seconds), --quick (about a minute), default (a few minutes).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import (
    Metric,
    Workload,
    default_json_path,
    fmt_num,
    interleave,
    machine_description,
    now_ns,
    progress,
    render_rows,
    render_table,
    write_json,
)

ENGINES = ["pastedb", "redis"]
LABELS = {"pastedb": "pastedb", "redis": "redis always"}
PROFILES = {
    #          shards     reps  SET n   GET n   keyspace
    "smoke": ((1, 2), 1, 1000, 2000, 2000),
    "quick": ((1, 2, 3), 1, 6000, 15000, 10000),
    "full": ((1, 2, 3), 3, 15000, 40000, 10000),
}
CLIENTS = 50
VSIZE = 1024
CAVEAT = ("every shard, the proxy and redis-benchmark run on this one machine and share its "
          "{cores} cores: N shards here measure the proxy and N co-located servers, not N "
          "machines; on separate machines each shard would have its own disk and cores")


class BenchError(RuntimeError):
    """A set-up or redis-benchmark failed; the message quotes its output."""


def redis_benchmark(exe: str, port: int, test: str, n: int, keyspace: int,
                    timeout: float = 300) -> dict[str, float]:
    """One redis-benchmark run against the proxy: req/s, p50/p99 (µs).
    (The network suite has the general version; bench.common will hold one.)"""
    argv = [exe, "-h", "127.0.0.1", "-p", str(port), "-t", test, "-c", str(CLIENTS),
            "-n", str(n), "-r", str(keyspace), "-d", str(VSIZE), "--csv"]
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)} took longer than {timeout:.0f}s") from None
    # redis-benchmark asks for CONFIG, which nutcracker does not forward: it
    # warns and goes on, so only the CSV line decides.
    rows = list(csv.reader(x for x in cp.stdout.splitlines() if x.strip()))
    if cp.returncode != 0 or len(rows) < 2 or "error" in cp.stdout.lower():
        raise BenchError(f"{' '.join(argv)} (exit {cp.returncode}): "
                         f"{cp.stderr[-600:]}{cp.stdout[-600:]}")
    row = dict(zip(rows[0], rows[1], strict=False))
    return {"rps": float(row["rps"]), "p50_us": float(row["p50_latency_ms"]) * 1e3,
            "p99_us": float(row["p99_latency_ms"]) * 1e3}


def write_keyspace(port: int, keyspace: int) -> None:
    """SET every key redis-benchmark -r may pick (key:%012d), through the proxy."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=port, protocol=2, socket_timeout=120,
                    **_no_setinfo())
    value = b"v" * VSIZE
    for start in range(0, keyspace, 1000):
        r.mset({b"key:%012d" % i: value for i in range(start, min(start + 1000, keyspace))})
    r.close()


def _no_setinfo() -> dict[str, Any]:
    """redis-py options that send no CLIENT SETINFO (docs/SCALING.md)."""
    import inspect

    import redis

    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


class Run:
    def __init__(self, args: argparse.Namespace, profile: str):
        from pastedb import cluster

        self.cl = cluster
        self.profile = profile
        self.shards, self.reps, self.n_set, self.n_get, self.keyspace = PROFILES[profile]
        if args.shards:
            self.shards = tuple(int(x) for x in args.shards.split(","))
        if args.reps:
            self.reps = args.reps
        self.root = tempfile.mkdtemp(prefix="pastedb-shardbench-", dir=args.dir)
        self.port = args.port
        self.count = 0
        self.restarts: dict[str, dict[str, float]] = {}
        self.exe = shutil.which("redis-benchmark") or "redis-benchmark"

    def session(self, engine: str, shards: int, rep: int) -> dict[str, dict[str, float]]:
        """One fresh set-up: keyspace, SET run, GET run; at the largest N the
        first repetition also kill -9s shard 0 and times its restart."""
        self.count += 1
        d = os.path.join(self.root, f"{self.count:03d}-{engine}-{shards}")
        spec = self.cl.ClusterSpec(shards=shards, port=self.port, backend=engine)
        self.cl.up(d, spec)
        try:
            write_keyspace(self.port, self.keyspace)
            out = {"set": redis_benchmark(self.exe, self.port, "set", self.n_set, self.keyspace),
                   "get": redis_benchmark(self.exe, self.port, "get", self.n_get, self.keyspace)}
            if shards == max(self.shards) and rep == 0:
                self.restarts[engine] = self.restart(d, engine)
        finally:
            self.cl.down(d)
            shutil.rmtree(d, ignore_errors=True)
        return out

    def restart(self, d: str, engine: str) -> dict[str, float]:
        """One more (untimed) SET run, kill -9 of shard 0 the moment it ends,
        then `up`: ms until the shard answers again."""
        redis_benchmark(self.exe, self.port, "set", self.n_set // 2, self.keyspace)
        pid = self.cl.shard_pid(d, 0)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while self.cl.shard_pid(d, 0) is not None:
            time.sleep(0.005)
        t = now_ns()
        st = self.cl.up(d)
        ms = (now_ns() - t) / 1e6
        shard0 = st["processes"][1]
        res = {"up_ms": ms}
        if engine == "pastedb":
            res["recovered_records"] = float(shard0.get("recovered_records", "nan"))
            log = open(os.path.join(d, "shard0.log"), errors="replace").read()
            opened = log.rpartition("opened in ")[2].split(" ms")[0]
            if opened.replace(".", "").isdigit():
                res["open_ms"] = float(opened)
        return res


def measure(args: argparse.Namespace) -> dict[str, Any] | int:
    missing = [name for name, ok in (("redis-server", shutil.which("redis-server")),
                                     ("redis-benchmark", shutil.which("redis-benchmark")))
               if not ok]
    from pastedb import cluster

    try:
        cluster.find_nutcracker()
    except cluster.ClusterError as e:
        missing.append(str(e))
    if missing:
        print(f"python -m bench shards needs: {'; '.join(missing)}", file=sys.stderr)
        return 2
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    run = Run(args, profile)
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    progress.start()
    progress.add_total(len(run.shards) * run.reps * len(ENGINES))
    workloads: list[Workload] = []
    try:
        for n in run.shards:
            t = time.monotonic()
            reps = interleave(run.reps, ENGINES, lambda e, r, n=n: run.session(e, n, r),
                              label=f"{n} shard{'s' if n > 1 else ''}")
            for op, title in (("set", "durable SET 1 KiB"), ("get", "GET 1 KiB")):
                workloads.append(Workload(
                    id=f"shards_{n}_{op}",
                    title=f"{title}, {n} shard{'s' if n > 1 else ''}, {CLIENTS} clients",
                    params={"shards": n, "op": op, "clients": CLIENTS, "vsize": VSIZE,
                            "keyspace": run.keyspace,
                            "requests": run.n_set if op == "set" else run.n_get},
                    metrics=[Metric("rps", "req/s"),
                             Metric("p50_us", "p50 us (lower better)", higher_is_better=False),
                             Metric("p99_us", "p99 us (lower better)", higher_is_better=False)],
                    engines=list(ENGINES),
                    reps={e: [s[op] for s in reps[e]] for e in ENGINES},
                    seconds=time.monotonic() - t))
    finally:
        progress.finish()
        shutil.rmtree(run.root, ignore_errors=True)
    return {
        "suite": "shards",
        "profile": profile,
        "started": started,
        "total_seconds": round(time.monotonic() - t0, 1),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "machine": machine_description(args.dir or tempfile.gettempdir()),
        "versions": {"nutcracker": _version([cluster.find_nutcracker(), "-V"]),
                     "redis-server": _version(["redis-server", "--version"])},
        "workloads": [w.to_json() for w in workloads],
        "restart_after_kill9": run.restarts,
        "caveat": CAVEAT.format(cores=os.cpu_count()),
    }


def _version(argv: list[str]) -> str | None:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (cp.stdout.strip() or cp.stderr.strip()).splitlines()[0]


def report(doc: dict[str, Any], markdown: bool = False) -> str:
    ws = [Workload.from_json(w) for w in doc["workloads"]]
    out = [render_table(ws, labels=LABELS, markdown=markdown)]
    # scaling: req/s at N shards over req/s at 1 shard, per engine
    by = {(w.params["op"], w.params["shards"]): w for w in ws}
    ns = sorted({w.params["shards"] for w in ws})
    if 1 in ns and len(ns) > 1:
        rows = []
        for op in ("set", "get"):
            for e in ENGINES:
                base = by[(op, 1)].med(e, "rps")
                rows.append([f"{op.upper()} {LABELS[e]}"] + [
                    f"{by[(op, n)].med(e, 'rps') / base:.2f}x" if base else "-" for n in ns])
        out.append("")
        out.append("req/s at N shards / req/s at 1 shard (medians):")
        out.append(render_rows(["", *[f"{n} shard{'s' if n > 1 else ''}" for n in ns]], rows,
                               markdown=markdown))
    rs = doc.get("restart_after_kill9") or {}
    if rs:
        out.append("")
        parts = []
        for e in ENGINES:
            if e in rs:
                r = rs[e]
                extra = ""
                if "open_ms" in r:
                    extra = (f" (of which opening the database {fmt_num(r['open_ms'])} ms, "
                             f"{int(r.get('recovered_records', 0)):,} log records replayed)")
                parts.append(f"{LABELS[e]} {fmt_num(r['up_ms'])} ms{extra}")
        out.append(f"kill -9 of shard 0 the moment a SET run ends ({max(ns)} shards), from "
                   f"the process gone to the shard answering again (`cluster up`: process "
                   f"start, open, listen): {'; '.join(parts)}.")
    out.append("")
    out.append(f"Caveat: {doc['caveat']}.")
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--smoke", action="store_true", help="seconds: proves it works")
    g.add_argument("--quick", action="store_true", help="about a minute, one repetition")
    p.add_argument("--shards", default=None, help="comma-separated shard counts (default 1,2,3)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per engine")
    p.add_argument("--port", type=int, default=23121,
                   help="the proxy's port; shards use the next ones (default 23121)")
    p.add_argument("--dir", default=None, help="where the databases go (default: TMPDIR)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--no-json", action="store_true", help="write no JSON report")
    p.add_argument("--markdown", action="store_true",
                   help="print the tables as Markdown (for docs/SCALING.md)")


def main(args: argparse.Namespace) -> int:
    doc = measure(args)
    if isinstance(doc, int):
        return doc
    print(report(doc, markdown=args.markdown))
    print(f"total time {doc['total_seconds']:.0f}s")
    if not args.no_json and (args.json or doc["profile"] != "smoke"):
        path = args.json or default_json_path("shards", doc["profile"])
        write_json(path, doc)
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.shards", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
