"""The embedded API's bulk and asyncio calls against their peers.

bulk (pastedb against py-lmdb, interleaved, a fresh directory each):
- put_many: N records (16-byte keys, 100-byte values) in calls of 10,000,
  each call one durable batch; LMDB: ``Cursor.putmulti`` of the same slices,
  one ``sync=True`` write transaction each.
- get_many: the N keys in random order, calls of 10,000; LMDB:
  ``Cursor.getmulti`` in one read transaction per call.
- get: the same keys one call each (``db.get`` / ``txn.get``).

asyncio (pastedb.aio against pastedb in a thread pool, the same database
options): 1,000 coroutines, each making durable puts of 100-byte values
until N puts are done, while a ticker task measures the event loop's lag
(how late a 1 ms sleep wakes; p99).  "threads" is what an application
does without pastedb.aio: ``await loop.run_in_executor(pool, db.put, k, v)``
with a 64-thread pool and a ``sync=True`` handle.

view (db.view against db.get, one database): for values of 1 KiB up to
256 MiB (the profile's largest), the time of ``with db.view(k) as mv`` (the
checksum is verified over the bytes in place; nothing is copied) against
``db.get(k)`` (verified and copied into a new bytes), per call.

Profiles: --smoke (seconds), --quick (about 20 s), default (200k records,
3 repetitions).  ``python -m bench.api RESULTS.json`` prints a run's
report as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    Metric,
    Part,
    Workload,
    finish_doc,
    interleave,
    machine_description,
    profile_of,
    progress,
    use_pastedb_dir,
)
from bench.render import render_table

NAME = "api"
HELP = "the embedded bulk calls against LMDB's multi calls; pastedb.aio against threads"
GROUPS = ["bulk", "asyncio", "view"]
LABELS = {"pastedb": "pastedb", "lmdb": "lmdb", "aio": "pastedb.aio", "threads": "threads",
          "view": "db.view", "get": "db.get"}
PROFILES = {
    #        bulk records  async puts  reps
    "smoke": (5_000, 2_000, 1),
    "quick": (100_000, 20_000, 1),
    "full": (200_000, 50_000, 3),
}
KSIZE = 16
VSIZE = 100
CALL = 10_000
COROUTINES = 1_000
POOL = 64
VIEW_SIZES = {"smoke": [1 << 10, 1 << 20], "quick": [1 << 10, 1 << 16, 1 << 20, 1 << 24],
              "full": [1 << 10, 1 << 16, 1 << 20, 1 << 24, 1 << 28]}


def config(args: argparse.Namespace) -> dict[str, Any]:
    records, aputs, reps = PROFILES[profile_of(args)]
    if args.api_reps:
        reps = args.api_reps
    return {"records": records, "async_puts": aputs, "reps": reps, "ksize": KSIZE,
            "vsize": VSIZE, "call": CALL, "coroutines": COROUTINES, "pool": POOL,
            "view_sizes": VIEW_SIZES[profile_of(args)]}


class ApiRun:
    def __init__(self, cfg: dict[str, Any], base: str):
        self.cfg = cfg
        self.base = base
        self.seq = 0
        n = cfg["records"]
        self.recs = [(b"key:%012d" % i, ((b"%08d" % i) * (VSIZE // 8 + 1))[:VSIZE])
                     for i in range(n)]
        self.order = [k for k, _ in self.recs]
        self._view: Any = None                  # the view group's database, opened once
        random.Random(1).shuffle(self.order)

    def fresh(self, tag: str) -> str:
        self.seq += 1
        return os.path.join(self.base, f"{self.seq:03d}-{tag}")

    def bulk(self, engine: str, rep: int) -> dict[str, float]:
        path = self.fresh(engine)
        n = len(self.recs)
        out: dict[str, float] = {}
        if engine == "pastedb":
            import pastedb

            with pastedb.open(path) as db:
                t = time.perf_counter()
                for lo in range(0, n, CALL):
                    db.put_many(self.recs[lo:lo + CALL])
                out["put_many_s"] = n / (time.perf_counter() - t)
                db.checkpoint()
                t = time.perf_counter()
                for lo in range(0, n, CALL):
                    got = db.get_many(self.order[lo:lo + CALL])
                out["get_many_s"] = n / (time.perf_counter() - t)
                assert got[-1] is not None
                get = db.get
                t = time.perf_counter()
                for k in self.order:
                    get(k)
                out["get_s"] = n / (time.perf_counter() - t)
        else:
            import lmdb

            env = lmdb.open(path, map_size=1 << 33, sync=True, metasync=True)
            t = time.perf_counter()
            for lo in range(0, n, CALL):
                with env.begin(write=True) as txn:
                    txn.cursor().putmulti(self.recs[lo:lo + CALL])
            out["put_many_s"] = n / (time.perf_counter() - t)
            t = time.perf_counter()
            for lo in range(0, n, CALL):
                with env.begin() as txn:
                    pairs = txn.cursor().getmulti(self.order[lo:lo + CALL])
            out["get_many_s"] = n / (time.perf_counter() - t)
            assert pairs
            with env.begin() as txn:
                get = txn.get
                t = time.perf_counter()
                for k in self.order:
                    get(k)
                out["get_s"] = n / (time.perf_counter() - t)
            env.close()
        shutil.rmtree(path)
        return out

    def view_db(self) -> Any:
        import pastedb

        if self._view is None:
            db = pastedb.open(self.fresh("view"), sync=False)
            for size in self.cfg["view_sizes"]:
                db.put(b"v%d" % size, os.urandom(1 << 20) * (size >> 20) if size >= 1 << 20
                       else os.urandom(size))
            db.sync()
            db.checkpoint()
            self._view = db
        return self._view

    def view_one(self, engine: str, rep: int) -> dict[str, float]:
        db = self.view_db()
        out: dict[str, float] = {}
        for size in self.cfg["view_sizes"]:
            k = b"v%d" % size
            calls = max(3, min(2000, (64 << 20) // size))
            t = time.perf_counter()
            if engine == "view":
                for _ in range(calls):
                    with db.view(k) as mv:
                        assert len(mv) == size
            else:
                for _ in range(calls):
                    assert len(db.get(k)) == size
            out[f"us_{size}"] = (time.perf_counter() - t) / calls * 1e6
        return out

    def asyncio_one(self, engine: str, rep: int) -> dict[str, float]:
        path = self.fresh(engine)
        out = asyncio.run(self._async(engine, path))
        shutil.rmtree(path)
        return out

    async def _async(self, engine: str, path: str) -> dict[str, float]:
        import pastedb
        import pastedb.aio

        total = self.cfg["async_puts"]
        value = b"v" * VSIZE
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - t - 0.001)

        counter = iter(range(total))
        loop = asyncio.get_running_loop()
        if engine == "aio":
            adb = await pastedb.aio.open(path)
            g0 = adb.stats()["commit_groups"]

            async def worker() -> None:
                for i in counter:
                    await adb.put(b"key:%012d" % i, value)
        else:
            db = pastedb.open(path)
            g0 = db.stats()["commit_groups"]
            pool = concurrent.futures.ThreadPoolExecutor(POOL)

            async def worker() -> None:
                for i in counter:
                    await loop.run_in_executor(pool, db.put, b"key:%012d" % i, value)
        tick = asyncio.create_task(ticker())
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(COROUTINES)))
        s = time.perf_counter() - t
        done.set()
        await tick
        if engine == "aio":
            groups = adb.stats()["commit_groups"] - g0
            await adb.close()
        else:
            groups = db.stats()["commit_groups"] - g0
            pool.shutdown()
            db.close()
        lags.sort()
        return {"puts_s": total / s, "per_group": total / max(groups, 1),
                "lag_p50_ms": lags[len(lags) // 2] * 1e3 if lags else 0.0,
                "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1e3 if lags else 0.0}


def plan(args: argparse.Namespace, groups: list[str], parts: Sequence[Part] = ()) -> int:
    reps = config(args)["reps"]
    return reps * 2 * len([g for g in groups if g in GROUPS])


def size_text(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def measure(
    args: argparse.Namespace,
    groups: list[str],
    parts: Sequence[Part] = (),
    plan_progress: bool = True,
) -> dict[str, Any] | int:
    """Run the suite; its JSON document."""
    use_pastedb_dir(args)
    cfg = config(args)
    doc: dict[str, Any] = {"suite": NAME, "profile": profile_of(args), "config": cfg,
                           "groups": groups}
    os.makedirs(args.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="pastedb-apibench-", dir=args.dir)
    if plan_progress:
        progress.add_total(plan(args, groups))
    t0 = time.monotonic()
    machine = machine_description(base)
    run = ApiRun(cfg, base)
    workloads = []
    try:
        if "bulk" in groups:
            t = time.monotonic()
            reps = interleave(cfg["reps"], ["pastedb", "lmdb"], run.bulk, label="api/bulk")
            workloads.append(Workload(
                id="bulk", title=f"bulk calls, {cfg['records']:,} records ({KSIZE} B keys, "
                f"{VSIZE} B values), {CALL:,} per call",
                params=cfg, engines=["pastedb", "lmdb"], reps=reps,
                metrics=[Metric("put_many_s", "put_many / putmulti, records/s (durable)"),
                         Metric("get_many_s", "get_many / getmulti, keys/s"),
                         Metric("get_s", "get, keys/s")],
                seconds=time.monotonic() - t))
        if "asyncio" in groups:
            t = time.monotonic()
            reps = interleave(cfg["reps"], ["aio", "threads"], run.asyncio_one,
                              label="api/asyncio")
            workloads.append(Workload(
                id="asyncio", title=f"durable puts from {COROUTINES:,} coroutines "
                f"({cfg['async_puts']:,} puts of {VSIZE} B)",
                params=cfg, engines=["aio", "threads"], reps=reps,
                metrics=[Metric("puts_s", "durable puts/s"),
                         Metric("per_group", "puts per barrier"),
                         Metric("lag_p99_ms", "event-loop lag p99, ms", higher_is_better=False),
                         Metric("lag_p50_ms", "event-loop lag p50, ms", higher_is_better=False)],
                seconds=time.monotonic() - t))
        if "view" in groups:
            t = time.monotonic()
            reps = interleave(cfg["reps"], ["view", "get"], run.view_one, label="api/view")
            run.view_db().close()
            workloads.append(Workload(
                id="view", title="read one value: db.view (verified in place) against db.get "
                "(verified and copied)", params=cfg, engines=["view", "get"], reps=reps,
                metrics=[Metric(f"us_{n}", f"{size_text(n)}, us per call", higher_is_better=False)
                         for n in cfg["view_sizes"]],
                seconds=time.monotonic() - t))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    import lmdb

    finish_doc(doc, t0, machine, {"py-lmdb": lmdb.__version__,
                                  "lmdb": ".".join(map(str, lmdb.version()))},
               workloads=[w.to_json() for w in workloads])
    return doc


def report(doc: dict[str, Any], markdown: bool = False) -> str:
    ws = [Workload.from_json(w) for w in doc["workloads"]]
    out = []
    for w in ws:
        out.append(render_table([w], labels=LABELS, markdown=markdown))
    out += ["", f"threads: loop.run_in_executor with a {POOL}-thread pool and a sync=True "
                "handle; pastedb.aio: one committer thread completes every waiting future "
                "per barrier."]
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Its options (named so that they collide with no other suite's inside ``all``)."""
    p.add_argument("--api-reps", type=int, default=None,
                   help="api: repetitions per engine (overrides the profile)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.api bench/results/api-....json")
    with open(sys.argv[1]) as f:
        print(report(json.load(f), markdown=True))
