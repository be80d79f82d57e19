"""Durability barriers: cache-line flushes on DAX, fdatasync/msync elsewhere."""

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from pastedb.core.clib cimport (
    ENOMEM, MS_SYNC, errno, fdatasync, msync, pdb_flush_kind, pdb_flush_range, pdb_sfence,
    pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock,
)

from pastedb.core.pool cimport fault_hit

cdef uint64_t PAGE = 4096

_NAMES = {
    PERSIST_AUTO: "auto", PERSIST_NONE: "none", PERSIST_FDATASYNC: "fdatasync",
    PERSIST_MSYNC: "msync", PERSIST_PMEM: "pmem", PERSIST_CRASHSIM: "crashsim",
}
_MODES = {v: k for k, v in _NAMES.items()}


cdef str mode_name(PersistMode mode):
    return _NAMES[mode]


cdef PersistMode mode_from_name(str name) except *:
    try:
        return _MODES[name]
    except KeyError:
        raise ValueError(f"persist must be one of {sorted(_MODES)}, not {name!r}") from None


cdef class Persist:

    def __cinit__(self, Pool pool, int mode):
        self.pool = pool
        self.mode = <PersistMode>mode
        self.flush_kind = pdb_flush_kind()
        self.dirty_lo = <uint64_t>-1
        self.dirty_hi = 0
        pthread_mutex_init(&self.dirty_lock, NULL)

    def __dealloc__(self):
        self.drop_pending()
        free(self.pending)
        free(self.image)
        pthread_mutex_destroy(&self.dirty_lock)

    def start_crashsim(self):
        """Take the file as it is now as the durable image."""
        self.image_size = self.pool.size
        self.image = <char *>malloc(self.image_size if self.image_size else 1)
        if self.image == NULL:
            raise MemoryError()
        memcpy(self.image, self.pool.base, self.image_size)

    cdef void drop_pending(self) noexcept nogil:
        cdef size_t i
        for i in range(self.npending):
            free(self.pending[i].data)
        self.npending = 0

    cdef int image_apply(self, uint64_t off, const char *data, uint64_t n) noexcept nogil:
        cdef char *grown
        if off + n > self.image_size:
            grown = <char *>realloc(self.image, off + n)
            if grown == NULL:
                return -ENOMEM
            memset(grown + self.image_size, 0, off + n - self.image_size)
            self.image = grown
            self.image_size = off + n
        memcpy(self.image + off, data, n)
        return 0

    def crash_image(self, path, seed, double keep=0.5, double torn=0.25):
        """Write to `path` a pool file a power loss right now could leave: the
        durable image plus each pending write kept whole (probability keep),
        torn at a random 512-byte sector boundary (torn), or lost."""
        import random
        rnd = random.Random(seed)
        cdef size_t i
        cdef uint64_t n
        pthread_mutex_lock(&self.dirty_lock)
        try:
            out = bytearray(self.image[:self.image_size])
            for i in range(self.npending):
                x = rnd.random()
                n = self.pending[i].len
                if x < keep:
                    pass
                elif x < keep + torn and n > 512:
                    n = (rnd.randrange(1, (n + 511) // 512)) * 512
                else:
                    continue
                end = self.pending[i].off + n
                if end > len(out):
                    out.extend(bytes(end - len(out)))
                out[self.pending[i].off:end] = self.pending[i].data[:n]
        finally:
            pthread_mutex_unlock(&self.dirty_lock)
        with open(path, "wb") as f:
            f.write(out)
        return len(out)

    @property
    def pending_writes(self):
        return self.npending

    cdef void persist_range(self, const char *p, uint64_t n) noexcept nogil:
        cdef uint64_t lo, hi
        cdef PendingWrite *grown
        cdef char *copy
        if self.mode == PERSIST_CRASHSIM:
            copy = <char *>malloc(n if n else 1)
            pthread_mutex_lock(&self.dirty_lock)
            if self.npending == self.pending_cap:
                grown = <PendingWrite *>realloc(self.pending,
                                                (self.pending_cap * 2 + 64) * sizeof(PendingWrite))
                if grown != NULL:
                    self.pending = grown
                    self.pending_cap = self.pending_cap * 2 + 64
            if copy != NULL and self.npending < self.pending_cap:
                memcpy(copy, p, n)
                self.pending[self.npending].off = <uint64_t>(p - self.pool.base)
                self.pending[self.npending].len = n
                self.pending[self.npending].data = copy
                self.npending += 1
            else:
                free(copy)                      # out of memory in a test: the write is "lost"
            pthread_mutex_unlock(&self.dirty_lock)
        elif self.mode == PERSIST_PMEM:
            # Write back now, from the writer's own core; the fence comes
            # with the group's barrier.
            pdb_flush_range(self.flush_kind, p, n)
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
        cdef size_t i
        cdef int rc = fault_hit(&self.barrier_fault)
        if rc != 0:
            # As after a real failed fdatasync, what was pending may be gone.
            if self.mode == PERSIST_CRASHSIM:
                pthread_mutex_lock(&self.dirty_lock)
                self.drop_pending()
                pthread_mutex_unlock(&self.dirty_lock)
        elif self.mode == PERSIST_CRASHSIM:
            pthread_mutex_lock(&self.dirty_lock)
            for i in range(self.npending):
                if rc == 0:
                    rc = self.image_apply(self.pending[i].off, self.pending[i].data,
                                          self.pending[i].len)
            self.drop_pending()
            pthread_mutex_unlock(&self.dirty_lock)
        elif self.mode == PERSIST_FDATASYNC:
            if fdatasync(self.pool.fd) != 0:
                rc = -errno
        elif self.mode == PERSIST_PMEM:
            pdb_sfence()
        elif self.mode == PERSIST_MSYNC:
            pthread_mutex_lock(&self.dirty_lock)
            lo = self.dirty_lo
            hi = self.dirty_hi
            self.dirty_lo = <uint64_t>-1
            self.dirty_hi = 0
            pthread_mutex_unlock(&self.dirty_lock)
            if hi > self.pool.size:
                hi = self.pool.size               # the end was cut off (free segments only)
            if hi > lo:
                lo = lo // PAGE * PAGE
                if msync(self.pool.base + lo, hi - lo, MS_SYNC) != 0:
                    rc = -errno
        self.barriers += 1
        if rc != 0:
            self.barrier_errors += 1
        return rc
