"""pastedb-check's passes over every live entry, in C.

A database holds millions of keys.  The checker's per-key work -- the index
file's entries as Entry objects, the bounds, key-bytes and checksum checks of
the values only the index names, the sweep for bytes owned twice, and the
space sums -- runs here, the checksums with the GIL released.  What a finding
says and what a repair does about it stay in pastedb/check.py; the format
knowledge (bounds, limits, CRC32C) is format.pxd's, the tree walk btree.pxd's.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.object cimport PyObject
from libc.stdint cimport UINT64_MAX, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcmp

from pastedb.core.btree cimport Cursor, TreeFile
from pastedb.core.format cimport (
    CHUNK_SIZE,
    HEADER_SIZE,
    MAX_KEY_LEN,
    MAX_VALUE_LEN,
    span_outside,
    value_verifies,
)
from pastedb.core.status cimport raise_status

LOG = "log"
TREE = "tree"
cdef str _TREE = TREE


cdef class Entry:
    """A live key's reference as open() would hold it: where its key and
    value lie in the pool, the LSN and value CRC of the record that wrote
    it, its expiry (ms since the epoch, 0 none).  src: "log" (a log record
    of the chain) or "tree" (the index file; no replayed record replaced it)."""
    cdef public uint64_t lsn, koff, voff, vlen, expire_ms
    cdef public uint32_t klen, vcrc
    cdef public str src

    def __init__(self, uint64_t lsn, uint64_t koff, uint32_t klen, uint64_t voff, uint64_t vlen,
                 uint32_t vcrc, str src=LOG, uint64_t expire_ms=0):
        self.lsn = lsn
        self.koff = koff
        self.klen = klen
        self.voff = voff
        self.vlen = vlen
        self.vcrc = vcrc
        self.src = src
        self.expire_ms = expire_ms

    def ref(self):
        """The index file's Ref tuple (koff, voff, vlen, lsn, klen, vcrc, expire_ms)."""
        return (self.koff, self.voff, self.vlen, self.lsn, self.klen, self.vcrc, self.expire_ms)

    def __eq__(self, other):
        if not isinstance(other, Entry):
            return NotImplemented
        return self.ref() == (<Entry>other).ref() and self.src == (<Entry>other).src

    __hash__ = None

    def __repr__(self):
        return (f"Entry(lsn={self.lsn}, koff={self.koff}, klen={self.klen}, voff={self.voff}, "
                f"vlen={self.vlen}, vcrc={self.vcrc}, src={self.src!r}, "
                f"expire_ms={self.expire_ms})")


cdef inline uint64_t end_of(uint64_t off, uint64_t n) noexcept nogil:
    # off + n, saturating: a damaged reference must not wrap around.
    return off + n if n <= UINT64_MAX - off else UINT64_MAX


cdef inline bint is_tree(Entry e):
    return e.src is _TREE or e.src == _TREE


def tree_entries(TreeFile tree not None):
    """The index file's last commit as ({key: Entry(src="tree")}, the highest
    LSN among them), in one pass of a read cursor."""
    cdef Cursor c = tree.t.cursor(0)
    cdef dict out = {}
    cdef uint64_t max_lsn = 0
    cdef Entry e
    cdef int rc = 0
    try:
        rc = c.first()
        while rc == 1:
            e = Entry.__new__(Entry)
            e.koff = c.cref.koff
            e.voff = c.cref.voff
            e.vlen = c.cref.vlen
            e.lsn = c.cref.lsn
            e.klen = c.cref.klen
            e.vcrc = c.cref.vcrc
            e.expire_ms = c.cref.expire_ms
            e.src = _TREE
            out[PyBytes_FromStringAndSize(c.kbuf, c.klen)] = e
            if e.lsn > max_lsn:
                max_lsn = e.lsn
            rc = c.next()
    finally:
        c.close()
    raise_status(rc if rc < 0 else 0, "b-tree scan", tree.path)
    return out, max_lsn


cdef inline const unsigned char *buffer_base(const unsigned char[::1] b) noexcept nogil:
    return &b[0] if b.shape[0] > 0 else NULL


