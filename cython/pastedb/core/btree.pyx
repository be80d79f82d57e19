"""The persistent copy-on-write B+tree (file format and commit order: btree.pxd)."""

import os

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy, memmove, memset, strlen, strrchr

from pastedb.core.clib cimport (
    EINVAL, EIO, ENOENT, ENOMEM, ENOSPC, MAP_ANONYMOUS, MAP_FAILED, MAP_NORESERVE, MAP_PRIVATE,
    MAP_SHARED, O_CLOEXEC, O_RDONLY, PROT_READ, PROT_WRITE, close as c_close, errno, fstat,
    fsync, mmap, munmap, open as c_open, pread, pthread_mutex_destroy,
    pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock, stat,
)
from pastedb.core.format cimport (
    FREE_HDR, FREE_PER_PAGE, MAX_DEPTH, MAX_KEY_LEN, META_MAX_PAGES, META_PAGES, PAGE_CAP,
    PAGE_HDR, PAGE_SIZE, PT_BRANCH, PT_FREE, PT_LEAF, PT_META, PV_CRC, PV_EMPTY, PV_LAYOUT,
    PV_LEVEL, PV_OK, PV_ORDER, PV_PGNO, PV_TXN, PV_TYPE, REF_SIZE, BTREE_VERSION, BTREE_VERSION_V1, BTREE_VERSION_V2, MetaBody, ref_size_of, PageHeader, crc32c_buf,
    key_cmp, ld16, ld32, meta_build, meta_read, page_hdr as hdr, page_seal, page_verify,
    slot_off,
)
from pastedb.core.index cimport Ref
from pastedb.core.vfs cimport File, Vfs, reserve_space
from pastedb.core.status cimport ST_CLOSED, ST_CORRUPT, ST_FAILED, ST_TOO_BIG, ST_VERSION, raise_status

from pastedb.errors import Error

# 1 TiB of address space (nothing is committed for PROT_NONE): 2^28 pages,
# so page numbers fit the u32 fields with room to spare.
cdef uint64_t RESERVE_BYTES = 1 << 40
cdef uint64_t MAX_PAGES = META_MAX_PAGES
# The read-only file mapping grows in steps of this many bytes; mapping past
# the end of the file is allowed, and nothing past file_pages is ever read.
cdef uint64_t MAP_STEP = 64 << 20

cdef enum:
    SEP_CELL = 1040                   # 2 + MAX_KEY_LEN + 4, rounded: one branch cell buffer
    LEAF_CELL_MAX = 1074              # 2 + MAX_KEY_LEN + REF_SIZE
    SCRATCH_BYTES = 16384             # L page, R page, 3 SEP_CELLs, one leaf cell
    CELLS_MAX = 1100                  # two pages of the smallest branch cells (8 bytes) + 1
    SPARE_MAX = 1024                  # page buffers kept between transactions
    WRITEBACK_PAGES = 16              # commit: pages written back at a time (64 KiB)

    # how a cursor seek picks its entry
    SEEK_GE = 0
    SEEK_GT = 1
    SEEK_LE = 2
    SEEK_LT = 3
    SEEK_FIRST = 4
    SEEK_LAST = 5

_VERDICT = {
    PV_CRC: "checksum mismatch",
    PV_PGNO: "page number field names another page (misdirected write)",
    PV_TYPE: "wrong page type",
    PV_LEVEL: "wrong level",
    PV_TXN: "written by a transaction newer than the commit that reaches it",
    PV_EMPTY: "no entries",
    PV_LAYOUT: "slot layout out of bounds",
    PV_ORDER: "keys out of order within the page",
}
_TYPE_NAME = {PT_META: "meta", PT_LEAF: "leaf", PT_BRANCH: "branch", PT_FREE: "free-list"}

assert sizeof(Ref) == REF_SIZE, "Ref must pack into REF_SIZE bytes"


# ---------------------------------------------------------------- small helpers

cdef inline void st16(char *p, uint16_t v) noexcept nogil:
    memcpy(p, &v, 2)


