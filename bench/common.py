"""Environment helpers shared by every suite; the bottom of the import chain
(``common`` <- ``render`` <- the suites <- ``__main__``: nothing here imports
another bench module).

- statistics and timing: every timed block reads ``time.perf_counter_ns``
  (``now_ns``); ``run_timed_threads``: N threads released together by a
  barrier, each running until a shared deadline; elapsed time runs from the
  release to the last thread's return, so an operation still in flight at
  the deadline is counted and its time is included;
- results: ``Metric`` and ``Workload`` (per-repetition metrics of every
  engine, medians, ratios; ``Workload.from_json`` reads a report back for
  ``python -m bench render``); ``interleave``: repetitions of every engine
  alternate (A B A B ...) so that drift on a shared, noisy machine lands on
  both engines alike;
- physical limits measured in the same run: fdatasync of a 4 KiB overwrite
  and after a 1 KiB store through a shared mapping, memcpy bandwidth,
  loopback PING through redis-benchmark;
- the machine and the pastedb build being measured;
- processes and servers: ``Server`` starts pastedb serve or redis-server on
  a free port and stops it; ``redis_client`` is the redis-py client the
  suites use to load a server, read its INFO and shut it down;
  ``redis_benchmark`` runs the driver and reads its CSV;
- ``Run``: one suite's run (options, configuration, directories, what it
  measured so far), and the ``Suite`` / ``Part`` interfaces that
  ``bench/__main__.py`` lists its suites by;
- ``progress``: a one-line progress bar on stderr, drawn only on a terminal;
- JSON output.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import faulthandler
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import redis

now_ns = time.perf_counter_ns
KiB = 1024
MiB = 1024 * 1024


# ------------------------------------------------------------------ statistics
def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_xs:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_xs)))
    return float(sorted_xs[min(rank, len(sorted_xs)) - 1])


def summary_us(ns: Sequence[int]) -> dict[str, float]:
    """Percentiles (µs) of a list of nanosecond samples."""
    xs = sorted(ns)
    return {
        "samples": len(xs),
        "p10": percentile(xs, 10) / 1e3,
        "p50": percentile(xs, 50) / 1e3,
        "p90": percentile(xs, 90) / 1e3,
        "p99": percentile(xs, 99) / 1e3,
    }


def latency_summary_us(lat_ns: list[int]) -> dict[str, float]:
    lat_ns.sort()
    return {
        "p50_us": percentile(lat_ns, 50) / 1e3,
        "p99_us": percentile(lat_ns, 99) / 1e3,
        "max_us": (lat_ns[-1] / 1e3) if lat_ns else math.nan,
    }


# ------------------------------------------------------------------ threads
WorkerFn = Callable[[int], list[int]]
"""A worker gets the deadline (perf_counter_ns) and returns one latency (ns)
per operation it completed."""


def run_timed_threads(workers: Sequence[WorkerFn], duration_s: float) -> tuple[int, list[int]]:
    """Run every worker in its own thread until ``duration_s`` after a common
    start.  Returns (elapsed ns from start to the last thread's end, all latencies)."""
    n = len(workers)
    barrier = threading.Barrier(n + 1)
    deadline = [0]
    results: list[list[int]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def body(i: int, fn: WorkerFn) -> None:
        try:
            barrier.wait()
            results[i] = fn(deadline[0])
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=body, args=(i, fn), daemon=True) for i, fn in enumerate(workers)
    ]
    for t in threads:
        t.start()
    start = now_ns()
    deadline[0] = start + int(duration_s * 1e9)
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = now_ns() - start
    if errors:
        raise errors[0]
    lat: list[int] = []
    for r in results:
        lat.extend(r)
    return elapsed, lat


# ------------------------------------------------------------------ results
@dataclass
class Metric:
    key: str  # name in the per-repetition dicts
    label: str  # shown in the table
    higher_is_better: bool = True
    # the pastedb/peer ratio the issue asks for: a minimum when higher is
    # better (throughput), a maximum when lower is better (latency)
    target: float | None = None

    def met(self, ratio: float) -> bool | None:
        if self.target is None:
            return None
        if math.isnan(ratio):
            return False
        return ratio >= self.target if self.higher_is_better else ratio <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}x"


