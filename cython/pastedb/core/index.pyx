# index.pyx -- the in-memory ordered index: a skip list for order plus an
# open-addressing hash table of the same nodes for O(1) point operations.
#
# Layout of one node (a single malloc):
#
#     [ Node header: ref | prev | hash | kprefix | height ][ forward[0 .. height-1] ]
#
# The forward array follows the header directly (see `fwd`); the head sentinel
# has MAX_LEVEL slots and no key.  Level 0 is doubly linked through `prev`
# (NULL on the first node) so backward cursors never search.
#
# Hash table invariants (linear probing, backward-shift deletion, so there are
# never tombstones):
#   * table_used == count, and table_used <= table_cap * 5/8 (it grows past
#     that and halves below 1/8, never below TABLE_MIN_CAP; empty == NULL);
#   * every slot between a node's home slot (hash & mask) and the slot holding
#     it is occupied -- a lookup may stop at the first empty slot.
#
# Keys are never copied: every comparison reads base + ref.koff.  A replace
# swaps the node's Ref for the new one, so the old key bytes may be reused by
# the pool as soon as put() returns.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t, SIZE_MAX
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcmp, memcpy, memset


cdef enum:
    MAX_LEVEL = 32              # levels of the head; p = 1/4 covers 2**64 keys
    TABLE_MIN_CAP = 16          # smallest hash table (power of two)
    # Grow above 5/8 load, shrink below 1/8: keeps probes short and halving
    # after a shrink still leaves room before the next grow.
    LOAD_NUM = 5
    LOAD_DEN = 8
    SHRINK_DEN = 8


cdef struct Node:
    Ref ref                     # where the key and value live in the pool
    Node *prev                  # previous node at level 0 (NULL on the first)
    uint64_t hash               # hash of the key bytes; saves rehashing on grow/delete
    uint64_t kprefix            # key_prefix() of the key: most compares stop here
    uint32_t height             # number of forward pointers after the header


cdef inline Node **fwd(Node *n) noexcept nogil:
    return <Node **>(<char *>n + sizeof(Node))


cdef int key_compare(const char *a, uint32_t alen, const char *b, uint32_t blen) noexcept nogil:
    cdef uint32_t n = alen if alen < blen else blen
    cdef int c = 0
    if n:
        c = memcmp(a, b, n)
    if c != 0:
        return -1 if c < 0 else 1
    return (alen > blen) - (alen < blen)


