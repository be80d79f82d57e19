# btree.pxd -- the persistent copy-on-write B+tree: key -> Ref, in its own
# page file.  Standalone: the engine decides when to write into it (a
# checkpoint) and passes the log position the checkpoint covers as
# `applied_lsn`; the tree stores that number and gives it back at open.
#
# Design (LMDB's): one writer, copy-on-write pages, two alternating meta pages,
# no recovery step.  A write transaction never overwrites a page reachable
# from either meta page on disk, so a crash at any instant leaves the last
# complete commit -- and the one before it -- intact; open reads the two meta
# pages and is done (time independent of the tree size).
#
# ---------------------------------------------------------------- file format
# The page layout (PageHeader, MetaBody, slotted leaf and branch pages, the
# free-list page), its checksums and page_verify / meta_read are format.pxd's.
# Pages 0 and 1 are the meta pages; transaction T writes page T & 1, and the
# valid one with the higher txn wins.  Keys are 0..MAX_KEY_LEN (1024) bytes;
# a leaf cell is at most 2 + 1024 + 48 + 2 (slot) = 1076 bytes, so even three
# maximal cells fit in a page: no overflow pages exist.
#
# Fill invariant (check() verifies it): every non-root page uses at least
# MIN_FILL bytes (slots + cells; about 1/5 of PAGE_CAP, so it holds >= 1 key);
# the root leaf holds >= 1 entry (an empty tree has no root page: root 0); a
# root branch holds >= 1 key.  Deletes that leave a page below MIN_FILL merge
# it with a sibling when both fit in one page, else redistribute the two
# evenly (each side then >= (PAGE_CAP - 2 * 1034) / 2 > MIN_FILL); splits
# cut a page evenly by bytes, except that an insert at a page's end (start)
# leaves the new right (left) page just MIN_FILL, so ascending or descending
# runs of inserts fill pages to ~80%.  All leaves are at level 0, so the tree is
# balanced by construction (check() verifies levels).
#
# Free-list pages (PT_FREE) hold the page numbers a commit freed, stamped
# with free_txn, the transaction that freed them (0: already reusable by
# anyone).  A page freed by transaction F is still reachable from snapshot
# F - 1, so it is reused only once F <= last_committed - 1 (the older meta on
# disk no longer names snapshot F - 1) and F <= every open read snapshot.
# The meta names the chain head; each commit rewrites the whole chain into
# fresh pages (its old pages become free pages of that commit).
#
# ---------------------------------------------------------------- commit order
# (written out again beside BTree.commit):
#   1. new and changed pages (tree and free-list chain), all at page numbers
#      no on-disk meta reaches, are written with pwrite();
#   2. fdatasync (through the Vfs: skipped with persist=none, simulated in crash tests);
#   3. the meta page T & 1 (the older one) is written;
#   4. fdatasync again; only then is the commit acknowledged.
# Crash before 3 completes: the other meta (T - 1) is still the newer valid
# one and everything it reaches is untouched.  A torn meta fails its crc.
#
# ---------------------------------------------------------------- threads
# One writer (begin .. commit/abort) at a time.  Read cursors pin their
# snapshot in a reader table (under `lock`), so pages they reach are not
# reused while they are open; a read cursor may be used in another thread
# while the writer works (each cursor by one thread at a time).  get() and
# write cursors read the live write transaction and belong to the writer.
# close() only when no other thread uses the tree.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from pastedb.core.clib cimport pthread_mutex_t
from pastedb.core.index cimport Ref
from pastedb.core.vfs cimport File, Vfs

cdef enum:
    MIN_FILL = 812                    # PAGE_CAP / 5: least bytes used by a non-root page


# What a reader needs of one committed state (or of the live write txn).
cdef struct Snapshot:
    uint64_t txn                      # txn id of the state (write txn: the one being built)
    uint64_t max_txn                  # a committed page stamped later than this is damage
    uint64_t page_limit               # committed pages [2, page_limit) may be read
    uint64_t entries                  # keys in the state
    uint64_t applied_lsn              # the meta's applied_lsn (write txn: the committed one)
    uint32_t root                     # root page, 0 when empty
    uint32_t depth                    # levels
    int write                         # 1: the live write txn (its dirty pages come first)


cdef struct U32Vec:
    uint32_t *v                       # elements (malloc)
    size_t n                          # in use
    size_t cap                        # allocated


cdef struct U64Vec:
    uint64_t *v                       # elements (malloc)
    size_t n                          # in use
    size_t cap                        # allocated


# One cell of a list being redistributed (split, merge, compaction).
cdef struct Cell:
    const char *p                     # the cell bytes: u16 klen | key | tail
    uint32_t size                     # their length (the slot not included)