@dataclass
class Workload:
    id: str
    title: str
    params: dict[str, Any]
    metrics: list[Metric]
    engines: list[str]
    reps: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def values(self, engine: str, key: str) -> list[float]:
        return [r[key] for r in self.reps.get(engine, []) if key in r]

    def med(self, engine: str, key: str) -> float:
        return median(self.values(engine, key))

    def ratio(self, key: str) -> float:
        a, b = self.med(self.engines[0], key), self.med(self.engines[1], key)
        return a / b if b else math.nan

    def pair_ratios(self, key: str) -> list[float]:
        """Ratio within each interleaved pair: the spread shows how noisy the run was."""
        a, b = self.values(self.engines[0], key), self.values(self.engines[1], key)
        return [x / y for x, y in zip(a, b, strict=False) if y]

    def ratio_of(self, num: str, den: str, key: str) -> float:
        a, b = self.med(num, key), self.med(den, key)
        return a / b if b else math.nan

    def to_json(self) -> dict[str, Any]:
        summary = {}
        for m in self.metrics:
            r = self.ratio(m.key)
            summary[m.key] = {
                "label": m.label,
                "higher_is_better": m.higher_is_better,
                **{f"median_{e}": self.med(e, m.key) for e in self.engines},
                "ratio": r,
                "pair_ratios": self.pair_ratios(m.key),
                "target_ratio": m.target,
                "met": m.met(r),
            }
        return {
            "id": self.id,
            "title": self.title,
            "engines": self.engines,
            "params": self.params,
            "summary": summary,
            "repetitions": self.reps,
            "notes": self.notes,
            "extra": self.extra,
            "seconds": round(self.seconds, 2),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Workload:
        """The inverse of to_json (medians and ratios are recomputed from the
        repetitions; reports written before "engines" was stored list them in
        the order of "repetitions")."""
        metrics = [
            Metric(key, s["label"], s.get("higher_is_better", True), s.get("target_ratio"))
            for key, s in d["summary"].items()
        ]
        reps = {
            e: [{k: (math.nan if v is None else v) for k, v in r.items()} for r in rs]
            for e, rs in d.get("repetitions", {}).items()
        }
        return cls(
            id=d["id"],
            title=d["title"],
            params=d.get("params", {}),
            metrics=metrics,
            engines=list(d.get("engines") or reps.keys()),
            reps=reps,
            notes=list(d.get("notes", [])),
            extra=dict(d.get("extra", {})),
            seconds=d.get("seconds", 0.0),
        )


T = TypeVar("T")


def interleave(
    reps: int,
    engines: Sequence[str],
    run_one: Callable[[str, int], T],
    label: str = "",
) -> dict[str, list[T]]:
    """Repetition r of every engine runs before repetition r+1 of any: A B A B ..."""
    out: dict[str, list[T]] = {e: [] for e in engines}
    for r in range(reps):
        for e in engines:
            progress.label(f"{label}: {e} {r + 1}/{reps}" if label else f"{e} {r + 1}/{reps}")
            out[e].append(run_one(e, r))
            progress.step()
    return out


# ------------------------------------------------------------------ physical limits
def fdatasync_samples(dirpath: str, n: int) -> list[int]:
    """Time one fdatasync after overwriting 4 KiB of an already allocated,
    already synced file: the cheapest durable write this disk offers."""
    path = os.path.join(dirpath, "fdatasync-probe")
    size = 1 << 20
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.pwrite(fd, b"\0" * size, 0)
            os.fsync(fd)
        out = []
        for i in range(n):
            os.pwrite(fd, os.urandom(4096), (i * 7 * 4096) % size)
            t = now_ns()
            os.fdatasync(fd)
            out.append(now_ns() - t)
        return out
    finally:
        os.close(fd)


def fdatasync_mapped_samples(dirpath: str, n: int) -> list[int]:
    """Time one fdatasync after a 1 KiB store through a MAP_SHARED mapping of
    an already allocated, already synced file: the same barrier, on the path
    a pastedb put takes (bytes reach the file through the mapping)."""
    import mmap

    path = os.path.join(dirpath, "fdatasync-mapped-probe")
    size = 1 << 20
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.pwrite(fd, b"\0" * size, 0)
            os.fsync(fd)
        m = mmap.mmap(fd, size)
        try:
            out = []
            for i in range(n):
                off = (i * 7 * 4096) % size
                m[off : off + 1024] = os.urandom(1024)
                t = now_ns()
                os.fdatasync(fd)
                out.append(now_ns() - t)
            return out
        finally:
            m.close()
    finally:
        os.close(fd)


def memcpy_gbps(size: int, reps: int) -> list[float]:
    """Bandwidth of one contiguous copy (memoryview slice assignment is a
    memcpy), bytes copied per second, in GB/s."""
    src = memoryview(bytearray(b"\x5a") * size)
    dst = memoryview(bytearray(size))
    dst[:] = src  # fault in both buffers
    out = []
    for _ in range(reps):
        t = now_ns()
        dst[:] = src
        out.append(size / (now_ns() - t))
    return out


# ------------------------------------------------------------------ machine
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def filesystem_of(path: str) -> dict[str, Any]:
    """Mount point, type, device and options of the file system holding path,
    plus what /sys says about the block device (best effort)."""
    real = os.path.realpath(path)
    best: dict[str, Any] = {}
    for line in (_read("/proc/self/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        dev, mnt, fstype, opts = parts[:4]
        mnt = mnt.replace("\\040", " ")
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best.get("mount", "")):
            best = {"mount": mnt, "type": fstype, "device": dev, "options": opts}
    dev = str(best.get("device", ""))
    if dev.startswith("/dev/"):
        name = os.path.basename(os.path.realpath(dev))
        block = name
        # a partition (vda1, nvme0n1p2) reports its queue on the parent disk
        if not os.path.exists(f"/sys/block/{block}"):
            for cand in os.listdir("/sys/block") if os.path.isdir("/sys/block") else []:
                if name.startswith(cand):
                    block = cand
        for attr in ("rotational", "write_cache", "logical_block_size"):
            v = _read(f"/sys/block/{block}/queue/{attr}")
            if v is not None:
                best[attr] = v
        model = _read(f"/sys/block/{block}/device/model")
        if model:
            best["model"] = model
    return best


def git_revision(repo: str) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", repo, *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def machine_description(dirpath: str) -> dict[str, Any]:
    mem = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "bench_dir": os.path.realpath(dirpath),
        "filesystem": filesystem_of(dirpath),
        "loadavg_start": list(os.getloadavg()),
    }


# ------------------------------------------------------------------ the pastedb build
def use_pastedb_dir(args: argparse.Namespace) -> None:
    """--pastedb-dir: import pastedb from that directory (a private release build)."""
    d = getattr(args, "pastedb_dir", None)
    if d and os.path.abspath(d) not in sys.path:
        sys.path.insert(0, os.path.abspath(d))


def pastedb_root() -> str:
    """The directory this process imported pastedb from."""
    import pastedb

    return os.path.dirname(os.path.dirname(os.path.abspath(pastedb.__file__)))


def server_env() -> dict[str, str]:
    """The environment of child processes that run pastedb (servers, probes):
    they import the same pastedb build as this process (they also start in
    that directory, since ``python -m`` puts the working directory first on
    sys.path)."""
    root = pastedb_root()
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def finish_doc(doc: dict[str, Any], t0: float, machine: dict[str, Any],
               versions: dict[str, Any], **fields: Any) -> None:
    """The closing fields of a suite's JSON document: when it started, how
    long it took, the machine (with its load at the end) and the versions
    (pastedb's and the peers' given), then the suite's own fields."""
    total_s = time.monotonic() - t0
    machine["loadavg_end"] = list(os.getloadavg())
    doc.update({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - total_s)),
        "total_seconds": round(total_s, 1),
        "machine": machine,
        "versions": {**pastedb_versions(), **versions},
        **fields,
    })


