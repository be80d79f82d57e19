"""Dump and load: how fast ``pastedb.load`` puts a dump (docs/DUMP.md) into a
fresh database, against LMDB's batched loads of the same records.

One dump text of N keys (16-byte keys, 100-byte values) is written first,
not timed.  Then, on a fresh directory each time, interleaved (pastedb,
lmdb, mdb_load, pastedb, ...):

- pastedb: ``pastedb.load(db, file)`` -- parse the text, batches of 50,000
  records through ``db.batch()``, each durable (fdatasync) -- then close.
- lmdb: py-lmdb ``Cursor.putmulti`` of the records already in memory (no
  parsing at all: LMDB's best case), one write transaction per 50,000,
  sync=True -- then close.
- mdb_load: LMDB's own loader on the same dump text (a process; skipped
  without lmdb-utils).

Metric: records put per second (whole load, durable at the end).  Also
timed once per repetition: ``pastedb.dump`` of the loaded database and
``mdb_dump`` of the loaded LMDB environment, records per second.

Profiles: --smoke (seconds), --quick (100k keys, about 20 s), default
(500k keys, 3 repetitions).  ``python -m bench.dump RESULTS.json`` prints a
run's report as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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
    tool_version,
    use_pastedb_dir,
)
from bench.render import fmt_num, render_rows, render_table

NAME = "dump"
HELP = "pastedb.load of a dump against LMDB's batched loads (putmulti, mdb_load)"
GROUPS = ["load"]
LABELS = {"pastedb": "pastedb.load", "lmdb": "lmdb putmulti", "mdb_load": "mdb_load"}
PROFILES = {
    #        keys     reps
    "smoke": (2_000, 1),
    "quick": (100_000, 1),
    "full": (500_000, 3),
}
KSIZE = 16
VSIZE = 100
BATCH = 50_000


def config(args: argparse.Namespace) -> dict[str, Any]:
    keys, reps = PROFILES[profile_of(args)]
    if args.dump_keys:
        keys = args.dump_keys
    if args.dump_reps:
        reps = args.dump_reps
    return {"keys": keys, "reps": reps, "ksize": KSIZE, "vsize": VSIZE, "batch": BATCH}


def records(n: int) -> list[tuple[bytes, bytes]]:
    """Key order (what a dump holds); values differ per key and hold every byte."""
    body = bytes(range(256)) * (VSIZE // 256 + 1)
    return [(b"key:%012d" % i, (b"%08d" % i + body)[:VSIZE]) for i in range(n)]


def engines() -> list[str]:
    return ["pastedb", "lmdb", *(["mdb_load"] if shutil.which("mdb_load") else [])]


class DumpRun:
    def __init__(self, cfg: dict[str, Any], base: str):
        self.cfg = cfg
        self.base = base
        self.seq = 0
        self.recs = records(cfg["keys"])
        self.text = os.path.join(base, "src.dump")
        self.dumps: dict[str, list[float]] = {"pastedb": [], "mdb_dump": []}

    def fresh(self, tag: str) -> str:
        self.seq += 1
        return os.path.join(self.base, f"{self.seq:03d}-{tag}")

    def write_text(self) -> None:
        import pastedb

        src = self.fresh("src")
        with pastedb.open(src) as db:
            for lo in range(0, len(self.recs), BATCH):
                with db.batch() as b:
                    for k, v in self.recs[lo:lo + BATCH]:
                        b.put(k, v)
            with open(self.text, "wb") as f:
                pastedb.dump(db, f)
        shutil.rmtree(src)

    def one(self, engine: str, rep: int) -> dict[str, float]:
        path = self.fresh(engine)
        n = len(self.recs)
        if engine == "pastedb":
            import pastedb

            t = time.perf_counter()
            with pastedb.open(path) as db, open(self.text, "rb") as f:
                st = pastedb.load(db, f, batch_records=BATCH)
            s = time.perf_counter() - t
            assert st.records == n
            with pastedb.open(path) as db:
                assert len(db) == n
                t = time.perf_counter()
                with open(os.path.join(self.base, "out.dump"), "wb") as f:
                    pastedb.dump(db, f)
                self.dumps["pastedb"].append(n / (time.perf_counter() - t))
        elif engine == "lmdb":
            import lmdb

            t = time.perf_counter()
            env = lmdb.open(path, map_size=1 << 34, sync=True, metasync=True)
            for lo in range(0, n, BATCH):
                with env.begin(write=True) as txn:
                    txn.cursor().putmulti(self.recs[lo:lo + BATCH])
            env.close()
            s = time.perf_counter() - t
        else:
            os.makedirs(path)
            t = time.perf_counter()
            subprocess.run(["mdb_load", "-f", self.text, path], check=True,
                           stderr=subprocess.DEVNULL)
            s = time.perf_counter() - t
            t = time.perf_counter()
            with open(os.path.join(self.base, "out.mdb"), "wb") as f:
                subprocess.run(["mdb_dump", path], stdout=f, check=True)
            self.dumps["mdb_dump"].append(n / (time.perf_counter() - t))
        shutil.rmtree(path)
        return {"puts_s": n / s, "seconds": s}


def plan(args: argparse.Namespace, groups: list[str], parts: Sequence[Part] = ()) -> int:
    if not groups:
        return 0
    return config(args)["reps"] * len(engines()) + 1


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
    eng = engines()
    os.makedirs(args.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="pastedb-dumpbench-", dir=args.dir)
    if plan_progress:
        progress.add_total(cfg["reps"] * len(eng) + 1)
    t0 = time.monotonic()
    machine = machine_description(base)
    run = DumpRun(cfg, base)
    try:
        progress.label("dump: writing the dump text")
        run.write_text()
        progress.step()
        text_bytes = os.path.getsize(run.text)
        reps = interleave(cfg["reps"], eng, run.one, label="dump/load")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    w = Workload(
        id="load", title=f"load {cfg['keys']:,} records ({KSIZE} B keys, {VSIZE} B values)",
        params={**cfg, "text_bytes": text_bytes},
        metrics=[Metric("puts_s", "records/s")], engines=eng, reps=reps,
        seconds=time.monotonic() - t0)
    import lmdb

    finish_doc(doc, t0, machine,
               {"py-lmdb": lmdb.__version__, "lmdb": ".".join(map(str, lmdb.version())),
                "mdb_load": tool_version(shutil.which("mdb_load"))},
               workloads=[w.to_json()], dump_records_s=run.dumps,
               not_available=[] if "mdb_load" in eng else [
                   {"title": "mdb_load",
                    "why": "lmdb-utils not installed (apt-get install lmdb-utils)"}])
    return doc


def report(doc: dict[str, Any], markdown: bool = False) -> str:
    ws = [Workload.from_json(w) for w in doc["workloads"]]
    extra = [("pastedb", "mdb_load", "pastedb/mdb_load")] if "mdb_load" in ws[0].engines else []
    out = [render_table(ws, labels=LABELS, markdown=markdown, extra_ratios=extra,
                        extra_engines=[e for e in ws[0].engines[2:]])]
    dumps = doc.get("dump_records_s") or {}
    rows = [[name, fmt_num(sorted(v)[len(v) // 2])] for name, v in dumps.items() if v]
    if rows:
        out += ["", "dump of the loaded database, records/s (median):",
                render_rows(["", "records/s"], rows, markdown=markdown)]
    out += ["", "pastedb.load parses the text and commits durable batches of "
                f"{BATCH:,}; lmdb putmulti starts from records already in memory, "
                f"{BATCH:,} per sync=True transaction; mdb_load reads the same text."]
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser, standalone: bool = True) -> None:
    """Its options (named so that they collide with no other suite's inside ``all``)."""
    p.add_argument("--dump-keys", type=int, default=None,
                   help="dump: records in the dump (overrides the profile)")
    p.add_argument("--dump-reps", type=int, default=None,
                   help="dump: repetitions per engine (overrides the profile)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.dump bench/results/dump-....json")
    with open(sys.argv[1]) as f:
        print(report(json.load(f), markdown=True))
