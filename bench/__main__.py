"""Entry point: ``python -m bench [SUITE] [options]`` (run from the repository root).

Without a suite (or with ``all``) every workload runs: the embedded suite
against LMDB, then the network suite against redis-server; one table of
medians and ratios per suite, the targets met or not, one JSON file
(bench/results/all[-PROFILE]-DATE.json; --smoke writes one only with --json).
``--only`` takes embedded groups, network groups (server, zerocopy) or the
names ``embedded`` / ``network``.  Profiles: --smoke (seconds, proves it
works), --quick (under a minute), the default full run (under 15 minutes).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from typing import Any

SUITES = ("all", "embedded", "network", "render", "shards")


def build_parser() -> argparse.ArgumentParser:
    from bench import embedded, network, render

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="pastedb benchmarks against peers, reported as ratios. "
        "Without a SUITE, runs `all`.",
    )
    suites = parser.add_subparsers(dest="suite", metavar="SUITE")
    p_all = suites.add_parser(
        "all",
        help="every workload: embedded vs LMDB, network vs redis, zero-copy ablation (default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    embedded.add_arguments(p_all)
    network.add_arguments(p_all, standalone=False)
    p_all.add_argument(
        "--render",
        action="store_true",
        help="then draw bench/results/chart.png and rewrite the README section from the JSON",
    )

    embedded.add_arguments(
        suites.add_parser(
            "embedded",
            help="embedded API against LMDB (durable puts, batches, gets, scans, mixed, sizes)",
            description=embedded.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    network.add_arguments(
        suites.add_parser(
            "network",
            help="pastedb serve against redis-server via redis-benchmark; zero-copy vs --copy",
            description=network.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    from bench import shards

    shards.add_arguments(
        suites.add_parser(
            "shards",
            help="pastedb shards behind nutcracker against redis appendfsync-always shards",
            description=shards.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    render.add_arguments(
        suites.add_parser(
            "render",
            help="chart and README section from a results JSON",
            description=render.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return parser


def split_only(only: str | None) -> tuple[list[str] | None, list[str] | None]:
    """``--only`` of ``all``: embedded groups, network groups, or the names
    ``embedded`` / ``network`` for a whole suite.  None = all of a suite,
    [] = none of it."""
    from bench import embedded, network

    if not only:
        return None, None
    emb: list[str] = []
    net: list[str] = []
    for g in (x.strip() for x in only.split(",") if x.strip()):
        if g == "embedded":
            emb += embedded.GROUPS
        elif g == "network":
            net += network.GROUPS
        elif g in embedded.GROUPS:
            emb.append(g)
        elif g in network.GROUPS:
            net.append(g)
        else:
            raise SystemExit(
                f"unknown --only group {g!r}; choose from embedded, network, "
                f"{','.join(embedded.GROUPS + network.GROUPS)}"
            )
    return emb, net


def run_all(args: argparse.Namespace) -> int:
    from bench import embedded, internals, network, render
    from bench.common import default_json_path, progress, write_json

    emb_groups, net_groups = split_only(args.only)
    if args.pastedb_dir:
        sys.path.insert(0, os.path.abspath(args.pastedb_dir))
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    progress.start()
    emb_doc: dict[str, Any] | None = None
    net_doc: dict[str, Any] | None = None
    try:
        # plan the network part first so that the bar's length is known from the start
        net_args = copy.copy(args)
        net_args.net_only = net_groups if net_groups is not None else network.GROUPS
        peers_ok = not network.Peers.find().missing()
        if net_args.net_only and peers_ok:
            tmpfs_ok = network.tmpfs_dir(args.tmpfs_dir)[0] is not None
            modes = len(network.zc_modes(network.server_env(), network.profile_of(args)))
            progress.add_total(
                network.planned_steps(network.config(args), net_args.net_only, tmpfs_ok, modes)
            )
        if emb_groups != []:
            emb_args = copy.copy(args)
            emb_args.only = ",".join(emb_groups) if emb_groups else None
            rep = embedded.measure(emb_args)
            if isinstance(rep, int):
                return rep
            progress.finish()
            embedded.print_report(rep)
            progress.enabled = sys.stderr.isatty()
            emb_doc = rep.doc
        if net_args.net_only:
            res = network.measure(net_args, plan_progress=False)
            if isinstance(res, int):
                return res
            net_doc = res
    finally:
        progress.finish()
    if net_doc is not None:
        print(render.network_text(net_doc))

    profile = network.profile_of(args)
    total_s = time.monotonic() - t0
    not_available = list(network.NOT_AVAILABLE)
    if emb_doc is not None:
        not_available += internals.not_available(emb_doc.get("internals") or {})
    first = emb_doc or net_doc or {}
    doc: dict[str, Any] = {
        "suite": "all",
        "profile": profile,
        "started": started,
        "total_seconds": round(total_s, 1),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "machine": {
            **(first.get("machine") or {}),
            **(
                {"tmpfs": net_doc["machine"].get("tmpfs")}
                if net_doc and net_doc.get("machine")
                else {}
            ),
        },
        "versions": {
            **((net_doc or {}).get("versions") or {}),
            **((emb_doc or {}).get("versions") or {}),
        },
        "pastedb_build": first.get("pastedb_build"),
        "embedded": emb_doc,
        "network": net_doc,
        "not_available": not_available,
    }
    doc["targets"] = render.targets(doc)
    print()
    print("targets (pastedb / peer, medians of this run):")
    print(render.targets_table(doc))
    judged = [t for t in doc["targets"] if t["met"] is not None]  # None: wrong size to judge
    met = sum(1 for t in judged if t["met"])
    print(f"targets met: {met}/{len(judged)}")
    for na in not_available:
        print(f"{na['title']}: {na['why']}")
    print(f"total time {total_s:.0f}s")

    path = None
    if not args.no_json and (args.json or profile != "smoke"):
        path = args.json or default_json_path("all", profile)
        write_json(path, doc)
        print(f"results written to {path}")
    if args.render:
        if path is None:
            print("--render needs the JSON report (drop --no-json)", file=sys.stderr)
            return 2
        rargs = argparse.Namespace(
            chart=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "chart.png"),
            no_chart=False,
            readme=os.path.join(
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"
            ),
            no_readme=False,
            print=False,
        )
        return render.render(render.load(path), path, rargs)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # no suite named: `all` (but let -h/--help describe the whole program)
    if not argv or (argv[0] not in SUITES and argv[0] not in ("-h", "--help")):
        argv = ["all", *argv]
    args = build_parser().parse_args(argv)
    if args.suite == "all":
        return run_all(args)
    if args.suite == "embedded":
        from bench import embedded
        from bench.common import progress

        progress.start()
        try:
            return embedded.main(args)
        finally:
            progress.finish()
    if args.suite == "network":
        from bench import network

        return network.main(args)
    if args.suite == "shards":
        from bench import shards

        return shards.main(args)
    if args.suite == "render":
        from bench import render

        return render.main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