cdef inline void st32(char *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef inline uint64_t ld64(const char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline void st64(char *p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)


cdef inline const char *slot_cell(const char *p, int i) noexcept nogil:
    return p + ld16(p + PAGE_HDR + 2 * i)


cdef inline uint32_t cell_size(const char *c, int leaf) noexcept nogil:
    return 2 + <uint32_t>ld16(c) + <uint32_t>(REF_SIZE if leaf else 4)


cdef inline uint32_t branch_child(const char *p, int j) noexcept nogil:
    cdef const char *c
    if j == 0:
        return hdr(p).link
    c = slot_cell(p, j - 1)
    return ld32(c + 2 + ld16(c))


cdef inline void branch_set_child(char *p, int j, uint32_t pgno) noexcept nogil:
    cdef char *c
    if j == 0:
        hdr(p).link = pgno
        return
    c = <char *>slot_cell(p, j - 1)
    st32(c + 2 + ld16(c), pgno)


cdef inline int leaf_lower_bound(const char *p, const char *key, uint32_t klen,
                                 int *found) noexcept nogil:
    # First slot whose key is >= key; *found when it is equal.
    cdef int lo = 0
    cdef int hi = hdr(p).count
    cdef int mid, r
    cdef const char *c
    found[0] = 0
    while lo < hi:
        mid = (lo + hi) >> 1
        c = slot_cell(p, mid)
        r = key_cmp(c + 2, ld16(c), key, klen)
        if r < 0:
            lo = mid + 1
        elif r > 0:
            hi = mid
        else:
            found[0] = 1
            return mid
    return lo


cdef inline int branch_index(const char *p, const char *key, uint32_t klen) noexcept nogil:
    # The child to follow: the number of separators <= key.
    cdef int lo = 0
    cdef int hi = hdr(p).count
    cdef int mid
    cdef const char *c
    while lo < hi:
        mid = (lo + hi) >> 1
        c = slot_cell(p, mid)
        if key_cmp(c + 2, ld16(c), key, klen) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int bit_get(const uint8_t *b, uint32_t i) noexcept nogil:
    return (b[i >> 3] >> (i & 7)) & 1


cdef inline void bit_set(uint8_t *b, uint32_t i) noexcept nogil:
    # A lost update from a racing reader only costs a second verification.
    b[i >> 3] |= <uint8_t>(1 << (i & 7))


cdef inline uint64_t round_up(uint64_t n, uint64_t a) noexcept nogil:
    return (n + a - 1) // a * a


cdef int v32_push(U32Vec *v, uint32_t x) noexcept nogil:
    cdef size_t cap
    cdef uint32_t *p
    if v.n == v.cap:
        cap = v.cap * 2 if v.cap else 256
        p = <uint32_t *>realloc(v.v, cap * sizeof(uint32_t))
        if p == NULL:
            return -ENOMEM
        v.v = p
        v.cap = cap
    v.v[v.n] = x
    v.n += 1
    return 0


cdef int v64_push(U64Vec *v, uint64_t x) noexcept nogil:
    cdef size_t cap
    cdef uint64_t *p
    if v.n == v.cap:
        cap = v.cap * 2 if v.cap else 256
        p = <uint64_t *>realloc(v.v, cap * sizeof(uint64_t))
        if p == NULL:
            return -ENOMEM
        v.v = p
        v.cap = cap
    v.v[v.n] = x
    v.n += 1
    return 0


cdef int cmp_u32_desc(const void *a, const void *b) noexcept nogil:
    cdef uint32_t x = (<const uint32_t *>a)[0]
    cdef uint32_t y = (<const uint32_t *>b)[0]
    return (x < y) - (x > y)


cdef int cmp_u32_asc(const void *a, const void *b) noexcept nogil:
    cdef uint32_t x = (<const uint32_t *>a)[0]
    cdef uint32_t y = (<const uint32_t *>b)[0]
    return (x > y) - (x < y)


# ---------------------------------------------------------------- verification

# ---------------------------------------------------------------- I/O
# Every write, barrier and mapping of the tree goes through its File (vfs.pxd):
# one fault numbering with the pool's, and the crash simulator sees them all.

cdef inline int io_write(BTree t, uint64_t off, const char *buf, size_t n) noexcept nogil:
    # 0 or -errno (-EIO when a test injected the failure).
    return t.file.write(off, buf, n)


cdef inline int io_sync(BTree t) noexcept nogil:
    # The barrier.  0 or -errno.
    return t.file.sync()


cdef int ensure_mapped(BTree t, uint64_t pages) noexcept nogil:
    # Map the file read-only far enough to cover `pages`.  0 or -errno.
    cdef uint64_t need = pages * PAGE_SIZE
    cdef uint64_t new_size
    cdef int rc
    if need <= t.mapped:
        return 0
    new_size = round_up(need, MAP_STEP)
    if new_size > t.reserved:
        return -ENOSPC
    rc = t.file.map(t.base + t.mapped, t.mapped, new_size - t.mapped, PROT_READ, MAP_SHARED)
    if rc != 0:
        return rc
    t.mapped = new_size
    return 0


# ---------------------------------------------------------------- page access

cdef char *dirty_lookup(BTree t, uint32_t pgno) noexcept nogil:
    cdef size_t mask, i
    cdef uint32_t k
    if t.dlen == 0:
        return NULL
    mask = t.dmap_cap - 1
    i = <size_t>((<uint64_t>pgno * 0x9E3779B97F4A7C15ULL) >> 32) & mask
    while True:
        k = t.dmap[i]
        if k == 0:
            return NULL
        if k == pgno:
            return t.dbuf[t.dmap_ix[i]]
        i = (i + 1) & mask


cdef int dirty_slot(BTree t, uint32_t pgno) noexcept nogil:
    """Index of pgno's dirty entry, created (buffer NULL) if new; -ENOMEM."""
    cdef size_t mask, i, j, cap
    cdef uint32_t k
    cdef uint32_t *nmap
    cdef uint32_t *nix
    cdef uint32_t *npg
    cdef char **nbuf
    if (t.dlen + 1) * 2 > t.dmap_cap:
        cap = t.dmap_cap * 2 if t.dmap_cap else 1024
        nmap = <uint32_t *>calloc(cap, sizeof(uint32_t))
        nix = <uint32_t *>malloc(cap * sizeof(uint32_t))
        if nmap == NULL or nix == NULL:
            free(nmap)
            free(nix)
            return -ENOMEM
        for j in range(t.dlen):
            i = <size_t>((<uint64_t>t.dpgno[j] * 0x9E3779B97F4A7C15ULL) >> 32) & (cap - 1)
            while nmap[i] != 0:
                i = (i + 1) & (cap - 1)
            nmap[i] = t.dpgno[j]
            nix[i] = <uint32_t>j
        free(t.dmap)
        free(t.dmap_ix)
        t.dmap = nmap
        t.dmap_ix = nix
        t.dmap_cap = cap
    mask = t.dmap_cap - 1
    i = <size_t>((<uint64_t>pgno * 0x9E3779B97F4A7C15ULL) >> 32) & mask
    while True:
        k = t.dmap[i]
        if k == pgno:
            return <int>t.dmap_ix[i]
        if k == 0:
            break
        i = (i + 1) & mask
    if t.dlen == t.dcap:
        cap = t.dcap * 2 if t.dcap else 512
        npg = <uint32_t *>realloc(t.dpgno, cap * sizeof(uint32_t))
        if npg == NULL:
            return -ENOMEM
        t.dpgno = npg
        nbuf = <char **>realloc(t.dbuf, cap * sizeof(char *))
        if nbuf == NULL:
            return -ENOMEM
        t.dbuf = nbuf
        t.dcap = cap
    t.dmap[i] = pgno
    t.dmap_ix[i] = <uint32_t>t.dlen
    t.dpgno[t.dlen] = pgno
    t.dbuf[t.dlen] = NULL
    t.dlen += 1
    return <int>(t.dlen - 1)


cdef int page_get(BTree t, const Snapshot *s, uint32_t pgno, int level,
                  const char **out) noexcept nogil:
    """The page `pgno` as snapshot s sees it, verified: level >= 0 wants a
    leaf (0) or branch at that level, -1 a free-list page.  0 or ST_CORRUPT."""
    cdef const char *p
    cdef int want
    if s.write:
        p = dirty_lookup(t, pgno)
        if p != NULL:
            out[0] = p
            return 0
    if pgno < META_PAGES or pgno >= s.page_limit:
        return ST_CORRUPT
    p = t.base + <uint64_t>pgno * PAGE_SIZE
    want = PT_FREE if level < 0 else (PT_LEAF if level == 0 else PT_BRANCH)
    if not bit_get(t.verified, pgno):
        if page_verify(p, pgno, s.max_txn, want, t.ref_size) != PV_OK:
            return ST_CORRUPT
        bit_set(t.verified, pgno)
    elif hdr(p).type != want:
        return ST_CORRUPT
    if level >= 0 and hdr(p).level != level:
        return ST_CORRUPT
    out[0] = p
    return 0


cdef int page_alloc(BTree t, uint32_t *pgno, char **buf) noexcept nogil:
    """A page for the write txn: a reusable free page (lowest first) or a new
    one at the end of the file.  Its buffer is uninitialised.  0, -ENOMEM,
    -ENOSPC (page numbers exhausted)."""
    cdef uint32_t pg
    cdef char *b
    cdef int ix, from_reuse = 0
    if t.reuse.n:
        t.reuse.n -= 1
        pg = t.reuse.v[t.reuse.n]
        from_reuse = 1
    else:
        if t.w_page_count >= MAX_PAGES:
            return -ENOSPC
        pg = <uint32_t>t.w_page_count
        t.w_page_count += 1
    if t.nspare:
        t.nspare -= 1
        b = t.spare[t.nspare]
    else:
        b = <char *>malloc(PAGE_SIZE)
    ix = dirty_slot(t, pg) if b != NULL else -ENOMEM
    if ix < 0:
        free(b)
        if from_reuse:
            t.reuse.n += 1
        else:
            t.w_page_count -= 1
        return -ENOMEM
    t.dbuf[ix] = b
    pgno[0] = pg
    buf[0] = b
    return 0


cdef void release_buf(BTree t, char *b) noexcept nogil:
    if t.nspare < SPARE_MAX:
        t.spare[t.nspare] = b
        t.nspare += 1
    else:
        free(b)


cdef int page_free(BTree t, uint32_t pgno) noexcept nogil:
    """pgno leaves the tree in this txn.  A page allocated in this txn is
    reusable at once (no snapshot names it); a committed one is free from
    this txn on (see the free-list rules in btree.pxd).  0 or -ENOMEM."""
    cdef char *b = dirty_lookup(t, pgno)
    cdef int ix
    if b != NULL:
        ix = dirty_slot(t, pgno)
        t.dbuf[ix] = NULL
        release_buf(t, b)
        return v32_push(&t.reuse, pgno)
    return v32_push(&t.freed, pgno)


# ---------------------------------------------------------------- building pages

cdef void build_page(char *dst, uint32_t pgno, int ptype, int level, uint32_t link,
                     const Cell *cells, int lo, int hi) noexcept nogil:
    cdef PageHeader *h = hdr(dst)
    cdef uint32_t up = PAGE_SIZE
    cdef uint32_t used = 0
    cdef int i
    memset(dst, 0, PAGE_SIZE)
    for i in range(lo, hi):
        up -= cells[i].size
        memcpy(dst + up, cells[i].p, cells[i].size)
        st16(dst + PAGE_HDR + 2 * (i - lo), <uint16_t>up)
        used += cells[i].size + 2
    h.pgno = pgno
    h.type = <uint8_t>ptype
    h.level = <uint8_t>level
    h.count = <uint16_t>(hi - lo)
    h.upper = <uint16_t>up
    h.used = <uint16_t>used
    h.link = link


cdef int gather(const char *p, Cell *cells, int m) noexcept nogil:
    cdef int leaf = hdr(p).type == PT_LEAF
    cdef int i
    cdef const char *c
    for i in range(hdr(p).count):
        c = slot_cell(p, i)
        cells[m].p = c
        cells[m].size = cell_size(c, leaf)
        m += 1
    return m


cdef void compact(BTree t, char *p) noexcept nogil:
    cdef int m = gather(p, t.cells, 0)
    build_page(t.scratch, hdr(p).pgno, hdr(p).type, hdr(p).level, hdr(p).link, t.cells, 0, m)
    memcpy(p, t.scratch, PAGE_SIZE)


cdef void remove_cell(char *p, int pos) noexcept nogil:
    cdef PageHeader *h = hdr(p)
    cdef uint16_t off = slot_off(p, pos)
    cdef uint32_t sz = cell_size(p + off, h.type == PT_LEAF)
    memmove(p + PAGE_HDR + 2 * pos, p + PAGE_HDR + 2 * (pos + 1), <size_t>(2 * (h.count - pos - 1)))
    h.count -= 1
    h.used -= <uint16_t>(sz + 2)
    if off == h.upper:
        h.upper += <uint16_t>sz       # it was the lowest cell: the gap grows back


cdef inline int split_fits(const Cell *cells, int m, int leaf, int k, uint32_t left,
                           uint32_t total, uint32_t *lo, uint32_t *hi) noexcept nogil:
    # Sides of a cut at k (see choose_split): 1 when it is a legal cut.
    cdef uint32_t right = total - left
    if not leaf:
        right -= cells[k].size + 2
    if k < 1 or k > (m - 1 if leaf else m - 2) or left > PAGE_CAP or right > PAGE_CAP:
        return 0
    lo[0] = left
    hi[0] = right
    return 1


cdef int choose_split(const Cell *cells, int m, int leaf, int bias) noexcept nogil:
    """Where to cut a cell list into two pages.  Leaf: left = [0, k), right =
    [k, m).  Branch: left = [0, k), cell k moves up as the separator (its
    child becomes the right page's child 0), right = (k, m).  bias 0 cuts
    evenly by bytes; bias 1 (the new cell is the last: ascending inserts) cuts
    as late as leaves the right side MIN_FILL, bias -1 (descending) as early,
    so runs of appends fill pages to ~80% instead of 50%.  -1 if no cut fits
    (cannot happen for lists of at most two pages plus one cell)."""
    cdef uint32_t total = 0, left = 0, lo, hi, mx, best_mx = 0xFFFFFFFF
    cdef uint32_t *prefix = <uint32_t *>(<char *>cells + CELLS_MAX * sizeof(Cell))
    cdef int k, best = -1
    for k in range(m):
        prefix[k] = total
        total += cells[k].size + 2
    if bias > 0:
        for k in range(m - 1, 0, -1):
            if split_fits(cells, m, leaf, k, prefix[k], total, &lo, &hi) and hi >= MIN_FILL \
                    and lo >= MIN_FILL:
                return k
    elif bias < 0:
        for k in range(1, m):
            if split_fits(cells, m, leaf, k, prefix[k], total, &lo, &hi) and lo >= MIN_FILL \
                    and hi >= MIN_FILL:
                return k
    for k in range(m):
        if split_fits(cells, m, leaf, k, prefix[k], total, &lo, &hi):
            mx = lo if lo > hi else hi
            if mx < best_mx:
                best_mx = mx
                best = k
    return best


# ---------------------------------------------------------------- the write path

cdef struct Path:
    char *page[32]                    # page at each level, root first (writable once touched)
    uint32_t pgno[32]                 # its page number
    int idx[32]                       # branch: child followed; leaf: slot (lower bound)
    int depth                         # levels


cdef int descend(BTree t, const Snapshot *s, const char *key, uint32_t klen, Path *pa,
                 int *found) noexcept nogil:
    # Root-to-leaf path towards key.  0 or ST_CORRUPT.
    cdef uint32_t pg = s.root
    cdef int d, level, rc
    cdef const char *p
    found[0] = 0
    pa.depth = <int>s.depth
    for d in range(<int>s.depth):
        level = <int>s.depth - 1 - d
        rc = page_get(t, s, pg, level, &p)
        if rc != 0:
            return rc
        pa.page[d] = <char *>p
        pa.pgno[d] = pg
        if level:
            pa.idx[d] = branch_index(p, key, klen)
            pg = branch_child(p, pa.idx[d])
        else:
            pa.idx[d] = leaf_lower_bound(p, key, klen, found)
    return 0


cdef int copy_on_write(BTree t, const char *src, uint32_t old, char **out,
                       uint32_t *out_pg) noexcept nogil:
    # A writable copy of committed page `old` at a new number.  0 or -errno.
    cdef uint32_t np
    cdef char *b
    cdef int rc = page_alloc(t, &np, &b)
    if rc != 0:
        return rc
    memcpy(b, src, PAGE_SIZE)
    hdr(b).pgno = np
    rc = v32_push(&t.freed, old)
    if rc != 0:
        return rc
    out[0] = b
    out_pg[0] = np
    return 0


cdef int touch_path(BTree t, Path *pa) noexcept nogil:
    """Make every page on the path writable, root first: a committed page is
    copied to a new page number and its parent repointed (copy-on-write).
    0 or -errno."""
    cdef int lvl, rc
    cdef char *b
    cdef uint32_t np
    for lvl in range(pa.depth):
        b = dirty_lookup(t, pa.pgno[lvl])
        if b != NULL:
            pa.page[lvl] = b
            continue
        rc = copy_on_write(t, pa.page[lvl], pa.pgno[lvl], &b, &np)
        if rc != 0:
            return rc
        if lvl == 0:
            t.w.root = np
        else:
            branch_set_child(pa.page[lvl - 1], pa.idx[lvl - 1], np)
        pa.page[lvl] = b
        pa.pgno[lvl] = np
    return 0


cdef int touch_child(BTree t, char *parent, int j, int level, char **out,
                     uint32_t *out_pg) noexcept nogil:
    # Child j of a writable branch, made writable.  0, -errno or ST_CORRUPT.
    cdef uint32_t pg = branch_child(parent, j)
    cdef char *b = dirty_lookup(t, pg)
    cdef const char *p
    cdef int rc
    if b != NULL:
        out[0] = b
        out_pg[0] = pg
        return 0
    rc = page_get(t, &t.w, pg, level, &p)
    if rc != 0:
        return rc
    rc = copy_on_write(t, p, pg, out, out_pg)
    if rc != 0:
        return rc
    branch_set_child(parent, j, out_pg[0])
    return 0


cdef inline char *sep_buf(BTree t, int i) noexcept nogil:
    return t.scratch + 2 * PAGE_SIZE + i * SEP_CELL


cdef int insert_cell(BTree t, Path *pa, int lvl, int pos, const char *cell,
                     uint32_t size) noexcept nogil:
    """Insert a cell at slot pos of the (writable) page at path level lvl;
    split it when full.  0 in place, 1 split, negative status."""
    cdef char *p = pa.page[lvl]
    cdef PageHeader *h = hdr(p)
    cdef uint32_t need = size + 2
    cdef int i, m
    cdef Cell *cells
    if h.used + need <= PAGE_CAP:
        if <uint32_t>h.upper < PAGE_HDR + 2 * (<uint32_t>h.count + 1) + size:
            compact(t, p)
        h.upper -= <uint16_t>size
        memcpy(p + h.upper, cell, size)
        memmove(p + PAGE_HDR + 2 * (pos + 1), p + PAGE_HDR + 2 * pos, <size_t>(2 * (h.count - pos)))
        st16(p + PAGE_HDR + 2 * pos, h.upper)
        h.count += 1
        h.used += <uint16_t>need
        return 0
    cells = t.cells
    m = 0
    for i in range(h.count + 1):
        if i == pos:
            cells[m].p = cell
            cells[m].size = size
            m += 1
        if i < h.count:
            cells[m].p = slot_cell(p, i)
            cells[m].size = cell_size(cells[m].p, h.type == PT_LEAF)
            m += 1
    return split_node(t, pa, lvl, cells, m, 1 if pos == h.count else (-1 if pos == 0 else 0))


cdef int split_node(BTree t, Path *pa, int lvl, Cell *cells, int m, int bias) noexcept nogil:
    """The page at path level lvl holds `cells` (m, more than fit): cut them
    into it and a new right sibling, and insert the separator into the
    parent (a new root above the old one at level 0).  bias: choose_split.
    1 or negative."""
    cdef char *p = pa.page[lvl]
    cdef int leaf = hdr(p).type == PT_LEAF
    cdef int level = hdr(p).level
    cdef int k = choose_split(cells, m, leaf, bias)
    cdef uint32_t rpg, npg, kl, rlink = 0, sepsize
    cdef char *rb
    cdef char *nb
    cdef char *sep = sep_buf(t, lvl & 1)    # the child's separator (if any) is in the other one
    cdef Cell c
    cdef int rc
    if k < 0:
        return ST_CORRUPT
    rc = page_alloc(t, &rpg, &rb)
    if rc != 0:
        return rc
    kl = ld16(cells[k].p)
    if not leaf:
        rlink = ld32(cells[k].p + 2 + kl)
    memmove(sep, cells[k].p, 2 + kl)
    st32(sep + 2 + kl, rpg)
    sepsize = 2 + kl + 4
    if leaf:
        build_page(t.scratch, pa.pgno[lvl], PT_LEAF, 0, 0, cells, 0, k)
        build_page(t.scratch + PAGE_SIZE, rpg, PT_LEAF, 0, 0, cells, k, m)
    else:
        build_page(t.scratch, pa.pgno[lvl], PT_BRANCH, level, hdr(p).link, cells, 0, k)
        build_page(t.scratch + PAGE_SIZE, rpg, PT_BRANCH, level, rlink, cells, k + 1, m)
    memcpy(p, t.scratch, PAGE_SIZE)
    memcpy(rb, t.scratch + PAGE_SIZE, PAGE_SIZE)
    if lvl == 0:
        if t.w.depth >= MAX_DEPTH:
            return -ENOSPC
        rc = page_alloc(t, &npg, &nb)
        if rc != 0:
            return rc
        c.p = sep
        c.size = sepsize
        build_page(nb, npg, PT_BRANCH, level + 1, pa.pgno[0], &c, 0, 1)
        t.w.root = npg
        t.w.depth += 1
        return 1
    rc = insert_cell(t, pa, lvl - 1, pa.idx[lvl - 1], sep, sepsize)
    return rc if rc < 0 else 1


cdef int fix_underflow(BTree t, Path *pa, int lvl) noexcept nogil:
    """Restore the fill invariant bottom-up after a delete: a non-root page
    below MIN_FILL merges with a sibling when both fit one page, else the
    two are redistributed evenly (which may split the parent when the new
    separator is longer).  0, -errno or ST_CORRUPT."""
    cdef char *p
    cdef char *parent
    cdef char *lp
    cdef char *rp
    cdef char *sep
    cdef uint32_t lpg, rpg, kl, total, rlink, sepsize
    cdef int ci, j, leaf, level, m, k, i, rc
    cdef Cell *cells = t.cells
    cdef const char *c
    while lvl > 0:
        p = pa.page[lvl]
        if hdr(p).used >= MIN_FILL:
            break
        parent = pa.page[lvl - 1]
        ci = pa.idx[lvl - 1]
        leaf = hdr(p).type == PT_LEAF
        level = hdr(p).level
        if ci < hdr(parent).count:
            j = ci
            lp = p
            lpg = pa.pgno[lvl]
            rc = touch_child(t, parent, ci + 1, level, &rp, &rpg)
        else:
            j = ci - 1
            rp = p
            rpg = pa.pgno[lvl]
            rc = touch_child(t, parent, ci - 1, level, &lp, &lpg)
        if rc != 0:
            return rc
        m = gather(lp, cells, 0)
        if not leaf:
            # the parent's separator comes down with the right page's child 0
            c = slot_cell(parent, j)
            kl = ld16(c)
            sep = sep_buf(t, 2)
            memcpy(sep, c, 2 + kl)
            st32(sep + 2 + kl, hdr(rp).link)
            cells[m].p = sep
            cells[m].size = 2 + kl + 4
            m += 1
        m = gather(rp, cells, m)
        total = 0
        for i in range(m):
            total += cells[i].size + 2
        if total <= PAGE_CAP:
            build_page(t.scratch, lpg, hdr(lp).type, level, hdr(lp).link, cells, 0, m)
            memcpy(lp, t.scratch, PAGE_SIZE)
            rc = page_free(t, rpg)
            if rc != 0:
                return rc
            remove_cell(parent, j)
            lvl -= 1
            continue
        k = choose_split(cells, m, leaf, 0)
        if k < 0:
            return ST_CORRUPT
        kl = ld16(cells[k].p)
        rlink = 0 if leaf else ld32(cells[k].p + 2 + kl)
        if leaf:
            build_page(t.scratch, lpg, PT_LEAF, 0, 0, cells, 0, k)
            build_page(t.scratch + PAGE_SIZE, rpg, PT_LEAF, 0, 0, cells, k, m)
        else:
            build_page(t.scratch, lpg, PT_BRANCH, level, hdr(lp).link, cells, 0, k)
            build_page(t.scratch + PAGE_SIZE, rpg, PT_BRANCH, level, rlink, cells, k + 1, m)
        sep = sep_buf(t, lvl & 1)
        memcpy(sep, cells[k].p, 2 + kl)             # before the sources are overwritten
        st32(sep + 2 + kl, rpg)
        sepsize = 2 + kl + 4
        memcpy(lp, t.scratch, PAGE_SIZE)
        memcpy(rp, t.scratch + PAGE_SIZE, PAGE_SIZE)
        remove_cell(parent, j)
        rc = insert_cell(t, pa, lvl - 1, j, sep, sepsize)
        if rc < 0:
            return rc
        if rc == 1:
            break                     # the parent split: both halves are full enough
        lvl -= 1
    return 0


cdef int collapse_root(BTree t) noexcept nogil:
    # A root branch without keys gives way to its only child; an empty root
    # leaf empties the tree.  0 or -ENOMEM.
    cdef char *r
    cdef uint32_t child
    cdef int rc
    while t.w.depth > 0:
        r = dirty_lookup(t, t.w.root)
        if r == NULL or hdr(r).count > 0:
            return 0
        child = hdr(r).link if t.w.depth > 1 else 0
        rc = page_free(t, t.w.root)
        if rc != 0:
            return rc
        t.w.root = child
        t.w.depth -= 1
    return 0


# ---------------------------------------------------------------- free list

cdef inline size_t pages_for(size_t n) noexcept nogil:
    return (n + FREE_PER_PAGE - 1) // FREE_PER_PAGE


cdef size_t pend_pages(BTree t) noexcept nogil:
    cdef size_t i = 0, j, pages = 0
    while i < t.pend_pg.n:
        j = i
        while j < t.pend_pg.n and t.pend_tx.v[j] == t.pend_tx.v[i]:
            j += 1
        pages += pages_for(j - i)
        i = j
    return pages


cdef int load_free_list(BTree t, uint64_t bound) noexcept nogil:
    """Read the committed chain into reuse (freed by txn <= bound) and
    pending; the chain's own pages become free pages of this txn.  0,
    -ENOMEM or ST_CORRUPT."""
    cdef uint32_t pg = t.c_free_head
    cdef uint64_t hops = 0, ft
    cdef const char *p
    cdef uint32_t e
    cdef int i, rc
    while pg != 0:
        hops += 1
        if hops > t.c.page_limit:
            return ST_CORRUPT
        rc = page_get(t, &t.c, pg, -1, &p)
        if rc != 0:
            return rc
        ft = ld64(p + PAGE_HDR)
        if ft > t.c.txn:
            return ST_CORRUPT
        for i in range(hdr(p).count):
            e = ld32(p + FREE_HDR + 4 * i)
            if e < META_PAGES or e >= t.c_page_count:
                return ST_CORRUPT
            if ft <= bound:
                rc = v32_push(&t.reuse, e)
            else:
                rc = v32_push(&t.pend_pg, e)
                if rc == 0:
                    rc = v64_push(&t.pend_tx, ft)
            if rc != 0:
                return rc
        rc = v32_push(&t.freed, pg)
        if rc != 0:
            return rc
        pg = hdr(p).link
    if t.reuse.n > 1:
        qsort(t.reuse.v, t.reuse.n, sizeof(uint32_t), cmp_u32_desc)
    return 0


cdef int free_list_write(BTree t, uint64_t txn, uint32_t *head, uint64_t *entries) noexcept nogil:
    """Lay out the new chain in fresh dirty pages: reusable pages (txn 0),
    pending runs (their txn), pages freed by this txn (txn).  Its pages come
    out of the reusable set first, which shrinks what it has to hold.
    0 or -errno."""
    cdef U32Vec chain
    cdef uint32_t pg
    cdef char *b
    cdef size_t ci = 0, i, j, n, start
    cdef int rc = 0
    chain.v = NULL
    chain.n = chain.cap = 0
    while chain.n < pages_for(t.reuse.n) + pend_pages(t) + pages_for(t.freed.n):
        rc = page_alloc(t, &pg, &b)
        if rc == 0:
            rc = v32_push(&chain, pg)
        if rc != 0:
            free(chain.v)
            return rc
    entries[0] = t.reuse.n + t.pend_pg.n + t.freed.n
    head[0] = chain.v[0] if chain.n else 0
    # The reuse run: free_txn 0, reusable by anyone.
    start = 0
    while start < t.reuse.n:
        n = t.reuse.n - start
        if n > FREE_PER_PAGE:
            n = FREE_PER_PAGE
        free_page_fill(t, &chain, ci, 0, t.reuse.v + start, n)
        ci += 1
        start += n
    i = 0
    while i < t.pend_pg.n:
        j = i
        while j < t.pend_pg.n and t.pend_tx.v[j] == t.pend_tx.v[i]:
            j += 1
        start = i
        while start < j:
            n = j - start
            if n > FREE_PER_PAGE:
                n = FREE_PER_PAGE
            free_page_fill(t, &chain, ci, t.pend_tx.v[i], t.pend_pg.v + start, n)
            ci += 1
            start += n
        i = j
    start = 0
    while start < t.freed.n:
        n = t.freed.n - start
        if n > FREE_PER_PAGE:
            n = FREE_PER_PAGE
        free_page_fill(t, &chain, ci, txn, t.freed.v + start, n)
        ci += 1
        start += n
    while ci < chain.n:               # taking pages shrank the list: empty pages close the chain
        free_page_fill(t, &chain, ci, 0, NULL, 0)
        ci += 1
    free(chain.v)
    return 0


cdef void free_page_fill(BTree t, U32Vec *chain, size_t ci, uint64_t free_txn,
                         const uint32_t *pgs, size_t n) noexcept nogil:
    cdef char *p = dirty_lookup(t, chain.v[ci])
    cdef PageHeader *h = hdr(p)
    memset(p, 0, PAGE_SIZE)
    h.pgno = chain.v[ci]
    h.type = PT_FREE
    h.count = <uint16_t>n
    h.link = chain.v[ci + 1] if ci + 1 < chain.n else 0
    st64(p + PAGE_HDR, free_txn)
    if n:
        memcpy(p + FREE_HDR, pgs, n * sizeof(uint32_t))


# ---------------------------------------------------------------- BTree

cdef class BTree:

    def __cinit__(self, Vfs vfs=None, bint readonly=False):
        self.file = File(vfs if vfs is not None else Vfs())
        self.base = NULL
        self.verified = NULL
        self.ext_min_txn = ~(<uint64_t>0)
        self.readonly = readonly
        pthread_mutex_init(&self.lock, NULL)
        self.scratch = <char *>malloc(SCRATCH_BYTES)
        self.cells = <Cell *>malloc(CELLS_MAX * (sizeof(Cell) + sizeof(uint32_t)))
        self.spare = <char **>malloc(SPARE_MAX * sizeof(char *))
        if self.scratch == NULL or self.cells == NULL or self.spare == NULL:
            raise MemoryError()

    cdef void bound_reuse(self, uint64_t min_txn) noexcept nogil:
        self.ext_min_txn = min_txn

    def __dealloc__(self):
        cdef size_t i
        self.close()
        for i in range(self.nspare):
            free(self.spare[i])
        free(self.spare)
        free(self.scratch)
        free(self.cells)
        free(self.dmap)
        free(self.dmap_ix)
        free(self.dpgno)
        free(self.dbuf)
        free(self.reuse.v)
        free(self.pend_pg.v)
        free(self.pend_tx.v)
        free(self.freed.v)
        free(self.rd_txn)
        free(self.rd_cnt)
        pthread_mutex_destroy(&self.lock)

    cdef int open(self, const char *path, int create) noexcept nogil:
        cdef char *buf = self.scratch
        cdef MetaBody m0, m1, m
        cdef int r0, r1, rc
        cdef void *p
        cdef uint64_t pages, fsize
        if self.file.fd >= 0:
            return -EINVAL
        if self.readonly:
            rc = self.file.open_readonly(path)
            create = 0
        else:
            rc = self.file.open(path, 0)
        if rc != 0:
            if rc != -ENOENT or not create:
                return rc
            rc = create_file(self.file, path, buf)
            if rc != 0:
                return rc
            rc = self.file.open(path, 0)
            if rc != 0:
                return rc
        memset(buf, 0, 2 * PAGE_SIZE)
        if pread(self.file.fd, buf, 2 * PAGE_SIZE, 0) < 0:
            rc = -errno
            self.close()
            return rc
        r0 = meta_read(buf, 0, &m0)
        r1 = meta_read(buf + PAGE_SIZE, 1, &m1)
        if r0 == 1 and (r1 != 1 or m0.txn >= m1.txn):
            m = m0
        elif r1 == 1:
            m = m1
        else:
            self.close()
            return ST_VERSION if (r0 == ST_VERSION or r1 == ST_VERSION) else ST_CORRUPT
        rc = self.file.size(&fsize)
        if rc != 0:
            self.close()
            return rc
        self.file_pages = fsize // PAGE_SIZE
        self.base = reserve_space(RESERVE_BYTES)
        if self.base == NULL:
            rc = -errno
            self.close()
            return rc
        self.reserved = RESERVE_BYTES
        self.mapped = 0
        p = mmap(NULL, MAX_PAGES // 8, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if p == MAP_FAILED:
            rc = -errno
            self.close()
            return rc
        self.verified = <uint8_t *>p
        pages = self.file_pages if self.file_pages > m.page_count else m.page_count
        rc = ensure_mapped(self, pages)
        if rc != 0:
            self.close()
            return rc
        self.failed = 0
        self.c.txn = m.txn
        self.c.max_txn = m.txn
        self.c.page_limit = m.page_count if m.page_count < self.file_pages else self.file_pages
        self.c.entries = m.entries
        self.c.applied_lsn = m.applied_lsn
        self.c.root = m.root
        self.c.depth = m.depth
        self.c.write = 0
        self.c_page_count = m.page_count
        self.version = m.version
        self.ref_size = ref_size_of(m.version)
        self.c_free_head = m.free_head
        self.c_free_entries = m.free_entries
        return 0

    cdef int reload(self) noexcept nogil:
        # The writer wrote every page of a commit before its meta, so once
        # the meta is read the pages are in the file.
        cdef char *buf = self.scratch
        cdef MetaBody m0, m1, m
        cdef int r0, r1, rc
        cdef uint64_t pages, fsize
        if self.file.fd < 0:
            return ST_CLOSED
        if pread(self.file.fd, buf, 2 * PAGE_SIZE, 0) != 2 * PAGE_SIZE:
            return -EIO
        r0 = meta_read(buf, 0, &m0)
        r1 = meta_read(buf + PAGE_SIZE, 1, &m1)
        if r0 == 1 and (r1 != 1 or m0.txn >= m1.txn):
            m = m0
        elif r1 == 1:
            m = m1
        else:
            return ST_CORRUPT
        if m.txn <= self.c.txn:
            return 0
        rc = self.file.size(&fsize)
        if rc != 0:
            return rc
        pthread_mutex_lock(&self.lock)
        self.file_pages = fsize // PAGE_SIZE
        pages = self.file_pages if self.file_pages > m.page_count else m.page_count
        rc = ensure_mapped(self, pages)
        if rc == 0:
            self.c.txn = m.txn
            self.c.max_txn = m.txn
            self.c.page_limit = m.page_count if m.page_count < self.file_pages else self.file_pages
            self.c.entries = m.entries
            self.c.applied_lsn = m.applied_lsn
            self.c.root = m.root
            self.c.depth = m.depth
            self.c_page_count = m.page_count
            self.c_free_head = m.free_head
            self.c_free_entries = m.free_entries
            self.version = m.version              # the writer's keyspace step moves 2 to 3
            self.ref_size = ref_size_of(m.version)
        pthread_mutex_unlock(&self.lock)
        return rc if rc != 0 else 1

    cdef void close(self) noexcept nogil:
        self.abort()
        if self.base != NULL:
            munmap(self.base, self.reserved)
            self.base = NULL
            self.mapped = 0
        if self.verified != NULL:
            munmap(self.verified, MAX_PAGES // 8)
            self.verified = NULL
        self.file.close()

    cdef int begin(self) noexcept nogil:
        cdef uint64_t bound
        cdef size_t i
        cdef int rc
        if self.file.fd < 0:
            return ST_CLOSED
        if self.failed:
            return ST_FAILED
        if self.in_txn:
            return -EINVAL
        if self.version == BTREE_VERSION_V1:
            return ST_VERSION                     # read-only: the engine converts it first
        # Pages freed by txn F are reachable from snapshot F - 1: reusable
        # once the older meta on disk is past it (F <= last - 1) and no read
        # cursor holds a snapshot older than F.
        pthread_mutex_lock(&self.lock)
        bound = self.c.txn - 1 if self.c.txn else 0
        for i in range(self.rd_len):
            if self.rd_txn[i] < bound:
                bound = self.rd_txn[i]
        if self.ext_min_txn < bound:
            bound = self.ext_min_txn      # a reader in another process (readers.pxd)
        pthread_mutex_unlock(&self.lock)
        self.reuse.n = self.pend_pg.n = self.pend_tx.n = self.freed.n = 0
        rc = load_free_list(self, bound)
        if rc != 0:
            self.reuse.n = self.pend_pg.n = self.pend_tx.n = self.freed.n = 0
            return rc
        self.w = self.c
        self.w.txn = self.c.txn + 1
        self.w.write = 1
        self.w_page_count = self.c_page_count
        self.w_err = 0
        self.in_txn = 1
        self.wgen += 1
        return 0

    cdef int put(self, const char *key, uint32_t klen, const Ref *ref) noexcept nogil:
        cdef Path pa
        cdef int found, rc
        cdef char *cell
        cdef char *b
        cdef uint32_t pg, size
        cdef Cell c
        if klen > MAX_KEY_LEN:
            return ST_TOO_BIG
        if not self.in_txn:
            return -EINVAL
        if self.w_err:
            return self.w_err
        self.wgen += 1
        cell = self.scratch + 2 * PAGE_SIZE + 3 * SEP_CELL
        st16(cell, <uint16_t>klen)
        memcpy(cell + 2, key, klen)
        memcpy(cell + 2 + klen, ref, REF_SIZE)
        size = 2 + klen + REF_SIZE
        if self.w.root == 0:
            rc = page_alloc(self, &pg, &b)
            if rc != 0:
                self.w_err = rc
                return rc
            c.p = cell
            c.size = size
            build_page(b, pg, PT_LEAF, 0, 0, &c, 0, 1)
            self.w.root = pg
            self.w.depth = 1
            self.w.entries = 1
            return 0
        rc = descend(self, &self.w, key, klen, &pa, &found)
        if rc == 0:
            rc = touch_path(self, &pa)
        if rc == 0 and found:
            b = pa.page[pa.depth - 1]
            memcpy(<char *>slot_cell(b, pa.idx[pa.depth - 1]) + 2 + klen, ref, REF_SIZE)
            return 1
        if rc == 0:
            rc = insert_cell(self, &pa, pa.depth - 1, pa.idx[pa.depth - 1], cell, size)
        if rc < 0:
            self.w_err = rc
            return rc
        self.w.entries += 1
        return 0

    cdef int delete(self, const char *key, uint32_t klen) noexcept nogil:
        cdef Path pa
        cdef int found, rc
        if klen > MAX_KEY_LEN:
            return 0
        if not self.in_txn:
            return -EINVAL
        if self.w_err:
            return self.w_err
        if self.w.root == 0:
            return 0
        rc = descend(self, &self.w, key, klen, &pa, &found)
        if rc == 0 and not found:
            return 0                  # nothing changes: no page is copied
        self.wgen += 1
        if rc == 0:
            rc = touch_path(self, &pa)
        if rc == 0:
            remove_cell(pa.page[pa.depth - 1], pa.idx[pa.depth - 1])
            rc = fix_underflow(self, &pa, pa.depth - 1)
        if rc == 0:
            rc = collapse_root(self)
        if rc < 0:
            self.w_err = rc
            return rc
        self.w.entries -= 1
        return 1

    cdef int get(self, const char *key, uint32_t klen, Ref *out) noexcept nogil:
        if self.file.fd < 0:
            return ST_CLOSED
        if self.in_txn:
            if self.w_err:
                return self.w_err
            return self.snapshot_get(&self.w, key, klen, out)
        return self.snapshot_get(&self.c, key, klen, out)

    cdef int snapshot_get(self, const Snapshot *s, const char *key, uint32_t klen,
                          Ref *out) noexcept nogil:
        cdef uint32_t pg = s.root
        cdef int d, level, rc, found, i
        cdef const char *p
        if self.file.fd < 0:
            return ST_CLOSED
        if klen > MAX_KEY_LEN:
            return 0
        for d in range(<int>s.depth):
            level = <int>s.depth - 1 - d
            rc = page_get(self, s, pg, level, &p)
            if rc != 0:
                return rc
            if level:
                pg = branch_child(p, branch_index(p, key, klen))
            else:
                i = leaf_lower_bound(p, key, klen, &found)
                if found and out != NULL:
                    out.expire_ms = 0
                    memcpy(out, slot_cell(p, i) + 2 + klen, self.ref_size)
                return found
        return 0

    cdef int commit(self, uint64_t applied_lsn) noexcept nogil:
        cdef uint64_t txn, nfree = 0, end_pages = 0
        cdef uint32_t head = 0, pg
        cdef U32Vec order
        cdef MetaBody m
        cdef uint64_t fsize = 0
        cdef char *b
        cdef size_t i, run_lo
        cdef int rc
        if self.file.fd < 0:
            return ST_CLOSED
        if not self.in_txn:
            return -EINVAL
        if self.w_err:
            rc = self.w_err
            self.abort()
            return rc
        txn = self.w.txn
        order.v = NULL
        order.n = order.cap = 0
        rc = free_list_write(self, txn, &head, &nfree)
        if rc == 0:
            rc = ensure_mapped(self, self.w_page_count)
        for i in range(self.dlen):
            if rc == 0 and self.dbuf[i] != NULL:
                rc = v32_push(&order, self.dpgno[i])
        if rc != 0:
            free(order.v)
            self.abort()
            return rc
        qsort(order.v, order.n, sizeof(uint32_t), cmp_u32_asc)

        # ---- commit order (btree.pxd); a crash anywhere leaves commit txn-1 whole.
        # 1. every new page, at page numbers neither meta on disk reaches;
        #    written back WRITEBACK_PAGES at a time, so a big commit never
        #    queues megabytes ahead of the pool's barriers (the writers'
        #    group commits go on meanwhile; measured without it: one durable
        #    put waited 21 ms behind a 50,000-entry commit's fdatasync).
        #    64 KiB steps, not 256 KiB: a durable put's p99 while a checkpoint
        #    applies 200,000 entries to a 1,000,000-key tree went from
        #    2.12-2.18x of the quiet p99 to 1.52-1.56x (paired bench runs);
        #    16 KiB steps gained nothing more (1.61x).
        run_lo = 0
        for i in range(order.n):
            pg = order.v[i]
            b = dirty_lookup(self, pg)
            hdr(b).pgno = pg
            hdr(b).txn = txn
            page_seal(b)
            rc = io_write(self, <uint64_t>pg * PAGE_SIZE, b, PAGE_SIZE)
            if rc != 0:
                break
            if (i + 1) % WRITEBACK_PAGES == 0 or i + 1 == order.n:
                self.file.writeback(<uint64_t>order.v[run_lo] * PAGE_SIZE,
                                    (<uint64_t>pg + 1 - order.v[run_lo]) * PAGE_SIZE)
                run_lo = i + 1
        # Pages taken and freed again in this txn are never written: extend
        # the file so every page below page_count exists.
        if rc == 0:
            rc = self.file.size(&fsize)
        if rc == 0 and fsize < self.w_page_count * PAGE_SIZE:
            rc = self.file.truncate(self.w_page_count * PAGE_SIZE)
        # 2. barrier: the pages are durable before any meta names them.
        if rc == 0:
            rc = io_sync(self)
        if rc != 0:
            free(order.v)
            self.abort()              # nothing on disk names what was written
            return rc
        # 3. the older meta slot now names the new tree.
        memset(&m, 0, sizeof(MetaBody))
        m.version = self.w_version if self.w_version else self.version
        m.txn = txn
        m.page_count = self.w_page_count
        m.entries = self.w.entries
        m.applied_lsn = applied_lsn
        m.free_entries = nfree
        m.root = self.w.root
        m.depth = self.w.depth
        m.free_head = head
        meta_build(self.scratch, <uint32_t>(txn & 1), &m)
        rc = io_write(self, (txn & 1) * PAGE_SIZE, self.scratch, PAGE_SIZE)
        # 4. barrier: only now is the commit durable and acknowledged.
        if rc == 0:
            rc = io_sync(self)
        if rc != 0:
            # The meta may or may not have reached the disk: this handle can
            # no longer tell which state a reopen will find.
            self.failed = 1
            free(order.v)
            self.abort()
            return rc
        for i in range(order.n):
            bit_set(self.verified, order.v[i])
        pthread_mutex_lock(&self.lock)
        self.c = self.w
        self.c.write = 0
        self.c.max_txn = txn
        self.c.page_limit = self.w_page_count
        self.c.applied_lsn = applied_lsn
        self.c_page_count = self.w_page_count
        self.c_free_head = head
        self.c_free_entries = nfree
        self.version = m.version
        if self.file_pages < self.w_page_count:
            self.file_pages = self.w_page_count
        pthread_mutex_unlock(&self.lock)
        free(order.v)
        self.abort()                  # releases the dirty buffers; the state is published
        return 0

    cdef void abort(self) noexcept nogil:
        cdef size_t i
        if not self.in_txn:
            return
        for i in range(self.dlen):
            if self.dbuf[i] != NULL:
                release_buf(self, self.dbuf[i])
        self.dlen = 0
        if self.dmap_cap:
            memset(self.dmap, 0, self.dmap_cap * sizeof(uint32_t))
        self.reuse.n = self.pend_pg.n = self.pend_tx.n = self.freed.n = 0
        self.w_version = 0
        self.in_txn = 0
        self.w_err = 0
        self.wgen += 1

    cdef int set_version(self, uint32_t v) noexcept nogil:
        if not self.in_txn or (v != BTREE_VERSION and v != BTREE_VERSION_V2):
            return -EINVAL
        self.w_version = v
        return 0

    cdef uint64_t count(self) noexcept nogil:
        return self.w.entries if self.in_txn else self.c.entries

    cdef uint64_t applied_lsn(self) noexcept nogil:
        return self.c.applied_lsn

    cdef int snapshot_acquire(self, Snapshot *s) noexcept nogil:
        cdef size_t i, cap
        cdef uint64_t *nt
        cdef uint32_t *nc
        if self.file.fd < 0:
            return ST_CLOSED
        pthread_mutex_lock(&self.lock)
        s[0] = self.c
        for i in range(self.rd_len):
            if self.rd_txn[i] == s.txn:
                self.rd_cnt[i] += 1
                pthread_mutex_unlock(&self.lock)
                return 0
        if self.rd_len == self.rd_cap:
            cap = self.rd_cap * 2 if self.rd_cap else 16
            nt = <uint64_t *>realloc(self.rd_txn, cap * sizeof(uint64_t))
            if nt != NULL:
                self.rd_txn = nt
            nc = <uint32_t *>realloc(self.rd_cnt, cap * sizeof(uint32_t))
            if nc != NULL:
                self.rd_cnt = nc
            if nt == NULL or nc == NULL:
                pthread_mutex_unlock(&self.lock)
                return -ENOMEM
            self.rd_cap = cap
        self.rd_txn[self.rd_len] = s.txn
        self.rd_cnt[self.rd_len] = 1
        self.rd_len += 1
        pthread_mutex_unlock(&self.lock)
        return 0

    cdef void snapshot_release(self, Snapshot *s) noexcept nogil:
        cdef size_t i
        pthread_mutex_lock(&self.lock)
        for i in range(self.rd_len):
            if self.rd_txn[i] == s.txn:
                self.rd_cnt[i] -= 1
                if self.rd_cnt[i] == 0:
                    self.rd_len -= 1
                    self.rd_txn[i] = self.rd_txn[self.rd_len]
                    self.rd_cnt[i] = self.rd_cnt[self.rd_len]
                break
        pthread_mutex_unlock(&self.lock)

    cdef Cursor cursor(self, int write):
        cdef Cursor cur = Cursor.__new__(Cursor)
        cdef int rc
        cur.tree = self
        if self.file.fd < 0:
            raise_status(ST_CLOSED, "b-tree cursor", None)
        if write:
            if not self.in_txn:
                raise Error("b-tree cursor: no write transaction is open")
            cur.write = 1
            cur.wtxn = self.w.txn
        else:
            rc = self.snapshot_acquire(&cur.snap)
            raise_status(rc, "b-tree cursor", None)
            cur.pinned = 1
        return cur

    # ------------------------------------------------------------ check()

    def check(self):
        """Verify the last commit from the disk, whatever is cached: every
        page's checksum and layout, key order across the whole tree, levels,
        the fill invariant, the entry count, every page reachable exactly once,
        free pages not reachable, and every page below page_count either in
        the tree, in the free-list chain or listed free.  Returns a list of
        problems (empty: clean)."""
        cdef Snapshot s
        cdef uint64_t pc, limit, nfree = 0, hops = 0, ft
        cdef uint32_t pg, e, head
        cdef stat st
        cdef const char *p
        cdef char *seen
        cdef int v, i
        if self.file.fd < 0:
            raise_status(ST_CLOSED, "b-tree check", None)
        pthread_mutex_lock(&self.lock)
        s = self.c
        pc = self.c_page_count
        head = self.c_free_head
        pthread_mutex_unlock(&self.lock)
        problems = []
        if fstat(self.file.fd, &st) != 0:
            raise OSError(errno, "b-tree check: fstat failed")
        limit = <uint64_t>st.st_size // PAGE_SIZE
        if limit < pc:
            problems.append(f"page_count is {pc} but the file holds {limit} pages")
        else:
            limit = pc
        cdef bytearray marks = bytearray(pc)
        seen = <char *>marks              # 0 unseen, 1 tree, 2 chain, 3 listed free
        counted = [0]
        if s.root:
            check_node(self, s.root, <int>s.depth - 1, None, None, True, s.txn, limit,
                             seen, problems, counted)
        if counted[0] != s.entries and not problems:
            problems.append(f"meta says {s.entries} entries, the leaves hold {counted[0]}")
        pg = head
        while pg:
            hops += 1
            if pg < META_PAGES or pg >= limit or hops > pc:
                problems.append(f"free-list chain names page {pg}, outside [2, {limit})")
                break
            if seen[pg]:
                problems.append(f"free-list page {pg} is also used elsewhere")
                break
            seen[pg] = 2
            p = self.base + <uint64_t>pg * PAGE_SIZE
            v = page_verify(p, pg, s.txn, PT_FREE, self.ref_size)
            if v != PV_OK:
                problems.append(f"free-list page {pg}: {_VERDICT[v]}")
                break
            ft = ld64(p + PAGE_HDR)
            if ft > s.txn:
                problems.append(f"free-list page {pg}: freed by txn {ft} > commit {s.txn}")
            for i in range(hdr(p).count):
                e = ld32(p + FREE_HDR + 4 * i)
                nfree += 1
                if e < META_PAGES or e >= pc:
                    problems.append(f"free list names page {e}, outside [2, {pc})")
                elif seen[e] == 1:
                    problems.append(f"free page {e} is reachable from the tree")
                elif seen[e] == 2:
                    problems.append(f"free page {e} is a free-list page")
                elif seen[e] == 3:
                    problems.append(f"free page {e} is listed twice")
                else:
                    seen[e] = 3
            pg = hdr(p).link
        if nfree != self.c_free_entries and not problems:
            problems.append(f"meta says {self.c_free_entries} free pages, the chain holds {nfree}")
        leaked = [n for n in range(META_PAGES, pc) if marks[n] == 0]
        if leaked:
            problems.append(f"{len(leaked)} pages neither reachable nor free: {leaked[:20]}")
        return problems

    def tree_pages(self):
        """(pgno, level) of every page the last commit reaches (tests)."""
        out = []
        if self.c.root:
            walk_tree(self, self.c.root, <int>self.c.depth - 1, out)
        return out



cdef check_node(BTree self, uint32_t pg, int level, bytes lo, bytes hi, bint root,
                 uint64_t max_txn, uint64_t limit, char *seen, list problems, list counted):
    cdef const char *p
    cdef const char *c
    cdef int v, j, n
    cdef int want = PT_LEAF if level == 0 else PT_BRANCH
    if pg < META_PAGES or pg >= limit:
        problems.append(f"a level-{level} page reference names page {pg}, outside [2, {limit})")
        return
    if seen[pg]:
        problems.append(f"page {pg} is reachable more than once")
        return
    seen[pg] = 1
    if level < 0 or level >= MAX_DEPTH:
        problems.append(f"page {pg}: impossible level {level}")
        return
    p = self.base + <uint64_t>pg * PAGE_SIZE
    v = page_verify(p, pg, max_txn, want, self.ref_size)
    if v != PV_OK:
        problems.append(f"page {pg} ({_TYPE_NAME[want]}, level {level}): {_VERDICT[v]}")
        return
    if hdr(p).level != level:
        problems.append(f"page {pg}: level {hdr(p).level}, its parent expects {level}")
        return
    n = hdr(p).count
    if not root and hdr(p).used < MIN_FILL:
        problems.append(f"page {pg} ({_TYPE_NAME[want]}): {hdr(p).used} bytes used, "
                        f"below the fill minimum {MIN_FILL}")
    c = slot_cell(p, 0)
    first = PyBytes_FromStringAndSize(c + 2, ld16(c))
    c = slot_cell(p, n - 1)
    last = PyBytes_FromStringAndSize(c + 2, ld16(c))
    if (lo is not None and first < lo) or (hi is not None and last >= hi):
        problems.append(f"page {pg}: keys {first[:16]!r}..{last[:16]!r} outside the "
                        f"parent's range [{(lo or b'')[:16]!r}, {(hi or b'')[:16]!r})")
    if level == 0:
        counted[0] += n
        return
    check_node(self, hdr(p).link, level - 1, lo, first, False, max_txn, limit, seen,
                     problems, counted)
    for j in range(n):
        c = slot_cell(p, j)
        sep = PyBytes_FromStringAndSize(c + 2, ld16(c))
        if j + 1 < n:
            c = slot_cell(p, j + 1)
            nxt = PyBytes_FromStringAndSize(c + 2, ld16(c))
        else:
            nxt = hi
        check_node(self, branch_child(p, j + 1), level - 1, sep, nxt, False, max_txn,
                         limit, seen, problems, counted)


cdef walk_tree(BTree self, uint32_t pg, int level, list out):
    cdef const char *p
    cdef int rc = page_get(self, &self.c, pg, level, &p)
    cdef int j
    raise_status(rc, "b-tree walk", None)
    out.append((pg, level))
    if level:
        for j in range(hdr(p).count + 1):
            walk_tree(self, branch_child(p, j), level - 1, out)


cdef int create_file(File f, const char *path, char *buf) noexcept nogil:
    """A new file with both meta pages (txn 0, empty tree), built as
    path.new (through f, which is left closed) and renamed into place once
    durable: `path` never exists without a valid meta.  0 or -errno."""
    cdef size_t n = strlen(path)
    cdef char *tmp = <char *>malloc(n + 5)
    cdef char *slash
    cdef MetaBody m
    cdef int fd, rc
    if tmp == NULL:
        return -ENOMEM
    memcpy(tmp, path, n)
    memcpy(tmp + n, b".new\0", 5)
    rc = f.open(tmp, 1)
    if rc != 0:
        free(tmp)
        return rc
    memset(&m, 0, sizeof(MetaBody))
    m.page_count = META_PAGES
    meta_build(buf, 0, &m)
    meta_build(buf + PAGE_SIZE, 1, &m)
    rc = f.truncate(0)
    if rc == 0:
        rc = f.write(0, buf, 2 * PAGE_SIZE)
    if rc == 0:
        rc = f.sync()
    f.close()
    if rc == 0:
        rc = f.vfs.rename(tmp, path)
    if rc == 0 and not f.vfs.nosync and not f.vfs.sim:
        # the directory entry too, or a power loss could forget the file
        slash = strrchr(tmp, 47)           # '/'
        if slash == NULL:
            fd = c_open(b".", O_RDONLY | O_CLOEXEC)
        else:
            slash[1] = 0
            fd = c_open(tmp, O_RDONLY | O_CLOEXEC)
        if fd >= 0:
            if fsync(fd) != 0:
                rc = -errno
            c_close(fd)
    free(tmp)
    return rc


# ---------------------------------------------------------------- Cursor

cdef int cur_live(Cursor c) noexcept nogil:
    if c.tree.file.fd < 0:
        return ST_CLOSED
    if c.write:
        if not c.tree.in_txn or c.tree.w.txn != c.wtxn:
            return -EINVAL
        return c.tree.w_err
    if not c.pinned:
        return ST_CLOSED
    return 0


cdef inline const Snapshot *cur_snap(Cursor c) noexcept nogil:
    return &c.tree.w if c.write else &c.snap


cdef int cur_load(Cursor c) noexcept nogil:
    cdef const char *p = c.page[c.depth - 1]
    cdef const char *cell = slot_cell(p, c.idx[c.depth - 1])
    c.klen = ld16(cell)
    memcpy(c.kbuf, cell + 2, c.klen)
    c.cref.expire_ms = 0
    memcpy(&c.cref, cell + 2 + c.klen, c.tree.ref_size)
    c.valid = 1
    c.wgen = c.tree.wgen
    return 1


cdef int cur_step(Cursor c, int forward) noexcept nogil:
    """The leaf slot ran off one end: climb to the nearest level with room to
    move that way, step, and descend along the near edge."""
    cdef const Snapshot *s = cur_snap(c)
    cdef int d = c.depth - 1, e, level, rc
    cdef uint32_t pg
    cdef const char *p
    while True:
        if d == 0:
            c.valid = 0
            return 0
        d -= 1
        if forward and c.idx[d] < hdr(c.page[d]).count:
            c.idx[d] += 1
            break
        if not forward and c.idx[d] > 0:
            c.idx[d] -= 1
            break
    for e in range(d + 1, c.depth):
        level = c.depth - 1 - e
        pg = branch_child(c.page[e - 1], c.idx[e - 1])
        rc = page_get(c.tree, s, pg, level, &p)
        if rc != 0:
            c.valid = 0
            return rc
        c.page[e] = p
        if forward:
            c.idx[e] = 0
        else:
            c.idx[e] = <int>hdr(p).count if level else <int>hdr(p).count - 1
    return cur_load(c)


cdef int cur_seek(Cursor c, const char *key, uint32_t klen, int mode) noexcept nogil:
    cdef const Snapshot *s
    cdef uint32_t pg
    cdef int d, level, rc, i, found = 0, n
    cdef const char *p
    rc = cur_live(c)
    c.valid = 0
    if rc != 0:
        return rc
    s = cur_snap(c)
    c.wgen = c.tree.wgen
    c.depth = <int>s.depth
    if s.root == 0:
        return 0
    if klen > MAX_KEY_LEN:
        # longer than any stored key: only its first MAX_KEY_LEN bytes matter,
        # and it sorts after them
        klen = MAX_KEY_LEN
        if mode == SEEK_GE:
            mode = SEEK_GT
        elif mode == SEEK_LT:
            mode = SEEK_LE
    pg = s.root
    for d in range(<int>s.depth):
        level = <int>s.depth - 1 - d
        rc = page_get(c.tree, s, pg, level, &p)
        if rc != 0:
            return rc
        c.page[d] = p
        n = hdr(p).count
        if level:
            if mode == SEEK_FIRST:
                c.idx[d] = 0
            elif mode == SEEK_LAST:
                c.idx[d] = n
            else:
                c.idx[d] = branch_index(p, key, klen)
            pg = branch_child(p, c.idx[d])
        else:
            if mode == SEEK_FIRST:
                i = 0
            elif mode == SEEK_LAST:
                i = n - 1
            else:
                i = leaf_lower_bound(p, key, klen, &found)
                if mode == SEEK_GT:
                    i += found
                elif mode == SEEK_LE:
                    i -= 1 - found
                elif mode == SEEK_LT:
                    i -= 1
            c.idx[d] = i
            if i >= n:
                c.idx[d] = n - 1
                return cur_step(c, 1)
            if i < 0:
                c.idx[d] = 0
                return cur_step(c, 0)
    return cur_load(c)


@cython.no_gc_clear                   # close() needs the tree while the cursor dies
cdef class Cursor:

    def __dealloc__(self):
        if self.tree is not None:
            self.close()

    cdef int seek_ge(self, const char *key, uint32_t klen) noexcept nogil:
        return cur_seek(self, key, klen, SEEK_GE)

    cdef int seek_gt(self, const char *key, uint32_t klen) noexcept nogil:
        return cur_seek(self, key, klen, SEEK_GT)

    cdef int seek_le(self, const char *key, uint32_t klen) noexcept nogil:
        return cur_seek(self, key, klen, SEEK_LE)

    cdef int seek_lt(self, const char *key, uint32_t klen) noexcept nogil:
        return cur_seek(self, key, klen, SEEK_LT)

    cdef int first(self) noexcept nogil:
        return cur_seek(self, NULL, 0, SEEK_FIRST)

    cdef int last(self) noexcept nogil:
        return cur_seek(self, NULL, 0, SEEK_LAST)

    cdef int next(self) noexcept nogil:
        cdef int rc = cur_live(self)
        cdef int leaf
        if rc != 0:
            self.valid = 0
            return rc
        if not self.valid:
            return 0
        if self.write and self.wgen != self.tree.wgen:
            return cur_seek(self, self.kbuf, self.klen, SEEK_GT)   # the txn changed: re-seek
        leaf = self.depth - 1
        self.idx[leaf] += 1
        if self.idx[leaf] < hdr(self.page[leaf]).count:
            return cur_load(self)
        self.idx[leaf] -= 1
        return cur_step(self, 1)

    cdef int prev(self) noexcept nogil:
        cdef int rc = cur_live(self)
        cdef int leaf
        if rc != 0:
            self.valid = 0
            return rc
        if not self.valid:
            return 0
        if self.write and self.wgen != self.tree.wgen:
            return cur_seek(self, self.kbuf, self.klen, SEEK_LT)
        leaf = self.depth - 1
        if self.idx[leaf] > 0:
            self.idx[leaf] -= 1
            return cur_load(self)
        return cur_step(self, 0)

    cdef const char *key(self, uint32_t *klen) noexcept nogil:
        if not self.valid:
            klen[0] = 0
            return NULL
        klen[0] = self.klen
        return self.kbuf

    cdef int ref(self, Ref *out) noexcept nogil:
        if not self.valid:
            return 0
        out[0] = self.cref
        return 1

    cdef int renew(self) noexcept nogil:
        cdef int rc
        if self.write:
            return -EINVAL
        if self.pinned:
            self.tree.snapshot_release(&self.snap)
            self.pinned = 0
        self.valid = 0
        rc = self.tree.snapshot_acquire(&self.snap)
        if rc == 0:
            self.pinned = 1
        return rc

    cdef void close(self) noexcept nogil:
        if self.pinned:
            self.tree.snapshot_release(&self.snap)
            self.pinned = 0
        self.write = 0
        self.valid = 0


# ---------------------------------------------------------------- Python edge
# TreeFile (tools: pastedb-check's verification and repair, the upgrade):
# bytes keys, Refs as 7-tuples (ref_tuple / ref_from in btree.pxd), statuses
# raised through status.raise_status.  The tests' drivers (bulk loops in C,
# cursors, internals, fault injection) are btree_testing.pyx.

cdef class TreeFile:
    """An index file as a whole, for tools that read or write one outside a
    database (pastedb-check's verification and repair): open, one write
    transaction at a time (begin / put / delete / commit with the log
    position it covers), the structure check, every entry in order.  Refs
    are 7-tuples (koff, voff, vlen, lsn, klen, vcrc, expire_ms); statuses raise through
    status.raise_status.  sync=False skips the barriers; crashsim (tests)
    simulates them (vfs.pxd)."""

    def __cinit__(self, path, bint create=True, bint sync=True, bint crashsim=False):
        cdef bytes bpath = os.fsencode(path)
        cdef const char *cp = bpath
        cdef int rc
        self.path = os.fspath(path)
        self.vfs = Vfs(sim=crashsim, nosync=not sync)
        self.t = BTree(self.vfs)
        with nogil:
            rc = self.t.open(cp, create)
        raise_status(rc, "open b-tree", self.path)

    def close(self):
        self.t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def begin(self):
        raise_status(self.t.begin(), "b-tree begin", self.path)

    def set_version(self, int version):
        """The write txn's commit stamps this format version (BTREE_VERSION_V2
        or BTREE_VERSION)."""
        raise_status(self.t.set_version(<uint32_t>version), "b-tree set_version", self.path)

    def put(self, bytes key not None, ref):
        """Insert or replace in the write txn; True if the key existed."""
        cdef Ref r
        cdef int rc
        ref_from(&r, ref)
        rc = self.t.put(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), &r)
        raise_status(rc if rc < 0 else 0, "b-tree put", self.path)
        return rc == 1

    def delete(self, bytes key not None):
        cdef int rc = self.t.delete(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key))
        raise_status(rc if rc < 0 else 0, "b-tree delete", self.path)
        return rc == 1

    def get(self, bytes key not None):
        cdef Ref r
        cdef int rc = self.t.get(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key), &r)
        raise_status(rc if rc < 0 else 0, "b-tree get", self.path)
        return ref_tuple(&r) if rc == 1 else None

    def commit(self, uint64_t applied_lsn=0):
        cdef int rc
        cdef BTree t = self.t
        with nogil:
            rc = t.commit(applied_lsn)
        raise_status(rc, "b-tree commit", self.path)

    def abort(self):
        self.t.abort()

    def check(self):
        return self.t.check()

    def items(self, bint write=False):
        """Every (key, ref) in order: the write txn's (write) or the last commit's."""
        cdef Cursor c = self.t.cursor(write)
        cdef int rc = c.first()
        out = []
        while rc == 1:
            out.append((PyBytes_FromStringAndSize(c.kbuf, c.klen), ref_tuple(&c.cref)))
            rc = c.next()
        c.close()
        raise_status(rc, "b-tree scan", self.path)
        return out

    @property
    def count(self):
        return self.t.count()

    @property
    def applied_lsn(self):
        return self.t.applied_lsn()

    @property
    def txn(self):
        return self.t.c.txn

    @property
    def version(self):
        """The file's BTREE_VERSION (BTREE_VERSION_V1: read-only, upgrade_file converts it)."""
        return self.t.version


def upgrade_file(path):
    """Convert a version-1 index file (Refs without expire_ms) to the
    current version, atomically: the entries are copied, as "no expiry", into
    path.upgrade under one commit with the same applied_lsn, which is
    verified, fsynced and renamed over `path`, and the directory fsynced.  A
    crash before the rename leaves the old file in force (the next open
    converts again).  Returns True when it converted, False when the file is
    already current."""
    path = os.fspath(path)
    tmp = path + ".upgrade"
    with TreeFile(path, create=False, sync=False) as old:
        if old.version != BTREE_VERSION_V1:
            return False
        applied = old.applied_lsn
        items = old.items()
    if os.path.lexists(tmp):
        os.unlink(tmp)
    with TreeFile(tmp, create=True, sync=True) as new:
        new.begin()
        # Version 2, not 3: the log after this tree may hold keys of the one
        # keyspace, so the engine's keyspace step (after replay) decides.
        new.set_version(BTREE_VERSION_V2)
        for n, (key, ref) in enumerate(items, 1):
            new.put(key, ref)
            if n % 262144 == 0:                   # bound the write txn; the file is not in use
                new.commit(0)
                new.begin()
                new.set_version(BTREE_VERSION_V2)
        new.commit(applied)
        problems = new.check()
        if problems or new.count != len(items):
            raise Error(f"upgrade of {path}: the converted index does not verify: {problems[:3]}")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
