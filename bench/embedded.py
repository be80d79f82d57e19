"""Embedded API: pastedb against LMDB, same durability, same run.

LMDB is py-lmdb with its defaults spelled out (sync=True, metasync=True,
writemap=False) and one write transaction per durable put, so both engines
acknowledge a put only once it survives power loss.  Repetitions interleave
(pastedb, lmdb, pastedb, lmdb, ...); the table shows medians over
repetitions, the ratio pastedb/lmdb of the medians, and the min-max of the
per-pair ratios as a noise gauge.

Workloads
  1. durable 1 KiB put, 1 thread            ops/s, p50/p99 latency
  2. durable 1 KiB put, 8 threads           total ops/s (each thread its own keys;
                                            LMDB: 8 threads, txn per put -- it
                                            serialises writers, that is the comparison)
  3. batched 1 KiB puts, chunk of 1000       pastedb: db.batch() per chunk;
                                            LMDB: one txn per chunk; keys in
                                            ascending and in random order
  4. random get of 1 KiB values over N keys  one LMDB read txn for the whole loop
  5. ordered scan over all N keys            items() / cursor iternext
  6. mixed 50/50 get/durable put, 1 and 8 threads (LMDB: a read txn per get)
  7. durable single-thread put, value sizes 64 B .. 1 MiB
  8. pastedb against itself (bench/internals.py, a part that bench/__main__.py
     runs inside this suite's run; groups index, open, space):
     durable put latency with index="lazy" vs index="eager" into 1M keys,
     open time after a clean close and after kill -9, space after overwrites
and the physical limits of this machine measured in the same run: one
fdatasync after a 4 KiB pwrite overwrite, one fdatasync after a 1 KiB store
through a MAP_SHARED mapping (the path pastedb's bytes take), both sampled
before every workload and beside every durable-put repetition, and memcpy
bandwidth.  The durable 1 KiB put p50 is reported as a multiple of both.

Every repetition of a write workload starts from a fresh database (in a
temporary directory under --dir, deleted afterwards) and is warmed up first.
The 1 KiB point of the size sweep is workload 1 (not measured twice).

Measuring a release build while the working tree holds a debug build (or
half-finished edits): snapshot a commit and point --pastedb-dir at it,

    mkdir /tmp/pdb && git rev-parse HEAD > /tmp/pdb/SOURCE_COMMIT
    git archive HEAD cython pastedb setup.py pyproject.toml | tar -x -C /tmp/pdb
    (cd /tmp/pdb && python setup.py build_ext --inplace)
    python -m bench embedded --pastedb-dir /tmp/pdb
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench import render
from bench.common import (
    KiB,
    Metric,
    MiB,
    Part,
    Run,
    Workload,
    fdatasync_mapped_samples,
    fdatasync_samples,
    git_revision,
    interleave,
    latency_summary_us,
    machine_description,
    median,
    memcpy_gbps,
    now_ns,
    pastedb_build,
    pastedb_versions,
    percentile,
    profile_of,
    progress,
    run_timed_threads,
    summary_us,
    use_pastedb_dir,
)

NAME = "embedded"
HELP = "embedded API against LMDB (durable puts, batches, gets, scans, mixed, sizes)"
ENGINES = ["pastedb", "lmdb"]
LMDB_MAP_SIZE = 16 << 30  # sparse; large enough for every workload here

# Minimum pastedb/lmdb ratios the issue asks for.
# The issue's minimum pastedb/LMDB ratios ("the embedded write and read paths
# at the machine's limit").
TARGET_PUT_1T = 2.5
TARGET_PUT_8T = 10.0
TARGET_GET = 1.5
TARGET_SCAN = 1.0
TARGET_BATCH = {"random": 1.5, "seq": 1.0}

PROFILES: dict[str, dict[str, Any]] = {
    # a handful of operations per workload: proves the suite runs, says nothing about speed
    "smoke": {
        "reps": 1,
        "duration_s": 0.02,
        "warmup_s": 0.005,
        "batch_n": 2_000,
        "batch_chunk": 500,
        "batch_reps": 1,
        "read_n": [1_000],  # one random-get and one scan workload per size
        "lookups": 2_000,
        "mixed_keys": 200,
        "sizes": [64, 1 * KiB, 256 * KiB],
        "sync_probe_start": 4,
        "sync_probe_burst": 2,
        "threads": 8,
    },
    # < 60 s on the 2-core dev VM
    "quick": {
        "reps": 3,
        "duration_s": 0.25,
        "warmup_s": 0.05,
        "batch_n": 20_000,
        "batch_chunk": 1000,
        "batch_reps": 3,
        "read_n": [10_000],
        "lookups": 50_000,
        "mixed_keys": 2_000,
        "sizes": [64, 1 * KiB, 16 * KiB, 256 * KiB, 1 * MiB],
        "sync_probe_start": 40,
        "sync_probe_burst": 8,
        "threads": 8,
    },
    # < 12 min on the 2-core dev VM (the 1M-key reads and bench/internals.py ~4 of them)
    "full": {
        "reps": 9,
        "duration_s": 0.8,
        "warmup_s": 0.2,
        "batch_n": 200_000,
        "batch_chunk": 1000,
        "batch_reps": 3,
        "read_n": [100_000, 1_000_000],
        "lookups": 200_000,
        "mixed_keys": 10_000,
        "sizes": [64, 1 * KiB, 16 * KiB, 256 * KiB, 1 * MiB],
        "sync_probe_start": 100,
        "sync_probe_burst": 20,
        "threads": 8,
    },
}

GROUPS = ["put1", "put8", "batch", "read", "mixed", "sizes"]  # + those of its parts


# ====================================================================== engines
class PastedbHandle:
    """pastedb opened with sync=True: put returns once the write is durable."""

    name = "pastedb"

    def __init__(self, path: str, persist: str) -> None:
        import pastedb

        self.db = pastedb.open(path, sync=True, persist=persist)
        self.put = self.db.put
        self.get_one = self.db.get

    def put_batch(self, keys: list[bytes], value: bytes) -> None:
        with self.db.batch() as b:
            put = b.put
            for k in keys:
                put(k, value)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[[bytes], bytes | None]]:
        yield self.db.get

    @contextlib.contextmanager
    def scanner(self) -> Iterator[Iterator[tuple[bytes, bytes]]]:
        yield iter(self.db.items())

    def count(self) -> int:
        return len(self.db)

    def counters(self) -> dict[str, int]:
        st = self.db.stats()
        return {"barriers": st["barriers"], "commit_groups": st["commit_groups"]}

    def close(self) -> None:
        self.db.close()


class LmdbHandle:
    """py-lmdb with its durable defaults; one write transaction per put."""

    name = "lmdb"

    def __init__(self, path: str) -> None:
        import lmdb

        self.env = lmdb.open(
            path,
            map_size=LMDB_MAP_SIZE,
            sync=True,
            metasync=True,
            writemap=False,
            max_readers=126,
        )
        self.begin = self.env.begin

    def put(self, key: bytes, value: bytes) -> None:
        with self.begin(write=True) as txn:
            txn.put(key, value)

    def get_one(self, key: bytes) -> bytes | None:
        with self.begin() as txn:
            return txn.get(key)

    def put_batch(self, keys: list[bytes], value: bytes) -> None:
        with self.begin(write=True) as txn:
            put = txn.put
            for k in keys:
                put(k, value)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[[bytes], bytes | None]]:
        with self.begin() as txn:
            yield txn.get

    @contextlib.contextmanager
    def scanner(self) -> Iterator[Iterator[tuple[bytes, bytes]]]:
        with self.begin() as txn:
            yield txn.cursor().iternext(keys=True, values=True)

    def count(self) -> int:
        return int(self.env.stat()["entries"])

    def counters(self) -> None:
        return None

    def close(self) -> None:
        self.env.close()


Handle = PastedbHandle | LmdbHandle


# ====================================================================== run context
def open_engine(run: Run, engine: str, path: str) -> Handle:
    if engine == "pastedb":
        return PastedbHandle(path, run.args.persist)
    return LmdbHandle(path)


def record(run: Run, w: Workload, started: float) -> None:
    """Keep a measured workload and say what it found."""
    w.seconds = time.monotonic() - started
    run.workloads.append(w)
    m = w.metrics[0]
    run.log(
        f"{w.title}: pastedb {render.fmt_num(w.med('pastedb', m.key))}, lmdb "
        f"{render.fmt_num(w.med('lmdb', m.key))} {m.label} -> {w.ratio(m.key):.2f}x"
        f"  ({w.seconds:.1f}s)"
    )


@contextlib.contextmanager
def fresh(run: Run, engine: str, tag: str) -> Iterator[Handle]:
    path = run.fresh_dir(f"{tag}-{engine}")
    h = open_engine(run, engine, path)
    try:
        yield h
    finally:
        h.close()
        shutil.rmtree(path, ignore_errors=True)


def size_label(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


# ====================================================================== workloads
def durable_put(
    run: Run, wid: str, title: str, nthreads: int, vsize: int, metrics: list[Metric]
) -> Workload:
    started = time.monotonic()
    cfg = run.cfg
    run.probe_sync(cfg["sync_probe_burst"])
    value = os.urandom(vsize)

    def make(h: Handle, tid: int, prefix: bytes) -> Callable[[int], list[int]]:
        put = h.put

        def worker(deadline: int) -> list[int]:
            lat: list[int] = []
            i = 0
            while True:
                k = b"%s%02d-%012d" % (prefix, tid, i)
                t = now_ns()
                if t >= deadline:
                    return lat
                put(k, value)
                lat.append(now_ns() - t)
                i += 1

        return worker

    near_sync: list[int] = []
    near_mapped: list[int] = []

    def one(engine: str, rep: int) -> dict[str, float]:
        # a few barrier samples right beside every repetition: the disk's
        # speed drifts, so the put latency is compared with the barrier cost
        # of the same moment
        near_sync.extend(fdatasync_samples(run.base, 4))
        near_mapped.extend(fdatasync_mapped_samples(run.base, 2))
        with fresh(run, engine, wid) as h:
            run_timed_threads([make(h, t, b"w") for t in range(nthreads)], cfg["warmup_s"])
            c0 = h.counters()
            elapsed, lat = run_timed_threads(
                [make(h, t, b"k") for t in range(nthreads)], cfg["duration_s"]
            )
            c1 = h.counters()
            n = len(lat)
            if h.get_one(b"k00-000000000000") != value:
                raise AssertionError(f"{engine}: first durable put not readable")
            res = {
                "ops_s": n / (elapsed / 1e9),
                "MB_s": n * vsize / (elapsed / 1e3),
                "ops": n,
                "elapsed_s": elapsed / 1e9,
                **latency_summary_us(lat),
            }
            if c0 is not None and c1 is not None:
                barriers = c1["barriers"] - c0["barriers"]
                res["barriers"] = barriers
                res["ops_per_barrier"] = n / barriers if barriers else float("nan")
            return res

    w = Workload(
        id=wid,
        title=title,
        params={
            "threads": nthreads,
            "value_bytes": vsize,
            "key_bytes": 16,
            "duration_s": cfg["duration_s"],
            "warmup_s": cfg["warmup_s"],
            "reps": cfg["reps"],
            "lmdb": "txn per put",
        },
        metrics=metrics,
        engines=ENGINES,
    )
    w.reps = interleave(cfg["reps"], ENGINES, one, title)
    run.sync_ns.extend(near_sync)
    run.sync_mapped_ns.extend(near_mapped)
    w.extra["fdatasync_4k_pwrite_us_during"] = summary_us(near_sync)
    w.extra["fdatasync_1k_mapped_store_us_during"] = summary_us(near_mapped)
    record(run, w, started)
    return w


def batched_put(run: Run, order: str) -> Workload:
    started = time.monotonic()
    cfg = run.cfg
    run.probe_sync(cfg["sync_probe_burst"])
    n, chunk = cfg["batch_n"], cfg["batch_chunk"]
    value = os.urandom(1 * KiB)
    keys = [b"b%015d" % i for i in range(n)]
    if order == "random":
        random.Random(1).shuffle(keys)
    chunks = [keys[i : i + chunk] for i in range(0, n, chunk)]
    warm = [b"a%015d" % i for i in range(chunk)]

    def one(engine: str, rep: int) -> dict[str, float]:
        with fresh(run, engine, f"batch-{order}") as h:
            h.put_batch(warm, value)
            put_batch = h.put_batch
            t = now_ns()
            for c in chunks:
                put_batch(c, value)
            elapsed = now_ns() - t
            if h.count() != n + len(warm):
                raise AssertionError(
                    f"{engine}: {h.count()} keys after batched load, expected {n + len(warm)}"
                )
            return {
                "ops_s": n / (elapsed / 1e9),
                "MB_s": n * len(value) / (elapsed / 1e3),
                "elapsed_s": elapsed / 1e9,
            }

    w = Workload(
        id=f"batch_put_{order}",
        title=f"batched put {n:,} x 1 KiB, {chunk}/batch, {'ascending' if order == 'seq' else 'random'} keys",
        params={
            "n": n,
            "chunk": chunk,
            "value_bytes": 1 * KiB,
            "key_order": order,
            "reps": cfg["batch_reps"],
            "pastedb": "db.batch() per chunk (one durable commit each)",
            "lmdb": "one write txn per chunk",
        },
        metrics=[Metric("ops_s", "puts/s", target=TARGET_BATCH[order]), Metric("MB_s", "MB/s")],
        engines=ENGINES,
    )
    w.reps = interleave(cfg["batch_reps"], ENGINES, one, w.title)
    record(run, w, started)
    return w


def reads(run: Run, n: int, suffix: str = "") -> list[Workload]:
    """Random gets and an ordered scan over the same two databases of n keys,
    loaded once (keys in random order, 1 KiB values) and warmed up.  The
    workload ids get ``suffix`` (the first size of the profile has none)."""
    started = time.monotonic()
    cfg = run.cfg
    run.probe_sync(cfg["sync_probe_burst"])
    value = os.urandom(1 * KiB)
    keys = [b"g%015d" % i for i in range(n)]
    load = list(keys)
    random.Random(2).shuffle(load)
    lookups = random.Random(3).choices(keys, k=cfg["lookups"])

    handles: dict[str, Handle] = {}
    paths: dict[str, str] = {}
    try:
        for e in ENGINES:
            paths[e] = run.fresh_dir(f"reads-{e}")
            h = handles[e] = open_engine(run, e, paths[e])
            for i in range(0, n, 1000):
                h.put_batch(load[i : i + 1000], value)
                if i % 100_000 == 0:  # loading 1M keys may outlast the hang watchdog
                    run.rearm()
            if h.count() != n:
                raise AssertionError(f"{e}: {h.count()} keys loaded, expected {n}")
            # warm-up: touch every key and value once, then some lookups
            with h.scanner() as it:
                for _ in it:
                    pass
            with h.reader() as get:
                for k in lookups[: len(lookups) // 10]:
                    get(k)
        load_s = time.monotonic() - started

        def get_one_rep(engine: str, rep: int) -> dict[str, float]:
            with handles[engine].reader() as get:
                misses = 0
                t = now_ns()
                for k in lookups:
                    if get(k) is None:
                        misses += 1
                elapsed = now_ns() - t
            if misses:
                raise AssertionError(f"{engine}: {misses} lookups missed")
            return {
                "ops_s": len(lookups) / (elapsed / 1e9),
                "mean_us": elapsed / len(lookups) / 1e3,
            }

        def scan_one_rep(engine: str, rep: int) -> dict[str, float]:
            t = now_ns()
            with handles[engine].scanner() as it:
                count = 0
                for _k, _v in it:
                    count += 1
            elapsed = now_ns() - t
            if count != n:
                raise AssertionError(f"{engine}: scan returned {count} keys, expected {n}")
            return {"keys_s": count / (elapsed / 1e9), "MB_s": count * len(value) / (elapsed / 1e3)}

        wg = Workload(
            id=f"get_random{suffix}",
            title=f"random get, 1 KiB values, {n:,} keys",
            params={
                "n": n,
                "lookups": len(lookups),
                "value_bytes": 1 * KiB,
                "reps": cfg["reps"],
                "load_order": "random",
                "lmdb": "one read txn for the whole loop",
            },
            metrics=[Metric("ops_s", "gets/s", target=TARGET_GET)],
            engines=ENGINES,
        )
        t_get = time.monotonic()
        wg.reps = interleave(cfg["reps"], ENGINES, get_one_rep, wg.title)
        wg.notes.append(f"load + warm-up of both databases took {load_s:.1f}s (not timed)")
        record(run, wg, t_get)

        ws = Workload(
            id=f"scan_ordered{suffix}",
            title=f"ordered scan, {n:,} keys x 1 KiB",
            params={
                "n": n,
                "value_bytes": 1 * KiB,
                "reps": cfg["reps"],
                "pastedb": "db.items()",
                "lmdb": "txn.cursor().iternext()",
            },
            metrics=[Metric("keys_s", "keys/s", target=TARGET_SCAN)],
            engines=ENGINES,
        )
        t_scan = time.monotonic()
        ws.reps = interleave(cfg["reps"], ENGINES, scan_one_rep, ws.title)
        record(run, ws, t_scan)
    finally:
        for e, h in handles.items():
            h.close()
            shutil.rmtree(paths[e], ignore_errors=True)
    return [wg, ws]


def mixed(run: Run, nthreads: int) -> Workload:
    started = time.monotonic()
    cfg = run.cfg
    run.probe_sync(cfg["sync_probe_burst"])
    m = cfg["mixed_keys"]
    value = os.urandom(1 * KiB)
    keys = [b"m%015d" % i for i in range(m)]

    def plan(tid: int) -> list[tuple[bool, bytes]]:
        # 50/50: a get of any key, or a durable overwrite of one of this thread's own keys
        rng = random.Random(100 + tid)
        own = keys[tid::nthreads]
        return [
            (True, rng.choice(keys)) if rng.random() < 0.5 else (False, rng.choice(own))
            for _ in range(4096)
        ]

    plans = [plan(t) for t in range(nthreads)]

    def one(engine: str, rep: int) -> dict[str, float]:
        with fresh(run, engine, f"mixed{nthreads}") as h:
            for i in range(0, m, 1000):
                h.put_batch(keys[i : i + 1000], value)
            get_lat: list[list[int]] = [[] for _ in range(nthreads)]
            put_lat: list[list[int]] = [[] for _ in range(nthreads)]
            misses = [0]

            def make(tid: int, record: bool) -> Callable[[int], list[int]]:
                ops = plans[tid]
                put, get = h.put, h.get_one
                gl, pl = get_lat[tid], put_lat[tid]

                def worker(deadline: int) -> list[int]:
                    lat: list[int] = []
                    i = 0
                    while True:
                        is_get, k = ops[i & 4095]
                        t = now_ns()
                        if t >= deadline:
                            return lat
                        if is_get:
                            v = get(k)
                            d = now_ns() - t
                            if v is None:
                                misses[0] += 1
                            if record:
                                gl.append(d)
                        else:
                            put(k, value)
                            d = now_ns() - t
                            if record:
                                pl.append(d)
                        lat.append(d)
                        i += 1

                return worker

            run_timed_threads([make(t, False) for t in range(nthreads)], cfg["warmup_s"])
            elapsed, lat = run_timed_threads(
                [make(t, True) for t in range(nthreads)], cfg["duration_s"]
            )
            if misses[0]:
                raise AssertionError(f"{engine}: {misses[0]} gets missed")
            gets = sorted(x for g in get_lat for x in g)
            puts = sorted(x for p in put_lat for x in p)
            return {
                "ops_s": len(lat) / (elapsed / 1e9),
                "gets": len(gets),
                "puts": len(puts),
                "get_p50_us": percentile(gets, 50) / 1e3,
                "put_p50_us": percentile(puts, 50) / 1e3,
                "put_p99_us": percentile(puts, 99) / 1e3,
            }

    w = Workload(
        id=f"mixed_{nthreads}t",
        title=f"mixed 50/50 get/durable put, {nthreads} thread{'s' if nthreads > 1 else ''}",
        params={
            "threads": nthreads,
            "keys": m,
            "value_bytes": 1 * KiB,
            "duration_s": cfg["duration_s"],
            "reps": cfg["reps"],
            "writes": "overwrite of the thread's own keys",
            "lmdb": "read txn per get, write txn per put",
        },
        metrics=[Metric("ops_s", "ops/s")],
        engines=ENGINES,
    )
    w.reps = interleave(cfg["reps"], ENGINES, one, w.title)
    record(run, w, started)
    return w


# ====================================================================== driver
def add_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Its options (the same inside ``all``)."""
    p.add_argument("--persist", default="auto", help="pastedb persist= backend (default auto)")
    p.add_argument("--reps", type=int, help="repetitions per engine (overrides the profile)")
    p.add_argument(
        "--duration",
        type=float,
        help="seconds per timed durable repetition (overrides the profile)",
    )
    p.add_argument(
        "--hang-timeout",
        type=float,
        help="seconds one workload may take before every thread's stack is dumped and the run"
        " aborts (default 60 with --quick, else 300)",
    )
    p.add_argument(
        "--read-keys",
        metavar="N[,N...]",
        help="database sizes of the random-get and scan workloads (default: the profile's;"
        " the full run measures 100000,1000000)",
    )


