"""Entry point: ``python -m bench [SUITE] [options]`` (run from the repository root).

Without a suite (or with ``all``) every suite of the table below runs, in
order: the embedded suite against LMDB (with pastedb against itself), then
the network suite against redis-server, then shards behind twemproxy against
redis-server shards; one table of medians and ratios per
suite, the targets met or not, one JSON file
(bench/results/all[-PROFILE]-DATE.json; --smoke writes one only with --json).
``--only`` takes the groups of any suite or the name of a whole suite.
Profiles: --smoke (seconds, proves it works), --quick (under a minute), the
default full run (under 15 minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import api, dump, embedded, internals, network, readers, render, shards
from bench.common import (
    Part,
    Suite,
    add_common_arguments,
    default_json_path,
    profile_of,
    progress,
    use_pastedb_dir,
    write_json,
)

# The suites, in the order ``all`` runs them: (suite, the parts that run
# inside its run).  Adding a suite is one line here.
SUITES: dict[str, tuple[Suite, Sequence[Part]]] = {
    embedded.NAME: (embedded, (internals,)),
    network.NAME: (network, ()),
    shards.NAME: (shards, ()),
    dump.NAME: (dump, ()),
    api.NAME: (api, ()),
    readers.NAME: (readers, ()),
}
COMMANDS = ("all", *SUITES, "render")


def groups_of(name: str) -> list[str]:
    suite, parts = SUITES[name]
    return [*suite.GROUPS, *(g for p in parts for g in p.GROUPS)]


def add_suite_arguments(p: argparse.ArgumentParser, name: str, standalone: bool) -> None:
    suite, parts = SUITES[name]
    suite.add_arguments(p, standalone)
    for part in parts:
        part.add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="pastedb benchmarks against peers, reported as ratios. "
        "Without a SUITE, runs `all`.",
    )
    commands = parser.add_subparsers(dest="suite", metavar="SUITE")
    p_all = commands.add_parser(
        "all",
        help="every suite: " + "; ".join(s.HELP for s, _ in SUITES.values()) + " (default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(p_all, [*SUITES, *(g for n in SUITES for g in groups_of(n))], "all")
    for name in SUITES:
        add_suite_arguments(p_all, name, standalone=False)
    p_all.add_argument(
        "--render",
        action="store_true",
        help="then draw bench/results/chart.png and rewrite the README section from the JSON",
    )
    for name, (suite, _parts) in SUITES.items():
        p = commands.add_parser(
            name,
            help=suite.HELP,
            description=suite.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common_arguments(p, groups_of(name), name)
        add_suite_arguments(p, name, standalone=True)
    render.add_arguments(
        commands.add_parser(
            "render",
            help="chart and README section from a results JSON",
            description=render.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return parser


def select_groups(only: str | None, names: Sequence[str]) -> dict[str, list[str]] | None:
    """``--only``: the groups of each suite in ``names`` to run ([] = none of
    it); a suite's name stands for all of its groups.  None after saying what
    is unknown."""
    every = {n: groups_of(n) for n in names}
    if not only:
        return every
    chosen: dict[str, list[str]] = {n: [] for n in names}
    for g in (x.strip() for x in only.split(",") if x.strip()):
        owner = g if g in every else next((n for n in names if g in every[n]), None)
        if owner is None:
            known = ",".join([*(names if len(names) > 1 else []), *sum(every.values(), [])])
            print(f"unknown --only group {g!r}; choose from {known}", file=sys.stderr)
            return None
        chosen[owner] += every[owner] if g == owner else [g]
    return chosen


def wants_json(args: argparse.Namespace, doc: dict[str, Any]) -> bool:
    return (
        not args.no_json and not doc.get("skipped") and bool(args.json or doc["profile"] != "smoke")
    )


def run_one(name: str, args: argparse.Namespace) -> int:
    """One suite on its own: measure, print, write the JSON."""
    groups = select_groups(args.only, [name])
    if groups is None:
        return 2
    suite, parts = SUITES[name]
    progress.start()
    try:
        doc = suite.measure(args, groups[name], parts)
    finally:
        progress.finish()
    if isinstance(doc, int):
        return doc
    print(suite.report(doc))
    if wants_json(args, doc):
        path = args.json or default_json_path(name, doc["profile"])
        write_json(path, doc)
        print(f"results written to {path}")
    return 0


def merged(sections: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """One dict from the sections' ``key`` dicts; the first suite's values win."""
    out: dict[str, Any] = {}
    for s in sections:
        for k, v in (s.get(key) or {}).items():
            out.setdefault(k, v)
    return out


def run_all(args: argparse.Namespace) -> int:
    groups = select_groups(args.only, list(SUITES))
    if groups is None:
        return 2
    use_pastedb_dir(args)
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    sections: dict[str, dict[str, Any] | None] = dict.fromkeys(SUITES)
    progress.start()
    try:
        # plan every suite first, so that the bar's length is known from the start
        for name, (suite, parts) in SUITES.items():
            if groups[name]:
                progress.add_total(suite.plan(args, groups[name], parts))
        for name, (suite, parts) in SUITES.items():
            if not groups[name]:
                continue
            res = suite.measure(args, groups[name], parts, plan_progress=False)
            if isinstance(res, int):
                return res
            sections[name] = res
            progress.finish()
            print(suite.report(res))
            progress.enabled = sys.stderr.isatty()
    finally:
        progress.finish()

    ran = [s for s in sections.values() if s is not None]
    total_s = time.monotonic() - t0
    doc: dict[str, Any] = {
        "suite": "all",
        "profile": profile_of(args),
        "started": started,
        "total_seconds": round(total_s, 1),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "machine": merged(ran, "machine"),
        "versions": merged(ran, "versions"),
        "pastedb_build": next((s["pastedb_build"] for s in ran if s.get("pastedb_build")), None),
        **sections,
        "not_available": [na for s in ran for na in render.not_available(s)],
    }
    doc["targets"] = render.targets(doc)
    print(render.all_text(doc))

    path = None
    if wants_json(args, doc):
        path = args.json or default_json_path("all", doc["profile"])
        write_json(path, doc)
        print(f"results written to {path}")
    if args.render:
        if path is None:
            print("--render needs the JSON report (drop --no-json)", file=sys.stderr)
            return 2
        rargs = argparse.Namespace(
            chart=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "chart.png"),
            no_chart=False,
            readme=os.path.join(render.REPO, "README.md"),
            no_readme=False,
            print=False,
        )
        return render.render(render.load(path), path, rargs)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # no suite named: `all` (but let -h/--help describe the whole program)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["all", *argv]
    args = build_parser().parse_args(argv)
    if args.suite == "all":
        return run_all(args)
    if args.suite == "render":
        return render.main(args)
    return run_one(args.suite, args)


if __name__ == "__main__":
    sys.exit(main())