def pastedb_versions() -> dict[str, Any]:
    """pastedb's version, where it was imported from, and the commit of its
    source (the snapshot recipe in ``python -m bench embedded -h`` writes
    SOURCE_COMMIT beside a snapshot)."""
    import pastedb

    src_root = pastedb_root()
    marker = os.path.join(src_root, "SOURCE_COMMIT")
    if os.path.exists(marker):
        with open(marker) as f:
            source: dict[str, Any] = {"snapshot_of_commit": f.read().strip(), "dirty": False}
    else:
        source = git_revision(src_root)
    return {
        "pastedb": pastedb.__version__,
        "pastedb_module": os.path.dirname(os.path.abspath(pastedb.__file__)),
        "pastedb_source": source,
    }


def pastedb_build() -> dict[str, Any]:
    """Which compiled modules were imported, and whether any looks like a
    PASTEDB_DEBUG build (line tracing: every traced nogil line takes the GIL,
    so its numbers say nothing about a release build).  The generated .c of
    a module lies beside its .pyx; linetrace leaves __Pyx_TraceLine calls in it."""
    import pastedb.core

    core = os.path.dirname(os.path.abspath(pastedb.core.__file__))
    csrc = os.path.join(os.path.dirname(os.path.dirname(core)), "cython", "pastedb", "core")
    modules: dict[str, Any] = {}
    for fn in sorted(os.listdir(core)):
        if not fn.endswith(".so"):
            continue
        name = fn.split(".")[0]
        so = os.path.join(core, fn)
        with open(so, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        info: dict[str, Any] = {
            "sha256_16": digest,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(so))),
        }
        c = os.path.join(csrc, name + ".c")
        if os.path.exists(c):
            with open(c, "rb") as f:
                info["linetrace_in_generated_c"] = b"__Pyx_TraceLine(" in f.read()
        modules[name] = info
    traced = sorted(n for n, i in modules.items() if i.get("linetrace_in_generated_c"))
    return {"core_dir": core, "modules": modules, "debug_build_suspected": traced}