def index_values(dict state not None, dict seen not None, buf, str ok, str bad,
                 progress=None, str label="", uint64_t window=64 << 20):
    """The checks of the live entries only the index names (src "tree"):
    their references in bounds, the key bytes in the pool equal to the
    index's copy, the value CRC.  buf: the pool file's bytes (a read-only
    mapping).  seen: {(voff, vlen, vcrc): verdict} of the chain's PUT records
    -- a value a record verified (`ok`) is not checksummed again, one it
    found damaged (`bad`) is lost without a second report.

    Returns (events, bad_keys, verified, verified_bytes).  events, in the
    order a report lists them, are (why, key, entry): "key-ref" an
    impossible key reference, "value-ref" an impossible value reference,
    "truncated" the value lies beyond the end of the file, "seen-bad", and
    then "crc" (the checksum fails).  bad_keys: keys whose pool bytes differ
    from the index's copy or lie beyond the file.  progress (if given):
    .start(label, bytes to checksum), .advance(n) after each `window` bytes,
    .finish()."""
    cdef const unsigned char[::1] b = buf
    cdef const unsigned char *base = buffer_base(b)
    cdef uint64_t size = <uint64_t>b.shape[0]
    cdef list events = [], bad_keys = [], todo_keys = [], todo = []
    cdef Py_ssize_t pos = 0, n, i, j
    cdef PyObject *kp
    cdef PyObject *vp
    cdef object key
    cdef Entry e
    cdef bint check_seen = len(seen) > 0
    while PyDict_Next(state, &pos, &kp, &vp):
        e = <Entry>vp
        if not is_tree(e):
            continue
        key = <object>kp
        if e.klen != <uint64_t>PyBytes_GET_SIZE(key) or e.klen > MAX_KEY_LEN or e.koff < HEADER_SIZE:
            events.append(("key-ref", key, e))
            continue
        if e.voff < HEADER_SIZE or e.vlen > MAX_VALUE_LEN:
            events.append(("value-ref", key, e))
            continue
        if e.voff > size or e.vlen > size - e.voff:
            events.append(("truncated", key, e))
            continue
        if span_outside(e.koff, e.klen, size) or \
                memcmp(base + e.koff, PyBytes_AS_STRING(key), e.klen) != 0:
            bad_keys.append(key)
        if check_seen:
            verdict = seen.get((e.voff, e.vlen, e.vcrc))
            if verdict is not None and verdict == bad:
                events.append(("seen-bad", key, e))
                continue
            if verdict is not None and verdict == ok:
                continue
        todo_keys.append(key)
        todo.append(e)
    n = len(todo)
    cdef uint64_t *voff = <uint64_t *>malloc(<size_t>(n + 1) * sizeof(uint64_t))
    cdef uint64_t *vlen = <uint64_t *>malloc(<size_t>(n + 1) * sizeof(uint64_t))
    cdef uint32_t *vcrc = <uint32_t *>malloc(<size_t>(n + 1) * sizeof(uint32_t))
    cdef unsigned char *good = <unsigned char *>malloc(<size_t>(n + 1))
    cdef uint64_t total = 0, part
    if voff == NULL or vlen == NULL or vcrc == NULL or good == NULL:
        free(voff); free(vlen); free(vcrc); free(good)
        raise MemoryError()
    try:
        for i in range(n):
            e = <Entry>todo[i]
            voff[i] = e.voff
            vlen[i] = e.vlen
            vcrc[i] = e.vcrc
            total += e.vlen
        if progress is not None:
            progress.start(label, total)
        total = 0
        i = 0
        while i < n:
            part = 0
            j = i
            with nogil:
                while j < n and part < window:
                    good[j] = value_verifies(<const char *>base, size, voff[j], vlen[j], vcrc[j])
                    part += vlen[j]
                    j += 1
            i = j
            total += part
            if progress is not None:
                progress.advance(part)
        if progress is not None:
            progress.finish()
        for i in range(n):
            if not good[i]:
                events.append(("crc", todo_keys[i], todo[i]))
    finally:
        free(voff); free(vlen); free(vcrc); free(good)
    return events, bad_keys, n, total


# ---------------------------------------------------------------- ownership

cdef enum:                      # a span's owner, in the order of the names below
    W_HEADER = 0
    W_KEY = 1
    W_CHUNK = 2
    W_VALUE = 3

WHAT = ("header", "key", "log chunk", "value")


cdef struct Span:
    uint64_t start
    uint64_t end
    uint64_t prio                # the entry's LSN; 0 for the header and log chunks
    int what
    uint32_t klen
    const char *key              # the owning key's bytes (kept alive by the state dict)
    PyObject *kobj


cdef int span_cmp(const void *pa, const void *pb) noexcept nogil:
    # The order of the tuples (start, end, prio, what, key).
    cdef const Span *a = <const Span *>pa
    cdef const Span *b = <const Span *>pb
    cdef int c
    if a.start != b.start:
        return -1 if a.start < b.start else 1
    if a.end != b.end:
        return -1 if a.end < b.end else 1
    if a.prio != b.prio:
        return -1 if a.prio < b.prio else 1
    if a.what != b.what:
        return -1 if a.what < b.what else 1
    c = memcmp(a.key, b.key, a.klen if a.klen < b.klen else b.klen)
    if c != 0:
        return c
    return (a.klen > b.klen) - (a.klen < b.klen)


cdef tuple span_tuple(const Span *s):
    return (s.start, s.end, s.prio, WHAT[s.what], <object>s.kobj)


