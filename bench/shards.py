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

Needs nutcracker (PATH or /usr/sbin), redis-server and redis-benchmark;
skipped (with what is missing) without them.  Profiles: --smoke (seconds),
--quick (about a minute), default (a few minutes).  ``python -m bench.shards
RESULTS.json`` prints a run's report as Markdown (docs/SCALING.md; the run
behind it is kept in bench/results/shards/, apart from the files ``python -m
bench render`` draws the README from).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    BenchError,
    Metric,
    Part,
    Peers,
    Workload,
    finish_doc,
    interleave,
    machine_description,
    now_ns,
    profile_of,
    progress,
    redis_benchmark,
    tool_version,
    use_pastedb_dir,
)
from bench.render import fmt_num, render_rows, render_table

NAME = "shards"
HELP = "pastedb shards behind twemproxy (nutcracker) against redis appendfsync-always shards"
GROUPS = ["scaling", "restart"]
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


def bench(port: int, test: str, n: int, keyspace: int) -> dict[str, float]:
    """One redis-benchmark run against the proxy.  redis-benchmark asks for
    CONFIG, which nutcracker does not forward: it warns and goes on."""
    exe = shutil.which("redis-benchmark") or "redis-benchmark"
    return redis_benchmark(exe, port, test, clients=CLIENTS, pipeline=1, n=n,
                           keyspace=keyspace, vsize=VSIZE, timeout=300)


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


def config(args: argparse.Namespace) -> dict[str, Any]:
    shards, reps, n_set, n_get, keyspace = PROFILES[profile_of(args)]
    if getattr(args, "shard_counts", None):
        shards = tuple(int(x) for x in args.shard_counts.split(","))
    if getattr(args, "shard_reps", None):
        reps = args.shard_reps
    return {"shards": list(shards), "reps": reps, "set_n": n_set, "get_n": n_get,
            "keyspace": keyspace, "clients": CLIENTS, "vsize": VSIZE,
            "proxy_port": args.proxy_port}


