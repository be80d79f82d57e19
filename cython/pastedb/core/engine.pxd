# engine.pxd -- the database: put/get/delete/batch over pool + reflog + index.
#
# Also the C-level entry points the network server uses: it receives keys and
# values straight into pool extents and hands the engine references to them.

from libc.stdint cimport int64_t, uint32_t, uint64_t
from pastedb.core.clib cimport pthread_mutex_t, pthread_rwlock_t
from pastedb.core.index cimport Index, Ref
from pastedb.core.persist cimport Persist
from pastedb.core.pool cimport Pool
from pastedb.core.reflog cimport LogRecord, RefLog


cdef class DB:
    cdef object path                  # the database directory (str)
    cdef object pool_path             # the pool file inside it
    cdef int lock_fd                  # LOCK file, fcntl-locked: one writer process
    cdef object lock_ident            # its (st_dev, st_ino), in _held_locks while held
    cdef Pool pool                    # the mapped buffers
    cdef Persist persist              # barriers
    cdef RefLog log                   # the reference log
    cdef Index index                  # key -> Ref (in memory until the B-tree lands)
    cdef pthread_rwlock_t index_lock  # readers share; writers hold it inside the log lock
    cdef pthread_mutex_t data_lock    # guards the data extent cursor
    cdef uint64_t data_off            # next free byte of the current data extent
    cdef uint64_t data_end            # end of the current data extent
    cdef readonly bint sync_default   # sync= given to open()
    cdef int64_t closed               # set by close(); operations check it
    cdef int64_t active               # operations in flight (close waits for 0)
    cdef long fork_gen                # fork generation at open
    cdef int64_t live_bytes           # key + value bytes of live entries
    cdef uint64_t recovered_records   # records replayed at open
    cdef object recovery_note         # what open had to cut, for stats()/logging
    cdef uint64_t sb_seq              # seq of the superblock slot in force
    cdef object __weakref__           # for the after-fork registry

    # Operation bracket: enter() returns 0 or ST_CLOSED / ST_FORKED.
    cdef int enter(self) noexcept nogil
    cdef void leave(self) noexcept nogil

    # Reserve n bytes in a data extent (8-byte aligned).  0 or -errno.
    cdef int reserve_data(self, uint64_t n, uint64_t *off) noexcept nogil
    # Copy key (and value) into the pool and fill a PUT / DEL record for them.
    cdef int stage_put(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                       LogRecord *rec) noexcept nogil
    cdef int stage_delete(self, const char *k, uint32_t klen, LogRecord *rec) noexcept nogil
    # Append staged records (one batch when n > 1), update the index in log
    # order, optionally wait for durability.  *existed gets 1 when a DEL hit;
    # *last_lsn (may be NULL) the lsn of the last record appended.
    cdef int apply_records(self, LogRecord *recs, int n, int sync, int *existed,
                           uint64_t *last_lsn) noexcept nogil
    # Look a key up; 1 and *out filled, or 0.
    cdef int lookup(self, const char *k, uint32_t klen, Ref *out) noexcept nogil
    # Make everything appended so far durable.
    cdef int sync_all(self) noexcept nogil
    # Apply one logged record to the index (index write lock held, or replay).
    cdef int index_apply(self, const LogRecord *rec) noexcept nogil

    cdef int _put(self, const char *k, Py_ssize_t klen, const char *v, Py_ssize_t vlen,
                  int sync) noexcept nogil
    cdef object _get(self, object key, object default, bint raise_missing)
    cdef int _delete(self, const char *k, Py_ssize_t klen, int sync, int *existed) noexcept nogil
    cdef int _compact(self) noexcept nogil
