"""Status codes of the nogil core, and the one place they become exceptions."""

import errno as _errno
import os

from pastedb.errors import CorruptionError, Error, LockedError


cdef int raise_status(int status, str what, object path) except -1:
    if status == ST_OK:
        return 0
    where = f" ({path})" if path is not None else ""
    if status == ST_CORRUPT:
        raise CorruptionError(
            f"{what}: data failed verification in {path}; "
            f"run 'pastedb-check --repair' on the database directory", path)
    if status == ST_TOO_BIG:
        raise ValueError(f"{what}: key or value exceeds the size limits")
    if status == ST_CLOSED:
        raise Error(f"{what}: the database is closed")
    if status == ST_FAILED:
        raise Error(
            f"{what}: an earlier durability barrier failed{where}; no further writes are "
            f"acknowledged -- close and reopen the database")
    if status == ST_LOCKED:
        raise LockedError(f"{what}: the database{where} is open for writing in another process")
    if status == ST_FORKED:
        raise Error(f"{what}: this database handle was inherited across fork(); "
                    f"open the database again in the child")
    if status == ST_VERSION:
        raise CorruptionError(f"{what}: {path} has an on-disk format version this pastedb "
                              f"does not know", path)
    if status == ST_VALUE_DAMAGED:
        # `what` names the operation and the value ("get: the value of key ...").
        raise CorruptionError(
            f"{what} in {path} does not match its checksum (or lies outside the file); "
            f"run 'pastedb-check --repair {os.path.dirname(path) if path else ''}'", path)
    if status == ST_READONLY:
        raise Error(f"{what}: this database handle is read-only (opened with readonly=True)")
    if status == ST_NO_MAP_SYNC:
        raise Error(f"{what}: the file system refused MAP_SYNC{where}")
    if status == ST_NOT_DAX:
        raise Error(f"{what}: persist='pmem' needs a DAX file system (mmap with MAP_SYNC "
                    f"failed for {path}); set PASTEDB_PMEM_EMULATE=1 only for testing")
    if status < 0 and -status < 1000:
        code = -status
        msg = f"{what}: {os.strerror(code)}{where}"
        if code == _errno.ENOMEM:
            raise MemoryError(msg)
        raise OSError(code, msg)
    raise Error(f"{what}: unknown internal status {status}")


def _raise_status(int status, str what, path=None):
    """Python-visible wrapper for tests."""
    raise_status(status, what, path)
