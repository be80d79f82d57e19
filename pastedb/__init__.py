"""pastedb -- an embedded durable key-value store built on the PASTE design.

Values live in fixed-size buffers of a memory-mapped pool file; a write becomes
durable through one barrier over those bytes and a small checksummed log record
that references them -- the value is never copied into a log.

    import pastedb
    with pastedb.open("/var/lib/mydb") as db:
        db[b"user:1"] = b"alice"
        assert db[b"user:1"] == b"alice"
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from pastedb.core.engine import DB, Batch, Cursor, limits
from pastedb.core.engine import open_db as _open_db
from pastedb.databases import Database
from pastedb.dump import DumpFormatError, dump, load
from pastedb.errors import CorruptionError, Error, LockedError

__all__ = ["open", "DB", "Database", "Batch", "Cursor", "Error", "CorruptionError", "LockedError",
           "DumpFormatError", "limits", "dump", "load"]
__version__ = "0.1.0"

MutableMapping.register(DB)

_OPTIONS = {"persist", "index", "faults"}


def open(
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    sync: bool = True,
    readonly: bool = False,
    **options: Any,
) -> DB:
    """Open (or create) the database in directory ``path``.

    create:  make the directory and database when missing; with ``create=False``
             a missing database raises :class:`FileNotFoundError`.
    sync:    ``True`` (default): every write returns once it is durable.
             ``False``: writes are durable after :meth:`DB.sync` (or close), and
             meanwhile still survive the process being killed.
    persist: ``"auto"`` (default; ``"pmem"`` on a DAX file system, else
             ``"fdatasync"``), ``"pmem"``, ``"fdatasync"``, ``"msync"`` or
             ``"none"`` (no barrier: survives a process crash, not power loss).
             ``"crashsim"``, ``"crashsim-msync"``, ``"crashsim-pmem"`` are for
             tests: the fdatasync, msync or pmem backend as in production,
             its barriers simulated by the I/O layer (core/vfs.pxd), and
             ``db._crash_image(directory, seed)`` writes the pool and index
             files a power loss could leave behind.
    readonly: ``True``: a read-only handle, beside the one writer (an embedded
             DB or ``pastedb serve`` in another process) or with none; any
             number of them, in any processes.  It never writes a database
             file (it registers in the READERS table, so the writer keeps
             what it reads).  Each call sees at least every write that was
             durable when the call began; writes raise :class:`Error`.
             ``create``, ``sync``, ``persist`` and ``index`` do not apply.
             After ``fork()`` open a new handle in the child.
    index:   ``"lazy"`` (default): a background indexer moves new writes into
             the persistent B-tree off the write path.  ``"eager"``: every
             write updates the B-tree itself (the ablation the benchmark
             compares against; slower, same results).
    faults:  tests only: ``{"write"|"barrier"|"grow"|"io"|"kill": n,
             "persistent": bool, "errno": "EIO"|"ENOSPC", "torn": bytes,
             "images": (every, prefix, seed), "from_open": bool}`` makes the
             n-th such operation of any database file fail ("kill": SIGKILL
             there), counted from the end of open (from its start with
             ``from_open``); see ``Vfs.arm`` in core/vfs.pyx.

    Raises :class:`LockedError` at once if another process has it open for
    writing (a read-only open never waits and is never refused for that).
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown option(s) for pastedb.open(): {', '.join(sorted(unknown))}")
    if readonly:
        if options.get("faults"):
            raise TypeError("faults= does not apply to a read-only open")
        return _open_db(path, readonly=True)
    return _open_db(path, create=create, sync=sync, persist=options.get("persist", "auto"),
                    index=options.get("index", "lazy"), faults=options.get("faults"))
