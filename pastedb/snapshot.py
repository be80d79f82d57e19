"""Snapshots: ``with db.snapshot() as s:`` a read-only view that sees the
database exactly as it was when ``snapshot()`` returned.

A snapshot is a read-only handle on the same files, in this process, caught
up with the writer once and then frozen there: its tree commit plus its own
copy of the log tail it replayed.  Nothing the writer does afterwards --
writes, deletes, checkpoints, compaction, space reclamation -- changes what it
reads, because it holds a slot of the reader table, and the writer neither
reuses a tree page an older commit than the slot's can reach nor frees a
segment the slot's log position can still reach (docs/ARCHITECTURE.md,
"readers").  Expiry is seen at the snapshot's moment too: its clock stands
still.

The moment: every write acknowledged before ``snapshot()`` was called is in
it (a ``sync=False`` handle syncs first), no write that began after it
returned is.  Taking one costs an open of a read-only handle: mapping the
files and replaying the log since the last checkpoint (at most one
checkpoint interval of records).  A snapshot left open holds space: close it
(``with`` does); ``DB.close()`` closes the ones still open, and
``stats()["snapshots"]`` counts them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from pastedb.errors import Error

Buffer = bytes | bytearray | memoryview


class Snapshot:
    """What :meth:`DB.snapshot` returns: the read calls of a DB, on one
    frozen state."""

    def __init__(self, db: Any):
        from pastedb.core.engine import open_db

        if db.readonly:
            raise Error("snapshot(): take it on the writer handle (a read-only handle "
                        "follows the writer; open another one for a second state)")
        db.sync()                               # acknowledged sync=False writes are in
        self._db = db
        self._h = open_db(os.fspath(db.path), readonly=True)
        try:
            self._h._freeze(True)
            self._h._set_clock(db._now_ms())     # expiry as at this moment, for good
        except BaseException:
            self._h.close()
            raise
        db._snapshot_opened(self)

    # -- the reads
    def database(self, n: int) -> Any:
        """Database n as it was at the snapshot (a read view: the writes of a
        :class:`pastedb.Database` raise, the handle being read-only)."""
        return self._h.database(n)

    def get(self, key: Buffer, default: Any = None) -> Any:
        return self._h.get(key, default)

    def __getitem__(self, key: Buffer) -> bytes:
        return self._h[key]

    def __contains__(self, key: object) -> bool:
        return key in self._h

    def __len__(self) -> int:
        return len(self._h)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._h)

    def keys(self, start: Buffer | None = None, stop: Buffer | None = None, *,
             prefix: Buffer | None = None, reverse: bool = False,
             limit: int | None = None) -> Iterator[bytes]:
        return self._h.keys(start, stop, prefix=prefix, reverse=reverse, limit=limit)

    def values(self, start: Buffer | None = None, stop: Buffer | None = None, *,
               prefix: Buffer | None = None, reverse: bool = False,
               limit: int | None = None) -> Iterator[bytes]:
        return self._h.values(start, stop, prefix=prefix, reverse=reverse, limit=limit)

    def items(self, start: Buffer | None = None, stop: Buffer | None = None, *,
              prefix: Buffer | None = None, reverse: bool = False,
              limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._h.items(start, stop, prefix=prefix, reverse=reverse, limit=limit)

    def get_many(self, keys: Iterable[Buffer]) -> list[bytes | None]:
        return self._h.get_many(keys)

    def view(self, key: Buffer) -> Any:
        return self._h.view(key)

    # -- its life
    @property
    def closed(self) -> bool:
        return bool(self._h.closed)

    def close(self) -> None:
        """Release the snapshot (and what it holds of the files).  Idempotent."""
        if not self._h.closed:
            try:
                self._h.close()
            finally:
                self._db._snapshot_closed(self)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<pastedb.Snapshot of {self._db.path!r} ({state})>"
