# index.pxd -- the in-memory ordered index: key -> Ref.
#
# Until the persistent B-tree lands this is the whole index (rebuilt from the
# log at open); afterwards it serves as the pending table in front of the
# tree.  Keys are NOT copied: a Ref names where the key bytes live in the pool
# mapping (base + koff), and the index compares and hashes them there.
#
# Not thread-safe by itself: the engine serialises writers and readers with
# its own rwlock.  All methods are nogil and never touch Python objects.

from libc.stdint cimport uint32_t, uint64_t


cdef struct Ref:
    uint64_t koff      # byte offset of the key in the pool file
    uint64_t voff      # byte offset of the value in the pool file
    uint64_t vlen      # value length in bytes
    uint64_t lsn       # log sequence number of the record that wrote this
    uint32_t klen      # key length in bytes
    uint32_t vcrc      # crc32c of the value bytes (verified by get when asked)
    uint64_t expire_ms # absolute expiry, ms since the Unix epoch; 0 none (after vcrc:
                       # a version-1 leaf cell holds the Ref up to here)


cdef struct Node                        # opaque skip-list node


cdef class Index:
    cdef const char *base               # pool mapping base; key bytes at base + koff
    cdef Node *head                     # skip-list head sentinel (no key)
    cdef int level                      # highest level in use (1-based)
    cdef Node **table                   # open-addressing hash table of node pointers
    cdef size_t table_cap               # power of two
    cdef size_t table_used              # occupied slots
    cdef readonly size_t count          # live keys
    cdef uint64_t rng                   # xorshift state for node levels
    cdef uint64_t hash_seed             # per-index random hash seed (no crafted collisions)

    # Point the index at the pool mapping; must be set before the first put
    # and again whenever the mapping moves.
    cdef void set_base(self, const char *base) noexcept nogil

    # Insert or replace.  Returns 1 if the key existed (its previous Ref is
    # copied to *old when old != NULL), 0 if it was new, -1 on out of memory.
    cdef int put(self, const char *key, uint32_t klen, const Ref *ref, Ref *old) noexcept nogil
    # Returns 1 and fills *out if present, 0 if not.
    cdef int get(self, const char *key, uint32_t klen, Ref *out) noexcept nogil
    # Returns 1 (and the removed Ref in *old when old != NULL) if it was present, else 0.
    cdef int remove(self, const char *key, uint32_t klen, Ref *old) noexcept nogil
    # Drop every entry.
    cdef void clear(self) noexcept nogil

    # Ordered positioning.  Each returns the node found or NULL.
    cdef Node *first(self) noexcept nogil
    cdef Node *last(self) noexcept nogil
    cdef Node *seek_ge(self, const char *key, uint32_t klen) noexcept nogil   # first >= key
    cdef Node *seek_gt(self, const char *key, uint32_t klen) noexcept nogil   # first >  key
    cdef Node *seek_lt(self, const char *key, uint32_t klen) noexcept nogil   # last  <  key
    cdef Node *seek_le(self, const char *key, uint32_t klen) noexcept nogil   # last  <= key
    cdef Node *next(self, Node *n) noexcept nogil
    cdef Node *prev(self, Node *n) noexcept nogil
    cdef const Ref *node_ref(self, Node *n) noexcept nogil


# memcmp order, shorter key first on a common prefix.
cdef int key_compare(const char *a, uint32_t alen, const char *b, uint32_t blen) noexcept nogil
