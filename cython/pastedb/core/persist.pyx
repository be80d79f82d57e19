"""Durability barriers: cache-line flushes on DAX, fdatasync/msync elsewhere,
all through the pool's File (so the crash simulator sees every one)."""

from libc.stdint cimport uint64_t

from pastedb.core.clib cimport (
    pdb_flush_kind, pdb_flush_range, pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock,
    pthread_mutex_unlock,
)

cdef uint64_t PAGE = 4096

_NAMES = {
    PERSIST_AUTO: "auto", PERSIST_NONE: "none", PERSIST_FDATASYNC: "fdatasync",
    PERSIST_MSYNC: "msync", PERSIST_PMEM: "pmem",
}
_MODES = {v: k for k, v in _NAMES.items()}
# Test-only names: the backend as in production, its barriers simulated (vfs.pxd).
_SIMULATED = {"crashsim": PERSIST_FDATASYNC, "crashsim-msync": PERSIST_MSYNC,
              "crashsim-pmem": PERSIST_PMEM}


cdef str mode_name(PersistMode mode):
    return _NAMES[mode]


cdef PersistMode mode_from_name(str name, int *sim) except *:
    sim[0] = name in _SIMULATED
    if sim[0]:
        return _SIMULATED[name]
    try:
        return _MODES[name]
    except KeyError:
        raise ValueError(f"persist must be one of {sorted(_MODES) + sorted(_SIMULATED)}, "
                         f"not {name!r}") from None


cdef class Persist:

    def __cinit__(self, Pool pool, int mode):
        self.pool = pool
        self.mode = <PersistMode>mode
        self.flush_kind = pdb_flush_kind()
        self.dirty_lo = <uint64_t>-1
        self.dirty_hi = 0
        pthread_mutex_init(&self.dirty_lock, NULL)

    def __dealloc__(self):
        pthread_mutex_destroy(&self.dirty_lock)

    cdef void persist_range(self, const char *p, uint64_t n) noexcept nogil:
        cdef uint64_t lo, hi
        if self.mode == PERSIST_PMEM:
            # Write back now, from the writer's own core; the fence comes
            # with the group's barrier.
            pdb_flush_range(self.flush_kind, p, n)
            self.pool.file.note_store(<uint64_t>(p - self.pool.base), p, n)
        elif self.mode == PERSIST_MSYNC:
            lo = <uint64_t>(p - self.pool.base)
            hi = lo + n
            pthread_mutex_lock(&self.dirty_lock)
            if lo < self.dirty_lo:
                self.dirty_lo = lo
            if hi > self.dirty_hi:
                self.dirty_hi = hi
            pthread_mutex_unlock(&self.dirty_lock)

    cdef int barrier(self) noexcept nogil:
        cdef uint64_t lo, hi
        cdef int rc = 0
        if self.mode == PERSIST_FDATASYNC:
            rc = self.pool.file.sync()
        elif self.mode == PERSIST_PMEM:
            rc = self.pool.file.fence()
        elif self.mode == PERSIST_MSYNC:
            pthread_mutex_lock(&self.dirty_lock)
            lo = self.dirty_lo
            hi = self.dirty_hi
            self.dirty_lo = <uint64_t>-1
            self.dirty_hi = 0
            pthread_mutex_unlock(&self.dirty_lock)
            if hi > self.pool.size:
                hi = self.pool.size               # the end was cut off (free segments only)
            if hi <= lo:
                lo = hi = 0
            lo = lo // PAGE * PAGE
            rc = self.pool.file.msync(self.pool.base + lo, hi - lo)
        self.barriers += 1
        if rc != 0:
            self.barrier_errors += 1
        return rc
