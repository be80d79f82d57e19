"""pastedb benchmarks: standalone programs that print ratios against peers.

    python -m bench embedded [--quick] [--json PATH] [--dir DIR]

``embedded`` runs pastedb and LMDB (py-lmdb, txn-per-put, sync=True) in the
same process and the same run, interleaving their repetitions (A B A B ...)
so machine drift hits both alike, and reports medians and pastedb/lmdb ratios
next to the physical limits measured in the same run (one fdatasync of a
4 KiB overwrite, memcpy bandwidth).

Modules: ``common`` (timing, interleaving, statistics, physical probes,
machine description, table and JSON output), ``embedded`` (the engines and
the workloads).
"""
