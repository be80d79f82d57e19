"""The pastedb exception tree.  Everything pastedb raises on its own account is a
:class:`Error`; operating-system failures stay :class:`OSError` (ENOSPC, EIO, ...)."""

from __future__ import annotations

import os

__all__ = ["Error", "CorruptionError", "LockedError", "ClusterError"]


class Error(Exception):
    """Base class of pastedb's own errors (also: use after close, use after fork)."""


class CorruptionError(Error):
    """A file of the database failed verification.

    ``path`` names the damaged file.  ``pastedb-check --repair DIR`` restores a
    consistent database from what verifies and reports exactly what it dropped.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None


class LockedError(Error):
    """The database is open for writing in another process (raised at once)."""


class ClusterError(Error):
    """``pastedb cluster`` could not start, stop or read a sharded set-up
    (nutcracker missing, a port in use, a process that did not come up)."""
