"""Online backup: a compacted, verified copy of a live database.

The point in time: a read-only handle's state when the backup starts -- the
tree commit it reads plus the log up to the writer's durable lsn at that
moment.  So the copy holds every write acknowledged before ``backup()`` was
called (on a writer handle, every write made before it: it syncs first), and
nothing written after that state was taken.  Writes go on meanwhile: the
reader's slot keeps the writer from reusing what the copy still reads.

The copy is written as a fresh database in a temporary directory beside
``dest`` (live entries only, in key order), closed (checkpointed and
durable), verified the way ``pastedb-check`` verifies, then renamed to
``dest`` and the parent directory synced.  ``dest`` must not exist.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from typing import Any

from pastedb.errors import Error

BATCH = 1024                          # puts per batch in the copy


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(db: Any, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy the database ``db`` (an open handle, writer or read-only) to the
    new directory ``dest``.  Returns {"path", "keys", "bytes", "lsn",
    "seconds"}; raises FileExistsError when dest exists and Error when the
    copy does not verify (nothing is left at dest then)."""
    from pastedb import check
    from pastedb.core.engine import open_db

    dest = os.path.abspath(os.fspath(dest))
    if os.path.lexists(dest):
        raise FileExistsError(f"backup: {dest} already exists")
    if os.path.abspath(db.path) == dest:
        raise ValueError("backup: the destination is the database itself")
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"backup: {parent} does not exist")
    t0 = time.perf_counter()
    own_reader = not db.readonly
    if own_reader:
        db.sync()                     # sync=False writes made before the call are in
        src = open_db(db.path, readonly=True)
    else:
        src = db
    tmp = os.path.join(parent, f".{os.path.basename(dest)}.backup-{os.getpid()}-"
                               f"{secrets.token_hex(4)}")
    keys = nbytes = 0
    try:
        lsn = src._freeze(True)
        try:
            out = open_db(tmp, create=True, sync=False, persist="fdatasync")
            try:
                it = iter(src._items_with_expiry(raw=True))   # every database's keys
                while True:
                    with out.batch() as b:
                        n = 0
                        for k, v, at in it:
                            if at:
                                b._put_at(k, v, at)   # the same absolute expiry
                            else:
                                b.put(k, v)
                            keys += 1
                            nbytes += len(k) + len(v)
                            n += 1
                            if n == BATCH:
                                break
                    if n < BATCH:
                        break
            finally:
                out.close()           # checkpoint: the copy is durable and replays nothing
        finally:
            src._freeze(False)
        for name in ("READERS", "LOCK"):
            try:
                os.unlink(os.path.join(tmp, name))
            except FileNotFoundError:
                pass
        res = check.verify(tmp)
        try:
            if not res.ok:
                raise Error(f"backup: the copy in {tmp} does not verify: "
                            + "; ".join(p.message for p in res.problems[:3]))
        finally:
            res.checker.close()
        _fsync_dir(tmp)
        os.rename(tmp, dest)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if own_reader:
            src.close()
    return {"path": dest, "keys": keys, "bytes": nbytes, "lsn": lsn,
            "seconds": time.perf_counter() - t0}
