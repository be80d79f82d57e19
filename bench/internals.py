"""pastedb against itself: lazy vs eager indexing, checkpoint stalls, open time, space after overwrite.

    python -m bench embedded --only index,stall,open,space [--quick | --smoke]
                             [--index-keys N] [--space-keys N]

Part of the embedded suite (its groups ``index``, ``open`` and ``space``), but
with no LMDB peer: each compares pastedb with itself or with an absolute
target, measured in the same run.  It is a ``Part`` (bench/common.py):
bench/__main__.py hands it to the embedded suite, which runs it inside its
own ``Run``; like every suite module it imports only bench.common and
bench.render (which prints its section).

index  Per-put latency (p50, p99, p999, mean; ``time.perf_counter_ns`` around
       each ``db.put``) of 1 KiB puts with random 16-byte keys, 1 thread,
       into a database that already holds N keys (N = 1,000,000 in the full
       run; loaded with sync=False in batches of 1000, then ``checkpoint()``
       and a clean close, so the B-tree holds them all and nothing is
       pending).  ``index="lazy"`` (the B-tree is brought up to date by a
       background indexer) against ``index="eager"`` (the ablation: the tree
       is updated on the put path), repetitions interleaved (lazy, eager,
       lazy, ...), both on the same database, which every repetition reopens
       with its mode.  A repetition's keys are deleted again after it
       (untimed), so each one starts at N keys.  Twice: sync=True (durable
       puts, the target: lazy p99 / eager p99 <= 0.5) and sync=False (the
       in-memory path, where the indexing cost is least hidden by the
       barrier).  Also recorded: entries still pending when the timed puts
       end and the time of the ``checkpoint()`` right after them (which pays
       the indexing the lazy mode deferred).
stall  Do checkpoints stall writers?  Durable 1 KiB puts, 1 thread, into
       the same database (N keys in the tree) with the background
       indexer's checkpoints off: a table of P pending entries is loaded
       (batches of 1000), then "checkpointing" times every put made while
       a ``checkpoint()`` in another thread applies those P entries to the
       N-key tree and commits it, and "quiet" times as many puts with the
       same pending table and no checkpoint running.  Repetitions
       interleaved; their keys deleted afterwards.  Target: p99 during /
       p99 without <= 1.3; p50, p999 and max reported.
open   ``pastedb.open()`` + the first ``get`` of an existing key, timed inside
       a fresh ``python -c`` process per open (so the page cache is as a real
       restart finds it: warm, nothing dropped), on a database of N keys:
       after a clean close (median of several; target < 0.2 s at 1M keys),
       and after a child wrote K more keys with sync=True (batches of 100)
       after the last checkpoint and then SIGKILLed itself, for several K.
       The child reports ``stats()["index_pending"]`` just before the kill
       (the background indexer may have applied part of the tail already),
       the reopened database ``stats()["recovered_records"]``.  After each
       timed open the probe deletes the child's keys, checkpoints and
       closes (untimed), so the next tail again starts at a checkpoint.
space  N keys x 1 KiB written, every key rewritten 10 times (batches of
       1000), then ``checkpoint()`` (and ``compact()`` where the engine has
       it): ``stats()`` live_bytes, file_bytes, space_ratio, and the files on
       disk (st_size and st_blocks * 512 of pool and index), before the
       checkpoint, after it, and after close.  Target: space_ratio <= 1.5.

Without an ``index=`` option in ``pastedb.open()`` (a build before the
persistent B-tree is wired in) the index group measures nothing and says
"lazy vs eager indexing: not available"; open and space run on any build.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.common import (
    Metric,
    Run,
    Workload,
    interleave,
    median,
    now_ns,
    pastedb_root,
    percentile,
    progress,
    server_env,
)
from bench.render import NOT_AVAILABLE_TITLE, fmt_num, fmt_ratio

KiB = 1024
MiB = 1024 * 1024
NAME = "internals"  # its section in the embedded report
GROUPS = ["index", "stall", "open", "space"]
MODES = ["lazy", "eager"]
STALL_MODES = ["checkpointing", "quiet"]  # ratio = during a checkpoint / with none

# lazy p99 / eager p99, durable puts: a measurement now, without a target (the
# issue asks instead that checkpoints never stall writers)
TARGET_LAZY_EAGER_P99: float | None = None
TARGET_STALL_P99 = 1.3  # durable put p99 while a checkpoint runs / p99 with none
TARGET_OPEN_S = 0.2  # open + first get after a clean close, seconds ...
TARGET_OPEN_KEYS = 1_000_000  # ... of a database this large (judged only at this size or more)
TARGET_SPACE_RATIO = 1.5  # stats()["space_ratio"] after the overwrites


# per profile; merged into the profiles of the suite it runs in
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "index_n": 2_000,  # keys in the database the index and open groups use
        "index_reps": 1,
        "index_puts": 100,  # timed durable puts per repetition
        "index_puts_nosync": 500,  # timed sync=False puts per repetition (0: skip)
        "index_warmup": 20,
        "stall_reps": 1,
        "stall_pending": 2_000,  # entries the measured checkpoint applies
        "open_reps": 2,
        "open_tails": [0, 100],
        "open_crash_reps": 1,
        "space_n": 500,
        "space_rewrites": 10,
    },
    "quick": {
        "index_n": 100_000,
        "index_reps": 2,
        # ~2 s of durable puts: the engine's indexer checkpoints every second,
        # and a window shorter than that catches one or none by chance
        "index_puts": 6_000,
        "index_puts_nosync": 20_000,
        "index_warmup": 200,
        "stall_reps": 2,
        "stall_pending": 50_000,
        "open_reps": 3,
        "open_tails": [0, 1_000, 10_000],
        "open_crash_reps": 1,
        "space_n": 20_000,
        "space_rewrites": 10,
    },
    "full": {
        "index_n": 1_000_000,
        "index_reps": 5,  # p99 ratios of single pairs spread widely (0.15-0.57 in one --quick run)
        "index_puts": 20_000,
        "index_puts_nosync": 200_000,
        "index_warmup": 500,
        "stall_reps": 5,
        "stall_pending": 200_000,
        "open_reps": 5,
        "open_tails": [0, 10_000, 100_000],
        "open_crash_reps": 3,
        "space_n": 100_000,
        "space_rewrites": 10,
    },
}

LOAD_CHUNK = 1000  # keys per batch when loading
TAIL_CHUNK = 100  # keys per durable batch in the crash child
STAT_KEYS = (
    "keys",
    "live_bytes",
    "file_bytes",
    "space_ratio",
    "index",
    "index_pending",
    "index_applied_lsn",
    "index_file_bytes",
    "checkpoints",
    "checkpoint_seconds",
    "space_reclaimed",
    "log_records",
    "recovered_records",
    "recovery_note",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index-keys",
        type=int,
        metavar="N",
        help="keys in the database of the index and open groups (default: 1000000 in the full"
        " run, 100000 with --quick)",
    )
    p.add_argument(
        "--space-keys",
        type=int,
        metavar="N",
        help="keys of the space group (default: 100000 in the full run, 20000 with --quick)",
    )


def configure(cfg: dict[str, Any], args: argparse.Namespace) -> None:
    if getattr(args, "index_keys", None):
        cfg["index_n"] = args.index_keys
    if getattr(args, "space_keys", None):
        cfg["space_n"] = args.space_keys


def planned_steps(cfg: dict[str, Any], groups: list[str]) -> int:
    per = {
        "index": len(MODES) * cfg["index_reps"] * (2 if cfg["index_puts_nosync"] else 1),
        "stall": len(STALL_MODES) * cfg["stall_reps"],
        "open": cfg["open_reps"] + len(cfg["open_tails"]) * cfg["open_crash_reps"],
        "space": 1,
    }
    return sum(per[g] for g in groups if g in per)


def keep_stats(st: dict[str, Any]) -> dict[str, Any]:
    return {k: st[k] for k in STAT_KEYS if k in st}


def latency_us(lat: list[int]) -> dict[str, float]:
    """p50, p99, p999 and max of latencies in ns, as us (sorts lat)."""
    lat.sort()
    return {
        "p50_us": percentile(lat, 50) / 1e3,
        "p99_us": percentile(lat, 99) / 1e3,
        "p999_us": percentile(lat, 99.9) / 1e3,
        "max_us": lat[-1] / 1e3,
    }


def latency_metrics(p99_target: float | None, last: str) -> list[Metric]:
    """p50, p99 (judged against p99_target), p999 and `last` (mean_us or max_us)."""
    return [
        Metric(k, f"{k.removesuffix('_us')} us (lower better)", higher_is_better=False,
               target=p99_target if k == "p99_us" else None)
        for k in ("p50_us", "p99_us", "p999_us", last)
    ]


def random_keys(seed: int, n: int) -> list[bytes]:
    rb = random.Random(seed).randbytes
    return [rb(16) for _ in range(n)]


# ====================================================================== feature check
def index_support(run: Run) -> tuple[bool, str]:
    """Does this pastedb build take ``index=`` in ``open()`` and report it
    in ``stats()["index"]``?  (False, why) otherwise.  Probed once per run."""
    if "index_support" in run.shared:
        return tuple(run.shared["index_support"])  # type: ignore[return-value]
    import pastedb

    path = run.fresh_dir("index-probe")
    ok, why = True, ""
    try:
        try:
            db = pastedb.open(path, persist=run.args.persist, index="eager")
        except (TypeError, ValueError) as exc:
            ok = False
            why = (
                f"pastedb.open() in this build refuses index= ({exc}): the persistent B-tree "
                "is not wired in as the index yet, so there is no lazy index to compare; "
                "every put updates the in-memory index on the put path"
            )
        else:
            try:
                got = db.stats().get("index")
                if got != "eager":
                    ok = False
                    why = f'open(index="eager") gave stats()["index"] == {got!r}'
            finally:
                db.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    run.shared["index_support"] = (ok, why)
    return ok, why


# ====================================================================== the shared database
@dataclass
class BaseDB:
    path: str
    n: int
    sample_keys: list[bytes]  # a few of its keys, for lookups
    value: bytes
    build_s: float


def base_db(run: Run, n: int) -> BaseDB:
    """One database of n random 16-byte keys x 1 KiB, loaded with sync=False
    in batches, checkpointed and closed cleanly; built once per run and
    shared by the index and open groups (each leaves it at n keys)."""
    tag = f"base-{n}"
    if tag in run.shared:
        return run.shared[tag]  # type: ignore[no-any-return]
    import pastedb

    run.rearm()
    path = run.fresh_dir(tag)
    keys = random_keys(11, n)
    value = os.urandom(1 * KiB)
    t = time.monotonic()
    db = pastedb.open(path, sync=False, persist=run.args.persist)
    try:
        for i in range(0, n, LOAD_CHUNK):
            with db.batch() as b:
                put = b.put
                for k in keys[i : i + LOAD_CHUNK]:
                    put(k, value)
        if len(db) != n:
            raise AssertionError(f"{len(db)} keys after loading {n}")
        db.checkpoint()
    finally:
        db.close()
    build_s = time.monotonic() - t
    run.log(f"built a database of {n:,} keys x 1 KiB in {build_s:.1f}s ({path})")
    step = max(1, n // 64)
    run.shared[tag] = BaseDB(path, n, keys[::step], value, build_s)
    return run.shared[tag]  # type: ignore[no-any-return]


# ====================================================================== index: lazy vs eager
def index_ablation(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    ok, why = index_support(run)
    n = cfg["index_n"]
    out: dict[str, Any] = {
        "available": ok,
        "why": why,
        "n": n,
        "target_p99_ratio": TARGET_LAZY_EAGER_P99,
        "workloads": [],
    }
    if not ok:
        run.log(f"{NOT_AVAILABLE_TITLE}: not available: {why}")
        progress.step(planned_steps(cfg, ["index"]))
        return out
    base = base_db(run, n)
    variants = [(True, cfg["index_puts"])]
    if cfg["index_puts_nosync"]:
        variants.append((False, cfg["index_puts_nosync"]))
    for sync, m in variants:
        out["workloads"].append(index_put(run, base, sync, m).to_json())
    return out


def index_put(run: Run, base: BaseDB, sync: bool, m: int) -> Workload:
    import pastedb

    started = time.monotonic()
    cfg = run.cfg
    n, value, warm_n = base.n, base.value, cfg["index_warmup"]

    def one(mode: str, rep: int) -> dict[str, float]:
        run.rearm()
        # the same keys for both modes in a repetition; new ones every repetition
        keys = random_keys(1000 + 2 * rep + int(sync), warm_n + m)
        warm, timed = keys[:warm_n], keys[warm_n:]
        t_open = now_ns()
        db = pastedb.open(base.path, sync=sync, persist=run.args.persist, index=mode)
        open_s = (now_ns() - t_open) / 1e9
        try:
            st0 = db.stats()
            if st0.get("index") != mode:
                raise AssertionError(
                    f'open(index={mode!r}) gave stats()["index"] {st0.get("index")!r}'
                )
            keys_at_start = len(db)
            if keys_at_start != n:
                raise AssertionError(f"{mode}: {keys_at_start} keys at the start, expected {n}")
            put = db.put
            for k in warm:
                put(k, value)
            lat: list[int] = []
            append = lat.append
            clock = now_ns
            t_all = clock()
            for k in timed:
                t = clock()
                put(k, value)
                append(clock() - t)
            wall = clock() - t_all
            st1 = db.stats()
            if db.get(timed[-1]) != value or db.get(base.sample_keys[0]) != value:
                raise AssertionError(f"{mode}: a key written or preloaded is not readable")
            # what the lazy mode deferred: applying the pending entries and committing
            t_cp = now_ns()
            db.checkpoint()
            checkpoint_s = (now_ns() - t_cp) / 1e9
            # untimed: back to n keys, checkpointed, for the next repetition
            for i in range(0, len(keys), LOAD_CHUNK):
                with db.batch() as b:
                    for k in keys[i : i + LOAD_CHUNK]:
                        b.delete(k)
            db.checkpoint()
        finally:
            t_close = now_ns()
            db.close()
            close_s = (now_ns() - t_close) / 1e9
        res = {
            **latency_us(lat),
            "mean_us": sum(lat) / len(lat) / 1e3,
            "ops_s": len(lat) / (wall / 1e9),
            "puts": len(lat),
            "keys_at_start": keys_at_start,
            "open_s": open_s,
            "checkpoint_after_s": checkpoint_s,
            "close_s": close_s,
        }
        for stat in ("index_pending", "checkpoints", "checkpoint_seconds"):
            if stat in st1:
                res[f"{stat}_end"] = st1[stat]
            if stat in st0 and stat in st1 and stat != "index_pending":
                res[f"{stat}_during"] = st1[stat] - st0[stat]
        return res

    w = Workload(
        id=f"index_{'durable' if sync else 'nosync'}_put",
        title=f"durable put 1 KiB into {n:,} keys, 1 thread"
        if sync
        else f"put 1 KiB, sync=False, into {n:,} keys, 1 thread",
        params={
            "n": n,
            "sync": sync,
            "puts": m,
            "warmup_puts": warm_n,
            "value_bytes": 1 * KiB,
            "key_bytes": 16,
            "keys": "random",
            "reps": cfg["index_reps"],
            "timing": "perf_counter_ns around each db.put",
            "database": "preloaded with sync=False in batches, checkpoint(), clean close; "
            "reopened by every repetition with its index mode; its keys deleted afterwards",
        },
        metrics=latency_metrics(TARGET_LAZY_EAGER_P99 if sync else None, "mean_us"),
        engines=list(MODES),
    )
    w.reps = interleave(cfg["index_reps"], MODES, one, w.title)
    w.seconds = time.monotonic() - started
    run.log(
        f"{w.title}: p99 lazy {fmt_num(w.med('lazy', 'p99_us'))} us, eager "
        f"{fmt_num(w.med('eager', 'p99_us'))} us -> {fmt_ratio(w.ratio('p99_us'))} ({w.seconds:.1f}s)"
    )
    return w


# ====================================================================== stall: do checkpoints stall writers?
def checkpoint_stall(run: Run) -> dict[str, Any]:
    """Durable 1 KiB puts, 1 thread, into the base database (N keys in the
    tree) while a checkpoint applies `stall_pending` entries to that tree
    ("checkpointing"), against the same puts with no checkpoint running
    ("quiet"); both with the same pending table, the background indexer's
    own checkpoints turned off.  The issue's target: p99 during / p99
    without <= 1.3; p999 reported."""
    import threading

    import pastedb

    started = time.monotonic()
    cfg = run.cfg
    ok, why = index_support(run)
    out: dict[str, Any] = {"available": ok, "why": why, "n": cfg["index_n"], "workloads": []}
    if not ok:
        progress.step(planned_steps(cfg, ["stall"]))
        return out
    base = base_db(run, cfg["index_n"])
    pend_n, warm_n = cfg["stall_pending"], cfg["index_warmup"]

    def one(mode: str, rep: int) -> dict[str, float]:
        run.rearm()
        pending = random_keys(5000 + rep, pend_n)
        keys = random_keys(7000 + rep, warm_n + 200_000)
        db = pastedb.open(base.path, sync=True, persist=run.args.persist)
        try:
            db._checkpoint_policy(every=1 << 60, interval=10**9, nbytes=0)
            for i in range(0, pend_n, LOAD_CHUNK):
                with db.batch() as b:
                    for k in pending[i : i + LOAD_CHUNK]:
                        b.put(k, base.value)
            put = db.put
            for k in keys[:warm_n]:
                put(k, base.value)
            timed = iter(keys[warm_n:])
            lat: list[int] = []
            done = threading.Event()
            cp_s = [0.0]

            def checkpointer() -> None:
                t = now_ns()
                db.checkpoint()
                cp_s[0] = (now_ns() - t) / 1e9
                done.set()

            if mode == "checkpointing":
                th = threading.Thread(target=checkpointer)
                th.start()
                # the puts that ran while the checkpoint did
                while not done.is_set():
                    k = next(timed)
                    t = now_ns()
                    put(k, base.value)
                    lat.append(now_ns() - t)
                th.join()
            else:
                # as many puts as a checkpointing repetition makes, or the
                # previous one's count (the first quiet repetition: 2,000)
                m = int(run.shared.get("stall_last_puts", 2000))
                for _ in range(m):
                    k = next(timed)
                    t = now_ns()
                    put(k, base.value)
                    lat.append(now_ns() - t)
                t = now_ns()
                db.checkpoint()
                cp_s[0] = (now_ns() - t) / 1e9
            if mode == "checkpointing":
                run.shared["stall_last_puts"] = len(lat)
            written = pending + keys[: warm_n + len(lat)]
            if db.get(written[-1]) != base.value:
                raise AssertionError(f"{mode}: the last durable put is not readable")
            # untimed: back to n keys for the next repetition
            for i in range(0, len(written), LOAD_CHUNK):
                with db.batch() as b:
                    for k in written[i : i + LOAD_CHUNK]:
                        b.delete(k)
            db.checkpoint()
        finally:
            db.close()
        return {
            **latency_us(lat),
            "puts": len(lat),
            "checkpoint_s": cp_s[0],
        }

    w = Workload(
        id="stall_durable_put",
        title=f"durable put 1 KiB while a checkpoint applies {pend_n:,} entries to a "
        f"{base.n:,}-key tree, 1 thread",
        params={
            "n": base.n,
            "pending": pend_n,
            "reps": cfg["stall_reps"],
            "value_bytes": 1 * KiB,
            "key_bytes": 16,
            "timing": "perf_counter_ns around each db.put",
            "quiet": "the same pending table, no checkpoint running (the indexer's own off)",
        },
        metrics=latency_metrics(TARGET_STALL_P99, "max_us"),
        engines=list(STALL_MODES),
    )
    w.reps = interleave(cfg["stall_reps"], STALL_MODES, one, w.title)
    w.seconds = time.monotonic() - started
    run.log(
        f"{w.title}: p99 {fmt_num(w.med('checkpointing', 'p99_us'))} us during, "
        f"{fmt_num(w.med('quiet', 'p99_us'))} us without -> {fmt_ratio(w.ratio('p99_us'))}; "
        f"p999 {fmt_num(w.med('checkpointing', 'p999_us'))} / "
        f"{fmt_num(w.med('quiet', 'p999_us'))} us; checkpoint "
        f"{fmt_num(w.med('checkpointing', 'checkpoint_s'))} s ({w.seconds:.1f}s)"
    )
    out["workloads"].append(w.to_json())
    return out


# ====================================================================== open time
OPEN_PROBE = r"""
import json, random, sys, time
path, key, persist = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
clean_seed, clean_n = int(sys.argv[4]), int(sys.argv[5])
import pastedb
t0 = time.perf_counter_ns()
db = pastedb.open(path, persist=persist)
t1 = time.perf_counter_ns()
v = db.get(key)
t2 = time.perf_counter_ns()
st = db.stats()
out = {"open_s": (t1 - t0) / 1e9, "first_get_s": (t2 - t1) / 1e9, "found": v is not None,
       "stats": {k: st[k] for k in %r if k in st}}
