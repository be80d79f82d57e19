"""Readers beside a writer: gets and scans from a second process while a
writer process overwrites, for pastedb read-only handles against LMDB
readers beside an LMDB writer.

N keys (16-byte keys, 100-byte values) are loaded first (not timed).  Then,
per repetition and engine (interleaved: pastedb, lmdb, pastedb, ...), a
writer process overwrites random keys, one durable write at a time
(pastedb: an embedded DB, sync=True; LMDB: one sync=True write transaction
per put), and a reader process -- started once the writer runs -- measures
for a fixed time:

- get: random point reads, each a call on its own (pastedb: ``db.get`` on a
  read-only handle, which first catches up with the writer; LMDB: one read
  transaction per get, so each sees the newest commit, as pastedb's calls do);
- scan: full ordered scans, keys/s (pastedb: ``db.items()``; LMDB: a cursor in
  one read transaction).

Metrics: gets/s and scanned keys/s in the reader, and the writer's puts/s
meanwhile (for context; not a ratio claim).  Profiles: --smoke (seconds),
--quick (100k keys), default (500k keys, 3 repetitions).
``python -m bench.readers RESULTS.json`` prints a run's report as Markdown.
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
from collections.abc import Callable, Sequence
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

NAME = "readers"
HELP = "gets and scans from a second process beside a writer: pastedb read-only handles vs LMDB readers"
GROUPS = ["get", "scan"]
LABELS = {"pastedb": "pastedb readonly", "lmdb": "lmdb reader"}
ENGINES = ["pastedb", "lmdb"]
PROFILES = {
    #        keys     reps  seconds per phase
    "smoke": (2_000, 1, 0.5),
    "quick": (100_000, 1, 3.0),
    "full": (500_000, 3, 5.0),
}
KSIZE = 16
VSIZE = 100
BATCH = 50_000


def config(args: argparse.Namespace) -> dict[str, Any]:
    keys, reps, secs = PROFILES[profile_of(args)]
    if args.readers_keys:
        keys = args.readers_keys
    if args.readers_reps:
        reps = args.readers_reps
    return {"keys": keys, "reps": reps, "seconds": secs, "ksize": KSIZE, "vsize": VSIZE}


def key(i: int) -> bytes:
    return b"key:%012d" % i


def value(i: int, gen: int) -> bytes:
    return (b"%08d:%08d:" % (i, gen) * (VSIZE // 18 + 1))[:VSIZE]


def load(engine: str, path: str, n: int) -> None:
    if engine == "pastedb":
        import pastedb

        with pastedb.open(path) as db:
            for lo in range(0, n, BATCH):
                with db.batch() as b:
                    for i in range(lo, min(n, lo + BATCH)):
                        b.put(key(i), value(i, 0))
    else:
        import lmdb

        env = lmdb.open(path, map_size=1 << 34, sync=True, metasync=True)
        for lo in range(0, n, BATCH):
            with env.begin(write=True) as txn:
                txn.cursor().putmulti([(key(i), value(i, 0)) for i in range(lo, min(n, lo + BATCH))])
        env.close()


# ------------------------------------------------------------------ child processes
def child_writer(engine: str, path: str, n: int, seconds: float) -> dict[str, float]:
    """Overwrite until the file path + ".stop" appears (or `seconds` pass)."""
    rng = random.Random(7)
    end = time.monotonic() + seconds
    stop = path + ".stop"
    puts = 0
    t = time.perf_counter()
    if engine == "pastedb":
        import pastedb

        with pastedb.open(path) as db:
            print("ready", flush=True)
            while time.monotonic() < end and not (puts % 64 == 0 and os.path.exists(stop)):
                i = rng.randrange(n)
                db.put(key(i), value(i, puts + 1))
                puts += 1
    else:
        import lmdb

        env = lmdb.open(path, map_size=1 << 34, sync=True, metasync=True)
        print("ready", flush=True)
        while time.monotonic() < end and not (puts % 64 == 0 and os.path.exists(stop)):
            i = rng.randrange(n)
            with env.begin(write=True) as txn:
                txn.put(key(i), value(i, puts + 1))
            puts += 1
        env.close()
    return {"puts_s": puts / (time.perf_counter() - t)}


def child_reader(engine: str, path: str, n: int, seconds: float) -> dict[str, float]:
    rng = random.Random(11)
    keys = [key(rng.randrange(n)) for _ in range(100_000)]
    out: dict[str, float] = {}
    get: Callable[[bytes], bytes | None]
    scan: Callable[[], int]
    if engine == "pastedb":
        import pastedb

        db = pastedb.open(path, readonly=True)
        get = db.get

        def scan_db() -> int:
            c = 0
            for _k, _v in db.items():
                c += 1
            return c
        scan = scan_db
    else:
        import lmdb

        env = lmdb.open(path, map_size=1 << 34, readonly=True, lock=True)

        def get_env(k: bytes) -> bytes | None:
            with env.begin() as txn:
                return txn.get(k)

        def scan_env() -> int:
            c = 0
            with env.begin() as txn:
                for _k, _v in txn.cursor():
                    c += 1
            return c
        get, scan = get_env, scan_env
    end = time.monotonic() + seconds
    gets = 0
    t = time.perf_counter()
    while time.monotonic() < end:
        for k in keys[gets % 90_000:gets % 90_000 + 1000]:
            assert get(k) is not None
        gets += 1000
    out["gets_s"] = gets / (time.perf_counter() - t)
    end = time.monotonic() + seconds
    scanned = 0
    t = time.perf_counter()
    while True:
        c = scan()
        assert c == n, (c, n)
        scanned += c
        if time.monotonic() >= end:
            break
    out["scan_keys_s"] = scanned / (time.perf_counter() - t)
    return out


# ------------------------------------------------------------------ the run
class ReadersRun:
    def __init__(self, cfg: dict[str, Any], base: str):
        self.cfg = cfg
        self.base = base
        self.paths: dict[str, str] = {}
        self.writer_puts: dict[str, list[float]] = {e: [] for e in ENGINES}

    def prepare(self) -> None:
        for e in ENGINES:
            p = os.path.join(self.base, e)
            load(e, p, self.cfg["keys"])
            self.paths[e] = p

    def one(self, engine: str, rep: int) -> dict[str, float]:
        n, secs = self.cfg["keys"], self.cfg["seconds"]
        me = [sys.executable, "-m", "bench.readers", "--child"]
        wr = subprocess.Popen([*me, "writer", engine, self.paths[engine], str(n), str(4 * secs + 60)],
                              stdout=subprocess.PIPE, text=True)
        try:
            assert wr.stdout is not None and wr.stdout.readline().strip() == "ready"
            rd = subprocess.run([*me, "reader", engine, self.paths[engine], str(n), str(secs)],
                                capture_output=True, text=True, check=True)
        finally:
            with open(self.paths[engine] + ".stop", "w"):
                pass
            wout, _ = wr.communicate(timeout=4 * secs + 60)
            os.unlink(self.paths[engine] + ".stop")
        assert wr.returncode == 0
        self.writer_puts[engine].append(json.loads(wout.splitlines()[-1])["puts_s"])
        return json.loads(rd.stdout.splitlines()[-1])


def plan(args: argparse.Namespace, groups: list[str], parts: Sequence[Part] = ()) -> int:
    if not groups:
        return 0
    return config(args)["reps"] * len(ENGINES) + 1


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
    base = tempfile.mkdtemp(prefix="pastedb-readersbench-", dir=args.dir)
    if plan_progress:
        progress.add_total(cfg["reps"] * len(ENGINES) + 1)
    t0 = time.monotonic()
    machine = machine_description(base)
    run = ReadersRun(cfg, base)
    try:
        progress.label("readers: loading")
        run.prepare()
        progress.step()
        reps = interleave(cfg["reps"], ENGINES, run.one, label="readers")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    total_s = time.monotonic() - t0
    title = f"{cfg['keys']:,} keys ({KSIZE} B keys, {VSIZE} B values), a writer overwriting"
    workloads = []
    if "get" in groups:
        workloads.append(Workload(
            id="reader_get", title=f"get from a second process, {title}", params=cfg,
            metrics=[Metric("gets_s", "gets/s")], engines=list(ENGINES),
            reps={e: [{"gets_s": r["gets_s"]} for r in reps[e]] for e in ENGINES},
            seconds=total_s))
    if "scan" in groups:
        workloads.append(Workload(
            id="reader_scan", title=f"full scans from a second process, {title}", params=cfg,
            metrics=[Metric("scan_keys_s", "keys/s")], engines=list(ENGINES),
            reps={e: [{"scan_keys_s": r["scan_keys_s"]} for r in reps[e]] for e in ENGINES},
            seconds=total_s))
    import lmdb

    finish_doc(doc, t0, machine, {"py-lmdb": lmdb.__version__,
                                  "lmdb": ".".join(map(str, lmdb.version()))},
               workloads=[w.to_json() for w in workloads], writer_puts_s=run.writer_puts)
    return doc


def report(doc: dict[str, Any], markdown: bool = False) -> str:
    ws = [Workload.from_json(w) for w in doc["workloads"]]
    if not ws:
        return "readers: nothing measured"
    out = [render_table(ws, labels=LABELS, markdown=markdown)]
    wp = doc.get("writer_puts_s") or {}
    if wp:
        out += ["", "the writer meanwhile (durable puts/s, median): " + ", ".join(
            f"{e} {sorted(v)[len(v) // 2]:,.0f}" for e, v in wp.items() if v)]
    out += ["", "Each get is one call (pastedb: a read-only handle that first follows the "
                "writer's log; LMDB: one read transaction); a scan is a full ordered pass."]
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Its options (named so that they collide with no other suite's inside ``all``)."""
    p.add_argument("--readers-keys", type=int, default=None,
                   help="readers: keys loaded (overrides the profile)")
    p.add_argument("--readers-reps", type=int, default=None,
                   help="readers: repetitions per engine (overrides the profile)")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        role, engine, path, n, secs = sys.argv[2:7]
        fn = child_writer if role == "writer" else child_reader
        print(json.dumps(fn(engine, path, int(n), float(secs))), flush=True)
        sys.exit(0)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.readers bench/results/readers-....json")
    with open(sys.argv[1]) as f:
        print(report(json.load(f), markdown=True))
