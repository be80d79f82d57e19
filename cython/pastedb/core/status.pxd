# status.pxd -- how the nogil core reports failure.
#
# Every core function that can fail returns an int status: 0 (ST_OK) or a
# negative value, either -errno from a system call or one of the codes below.
# Nothing in the core raises; the Python edge turns a status into the right
# exception in exactly one place (status.raise_status).

cdef enum:
    ST_OK = 0
    ST_CORRUPT = -1000        # a checksum, magic or reference did not verify
    ST_TOO_BIG = -1001        # key or value beyond the limits
    ST_CLOSED = -1002         # the database was closed
    ST_FAILED = -1003         # an earlier barrier failed: nothing more is acknowledged
    ST_LOCKED = -1004         # another process holds the write lock
    ST_FORKED = -1005         # used in a child process after fork()
    ST_VERSION = -1006        # on-disk format from an unknown version
    ST_NOT_DAX = -1007        # pmem persistence asked for on a file that is not DAX
    ST_VALUE_DAMAGED = -1008  # a value read back does not match its checksum (or lies outside the file)
    ST_NO_MAP_SYNC = -1009    # the file system refused MAP_SYNC (the pool falls back to msync)
    ST_READONLY = -1010       # a write on a read-only handle

# Raise the exception for a negative status; `what` says which operation and
# `path` which file.  Returns 0 for ST_OK.
cdef int raise_status(int status, str what, object path) except -1
