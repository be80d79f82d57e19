"""Entry point: ``python -m bench <suite> [options]`` (run from the repository root)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="pastedb benchmarks against peers, reported as ratios.",
    )
    suites = parser.add_subparsers(dest="suite", metavar="SUITE")

    from bench import embedded

    embedded.add_arguments(
        suites.add_parser(
            "embedded",
            help="embedded API against LMDB (durable puts, batches, gets, scans, mixed, sizes)",
            description=embedded.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    args = parser.parse_args(argv)
    if args.suite is None:
        parser.print_help()
        return 2
    if args.suite == "embedded":
        return embedded.main(args)
    parser.error(f"unknown suite {args.suite!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
