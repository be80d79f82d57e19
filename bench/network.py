"""Network: ``pastedb serve`` against redis-server, driven by redis-benchmark.

Servers, each started for every repetition on a free port in a fresh
directory under --dir (the disk), answered PING before any load, stopped
afterwards (pastedb: SIGTERM, which must exit 0; redis: SHUTDOWN NOSAVE);
repetitions interleave (A B C D A B C D ...):

  pastedb         python -m pastedb serve DIR            zero-copy receive (the default)
  pastedb-copy    python -m pastedb serve DIR --copy     the copying baseline
  redis-always    redis-server --appendonly yes --appendfsync always --save ""
                  the peer: like pastedb, it replies only once the write is durable
  redis-everysec  the same with --appendfsync everysec: a reference only
                  (it acknowledges writes a power loss can take back)

Workloads: redis-benchmark -d 1024 -r KEYSPACE --csv, random keys over a
keyspace written beforehand (so every GET hits): SET and GET at -c 1, -c 50
and -c 50 -P 16.  Reported: req/s and the p50/p99 latency redis-benchmark
measured (µs), ratio pastedb/redis-always.

Zero-copy ablation, the PASTE paper's headline (+10-88 % throughput from
receiving straight into the persistent buffers): pastedb serve against
serve --copy, SET at 50 clients, values of 1, 4, 16 and 64 KiB, on tmpfs
(--tmpfs-dir; memory standing in for persistent memory, as the paper
emulated it in DRAM) and on the disk (--dir).  When the server has
``--receive``, a third variant, ``--receive recv`` (recv() straight into the
mapped pool, PASTE's own path; the default on ordinary files is splice()),
runs too.  Each pastedb server's INFO gives the barriers every run cost, so
the report shows requests per barrier beside the rates.

Physical limits, measured in the same run: fdatasync on the disk (after a
4 KiB pwrite, and after a 1 KiB store through a shared mapping -- the path
recv() into the mapping takes) and on tmpfs, memcpy bandwidth, and loopback
PING (redis-benchmark -t ping against redis-server --save "" --appendonly
no, once per repetition, interleaved with the servers): at -c 1 its p50 is
the round trip, at -c 50 (-P 16) its rate is the most this client gets from
any server here.  Every server result is also shown as a share of its limit.

To measure one commit while others rebuild the working tree, build a
snapshot and pass --pastedb-dir (recipe in ``python -m bench embedded -h``);
the servers then run that build too.

Without redis-server / redis-benchmark on PATH this suite prints how to
install them and is skipped (exit code 0).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bench import render
from bench.common import (
    BenchError,
    KiB,
    Metric,
    MiB,
    Part,
    Peers,
    Run,
    Server,
    Workload,
    fdatasync_samples,
    filesystem_of,
    interleave,
    machine_description,
    median,
    memcpy_gbps,
    pastedb_argv,
    pastedb_build,
    pastedb_root,
    pastedb_versions,
    ping_limits,
    profile_of,
    progress,
    redis_argv,
    redis_benchmark,
    redis_client,
    server_env,
    summary_us,
    tool_version,
    use_pastedb_dir,
)

NAME = "network"
HELP = "pastedb serve against redis-server via redis-benchmark; zero-copy vs --copy"
SERVERS = ["pastedb", "redis-always", "pastedb-copy", "redis-everysec"]
ZC_MODES = ["zero-copy", "copy"]  # + "recv-mapping" when the server has --receive
# the pastedb servers by name, and their options
PASTEDB_OPTIONS: dict[str, list[str]] = {
    "pastedb": [],
    "pastedb-copy": ["--copy"],
    "zero-copy": [],
    "copy": ["--copy"],
    "recv-mapping": ["--receive", "recv"],
}
REDIS_FSYNC = {"redis-always": "always", "redis-everysec": "everysec", "redis-nopersist": None}
ZC_SIZES = [1 * KiB, 4 * KiB, 16 * KiB, 64 * KiB]
GROUPS = ["server", "zerocopy"]

INSTALL_HINT = (
    "redis-server and redis-benchmark are needed for the network benchmarks: "
    "`sudo apt-get install redis-server redis-tools` (Debian/Ubuntu; then "
    "`sudo systemctl disable --now redis-server`, the suite starts its own), "
    "`brew install redis` (macOS), or `bench/install-peers.sh`"
)

# Minimum pastedb/redis-always ratios the issue asks for (req/s), and the
# p50 latency at 50 clients that must be no worse (ratio <= 1).
TARGET_SET_C50 = 2.5
TARGET_SET_C50_P50 = 1.0
TARGET_SET_P16 = 2.0
TARGET_SET_C1 = 1.5
TARGET_GET_C50 = 1.1


@dataclass(frozen=True)
class Load:
    """One redis-benchmark invocation of the server matrix."""

    id: str
    title: str
    op: str  # redis-benchmark -t
    clients: int
    pipeline: int
    targets: tuple[float | None, float | None]  # (req/s minimum, p50 maximum) ratios


LOADS = [
    Load("set_c1", "SET 1 KiB, 1 client", "set", 1, 1, (TARGET_SET_C1, None)),
    Load("set_c50", "SET 1 KiB, 50 clients", "set", 50, 1, (TARGET_SET_C50, TARGET_SET_C50_P50)),
    Load(
        "set_c50_p16", "SET 1 KiB, 50 clients, pipeline 16", "set", 50, 16, (TARGET_SET_P16, None)
    ),
    Load("get_c1", "GET 1 KiB, 1 client", "get", 1, 1, (None, None)),
    Load("get_c50", "GET 1 KiB, 50 clients", "get", 50, 1, (TARGET_GET_C50, None)),
    Load("get_c50_p16", "GET 1 KiB, 50 clients, pipeline 16", "get", 50, 16, (None, None)),
]

# Requests per redis-benchmark run, sized for about 0.5-2 s per run on the
# 2-core dev VM in the full profile (~10 min for `python -m bench` there,
# when nothing else runs on the machine).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "reps": 1,
        "keyspace": 200,
        "value_bytes": 1 * KiB,
        "n": {
            "set_c1": 20,
            "set_c50": 200,
            "set_c50_p16": 800,
            "get_c1": 50,
            "get_c50": 200,
            "get_c50_p16": 800,
        },
        "zc_n": {1 * KiB: 200, 4 * KiB: 100, 16 * KiB: 100, 64 * KiB: 50},
        "zc_keyspace": 200,
        "ping_n": {"c1": 200, "c50": 1000, "c50_p16": 4000},
        "sync_probe": 4,
    },
    "quick": {
        "reps": 2,
        "keyspace": 2_000,
        "value_bytes": 1 * KiB,
        "n": {
            "set_c1": 300,
            "set_c50": 4_000,
            "set_c50_p16": 16_000,
            "get_c1": 3_000,
            "get_c50": 8_000,
            "get_c50_p16": 40_000,
        },
        "zc_n": {1 * KiB: 4_000, 4 * KiB: 2_000, 16 * KiB: 1_000, 64 * KiB: 300},
        "zc_keyspace": 2_000,
        "ping_n": {"c1": 3_000, "c50": 20_000, "c50_p16": 100_000},
        "sync_probe": 20,
    },
    "full": {
        "reps": 5,
        "keyspace": 10_000,
        "value_bytes": 1 * KiB,
        "n": {
            "set_c1": 2_000,
            "set_c50": 40_000,
            "set_c50_p16": 100_000,
            "get_c1": 20_000,
            "get_c50": 60_000,
            "get_c50_p16": 300_000,
        },
        "zc_n": {1 * KiB: 30_000, 4 * KiB: 15_000, 16 * KiB: 8_000, 64 * KiB: 3_000},
        "zc_keyspace": 10_000,
        "ping_n": {"c1": 10_000, "c50": 50_000, "c50_p16": 400_000},
        "sync_probe": 100,
    },
}


def key_of(i: int) -> bytes:
    """The key redis-benchmark -r makes of the random number i."""
    return b"key:%012d" % i


def write_keyspace(port: int, keys: int, vsize: int) -> None:
    """SET every key redis-benchmark -r may pick, pipelined (not timed): GETs
    then always hit, and the server has warmed up.  Read one back."""
    value = os.urandom(vsize)
    r = redis_client(port)
    try:
        for lo in range(0, keys, 500):
            pipe = r.pipeline(transaction=False)
            for i in range(lo, min(keys, lo + 500)):
                pipe.set(key_of(i), value)
            replies = pipe.execute(raise_on_error=False)
            bad = [x for x in replies if x is not True]
            if bad:
                raise BenchError(f"SET while writing the keyspace: {bad[0]!r}")
        if r.get(key_of(keys - 1)) != value:
            raise BenchError("GET after writing the keyspace returned other bytes")
    finally:
        r.close()


def zc_modes(env: dict[str, str], profile: str = "full") -> list[str]:
    """The receive modes of the ablation this pastedb build offers (the smoke
    profile keeps to the two the issue names)."""
    if profile == "smoke":
        return list(ZC_MODES)
    return list(_zc_modes(env.get("PYTHONPATH", "")))


@functools.lru_cache(maxsize=4)
def _zc_modes(pythonpath: str) -> tuple[str, ...]:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pastedb", "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=pythonpath.split(os.pathsep)[0] or None,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return (*ZC_MODES, *(["recv-mapping"] if "--receive" in out else []))


# INFO breakdown (the server's time by phase), per request of a run: the
# key in a result, the INFO fields summed into it.  loop_exec_us includes
# the appends, so "run" is exec less append.
BREAKDOWN = [
    ("bd_wait_us", ("loop_wait_us",)),
    ("bd_recv_us", ("loop_recv_us",)),
    ("bd_run_us", ("loop_exec_us", "-loop_append_us")),
    ("bd_append_us", ("loop_append_us",)),
    ("bd_send_us", ("loop_send_us",)),
    ("bd_loop_barrier_us", ("loop_barrier_us",)),
    ("bd_other_us", ("loop_other_us",)),
    ("bd_linger_us", ("flusher_linger_us",)),
    ("bd_flusher_barrier_us", ("flusher_barrier_us",)),
    ("bd_wake_us", ("wake_us",)),
]


def reset_breakdown(port: int) -> None:
    r = redis_client(port)
    try:
        r.config_resetstat()
    finally:
        r.close()


def breakdown_per_request(port: int) -> dict[str, float]:
    """INFO breakdown since the last CONFIG RESETSTAT, in us per write
    (BREAKDOWN), and each barrier's mean duration and requests."""
    r = redis_client(port)
    try:
        b = r.info("breakdown")
    finally:
        r.close()
    writes = b.get("breakdown_writes") or 0
    if not writes:
        return {}
    out = {
        key: sum(-b[f[1:]] if f.startswith("-") else b[f] for f in fields) / writes
        for key, fields in BREAKDOWN
    }
    barriers = b["loop_barriers"] + b["flusher_barriers"]
    if barriers:
        out["bd_barrier_each_us"] = (b["loop_barrier_us"] + b["flusher_barrier_us"]) / barriers
        out["bd_writes_per_barrier"] = writes / barriers
    return out


