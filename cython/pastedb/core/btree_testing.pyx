# btree_testing.pyx -- the tests' drivers of the B-tree (not used by the
# database, pastedb-check or the tools; those use btree.pyx's TreeFile).
#
# BTreeTester is a TreeFile plus what the tests need: read and write cursors
# (CursorTester), bulk put / delete / get loops in C with the GIL released
# (put_many stores synth_ref(seq0 + i, len(key)) for keys[i], so a test can
# predict every Ref), scans, internals (pages, depth, free pages, reader
# pins) and the I/O layer's fault injection and crash images.  Keys are
# bytes, Refs 7-tuples (btree.pxd's ref_tuple / ref_from), statuses raised
# through status.raise_status.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from pastedb.core.btree cimport BTree, Cursor, TreeFile, ref_from, ref_tuple
from pastedb.core.format cimport key_cmp
from pastedb.core.index cimport Ref
from pastedb.core.status cimport raise_status


cdef inline void ref_synth(Ref *r, uint64_t n, uint32_t klen) noexcept nogil:
    r.koff = n * 3
    r.voff = n * 7 + 1
    r.vlen = n % 1000
    r.lsn = n
    r.klen = klen
    r.vcrc = <uint32_t>(n * 2654435761ULL)
    r.expire_ms = 0


def synth_ref(uint64_t n, uint32_t klen):
    """The Ref put_many stores for sequence number n (tests compare against it)."""
    cdef Ref r
    ref_synth(&r, n, klen)
    return ref_tuple(&r)


cdef int key_arrays(list ks, const char ***ptr, uint32_t **lens) except -1:
    """C arrays of the bytes keys' pointers and lengths, for loops without
    the GIL (the caller frees both, also after an error)."""
    cdef Py_ssize_t n = len(ks), i
    ptr[0] = <const char **>malloc(<size_t>(n + 1) * sizeof(char *))
    lens[0] = <uint32_t *>malloc(<size_t>(n + 1) * sizeof(uint32_t))
    if ptr[0] == NULL or lens[0] == NULL:
        raise MemoryError()
    for i in range(n):
        k = ks[i]
        if not isinstance(k, bytes):
            raise TypeError("keys must be bytes")
        ptr[0][i] = PyBytes_AS_STRING(k)
        lens[0][i] = <uint32_t>PyBytes_GET_SIZE(k)
    return 0