def config(args: argparse.Namespace, parts: Sequence[Part]) -> dict[str, Any]:
    """The profile's configuration (its parts' included), after the options."""
    profile = profile_of(args)
    cfg = dict(PROFILES[profile])
    for part in parts:
        cfg.update(part.PROFILES[profile])
    if args.reps:
        cfg["reps"] = args.reps
        cfg["batch_reps"] = min(cfg["batch_reps"], args.reps)
    if args.duration:
        cfg["duration_s"] = args.duration
    if args.read_keys:
        cfg["read_n"] = [int(x.replace("_", "")) for x in args.read_keys.split(",") if x.strip()]
    for part in parts:
        part.configure(cfg, args)
    return cfg


def versions() -> dict[str, Any]:
    import lmdb

    bench_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {
        **pastedb_versions(),
        "bench_git": git_revision(bench_repo),
        "py_lmdb": lmdb.__version__,
        "lmdb_c": ".".join(str(x) for x in lmdb.version()[:3]),
        "py_lmdb_binding": lmdb.Environment.__module__,
    }


def pastedb_backend(base: str, persist: str) -> dict[str, Any]:
    """Which persistence backend pastedb picks on this file system."""
    path = os.path.join(base, "backend-probe")
    h = PastedbHandle(path, persist)
    try:
        st = h.db.stats()
        return {k: st.get(k) for k in ("persist", "map_sync", "crc32c")}
    finally:
        h.close()
        shutil.rmtree(path, ignore_errors=True)


