"""Shared benchmark machinery.

- timing: every timed block reads ``time.perf_counter_ns`` (``now_ns``);
- ``run_timed_threads``: N threads released together by a barrier, each
  running until a shared deadline; elapsed time runs from the release to the
  last thread's return, so an operation still in flight at the deadline is
  counted and its time is included;
- ``interleave``: repetitions of every engine alternate (A B A B ...) so that
  drift on a shared, noisy machine lands on both engines alike;
- ``Workload``: per-repetition metrics of every engine, medians, ratios;
- physical limits measured in the same run (fdatasync of a 4 KiB overwrite,
  memcpy bandwidth) and a machine description;
- the printed table (plain text or Markdown) and the JSON report, which
  ``Workload.from_json`` reads back for ``python -m bench render``;
- ``progress``: a one-line progress bar on stderr, drawn only on a terminal.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

now_ns = time.perf_counter_ns


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


# ------------------------------------------------------------------ output
def fmt_num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"


def render_table(
    workloads: Sequence[Workload],
    labels: dict[str, str] | None = None,
    extra_ratios: Sequence[tuple[str, str, str]] = (),
    extra_engines: Sequence[str] = (),
    markdown: bool = False,
) -> str:
    """One row per metric: the medians of the first two engines, their ratio
    (the one judged against the target), the spread of the per-pair ratios,
    the target and whether it is met; then any ``extra_ratios`` (numerator
    engine, denominator engine, column label) and the medians of
    ``extra_engines``.  The engines of the first workload name the columns;
    ``labels`` renames engines in the header."""
    if not workloads:
        return ""
    labels = labels or {}
    a, b = workloads[0].engines[:2]
    la, lb = labels.get(a, a), labels.get(b, b)
    header = ["workload", "metric", la, lb, f"{la}/{lb}", "pairs min-max", "target", "met?"]
    header += [lab for _n, _d, lab in extra_ratios]
    header += [labels.get(e, e) for e in extra_engines]
    rows: list[list[str]] = []
    for w in workloads:
        for i, m in enumerate(w.metrics):
            r = w.ratio(m.key)
            pr = w.pair_ratios(m.key)
            met = m.met(r)
            rows.append(
                [
                    w.title if i == 0 else "",
                    m.label,
                    fmt_num(w.med(w.engines[0], m.key)),
                    fmt_num(w.med(w.engines[1], m.key)),
                    fmt_ratio(r),
                    f"{min(pr):.2f}-{max(pr):.2f}" if pr else "-",
                    m.target_text(),
                    "-" if met is None else ("yes" if met else "NO"),
                ]
                + [fmt_ratio(w.ratio_of(n, d, m.key)) for n, d, _lab in extra_ratios]
                + [fmt_num(w.med(e, m.key)) for e in extra_engines]
            )
    if markdown:
        return _markdown(header, rows)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
    left = {0, 1}

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    rule = "-+-".join("-" * x for x in widths)
    out = [line(header), rule]
    prev = None
    for owner, cells in zip(_row_owners(workloads), rows, strict=True):
        if prev is not None and owner is not prev:
            out.append(rule)
        out.append(line(cells))
        prev = owner
    return "\n".join(out)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(esc(h) for h in header) + " |"]
    out.append("| " + " | ".join("---" for _ in header) + " |")
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_rows(
    header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False
) -> str:
    """A plain table of strings (first column left-aligned, the rest right-aligned)."""
    if markdown:
        return _markdown(header, rows)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    return "\n".join([line(header), "-+-".join("-" * x for x in widths), *map(line, rows)])


def _row_owners(workloads: Sequence[Workload]) -> list[Workload]:
    return [w for w in workloads for _ in w.metrics]


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
        import shutil

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
