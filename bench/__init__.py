"""pastedb benchmarks: standalone programs that print ratios against peers.

    python -m bench [all] [--quick | --smoke] [--json PATH] [--render]
    python -m bench embedded [--quick] [--json PATH] [--dir DIR]
    python -m bench network [--quick] [--json PATH] [--dir DIR] [--tmpfs-dir DIR]
    python -m bench render [RESULTS.json]

``all`` (the default) runs every suite in one run; ``--quick`` takes under
a minute, the full run under 15 minutes on the 2-core dev VM, ``--smoke`` a
few seconds (it proves the suite works and measures nothing).

``embedded`` runs pastedb and LMDB (py-lmdb, txn-per-put, sync=True) in the
same process and the same run, interleaving their repetitions (A B A B ...)
so machine drift hits both alike, and reports medians and pastedb/lmdb ratios
next to the physical limits measured in the same run (one fdatasync of a
4 KiB overwrite, memcpy bandwidth).  Its groups ``index``, ``open`` and
``space`` (bench/internals.py) have no peer: durable put latency with the
lazy B-tree index against the eager ablation (index="lazy" / "eager") at
1M keys, open time after a clean close and after kill -9 with a log tail,
and space after overwrites, each against its target.

``network`` starts ``pastedb serve`` (zero-copy and --copy) and redis-server
(appendfsync always, and everysec as a reference) fresh for every
repetition, drives them with redis-benchmark, and adds the zero-copy vs
--copy ablation on tmpfs and on the disk and the loopback PING limit.
Without redis installed it says how to install it (bench/install-peers.sh)
and is skipped.

``render`` draws bench/results/chart.png from a results file and rewrites
the README between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``.

Modules, a one-way import chain (each imports only those before it):
``common`` (environment helpers: statistics, timing, interleaving, the
physical probes, the machine and the pastedb build, starting and stopping
servers, redis-benchmark, the typed ``Run`` and the ``Suite`` / ``Part``
interfaces, progress bar, JSON output), ``render`` (all rendering: printed
reports, tables, targets, chart, README section, made from the JSON alone),
the suites ``embedded`` and ``network`` and the part ``internals`` (pastedb
against itself, run inside the embedded suite), which import only ``common``
and ``render``, and ``__main__`` (the command line, ``all``, and the table of
suites: adding a suite is one line there).
"""