def planned_steps(cfg: dict[str, Any], groups: list[str]) -> int:
    """Repetitions (one engine each) the run will make: the progress bar's length."""
    r, br = cfg["reps"] * len(ENGINES), cfg["batch_reps"] * len(ENGINES)
    per = {"put1": r, "put8": r, "batch": 2 * br, "read": 2 * r * len(cfg["read_n"])}
    per["mixed"] = 2 * r
    sizes = [x for x in cfg["sizes"] if not (x == 1 * KiB and "put1" in groups)]
    per["sizes"] = len(sizes) * r
    return sum(per[g] for g in groups if g in per)


def plan(args: argparse.Namespace, groups: list[str], parts: Sequence[Part]) -> int:
    cfg = config(args, parts)
    return planned_steps(cfg, groups) + sum(p.planned_steps(cfg, groups) for p in parts)


def report(doc: dict[str, Any]) -> str:
    return render.embedded_text(doc)


def measure(
    args: argparse.Namespace,
    groups: list[str],
    parts: Sequence[Part] = (),
    plan_progress: bool = True,
) -> dict[str, Any] | int:
    """Run the embedded workloads, then those of its parts; the JSON document,
    or an exit code when nothing could run."""
    use_pastedb_dir(args)
    try:
        import lmdb  # noqa: F401

        import pastedb  # noqa: F401
    except ImportError as exc:
        print(
            f"cannot import {exc.name}: run from the repository root after "
            "`python setup.py build_ext --inplace`; LMDB needs `pip install lmdb`",
            file=sys.stderr,
        )
        return 2

    profile = profile_of(args)
    cfg = config(args, parts)
    if args.hang_timeout is None:
        args.hang_timeout = 60.0 if profile != "full" else 300.0

    os.makedirs(args.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="pastedb-bench-", dir=args.dir)
    machine = machine_description(base)
    machine["pastedb_backend"] = pastedb_backend(base, args.persist)
    build = pastedb_build()
    if build["debug_build_suspected"]:
        print(
            f"WARNING: pastedb modules {', '.join(build['debug_build_suspected'])} look like a PASTEDB_DEBUG "
            "(line-tracing) build; their numbers do not represent a release build",
            file=sys.stderr,
        )
    run = Run(args, cfg, base, hang_timeout=args.hang_timeout)
    if plan_progress:
        progress.add_total(plan(args, groups, parts))
    sections: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        run.log(
            f"profile {profile}; databases under {base} ({machine['filesystem'].get('type', '?')})"
        )
        # physical limits first, with bursts of fdatasync samples before every workload
        mc_big = memcpy_gbps(64 * MiB, 5)
        mc_small = memcpy_gbps(256 * KiB, 200)
        run.probe_sync(cfg["sync_probe_start"])
        run.log(
            f"fdatasync p50 {median(run.sync_ns) / 1e3:.0f} us after a pwrite, "
            f"{median(run.sync_mapped_ns) / 1e3:.0f} us after a mapped store; "
            f"memcpy 64 MiB {median(mc_big):.1f} GB/s"
        )

        put1 = None
        if "put1" in groups:
            put1 = durable_put(
                run,
                "put_durable_1t",
                "durable put 1 KiB, 1 thread",
                1,
                1 * KiB,
                [
                    Metric("ops_s", "puts/s", target=TARGET_PUT_1T),
                    Metric("p50_us", "p50 us (lower better)", higher_is_better=False),
                    Metric("p99_us", "p99 us (lower better)", higher_is_better=False),
                ],
            )
        if "put8" in groups:
            durable_put(
                run,
                "put_durable_8t",
                f"durable put 1 KiB, {cfg['threads']} threads",
                cfg["threads"],
                1 * KiB,
                [
                    Metric("ops_s", "puts/s", target=TARGET_PUT_8T),
                    Metric("p50_us", "p50 us (lower better)", higher_is_better=False),
                ],
            )
        if "batch" in groups:
            batched_put(run, "seq")
            batched_put(run, "random")
        if "read" in groups:
            for i, n in enumerate(cfg["read_n"]):
                reads(run, n, "" if i == 0 else f"_{n}")
        if "mixed" in groups:
            mixed(run, 1)
            mixed(run, cfg["threads"])
        if "sizes" in groups:
            for size in cfg["sizes"]:
                if size == 1 * KiB and put1 is not None:
                    # the same measurement as workload 1; not repeated
                    continue
                durable_put(
                    run,
                    f"put_durable_1t_{size}",
                    f"durable put {size_label(size)}, 1 thread",
                    1,
                    size,
                    [
                        Metric("ops_s", "puts/s"),
                        Metric("MB_s", "MB/s"),
                        Metric("p50_us", "p50 us (lower better)", higher_is_better=False),
                    ],
                )
        for part in parts:
            sections[part.NAME] = part.measure(run, groups)
        run.probe_sync(cfg["sync_probe_start"] // 2)
        mc_big += memcpy_gbps(64 * MiB, 5)
        mc_small += memcpy_gbps(256 * KiB, 200)
    finally:
        faulthandler.cancel_dump_traceback_later()
        shutil.rmtree(base, ignore_errors=True)
    total_s = time.monotonic() - t_start
    machine["loadavg_end"] = list(os.getloadavg())

    physical: dict[str, Any] = {
        "fdatasync_4k_pwrite_overwrite_us": summary_us(run.sync_ns),
        "fdatasync_1k_mapped_store_us": summary_us(run.sync_mapped_ns),
        "memcpy_gbps": {
            "64MiB_median": median(mc_big),
            "64MiB_best": max(mc_big),
            "256KiB_median": median(mc_small),
            "256KiB_best": max(mc_small),
        },
    }
    if put1 is not None:
        # against the barrier samples taken beside workload 1's repetitions
        near = put1.extra["fdatasync_4k_pwrite_us_during"]["p50"]
        near_m = put1.extra["fdatasync_1k_mapped_store_us_during"]["p50"]
        physical["durable_put_1k_p50_over_fdatasync_p50"] = {
            "fdatasync_4k_pwrite_p50_us": near,
            "fdatasync_1k_mapped_store_p50_us": near_m,
            **{f"{e}_x_pwrite_fdatasync": put1.med(e, "p50_us") / near for e in ENGINES},
            **{f"{e}_x_mapped_fdatasync": put1.med(e, "p50_us") / near_m for e in ENGINES},
        }

    return {
        "suite": "embedded",
        "profile": profile,
        "config": cfg,
        "dir": args.dir,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - total_s)),
        "total_seconds": round(total_s, 1),
        "machine": machine,
        "versions": versions(),
        "pastedb_build": build,
        "engines": {
            "pastedb": {"open": f"pastedb.open(dir, sync=True, persist={args.persist!r})"},
            "lmdb": {
                "open": "lmdb.open(dir, map_size=16 GiB, sync=True, metasync=True, writemap=False)",
                "durable_put": "one write txn per put",
            },
        },
        "physical": physical,
        "workloads": [w.to_json() for w in run.workloads],
        # its parts' sections: "internals" (pastedb against itself: index, open, space)
        **sections,
    }