def owned_twice(list chunks not None, dict state not None):
    """Live bytes owned twice: by two entries, or by an entry and a log chunk
    (CHUNK_SIZE bytes at each offset of `chunks`) or the header.  Spans are
    (start, end, prio, what, key); the one written later (or the entry,
    against a chunk) is the one to move.  Returns [(mover, other, lo, hi)]
    where [lo, hi) is the doubly owned range."""
    cdef Py_ssize_t n = 1 + len(chunks) + 2 * len(state), m = 0, i, pos = 0
    cdef Span *sp = <Span *>malloc(<size_t>n * sizeof(Span))
    cdef PyObject *kp
    cdef PyObject *vp
    cdef Entry e
    cdef bytes empty = b""
    cdef Span *s
    cdef Span *cur = NULL
    cdef Span *a
    cdef Span *o
    cdef uint64_t cur_end = 0
    cdef list out = []
    if sp == NULL:
        raise MemoryError()
    try:
        sp[m] = Span(0, HEADER_SIZE, 0, W_HEADER, 0, PyBytes_AS_STRING(empty), <PyObject *>empty)
        m += 1
        for c in chunks:
            sp[m] = Span(c, end_of(c, CHUNK_SIZE), 0, W_CHUNK, 0, PyBytes_AS_STRING(empty),
                         <PyObject *>empty)
            m += 1
        while PyDict_Next(state, &pos, &kp, &vp):
            e = <Entry>vp
            if e.klen:
                sp[m] = Span(e.koff, end_of(e.koff, e.klen), e.lsn, W_KEY,
                             <uint32_t>PyBytes_GET_SIZE(<object>kp), PyBytes_AS_STRING(<object>kp), kp)
                m += 1
            if e.vlen:
                sp[m] = Span(e.voff, end_of(e.voff, e.vlen), e.lsn, W_VALUE,
                             <uint32_t>PyBytes_GET_SIZE(<object>kp), PyBytes_AS_STRING(<object>kp), kp)
                m += 1
        with nogil:
            qsort(sp, <size_t>m, sizeof(Span), span_cmp)
        for i in range(m):
            s = &sp[i]
            if cur != NULL and s.start < cur_end:
                if s.prio >= cur.prio:
                    a, o = s, cur
                else:
                    a, o = cur, s
                if a.what == W_KEY or a.what == W_VALUE:
                    out.append((span_tuple(a), span_tuple(o), s.start,
                                s.end if s.end < cur_end else cur_end))
            if cur == NULL or s.end > cur_end:
                cur_end = s.end
                cur = s
    finally:
        free(sp)
    return out


# ---------------------------------------------------------------- space sums

def state_sums(dict state not None):
    """(entries from the index file, live key + value bytes, the end of the
    furthest key or value an index-file entry names (0: none)) of a state."""
    cdef Py_ssize_t pos = 0, tree = 0
    cdef PyObject *kp
    cdef PyObject *vp
    cdef Entry e
    cdef uint64_t live = 0, hi = 0
    while PyDict_Next(state, &pos, &kp, &vp):
        e = <Entry>vp
        live += e.klen + e.vlen
        if is_tree(e):
            tree += 1
            hi = max(hi, end_of(e.koff, e.klen), end_of(e.voff, e.vlen))
    return tree, live, hi


cdef struct Range:
    uint64_t start
    uint64_t end


cdef int range_cmp(const void *pa, const void *pb) noexcept nogil:
    cdef const Range *a = <const Range *>pa
    cdef const Range *b = <const Range *>pb
    if a.start != b.start:
        return -1 if a.start < b.start else 1
    return (a.end > b.end) - (a.end < b.end)


def referenced_bytes(list ranges not None, dict state not None):
    """Bytes covered by the union of the [start, end) `ranges` and the keys
    and values of the state's index-file entries."""
    cdef Py_ssize_t n = len(ranges) + 2 * len(state), m = 0, i, pos = 0
    cdef Range *r = <Range *>malloc(<size_t>(n + 1) * sizeof(Range))
    cdef PyObject *kp
    cdef PyObject *vp
    cdef Entry e
    cdef uint64_t total = 0, cs = 0, ce = 0
    if r == NULL:
        raise MemoryError()
    try:
        for s, t in ranges:
            if t > s:
                r[m] = Range(s, t)
                m += 1
        while PyDict_Next(state, &pos, &kp, &vp):
            e = <Entry>vp
            if is_tree(e):
                if e.klen:
                    r[m] = Range(e.koff, end_of(e.koff, e.klen))
                    m += 1
                if e.vlen:
                    r[m] = Range(e.voff, end_of(e.voff, e.vlen))
                    m += 1
        with nogil:
            qsort(r, <size_t>m, sizeof(Range), range_cmp)
            for i in range(m):
                if i == 0 or r[i].start > ce:
                    total += ce - cs
                    cs, ce = r[i].start, r[i].end
                elif r[i].end > ce:
                    ce = r[i].end
            total += ce - cs
    finally:
        free(r)
    return total