cdef class BTree:
    cdef File file                    # the page file (fd -1 when closed), written only through it
    cdef int failed                   # a meta write/sync failed: no more commits
    cdef char *base                   # start of the reserved, never-moving address range
    cdef uint64_t reserved            # bytes of address space reserved
    cdef uint64_t mapped              # bytes of the file mapped read-only at base
    cdef uint64_t file_pages          # whole pages the file is known to hold
    cdef uint8_t *verified            # one bit per page: checksum verified since open
    cdef pthread_mutex_t lock         # guards `c`, file_pages and the reader table
    cdef Snapshot c                   # the last committed state
    cdef uint32_t version             # the meta's BTREE_VERSION (BTREE_VERSION_V1: read-only)
    cdef uint32_t w_version           # the version the write txn's commit writes (0: `version`)
    cdef uint32_t ref_size            # leaf Ref bytes for that version (format.ref_size_of)
    cdef uint64_t c_page_count        # its meta page_count (c.page_limit is min with the file)
    cdef uint32_t c_free_head         # its free-list chain head
    cdef uint64_t c_free_entries      # page numbers in that chain

    # the write transaction
    cdef int in_txn                   # begin() .. commit()/abort()
    cdef Snapshot w                   # the state being built (w.write == 1)
    cdef uint64_t w_page_count        # high-water mark including pages allocated in it
    cdef uint64_t wgen                # bumped by every change, commit and abort (write cursors)
    cdef int w_err                    # first failure inside put/delete: the txn can only be aborted
    cdef uint32_t *dmap               # open-addressing set of dirty page numbers (0 empty)
    cdef uint32_t *dmap_ix            # index into dpgno/dbuf for each dmap slot
    cdef size_t dmap_cap              # slots, power of two
    cdef uint32_t *dpgno              # dirty page numbers, in allocation order
    cdef char **dbuf                  # their page buffers; NULL: freed again in this txn
    cdef size_t dlen                  # dirty entries
    cdef size_t dcap                  # allocated
    cdef U32Vec reuse                 # free pages this txn may take (sorted, smallest last)
    cdef U32Vec pend_pg               # free pages not yet reusable ...
    cdef U64Vec pend_tx               # ... and the txn that freed each (runs of equal txn)
    cdef U32Vec freed                 # committed pages this txn stopped using (free at T)
    cdef char **spare                 # page buffers kept for the next dirty pages
    cdef size_t nspare                # how many
    cdef char *scratch                # 2 pages for rebuilding, 3 separator cells, 1 leaf cell
    cdef Cell *cells                  # cell list for splits and merges (+ CELLS_MAX u32 prefix sums)

    # readers
    cdef uint64_t *rd_txn             # snapshot txn held by read cursors ...
    cdef uint32_t *rd_cnt             # ... and how many cursors hold it
    cdef size_t rd_len                # entries in use
    cdef size_t rd_cap                # allocated
    cdef uint64_t ext_min_txn         # oldest commit other processes read (bound_reuse)
    cdef int readonly                 # a read-only handle's tree (BTree(vfs, readonly=True)):
                                      # opened O_RDONLY, never written

    # The oldest commit readers of other processes still read (the reader
    # table; ~0: none): pages freed after it are not reused.  The engine sets
    # it before each begin().
    cdef void bound_reuse(self, uint64_t min_txn) noexcept nogil

    # Open (create = 1: make the file when missing, atomically via path.new +
    # rename).  Barriers are the file's Vfs's (skipped with its nosync).
    # 0, -errno, ST_CORRUPT (no valid meta), ST_VERSION.
    cdef int open(self, const char *path, int create) noexcept nogil
    # Unmap and close; an open write txn is aborted.  Read cursors of this
    # tree return ST_CLOSED afterwards.
    cdef void close(self) noexcept nogil
    # Read-only tree: move to the newest commit on disk (another process
    # writes).  1 moved, 0 unchanged, negative status.
    cdef int reload(self) noexcept nogil

    # Start the write txn.  0, -EINVAL (one is open), ST_CLOSED, ST_FAILED,
    # ST_CORRUPT (damaged free list), -ENOMEM.
    cdef int begin(self) noexcept nogil
    # Insert or replace in the write txn.  1 replaced, 0 inserted; negative:
    # -EINVAL (no txn), ST_TOO_BIG (klen > MAX_KEY), -ENOMEM, -ENOSPC (page
    # numbers exhausted), ST_CORRUPT (a page read failed verification).
    # After -ENOMEM/-ENOSPC/ST_CORRUPT the txn may be half-changed: every
    # later call in it returns that status, and commit() aborts it (LMDB's
    # MDB_BAD_TXN).  ST_TOO_BIG and -EINVAL change nothing.
    cdef int put(self, const char *key, uint32_t klen, const Ref *ref) noexcept nogil
    # Remove in the write txn.  1 removed, 0 absent (a key longer than
    # MAX_KEY is absent); negative as put.
    cdef int delete(self, const char *key, uint32_t klen) noexcept nogil
    # Look up in the write txn when one is open, else in the last commit.
    # 1 found (*out filled when out != NULL), 0 absent, ST_CORRUPT, ST_CLOSED.
    cdef int get(self, const char *key, uint32_t klen, Ref *out) noexcept nogil
    # Make the write txn durable, recording applied_lsn (see commit order).
    # The txn ends either way.  0; -EINVAL without a txn; a poisoned txn's
    # status; on -errno / ST_CORRUPT before the meta write the txn is discarded and
    # the tree stays usable; a failure writing or syncing the meta sets
    # `failed` (the disk holds either state) and later begin()s give ST_FAILED.
    cdef int commit(self, uint64_t applied_lsn) noexcept nogil
    # Discard the write txn (no I/O).
    cdef void abort(self) noexcept nogil
    # The write txn's commit stamps the meta with format version v (the
    # engine's keyspace step, 2 -> 3: the version changes atomically with
    # the commit).  -EINVAL without a txn.
    cdef int set_version(self, uint32_t v) noexcept nogil
    # Keys in the write txn when one is open, else in the last commit.
    cdef uint64_t count(self) noexcept nogil
    # applied_lsn of the last commit.
    cdef uint64_t applied_lsn(self) noexcept nogil

    # Pin the last commit for reading (reader table); 0, -ENOMEM, ST_CLOSED.
    cdef int snapshot_acquire(self, Snapshot *s) noexcept nogil
    cdef void snapshot_release(self, Snapshot *s) noexcept nogil
    # Look up in a pinned snapshot: 1 / 0 / ST_CORRUPT / ST_CLOSED.
    cdef int snapshot_get(self, const Snapshot *s, const char *key, uint32_t klen, Ref *out) noexcept nogil

    # A cursor over the last commit (write = 0, pinned until closed) or the
    # live write txn (write = 1; raises Error without one).
    cdef Cursor cursor(self, int write)