class ShardRun:
    """The sessions of one run: each a fresh set-up made by pastedb.cluster."""

    def __init__(self, cfg: dict[str, Any], base: str, groups: list[str]):
        from pastedb import cluster

        self.cl = cluster
        self.cfg = cfg
        self.base = base
        self.groups = groups
        self.port = cfg["proxy_port"]
        self.count = 0
        self.restarts: dict[str, dict[str, float]] = {}

    def session(self, engine: str, shards: int, rep: int) -> dict[str, dict[str, float]]:
        """Keyspace, SET run, GET run; at the largest N the first repetition
        also kill -9s shard 0 and times its restart."""
        self.count += 1
        d = os.path.join(self.base, f"{self.count:03d}-{engine}-{shards}")
        self.cl.up(d, self.cl.ClusterSpec(shards=shards, port=self.port, backend=engine))
        cfg = self.cfg
        try:
            write_keyspace(self.port, cfg["keyspace"])
            out = {}
            if "scaling" in self.groups:
                out = {"set": bench(self.port, "set", cfg["set_n"], cfg["keyspace"]),
                       "get": bench(self.port, "get", cfg["get_n"], cfg["keyspace"])}
            if "restart" in self.groups and shards == max(cfg["shards"]) and rep == 0:
                self.restarts[engine] = self.restart(d, engine)
        finally:
            self.cl.down(d)
            shutil.rmtree(d, ignore_errors=True)
        return out

    def restart(self, d: str, engine: str) -> dict[str, float]:
        """One more (untimed) SET run, kill -9 of shard 0 the moment it ends,
        then `up`: ms until the shard answers again."""
        bench(self.port, "set", self.cfg["set_n"] // 2, self.cfg["keyspace"])
        pid = self.cl.shard_pid(d, 0)
        if pid is None:
            raise BenchError(f"shard0 of {d} is not running")
        os.kill(pid, signal.SIGKILL)
        while self.cl.shard_pid(d, 0) is not None:
            time.sleep(0.005)
        t = now_ns()
        st = self.cl.up(d)
        res = {"up_ms": (now_ns() - t) / 1e6}
        if engine == "pastedb":
            res["recovered_records"] = float(st["processes"][1].get("recovered_records", "nan"))
            with open(os.path.join(d, "shard0.log"), errors="replace") as f:
                opened = f.read().rpartition("opened in ")[2].split(" ms")[0]
            if opened.replace(".", "").isdigit():
                res["open_ms"] = float(opened)
        return res


def missing() -> list[str]:
    """What this suite needs and does not find."""
    from pastedb import cluster

    out = list(Peers.find().missing())
    try:
        cluster.find_nutcracker()
    except cluster.ClusterError:
        out.append("nutcracker (twemproxy; Debian: apt-get install nutcracker)")
    return out


def plan(args: argparse.Namespace, groups: list[str], parts: Sequence[Part] = ()) -> int:
    """Progress steps: one per session; 0 when skipped."""
    if not groups or missing():
        return 0
    cfg = config(args)
    return len(cfg["shards"]) * cfg["reps"] * len(ENGINES)


def measure(
    args: argparse.Namespace,
    groups: list[str],
    parts: Sequence[Part] = (),
    plan_progress: bool = True,
) -> dict[str, Any] | int:
    """Run the suite; the JSON document (``skipped`` says why when nutcracker
    or the redis programs are missing)."""
    use_pastedb_dir(args)
    cfg = config(args)
    doc: dict[str, Any] = {"suite": NAME, "profile": profile_of(args), "config": cfg,
                           "groups": groups}
    lack = missing()
    if lack:
        msg = f"shards benchmarks skipped: {', '.join(lack)} not found"
        print(msg, file=sys.stderr)
        doc["skipped"] = msg
        return doc
    if "scaling" not in groups:                  # the restart needs sessions at the largest N
        cfg["shards"], cfg["reps"] = [max(cfg["shards"])], 1
    os.makedirs(args.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="pastedb-shardbench-", dir=args.dir)
    run = ShardRun(cfg, base, groups)
    if plan_progress:
        progress.add_total(len(cfg["shards"]) * cfg["reps"] * len(ENGINES))
    t0 = time.monotonic()
    workloads: list[Workload] = []
    machine = machine_description(base)
    try:
        for n in cfg["shards"]:
            t = time.monotonic()
            def one(engine: str, rep: int, n: int = n) -> dict[str, dict[str, float]]:
                return run.session(engine, n, rep)

            reps = interleave(cfg["reps"], ENGINES, one, label=f"shards: {n}")
            if "scaling" not in groups:
                continue
            for op, title in (("set", "durable SET 1 KiB"), ("get", "GET 1 KiB")):
                workloads.append(Workload(
                    id=f"shards_{n}_{op}",
                    title=f"{title}, {n} shard{'s' if n > 1 else ''}, {CLIENTS} clients",
                    params={"shards": n, "op": op, "clients": CLIENTS, "vsize": VSIZE,
                            "keyspace": cfg["keyspace"], "requests": cfg[f"{op}_n"]},
                    metrics=[Metric("rps", "req/s"),
                             Metric("p50_us", "p50 us (lower better)", higher_is_better=False),
                             Metric("p99_us", "p99 us (lower better)", higher_is_better=False)],
                    engines=list(ENGINES),
                    reps={e: [s[op] for s in reps[e]] for e in ENGINES},
                    seconds=time.monotonic() - t))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    from pastedb import cluster

    peers = Peers.find()
    finish_doc(doc, t0, machine,
               {"nutcracker": tool_version(cluster.find_nutcracker()),
                "redis_server": tool_version(peers.redis_server),
                "redis_benchmark": tool_version(peers.redis_benchmark)},
               workloads=[w.to_json() for w in workloads], restart_after_kill9=run.restarts,
               caveat=CAVEAT.format(cores=os.cpu_count()))
    return doc


def report(doc: dict[str, Any], markdown: bool = False) -> str:
    if doc.get("skipped"):
        return doc["skipped"]
    ws = [Workload.from_json(w) for w in doc["workloads"]]
    out = [render_table(ws, labels=LABELS, markdown=markdown)] if ws else []
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
        out += ["", "req/s at N shards / req/s at 1 shard (medians):",
                render_rows(["", *[f"{n} shard{'s' if n > 1 else ''}" for n in ns]], rows,
                            markdown=markdown)]
    rs = doc.get("restart_after_kill9") or {}
    if rs:
        parts = []
        for e in ENGINES:
            if e in rs:
                r = rs[e]
                extra = ""
                if "open_ms" in r:
                    extra = (f" (of which opening the database {fmt_num(r['open_ms'])} ms, "
                             f"{int(r.get('recovered_records', 0)):,} log records replayed)")
                parts.append(f"{LABELS[e]} {fmt_num(r['up_ms'])} ms{extra}")
        out += ["", f"kill -9 of shard 0 the moment a SET run ends "
                    f"({max(ns or doc['config']['shards'])} shards), from the process gone to the "
                    f"shard answering again (`cluster up`: process start, open, listen): "
                    f"{'; '.join(parts)}."]
    out += ["", f"Caveat: {doc['caveat']}."]
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Its options (named so that they collide with no other suite's inside ``all``)."""
    p.add_argument("--shard-counts", default=None,
                   help="shards: comma-separated numbers of shards (default 1,2,3)")
    p.add_argument("--shard-reps", type=int, default=None,
                   help="shards: repetitions per engine (overrides the profile)")
    p.add_argument("--proxy-port", type=int, default=23121,
                   help="shards: the proxy's port; the shards use the next ones (default "
                        "%(default)s)")


if __name__ == "__main__":
    # python -m bench.shards RESULTS.json: the report of a run as Markdown
    # (the figures in docs/SCALING.md)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.shards bench/results/shards-....json")
    with open(sys.argv[1]) as f:
        print(report(json.load(f), markdown=True))