# ------------------------------------------------------------------ processes and servers
class BenchError(RuntimeError):
    """A server or redis-benchmark failed; the message quotes its output."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_client(port: int, timeout: float = 30.0) -> redis.Redis:
    """A redis-py client of the server on ``port`` that never retries (a
    dropped connection must surface, not be papered over)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


def answers_ping(port: int) -> bool:
    import redis

    try:
        with redis_client(port, timeout=2) as r:  # connects at once: refused until it listens
            return bool(r.ping())
    except (redis.RedisError, OSError):
        return False


class Server:
    """One server process on a free port, ready once it answers PING:
    pastedb serve (kind "pastedb", argv from pastedb_argv), redis-server
    ("redis", argv from redis_argv), or any other program whose argv says
    where its port and data directory go with "{port}" and "{dir}"."""

    def __init__(self, kind: str, argv: list[str], datadir: str, env: dict[str, str] | None):
        self.kind = kind  # "pastedb", "redis" or the name of another program
        self.argv = argv  # without the port
        self.datadir = datadir
        self.env = env
        self.log_path = datadir.rstrip("/") + ".log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def command(self, port: int) -> list[str]:
        if self.kind == "pastedb":
            return [*self.argv[:4], self.datadir, "--port", str(port), *self.argv[4:]]
        if self.kind == "redis":
            return [*self.argv, "--port", str(port), "--dir", self.datadir]
        return [a.replace("{port}", str(port)).replace("{dir}", self.datadir) for a in self.argv]

    def start(self, timeout: float = 30.0) -> Server:
        if self.kind != "pastedb":
            os.makedirs(self.datadir, exist_ok=True)
        for _attempt in range(5):
            port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self.command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.env,
                    cwd=pastedb_root() if self.kind == "pastedb" else self.datadir,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if answers_ping(port):
                    self.port = port
                    return self
                time.sleep(0.01)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise BenchError(
                    f"{self.kind} did not answer PING in {timeout:.0f}s:\n{self.log()}"
                )
            if not re.search(r"in use|cannot listen", self.log(), re.I):
                break  # a real failure, not a lost race for the port
        assert self.proc is not None
        raise BenchError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SHUTDOWN NOSAVE (redis) or SIGTERM (any other); the exit code."""
        import redis

        assert self.proc is not None
        if self.proc.poll() is None:
            if self.kind == "redis":
                try:
                    with redis_client(self.port, timeout=10) as r:
                        r.shutdown(nosave=True)  # returns once the server closed the connection
                except (redis.RedisError, OSError):
                    self.proc.terminate()
            else:
                self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise BenchError(f"{self.kind} ignored the stop request for {timeout:.0f}s") from None

    def loaded_core(self) -> str | None:
        """Directory of the pastedb extension modules the server process
        mapped (Linux /proc; None where that cannot be read)."""
        assert self.proc is not None
        try:
            with open(f"/proc/{self.proc.pid}/maps") as f:
                for line in f:
                    path = line.split(maxsplit=5)[-1].strip()
                    if "/pastedb/core/" in path and path.endswith(".so"):
                        return os.path.dirname(os.path.realpath(path))
        except OSError:
            pass
        return None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


def pastedb_argv(*options: str) -> list[str]:
    """``python -m pastedb serve [options]``; Server.command inserts DIR after "serve"."""
    return [sys.executable, "-m", "pastedb", "serve", *options]


def redis_argv(redis_server: str, fsync: str | None) -> list[str]:
    """redis-server with AOF fsync ``always`` / ``everysec``, or no persistence at all (None)."""
    common = [redis_server, "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]
    if fsync is None:
        return [*common, "--appendonly", "no"]
    return [*common, "--appendonly", "yes", "--appendfsync", fsync]


@dataclass
class Peers:
    """The redis programs and client library a network suite needs."""

    redis_server: str | None
    redis_benchmark: str | None
    redis_py: bool

    @classmethod
    def find(cls) -> Peers:
        try:
            import redis  # noqa: F401

            redis_py = True
        except ImportError:
            redis_py = False
        return cls(shutil.which("redis-server"), shutil.which("redis-benchmark"), redis_py)

    def missing(self) -> list[str]:
        return [
            n
            for n, p in (
                ("redis-server", self.redis_server),
                ("redis-benchmark", self.redis_benchmark),
                ("redis-py (pip install redis)", self.redis_py),
            )
            if not p
        ]


def tool_version(exe: str | None) -> str | None:
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError):
        return None


CSV_FIELDS = {
    "rps": "rps",
    "avg_latency_ms": "avg_us",
    "p50_latency_ms": "p50_us",
    "p95_latency_ms": "p95_us",
    "p99_latency_ms": "p99_us",
    "max_latency_ms": "max_us",
}


def redis_benchmark(
    exe: str,
    port: int,
    test: str,
    *,
    clients: int,
    pipeline: int,
    n: int,
    keyspace: int,
    vsize: int,
    timeout: float,
) -> dict[str, float]:
    """One redis-benchmark run; req/s and latencies (µs) from its CSV line
    (redis-benchmark 6.2+ prints p50/p95/p99 there, from an HDR histogram)."""
    argv = [exe, "-h", "127.0.0.1", "-p", str(port), "-t", test, "-c", str(clients)]
    argv += ["-P", str(pipeline), "-n", str(n), "-r", str(keyspace), "-d", str(vsize), "--csv"]
    t = now_ns()
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)} took longer than {timeout:.0f}s") from None
    wall = (now_ns() - t) / 1e9
    err = cp.stderr.strip()
    if cp.returncode != 0 or "Error" in err or "error" in cp.stdout.lower():
        raise BenchError(
            f"{' '.join(argv)} (exit {cp.returncode}): {err[-600:] or cp.stdout[-600:]}"
        )
    rows = list(csv.reader(line for line in cp.stdout.splitlines() if line.strip()))
    want = "PING_MBULK" if test == "ping" else test.upper()
    if not rows:
        raise BenchError(f"{' '.join(argv)}: no CSV output")
    header = rows[0]
    for row in rows[1:]:
        if row and row[0] == want:
            out: dict[str, float] = {"n": n, "wall_s": wall}
            for name, value in zip(header, row, strict=False):
                if name in CSV_FIELDS:
                    x = float(value)
                    out[CSV_FIELDS[name]] = x if name == "rps" else x * 1e3
            if not math.isfinite(out.get("rps", 0.0)):
                # a run shorter than redis-benchmark's clock tick (a smoke
                # run of 20 requests) prints an infinite rate: take the
                # whole process's, a lower bound
                out["rps"] = n / wall
                out["rps_from_wall"] = 1.0
            if "p50_us" not in out:
                raise BenchError(
                    f"this redis-benchmark prints no percentiles in --csv (needs 6.2+): {header}"
                )
            return out
    raise BenchError(f"{' '.join(argv)}: no {want} line in\n{cp.stdout}")


PING_LOADS = {"c1": (1, 1), "c50": (50, 1), "c50_p16": (50, 16)}  # (clients, pipeline)


def ping_limits(
    exe: str, port: int, n: dict[str, int], timeout: float
) -> dict[str, dict[str, float]]:
    """The loopback limits: redis-benchmark -t ping against a running server
    (one that persists nothing).  At -c 1 its p50 is the round trip, at -c 50
    (-P 16) its rate is the most this client gets from any server."""
    return {
        which: redis_benchmark(
            exe,
            port,
            "ping",
            clients=clients,
            pipeline=pipeline,
            n=n[which],
            keyspace=1,
            vsize=3,
            timeout=timeout,
        )
        for which, (clients, pipeline) in PING_LOADS.items()
    }


# ------------------------------------------------------------------ a run
def profile_of(args: argparse.Namespace) -> str:
    """smoke (seconds, proves it works), quick (under a minute) or full."""
    return "smoke" if getattr(args, "smoke", False) else "quick" if args.quick else "full"


@dataclass
class Run:
    """One suite's run: its options, its profile's configuration, where its
    databases go, and what it measured so far.  A suite may extend it."""

    args: argparse.Namespace
    cfg: dict[str, Any]  # the profile's sizes and counts, after the command-line overrides
    base: str  # temporary directory on the disk (under --dir), removed after the run
    hang_timeout: float | None = None  # seconds one step may take (None: no watchdog)
    t0: float = field(default_factory=time.monotonic)
    seq: int = 0  # numbers the fresh directories
    sync_ns: list[int] = field(default_factory=list)  # fdatasync after a 4 KiB pwrite
    sync_mapped_ns: list[int] = field(default_factory=list)  # ... after a 1 KiB mapped store
    workloads: list[Workload] = field(default_factory=list)  # measured, in order
    shared: dict[str, Any] = field(default_factory=dict)  # what several workloads use

    def log(self, msg: str) -> None:
        progress.write(f"[{time.monotonic() - self.t0:6.1f}s] {msg}")

    def fresh_dir(self, tag: str, under: str | None = None) -> str:
        """A new, empty directory under ``under`` (default: the run's base)."""
        self.seq += 1
        path = os.path.join(under or self.base, f"{self.seq:04d}-{tag}")
        os.makedirs(path)
        return path

    def rearm(self) -> None:
        """Restart the hang watchdog, which dumps every thread's stack and
        exits if a step deadlocks (each long step counts as one)."""
        if self.hang_timeout:
            faulthandler.dump_traceback_later(self.hang_timeout, exit=True)

    def probe_sync(self, n: int) -> None:
        """n barrier samples on the disk (every workload starts here)."""
        self.rearm()
        self.sync_ns.extend(fdatasync_samples(self.base, n))
        self.sync_mapped_ns.extend(fdatasync_mapped_samples(self.base, max(1, n // 2)))


class Part(Protocol):
    """Groups of workloads that run inside another suite's run (the embedded
    suite's ``internals``): a module with these names."""

    NAME: str  # the key of its section in the suite's report
    GROUPS: list[str]  # what --only takes
    PROFILES: dict[str, dict[str, Any]]  # merged into the suite's profiles

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def configure(self, cfg: dict[str, Any], args: argparse.Namespace) -> None:
        """Apply its command-line overrides to the run's configuration."""

    def planned_steps(self, cfg: dict[str, Any], groups: list[str]) -> int: ...

    def measure(self, run: Run, groups: list[str]) -> dict[str, Any]: ...


class Suite(Protocol):
    """A benchmark suite: a module with these names, listed in
    ``bench/__main__.py``'s table."""

    NAME: str  # its subcommand, and the key of its section in an ``all`` report
    HELP: str  # one line for ``python -m bench -h``
    GROUPS: list[str]  # what --only takes (besides its parts' groups)

    def add_arguments(self, p: argparse.ArgumentParser, standalone: bool = True) -> None:
        """Its own options; with standalone=False (inside ``all``) the names
        must not collide with another suite's."""

    def plan(self, args: argparse.Namespace, groups: list[str], parts: Sequence[Part]) -> int:
        """Progress steps the run will make (0 when it will be skipped)."""

    def measure(
        self,
        args: argparse.Namespace,
        groups: list[str],
        parts: Sequence[Part],
        plan_progress: bool = True,
    ) -> dict[str, Any] | int:
        """Run it: the report (a JSON document whose ``skipped`` says why,
        when its peers are missing), or an exit code when nothing ran."""

    def report(self, doc: dict[str, Any]) -> str:
        """The printed report of its document."""


def add_common_arguments(p: argparse.ArgumentParser, groups: Sequence[str], name: str) -> None:
    """The options every suite (and ``all``) takes."""
    p.add_argument("--quick", action="store_true", help="small sizes and short runs (< 60 s)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a handful of operations per workload: proves the suite works, measures nothing"
        " (writes a JSON report only with --json)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help=f"write results here (default bench/results/{name}[-PROFILE]-<time>.json)",
    )
    p.add_argument("--no-json", action="store_true", help="do not write a JSON report")
    p.add_argument(
        "--dir",
        default=tempfile.gettempdir(),
        help="directory on the disk where the databases and servers' data are created"
        " (default %(default)s)",
    )
    p.add_argument(
        "--pastedb-dir",
        metavar="DIR",
        help="import pastedb from DIR (e.g. a private release build) instead of the current"
        " directory; servers and probes run that build too",
    )
    p.add_argument("--only", help=f"comma-separated subset of {','.join(groups)}")


# ------------------------------------------------------------------ progress
class Progress:
    """A one-line progress bar on stderr, redrawn after every step; drawn only
    when stderr is a terminal (and the caller enabled it).  ``write`` prints a
    log line above the bar, so logs and bar do not mangle each other."""

    def __init__(self) -> None:
        self.enabled = False
        self.total = 0
        self.done = 0
        self.text = ""
        self.t0 = time.monotonic()
        self.drawn = False

    def start(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total = self.done = 0
        self.t0 = time.monotonic()

    def add_total(self, steps: int) -> None:
        self.total += steps
        self._draw()

    def label(self, text: str) -> None:
        self.text = text
        self._draw()

    def step(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def write(self, msg: str) -> None:
        self._clear()
        print(msg, file=sys.stderr, flush=True)
        self._draw()

    def finish(self) -> None:
        self._clear()
        self.enabled = False

    def _clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn = False

    def _draw(self) -> None:
        if not self.enabled or self.total <= 0:
            return

        frac = min(1.0, self.done / self.total)
        el = time.monotonic() - self.t0
        eta = f", ~{_mmss(el * (1 - frac) / frac)} left" if frac > 0.02 else ""
        bar = "#" * int(frac * 24)
        line = f"[{bar:<24}] {frac * 100:3.0f}% {_mmss(el)}{eta}  {self.text}"
        cols = shutil.get_terminal_size((100, 20)).columns
        sys.stderr.write("\r\x1b[K" + line[: max(10, cols - 1)])
        sys.stderr.flush()
        self.drawn = True


def _mmss(s: float) -> str:
    return f"{int(s) // 60}:{int(s) % 60:02d}"


progress = Progress()
"""The process-wide bar: ``interleave`` steps it; suites add their planned steps."""


RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def default_json_path(suite: str, profile: str = "full") -> str:
    """One file per run: bench/results/<suite>[-<profile>]-<date>T<time>.json."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    tag = suite if profile == "full" else f"{suite}-{profile}"
    return os.path.join(RESULTS_DIR, f"{tag}-{stamp}.json")


def _clean(o: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def write_json(path: str, doc: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_clean(doc), f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
