# expiry.pxd -- the in-memory time order of keys with an expiry.
#
# The engine keeps, next to its pending table, a map key -> Ref of every live
# key whose Ref has an expire_ms (an Index over the pool's key bytes, changed
# with the pending table under the index write lock) and this heap, ordered
# by expire_ms, of (expire_ms, lsn, key copy).  A heap entry is current while
# the map still holds that key with that lsn; others are stale and dropped as
# they surface (an overwrite does not search the heap).  So "expired but not
# yet deleted" is counted by visiting only the entries due by now, and the
# active expirer takes the due ones off the top.
#
# Not thread-safe by itself: the engine guards it with its exp_lock.

from libc.stdint cimport uint32_t, uint64_t


cdef struct ExpEntry:
    uint64_t expire_ms                # when the key expires (ms since the Unix epoch)
    uint64_t lsn                      # the record that set it (current while the map agrees)
    uint32_t klen                     # key length
    char key[1]                       # the key bytes (allocated klen long)


# A walk over the entries due by `now` (due_start / due_next): depth first,
# pruned below any entry later than now (its subtree is later still), so the
# cost is the number of due entries.  At most one pending sibling per level is
# on the stack (the heap is shallower than 64 levels).
cdef struct DueWalk:
    uint64_t now
    size_t sp
    size_t stack[64]


cdef class ExpiryHeap:
    cdef ExpEntry **v                 # binary min-heap on expire_ms
    cdef size_t n                     # entries in use (stale ones included)
    cdef size_t cap                   # allocated

    # Add an entry (the key copied).  0 or -ENOMEM.
    cdef int push(self, const char *key, uint32_t klen, uint64_t expire_ms, uint64_t lsn) noexcept nogil
    # The earliest entry, or NULL when empty.
    cdef void due_start(self, DueWalk *w, uint64_t now) noexcept nogil
    # The next entry due by w.now (stale ones included), or NULL at the end.
    cdef ExpEntry *due_next(self, DueWalk *w) noexcept nogil
    cdef ExpEntry *top(self) noexcept nogil
    # Remove the earliest entry and hand it to the caller (free() it), or NULL.
    cdef ExpEntry *pop(self) noexcept nogil
    # Drop (and free) every entry whose lsn the caller set to 0 (stale), re-heapify.
    cdef void purge(self) noexcept nogil
    cdef void clear(self) noexcept nogil
