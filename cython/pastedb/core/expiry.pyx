"""The time order of keys with an expiry (layout and rules: expiry.pxd)."""

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from pastedb.core.clib cimport ENOMEM


cdef inline void sift_up(ExpEntry **v, size_t i) noexcept nogil:
    cdef ExpEntry *e = v[i]
    cdef size_t p
    while i > 0:
        p = (i - 1) // 2
        if v[p].expire_ms <= e.expire_ms:
            break
        v[i] = v[p]
        i = p
    v[i] = e


cdef inline void sift_down(ExpEntry **v, size_t n, size_t i) noexcept nogil:
    cdef ExpEntry *e = v[i]
    cdef size_t c
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and v[c + 1].expire_ms < v[c].expire_ms:
            c += 1
        if v[c].expire_ms >= e.expire_ms:
            break
        v[i] = v[c]
        i = c
    v[i] = e


cdef class ExpiryHeap:

    def __dealloc__(self):
        self.clear()
        free(self.v)

    cdef int push(self, const char *key, uint32_t klen, uint64_t expire_ms, uint64_t lsn) noexcept nogil:
        cdef ExpEntry **grown
        cdef ExpEntry *e
        cdef size_t cap
        if self.n == self.cap:
            cap = self.cap * 2 if self.cap else 256
            grown = <ExpEntry **>realloc(self.v, cap * sizeof(ExpEntry *))
            if grown == NULL:
                return -ENOMEM
            self.v = grown
            self.cap = cap
        e = <ExpEntry *>malloc(sizeof(ExpEntry) + klen)
        if e == NULL:
            return -ENOMEM
        e.expire_ms = expire_ms
        e.lsn = lsn
        e.klen = klen
        if klen:
            memcpy(e.key, key, klen)
        self.v[self.n] = e
        self.n += 1
        sift_up(self.v, self.n - 1)
        return 0

    cdef void due_start(self, DueWalk *w, uint64_t now) noexcept nogil:
        w.now = now
        w.stack[0] = 0
        w.sp = 0 if self.n == 0 or self.v[0].expire_ms > now else 1

    cdef ExpEntry *due_next(self, DueWalk *w) noexcept nogil:
        cdef size_t i
        if w.sp == 0:
            return NULL
        w.sp -= 1
        i = w.stack[w.sp]
        if 2 * i + 1 < self.n and self.v[2 * i + 1].expire_ms <= w.now:
            w.stack[w.sp] = 2 * i + 1
            w.sp += 1
        if 2 * i + 2 < self.n and self.v[2 * i + 2].expire_ms <= w.now:
            w.stack[w.sp] = 2 * i + 2
            w.sp += 1
        return self.v[i]

    cdef ExpEntry *top(self) noexcept nogil:
        return self.v[0] if self.n else NULL

    cdef ExpEntry *pop(self) noexcept nogil:
        cdef ExpEntry *e
        if self.n == 0:
            return NULL
        e = self.v[0]
        self.n -= 1
        if self.n:
            self.v[0] = self.v[self.n]
            sift_down(self.v, self.n, 0)
        return e

    cdef void purge(self) noexcept nogil:
        cdef size_t i, j = 0
        for i in range(self.n):
            if self.v[i].lsn == 0:
                free(self.v[i])
            else:
                self.v[j] = self.v[i]
                j += 1
        self.n = j
        i = j // 2
        while i > 0:
            i -= 1
            sift_down(self.v, j, i)

    cdef void clear(self) noexcept nogil:
        cdef size_t i
        for i in range(self.n):
            free(self.v[i])
        self.n = 0