if clean_n:
    rb = random.Random(clean_seed).randbytes
    keys = [rb(16) for _ in range(clean_n)]
    for i in range(0, clean_n, 1000):
        with db.batch() as b:
            for k in keys[i:i + 1000]:
                b.delete(k)
    db.checkpoint()  # the next crash's tail starts after a checkpoint again
t3 = time.perf_counter_ns()
db.close()
out["close_s"] = (time.perf_counter_ns() - t3) / 1e9
print(json.dumps(out), flush=True)
""" % (STAT_KEYS,)

CRASH_CHILD = r"""
import json, os, random, signal, sys
path, n, seed, chunk, persist = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import pastedb
rb = random.Random(seed).randbytes
value = os.urandom(1024)
db = pastedb.open(path, sync=True, persist=persist)
done = 0
while done < n:
    m = min(chunk, n - done)
    with db.batch() as b:
        for _ in range(m):
            b.put(rb(16), value)
    done += m
st = db.stats()
print(json.dumps({"written": done, "stats": {k: st[k] for k in %r if k in st}}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
""" % (STAT_KEYS,)


def _python(run: Run, script: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a probe script with the pastedb build this process imported."""
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=pastedb_root(),
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=run.args.hang_timeout,
    )


def _last_json(cp: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    lines = [x for x in cp.stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"{what}: exit {cp.returncode}, no result\n{cp.stdout[-2000:]}{cp.stderr[-2000:]}"
        )
    return dict(json.loads(lines[-1]))


def open_probe(
    run: Run, path: str, key: bytes, clean_seed: int = 0, clean_n: int = 0
) -> dict[str, Any]:
    run.rearm()
    cp = _python(
        run, OPEN_PROBE, [path, key.hex(), run.args.persist, str(clean_seed), str(clean_n)]
    )
    if cp.returncode != 0:
        raise RuntimeError(f"open probe: exit {cp.returncode}\n{cp.stderr[-3000:]}")
    res = _last_json(cp, "open probe")
    if not res["found"]:
        raise AssertionError(f"open probe: key {key.hex()} missing after reopening {path}")
    res["total_s"] = res["open_s"] + res["first_get_s"]
    return res


def crash_child(run: Run, path: str, n: int, seed: int) -> dict[str, Any]:
    run.rearm()
    cp = _python(run, CRASH_CHILD, [path, str(n), str(seed), str(TAIL_CHUNK), run.args.persist])
    if cp.returncode != -signal.SIGKILL:
        raise RuntimeError(f"crash child: exit {cp.returncode}, not SIGKILL\n{cp.stderr[-3000:]}")
    return _last_json(cp, "crash child")


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    def col(k: str) -> list[float]:
        return [float(s[k]) for s in samples if s.get(k) is not None]

    def stat(k: str) -> list[float]:
        return [float(s["stats"][k]) for s in samples if s.get("stats", {}).get(k) is not None]

    o = col("open_s")
    return {
        "open_s_median": median(o),
        "open_s_min": min(o) if o else math.nan,
        "open_s_max": max(o) if o else math.nan,
        "first_get_s_median": median(col("first_get_s")),
        "total_s_median": median(col("total_s")),
        "recovered_records_median": median(stat("recovered_records")),
        "index_pending_after_open_median": median(stat("index_pending")),
    }


def open_time(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    started = time.monotonic()
    n = cfg["index_n"]
    base = base_db(run, n)
    key = base.sample_keys[len(base.sample_keys) // 2]
    clean: list[dict[str, Any]] = []
    for r in range(cfg["open_reps"]):
        progress.label(f"open after a clean close: {r + 1}/{cfg['open_reps']}")
        clean.append(open_probe(run, base.path, key))
        progress.step()
    tails: list[dict[str, Any]] = []
    for k in cfg["open_tails"]:
        samples: list[dict[str, Any]] = []
        for r in range(cfg["open_crash_reps"]):
            progress.label(
                f"open after kill -9 with {k:,} records: {r + 1}/{cfg['open_crash_reps']}"
            )
            seed = 5000 + 7 * r + k
            child = crash_child(run, base.path, k, seed)
            # the newest key the child acknowledged must be there, else the first get of the base
            probe_key = random_keys(seed, k)[-1] if k else key
            res = open_probe(run, base.path, probe_key, seed, k)
            res["child"] = child
            samples.append(res)
            progress.step()
        pend = [
            float(s["child"]["stats"]["index_pending"])
            for s in samples
            if s["child"].get("stats", {}).get("index_pending") is not None
        ]
        tails.append(
            {
                "tail_written": k,
                "samples": samples,
                **summarize(samples),
                "index_pending_at_kill_median": median(pend),
            }
        )
    cs = summarize(clean)
    out = {
        "id": "open_time",
        "title": f"open + first get, {n:,} keys x 1 KiB",
        "params": {
            "n": n,
            "clean_reps": cfg["open_reps"],
            "crash_reps": cfg["open_crash_reps"],
            "tails": cfg["open_tails"],
            "tail_batch": TAIL_CHUNK,
            "timing": "inside a fresh python process: pastedb.open() and the first get; "
            "import time excluded; page cache warm (not dropped)",
        },
        "build_s": base.build_s,
        "clean": {"samples": clean, **cs},
        "crash": tails,
        "target_s": TARGET_OPEN_S,
        "target_keys": TARGET_OPEN_KEYS,
        # None: a smaller database than the target is about, not judged
        "met": bool(cs["total_s_median"] < TARGET_OPEN_S) if n >= TARGET_OPEN_KEYS else None,
        "seconds": round(time.monotonic() - started, 2),
    }
    run.log(
        f"{out['title']}: after a clean close {cs['total_s_median'] * 1e3:,.1f} ms (median); "
        + ", ".join(
            f"after kill -9 with {t['tail_written']:,} records {t['total_s_median'] * 1e3:,.1f} ms"
            for t in tails
        )
        + f" ({out['seconds']:.1f}s)"
    )
    return out


# ====================================================================== space
def disk_usage(path: str) -> dict[str, Any]:
    files: dict[str, dict[str, int]] = {}
    for name in sorted(os.listdir(path)):
        st = os.stat(os.path.join(path, name))
        files[name] = {"size": st.st_size, "allocated": st.st_blocks * 512}
    data = [files[f] for f in ("pool", "index") if f in files]
    return {
        "files": files,
        "data_size": sum(f["size"] for f in data),
        "data_allocated": sum(f["allocated"] for f in data),
    }


def space(run: Run) -> dict[str, Any]:
    import pastedb

    cfg = run.cfg
    started = time.monotonic()
    run.rearm()
    n, rewrites = cfg["space_n"], cfg["space_rewrites"]
    path = run.fresh_dir("space")
    keys = random_keys(21, n)
    progress.label(f"space: {n:,} keys x {rewrites + 1} writes")
    phases: dict[str, Any] = {}
    compact = None
    db = pastedb.open(path, persist=run.args.persist)
    try:
        t = time.monotonic()
        for _round in range(rewrites + 1):
            value = os.urandom(1 * KiB)
            for i in range(0, n, LOAD_CHUNK):
                with db.batch() as b:
                    put = b.put
                    for k in keys[i : i + LOAD_CHUNK]:
                        put(k, value)
            run.rearm()
        write_s = time.monotonic() - t
        if db.get(keys[0]) != value or len(db) != n:
            raise AssertionError("space: the last round of values is not what reads return")
        phases["after_rewrites"] = {"stats": keep_stats(db.stats()), "disk": disk_usage(path)}
        t = time.monotonic()
        db.checkpoint()
        phases["after_checkpoint"] = {
            "stats": keep_stats(db.stats()),
            "disk": disk_usage(path),
            "seconds": time.monotonic() - t,
        }
        if callable(getattr(db, "compact", None)):
            compact = "db.compact()"
            t = time.monotonic()
            db.compact()
            phases["after_compact"] = {
                "stats": keep_stats(db.stats()),
                "disk": disk_usage(path),
                "seconds": time.monotonic() - t,
            }
    finally:
        db.close()
    phases["after_close"] = {"disk": disk_usage(path)}
    shutil.rmtree(path, ignore_errors=True)
    progress.step()
    last = phases.get("after_compact") or phases["after_checkpoint"]
    live = last["stats"].get("live_bytes") or math.nan
    ratio = float(last["stats"].get("space_ratio", math.nan))
    for ph in phases.values():
        d = ph["disk"]
        d["allocated_over_live"] = d["data_allocated"] / live
        d["size_over_live"] = d["data_size"] / live
    out = {
        "id": "space_overwrite",
        "title": f"space after {rewrites} rewrites of {n:,} keys x 1 KiB",
        "params": {
            "n": n,
            "rewrites": rewrites,
            "value_bytes": 1 * KiB,
            "key_bytes": 16,
            "batch": LOAD_CHUNK,
            "then": "checkpoint()" + (f", {compact}" if compact else ""),
        },
        "phases": phases,
        "compact": compact,
        "space_ratio": ratio,
        "target_ratio": TARGET_SPACE_RATIO,
        "met": bool(ratio <= TARGET_SPACE_RATIO),
        "write_puts_s": n * (rewrites + 1) / write_s if write_s else math.nan,
        "seconds": round(time.monotonic() - started, 2),
    }
    run.log(
        f"{out['title']}: space_ratio {ratio:.2f} (target <= {TARGET_SPACE_RATIO:g}), on disk "
        f"{last['disk']['allocated_over_live']:.2f}x live ({out['seconds']:.1f}s)"
    )
    return out


# ====================================================================== driver
def measure(run: Run, groups: list[str]) -> dict[str, Any]:
    """The groups of this module that are in ``groups``, in order."""
    section: dict[str, Any] = {}
    if "index" in groups:
        section["index"] = index_ablation(run)
    if "stall" in groups:
        section["stall"] = checkpoint_stall(run)
    if "open" in groups:
        section["open"] = open_time(run)
    if "space" in groups:
        section["space"] = space(run)
    return section