def info_counters(port: int) -> dict[str, float]:
    """pastedb's barrier and commit-group counters from INFO (redis has none)."""
    r = redis_client(port)
    try:
        info = r.info()
    finally:
        r.close()
    return {
        k: float(info[k]) for k in ("barriers", "commit_groups") if isinstance(info.get(k), int)
    }


class NetRun(Run):
    """A network run: the servers it started, what they said, the PING limits."""

    def __init__(
        self,
        args: argparse.Namespace,
        cfg: dict[str, Any],
        profile: str,
        peers: Peers,
        disk: str,
        tmpfs: str | None,
    ) -> None:
        super().__init__(args, cfg, disk)
        self.profile = profile
        self.peers = peers
        self.disk = disk  # temporary directory on the disk (under --dir): the run's base
        self.tmpfs = tmpfs  # temporary directory on tmpfs, or None
        self.timeout = 120.0 if profile != "full" else 600.0
        self.sync_tmpfs_ns: list[int] = []
        self.ping: list[dict[str, dict[str, float]]] = []
        self.server_lines: dict[str, str] = {}
        self.problems: list[str] = []
        self.env = server_env()
        self.core_dir = os.path.realpath(os.path.join(pastedb_root(), "pastedb", "core"))
        self.zc_modes = zc_modes(self.env, profile)
        self.receive: dict[str, str] = {}  # receive path each pastedb server reported

    def server(self, name: str, datadir: str) -> Server:
        if name in PASTEDB_OPTIONS:
            return Server("pastedb", pastedb_argv(*PASTEDB_OPTIONS[name]), datadir, self.env)
        assert self.peers.redis_server
        argv = redis_argv(self.peers.redis_server, REDIS_FSYNC[name])
        return Server("redis", argv, datadir, self.env)

    @contextlib.contextmanager
    def running(self, name: str, under: str) -> Iterator[Server]:
        datadir = self.fresh_dir(name, under)
        srv = self.server(name, datadir).start()
        first = (srv.log().strip().splitlines() or [""])[0].strip()
        if srv.kind == "pastedb":
            core = srv.loaded_core()
            if core is not None and core != self.core_dir:
                self.problems.append(
                    f"{name} loaded pastedb from {core}, not {self.core_dir} as this process did"
                )
            m = re.search(r"receive=([\w+-]+)", first)
            self.receive[name] = m.group(1) if m else "?"
        if name not in self.server_lines:
            cmd = " ".join(srv.command(srv.port)).replace(datadir, "DIR")
            cmd = cmd.replace(f"--port {srv.port}", "--port PORT").replace(sys.executable, "python")
            said = first.replace(datadir, "DIR").replace(f":{srv.port}", ":PORT")
            self.server_lines[name] = cmd + (f"  [{said}]" if srv.kind == "pastedb" else "")
        ok = False
        try:
            yield srv
            ok = True
        finally:
            try:
                rc = srv.stop()
                if rc != 0:
                    self.problems.append(
                        f"{name} exited with {rc} when stopped: {srv.log()[-300:]}"
                    )
            except BenchError as exc:
                self.problems.append(str(exc))
                if ok:
                    raise
            finally:
                shutil.rmtree(datadir, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(srv.log_path)

    def bench(self, srv: Server, test: str, **kw: Any) -> dict[str, float]:
        """One redis-benchmark run; for pastedb also the barriers it cost."""
        assert self.peers.redis_benchmark
        before = info_counters(srv.port) if srv.kind == "pastedb" else {}
        if srv.kind == "pastedb":
            reset_breakdown(srv.port)
        out = redis_benchmark(
            self.peers.redis_benchmark, srv.port, test, timeout=self.timeout, **kw
        )
        if "barriers" in before:
            after = info_counters(srv.port)
            barriers = after.get("barriers", math.nan) - before["barriers"]
            out["barriers"] = barriers
            out["req_per_barrier"] = out["n"] / barriers if barriers > 0 else math.nan
            out.update(breakdown_per_request(srv.port))
        return out

    def probe_sync(self, n: int) -> None:
        super().probe_sync(n)
        if self.tmpfs:
            self.sync_tmpfs_ns.extend(fdatasync_samples(self.tmpfs, max(1, n // 2)))

    def probe_ping(self) -> None:
        """Loopback round trip and request-rate ceiling: PING against a redis
        that persists nothing.  Taken once per repetition of the server
        matrix (interleaved with the servers), else before and after."""
        assert self.peers.redis_benchmark
        with self.running("redis-nopersist", self.disk) as srv:
            limits = ping_limits(
                self.peers.redis_benchmark, srv.port, self.cfg["ping_n"], self.timeout
            )
            self.ping.append(limits)

    def ping_med(self, which: str, key: str) -> float:
        return median([p[which][key] for p in self.ping if key in p.get(which, {})])


def server_matrix(run: NetRun) -> list[Workload]:
    cfg = run.cfg
    reps, keyspace, vsize = cfg["reps"], cfg["keyspace"], cfg["value_bytes"]
    near_sync: list[int] = []

    def session(name: str, rep: int) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        if name == "ping":
            run.probe_ping()
            return out
        near_sync.extend(fdatasync_samples(run.disk, 4))
        with run.running(name, run.disk) as srv:
            write_keyspace(srv.port, keyspace, vsize)
            for load in LOADS:
                progress.label(f"{load.title}: {name} {rep + 1}/{reps}")
                try:
                    out[load.id] = run.bench(
                        srv,
                        load.op,
                        clients=load.clients,
                        pipeline=load.pipeline,
                        n=cfg["n"][load.id],
                        keyspace=keyspace,
                        vsize=vsize,
                    )
                except BenchError as exc:
                    out[load.id] = {}
                    run.problems.append(f"{load.title}, {name}, repetition {rep + 1}: {exc}")
                    run.log(f"FAILED {load.title} on {name}: {exc}")
                progress.step()
        return out

    started = time.monotonic()
    results = interleave(reps, [*SERVERS, "ping"], session, "pastedb vs redis")
    run.sync_ns.extend(near_sync)
    workloads = []
    for load in LOADS:
        t_rps, t_p50 = load.targets
        w = Workload(
            id=f"net_{load.id}",
            title=load.title,
            params={
                "op": load.op.upper(),
                "clients": load.clients,
                "pipeline": load.pipeline,
                "requests": cfg["n"][load.id],
                "value_bytes": vsize,
                "keyspace": keyspace,
                "reps": reps,
                "driver": "redis-benchmark --csv",
            },
            metrics=[
                Metric("rps", "req/s", target=t_rps),
                Metric("p50_us", "p50 us (lower better)", higher_is_better=False, target=t_p50),
                Metric("p99_us", "p99 us (lower better)", higher_is_better=False),
            ],
            engines=list(SERVERS),
        )
        w.reps = {e: [r.get(load.id, {}) for r in results[e]] for e in SERVERS}
        w.extra["fdatasync_4k_pwrite_us_during"] = summary_us(near_sync)
        w.seconds = (time.monotonic() - started) / len(LOADS)
        workloads.append(w)
        m = w.metrics[0]
        run.log(
            f"{w.title}: pastedb {w.med('pastedb', 'rps'):,.0f}, --copy "
            f"{w.med('pastedb-copy', 'rps'):,.0f}, redis always {w.med('redis-always', 'rps'):,.0f}"
            f" req/s -> {w.ratio(m.key):.2f}x"
        )
    return workloads


def zerocopy_ablation(run: NetRun) -> list[Workload]:
    cfg = run.cfg
    reps, keyspace = cfg["reps"], cfg["zc_keyspace"]
    where = {"tmpfs": run.tmpfs, "disk": run.disk}
    fss = [fs for fs in ("tmpfs", "disk") if where[fs]]
    modes = run.zc_modes
    engines = [f"{fs}/{mode}" for fs in fss for mode in modes]

    def session(name: str, rep: int) -> dict[int, dict[str, float]]:
        fs, mode = name.split("/")
        out: dict[int, dict[str, float]] = {}
        under = where[fs]
        assert under
        with run.running(mode, under) as srv:
            write_keyspace(srv.port, min(keyspace, 1000), 1 * KiB)  # warm-up
            for size in ZC_SIZES:
                progress.label(f"zero-copy vs copy, SET {size // KiB} KiB: {name} {rep + 1}/{reps}")
                try:
                    r = run.bench(
                        srv,
                        "set",
                        clients=50,
                        pipeline=1,
                        n=cfg["zc_n"][size],
                        keyspace=keyspace,
                        vsize=size,
                    )
                    r["MB_s"] = r["rps"] * size / 1e6
                    out[size] = r
                except BenchError as exc:
                    out[size] = {}
                    run.problems.append(f"SET {size} B, {name}, repetition {rep + 1}: {exc}")
                    run.log(f"FAILED SET {size} B on {name}: {exc}")
                progress.step()
        return out

    started = time.monotonic()
    results = interleave(reps, engines, session, "zero-copy vs copy")
    workloads = []
    for fs in fss:
        for size in ZC_SIZES:
            w = Workload(
                id=f"zc_{fs}_{size // KiB}k",
                title=f"SET {size // KiB} KiB, 50 clients, {fs}",
                params={
                    "fs": fs,
                    "dir": where[fs],
                    "filesystem": filesystem_of(where[fs] or "."),
                    "value_bytes": size,
                    "clients": 50,
                    "requests": cfg["zc_n"][size],
                    "keyspace": keyspace,
                    "reps": reps,
                },
                metrics=[
                    Metric("rps", "req/s"),
                    Metric("p50_us", "p50 us (lower better)", higher_is_better=False),
                    Metric("p99_us", "p99 us (lower better)", higher_is_better=False),
                ],
                engines=list(modes),
            )
            w.reps = {m: [r.get(size, {}) for r in results[f"{fs}/{m}"]] for m in modes}
            w.extra["receive"] = {m: run.receive.get(m) for m in modes}
            w.seconds = (time.monotonic() - started) / (len(fss) * len(ZC_SIZES))
            workloads.append(w)
            run.log(
                f"{w.title}: zero-copy {w.med('zero-copy', 'rps'):,.0f}, copy "
                f"{w.med('copy', 'rps'):,.0f} req/s -> {w.ratio('rps'):.2f}x"
            )
    return workloads


def limit_fractions(run: NetRun, main: list[Workload], physical: dict[str, Any]) -> None:
    """Each server result as a multiple (latency) or fraction (rate) of the
    physical limit that bounds it, stored in the workload's extra."""
    rtt_us = run.ping_med("c1", "p50_us")
    for w in main:
        load = next(x for x in LOADS if f"net_{x.id}" == w.id)
        if load.clients == 1 and load.op == "set":
            # the barrier samples taken beside this matrix's sessions, not the whole run's
            near = w.extra.get("fdatasync_4k_pwrite_us_during") or {}
            fsync_us = near.get("p50") or physical["fdatasync_4k_pwrite_overwrite_us"]["p50"]
            limit, key, unit = fsync_us + rtt_us, "p50_us", "us"
            formula = f"p50 / (fdatasync {fsync_us:,.0f} us + PING RTT {rtt_us:,.0f} us)"
        elif load.clients == 1:
            limit, key, unit = rtt_us, "p50_us", "us"
            formula = f"p50 / PING RTT {rtt_us:,.0f} us"
        else:
            which = "c50_p16" if load.pipeline > 1 else "c50"
            limit, key, unit = run.ping_med(which, "rps"), "rps", "req/s"
            flags = f"-c {load.clients}" + (f" -P {load.pipeline}" if load.pipeline > 1 else "")
            formula = f"req/s / PING req/s at {flags} ({limit:,.0f})"
        w.extra["limit"] = {
            "formula": formula,
            "limit": limit,
            "unit": unit,
            "metric": key,
            "of_limit": {e: (w.med(e, key) / limit if limit else float("nan")) for e in w.engines},
        }


def ablation_costs(zc: list[Workload], physical: dict[str, Any]) -> None:
    """What the copy avoided by zero-copy receive should cost (one memcpy of
    the value) beside the measured per-request difference at 50 clients."""
    gbps = physical["memcpy_gbps"]["64MiB_median"]
    for w in zc:
        size = w.params["value_bytes"]
        zc_rps, cp_rps = w.med("zero-copy", "rps"), w.med("copy", "rps")
        w.extra["memcpy_us_per_value"] = size / (gbps * 1e3) if gbps else float("nan")
        w.extra["per_request_us_zero_copy_minus_copy"] = (
            1e6 / zc_rps - 1e6 / cp_rps if zc_rps and cp_rps else float("nan")
        )


# Workloads of this suite that cannot run on this build ({"id", "title", "why"});
# "lazy vs eager indexing" moved to the embedded suite (bench/internals.py),
# which says itself whether the build has it.
NOT_AVAILABLE: list[dict[str, str]] = []


# ====================================================================== driver
def add_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Its options; inside ``all`` (standalone=False) --reps is --net-reps."""
    if standalone:
        p.add_argument(
            "--reps",
            dest="net_reps",
            type=int,
            help="repetitions per server (overrides the profile)",
        )
    else:
        p.add_argument(
            "--net-reps", type=int, help="network: repetitions per server (overrides the profile)"
        )
    p.add_argument(
        "--tmpfs-dir",
        default="/dev/shm",
        help="tmpfs directory for the zero-copy ablation (default %(default)s; "
        "skipped when it is not tmpfs)",
    )


def config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(PROFILES[profile_of(args)])
    if getattr(args, "net_reps", None):
        cfg["reps"] = args.net_reps
    return cfg


def planned_steps(
    cfg: dict[str, Any], groups: list[str], tmpfs: bool = True, modes: int = len(ZC_MODES)
) -> int:
    """Sessions plus redis-benchmark runs: the progress bar's length."""
    reps = cfg["reps"]
    steps = 0
    if "server" in groups:
        steps += reps * (len(SERVERS) * (len(LOADS) + 1) + 1)  # + a PING probe
    else:
        steps += 2  # PING probes before and after
    if "zerocopy" in groups:
        steps += reps * modes * (2 if tmpfs else 1) * (len(ZC_SIZES) + 1)
    return steps


def tmpfs_dir(path: str | None) -> tuple[str | None, str]:
    """The tmpfs directory to use, or None and why not."""
    if not path:
        return None, "no --tmpfs-dir"
    if not os.path.isdir(path):
        return None, f"{path} does not exist"
    fs = filesystem_of(path)
    if fs.get("type") != "tmpfs":
        return None, f"{path} is {fs.get('type', 'unknown')}, not tmpfs"
    return path, ""


def versions(peers: Peers) -> dict[str, Any]:
    return {
        **pastedb_versions(),
        "redis_server": tool_version(peers.redis_server),
        "redis_benchmark": tool_version(peers.redis_benchmark),
    }


def plan(args: argparse.Namespace, groups: list[str], parts: Sequence[Part] = ()) -> int:
    """The progress bar's length; 0 when the peers are missing (skipped)."""
    if not groups or Peers.find().missing():
        return 0
    use_pastedb_dir(args)
    tmpfs_ok = tmpfs_dir(args.tmpfs_dir)[0] is not None
    modes = len(zc_modes(server_env(), profile_of(args)))
    return planned_steps(config(args), groups, tmpfs_ok, modes)


def report(doc: dict[str, Any]) -> str:
    return render.network_text(doc)


def measure(
    args: argparse.Namespace,
    groups: list[str],
    parts: Sequence[Part] = (),
    plan_progress: bool = True,
) -> dict[str, Any] | int:
    """Run the network suite; the JSON document (``skipped`` says why when
    the peers are missing), or an exit code when nothing could run."""
    use_pastedb_dir(args)
    try:
        import pastedb  # noqa: F401
    except ImportError:
        print(
            "cannot import pastedb: run from the repository root after "
            "`python setup.py build_ext --inplace`",
            file=sys.stderr,
        )
        return 2
    profile = profile_of(args)
    cfg = config(args)
    peers = Peers.find()
    tmpfs, tmpfs_why = tmpfs_dir(args.tmpfs_dir)
    doc: dict[str, Any] = {
        "suite": "network",
        "profile": profile,
        "config": {**cfg, "zc_n": {str(k): v for k, v in cfg["zc_n"].items()}},
        "groups": groups,
        "not_available": NOT_AVAILABLE,
    }
    if peers.missing():
        msg = f"network benchmarks skipped: {', '.join(peers.missing())} not found on PATH. {INSTALL_HINT}"
        print(msg, file=sys.stderr)
        doc["skipped"] = msg
        doc["versions"] = versions(peers)
        return doc

    os.makedirs(args.dir, exist_ok=True)
    disk = tempfile.mkdtemp(prefix="pastedb-netbench-", dir=args.dir)
    tmp = tempfile.mkdtemp(prefix="pastedb-netbench-", dir=tmpfs) if tmpfs else None
    run = NetRun(args, cfg, profile, peers, disk, tmp)
    if plan_progress:
        progress.add_total(planned_steps(cfg, groups, tmp is not None, len(run.zc_modes)))
    build = pastedb_build()
    machine = machine_description(disk)
    machine["tmpfs"] = filesystem_of(tmp) if tmp else {"skipped": tmpfs_why}
    main: list[Workload] = []
    zc: list[Workload] = []
    t_start = time.monotonic()
    try:
        run.log(
            f"network, profile {profile}; servers under {disk}"
            + (f" and {tmp}" if tmp else f" (no tmpfs: {tmpfs_why})")
        )
        mc = memcpy_gbps(64 * MiB, 5)
        run.probe_sync(cfg["sync_probe"])
        run.log(
            f"fdatasync p50 {median(run.sync_ns) / 1e3:.0f} us after a pwrite, "
            f"{median(run.sync_mapped_ns) / 1e3:.0f} us after a mapped store"
        )
        if "server" in groups:
            main = server_matrix(run)
        else:
            run.probe_ping()
            progress.step()
        run.probe_sync(cfg["sync_probe"] // 2)
        if "zerocopy" in groups:
            zc = zerocopy_ablation(run)
        run.probe_sync(cfg["sync_probe"] // 2)
        if "server" not in groups:
            run.probe_ping()
            progress.step()
        mc += memcpy_gbps(64 * MiB, 5)
    finally:
        shutil.rmtree(disk, ignore_errors=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    total_s = time.monotonic() - t_start
    machine["loadavg_end"] = list(os.getloadavg())
    build_after = pastedb_build()
    if {k: v.get("sha256_16") for k, v in build["modules"].items()} != {
        k: v.get("sha256_16") for k, v in build_after["modules"].items()
    }:
        run.problems.append("the pastedb build changed during the run (someone rebuilt it)")

    physical: dict[str, Any] = {
        "fdatasync_4k_pwrite_overwrite_us": summary_us(run.sync_ns),
        "fdatasync_1k_mapped_store_us": summary_us(run.sync_mapped_ns),
        "fdatasync_tmpfs_4k_pwrite_us": summary_us(run.sync_tmpfs_ns) if tmp else None,
        "memcpy_gbps": {"64MiB_median": median(mc), "64MiB_best": max(mc)},
        "ping": {
            which: {
                "rps": run.ping_med(which, "rps"),
                "p50_us": run.ping_med(which, "p50_us"),
                "p99_us": run.ping_med(which, "p99_us"),
            }
            for which in ("c1", "c50", "c50_p16")
        },
        "ping_samples": run.ping,
    }
    limit_fractions(run, main, physical)
    ablation_costs(zc, physical)
    doc.update(
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - total_s)),
            "total_seconds": round(total_s, 1),
            "machine": machine,
            "versions": versions(peers),
            "pastedb_build": build,
            "servers": run.server_lines,
            "receive": run.receive,
            "physical": physical,
            "workloads": [w.to_json() for w in main],
            "zerocopy": [w.to_json() for w in zc],
            "tmpfs_skipped": None if tmp else tmpfs_why,
            "problems": run.problems,
        }
    )
    return doc