# Unaligned native-endian loads (memcpy compiles to one mov).
cdef inline uint64_t load64(const char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint32_t load32(const char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t load64_be(const char *p) noexcept nogil:
    # gcc turns this into one load + bswap.
    cdef const uint8_t *u = <const uint8_t *>p
    return ((<uint64_t>u[0] << 56) | (<uint64_t>u[1] << 48) | (<uint64_t>u[2] << 40)
            | (<uint64_t>u[3] << 32) | (<uint64_t>u[4] << 24) | (<uint64_t>u[5] << 16)
            | (<uint64_t>u[6] << 8) | <uint64_t>u[7])


cdef inline uint64_t key_prefix(const char *key, uint32_t klen) noexcept nogil:
    # The first 8 key bytes as a big-endian integer, zero padded.  Where two
    # prefixes differ, their integer order is the key_compare order (a key
    # that runs out first compares as 0 bytes, and is then a proper prefix of
    # the other), so the skip-list descent rarely has to read key bytes in
    # the pool -- a cache miss per comparison saved.
    cdef uint64_t v = 0
    cdef uint32_t i
    if klen >= 8:
        return load64_be(key)
    for i in range(8):
        v <<= 8
        if i < klen:
            v |= (<const uint8_t *>key)[i]
    return v


cdef inline int cmp_node(const char *base, Node *n, const char *key, uint32_t klen,
                         uint64_t kprefix) noexcept nogil:
    # key_compare(node key, key), reading the node's key only when needed.
    if n.kprefix != kprefix:
        return -1 if n.kprefix < kprefix else 1
    if n.ref.klen <= 8 and klen <= 8:
        # Equal padded prefixes: the shorter key is the longer one cut short.
        return (n.ref.klen > klen) - (n.ref.klen < klen)
    return key_compare(base + n.ref.koff, n.ref.klen, key, klen)


# ---------------------------------------------------------------- hashing
# XXH64 (Yann Collet), seeded per index so the table cannot be flooded with
# keys chosen to collide.  Native-endian loads: the hash never leaves memory.

# The primes are literals (not module globals) so the C compiler folds them.
cdef inline uint64_t P1() noexcept nogil:
    return 0x9E3779B185EBCA87ULL


cdef inline uint64_t P2() noexcept nogil:
    return 0xC2B2AE3D27D4EB4FULL


cdef inline uint64_t P3() noexcept nogil:
    return 0x165667B19E3779F9ULL


cdef inline uint64_t P4() noexcept nogil:
    return 0x85EBCA77C2B2AE63ULL


cdef inline uint64_t P5() noexcept nogil:
    return 0x27D4EB2F165667C5ULL


cdef inline uint64_t rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t xxh_round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc = acc + lane * P2()
    acc = rotl64(acc, 31)
    return acc * P1()


cdef inline uint64_t xxh_merge(uint64_t acc, uint64_t v) noexcept nogil:
    acc = acc ^ xxh_round(0, v)
    return acc * P1() + P4()


cdef uint64_t key_hash(const char *p, uint32_t len, uint64_t seed) noexcept nogil:
    cdef const char *end = p + len
    cdef const char *limit
    cdef uint64_t h, v1, v2, v3, v4
    if len >= 32:
        limit = end - 32
        v1 = seed + P1() + P2()
        v2 = seed + P2()
        v3 = seed
        v4 = seed - P1()
        while p <= limit:
            v1 = xxh_round(v1, load64(p))
            v2 = xxh_round(v2, load64(p + 8))
            v3 = xxh_round(v3, load64(p + 16))
            v4 = xxh_round(v4, load64(p + 24))
            p += 32
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18)
        h = xxh_merge(h, v1)
        h = xxh_merge(h, v2)
        h = xxh_merge(h, v3)
        h = xxh_merge(h, v4)
    else:
        h = seed + P5()
    h += len
    while p + 8 <= end:
        h ^= xxh_round(0, load64(p))
        h = rotl64(h, 27) * P1() + P4()
        p += 8
    if p + 4 <= end:
        h ^= <uint64_t>load32(p) * P1()
        h = rotl64(h, 23) * P2() + P3()
        p += 4
    while p < end:
        h ^= <uint64_t>(<const uint8_t *>p)[0] * P5()
        h = rotl64(h, 11) * P1()
        p += 1
    h ^= h >> 33
    h *= P2()
    h ^= h >> 29
    h *= P3()
    h ^= h >> 32
    return h


cdef inline uint64_t xorshift64(uint64_t *state) noexcept nogil:
    cdef uint64_t x = state[0]
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    state[0] = x
    return x


cdef uint64_t seed_from_os() except 0:
    import os
    cdef uint64_t s = <uint64_t>int.from_bytes(os.urandom(8), "little")
    return s if s != 0 else <uint64_t>0x9E3779B97F4A7C15ULL


# ------------------------------------------------------------ hash table
# Module-level helpers rather than methods so the .pxd keeps only the
# contract.  All take the Index explicitly.

cdef inline size_t table_find(Index ix, const char *key, uint32_t klen, uint64_t h) noexcept nogil:
    cdef size_t mask, i
    cdef Node *n
    if ix.table_cap == 0:           # never allocated, or cleared
        return SIZE_MAX
    mask = ix.table_cap - 1
    i = <size_t>h & mask
    while True:
        n = ix.table[i]
        if n == NULL:
            return SIZE_MAX
        if (n.hash == h and n.ref.klen == klen
                and memcmp(ix.base + n.ref.koff, key, klen) == 0):
            return i
        i = (i + 1) & mask


cdef inline void table_place(Node **table, size_t mask, Node *n) noexcept nogil:
    cdef size_t i = <size_t>n.hash & mask
    while table[i] != NULL:
        i = (i + 1) & mask
    table[i] = n


cdef int table_resize(Index ix, size_t new_cap) noexcept nogil:
    """Rehash into new_cap slots.  -1 (table untouched) when calloc fails."""
    cdef Node **t = <Node **>calloc(new_cap, sizeof(Node *))
    cdef size_t i
    if t == NULL:
        return -1
    for i in range(ix.table_cap):
        if ix.table[i] != NULL:
            table_place(t, new_cap - 1, ix.table[i])
    free(ix.table)
    ix.table = t
    ix.table_cap = new_cap
    return 0


cdef void table_delete_at(Index ix, size_t i) noexcept nogil:
    # Backward shift: pull each later entry of the run into the hole unless
    # that would put it before its home slot.  An entry at j with home k may
    # move to hole i iff its displacement (j - k) reaches back to i.
    cdef size_t mask = ix.table_cap - 1
    cdef size_t j = i
    cdef Node *n
    while True:
        j = (j + 1) & mask
        n = ix.table[j]
        if n == NULL:
            break
        if ((j - (<size_t>n.hash & mask)) & mask) >= ((j - i) & mask):
            ix.table[i] = n
            i = j
    ix.table[i] = NULL
    ix.table_used -= 1


# ------------------------------------------------------------- the index

cdef Node *node_alloc(uint32_t height) noexcept nogil:
    cdef Node *n = <Node *>malloc(sizeof(Node) + height * sizeof(Node *))
    if n == NULL:
        return NULL
    memset(n, 0, sizeof(Node) + height * sizeof(Node *))
    n.height = height
    return n


cdef void free_nodes(Index ix) noexcept nogil:
    cdef Node *n
    cdef Node *nx
    if ix.head == NULL:
        return
    n = fwd(ix.head)[0]
    while n != NULL:
        nx = fwd(n)[0]
        free(n)
        n = nx
    memset(fwd(ix.head), 0, MAX_LEVEL * sizeof(Node *))


cdef uint32_t random_height(Index ix) noexcept nogil:
    # Geometric with p = 1/4: two random bits per extra level.
    cdef uint64_t r = xorshift64(&ix.rng)
    cdef uint32_t h = 1
    while h < <uint32_t>MAX_LEVEL and (r & 3) == 0:
        h += 1
        r >>= 2
    return h


cdef Node *last_before(Index ix, const char *key, uint32_t klen, bint inclusive) noexcept nogil:
    # The last node < key (inclusive false) or <= key (inclusive true); the
    # head when there is none.  Every seek is this one descent.
    cdef Node *x = ix.head
    cdef Node **f
    cdef uint64_t kp = key_prefix(key, klen)
    cdef int i, c
    for i in range(ix.level - 1, -1, -1):
        while True:
            f = fwd(x)
            if f[i] == NULL:
                break
            c = cmp_node(ix.base, f[i], key, klen, kp)
            if c > 0 or (c == 0 and not inclusive):
                break
            x = f[i]
    return x


cdef class Index:

    def __cinit__(self):
        self.base = NULL
        self.head = node_alloc(MAX_LEVEL)
        if self.head == NULL:
            raise MemoryError()
        self.level = 1
        self.table = NULL
        self.table_cap = 0
        self.table_used = 0
        self.count = 0
        self.rng = seed_from_os()
        self.hash_seed = seed_from_os()

    def __dealloc__(self):
        free_nodes(self)
        free(self.head)
        self.head = NULL
        free(self.table)
        self.table = NULL

    cdef void set_base(self, const char *base) noexcept nogil:
        self.base = base

    cdef int put(self, const char *key, uint32_t klen, const Ref *ref, Ref *old) noexcept nogil:
        cdef uint64_t h = key_hash(key, klen, self.hash_seed)
        cdef size_t slot = table_find(self, key, klen, h)
        cdef Node *update[MAX_LEVEL]
        cdef Node *n
        cdef Node *x
        cdef Node **f
        cdef uint32_t height
        cdef int i
        if slot != SIZE_MAX:
            n = self.table[slot]
            if old != NULL:
                old[0] = n.ref
            n.ref = ref[0]
            return 1

        # Allocate everything before linking anything: on failure the index
        # is exactly as it was (a grown table holds the same entries).
        height = random_height(self)
        n = node_alloc(height)
        if n == NULL:
            return -1
        if (self.table_used + 1) * LOAD_DEN > self.table_cap * LOAD_NUM:
            if table_resize(self, self.table_cap * 2 if self.table_cap else TABLE_MIN_CAP) < 0:
                free(n)
                return -1
        n.ref = ref[0]
        n.hash = h
        n.kprefix = key_prefix(key, klen)

        # The key is absent, so every comparison on the way down is strict.
        x = self.head
        for i in range(self.level - 1, -1, -1):
            while True:
                f = fwd(x)
                if f[i] == NULL or cmp_node(self.base, f[i], key, klen, n.kprefix) >= 0:
                    break
                x = f[i]
            update[i] = x
        if <int>height > self.level:
            for i in range(self.level, <int>height):
                update[i] = self.head
            self.level = <int>height
        f = fwd(n)
        for i in range(<int>height):
            f[i] = fwd(update[i])[i]
            fwd(update[i])[i] = n
        n.prev = NULL if update[0] == self.head else update[0]
        if f[0] != NULL:
            f[0].prev = n

        table_place(self.table, self.table_cap - 1, n)
        self.table_used += 1
        self.count += 1
        return 0

    cdef int get(self, const char *key, uint32_t klen, Ref *out) noexcept nogil:
        cdef size_t slot = table_find(self, key, klen, key_hash(key, klen, self.hash_seed))
        if slot == SIZE_MAX:
            return 0
        if out != NULL:
            out[0] = self.table[slot].ref
        return 1

    cdef int remove(self, const char *key, uint32_t klen, Ref *old) noexcept nogil:
        cdef size_t slot = table_find(self, key, klen, key_hash(key, klen, self.hash_seed))
        cdef Node *n
        cdef Node *x
        cdef Node **f
        cdef Node **nf
        cdef int i
        if slot == SIZE_MAX:
            return 0
        n = self.table[slot]
        nf = fwd(n)
        # Find n's predecessor on each of its levels; stop on the pointer
        # itself so the last step costs no key comparison.
        x = self.head
        for i in range(self.level - 1, -1, -1):
            while True:
                f = fwd(x)
                if f[i] == NULL or f[i] == n:
                    break
                if cmp_node(self.base, f[i], key, klen, n.kprefix) >= 0:
                    break
                x = f[i]
            if i < <int>n.height:
                f[i] = nf[i]
        if nf[0] != NULL:
            nf[0].prev = n.prev
        while self.level > 1 and fwd(self.head)[self.level - 1] == NULL:
            self.level -= 1

        table_delete_at(self, slot)
        self.count -= 1
        if old != NULL:
            old[0] = n.ref
        free(n)
        # Give memory back after mass deletes; a failed shrink is harmless.
        if self.table_cap > TABLE_MIN_CAP and self.table_used * SHRINK_DEN < self.table_cap:
            table_resize(self, self.table_cap // 2)
        return 1

    cdef void clear(self) noexcept nogil:
        free_nodes(self)
        self.level = 1
        free(self.table)
        self.table = NULL
        self.table_cap = 0
        self.table_used = 0
        self.count = 0

    cdef Node *first(self) noexcept nogil:
        return fwd(self.head)[0]

    cdef Node *last(self) noexcept nogil:
        cdef Node *x = self.head
        cdef Node **f
        cdef int i
        for i in range(self.level - 1, -1, -1):
            f = fwd(x)
            while f[i] != NULL:
                x = f[i]
                f = fwd(x)
        return NULL if x == self.head else x

    cdef Node *seek_ge(self, const char *key, uint32_t klen) noexcept nogil:
        return fwd(last_before(self, key, klen, 0))[0]

    cdef Node *seek_gt(self, const char *key, uint32_t klen) noexcept nogil:
        return fwd(last_before(self, key, klen, 1))[0]

    cdef Node *seek_lt(self, const char *key, uint32_t klen) noexcept nogil:
        cdef Node *x = last_before(self, key, klen, 0)
        return NULL if x == self.head else x

    cdef Node *seek_le(self, const char *key, uint32_t klen) noexcept nogil:
        cdef Node *x = last_before(self, key, klen, 1)
        return NULL if x == self.head else x

    cdef Node *next(self, Node *n) noexcept nogil:
        return NULL if n == NULL else fwd(n)[0]

    cdef Node *prev(self, Node *n) noexcept nogil:
        return NULL if n == NULL else n.prev

    cdef const Ref *node_ref(self, Node *n) noexcept nogil:
        return &n.ref


# ------------------------------------------------------------- test shim
# IndexTester drives an Index from Python.  It owns a fixed malloc'd arena
# standing in for the pool: every put appends the key bytes there (the arena
# never moves), and bytes an index entry no longer names are overwritten with
# 0xA5 so a stale Ref shows up as a wrong answer instead of passing by luck.

cdef class IndexTester:
    cdef Index ix
    cdef char *arena                    # fake pool mapping; key bytes are appended
    cdef size_t arena_cap               # bytes allocated
    cdef size_t arena_used              # bytes appended so far
    cdef uint64_t lsn                   # stamped into each Ref, to check replacement

    def __cinit__(self, size_t arena_size=64 << 20):
        self.arena = <char *>malloc(arena_size if arena_size else 1)
        if self.arena == NULL:
            raise MemoryError()
        self.arena_cap = arena_size
        self.arena_used = 0
        self.lsn = 0
        self.ix = Index()
        self.ix.set_base(self.arena)

    def __dealloc__(self):
        free(self.arena)

    cdef size_t append_key(self, bytes key) except? 0:
        cdef Py_ssize_t n
        cdef size_t off = self.arena_used
        if key is None:
            raise TypeError("key must be bytes, not None")
        n = PyBytes_GET_SIZE(key)
        if <uint64_t>n > <uint64_t>0xFFFFFFFFULL:
            raise ValueError("key longer than 4 GiB")
        if <size_t>n > self.arena_cap - self.arena_used:
            raise MemoryError("IndexTester arena full")
        memcpy(self.arena + off, PyBytes_AS_STRING(key), <size_t>n)
        self.arena_used += <size_t>n
        return off

    cdef void scribble(self, const Ref *r) noexcept:
        memset(self.arena + r.koff, 0xA5, r.klen)

    cdef bytes node_key_bytes(self, Node *n):
        return PyBytes_FromStringAndSize(self.arena + n.ref.koff, n.ref.klen)

    def put(self, bytes key not None, uint64_t voff, uint64_t vlen):
        """Insert or replace; True if the key existed."""
        cdef Ref ref, old
        cdef int rc
        ref.koff = self.append_key(key)
        ref.klen = <uint32_t>PyBytes_GET_SIZE(key)
        ref.voff = voff
        ref.vlen = vlen
        self.lsn += 1
        ref.lsn = self.lsn
        ref.vcrc = 0
        rc = self.ix.put(self.arena + ref.koff, ref.klen, &ref, &old)
        if rc < 0:
            raise MemoryError()
        if rc == 1:
            self.scribble(&old)
        return rc == 1

    def put_all(self, keys):
        """put(key, i, len(key)) for each key, in C; returns how many were new."""
        cdef Ref ref, old
        cdef size_t new = 0
        cdef int rc
        cdef bytes k
        for k in keys:
            ref.koff = self.append_key(k)
            ref.klen = <uint32_t>PyBytes_GET_SIZE(k)
            ref.voff = new
            ref.vlen = ref.klen
            self.lsn += 1
            ref.lsn = self.lsn
            ref.vcrc = 0
            rc = self.ix.put(self.arena + ref.koff, ref.klen, &ref, &old)
            if rc < 0:
                raise MemoryError()
            if rc == 1:
                self.scribble(&old)
            else:
                new += 1
        return new

    def count_found(self, keys):
        """How many of keys get() finds (a C loop, for scale tests and timing)."""
        cdef size_t found = 0
        cdef bytes k
        for k in keys:
            if k is None:
                raise TypeError("key must be bytes, not None")
            found += <size_t>self.ix.get(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k), NULL)
        return found

    def get(self, bytes key not None):
        """(voff, vlen) or None."""
        cdef Ref r
        if not self.ix.get(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), &r):
            return None
        return (r.voff, r.vlen)

    def get_ref(self, bytes key not None):
        """The whole Ref as a dict, or None."""
        cdef Ref r
        if not self.ix.get(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), &r):
            return None
        return {"koff": r.koff, "klen": r.klen, "voff": r.voff, "vlen": r.vlen,
                "lsn": r.lsn, "vcrc": r.vcrc}

    def remove(self, bytes key not None):
        """True if the key was present."""
        cdef Ref old
        if not self.ix.remove(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), &old):
            return False
        self.scribble(&old)
        return True

    def clear(self):
        self.ix.clear()

    def __len__(self):
        return <Py_ssize_t>self.ix.count

    def first(self):
        cdef Node *n = self.ix.first()
        return None if n == NULL else self.node_key_bytes(n)

    def last(self):
        cdef Node *n = self.ix.last()
        return None if n == NULL else self.node_key_bytes(n)

    def seek(self, str how, bytes key not None):
        """The key seek_<how> lands on ('ge', 'gt', 'le', 'lt'), or None."""
        cdef const char *p = PyBytes_AS_STRING(key)
        cdef uint32_t n = <uint32_t>PyBytes_GET_SIZE(key)
        cdef Node *r
        if how == "ge":
            r = self.ix.seek_ge(p, n)
        elif how == "gt":
            r = self.ix.seek_gt(p, n)
        elif how == "le":
            r = self.ix.seek_le(p, n)
        elif how == "lt":
            r = self.ix.seek_lt(p, n)
        else:
            raise ValueError(how)
        return None if r == NULL else self.node_key_bytes(r)

    def items_from(self, key=None, bint reverse=False, bint inclusive=True, limit=None):
        """Keys from a start point, walking next() (or prev() when reverse).

        key=None starts at first() (last() when reverse); otherwise at
        seek_ge/seek_gt forward or seek_le/seek_lt backward.
        """
        cdef Node *n
        cdef bytes k
        cdef Py_ssize_t left = -1 if limit is None else limit
        out = []
        if key is None:
            n = self.ix.last() if reverse else self.ix.first()
        else:
            k = key
            if reverse and inclusive:
                n = self.ix.seek_le(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k))
            elif reverse:
                n = self.ix.seek_lt(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k))
            elif inclusive:
                n = self.ix.seek_ge(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k))
            else:
                n = self.ix.seek_gt(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k))
        while n != NULL and left != 0:
            out.append(self.node_key_bytes(n))
            n = self.ix.prev(n) if reverse else self.ix.next(n)
            left -= 1
        return out

    def ref_lsn(self, bytes key not None):
        cdef Ref r
        if not self.ix.get(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), &r):
            return None
        return r.lsn

    def stats(self):
        return {"count": self.ix.count, "level": self.ix.level,
                "table_cap": self.ix.table_cap, "table_used": self.ix.table_used,
                "arena_used": self.arena_used}

    def check_invariants(self):
        """Raise AssertionError unless the skip list and hash table agree."""
        cdef Index ix = self.ix
        cdef Node *n
        cdef Node *p
        cdef Node *expect[MAX_LEVEL]
        cdef size_t seen = 0, i, j, mask, home
        cdef int lv, maxh = 1
        cdef const char *b = ix.base

        # Level 0: strictly increasing, prev links mirror next links.
        p = NULL
        n = fwd(ix.head)[0]
        for lv in range(MAX_LEVEL):
            expect[lv] = fwd(ix.head)[lv]
        while n != NULL:
            if n.height < 1 or n.height > MAX_LEVEL:
                raise AssertionError("bad height %d" % n.height)
            if n.prev != p:
                raise AssertionError("prev link broken at node %d" % seen)
            if (p != NULL and
                    key_compare(b + p.ref.koff, p.ref.klen, b + n.ref.koff, n.ref.klen) >= 0):
                raise AssertionError("level 0 out of order at node %d" % seen)
            if n.hash != key_hash(b + n.ref.koff, n.ref.klen, ix.hash_seed):
                raise AssertionError("stale hash")
            if n.kprefix != key_prefix(b + n.ref.koff, n.ref.klen):
                raise AssertionError("stale key prefix")
            # Every level below the node's height must reach it next, in order.
            for lv in range(<int>n.height):
                if expect[lv] != n:
                    raise AssertionError("level %d skips or misorders node %d" % (lv, seen))
                expect[lv] = fwd(n)[lv]
            if <int>n.height > maxh:
                maxh = <int>n.height
            seen += 1
            p = n
            n = fwd(n)[0]
        for lv in range(MAX_LEVEL):
            if expect[lv] != NULL:
                raise AssertionError("level %d has nodes not on level 0" % lv)
        if seen != ix.count:
            raise AssertionError("count %d but %d nodes" % (ix.count, seen))
        if ix.level != maxh:
            raise AssertionError("level %d but tallest node %d" % (ix.level, maxh))
        if ix.last() != p:
            raise AssertionError("last() is not the last node")

        # Hash table: sized, no holes inside a probe run, each node found at
        # its own slot by a lookup.
        if ix.table_used != ix.count:
            raise AssertionError("table_used %d != count %d" % (ix.table_used, ix.count))
        if ix.table_cap == 0:
            if ix.count != 0 or ix.table != NULL:
                raise AssertionError("empty table but count %d" % ix.count)
            return True
        if (ix.table_cap & (ix.table_cap - 1)) != 0:
            raise AssertionError("table_cap not a power of two")
        if ix.table_used * LOAD_DEN > ix.table_cap * LOAD_NUM:
            raise AssertionError("table over max load")
        mask = ix.table_cap - 1
        seen = 0
        for i in range(ix.table_cap):
            n = ix.table[i]
            if n == NULL:
                continue
            seen += 1
            home = <size_t>n.hash & mask
            j = home
            while j != i:
                if ix.table[j] == NULL:
                    raise AssertionError("hole between home %d and slot %d" % (home, i))
                j = (j + 1) & mask
            if table_find(ix, b + n.ref.koff, n.ref.klen, n.hash) != i:
                raise AssertionError("slot %d not found by lookup" % i)
        if seen != ix.count:
            raise AssertionError("table holds %d nodes, count %d" % (seen, ix.count))
        n = fwd(ix.head)[0]
        while n != NULL:
            i = table_find(ix, b + n.ref.koff, n.ref.klen, n.hash)
            if i == SIZE_MAX or ix.table[i] != n:
                raise AssertionError("node missing from the table")
            n = fwd(n)[0]
        return True


def _hash_for_test(bytes data not None, uint64_t seed=0):
    """XXH64 of data, to check the implementation against known vectors."""
    return key_hash(PyBytes_AS_STRING(data), <uint32_t>PyBytes_GET_SIZE(data), seed)