cdef class BTreeTester(TreeFile):
    """TreeFile plus the tests' drivers: cursors, bulk loops in C with the GIL
    released, internals, and I/O fault injection."""

    def cursor(self, bint write=False):
        cdef CursorTester ct = CursorTester.__new__(CursorTester)
        ct.c = self.t.cursor(write)
        ct.path = self.path
        return ct

    def tree_pages(self):
        return self.t.tree_pages()

    def put_many(self, keys, uint64_t seq0=0):
        """put(keys[i], synth_ref(seq0 + i, len)) for each key; returns how many were new."""
        return self._many(list(keys), 1, seq0)

    def delete_many(self, keys):
        """delete each key; returns how many were present."""
        cdef size_t removed = 0
        cdef int rc
        for k in keys:
            rc = self.t.delete(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k))
            raise_status(rc if rc < 0 else 0, "b-tree delete", self.path)
            removed += <size_t>rc
        return removed

    def get_many(self, keys):
        """How many of keys get() finds (a C loop with the GIL released, for timing)."""
        return self._many(list(keys), 0, 0)

    cdef size_t _many(self, list ks, int put, uint64_t seq0) except? 0:
        """put (put_many: how many were new) or get (get_many: how many were
        found) each key, in C with the GIL released."""
        cdef Py_ssize_t n = len(ks), i
        cdef const char **ptr = NULL
        cdef uint32_t *lens = NULL
        cdef BTree t = self.t
        cdef Ref r
        cdef int rc = 0
        cdef size_t hits = 0
        try:
            key_arrays(ks, &ptr, &lens)
            with nogil:
                for i in range(n):
                    if put:
                        ref_synth(&r, seq0 + <uint64_t>i, lens[i])
                        rc = t.put(ptr[i], lens[i], &r)
                    else:
                        rc = t.get(ptr[i], lens[i], &r)
                    if rc < 0:
                        break
                    hits += <size_t>(rc == 0) if put else <size_t>rc
            raise_status(rc if rc < 0 else 0, "b-tree put" if put else "b-tree get", self.path)
        finally:
            free(ptr)
            free(lens)
        return hits

    def scan_count(self, bint reverse=False):
        """Walk the last commit with a read cursor in C; returns the entries seen."""
        cdef Cursor c = self.t.cursor(0)
        cdef size_t n = 0
        cdef int rc
        with nogil:
            rc = c.last() if reverse else c.first()
            while rc == 1:
                n += 1
                rc = c.prev() if reverse else c.next()
        c.close()
        raise_status(rc, "b-tree scan", self.path)
        return n

    def scan_snapshot(self):
        """Pin the last commit, walk it in C with the GIL released, checking
        key order; returns (entries walked, the snapshot's entry count, its
        applied_lsn).  Safe while another thread writes and commits."""
        cdef Cursor c = self.t.cursor(0)
        cdef size_t n = 0
        cdef int rc, order_ok = 1
        cdef uint32_t plen = 0
        cdef char prev[1024]
        with nogil:
            rc = c.first()
            while rc == 1:
                if n and key_cmp(prev, plen, c.kbuf, c.klen) >= 0:
                    order_ok = 0
                memcpy(prev, c.kbuf, c.klen)
                plen = c.klen
                n += 1
                rc = c.next()
        c.close()
        raise_status(rc, "b-tree scan", self.path)
        if not order_ok:
            raise AssertionError("scan_snapshot: keys out of order")
        return n, c.snap.entries, c.snap.applied_lsn

    @property
    def in_txn(self):
        return bool(self.t.in_txn)

    @property
    def page_count(self):
        return self.t.c_page_count

    @property
    def depth(self):
        return self.t.c.depth

    @property
    def free_pages(self):
        return self.t.c_free_entries

    @property
    def readers(self):
        cdef size_t i, n = 0
        for i in range(self.t.rd_len):
            n += self.t.rd_cnt[i]
        return n

    def fail_io_at(self, long n, uint32_t torn=0):
        """I/O op n (writes and barriers, counted from now, 1-based) and every
        later one fail with EIO; with torn, write n first writes that many
        bytes.  n = 0 disarms."""
        self.vfs.arm({"io": n, "persistent": True, "torn": torn})

    @property
    def io_ops(self):
        """I/O ops (writes and barriers) since fail_io_at() was last called."""
        return self.vfs.counted()["io"]

    def crash_image(self, directory, seed):
        """crashsim: write into `directory` the file a power loss now could leave."""
        return self.vfs.crash_image(directory, seed)


@cython.no_gc_clear
cdef class CursorTester:
    cdef Cursor c
    cdef object path

    cdef object _result(self, int rc, str what):
        raise_status(rc if rc < 0 else 0, what, self.path)
        if rc == 1:
            return (PyBytes_FromStringAndSize(self.c.kbuf, self.c.klen), ref_tuple(&self.c.cref))
        return None

    def seek_ge(self, bytes key not None):
        return self._result(self.c.seek_ge(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key)), "seek")

    def seek_gt(self, bytes key not None):
        return self._result(self.c.seek_gt(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key)), "seek")

    def seek_le(self, bytes key not None):
        return self._result(self.c.seek_le(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key)), "seek")

    def seek_lt(self, bytes key not None):
        return self._result(self.c.seek_lt(PyBytes_AS_STRING(key), <uint32_t>PyBytes_GET_SIZE(key)), "seek")

    def first(self):
        return self._result(self.c.first(), "first")

    def last(self):
        return self._result(self.c.last(), "last")

    def next(self):
        return self._result(self.c.next(), "next")

    def prev(self):
        return self._result(self.c.prev(), "prev")

    def key(self):
        cdef uint32_t n
        cdef const char *k = self.c.key(&n)
        return None if k == NULL else PyBytes_FromStringAndSize(k, n)

    def renew(self):
        raise_status(self.c.renew(), "renew", self.path)

    @property
    def snapshot_lsn(self):
        return self.c.snap.applied_lsn

    @property
    def snapshot_count(self):
        return self.c.snap.entries

    def close(self):
        self.c.close()