# Positioning returns 1 at an entry, 0 when there is none (the cursor is then
# unpositioned), or a negative status (ST_CORRUPT, ST_CLOSED, -EINVAL when a
# write cursor's txn ended).  At an entry, key()/ref() give its copy, valid
# until the next move.  A write cursor survives changes to its txn: the next
# move re-seeks from the key it was at.
cdef class Cursor:
    cdef BTree tree                   # keeps the tree (and its mapping) alive
    cdef Snapshot snap                # read cursor: the pinned snapshot
    cdef int write                    # 1: reads the live write txn
    cdef int pinned                   # holds a reader-table entry for snap.txn
    cdef uint64_t wtxn                # write cursor: the txn it belongs to
    cdef uint64_t wgen                # write cursor: tree.wgen when positioned
    cdef int valid                    # positioned at an entry
    cdef int depth                    # levels on the stack
    cdef const char *page[32]         # page at each level, root first (MAX_DEPTH)
    cdef int idx[32]                  # child index (branch) or slot (leaf) at each level
    cdef uint32_t klen                # current key length
    cdef char kbuf[1024]              # current key (MAX_KEY bytes)
    cdef Ref cref                     # current Ref

    cdef int seek_ge(self, const char *key, uint32_t klen) noexcept nogil   # first >= key
    cdef int seek_gt(self, const char *key, uint32_t klen) noexcept nogil   # first >  key
    cdef int seek_le(self, const char *key, uint32_t klen) noexcept nogil   # last  <= key
    cdef int seek_lt(self, const char *key, uint32_t klen) noexcept nogil   # last  <  key
    cdef int first(self) noexcept nogil
    cdef int last(self) noexcept nogil
    cdef int next(self) noexcept nogil
    cdef int prev(self) noexcept nogil
    # The entry's key (NULL when unpositioned), its length in *klen.
    cdef const char *key(self, uint32_t *klen) noexcept nogil
    # 1 and *out when positioned, else 0.
    cdef int ref(self, Ref *out) noexcept nogil
    # Re-pin a read cursor on the newest commit (unpositions it).  0 / -ENOMEM / ST_CLOSED.
    cdef int renew(self) noexcept nogil
    # Release the snapshot; further moves return ST_CLOSED.
    cdef void close(self) noexcept nogil


# An index file as a whole, for tools outside a database (pastedb-check's
# verification and repair); its methods are Python-level (btree.pyx).  The
# checker's C passes (checkcore.pyx) walk `t` with a read cursor.
cdef class TreeFile:
    cdef BTree t
    cdef readonly Vfs vfs
    cdef readonly object path


# A Ref at the Python edge: a 7-tuple (koff, voff, vlen, lsn, klen, vcrc,
# expire_ms); a 6-tuple given is one without expiry.  TreeFile and the tests'
# drivers (btree_testing.pyx) convert with these.
cdef inline tuple ref_tuple(const Ref *r):
    return (r.koff, r.voff, r.vlen, r.lsn, r.klen, r.vcrc, r.expire_ms)


cdef inline void ref_from(Ref *r, object t) except *:
    r.koff, r.voff, r.vlen, r.lsn, r.klen, r.vcrc = t[:6]
    r.expire_ms = t[6] if len(t) > 6 else 0
