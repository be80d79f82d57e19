"""The database engine: the embedded API over pool, reflog and index.

A put copies key and value once into a data extent of the pool (the analogue
of the NIC's DMA), appends one 64-byte record that references them, puts the
reference in the in-memory pending table and waits for the group commit that
covers it.  Nothing else is written on the way.  An indexer thread moves
pending entries into the persistent B-tree ("index" file) in batches and then
advances the log head (a checkpoint), so the log to replay at open stays short.
"""

import errno
import fcntl
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping

from cpython.buffer cimport (
    PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.bytes cimport (
    PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE,
)
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

from pastedb.core.btree cimport BTree, Cursor as TreeCursor, Snapshot
from pastedb.core.btree import upgrade_file
from pastedb.core.clib cimport (
    CLOCK_MONOTONIC, CLOCK_REALTIME, EDQUOT, ENOMEM, ENOSPC, clock_gettime, pthread_cond_destroy, pthread_cond_init,
    pthread_cond_signal, pthread_cond_timedwait, timespec,
    pdb_load32, pdb_load_sc, pdb_prefetch, pdb_store_sc, pdb_xadd_sc,
    pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock,
    pthread_rwlock_destroy, pthread_rwlock_init, pthread_rwlock_rdlock, pthread_rwlock_t, pthread_rwlock_tryrdlock,
    pthread_rwlock_unlock,
    pthread_rwlock_wrlock, sched_yield, usleep,
)
from pastedb.core.index cimport Index, Node, Ref, key_compare
from pastedb.core.persist cimport (
    PERSIST_AUTO, PERSIST_FDATASYNC, PERSIST_MSYNC, PERSIST_NONE, PERSIST_PMEM, Persist, PersistMode,
    mode_from_name, mode_name,
)
from pastedb.core.format cimport (
    BTREE_VERSION, BTREE_VERSION_V2, KEY_ESC, MAX_DATABASES, db_of_key, key_prefix_len,
    CHUNK_SIZE, HEADER_SIZE, MAX_KEY_LEN, MAX_VALUE_LEN, PAGE_SIZE, REC_DEL, REC_PUT, SEG_SHIFT, SEG_SIZE,
    SUPER_SLOT, LogRecord, Superblock, crc32c_buf, crc32c_is_hw, key_crc_state, sb_encode,
    sb_read, span_outside, value_verifies,
)
from pastedb.core.pool cimport DATA_EXTENT, SEG_FREE, SEG_NOFREE, Pool
from pastedb.core.readers cimport ReaderTable
from pastedb.core.reflog cimport RefLog, ReplayResult
from pastedb.core.expiry cimport DueWalk, ExpEntry, ExpiryHeap
from pastedb.core.status cimport (
    ST_CLOSED, ST_CORRUPT, ST_FAILED, ST_FORKED, ST_NO_MAP_SYNC, ST_NOT_DAX, ST_OK,
    ST_READONLY, ST_VALUE_DAMAGED, ST_VERSION, raise_status,
)

from pastedb.errors import CorruptionError, Error, LockedError

log = logging.getLogger("pastedb")

POOL_FILE = "pool"
INDEX_FILE = "index"
LOCK_FILE = "LOCK"
INDEX_MODES = ("lazy", "eager")
# A checkpoint starts once this many records were logged since the last one,
# or CHECKPOINT_INTERVAL seconds after it when anything was logged at all.
CHECKPOINT_EVERY = 65536
CHECKPOINT_INTERVAL = 1.0
# ... or once this many key + value bytes were logged since the last one: the
# bytes written between two checkpoints cannot be released before the second,
# so this (twice) is most of the space a fast overwrite workload holds dead.
CHECKPOINT_BYTES = 8 << 20
# The space bound (docs/ARCHITECTURE.md, "Space reclamation"): pool + index
# files at most SPACE_RATIO x the live bytes + SPACE_ALLOWANCE.  The indexer
# runs the cleaner once the pool passes CLEAN_AT x live + CLEAN_SLACK (at most
# every CLEAN_PERIOD seconds), well inside the bound; CLEAN_AT 0 turns it off.
SPACE_RATIO = 1.5
SPACE_ALLOWANCE = 64 << 20
CLEAN_AT = 1.2
CLEAN_SLACK = 24 << 20
cdef double clean_slack = CLEAN_SLACK
cdef int64_t CLEAN_PERIOD_NS = 100000000     # at least this, and 3x the last run's time, apart
# What the cleaner aims for when it runs: this many times the live bytes, plus
# CLEAN_GOAL_SLACK (segments are relocated sparsest first until it is met).
cdef double CLEAN_GOAL = 1.1
cdef double CLEAN_GOAL_SLACK = 8 << 20
# Pending entries copied out of (or dropped from) the pending table per
# index-lock hold: writers wait for the lock, so a hold must stay short (at
# 4096 a hold took 0.6-1.6 ms, which every durable put in the meantime waited).
cdef int APPLY_BATCH = 256
INITIAL_POOL_BYTES = 8 << 20
# Values at least this long are copied with the GIL released even for
# sync=False puts and gets.
cdef uint64_t BIG_COPY = 65536
# put_many / delete_many pack small items into groups of this many bytes, one
# pool write each (small enough that an extent's unusable tail stays small).
cdef uint64_t BULK_GROUP = 65536
# get_many looks up this many keys per hold of the index read lock.
cdef Py_ssize_t GET_SLICE = 256
cdef int ITER_BATCH = 256
cdef enum:
    ITER_BATCH_MAX = 256              # (the array a fetch collects into; ITER_BATCH <= this)
    FETCH_AHEAD = 8                   # values asked into the cache ahead of the one copied


cdef struct FetchEntry:
    Ref ref


cdef inline void prefetch_value(DB db, const Ref *r) noexcept nogil:
    if db.ref_in_pool(r):
        pdb_prefetch(db.pool.base + r.voff, r.vlen)
# The active expirer logs at most this many DELs per indexer round (20 ms).
cdef int EXPIRE_BATCH = 256


cdef inline uint64_t wall_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


cdef inline int ref_expired(const Ref *r, uint64_t now) noexcept nogil:
    return r.expire_ms != 0 and r.expire_ms <= now


cdef inline int64_t mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# One pending entry a checkpoint moved into the tree: removed from the
# pending table afterwards unless a later write replaced it meanwhile.
cdef struct Applied:
    const char *key
    Ref ref

# ------------------------------------------------------------------ fork
# A DB inherited across fork() must refuse to work in the child: the mapping
# is shared with the parent and the two would interleave log records.
cdef long fork_generation = 0


_open_dbs = weakref.WeakValueDictionary()   # id -> DB (a DB is a mapping: unhashable)
_held_locks = set()                 # (st_dev, st_ino) of LOCK files this process holds
_held_locks_guard = threading.Lock()


def _after_fork_in_child():
    # The child shares the parent's flock (same open file description); its
    # copy of the descriptor would keep the database locked after the parent
    # closes it.  Closing the copy (never LOCK_UN) releases nothing the
    # parent holds.
    global fork_generation, _held_locks_guard
    fork_generation += 1
    _held_locks_guard = threading.Lock()     # may have been held by another thread
    _held_locks.clear()
    for db in list(_open_dbs.values()):
        (<DB>db)._drop_lock_fd()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ------------------------------------------------------------------ superblock
# format owns the bytes (sb_read, sb_encode); this is where they reach the disk.

cdef int read_superblock(Pool pool, Superblock *out) noexcept nogil:
    return sb_read(pool.base, pool.size, out, NULL)


cdef int write_superblock(Pool pool, Persist persist, Superblock *sb) noexcept nogil:
    """Write the slot `seq` selects; the other slot keeps the previous state
    until a barrier has made this one durable.  Through Pool.write_at, so on
    ordinary files it is a pwrite() (a page dirtied through the mapping would
    make the next barrier ~1 ms dearer).  0 or -errno."""
    cdef char slot[SUPER_SLOT]
    cdef uint64_t off = sb_encode(sb, slot)
    cdef int rc = pool.write_at(off, slot, SUPER_SLOT)
    if rc == 0:
        persist.persist_range(pool.base + off, SUPER_SLOT)
    return rc


# ------------------------------------------------------------------ replay
cdef struct ReplayCtx:
    void *db                          # borrowed DB (GIL held during replay)
    uint64_t max_end                  # highest byte any record references
    uint64_t skip_lsn                 # records <= this are in the tree already
    uint64_t applied                  # records put in the pending table


cdef int replay_apply(void *ctx, const LogRecord *rec) noexcept:
    cdef ReplayCtx *c = <ReplayCtx *>ctx
    cdef DB db = <DB>c.db
    cdef uint64_t lo, ln
    cdef uint64_t end = rec.koff + rec.klen
    if rec.type == REC_PUT and rec.voff + rec.vlen > end:
        end = rec.voff + rec.vlen
    if end > c.max_end:
        c.max_end = end
    # Recovery reads this record again until the log head passes it.
    rec_span(rec, &lo, &ln)
    db.pool.note_lsn(lo, ln, rec.lsn)
    if rec.lsn <= c.skip_lsn:
        return 0
    c.applied += 1
    return db.index_apply(rec)


# ------------------------------------------------------------------ helpers
cdef inline int get_bytes(object o, Py_buffer *view, const char **p, Py_ssize_t *n,
                          str what) except -1:
    """Point p/n at the bytes of a bytes-like object.  Returns 1 when a buffer
    view was taken (release it), 0 for an exact bytes object."""
    if PyBytes_CheckExact(o):
        p[0] = PyBytes_AS_STRING(o)
        n[0] = PyBytes_GET_SIZE(o)
        return 0
    if isinstance(o, str) or not PyObject_CheckBuffer(o):
        raise TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview), "
                        f"not {type(o).__name__}")
    try:
        PyObject_GetBuffer(o, view, PyBUF_SIMPLE)
    except BufferError:
        raise TypeError(f"{what} must be a contiguous bytes-like object") from None
    p[0] = <const char *>view.buf
    n[0] = view.len
    return 1


cdef inline bytes successor(bytes prefix):
    """The smallest key greater than every key starting with prefix, or None."""
    cdef bytearray b = bytearray(prefix)
    cdef Py_ssize_t n = len(b)
    while n and b[n - 1] == 0xFF:
        n -= 1
    if n == 0:
        return None
    del b[n:]
    b[n - 1] += 1
    return bytes(b)


cdef inline void rec_span(const LogRecord *r, uint64_t *lo, uint64_t *n) noexcept nogil:
    """The bytes a record names, as one range (key and value are adjacent
    for engine writes; in a server arena they lie in the same request)."""
    cdef uint64_t a = r.koff, b = r.koff + r.klen
    if r.type == REC_PUT:
        if r.voff < a:
            a = r.voff
        if r.voff + r.vlen > b:
            b = r.voff + r.vlen
    lo[0] = a
    n[0] = b - a


cdef inline void ref_from_record(const LogRecord *rec, Ref *ref) noexcept nogil:
    """The pending-table entry a logged record makes (a DEL: a tombstone)."""
    ref.koff = rec.koff
    ref.klen = rec.klen
    ref.lsn = rec.lsn
    if rec.type == REC_PUT:
        ref.voff = rec.voff
        ref.vlen = rec.vlen
        ref.vcrc = rec.vcrc
        ref.expire_ms = rec.expire_ms
    else:
        ref.voff = TOMB
        ref.vlen = 0
        ref.vcrc = 0
        ref.expire_ms = 0


cdef inline int in_victim(const uint8_t *victim, uint64_t tail, const Ref *r) noexcept nogil:
    cdef uint64_t a = r.koff >> SEG_SHIFT, b = r.voff >> SEG_SHIFT
    if a < tail and victim[a]:
        return 1
    if r.vlen and b < tail and victim[b]:
        return 1
    if r.vlen and ((r.voff + r.vlen - 1) >> SEG_SHIFT) < tail and victim[(r.voff + r.vlen - 1) >> SEG_SHIFT]:
        return 1
    return 0


cdef inline void read_lock_gil(pthread_rwlock_t *lock) noexcept:
    """Take the index read lock from code that holds the GIL: never wait for
    it with the GIL held (a writer may be waiting on its log lock behind us,
    and every other Python thread would stall meanwhile)."""
    if pthread_rwlock_tryrdlock(lock) != 0:
        with nogil:
            pthread_rwlock_rdlock(lock)


cdef class DB:
    """An open pastedb database.  Create with :func:`pastedb.open`."""

    def __cinit__(self):
        self.lock_fd = -1
        self.closed = 1
        self.snapshots = set()
        pthread_rwlock_init(&self.index_lock, NULL)
        pthread_mutex_init(&self.data_lock, NULL)
        pthread_mutex_init(&self.tree_lock, NULL)
        pthread_mutex_init(&self.idx_mutex, NULL)
        pthread_cond_init(&self.idx_cond, NULL)
        pthread_mutex_init(&self.exp_lock, NULL)
        self.active_expire = 1

    def __dealloc__(self):
        if not self.closed:
            try:
                self._shutdown(False)
            except BaseException:
                pass
        if self.tree is not None:
            self.tree.close()
        if self.pool is not None:
            self.pool.close_map()
        pthread_rwlock_destroy(&self.index_lock)
        pthread_mutex_destroy(&self.data_lock)
        pthread_mutex_destroy(&self.tree_lock)
        pthread_mutex_destroy(&self.idx_mutex)
        pthread_cond_destroy(&self.idx_cond)
        pthread_mutex_destroy(&self.exp_lock)

    # -------------------------------------------------------------- opening
    def _open(self, path, bint create, bint sync, str persist_name, str index_mode,
              dict faults=None, bint readonly=False):
        if readonly:
            self._open_readonly(path)
            return
        cdef int simulated = 0
        cdef PersistMode mode = mode_from_name(persist_name, &simulated)
        if index_mode not in INDEX_MODES:
            raise ValueError(f"index must be one of {', '.join(INDEX_MODES)}, not {index_mode!r}")
        self.eager = index_mode == "eager"
        self.ckpt_every = CHECKPOINT_EVERY
        self.ckpt_bytes = CHECKPOINT_BYTES
        self.clean_at = CLEAN_AT
        self.ckpt_interval_ns = <int64_t>(CHECKPOINT_INTERVAL * 1e9)
        cdef int created = 0, rc
        cdef bint emulate = os.environ.get("PASTEDB_PMEM_EMULATE", "") not in ("", "0")
        self.path = os.fspath(path)
        self.sync_default = sync
        if not os.path.isdir(self.path):
            if os.path.exists(self.path):
                raise NotADirectoryError(f"{self.path} exists and is not a directory")
            if not create:
                raise FileNotFoundError(f"no pastedb database at {self.path}")
            os.makedirs(self.path, exist_ok=True)
        self._lock()
        self.pool_path = os.path.join(self.path, POOL_FILE)
        fresh = not os.path.exists(self.pool_path)
        if fresh and not create:
            raise FileNotFoundError(f"no pastedb database at {self.path}")
        # A new pool is built under a temporary name and renamed into place
        # once its superblock is durable, so "pool" always has one.
        target = os.path.join(self.path, POOL_FILE + ".new") if fresh else self.pool_path
        if fresh and os.path.exists(target):
            os.unlink(target)                    # left by a crash during creation
        want_sync = mode == PERSIST_AUTO or (mode == PERSIST_PMEM and not emulate and not simulated)
        # One I/O layer for pool and index: one fault numbering, and (tests)
        # one power-loss simulator that tears both files together.
        self.vfs = Vfs(sim=simulated, nosync=mode == PERSIST_NONE)
        if faults and faults.get("from_open"):
            self.vfs.arm(faults)                 # tests: count (and fail, kill, image) open's I/O too
        self.pool = Pool()
        rc = self.pool.open_file(self.vfs, os.fsencode(target), 1, want_sync, INITIAL_POOL_BYTES,
                                 &created)
        if rc == ST_NO_MAP_SYNC:
            if mode == PERSIST_PMEM:
                raise_status(ST_NOT_DAX, "open", target)
            self.pool.close_map()
            if fresh:
                os.unlink(target)                # grown by the MAP_SYNC attempt: start over
            self.pool = Pool()
            rc = self.pool.open_file(self.vfs, os.fsencode(target), 1, 0, INITIAL_POOL_BYTES,
                                     &created)
            if mode == PERSIST_AUTO:
                mode = PERSIST_FDATASYNC
        elif mode == PERSIST_AUTO:
            mode = PERSIST_PMEM                   # MAP_SYNC worked: real DAX
        self.barriers = Persist(self.pool, mode)
        # Ordinary files: write with pwrite() (see Pool.write_at for why).
        self.pool.set_write_syscall(mode == PERSIST_FDATASYNC or mode == PERSIST_MSYNC)
        self.log = RefLog(self.pool, self.barriers)
        self.index = Index()
        self.index.set_base(self.pool.base)
        self.exp_map = Index()
        self.exp_map.set_base(self.pool.base)
        self.exp_heap = ExpiryHeap()
        self.tree_path = os.path.join(self.path, INDEX_FILE)
        self.tree = BTree(self.vfs)
        if fresh:
            self._create(target)
        else:
            self._recover()
        # Readers of other processes see this writer from now on: its
        # durable lsn (published by every group commit before anyone is
        # acknowledged) and its tree commits; a new epoch makes them rebuild
        # their state (this open may have cut a tail or started a chain).
        self.readers = ReaderTable(self.path, True)
        self.log.publish_durable_at(&self.readers.hdr.durable_lsn)
        self.readers.publish_durable(<int64_t>self.log.durable_lsn)
        self.readers.publish_tree(<int64_t>self.cur_snap.txn)
        self.readers.start_writer()
        if not simulated:
            # Simulated runs grow in the foreground: fault numbers and images
            # then depend on the workload alone.
            self.pool.start_grower()
        self.fork_gen = fork_generation
        pdb_store_sc(&self.closed, 0)
        if not fresh:
            self._keyspace_step()                # a failed step: open_db shuts the handle down
        _open_dbs[id(self)] = self
        self.idx_thread = threading.Thread(target=self._indexer_main, daemon=True,
                                           name="pastedb-indexer")
        self.idx_thread.start()

    # -------------------------------------------------------------- read-only
    # A read-only handle: no LOCK, files opened O_RDONLY and mapped PROT_READ,
    # no indexer.  Its state is a tree commit plus the log after it, up to the
    # writer's durable lsn; enter() catches up when the writer moved on.
    def _open_readonly(self, path):
        self.readonly = True
        self.path = os.fspath(path)
        self.pool_path = os.path.join(self.path, POOL_FILE)
        self.tree_path = os.path.join(self.path, INDEX_FILE)
        if not os.path.isdir(self.path) or not os.path.exists(self.pool_path):
            raise FileNotFoundError(f"no pastedb database at {self.path}")
        self.sync_default = False
        try:
            self.readers = ReaderTable(self.path, False)
        except OSError as e:
            # A directory we cannot write (permissions, a read-only mount):
            # no writer can run in it either; read what the files hold.
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or \
                    os.access(self.path, os.W_OK):
                raise
            log.warning("pastedb: %s is not writable: reading it without a reader slot", self.path)
            self.readers = None
        if self.readers is not None:
            self.readers.claim()              # pins everything until _ro_build is done
        self.vfs = Vfs(sim=0, nosync=1)
        self.pool = Pool()
        self.pool.open_readonly(self.vfs, os.fsencode(self.pool_path))
        self.barriers = Persist(self.pool, PERSIST_NONE)
        self.log = RefLog(self.pool, self.barriers)
        self.index = Index()
        self.index.set_base(self.pool.base)
        self.exp_map = Index()
        self.exp_map.set_base(self.pool.base)
        self.exp_heap = ExpiryHeap()
        self.tree = BTree(self.vfs, readonly=True)
        self._ro_build(True)
        self.fork_gen = fork_generation
        pdb_store_sc(&self.closed, 0)
        _open_dbs[id(self)] = self

    def _ro_limit(self):
        """The highest lsn this reader may replay: the writer's durable lsn,
        or the end of the log when no writer runs."""
        if self.readers is None:
            return ~(<uint64_t>0)
        self.ro_seen_tree = pdb_load_sc(&self.readers.hdr.tree_txn)
        self.ro_seen_durable = pdb_load_sc(&self.readers.hdr.durable_lsn)
        wpid = pdb_load_sc(&self.readers.hdr.writer_pid)
        if wpid == 0:
            return ~(<uint64_t>0)
        if wpid != os.getpid():
            try:
                os.kill(wpid, 0)
            except ProcessLookupError:
                return ~(<uint64_t>0)         # it died: the files are all there is
            except PermissionError:
                pass
        return <uint64_t>self.ro_seen_durable

    def _ro_follow(self, uint64_t limit):
        """Replay the log from where this reader stopped (index write lock held)."""
        cdef ReplayResult res
        cdef ReplayCtx ctx
        cdef uint64_t applied = self.cur_snap.applied_lsn
        ctx.db = <void *>self
        ctx.max_end = HEADER_SIZE
        ctx.skip_lsn = applied
        ctx.applied = 0
        cdef int rc = self.log.follow(replay_apply, &ctx, limit, &res)
        if rc == ST_CORRUPT:
            raise CorruptionError(f"read-only open: the log in {self.pool_path} is damaged at "
                                  f"byte offset {res.damaged_off}", self.pool_path)
        if rc != 0:
            raise_status(rc, "read", self.pool_path)
        self.recovered_records += ctx.applied
        cdef uint64_t at = self.log.next_lsn - 1
        self.ro_lsn = <int64_t>(at if at > applied else applied)

    def _ro_tree_live(self, uint64_t applied):
        cdef Superblock sb
        memset(&sb, 0, sizeof(Superblock))
        if read_superblock(self.pool, &sb) == 0 and sb.tree_lsn == applied:
            return <int64_t>sb.tree_live
        return self._tree_bytes()

    def _ro_build(self, bint first=False):
        """(Re)build the state from the superblock: at open, and when another
        writer opened (it may have cut a tail or started a fresh chain).  The
        slot pins everything meanwhile."""
        cdef Superblock sb
        cdef int rc
        cdef uint64_t applied, limit
        epoch = pdb_load_sc(&self.readers.hdr.writer_epoch) if self.readers is not None else 0
        with nogil:
            pthread_rwlock_wrlock(&self.index_lock)
        try:
            rc = self.pool.remap()
            if rc != 0:
                raise_status(rc, "open", self.pool_path)
            memset(&sb, 0, sizeof(Superblock))
            rc = read_superblock(self.pool, &sb)
            if rc != 0:
                raise_status(rc, "open", self.pool_path)
            self.sb_seq = sb.seq
            self.created_ns = sb.created_ns
            if first:
                self._open_tree(False)
            else:
                rc = self.tree.reload()
                if rc < 0:
                    raise_status(rc, "read", self.tree_path)
            applied = self.tree.applied_lsn()
            if applied < sb.tree_lsn:
                raise CorruptionError(
                    f"open: the index file {self.tree_path} covers the log up to lsn {applied}, "
                    f"but the pool's log starts after lsn {sb.tree_lsn}; "
                    f"run 'pastedb-check {self.path}'", self.tree_path)
            self.c_live = <int64_t>sb.tree_live if applied == sb.tree_lsn else self._tree_bytes()
            self.w_live = self.c_live
            self.keyspaces = self.tree.version >= BTREE_VERSION
            self.dbn_stale = 1                    # counted when asked (_ro_counts)
            self.publish_tree()
            limit = self._ro_limit()              # after the tree: covers its applied_lsn
            rc = self.pool.remap()                # what the records up to it name
            if rc != 0:
                raise_status(rc, "open", self.pool_path)
            self.index.clear()
            # Expiry: the tree's keys with one, then the log's (replay below).
            self.exp_map.clear()
            with nogil:
                pthread_mutex_lock(&self.exp_lock)
                self.exp_heap.clear()
                pthread_mutex_unlock(&self.exp_lock)
            self._load_expiry()
            self.log.set_head(sb.log_head_off, sb.log_head_lsn)
            self._ro_follow(limit)
            self.ro_epoch = epoch
            if self.readers is not None:
                # A view taken under the previous writer: keep pinning all.
                self.readers.pin(<int64_t>self.cur_snap.txn, 0 if self.views > 0 else self.ro_lsn)
        finally:
            pthread_rwlock_unlock(&self.index_lock)

    def _ro_refresh(self):
        cdef int rc
        cdef uint64_t limit, applied
        cdef Node *node
        cdef const Ref *ref
        cdef const char **keys = NULL
        cdef uint32_t *klens = NULL
        cdef size_t n = 0, cap, i
        if pdb_load_sc(&self.readers.hdr.writer_epoch) != self.ro_epoch:
            self.readers.pin(0, 0)
            self._ro_build()
            return
        limit = self._ro_limit()
        with nogil:
            pthread_rwlock_wrlock(&self.index_lock)
        try:
            rc = self.pool.remap()
            if rc != 0:
                raise_status(rc, "read", self.pool_path)
            self._ro_follow(limit)
            if self.ro_seen_tree > <int64_t>self.cur_snap.txn:
                rc = self.tree.reload()
                if rc < 0:
                    raise_status(rc, "read", self.tree_path)
                if rc == 1:
                    applied = self.tree.applied_lsn()
                    # The commit may hold entries past its applied_lsn (a
                    # checkpoint collects entries written after its cut) and
                    # may be newer than the one `limit` was read with: follow
                    # the log to the durable lsn as it is now, which covers
                    # every record of the commit (the writer makes them
                    # durable before writing it), so the state is one moment.
                    limit = self._ro_limit()
                    if <int64_t>applied > self.ro_lsn or <int64_t>limit > self.ro_lsn:
                        self._ro_follow(applied if applied > limit else limit)
                    # Pending entries the new commit holds leave the table
                    # (each is the newest record of its key up to ro_lsn, so
                    # the commit holds exactly it).
                    cap = self.index.count
                    if cap:
                        keys = <const char **>calloc(cap, sizeof(char *))
                        klens = <uint32_t *>calloc(cap, sizeof(uint32_t))
                        if keys == NULL or klens == NULL:
                            free(keys)
                            free(klens)
                            raise MemoryError()
                        node = self.index.first()
                        while node != NULL and n < cap:
                            ref = self.index.node_ref(node)
                            if ref.lsn <= applied:
                                keys[n] = self.pool.base + ref.koff
                                klens[n] = ref.klen
                                n += 1
                            node = self.index.next(node)
                        for i in range(n):
                            self.index.remove(keys[i], klens[i], NULL)
                        free(keys)
                        free(klens)
                    self.c_live = self._ro_tree_live(applied)
                    self.w_live = self.c_live
                    self.keyspaces = self.tree.version >= BTREE_VERSION
                    self.dbn_stale = 1
                    self.publish_tree()
            self.readers.pin(<int64_t>self.cur_snap.txn, self._ro_view_lsn(self.ro_lsn))
        finally:
            pthread_rwlock_unlock(&self.index_lock)

    def _ro_view_lsn(self, int64_t lsn):
        """The log position to pin: a live db.view() holds bytes of the
        state it was taken in, so while one exists the slot does not move
        on (its pins are this process's; the writer only sees the slot)."""
        cdef int64_t held
        if self.views <= 0 or self.readers is None or self.readers.slot < 0:
            return lsn
        held = pdb_load_sc(&self.readers.slots[self.readers.slot].lsn)
        return held if held < lsn else lsn

    def _open_tree(self, bint create):
        # The tree syncs its own file; without barriers (persist="none")
        # it skips them too (the Vfs's nosync).
        cdef bytes p = os.fsencode(self.tree_path)
        cdef int rc
        if os.path.exists(self.tree_path) and upgrade_file(self.tree_path):
            log.warning("pastedb: converted the index file %s from format version 1 (no "
                        "expiry) to version %d", self.tree_path, BTREE_VERSION)
        rc = self.tree.open(p, create)
        if rc == ST_CORRUPT:
            raise CorruptionError(
                f"open: the index file {self.tree_path} has no valid meta page; "
                f"run 'pastedb-check --repair {self.path}'", self.tree_path)
        if rc != 0:
            raise_status(rc, "open", self.tree_path)

    def _count_tree_dbs(self):
        """Keys per database in the published tree commit (c_dbn, w_dbn,
        cur_dbn): a walk over the keys of databases 1.. (from 0xFF 0x01 on);
        database 0 holds the rest.  At open and when a read-only handle
        moves to a new commit (index write lock held or no readers yet)."""
        cdef TreeCursor c
        cdef int rc = 0, d
        cdef int64_t others = 0
        cdef char start[2]
        memset(self.c_dbn, 0, sizeof(self.c_dbn))
        if self.keyspaces:
            start[0] = <char>KEY_ESC
            start[1] = 1
            c = self.tree.cursor(0)
            with nogil:
                rc = c.seek_ge(start, 2)
                while rc == 1:
                    d = db_of_key(c.kbuf, c.klen)
                    self.c_dbn[d] += 1
                    others += 1
                    rc = c.next()
            c.close()
            if rc < 0:
                raise_status(rc, "open", self.tree_path)
        self.c_dbn[0] = <int64_t>self.tree.c.entries - others
        memcpy(self.w_dbn, self.c_dbn, sizeof(self.c_dbn))
        memcpy(self.cur_dbn, self.c_dbn, sizeof(self.c_dbn))

    def _ro_counts(self):
        """A read-only handle counts its tree's keys per database only when
        a count is asked for (len, a database's len, INFO), once per tree
        commit it adopts: the walk is not part of every refresh (inside
        enter())."""
        if not (self.readonly and self.dbn_stale):
            return
        with nogil:
            pthread_rwlock_wrlock(&self.index_lock)
        try:
            if self.dbn_stale:
                self._count_tree_dbs()
                self.dbn_stale = 0
        finally:
            pthread_rwlock_unlock(&self.index_lock)

    def _keyspace_step(self):
        """A writer's open of a version-2 index (one keyspace, its keys as
        given): when no key starts with 0xFF (the keyspace encoding reads
        such a key differently) the index moves to version 3 -- the log
        checkpointed first, then an empty commit stamped 3, durable before
        any write of this handle -- and numbered databases are on.  A
        database that holds such keys stays at version 2: one keyspace, the
        keys as they are (database(n) refuses; dump and load moves it)."""
        cdef int rc, found = 0
        cdef MergeIter it
        cdef char ff = <char>KEY_ESC
        if self.tree.version != BTREE_VERSION_V2:
            self.keyspaces = 1
            return
        # Any stored key from 0xFF on, expired ones included (they are in the
        # tree and the log until the expirer deletes them).
        it = MergeIter(self, False)
        with nogil:
            pthread_rwlock_rdlock(&self.index_lock)
            rc = it.renew()
            it.now = 0
            if rc == 0:
                rc = it.seek(SEEK_GE, &ff, 1)
            if rc == 0:
                rc = it.step()
                found = rc > 0
            it.tc.close()
            pthread_rwlock_unlock(&self.index_lock)
        if rc < 0:
            raise_status(rc, "open", self.tree_path)
        if found:
            log.warning("pastedb: %s holds keys starting with byte 0xFF from before numbered "
                        "databases; it keeps one keyspace (dump and load it to use them)",
                        self.path)
            return
        with nogil:
            rc = self.checkpoint_index()
            if rc == 0:
                pthread_mutex_lock(&self.tree_lock)
                rc = self.tree.begin()
                if rc == 0:
                    rc = self.tree.set_version(BTREE_VERSION)
                    if rc == 0:
                        rc = self.tree.commit(self.tree.applied_lsn())
                    elif self.tree.in_txn:
                        self.tree.abort()
                pthread_mutex_unlock(&self.tree_lock)
                if rc == 0:
                    pthread_rwlock_wrlock(&self.index_lock)
                    self.publish_tree()
                    pthread_rwlock_unlock(&self.index_lock)
        if rc != 0:
            raise_status(rc, "open", self.tree_path)
        self.keyspaces = 1
        self._count_tree_dbs()                    # (no key of databases 1..: all in 0)
        log.info("pastedb: %s: index moved to format version %d (numbered databases)",
                 self.path, BTREE_VERSION)

    def _load_expiry(self):
        """The tree's keys with an expiry into exp_map / exp_heap (open: one
        walk of the tree, before replay adds the pending ones)."""
        cdef TreeCursor c = self.tree.cursor(0)
        cdef Ref ref
        cdef const char *k
        cdef uint32_t klen
        cdef int rc
        with nogil:
            rc = c.first()
            while rc == 1:
                c.ref(&ref)
                if ref.expire_ms != 0 and self.ref_in_pool(&ref):
                    self.exp_note(self.pool.base + ref.koff, ref.klen, &ref)
                rc = c.next()
        c.close()
        if rc < 0:
            raise_status(rc, "open", self.tree_path)

    def _set_clock_offset(self, double seconds):
        """Test hook: the engine's clock runs `seconds` ahead of the wall
        clock (expiry decisions, ttl(), the server's TTL replies)."""
        self.clock_offset_ms = <int64_t>(seconds * 1000)
        with nogil:
            pthread_mutex_lock(&self.idx_mutex)
            pthread_cond_signal(&self.idx_cond)
            pthread_mutex_unlock(&self.idx_mutex)

    def _set_clock(self, ms):
        """Test hook: freeze the engine's clock at `ms` (ms since the Unix
        epoch); None lets it run with the wall clock again."""
        self.clock_fixed_ms = 0 if ms is None else ms
        with nogil:
            pthread_mutex_lock(&self.idx_mutex)
            pthread_cond_signal(&self.idx_cond)
            pthread_mutex_unlock(&self.idx_mutex)

    def _set_active_expire(self, bint on):
        """DEBUG SET-ACTIVE-EXPIRE: whether the indexer deletes expired keys
        by itself (they are invisible either way; a read that meets one
        still has it deleted)."""
        self.active_expire = on

    def _now_ms(self):
        return self.now_ms()

    def _indexer_main(self):
        with nogil:
            self.indexer()

    def _drop_lock_fd(self):
        _held_locks.discard(self.lock_ident)
        if self.lock_fd >= 0:
            try:
                os.close(self.lock_fd)
            except OSError:
                pass
            self.lock_fd = -1

    def _arm_faults(self, dict faults):
        """Test hook: fail the n-th write, barrier or growth of any file of
        the database from now on (SQLite-style fault injection; the kinds
        are Vfs.arm's)."""
        self.vfs.arm(faults)

    def _checkpoint_policy(self, every=None, interval=None, nbytes=None):
        """Test and benchmark hook: start a checkpoint after `every` logged
        records, `nbytes` logged key + value bytes or `interval` seconds
        (defaults CHECKPOINT_EVERY, CHECKPOINT_BYTES, CHECKPOINT_INTERVAL).
        Setting `every` alone turns the byte trigger off (0 = off), so a test
        decides when checkpoints happen."""
        if every is not None:
            if every < 1:
                raise ValueError("every must be >= 1")
            self.ckpt_every = every
            if nbytes is None:
                self.ckpt_bytes = 0
        if nbytes is not None:
            if nbytes < 0:
                raise ValueError("nbytes must be >= 0")
            self.ckpt_bytes = nbytes
        if interval is not None:
            if interval < 0:
                raise ValueError("interval must be >= 0")
            self.ckpt_interval_ns = <int64_t>(interval * 1e9)

    def _faults_fired(self):
        return self.vfs.fired()

    def _crash_image(self, directory, seed, double keep=0.5, double torn=0.25):
        """Test hook (persist="crashsim*"): write into `directory` the pool
        and index files a power loss at this instant could leave behind, torn
        together.  Returns the number of pending operations chosen from."""
        if not self.vfs.sim:
            raise Error("crash images need persist='crashsim'")
        return self.vfs.crash_image(directory, seed, keep, torn)

    @property
    def _vfs(self):
        """Test hook: the I/O layer (fault counts, image triggers)."""
        return self.vfs

    def _lock(self):
        # A POSIX record lock (fcntl), not flock: it belongs to this process
        # and is not inherited by fork(), so a forked child can never keep
        # the database locked after the parent closes it.  POSIX locks do
        # not exclude a second handle in the same process, so this process's
        # held locks are also kept in _held_locks -- and a second handle never
        # opens (then closes) the LOCK file, which would drop the first
        # handle's lock.
        lock_path = os.path.join(self.path, LOCK_FILE)
        with _held_locks_guard:
            try:
                st = os.stat(lock_path)
                if (st.st_dev, st.st_ino) in _held_locks:
                    raise LockedError(f"the database {self.path} is already open in this process")
            except FileNotFoundError:
                pass
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise LockedError(f"the database {self.path} is open for writing in another "
                                  f"process") from None
            st = os.fstat(fd)
            self.lock_ident = (st.st_dev, st.st_ino)
            _held_locks.add(self.lock_ident)
        self.lock_fd = fd

    def _create(self, str tmp_path):
        cdef Superblock sb
        cdef uint64_t off
        cdef int rc = self.pool.alloc_extent(CHUNK_SIZE, &off)
        if rc != 0:
            raise_status(rc, "create", tmp_path)
        memset(self.pool.base + off, 0, CHUNK_SIZE)
        memset(&sb, 0, sizeof(Superblock))
        sb.seq = 1
        sb.log_head_off = off
        sb.log_head_size = CHUNK_SIZE
        sb.log_head_lsn = 1
        sb.created_ns = <uint64_t>time.time_ns()
        self.created_ns = sb.created_ns
        # The index file first: a pool without one is a database whose
        # creation did not finish (the pool is renamed into place last).
        if os.path.exists(self.tree_path):
            os.unlink(self.tree_path)
        self._open_tree(True)
        self.keyspaces = 1
        self._count_tree_dbs()
        self.publish_tree()
        rc = write_superblock(self.pool, self.barriers, &sb)
        if rc != 0:
            raise_status(rc, "create", tmp_path)
        self.sb_seq = 1
        self.log.set_head(off, 1)
        rc = self.barriers.barrier()
        if rc != 0:
            raise_status(rc, "create", tmp_path)
        self.vfs.rename_file(tmp_path, self.pool_path)
        dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.pool.set_path(self.pool_path)

    def _recover(self):
        cdef Superblock sb
        cdef ReplayResult res
        cdef ReplayCtx ctx
        memset(&sb, 0, sizeof(Superblock))
        cdef int rc = read_superblock(self.pool, &sb)
        if rc != 0:
            raise_status(rc, "open", self.pool_path)
        self.sb_seq = sb.seq
        self.created_ns = sb.created_ns
        if not os.path.exists(self.tree_path):
            if sb.tree_lsn != 0:
                raise CorruptionError(
                    f"open: the index file {self.tree_path} is missing (the superblock says a "
                    f"checkpoint covers the log up to lsn {sb.tree_lsn}); "
                    f"run 'pastedb-check --repair {self.path}'", self.tree_path)
        self._open_tree(sb.tree_lsn == 0)
        cdef uint64_t applied = self.tree.applied_lsn()
        if applied < sb.tree_lsn:
            raise CorruptionError(
                f"open: the index file {self.tree_path} covers the log up to lsn {applied}, "
                f"but the pool's log starts after lsn {sb.tree_lsn}: the index lost a commit; "
                f"run 'pastedb-check --repair {self.path}'", self.tree_path)
        if applied == sb.tree_lsn:
            self.c_live = <int64_t>sb.tree_live
        else:
            # A crash between the tree commit and the superblock write: count
            # the tree's bytes once.
            self.c_live = self._tree_bytes()
        self.w_live = self.c_live
        self.keyspaces = self.tree.version >= BTREE_VERSION
        self._count_tree_dbs()
        self.publish_tree()
        self._load_expiry()
        self.cut_lsn = applied
        self.log.set_head(sb.log_head_off, sb.log_head_lsn)
        ctx.db = <void *>self
        ctx.max_end = HEADER_SIZE
        ctx.skip_lsn = applied
        ctx.applied = 0
        rc = self.log.replay(replay_apply, &ctx, &res)
        if rc == ST_CORRUPT:
            raise CorruptionError(
                f"open: the log in {self.pool_path} is damaged at byte offset "
                f"{res.damaged_off} (a record that had been acknowledged no longer verifies); "
                f"run 'pastedb-check --repair {self.path}'", self.pool_path)
        if rc != 0:
            raise_status(rc, "open", self.pool_path)
        self.recovered_records = ctx.applied
        if res.torn or res.dropped_batch:
            self.recovery_note = (
                f"cut a torn log tail at byte offset {res.tail_off} of {self.pool_path}"
                + (f" (dropped an incomplete batch of {res.dropped_batch} records)"
                   if res.dropped_batch else ""))
            log.warning("pastedb: %s; every acknowledged write is intact", self.recovery_note)
        # New extents start after everything the log references or lives in;
        # what lay beyond was never acknowledged.
        cdef uint64_t end = ctx.max_end
        if self.log.chunk_off + CHUNK_SIZE > end:
            end = self.log.chunk_off + CHUNK_SIZE
        if sb.log_head_off + CHUNK_SIZE > end:
            end = sb.log_head_off + CHUNK_SIZE
        # The superblock's mark, but not past the end of the file: a cut of
        # free segments at the end may have followed the checkpoint.
        cdef uint64_t mark = sb.alloc_tail
        cdef uint64_t fsize = <uint64_t>os.fstat(self.pool.file.fd).st_size // SEG_SIZE * SEG_SIZE
        if mark > fsize:
            mark = fsize
        if mark > end:
            end = mark
        self.pool.set_alloc_tail(end)
        rc = self.barriers.barrier()              # the zeroed tail, before any new write
        if rc != 0:
            raise_status(rc, "open", self.pool_path)
        if res.end_lsn <= applied:
            # The log ended (cut or damaged) at a record the tree already
            # holds.  New records must follow applied_lsn, or the next
            # recovery would skip them as covered: start a fresh chain there.
            self._fresh_chain(applied)

    def _fresh_chain(self, uint64_t applied):
        cdef uint64_t off, lsn
        cdef int rc
        with nogil:
            rc = self.log.restart_after(applied, &off, &lsn)
        if rc != 0:
            raise_status(rc, "open", self.pool_path)
        with nogil:
            rc = self.write_head(off, lsn, applied, self.pool.alloc_tail)
        if rc != 0:
            raise_status(rc, "open", self.pool_path)
        self.log.move_head(off, lsn)
        self.cut_lsn = applied
        self.recovery_note = ((self.recovery_note + "; ") if self.recovery_note else "") + (
            f"the log ended inside what the index holds (lsn <= {applied}): started a fresh "
            f"log chain at byte offset {off}")

    # -------------------------------------------------------------- C core
    cdef int enter(self) noexcept nogil:
        cdef int rc
        if self.fork_gen != fork_generation:
            return ST_FORKED
        pdb_xadd_sc(&self.active, 1)
        if pdb_load_sc(&self.closed):
            pdb_xadd_sc(&self.active, -1)
            return ST_CLOSED
        if self.readonly and not self.ro_frozen and self.readers is not None and (
                pdb_load_sc(&self.readers.hdr.durable_lsn) != self.ro_seen_durable
                or pdb_load_sc(&self.readers.hdr.tree_txn) != self.ro_seen_tree
                or pdb_load_sc(&self.readers.hdr.writer_epoch) != self.ro_epoch):
            rc = self.ro_refresh()
            if rc != 0:
                pdb_xadd_sc(&self.active, -1)
                return rc
        return 0

    cdef int ro_refresh(self) noexcept with gil:
        try:
            self._ro_refresh()
            return 0
        except CorruptionError as e:
            log.error("pastedb: read-only handle of %s: %s", self.path, e)
            return ST_CORRUPT
        except BaseException as e:
            log.error("pastedb: read-only handle of %s could not follow the writer: %s",
                      self.path, e)
            return ST_FAILED

    cdef int64_t bound_readers(self, int64_t *txn_out=NULL) noexcept nogil:
        """Bound the tree's page reuse by the oldest commit a reader holds;
        returns the oldest log position one holds (txn_out: that commit;
        INT64_MAX each when no reader lives)."""
        cdef int64_t min_txn, min_lsn
        if self.readers is None or self.readers.scan(&min_txn, &min_lsn) == 0:
            self.tree.bound_reuse(~(<uint64_t>0))
            min_txn = 0x7FFFFFFFFFFFFFFF
            min_lsn = 0x7FFFFFFFFFFFFFFF
        else:
            self.tree.bound_reuse(<uint64_t>min_txn if min_txn > 0 else 0)
        if txn_out != NULL:
            txn_out[0] = min_txn
        return min_lsn

    cdef void leave(self) noexcept nogil:
        pdb_xadd_sc(&self.active, -1)

    cdef int reserve_data(self, uint64_t n, uint64_t *off) noexcept nogil:
        return self.reserve_data_ex(n, off, 0)

    cdef int reserve_data_ex(self, uint64_t n, uint64_t *off, int use_reserve) noexcept nogil:
        """use_reserve: for writes that give space back (a delete's key, a
        relocation), which may use the pool's full-disk reserve."""
        cdef int rc
        cdef uint64_t ext, ext_n
        if self.readonly:
            return ST_READONLY            # every write stages through here; the mapping is PROT_READ
        n = (n + 7) & ~(<uint64_t>7)
        pthread_mutex_lock(&self.data_lock)
        # data_end == 0: no extent yet this session (offset 0 is the
        # superblock, never a place for data -- even a 0-byte key).
        if self.data_end == 0 or self.data_off + n > self.data_end:
            # Values are packed end to end, across segment boundaries: the
            # extent grows in place at the file's tail (a 256 KiB value then
            # costs its own bytes, not a segment of 1 MiB), else a new extent
            # of at least DATA_EXTENT that holds the value whole.
            rc = 1
            if self.data_end != 0:
                # (not possible here, or no room at the tail: a new extent,
                # which may still find free segments elsewhere)
                rc = self.pool.extend_extent(&self.data_end, self.data_off + n - self.data_end,
                                             use_reserve)
            if rc != 0:
                ext_n = (n + SEG_SIZE - 1) // SEG_SIZE * SEG_SIZE
                if ext_n < DATA_EXTENT:
                    ext_n = DATA_EXTENT
                rc = self.pool.alloc_extent_ex(ext_n, &ext, use_reserve)
                if rc != 0:
                    pthread_mutex_unlock(&self.data_lock)
                    return rc
                self.data_off = ext
                self.data_end = ext + ext_n
        off[0] = self.data_off
        self.data_off += n
        # Pinned until the record naming the bytes is appended (or dropped):
        # the free pass (under data_lock) never releases a pinned segment.
        self.pool.pin(off[0], n, 1)
        pthread_mutex_unlock(&self.data_lock)
        return 0

    cdef void unstage(self, LogRecord *recs, int n) noexcept nogil:
        """Drop the pins of staged records that will not be appended."""
        cdef int i
        cdef uint64_t lo, ln
        for i in range(n):
            rec_span(&recs[i], &lo, &ln)
            self.pool.pin(lo, ln, -1)

    cdef int stage_put(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                       LogRecord *rec) noexcept nogil:
        return self.stage_copy(k, klen, v, vlen, rec, 0)

    cdef int stage_copy(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                        LogRecord *rec, int use_reserve) noexcept nogil:
        cdef uint64_t off
        cdef char *dst
        cdef int rc = self.reserve_data_ex(klen + vlen, &off, use_reserve)
        if rc != 0:
            return rc
        dst = self.pool.base + off
        rc = self.pool.write_at2(off, k, klen, v, vlen)
        if rc != 0:
            self.pool.pin(off, klen + vlen, -1)
            return rc
        self.barriers.persist_range(dst, klen + vlen)
        memset(rec, 0, sizeof(LogRecord))
        rec.type = REC_PUT
        rec.klen = <uint16_t>klen
        rec.koff = off
        rec.voff = off + klen
        rec.vlen = vlen
        # Checksum what is in the pool, not the caller's buffer: a bytearray
        # another thread changes during the call must not leave bytes and
        # checksum disagreeing (the log would end there at the next open).
        rec.vcrc = crc32c_buf(dst + klen, vlen)
        rec.crc = key_crc_state(dst, klen)
        return 0

    cdef int stage_delete(self, const char *k, uint32_t klen, LogRecord *rec) noexcept nogil:
        cdef uint64_t off
        cdef char *dst
        # A delete gives space back: it may use the full-disk reserve.
        cdef int rc = self.reserve_data_ex(klen, &off, 1)
        if rc == -ENOSPC or rc == -EDQUOT:
            return self.stage_delete_in_place(k, klen, rec, rc)
        if rc != 0:
            return rc
        dst = self.pool.base + off
        rc = self.pool.write_at(off, k, klen)
        if rc != 0:
            self.pool.pin(off, klen, -1)
            return rc
        self.barriers.persist_range(dst, klen)
        memset(rec, 0, sizeof(LogRecord))
        rec.type = REC_DEL
        rec.klen = <uint16_t>klen
        rec.koff = off
        rec.crc = key_crc_state(dst, klen)
        return 0

    cdef int stage_delete_in_place(self, const char *k, uint32_t klen, LogRecord *rec,
                                   int rc) noexcept nogil:
        """No room even in the reserve (a disk filled to the brim): a DEL
        record that names the key's own bytes where the live entry has them,
        so a delete needs no new space but a log slot.  Safe by the usual
        rule: the record keeps that segment (seg_lsn) until the log head
        passes it.  An absent key: rc (nothing to delete, no room to say so)."""
        cdef Ref ref
        cdef int found
        pthread_rwlock_rdlock(&self.index_lock)
        found = self.lookup_locked(k, klen, &ref)
        if found == 1 and self.ref_in_pool(&ref) and ref.klen == klen:
            self.pool.pin(ref.koff, klen, 1)      # under the read lock: nothing frees it first
        else:
            found = 0
        pthread_rwlock_unlock(&self.index_lock)
        if found != 1:
            return rc
        memset(rec, 0, sizeof(LogRecord))
        rec.type = REC_DEL
        rec.klen = <uint16_t>klen
        rec.koff = ref.koff
        rec.crc = key_crc_state(self.pool.base + ref.koff, klen)
        return 0

    cdef int index_apply(self, const LogRecord *rec) noexcept nogil:
        """Put one logged record in the pending table (caller holds the index
        write lock, or is replaying).  A delete becomes a tombstone: the
        tree may still hold the key."""
        cdef Ref ref
        ref_from_record(rec, &ref)
        if self.index.put(self.pool.base + rec.koff, rec.klen, &ref, NULL) < 0:
            return -ENOMEM
        if ref.expire_ms != 0:
            self.exp_note(self.pool.base + rec.koff, rec.klen, &ref)
        elif self.exp_map.count:
            self.exp_map.remove(self.pool.base + rec.koff, rec.klen, NULL)
        return 0

    cdef void exp_note(self, const char *k, uint32_t klen, const Ref *ref) noexcept nogil:
        """k has an expiry now (index write lock held, or opening).  Out of
        memory leaves the key without its entry: it stays invisible once
        expired (every read checks the Ref), only counted and deleted later."""
        if self.exp_map.put(k, klen, ref, NULL) < 0:
            return
        pthread_mutex_lock(&self.exp_lock)
        self.exp_heap.push(k, klen, ref.expire_ms, ref.lsn)
        pthread_mutex_unlock(&self.exp_lock)

    cdef uint64_t now_ms(self) noexcept nogil:
        if self.clock_fixed_ms:
            return self.clock_fixed_ms
        return <uint64_t>(<int64_t>wall_ms() + self.clock_offset_ms)

    cdef int key_db(self, const char *k, uint32_t klen) noexcept nogil:
        """The database a stored key belongs to (0 in a one-keyspace database)."""
        return db_of_key(k, klen) if self.keyspaces else 0

    cdef void count_expired(self, uint64_t now, int dbno, int64_t *keys, int64_t *nbytes) noexcept nogil:
        # Only the entries due by now are visited (DueWalk).  dbno < 0: all databases.
        cdef DueWalk w
        cdef ExpEntry *e
        cdef Ref cur
        cdef int64_t k = 0, b = 0
        pthread_mutex_lock(&self.exp_lock)
        self.exp_heap.due_start(&w, now)
        e = self.exp_heap.due_next(&w)
        while e != NULL:
            if (dbno < 0 or self.key_db(e.key, e.klen) == dbno) and \
                    self.exp_map.get(e.key, e.klen, &cur) and cur.lsn == e.lsn:
                k += 1
                b += <int64_t>(cur.klen + cur.vlen)
            e = self.exp_heap.due_next(&w)
        pthread_mutex_unlock(&self.exp_lock)
        keys[0] = k
        nbytes[0] = b

    cdef int64_t count_volatile(self, uint64_t now, int dbno) noexcept nogil:
        cdef int64_t k = 0, b = 0, n = 0
        cdef Node *node
        cdef const Ref *ref
        self.count_expired(now, dbno, &k, &b)
        if dbno < 0:
            return <int64_t>self.exp_map.count - k
        node = self.exp_map.first()
        while node != NULL:
            ref = self.exp_map.node_ref(node)
            if self.key_db(self.pool.base + ref.koff, ref.klen) == dbno:
                n += 1
            node = self.exp_map.next(node)
        return n - k

    cdef void pin_record(self, const LogRecord *rec) noexcept nogil:
        cdef uint64_t lo, ln
        rec_span(rec, &lo, &ln)
        self.pool.pin(lo, ln, 1)

    cdef int stage_expiry(self, const char *k, uint32_t klen, uint64_t expire_ms, LogRecord *rec,
                          Ref *cur) noexcept nogil:
        cdef int found
        if self.readonly:
            return ST_READONLY                    # (it stages no bytes: reserve_data cannot say so)
        pthread_rwlock_rdlock(&self.index_lock)
        found = self.lookup_locked(k, klen, cur)
        if found > 0 and not self.ref_in_pool(cur):
            found = ST_CORRUPT
        if found > 0:
            memset(rec, 0, sizeof(LogRecord))
            rec.type = REC_PUT
            rec.klen = <uint16_t>klen
            rec.koff = cur.koff
            rec.voff = cur.voff
            rec.vlen = cur.vlen
            rec.vcrc = cur.vcrc
            rec.expire_ms = expire_ms
            rec.crc = key_crc_state(self.pool.base + cur.koff, klen)
            # Under the read lock, while the key names these bytes: a free
            # pass cannot release them before the record is appended.
            self.pin_record(rec)
        pthread_rwlock_unlock(&self.index_lock)
        return found

    cdef int expire_pass(self, int budget) noexcept nogil:
        """Log a DEL for up to budget keys that are due and still have the Ref
        their heap entry names (appended only if so: a write meanwhile wins),
        then drop the heap's stale top entries.  An entry stays on the heap
        until its key is deleted, so len() counts it out throughout.  No
        sync: an expired key that comes back after a crash is still expired."""
        cdef ExpEntry **due = NULL
        cdef ExpEntry *e
        cdef Ref cur
        cdef LogRecord rec
        cdef int n = 0, i, rc = 0, done = 0, existed
        cdef DueWalk w
        cdef uint64_t now = self.now_ms()
        due = <ExpEntry **>calloc(<size_t>budget, sizeof(ExpEntry *))
        if due == NULL:
            return -ENOMEM
        pthread_rwlock_rdlock(&self.index_lock)
        pthread_mutex_lock(&self.exp_lock)
        self.exp_heap.due_start(&w, now)
        while n < budget:
            e = self.exp_heap.due_next(&w)
            if e == NULL:
                break
            if self.exp_map.get(e.key, e.klen, &cur) and cur.lsn == e.lsn:
                due[n] = <ExpEntry *>malloc(sizeof(ExpEntry) + e.klen)
                if due[n] == NULL:
                    break
                memcpy(due[n], e, sizeof(ExpEntry) + e.klen)
                n += 1
        pthread_mutex_unlock(&self.exp_lock)
        pthread_rwlock_unlock(&self.index_lock)
        for i in range(n):
            e = due[i]
            if rc == 0:
                pthread_rwlock_rdlock(&self.index_lock)
                existed = self.exp_map.get(e.key, e.klen, &cur) and cur.lsn == e.lsn
                pthread_rwlock_unlock(&self.index_lock)
                if existed:
                    rc = self.stage_delete(e.key, e.klen, &rec)
                    if rc == 0:
                        rc = self.apply_records_ex(&rec, 1, 0, &existed, NULL, &cur)
                    if rc == 0 and existed:
                        done += 1
            free(e)
        free(due)
        # The deleted keys' entries (and any other stale ones) at the top go.
        pthread_rwlock_rdlock(&self.index_lock)
        pthread_mutex_lock(&self.exp_lock)
        while True:
            e = self.exp_heap.top()
            if e == NULL or (self.exp_map.get(e.key, e.klen, &cur) and cur.lsn == e.lsn):
                break
            free(self.exp_heap.pop())
        pthread_mutex_unlock(&self.exp_lock)
        pthread_rwlock_unlock(&self.index_lock)
        self.expired_keys += <uint64_t>done
        if rc == 0 and self.exp_heap.n > 2 * self.exp_map.count + 4096:
            # Mostly stale entries (volatile keys rewritten): drop them.
            pthread_rwlock_rdlock(&self.index_lock)
            pthread_mutex_lock(&self.exp_lock)
            for j in range(self.exp_heap.n):
                e = self.exp_heap.v[j]
                if not (self.exp_map.get(e.key, e.klen, &cur) and cur.lsn == e.lsn):
                    e.lsn = 0                     # stale
            self.exp_heap.purge()
            pthread_mutex_unlock(&self.exp_lock)
            pthread_rwlock_unlock(&self.index_lock)
        return rc if rc < 0 else done

    cdef int tree_apply(self, const char *key, uint32_t klen, const Ref *ref) noexcept nogil:
        """Apply one pending entry to the tree's write txn (tree_lock held)."""
        cdef Ref old
        cdef int had = self.tree.get(key, klen, &old)
        cdef int rc
        if had < 0:
            return had
        if ref.voff == TOMB:
            if had:
                rc = self.tree.delete(key, klen)
                if rc < 0:
                    return rc
                self.w_dbn[self.key_db(key, klen)] -= 1
                self.w_live -= <int64_t>(old.klen + old.vlen)
                if self.seg_ready:
                    self.pool.add_live(old.koff, old.klen, -1)
                    self.pool.add_live(old.voff, old.vlen, -1)
            return 0
        rc = self.tree.put(key, klen, ref)
        if rc < 0:
            return rc
        if had:
            self.w_live -= <int64_t>(old.klen + old.vlen)
            if self.seg_ready:
                self.pool.add_live(old.koff, old.klen, -1)
                self.pool.add_live(old.voff, old.vlen, -1)
        else:
            self.w_dbn[self.key_db(key, klen)] += 1
        self.w_live += <int64_t>(ref.klen + ref.vlen)
        if self.seg_ready:
            self.pool.add_live(ref.koff, ref.klen, 1)
            self.pool.add_live(ref.voff, ref.vlen, 1)
        return 0

    cdef int apply_records(self, LogRecord *recs, int n, int sync, int *existed,
                           uint64_t *last_lsn) noexcept nogil:
        return self.apply_records_ex(recs, n, sync, existed, last_lsn, NULL)

    cdef int apply_records_ex(self, LogRecord *recs, int n, int sync, int *existed,
                              uint64_t *last_lsn, const Ref *expect) noexcept nogil:
        # expect (n == 1): append only if the key still names exactly those
        # bytes (the cleaner, pop), or, when expect.voff == TOMB, only if the
        # key is absent (setdefault); *existed = 0 when it does not hold.
        cdef uint64_t lsn, lo, ln
        cdef Ref tmp
        cdef int rc = 0, i, found
        existed[0] = 1
        if self.readonly:
            return ST_READONLY
        if self.eager:
            # The ablation: the tree is updated inside the write's critical
            # section, and a checkpoint (which holds tree_lock) stalls writers.
            pthread_mutex_lock(&self.tree_lock)
        self.log.lock_log()
        if n == 1 and (recs[0].type == REC_DEL or expect != NULL):
            # Deleting an absent key writes nothing.
            if expect != NULL and expect.voff == TOMB:
                found = self.lookup(self.pool.base + recs[0].koff, recs[0].klen, &tmp)
                if found >= 0:
                    found = 1 - found
            elif expect != NULL:
                # The cleaner, pop and the expirer: the key must still name
                # exactly these bytes with this expiry (expired or not).
                pthread_rwlock_rdlock(&self.index_lock)
                found = self.lookup_raw_locked(self.pool.base + recs[0].koff, recs[0].klen, &tmp)
                pthread_rwlock_unlock(&self.index_lock)
                if found > 0 and (tmp.koff != expect.koff or tmp.voff != expect.voff or
                                  tmp.vlen != expect.vlen or tmp.expire_ms != expect.expire_ms):
                    found = 0
            else:
                found = self.lookup(self.pool.base + recs[0].koff, recs[0].klen, &tmp)
            if found <= 0:
                self.unstage(recs, 1)
                if last_lsn != NULL:
                    # Nothing appended: a caller that waits for durability
                    # waits for what was appended before (the server holds
                    # the reply until then).
                    last_lsn[0] = self.log.next_lsn - 1
                self.log.unlock_log()
                if self.eager:
                    pthread_mutex_unlock(&self.tree_lock)
                existed[0] = 0
                return found
        return self.append_locked_tail(recs, n, sync, last_lsn)

    cdef int append_locked_tail(self, LogRecord *recs, int n, int sync,
                                uint64_t *last_lsn) noexcept nogil:
        """The part of apply_records_ex after its conditions (clear_all's
        too): append recs with the log lock held (and tree_lock in eager
        mode), update the pending table in log order, release both, then wait
        for durability when sync."""
        cdef uint64_t lsn, lo, ln
        cdef Ref tmp
        cdef int rc = 0, i
        rc = self.log.append_locked(recs, n, &lsn)
        # The staged bytes are named by appended records now (or dropped):
        # the records' lsns keep their segments until the log head passes.
        for i in range(n):
            rec_span(&recs[i], &lo, &ln)
            self.pool.pin(lo, ln, -1)
            if rc == 0:
                self.pool.note_lsn(lo, ln, recs[i].lsn)
                self.logged_bytes += recs[i].klen + recs[i].vlen
        if rc != 0:
            self.log.unlock_log()
            if self.eager:
                pthread_mutex_unlock(&self.tree_lock)
            return rc
        if last_lsn != NULL:
            last_lsn[0] = lsn
        # The pending table changes in log order: both happen under the log lock.
        pdb_xadd_sc(&self.idx_waiting, 1)
        pthread_rwlock_wrlock(&self.index_lock)
        pdb_xadd_sc(&self.idx_waiting, -1)
        for i in range(n):
            rc = self.index_apply(&recs[i])
            if rc != 0:
                # The log holds a record the index could not take: stop
                # acknowledging anything; reopening rebuilds the index.
                self.log.fail(rc)
                break
        pthread_rwlock_unlock(&self.index_lock)
        if self.eager and rc == 0:
            if not self.tree.in_txn:
                self.bound_readers()
                rc = self.tree.begin()
            i = 0
            while rc == 0 and i < n:
                ref_from_record(&recs[i], &tmp)
                rc = self.tree_apply(self.pool.base + recs[i].koff, recs[i].klen, &tmp)
                i += 1
            if rc != 0:
                self.log.fail(rc)
        self.log.unlock_log()
        if self.eager:
            pthread_mutex_unlock(&self.tree_lock)
        if rc == 0 and sync:
            rc = self.log.commit(lsn)
        return rc

    cdef int clear_all(self, MergeIter it, int sync, int dbno) noexcept nogil:
        """Delete every key (of database dbno; -1 every database) in one
        all-or-nothing batch, listed and appended
        in one hold of the log lock, so no write lands between them: a DEL
        per key naming the key's own bytes (no new space), expired entries
        included.  Writers wait for it (O(keys))."""
        cdef LogRecord *recs = NULL
        cdef LogRecord *grown
        cdef int n = 0, cap = 0, rc = 0, i
        cdef char lo[2]
        if self.readonly:
            return ST_READONLY
        if self.eager:
            pthread_mutex_lock(&self.tree_lock)
        self.log.lock_log()
        pthread_rwlock_rdlock(&self.index_lock)
        rc = it.renew()
        it.now = 0                            # expired entries too: nothing old stays
        if rc == 0:
            if dbno > 0:
                lo[0] = <char>KEY_ESC
                lo[1] = <char>dbno
                rc = it.seek(SEEK_GE, lo, 2)
            else:
                rc = it.seek(SEEK_FIRST, NULL, 0)
        while rc == 0:
            rc = it.step()
            if rc <= 0:
                break
            rc = 0
            if dbno >= 0 and self.key_db(it.key, it.klen) != dbno:
                break                             # past the database's range
            # The DEL names the pool's copy of the key: it must be that key.
            if (not self.ref_in_pool(&it.ref) or it.ref.klen != it.klen or
                    (it.klen and memcmp(self.pool.base + it.ref.koff, it.key, it.klen) != 0)):
                rc = ST_CORRUPT
                break
            if n == cap:
                cap = cap * 2 if cap else 1024
                grown = <LogRecord *>realloc(recs, cap * sizeof(LogRecord))
                if grown == NULL:
                    rc = -ENOMEM
                    break
                recs = grown
            memset(&recs[n], 0, sizeof(LogRecord))
            recs[n].type = REC_DEL
            recs[n].klen = <uint16_t>it.klen
            recs[n].koff = it.ref.koff
            recs[n].crc = key_crc_state(self.pool.base + it.ref.koff, it.klen)
            self.pool.pin(it.ref.koff, it.klen, 1)  # as a staged record's (under the read lock)
            n += 1
        pthread_rwlock_unlock(&self.index_lock)
        if rc != 0 or n == 0:
            self.unstage(recs, n)
            self.log.unlock_log()
            if self.eager:
                pthread_mutex_unlock(&self.tree_lock)
            free(recs)
            return rc
        rc = self.append_locked_tail(recs, n, sync, NULL)
        free(recs)
        return rc

    cdef void publish_tree(self) noexcept nogil:
        """Readers see the tree's newest commit from now on (call with the
        index write lock held, or before readers exist)."""
        pthread_mutex_lock(&self.tree.lock)
        self.cur_snap = self.tree.c
        pthread_mutex_unlock(&self.tree.lock)
        self.cur_live = self.c_live
        memcpy(self.cur_dbn, self.c_dbn, sizeof(self.cur_dbn))
        if self.readers is not None:
            self.readers.publish_tree(<int64_t>self.cur_snap.txn)   # the writer's only

    cdef int lookup_locked(self, const char *k, uint32_t klen, Ref *out) noexcept nogil:
        """Pending table first, then the tree commit published with it (index
        read lock held: a checkpoint publishes a commit and drops the pending
        entries it holds in one write-lock hold).  An expired key is absent
        (lazy expiry: the expirer is told to delete it)."""
        cdef int found = self.lookup_raw_locked(k, klen, out)
        if found > 0 and out.expire_ms != 0 and out.expire_ms <= self.now_ms():
            if not self.lazy_hits:
                self.lazy_hits = 1
            return 0
        return found

    cdef int lookup_raw_locked(self, const char *k, uint32_t klen, Ref *out) noexcept nogil:
        out.expire_ms = 0
        if self.index.get(k, klen, out):
            return 0 if out.voff == TOMB else 1
        if self.cur_snap.root == 0:
            return 0
        return self.tree.snapshot_get(&self.cur_snap, k, klen, out)

    cdef int ref_in_pool(self, const Ref *r) noexcept nogil:
        """The key and value a reference names lie inside the file (a damaged
        file may say otherwise; reading there would fault)."""
        cdef uint64_t size = self.pool.size
        return not span_outside(r.koff, r.klen, size) and not span_outside(r.voff, r.vlen, size)

    cdef int lookup(self, const char *k, uint32_t klen, Ref *out) noexcept nogil:
        cdef int found
        pthread_rwlock_rdlock(&self.index_lock)
        found = self.lookup_locked(k, klen, out)
        pthread_rwlock_unlock(&self.index_lock)
        return found

    cdef int pending_effect(self, const Ref *ref, int64_t *dkeys, int64_t *dbytes) noexcept nogil:
        """What one pending entry changes in the published tree's counts:
        keys (-1, 0, +1) and key + value bytes; or a negative status (a
        damaged tree page).  Index read lock held."""
        cdef Ref old
        cdef int in_tree = 0
        if self.cur_snap.root != 0:
            in_tree = self.tree.snapshot_get(&self.cur_snap, self.pool.base + ref.koff,
                                             ref.klen, &old)
            if in_tree < 0:
                return in_tree
        dkeys[0] = (ref.voff != TOMB) - in_tree
        dbytes[0] = (<int64_t>(ref.klen + ref.vlen) if ref.voff != TOMB else 0) - \
            (<int64_t>(old.klen + old.vlen) if in_tree else 0)
        return 0

    cdef int count_all_dbs(self, int64_t *keys, int64_t *vol) noexcept nogil:
        """count_live and count_volatile of every database at once: keys[d]
        and vol[d] for d in 0..MAX_DATABASES-1."""
        cdef Node *node
        cdef const Ref *ref
        cdef Ref cur
        cdef int rc = 0, d
        cdef int64_t dk, db
        cdef DueWalk w
        cdef ExpEntry *e
        cdef uint64_t now = self.now_ms()
        pthread_rwlock_rdlock(&self.index_lock)
        memcpy(keys, self.cur_dbn, MAX_DATABASES * sizeof(int64_t))
        memset(vol, 0, MAX_DATABASES * sizeof(int64_t))
        node = self.index.first()
        while node != NULL:
            ref = self.index.node_ref(node)
            rc = self.pending_effect(ref, &dk, &db)
            if rc < 0:
                break
            keys[self.key_db(self.pool.base + ref.koff, ref.klen)] += dk
            node = self.index.next(node)
        node = self.exp_map.first()
        while rc == 0 and node != NULL:
            ref = self.exp_map.node_ref(node)
            vol[self.key_db(self.pool.base + ref.koff, ref.klen)] += 1
            node = self.exp_map.next(node)
        if rc == 0 and self.exp_map.count:
            pthread_mutex_lock(&self.exp_lock)
            self.exp_heap.due_start(&w, now)
            e = self.exp_heap.due_next(&w)
            while e != NULL:
                if self.exp_map.get(e.key, e.klen, &cur) and cur.lsn == e.lsn:
                    d = self.key_db(e.key, e.klen)
                    keys[d] -= 1                  # expired, not yet deleted: invisible
                    vol[d] -= 1
                e = self.exp_heap.due_next(&w)
            pthread_mutex_unlock(&self.exp_lock)
        pthread_rwlock_unlock(&self.index_lock)
        return rc

    cdef int count_live(self, int dbno, int64_t *keys, int64_t *live) noexcept nogil:
        """dbno < 0: every database (and *live their bytes); else the keys
        of that database (*live 0)."""
        cdef Node *node
        cdef const Ref *ref
        cdef int rc = 0
        cdef int64_t n, b, xk = 0, xb = 0, dk, db
        pthread_rwlock_rdlock(&self.index_lock)
        n = <int64_t>self.cur_snap.entries if dbno < 0 else self.cur_dbn[dbno]
        b = self.cur_live if dbno < 0 else 0
        node = self.index.first()
        while node != NULL:
            ref = self.index.node_ref(node)
            if dbno < 0 or self.key_db(self.pool.base + ref.koff, ref.klen) == dbno:
                rc = self.pending_effect(ref, &dk, &db)
                if rc < 0:
                    break
                n += dk
                if dbno < 0:
                    b += db
            node = self.index.next(node)
        if rc == 0 and self.exp_map.count:
            self.count_expired(self.now_ms(), dbno, &xk, &xb)
            n -= xk
            if dbno < 0:
                b -= xb
        pthread_rwlock_unlock(&self.index_lock)
        keys[0] = n
        live[0] = b
        return rc

    cdef int sync_all(self) noexcept nogil:
        cdef uint64_t lsn
        self.log.lock_log()
        lsn = self.log.next_lsn - 1
        self.log.unlock_log()
        return self.log.commit(lsn)

    # -------------------------------------------------------------- API
    cdef int _put(self, const char *k, Py_ssize_t klen, const char *v, Py_ssize_t vlen,
                  int sync, uint64_t expire_ms) noexcept nogil:
        cdef LogRecord rec
        cdef int rc, existed
        if self.readonly:
            return ST_READONLY
        rc = self.enter()
        if rc != 0:
            return rc
        rc = self.stage_put(k, <uint32_t>klen, v, <uint64_t>vlen, &rec)
        if rc == 0:
            rec.expire_ms = expire_ms
            rc = self.apply_records(&rec, 1, sync, &existed, NULL)
        self.leave()
        return rc

    def put(self, key, value, *, ttl=None):
        """Store value under key.  With sync=True (the default) the call returns
        once the write is durable.  ttl (seconds, a float): the key expires
        that long from now; ttl <= 0 deletes the key (as Redis does); None
        stores it without an expiry (clearing any it had)."""
        cdef uint64_t expire_ms = 0
        if ttl is not None:
            expire_ms = self._expire_at(ttl)
            if expire_ms == 0:
                self.delete(key)
                return
        cdef Py_buffer kb, vb
        cdef const char *k
        cdef const char *v
        cdef Py_ssize_t klen, vlen
        cdef int kview = 0, vview = 0, rc = 0
        cdef int sync = self.sync_default
        key = self.ekey(key)
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            vview = get_bytes(value, &vb, &v, &vlen, "value")
            try:
                if klen > MAX_KEY_LEN:
                    raise key_too_long(k, klen)
                if vlen > MAX_VALUE_LEN:
                    raise ValueError(f"value is {vlen} bytes; the limit is {MAX_VALUE_LEN}")
                # Always without the GIL: a writer may wait for the index
                # write lock, and a reader holding the read lock may need the
                # GIL to finish.
                with nogil:
                    rc = self._put(k, klen, v, vlen, sync, expire_ms)
            finally:
                if vview:
                    PyBuffer_Release(&vb)
        finally:
            if kview:
                PyBuffer_Release(&kb)
        if rc != 0:
            raise_status(rc, "put", self.pool_path)

    def __setitem__(self, key, value):
        self.put(key, value)

    def _expire_at(self, ttl):
        """The absolute expire_ms `ttl` seconds from now; 0 when ttl <= 0."""
        cdef double t = float(ttl)
        cdef int64_t ms
        if t != t:
            raise ValueError("ttl must be a number of seconds, not NaN")
        if t <= 0:
            return 0
        if t > 1e12:
            raise ValueError(f"ttl of {ttl!r} seconds is too large")
        ms = <int64_t>(t * 1000.0)
        if ms < 1:
            ms = 1                                # a positive ttl never means "no expiry"
        return self.now_ms() + <uint64_t>ms

    def _set_expiry(self, key, uint64_t expire_ms, int cond=0):
        """Give key the absolute expiry expire_ms (0: none), logged as one
        record naming its current bytes (no value copy).  cond: 0 always,
        1 NX (only without an expiry), 2 XX (only with one), 3 GT (later
        than the current; none counts as infinite), 4 LT.  An expire_ms in
        the past deletes the key.  True when it changed (or deleted) the key."""
        cdef Py_buffer kb
        cdef const char *k
        cdef Py_ssize_t klen
        cdef int kview, rc = 0, found = 0, existed = 0
        cdef int sync = self.sync_default
        cdef LogRecord rec
        cdef Ref cur
        cdef uint64_t old
        key = self.ekey(key)
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            rc = self.enter()
            if rc == 0:
                if klen <= MAX_KEY_LEN:
                    with nogil:
                        found = self.stage_expiry(k, <uint32_t>klen, expire_ms, &rec, &cur)
                        if found > 0:
                            old = cur.expire_ms
                            if (cond == 1 and old != 0) or (cond == 2 and old == 0) or \
                                    (cond == 3 and (old == 0 or expire_ms <= old)) or \
                                    (cond == 4 and old != 0 and expire_ms >= old) or \
                                    (expire_ms == 0 and old == 0):
                                self.unstage(&rec, 1)
                                found = 0
                        if found > 0 and expire_ms != 0 and expire_ms <= self.now_ms():
                            self.unstage(&rec, 1)
                            rc = self.stage_delete(k, <uint32_t>klen, &rec)
                        if found > 0 and rc == 0:
                            rc = self.apply_records_ex(&rec, 1, sync, &existed, NULL, &cur)
                            found = existed
                self.leave()
        finally:
            if kview:
                PyBuffer_Release(&kb)
        if rc == 0 and found < 0:
            rc = found
        if rc != 0:
            raise_status(rc, "expire", self.pool_path)
        return found > 0

    def expire(self, key, seconds):
        """Make key expire `seconds` (a float) from now; seconds <= 0
        deletes it.  True when the key exists (and now has that expiry)."""
        cdef uint64_t at = self._expire_at(seconds)
        if at == 0:
            return self.delete(key)
        return self._set_expiry(key, at)

    def persist(self, key):
        """Remove key's expiry.  True when it had one."""
        return self._set_expiry(key, 0)

    def expire_at_ms(self, key):
        """Key's absolute expiry in ms since the Unix epoch, 0 when it has
        none; KeyError when the key does not exist (or has expired)."""
        cdef Ref ref
        if not self.lookup_key(key, "ttl", &ref):
            raise KeyError(key)
        return ref.expire_ms

    def ttl(self, key):
        """Seconds until key expires (a float), None when it has no expiry;
        KeyError when the key does not exist."""
        cdef uint64_t at = self.expire_at_ms(key)
        cdef uint64_t now
        if at == 0:
            return None
        now = self.now_ms()
        return (at - now) / 1000.0 if at > now else 0.0

    cdef object _get(self, object key, object default, bint raise_missing):
        cdef Py_buffer kb
        cdef const char *k
        cdef Py_ssize_t klen
        cdef int kview, rc, found = 0
        cdef Ref ref
        cdef bytes out = None
        cdef object given = key
        key = self.ekey(key)
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            rc = self.enter()
            if rc != 0:
                raise_status(rc, "get", self.pool_path)
            try:
                if klen <= MAX_KEY_LEN:
                    found, out = self.read_bytes(k, <uint32_t>klen, &ref)
            finally:
                self.leave()
        finally:
            if kview:
                PyBuffer_Release(&kb)
        if found < 0:
            self.read_failed(found, "get", bytes(key))
        if not found:
            if raise_missing:
                raise KeyError(given)
            return default
        return out

    cdef read_failed(self, int found, str what, bytes key):
        """Raise for read_value's negative verdict: a damaged value (the pool
        file) or a damaged tree page (the index file)."""
        if found == ST_CORRUPT:
            raise_status(ST_VALUE_DAMAGED, f"{what}: the value of key {key[:64]!r}", self.pool_path)
        raise_status(found, what, self.tree_path)

    cdef tuple read_bytes(self, const char *k, uint32_t klen, Ref *ref):
        """(found, value) for one key (inside enter/leave): read_value's
        verdict and, when 1, a copy of the verified bytes.  A small value is
        copied under the index read lock; a large one is pinned and copied
        after it, without the GIL.  *ref: the reference it read."""
        cdef int found
        cdef bytes out = None
        cdef char *dst
        read_lock_gil(&self.index_lock)
        try:
            found = self.read_value_locked(k, klen, ref, BIG_COPY)
            if found > 0 and ref.vlen < BIG_COPY:
                out = PyBytes_FromStringAndSize(self.pool.base + ref.voff, <Py_ssize_t>ref.vlen)
        finally:
            pthread_rwlock_unlock(&self.index_lock)
        if found > 0 and ref.vlen >= BIG_COPY:
            try:
                out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>ref.vlen)
                dst = PyBytes_AS_STRING(out)
                with nogil:
                    memcpy(dst, self.pool.base + ref.voff, ref.vlen)
            finally:
                self.pool.pin(ref.voff, ref.vlen, -1)
        return found, out

    def get(self, key, default=None):
        """The value stored under key (bytes), or default."""
        return self._get(key, default, False)

    def __getitem__(self, key):
        return self._get(key, None, True)

    def __contains__(self, key):
        cdef Ref ref
        return self.lookup_key(key, "contains", &ref) > 0

    cdef int lookup_key(self, object key, str what, Ref *out) except -1:
        """1 (and *out) when the live key exists, 0 when not; raises for a
        closed handle or a damaged tree page."""
        cdef Py_buffer kb
        cdef const char *k
        cdef Py_ssize_t klen
        cdef int kview, rc, found = 0
        key = self.ekey(key)
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            rc = self.enter()
            if rc != 0:
                raise_status(rc, what, self.pool_path)
            if klen <= MAX_KEY_LEN:
                read_lock_gil(&self.index_lock)
                found = self.lookup_locked(k, <uint32_t>klen, out)
                pthread_rwlock_unlock(&self.index_lock)
            self.leave()
        finally:
            if kview:
                PyBuffer_Release(&kb)
        if found < 0:
            raise_status(found, what, self.tree_path)
        return found

    cdef int _delete(self, const char *k, Py_ssize_t klen, int sync, int *existed) noexcept nogil:
        cdef LogRecord rec
        cdef Ref ref
        cdef int rc
        existed[0] = 0
        if self.readonly:
            return ST_READONLY
        rc = self.enter()
        if rc != 0:
            return rc
        rc = self.lookup(k, <uint32_t>klen, &ref)
        if rc > 0:
            rc = self.stage_delete(k, <uint32_t>klen, &rec)
            if rc == 0:
                rc = self.apply_records(&rec, 1, sync, existed, NULL)
        self.leave()
        return rc

    def delete(self, key):
        """Remove key.  Returns True if it existed."""
        cdef Py_buffer kb
        cdef const char *k
        cdef Py_ssize_t klen
        cdef int kview, rc = 0, existed = 0
        cdef int sync = self.sync_default
        key = self.ekey(key)
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            if klen <= MAX_KEY_LEN:
                with nogil:
                    rc = self._delete(k, klen, sync, &existed)
            else:
                rc = self.enter()
                if rc == 0:
                    self.leave()
        finally:
            if kview:
                PyBuffer_Release(&kb)
        if rc != 0:
            raise_status(rc, "delete", self.pool_path)
        return existed != 0

    def __delitem__(self, key):
        if not self.delete(key):
            raise KeyError(key)

    # -------------------------------------------------------------- bulk calls
    cdef int stage_many(self, Py_ssize_t n, const char **ks, const uint32_t *kl,
                        const char **vs, const uint64_t *vl, LogRecord *recs) noexcept nogil:
        """Stage n puts (vs != NULL) or deletes: the bulk calls' core.  Small
        items are packed into groups of up to BULK_GROUP bytes, each group
        one reservation and one write into the pool; an item larger than that
        is staged alone, as put() stages it.  Each record is pinned like a
        stage_put; on failure nothing stays pinned."""
        cdef Py_ssize_t i = 0, j, t, done = 0
        cdef uint64_t total, sz, pad, off = 0, pos, lo, ln
        cdef char *buf = <char *>malloc(BULK_GROUP)
        cdef char *dst
        cdef int rc = 0
        if buf == NULL:
            return -ENOMEM
        while i < n and rc == 0:
            sz = kl[i] + (vl[i] if vs != NULL else 0)
            if sz > BULK_GROUP:
                if vs != NULL:
                    rc = self.stage_put(ks[i], kl[i], vs[i], vl[i], &recs[i])
                else:
                    rc = self.stage_delete(ks[i], kl[i], &recs[i])
                if rc == 0:
                    i += 1
                    done = i
                continue
            total = 0
            j = i
            while j < n:
                sz = kl[j] + (vl[j] if vs != NULL else 0)
                pad = (sz + 7) & ~(<uint64_t>7)
                if sz > BULK_GROUP or total + pad > BULK_GROUP:
                    break
                total += pad
                j += 1
            pos = 0
            for t in range(i, j):
                memcpy(buf + pos, ks[t], kl[t])
                sz = kl[t]
                if vs != NULL:
                    memcpy(buf + pos + kl[t], vs[t], vl[t])
                    sz += vl[t]
                pad = (sz + 7) & ~(<uint64_t>7)
                memset(buf + pos + sz, 0, pad - sz)
                pos += pad
            rc = self.reserve_data(total, &off)
            if rc != 0:
                break
            rc = self.pool.write_at(off, buf, total)
            if rc == 0:
                self.barriers.persist_range(self.pool.base + off, total)
                pos = 0
                for t in range(i, j):
                    dst = self.pool.base + off + pos
                    memset(&recs[t], 0, sizeof(LogRecord))
                    recs[t].klen = <uint16_t>kl[t]
                    recs[t].koff = off + pos
                    sz = kl[t]
                    if vs != NULL:
                        recs[t].type = REC_PUT
                        recs[t].voff = off + pos + kl[t]
                        recs[t].vlen = vl[t]
                        recs[t].vcrc = crc32c_buf(dst + kl[t], vl[t])
                        sz += vl[t]
                    else:
                        recs[t].type = REC_DEL
                    recs[t].crc = key_crc_state(dst, kl[t])
                    rec_span(&recs[t], &lo, &ln)
                    self.pool.pin(lo, ln, 1)
                    pos += (sz + 7) & ~(<uint64_t>7)
                done = j
            self.pool.pin(off, total, -1)           # the group's pin; each record holds its own
            i = j
        free(buf)
        if rc != 0:
            self.unstage(recs, <int>done)
        return rc

    cdef _write_many(self, list keys, list values, str what, uint64_t expire_ms=0):
        """Stage and append len(keys) puts (values given) or deletes as one
        all-or-nothing batch; durable on return when the database syncs."""
        cdef Py_ssize_t n = len(keys), i
        cdef const char **ks = NULL
        cdef const char **vs = NULL
        cdef uint32_t *kl = NULL
        cdef uint64_t *vl = NULL
        cdef LogRecord *recs = NULL
        cdef int rc = 0, existed = 0
        cdef int sync = self.sync_default
        cdef bint puts = values is not None
        cdef bytes b
        if n > 0x7FFFFFFF:
            raise ValueError(f"{what}: {n} items in one batch; the limit is 2**31 - 1")
        try:
            ks = <const char **>malloc((n + 1) * sizeof(char *))
            kl = <uint32_t *>malloc((n + 1) * sizeof(uint32_t))
            recs = <LogRecord *>malloc((n + 1) * sizeof(LogRecord))
            if puts:
                vs = <const char **>malloc((n + 1) * sizeof(char *))
                vl = <uint64_t *>malloc((n + 1) * sizeof(uint64_t))
            if ks == NULL or kl == NULL or recs == NULL or (puts and (vs == NULL or vl == NULL)):
                raise MemoryError()
            for i in range(n):
                b = <bytes>keys[i]
                if PyBytes_GET_SIZE(b) > MAX_KEY_LEN:
                    raise key_too_long(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
                ks[i] = PyBytes_AS_STRING(b)
                kl[i] = <uint32_t>PyBytes_GET_SIZE(b)
                if puts:
                    b = <bytes>values[i]
                    if PyBytes_GET_SIZE(b) > MAX_VALUE_LEN:
                        raise ValueError(f"value is {PyBytes_GET_SIZE(b)} bytes; the limit is "
                                         f"{MAX_VALUE_LEN}")
                    vs[i] = PyBytes_AS_STRING(b)
                    vl[i] = <uint64_t>PyBytes_GET_SIZE(b)
            rc = self.enter()
            if rc == 0:
                if n > 0:
                    with nogil:
                        rc = self.stage_many(n, ks, kl, vs, vl, recs)
                        if rc == 0:
                            if expire_ms:
                                for i in range(n):
                                    recs[i].expire_ms = expire_ms
                            rc = self.apply_records(recs, <int>n, sync, &existed, NULL)
                self.leave()
        finally:
            free(ks)
            free(kl)
            free(vs)
            free(vl)
            free(recs)
        if rc != 0:
            raise_status(rc, what, self.pool_path)

    def put_many(self, items, *, ttl=None):
        """Store every (key, value) of items -- a mapping, or an iterable of
        pairs -- as one all-or-nothing batch, durable on return (sync=True).
        A key given twice keeps its last value.  Keys and values are copied
        into the pool in groups, one write each, by C code.  ttl: as for
        put(), the same for every key (ttl <= 0 deletes them all)."""
        cdef list keys = []
        cdef list values = []
        cdef uint64_t at = 0
        if hasattr(items, "keys"):
            for k in items.keys():
                keys.append(self.skey(k))
                values.append(as_key(items[k], "value"))
        else:
            for k, v in items:
                keys.append(self.skey(k))
                values.append(as_key(v, "value"))
        if ttl is not None:
            at = self._expire_at(ttl)
            if at == 0:                           # ttl <= 0: as put(), a delete
                self._write_many(keys, None, "put_many")
                return
        self._write_many(keys, values, "put_many", at)

    def delete_many(self, keys):
        """Remove every key of keys (absent ones are fine) as one
        all-or-nothing batch, durable on return (sync=True)."""
        self._write_many([self.skey(k) for k in keys], None, "delete_many")

    def get_many(self, keys):
        """[value or None for each key], in the order given.  Each value is
        checked like get()'s.  The lookups run under the index read lock in
        slices of GET_SLICE keys, so a long call never holds writers back for
        long; it is not a snapshot (use db.snapshot() for one consistent view)."""
        cdef list ks = [self.skey(k) for k in keys]
        cdef Py_ssize_t n = len(ks), i = 0, end
        cdef list out = [None] * n
        cdef int rc, found = 0
        cdef bytes k
        cdef Ref ref
        rc = self.enter()
        if rc != 0:
            raise_status(rc, "get_many", self.pool_path)
        try:
            while i < n and found >= 0:
                end = i + GET_SLICE if i + GET_SLICE < n else n
                read_lock_gil(&self.index_lock)
                try:
                    while i < end:
                        k = <bytes>ks[i]
                        if PyBytes_GET_SIZE(k) <= MAX_KEY_LEN:
                            found = self.read_value_locked(PyBytes_AS_STRING(k),
                                                           <uint32_t>PyBytes_GET_SIZE(k), &ref, 0)
                            if found < 0:
                                break
                            if found:
                                out[i] = PyBytes_FromStringAndSize(self.pool.base + ref.voff,
                                                                   <Py_ssize_t>ref.vlen)
                        i += 1
                finally:
                    pthread_rwlock_unlock(&self.index_lock)
        finally:
            self.leave()
        if found < 0:
            self.read_failed(found, "get_many", ks[i])
        return out

    # -------------------------------------------------------------- the mapping
    cdef int _remove_if(self, bytes key, const Ref *expect) except? -1000000:
        """Delete key if it still names exactly *expect: 1 done, 0 it changed."""
        cdef LogRecord rec
        cdef int rc, existed = 0
        cdef int sync = self.sync_default
        cdef const char *k = PyBytes_AS_STRING(key)
        cdef uint32_t klen = <uint32_t>PyBytes_GET_SIZE(key)
        rc = self.enter()
        if rc == 0:
            with nogil:
                rc = self.stage_delete(k, klen, &rec)
                if rc == 0:
                    rc = self.apply_records_ex(&rec, 1, sync, &existed, NULL, expect)
            self.leave()
        if rc < 0:
            raise_status(rc, "pop", self.pool_path)
        return existed

    def pop(self, key, *default):
        """Remove key and return its value; default (if given) when absent,
        else KeyError.  Atomic: the value returned is the one the delete
        removed, whatever other threads write meanwhile."""
        cdef bytes k = self.skey(key)
        cdef Ref ref
        cdef int rc, found
        cdef bytes v
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        while True:
            found = 0
            if PyBytes_GET_SIZE(k) <= MAX_KEY_LEN:
                rc = self.enter()
                if rc != 0:
                    raise_status(rc, "pop", self.pool_path)
                try:
                    found, v = self.read_bytes(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k),
                                               &ref)
                finally:
                    self.leave()
            if found < 0:
                self.read_failed(found, "pop", k)
            if not found:
                if default:
                    return default[0]
                raise KeyError(key)
            if self._remove_if(k, &ref):
                return v
            # another writer changed the key between the read and the delete: again

    def popitem(self):
        """Remove and return the (key, value) pair of the smallest key;
        KeyError when the database is empty."""
        cdef object missing = object()
        while True:
            for k in self._cursor(0, None, None, None, False, 1):
                break
            else:
                raise KeyError("popitem(): the database is empty")
            v = self.pop(k, missing)
            if v is not missing:
                return k, v

    def setdefault(self, key, default=None):
        """The value of key; when absent, store default and return it.
        Atomic: two threads racing on an absent key both get the one value
        that was stored."""
        cdef bytes k = self.skey(key)
        cdef bytes dv
        cdef Ref absent
        cdef LogRecord rec
        cdef int rc, existed
        cdef int sync = self.sync_default
        cdef const char *kp
        cdef const char *vp
        cdef uint32_t klen
        cdef uint64_t vlen
        absent.voff = TOMB
        while True:
            v = self.get(k)
            if v is not None:
                return v
            if default is None:
                raise TypeError("setdefault: the key is absent and default is None; pastedb "
                                "stores bytes")
            dv = as_key(default, "value")
            if PyBytes_GET_SIZE(k) > MAX_KEY_LEN:
                raise key_too_long(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))
            if PyBytes_GET_SIZE(dv) > MAX_VALUE_LEN:
                raise ValueError(f"value is {PyBytes_GET_SIZE(dv)} bytes; the limit is "
                                 f"{MAX_VALUE_LEN}")
            existed = 0
            kp = PyBytes_AS_STRING(k)
            klen = <uint32_t>PyBytes_GET_SIZE(k)
            vp = PyBytes_AS_STRING(dv)
            vlen = <uint64_t>PyBytes_GET_SIZE(dv)
            rc = self.enter()
            if rc == 0:
                with nogil:
                    rc = self.stage_put(kp, klen, vp, vlen, &rec)
                    if rc == 0:
                        rc = self.apply_records_ex(&rec, 1, sync, &existed, NULL, &absent)
                self.leave()
            if rc < 0:
                raise_status(rc, "setdefault", self.pool_path)
            if existed:
                return dv
            # another writer stored the key meanwhile: read what it stored

    def update(self, other=(), **kwargs):
        """Store every pair of other (a mapping or pairs) and of kwargs as one
        all-or-nothing batch (put_many)."""
        if kwargs:
            raise TypeError("update: keyword arguments are str keys; pastedb keys are bytes")
        self.put_many(other)

    def clear(self):
        """Remove every key (of database 0; the other databases keep theirs),
        atomically: one batch of deletes listed and
        appended under one hold of the log lock (a concurrent write lands
        wholly before or wholly after it), each naming the key's own bytes,
        so it needs no new space.  Durable on return (sync=True); the space
        comes back through reclamation.  O(keys): writers wait meanwhile."""
        self._clear_db(0 if self.keyspaces else -1)

    def _clear_db(self, int dbno):
        """clear() of database dbno (-1: every database, FLUSHALL)."""
        cdef MergeIter it = MergeIter(self, False)
        cdef int rc = self.enter()
        cdef int sync = self.sync_default
        if rc == 0:
            with nogil:
                rc = self.clear_all(it, sync, dbno)
            self.leave()
        if rc != 0:
            raise_status(rc, "clear", self.pool_path)

    def __reversed__(self):
        return self._cursor(0, None, None, None, True, None)

    def __eq__(self, other):
        if other is self:
            return True
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other):
            return False
        missing = object()
        for k, v in self.items():
            if other.get(k, missing) != v:
                return False
        return True

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __len__(self):
        return self._len_db(0)                    # the handle is database 0

    def __iter__(self):
        return self._cursor(0, None, None, None, False)

    def keys(self, start=None, stop=None, *, prefix=None, reverse=False, limit=None):
        """Keys in ascending byte order over [start, stop), or those starting
        with prefix; reverse=True walks the range descending; at most limit
        of them (None: all)."""
        return self._cursor(0, start, stop, prefix, reverse, limit)

    def values(self, start=None, stop=None, *, prefix=None, reverse=False, limit=None):
        """Values in key order; arguments as for keys()."""
        return self._cursor(1, start, stop, prefix, reverse, limit)

    def items(self, start=None, stop=None, *, prefix=None, reverse=False, limit=None):
        """(key, value) pairs in key order; arguments as for keys()."""
        return self._cursor(2, start, stop, prefix, reverse, limit)

    def _cursor(self, int what, start, stop, prefix, reverse, limit=None, int dbno=0):
        """A Cursor over database dbno's keys in [start, stop) or with prefix
        (user keys; the stored range is the database's own, format.pxd's
        keyspace); dbno -1: every stored key as it is stored (backup)."""
        cdef int strip = 0
        if prefix is not None:
            if start is not None or stop is not None:
                raise ValueError("give either prefix or start/stop, not both")
            start = as_key(prefix, "prefix")
            stop = successor(start)               # None: no bound but the database's
        else:
            start = None if start is None else as_key(start, "start")
            stop = None if stop is None else as_key(stop, "stop")
        if limit is None:
            limit = -1
        elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        if dbno >= 0 and self.keyspaces:
            # The user's bounds in stored form stay inside the database's range.
            lo, hi = db_bounds(dbno)
            start = lo if start is None else bytes(self.db_key(start, dbno))
            stop = hi if stop is None else bytes(self.db_key(stop, dbno))
            strip = 2 if dbno else 1
        return Cursor(self, what, start, stop, bool(reverse), limit, strip,
                      dbno < 0 and self.keyspaces)

    def _items_with_expiry(self, start=None, stop=None, *, prefix=None, bint raw=False):
        """(key, value, expire_ms) in key order (expire_ms 0: none); arguments
        as for items() (dump uses it).  raw: every database's keys in their
        stored form (StoredKey: a put takes them as they are; backup)."""
        return self._cursor(3, start, stop, prefix, False, None, -1 if raw else 0)

    # ---------------------------------------------------------- keyspace
    cdef object ekey(self, object key):
        """The stored form of database 0's key `key` (format.pxd's keyspace):
        the key itself unless it starts with 0xFF; a StoredKey is already
        stored and stays as it is."""
        if PyBytes_CheckExact(key):
            if PyBytes_GET_SIZE(key) == 0 or not self.keyspaces or \
                    <unsigned char>PyBytes_AS_STRING(key)[0] != KEY_ESC:
                return key
        elif type(key) is StoredKey:
            return key
        return self.db_key(key, 0)

    cdef bytes skey(self, object key):
        return <bytes>self.ekey(as_key(key, "key"))

    cdef object db_key(self, object key, int dbno):
        """User key `key` of database dbno in its stored form (a StoredKey
        when a prefix is added)."""
        cdef Py_buffer kb
        cdef const char *k
        cdef Py_ssize_t klen
        cdef int kview
        cdef bytes out
        cdef char *o
        if type(key) is StoredKey:
            return key
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            if not self.keyspaces:
                if dbno != 0:
                    raise Error(f"{self.path} has one keyspace (it holds keys starting with byte "
                                f"0xFF from before numbered databases): no database {dbno}")
                return key
            if dbno == 0 and (klen == 0 or <unsigned char>k[0] != KEY_ESC):
                return key
            out = PyBytes_FromStringAndSize(NULL, klen + 2)
            o = PyBytes_AS_STRING(out)
            o[0] = <char>KEY_ESC
            o[1] = <char>dbno
            memcpy(o + 2, k, <size_t>klen)
            return StoredKey(out)
        finally:
            if kview:
                PyBuffer_Release(&kb)

    def _db_key(self, key, int dbno):
        """Database views: dbno's key in its stored form."""
        self._check_dbno(dbno)
        return self.db_key(key, dbno)

    def _check_dbno(self, int dbno):
        cdef int rc
        if not 0 <= dbno < MAX_DATABASES:
            raise ValueError(f"database number {dbno} out of range (0..{MAX_DATABASES - 1})")
        if dbno and not self.keyspaces and self.readonly:
            rc = self.enter()                     # a reader: the writer may have moved to 3
            if rc != 0:
                raise_status(rc, "database", self.pool_path)
            self.leave()
        if dbno and not self.keyspaces:
            raise Error(f"{self.path} has one keyspace (it holds keys starting with byte 0xFF "
                        f"from before numbered databases): no database {dbno}")

    def _len_db(self, int dbno):
        """Live keys of database dbno."""
        cdef int64_t keys = 0, live = 0
        self._check_dbno(dbno)
        cdef int rc = self.enter()
        if rc != 0:
            raise_status(rc, "len", self.pool_path)
        try:
            self._ro_counts()
        except BaseException:
            self.leave()
            raise
        with nogil:
            rc = self.count_live(dbno, &keys, &live)
        self.leave()
        if rc != 0:
            raise_status(rc, "len", self.tree_path)
        return keys

    def _keyspace(self):
        """{database: (keys, keys with an expiry)} for every non-empty
        database (the server's INFO keyspace), counted in one pass (the
        pending table, the expiry map) under one index read-lock hold."""
        cdef int64_t keys[256]
        cdef int64_t vol[256]
        cdef int rc = self.enter()
        if rc != 0:
            raise_status(rc, "stats", self.pool_path)
        try:
            self._ro_counts()
            with nogil:
                rc = self.count_all_dbs(keys, vol)
        finally:
            self.leave()
        if rc != 0:
            raise_status(rc, "stats", self.tree_path)
        return {d: (keys[d], vol[d]) for d in range(MAX_DATABASES) if keys[d] > 0}

    def database(self, int n):
        """Database n (0..255) of this file as a mapping of its own: the
        same API for its keys (get, put with ttl, delete, iteration, len,
        batch, expiry), the keys of the others invisible to it.  The
        server's SELECT n is the same keyspace.  The handle itself is
        database 0."""
        self._check_dbno(n)
        from pastedb.databases import Database
        return Database(self, n)

    def batch(self):
        """An all-or-nothing group of puts and deletes::

            with db.batch() as b:
                b.put(b"k1", b"v1")
                b.delete(b"k2")

        Applied and made durable when the block exits; discarded if it raises.
        """
        if self.readonly:
            raise_status(ST_READONLY, "batch", self.pool_path)
        cdef int rc = self.enter()
        if rc != 0:
            raise_status(rc, "batch", self.pool_path)
        self.leave()
        return Batch(self)

    def sync(self):
        """Make every earlier write durable (a barrier for sync=False writes)."""
        if self.readonly:
            raise_status(ST_READONLY, "sync", self.pool_path)
        cdef int rc = self.enter()
        if rc == 0:
            with nogil:
                rc = self.sync_all()
            self.leave()
        if rc != 0:
            raise_status(rc, "sync", self.pool_path)

    def checkpoint(self):
        """Move everything written so far into the persistent index and
        advance the log head past it, so the next open replays nothing.  The
        indexer thread does this by itself every CHECKPOINT_EVERY records or
        CHECKPOINT_INTERVAL seconds; close() does it once more."""
        if self.readonly:
            raise_status(ST_READONLY, "checkpoint", self.pool_path)
        cdef int rc = self.enter()
        if rc != 0:
            raise_status(rc, "checkpoint", self.pool_path)
        try:
            with nogil:
                rc = self.checkpoint_index()
        finally:
            self.leave()
        if rc != 0:
            raise_status(rc, "checkpoint", self.pool_path)

    def _tree_bytes(self):
        """Key + value bytes of the entries in the tree's last commit."""
        cdef TreeCursor c = self.tree.cursor(0)
        cdef Ref ref
        cdef int64_t total = 0
        cdef int rc
        with nogil:
            rc = c.first()
            while rc == 1:
                c.ref(&ref)
                total += <int64_t>(ref.klen + ref.vlen)
                rc = c.next()
        c.close()
        if rc < 0:
            raise_status(rc, "open", self.tree_path)
        return total

    cdef int checkpoint_index(self) noexcept nogil:
        cdef int rc
        cdef int64_t t0 = mono_ns(), dt
        pthread_mutex_lock(&self.tree_lock)
        rc = self.checkpoint_locked()
        dt = mono_ns() - t0
        if rc == 0:
            self.ckpt_count += 1
            self.ckpt_ns_total += dt
            if dt > self.ckpt_ns_max:
                self.ckpt_ns_max = dt
        pthread_mutex_unlock(&self.tree_lock)
        return rc

    cdef int checkpoint_locked(self) noexcept nogil:
        # Order (each step durable before the next):
        #   1. cut: L = the last logged lsn; the head-to-be is the chunk
        #      holding record L + 1;
        #   2. barrier: every record <= L (and the bytes it names) durable;
        #   3. pending entries go into the tree's write txn (batches under the
        #      index read lock; an entry a writer replaced meanwhile goes in
        #      its newer form, and records up to the newest lsn applied are
        #      made durable too), which commits with applied_lsn = L;
        #   4. the superblock's other slot names the new head (barrier).
        #   5. applied entries leave the pending table (write lock), unless
        #      replaced since.
        # A crash before 3 completes: old tree, old head.  Between 3 and 4:
        # the new tree, the old head; replay skips records <= applied_lsn.
        cdef uint64_t L, head_off, head_lsn, mark, maxlsn = 0
        cdef Applied *ents = NULL
        cdef Applied *grown
        cdef size_t nents = 0, cap = 0, i, j, lo
        cdef Node *node
        cdef const Ref *ref
        cdef Ref cur
        cdef Applied *e
        cdef int rc = 0, n
        if self.log.failed:
            return ST_FAILED
        if self.tree.failed:
            return ST_FAILED
        if not self.seg_ready:
            # Once per open (and after an aborted commit): count the tree's
            # bytes per segment; from then on tree_apply keeps the counts.
            self.seg_scan()
        self.log.lock_log()
        if self.log.next_lsn - 1 == self.cut_lsn and self.index.count == 0:
            self.log.unlock_log()
            return 0                              # nothing logged since the last one
        if self.log.slot > 0 and not self.log.failed:
            # Roll to a fresh chunk (a LINK in this slot), so the new head is
            # past every record logged so far and the free pass can release
            # all it names.  The rest of the old chunk is released with it.
            rc = self.log.link_new_chunk()
            if rc == -ENOSPC or rc == -EDQUOT:
                # No chunk to be had (a full disk; it fails before anything
                # is written): checkpoint without the roll.  The head stays in
                # this chunk, so the free pass keeps what its records name --
                # and releases the rest, which is how a full disk gets room.
                rc = 0
            elif rc != 0:
                self.log.fail(rc)
                self.log.unlock_log()
                return rc
        L = self.log.next_lsn - 1
        head_off = self.log.chunk_off
        head_lsn = self.log.next_lsn - self.log.slot
        self.cut_bytes = self.logged_bytes
        self.log.unlock_log()
        pthread_mutex_lock(&self.pool.lock)
        mark = self.pool.alloc_tail
        pthread_mutex_unlock(&self.pool.lock)
        rc = self.log.commit(L)
        if rc != 0:
            return rc
        if not self.eager or not self.eager_synced:
            if not self.tree.in_txn:
                self.bound_readers()
                rc = self.tree.begin()
                if rc != 0:
                    return rc
            # Room for the whole table before the first hold (a realloc of
            # megabytes under the lock would stall the writers).
            cap = self.index.count + 1024
            ents = <Applied *>malloc(cap * sizeof(Applied))
            if ents == NULL:
                return -ENOMEM
            pthread_rwlock_rdlock(&self.index_lock)
            node = self.index.first()
            while node != NULL and rc == 0:
                # One batch under the read lock, applied outside it.
                lo = nents
                n = 0
                while node != NULL and n < APPLY_BATCH:
                    if nents == cap:
                        cap = cap * 2 if cap else 4096
                        grown = <Applied *>realloc(ents, cap * sizeof(Applied))
                        if grown == NULL:
                            rc = -ENOMEM
                            break
                        ents = grown
                    ref = self.index.node_ref(node)
                    e = &ents[nents]
                    e.key = self.pool.base + ref.koff
                    e.ref = ref[0]
                    nents += 1
                    n += 1
                    node = self.index.next(node)
                # Apply outside the lock.  An entry a writer replaces
                # meanwhile goes into the tree in the form collected here
                # (its lsn is made durable below) and stays pending in its
                # newer form.  Then resume after the batch's last key.
                pthread_rwlock_unlock(&self.index_lock)
                self.yield_to_writers()
                j = lo
                while rc == 0 and j < nents:
                    e = &ents[j]
                    if e.ref.lsn > maxlsn:
                        maxlsn = e.ref.lsn
                    rc = self.tree_apply(e.key, e.ref.klen, &e.ref)
                    j += 1
                pthread_rwlock_rdlock(&self.index_lock)
                if rc == 0 and node != NULL and nents > 0:
                    node = self.index.seek_gt(ents[nents - 1].key, ents[nents - 1].ref.klen)
            pthread_rwlock_unlock(&self.index_lock)
            if rc == 0 and maxlsn > L:
                rc = self.log.commit(maxlsn)      # the tree may name records after L
        if rc == 0 and not self.tree.in_txn:
            self.bound_readers()
            rc = self.tree.begin()
        if rc == 0:
            rc = self.tree.commit(L)
            if rc == 0:
                self.c_live = self.w_live
                memcpy(self.c_dbn, self.w_dbn, sizeof(self.c_dbn))
        if rc != 0:
            if self.tree.in_txn:
                self.tree.abort()
            self.w_live = self.c_live
            memcpy(self.w_dbn, self.c_dbn, sizeof(self.c_dbn))
            self.eager_synced = 0
            self.seg_ready = 0                    # the counts include the aborted changes
            free(ents)
            if self.tree.failed:
                self.log.fail(ST_FAILED)
            return rc
        self.cut_lsn = L
        rc = self.write_head(head_off, head_lsn, L, mark)
        if rc != 0:
            # The pool's dirty pages may be gone: acknowledge nothing more.
            self.log.lock_log()
            self.log.fail(rc)
            self.log.unlock_log()
            free(ents)
            return rc
        self.log.move_head(head_off, head_lsn)
        if self.eager:
            # Writers wait on tree_lock: the pending table holds exactly what
            # the commit covered.
            pthread_rwlock_wrlock(&self.index_lock)
            self.publish_tree()
            self.index.clear()
            pthread_rwlock_unlock(&self.index_lock)
            self.eager_synced = 1
        else:
            # The commit is published in the first write-lock hold (also the
            # grace period: no reader of the snapshot before it remains), the
            # applied entries leave in batches.
            pthread_rwlock_wrlock(&self.index_lock)
            self.publish_tree()
            pthread_rwlock_unlock(&self.index_lock)
            i = 0
            while i < nents:
                pthread_rwlock_wrlock(&self.index_lock)
                j = 0
                while i < nents and j < <size_t>APPLY_BATCH:
                    e = &ents[i]
                    if self.index.get(e.key, e.ref.klen, &cur) and cur.lsn == e.ref.lsn:
                        self.index.remove(e.key, e.ref.klen, NULL)
                    i += 1
                    j += 1
                pthread_rwlock_unlock(&self.index_lock)
                self.yield_to_writers()
        self.ckpt_applied += nents
        free(ents)
        if self.seg_ready:
            # Bytes this commit stopped naming died by a record up to the
            # newest one it applied -- past the cut when it collected entries
            # written after it (a reader between the two still needs them).
            self.free_pass(head_lsn, maxlsn if maxlsn > L else L)
        self.apply_quota()
        return 0

    cdef void yield_to_writers(self) noexcept nogil:
        cdef int spins = 0
        while pdb_load_sc(&self.idx_waiting) > 0 and spins < 100000:
            sched_yield()
            spins += 1

    cdef void apply_quota(self) noexcept nogil:
        """The pool's share of max_disk: what the index file leaves of it."""
        cdef uint64_t tree_bytes
        if self.max_disk == 0:
            return
        tree_bytes = self.tree.file_pages * PAGE_SIZE
        self.pool.set_max_size(self.max_disk - tree_bytes if self.max_disk > tree_bytes + SEG_SIZE
                               else SEG_SIZE)

    def set_max_disk(self, uint64_t nbytes):
        """A quota on the database's files (pool + index), the disk's
        analogue of Redis's maxmemory; 0 removes it.  Past it the database
        behaves as on a full disk: writes that need new space fail with
        OSError(ENOSPC), reads and deletes go on, deletes and reclamation make
        room.  A pool already bigger than the quota is not cut at once; it
        shrinks as space is reclaimed."""
        self.max_disk = nbytes
        if nbytes == 0:
            with nogil:
                self.pool.set_max_size(0)
        else:
            with nogil:
                self.apply_quota()

    cdef int write_head(self, uint64_t head_off, uint64_t head_lsn, uint64_t tree_lsn,
                        uint64_t mark) noexcept nogil:
        """The superblock's other slot names a new log head for the tree
        commit that covers tree_lsn; durable (barrier) when it returns 0."""
        cdef Superblock sb
        cdef int rc
        memset(&sb, 0, sizeof(Superblock))
        sb.seq = self.sb_seq + 1
        sb.log_head_off = head_off
        sb.log_head_size = CHUNK_SIZE
        sb.log_head_lsn = head_lsn
        sb.created_ns = self.created_ns
        sb.tree_lsn = tree_lsn
        sb.tree_live = <uint64_t>self.c_live
        sb.alloc_tail = mark
        rc = write_superblock(self.pool, self.barriers, &sb)
        if rc == 0:
            rc = self.barriers.barrier()
        if rc == 0:
            self.sb_seq = sb.seq
        return rc

    cdef int seg_scan(self) noexcept with gil:
        cdef TreeCursor c
        cdef Ref ref
        cdef int rc
        cdef uint64_t tail
        try:
            c = self.tree.cursor(1 if self.tree.in_txn else 0)
        except BaseException:
            return ST_CORRUPT
        with nogil:
            pthread_mutex_lock(&self.pool.lock)
            tail = self.pool.alloc_tail >> SEG_SHIFT
            pthread_mutex_unlock(&self.pool.lock)
            memset(self.pool.seg_live, 0, tail * sizeof(int64_t))
            rc = c.first()
            while rc == 1:
                c.ref(&ref)
                self.pool.add_live(ref.koff, ref.klen, 1)
                self.pool.add_live(ref.voff, ref.vlen, 1)
                rc = c.next()
        c.close()
        if rc < 0:
            return rc
        self.seg_ready = 1
        return 0

    cdef int seg_settled(self, uint64_t s) noexcept nogil:
        """Segment s is in ordinary use (Pool.settled): not free, not
        SEG_NOFREE, and not being filled (the current data extent, the log
        chunk being written, the chunk segment being carved).  Caller holds
        data_lock and the pool lock."""
        return self.pool.settled(s, self.data_seg(), self.log.chunk_off >> SEG_SHIFT)

    cdef inline uint64_t data_seg(self) noexcept nogil:
        """The segment the current data extent is filling (0: none; data_lock)."""
        return (self.data_end - 1) >> SEG_SHIFT if self.data_end else 0

    cdef void free_pass(self, uint64_t head_lsn, uint64_t dead_lsn) noexcept nogil:
        """Release every segment nothing can reach any more: no byte of it in
        the tree, none staged, no record from the log head on naming it, not
        being filled.  Runs after the checkpoint that moved the head to
        head_lsn is durable and published (readers of older commits are gone)."""
        cdef int64_t cut
        # Readers of other processes: after the new head is durable (so one
        # the scan misses reads that head).  A segment some reader's state
        # (at log position lsn) may still name is one that became free to
        # release at a checkpoint whose cut is beyond that lsn: it waits.
        # And at the published commit or a later one: a reader of an older
        # commit holds the deletes this one applied, whose keys may be here.
        cdef int64_t rd_txn
        cdef int64_t rd_lsn = self.bound_readers(&rd_txn)
        self.log.lock_log()                       # no record is appended meanwhile
        pthread_mutex_lock(&self.data_lock)       # nor a byte staged
        self.pool.free_unreachable(self.data_seg(), self.log.chunk_off >> SEG_SHIFT, head_lsn,
                                   dead_lsn, self.cur_snap.txn, rd_lsn, rd_txn)
        pthread_mutex_unlock(&self.data_lock)
        self.log.unlock_log()
        # Cut the free end off once it is worth a growth step back: the
        # space bound counts every byte of the file.
        cut = self.pool.truncate_free_tail(8 << 20 if self.pool.size < (256 << 20) else self.pool.size // 32)
        if cut > 0:
            self.truncated_bytes += <uint64_t>cut

    cdef int relocate(self, const char *key, uint32_t klen, const Ref *ref) noexcept nogil:
        """Copy a live value out of a sparse segment: an ordinary put of the
        same bytes, appended only if the key still names the old ones."""
        cdef LogRecord rec
        cdef Ref cur
        cdef int rc, existed = 0
        # Copy only while the key still names those bytes, under the read
        # lock: a segment is released only after a checkpoint publishes a
        # tree without it (write lock), so the bytes stay put meanwhile.
        pthread_rwlock_rdlock(&self.index_lock)
        rc = self.lookup_locked(key, klen, &cur)
        if rc <= 0 or cur.koff != ref.koff or cur.voff != ref.voff or cur.vlen != ref.vlen:
            pthread_rwlock_unlock(&self.index_lock)
            return rc if rc < 0 else 0
        rc = self.stage_copy(key, klen, self.pool.base + ref.voff, ref.vlen, &rec, 1)
        pthread_rwlock_unlock(&self.index_lock)
        if rc != 0:
            return rc
        rec.expire_ms = ref.expire_ms
        if rec.vcrc != ref.vcrc:
            self.unstage(&rec, 1)                 # damaged bytes stay where they are
            return ST_CORRUPT
        rc = self.apply_records_ex(&rec, 1, 0, &existed, NULL, ref)
        if rc == 0 and existed:
            self.relocated_keys += 1
            self.relocated_bytes += klen + ref.vlen
        return rc

    def _clean(self, double max_fill=0.5, bint pack=False):
        """The cleaner: relocate the live values of segments at most max_fill
        full (off the write path; writers go on).  The emptied segments are
        released by a later checkpoint's free pass.  pack=True also empties
        every segment above the size the live bytes need, so the file can be
        cut back (compact()).  Returns keys moved."""
        cdef Pool pool = self.pool
        cdef uint64_t s, tail, nvict = 0, before, top, keep, gain = 0, used
        cdef int64_t total = 0, total_live = 0
        cdef double goal, fill
        cdef int64_t limit = <int64_t>(max_fill * SEG_SIZE)
        cdef uint8_t *victim = NULL
        cdef TreeCursor c
        cdef Ref ref
        cdef const char *kp
        cdef uint32_t klen
        cdef int rc = 0, rc2
        cdef Applied *ents = NULL
        cdef Applied *grown
        cdef size_t nents = 0, cap = 0, i
        cdef Node *node
        cdef const Ref *pref
        if not self.seg_ready:
            return 0
        before = self.relocated_keys
        with nogil:
            pthread_mutex_lock(&self.data_lock)
            pthread_mutex_lock(&pool.lock)
            tail = pool.alloc_tail >> SEG_SHIFT
            victim = <uint8_t *>calloc(tail + 1, 1)
            top = tail
            if victim != NULL and pack:
                # Segments the live bytes need, plus those that cannot move
                # and a little slack: everything above goes.
                keep = 8
                for s in range(1, tail):
                    if pool.seg_flags[s] & SEG_NOFREE:
                        keep += 1
                    elif pool.seg_live[s] > 0:
                        total += pool.seg_live[s]
                keep += <uint64_t>(total // SEG_SIZE) + 1
                top = keep if keep < tail else tail
            if victim != NULL:
                for s in range(1, tail):
                    # A pinned segment (a server arena in use, staged bytes, a
                    # value being sent) is left alone: it cannot be freed yet.
                    if not self.seg_settled(s) or pdb_load32(&pool.seg_pins[s]) != 0:
                        continue
                    if pool.seg_live[s] > 0:
                        total_live += pool.seg_live[s]
                    if 0 < pool.seg_live[s] and (pool.seg_live[s] <= limit or s >= top):
                        victim[s] = 1
                        nvict += 1
                        gain += SEG_SIZE - <uint64_t>pool.seg_live[s]
                # Not enough: relocate denser segments too, sparsest first,
                # until the projected file meets the goal (every segment
                # between half and 90 % full would otherwise hold the file
                # at up to twice the live bytes).
                if not pack:
                    used = (tail - pool.free_segs) * SEG_SIZE
                    goal = CLEAN_GOAL * <double>total_live + CLEAN_GOAL_SLACK
                    fill = max_fill + 0.1
                    while fill < 0.91 and <double>(used - gain) > goal:
                        for s in range(1, tail):
                            if <double>(used - gain) <= goal:
                                break
                            if victim[s] or not self.seg_settled(s) or \
                                    pdb_load32(&pool.seg_pins[s]) != 0:
                                continue
                            if 0 < pool.seg_live[s] and pool.seg_live[s] <= <int64_t>(fill * SEG_SIZE):
                                victim[s] = 1
                                nvict += 1
                                gain += SEG_SIZE - <uint64_t>pool.seg_live[s]
                        fill += 0.1
            pthread_mutex_unlock(&pool.lock)
            pthread_mutex_unlock(&self.data_lock)
        if victim == NULL:
            raise MemoryError()
        try:
            if nvict == 0:
                return 0
            c = self.tree.cursor(0)
            with nogil:
                rc = c.first()
                while rc == 1:
                    c.ref(&ref)
                    if in_victim(victim, tail, &ref):
                        kp = c.key(&klen)
                        rc2 = self.relocate(kp, klen, &ref)
                        if rc2 == -ENOSPC or rc2 == -EDQUOT:
                            rc = 0                # no room to move into: stop here
                            break
                        if rc2 < 0 and rc2 != ST_CORRUPT:
                            rc = rc2
                            break
                    rc = c.next()
            c.close()
            if rc < 0:
                raise_status(rc, "clean", self.pool_path)
            # Pending entries in victim segments (written since the checkpoint).
            with nogil:
                pthread_rwlock_rdlock(&self.index_lock)
                node = self.index.first()
                while node != NULL:
                    pref = self.index.node_ref(node)
                    if pref.voff != TOMB and in_victim(victim, tail, pref):
                        if nents == cap:
                            cap = cap * 2 if cap else 256
                            grown = <Applied *>realloc(ents, cap * sizeof(Applied))
                            if grown == NULL:
                                break
                            ents = grown
                        ents[nents].key = self.pool.base + pref.koff
                        ents[nents].ref = pref[0]
                        nents += 1
                    node = self.index.next(node)
                pthread_rwlock_unlock(&self.index_lock)
                for i in range(nents):
                    rc = self.relocate(ents[i].key, ents[i].ref.klen, &ents[i].ref)
                    if rc == -ENOSPC or rc == -EDQUOT:
                        rc = 0
                        break
                    if rc < 0 and rc != ST_CORRUPT:
                        break
                    rc = 0
            free(ents)
            if rc < 0:
                raise_status(rc, "clean", self.pool_path)
            self.cleaner_runs += 1
            return self.relocated_keys - before
        finally:
            free(victim)

    def _segments(self):
        """Test hook: [(flags, live, lsn, pins)] for every segment below the
        allocation tail, and the head lsn."""
        cdef uint64_t s, tail = self.pool.alloc_tail >> SEG_SHIFT
        out = [(self.pool.seg_flags[s], self.pool.seg_live[s], self.pool.seg_lsn[s],
                self.pool.seg_pins[s]) for s in range(tail)]
        return out, self.log.head_lsn

    def compact(self):
        """Reclaim space now: checkpoint, relocate the live values of sparse
        segments (and of every segment above the size the live bytes need),
        checkpoint again (the emptied segments and the log behind the head
        become free and are reused by later writes), and cut free segments off
        the end of the file.  Segments named by records in the log head's own
        chunk are released by a later checkpoint.  The indexer reclaims by itself;
        this is for when the space is wanted back at once."""
        if self.readonly:
            raise_status(ST_READONLY, "compact", self.pool_path)
        cdef int rc = self.enter()
        cdef int64_t cut = 0
        cdef uint64_t freed
        cdef int rounds
        if rc != 0:
            raise_status(rc, "compact", self.pool_path)
        try:
            with nogil:
                rc = self.checkpoint_index()
                if rc == -ENOSPC or rc == -EDQUOT:
                    # A full disk: first give the file system the pool's
                    # free end (the index needs pages), then try again.
                    cut = self.pool.truncate_free_tail(0)
                    rc = self.checkpoint_index()
            if rc == 0:
                # New writes (the relocations too) start in the lowest free
                # segments: leave the current data extent and chunk segment.
                # (Not on a full disk: there a fresh segment may not be had.)
                with nogil:
                    if not self.pool.disk_full:
                        pthread_mutex_lock(&self.data_lock)
                        self.data_off = 0
                        self.data_end = 0
                        self.pool.leave_chunk_seg()
                        pthread_mutex_unlock(&self.data_lock)
                # On a full disk the relocations fit only into what the last
                # checkpoint released: round after round, each one's free
                # pass giving the next one room, while rounds make progress.
                rounds = 0
                while True:
                    freed = self.pool.freed_segs
                    moved = self._clean(0.5, True)
                    with nogil:
                        rc = self.checkpoint_index()
                    if rc == -ENOSPC or rc == -EDQUOT:
                        # The relocations' segments are released by the
                        # indexer's next checkpoint, once it gets room.
                        rc = 0
                        break
                    rounds += 1
                    if rc != 0 or not self.pool.disk_full or rounds >= 64 or \
                            (moved == 0 and self.pool.freed_segs == freed):
                        break
            if rc == 0:
                with nogil:
                    cut = self.pool.truncate_free_tail(0)
                if cut > 0:
                    self.truncated_bytes += <uint64_t>cut
        finally:
            self.leave()
        if rc != 0:
            raise_status(rc, "compact", self.pool_path)
        if cut < 0:
            raise_status(<int>cut, "compact", self.pool_path)

    cdef void auto_clean(self) noexcept with gil:
        try:
            self._clean()
        except BaseException as e:              # the cleaner is an optimisation
            log.warning("pastedb: the cleaner stopped: %s", e)

    cdef void indexer(self) noexcept nogil:
        cdef timespec deadline
        cdef int64_t last = mono_ns(), now, last_clean = 0, clean_gap = CLEAN_PERIOD_NS
        cdef uint64_t logged
        cdef int rc, due, over, cleaned = 0, more = 0
        pthread_mutex_lock(&self.idx_mutex)
        while not self.idx_stop:
            if not more:
                clock_gettime(CLOCK_REALTIME, &deadline)
                deadline.tv_nsec += 20000000
                if deadline.tv_nsec >= 1000000000:
                    deadline.tv_sec += 1
                    deadline.tv_nsec -= 1000000000
                pthread_cond_timedwait(&self.idx_cond, &self.idx_mutex, &deadline)
            more = 0
            if self.idx_stop:
                break
            if (self.active_expire or self.lazy_hits) and \
                    (self.exp_map.count or self.exp_heap.n) and not self.log.failed:
                # Active expiry: a bounded batch of DELs per round, through
                # the ordinary write path (writers are never held up by more
                # than one record's log-lock hold); a full batch means more
                # are due: the next round starts at once.
                pthread_mutex_unlock(&self.idx_mutex)
                self.lazy_hits = 0
                more = self.expire_pass(EXPIRE_BATCH) == EXPIRE_BATCH
                pthread_mutex_lock(&self.idx_mutex)
            now = mono_ns()
            logged = self.log.next_lsn - 1 - self.cut_lsn
            # Over the cleaning mark, anything logged (the cleaner's own
            # relocations included) is worth a checkpoint: its free pass is
            # what gives the space back.
            over = self.seg_ready and self.clean_at > 0 and \
                <double>self.pool.size > self.clean_at * <double>self.c_live + clean_slack
            due = logged >= self.ckpt_every or (
                (logged > 0 or self.index.count > 0) and now - last >= self.ckpt_interval_ns) or (
                self.ckpt_bytes > 0 and self.logged_bytes - self.cut_bytes >= self.ckpt_bytes) or (
                logged > 0 and (over or cleaned))
            if not due or self.log.failed:
                continue
            pthread_mutex_unlock(&self.idx_mutex)
            rc = self.checkpoint_index()
            if rc == -ENOSPC or rc == -EDQUOT:
                # No room for the index's new pages: give the file system
                # the pool's free end back, so the next try can commit (and
                # its free pass release what the deletes killed).
                self.pool.truncate_free_tail(0)
            cleaned = 0
            if rc == 0 and self.seg_ready and self.clean_at > 0 and \
                    now - last_clean >= clean_gap and \
                    <double>self.pool.size > self.clean_at * <double>self.c_live + clean_slack:
                # Much more file than data: move live values out of sparse
                # segments; the next checkpoints release them.  As often as
                # the pace of writes needs, but never more than a quarter of
                # the indexer's time.
                now = mono_ns()
                self.auto_clean()
                last_clean = mono_ns()
                clean_gap = 3 * (last_clean - now)
                if clean_gap < CLEAN_PERIOD_NS:
                    clean_gap = CLEAN_PERIOD_NS
                cleaned = 1
            pthread_mutex_lock(&self.idx_mutex)
            self.idx_error = rc
            last = mono_ns()
        pthread_mutex_unlock(&self.idx_mutex)

    def stats(self):
        """Counters and sizes: keys, live bytes, file bytes, space ratio, the
        persistence backend in use, barriers and commit groups."""
        cdef int rc = self.enter()
        if rc != 0:
            raise_status(rc, "stats", self.pool_path)
        cdef int64_t keys = 0, live = 0, expires = 0
        try:
            with nogil:
                rc = self.count_live(-1, &keys, &live)
                pthread_rwlock_rdlock(&self.index_lock)
                expires = self.count_volatile(self.now_ms(), -1)
                pthread_rwlock_unlock(&self.index_lock)
            if rc != 0:
                raise_status(rc, "stats", self.tree_path)
            try:
                tree_bytes = os.stat(self.tree_path).st_size
            except OSError:
                tree_bytes = 0
            file_bytes = self.pool.size + tree_bytes
            return {
                "path": self.path,
                "keys": keys,
                "expires": expires,
                "expired_keys": self.expired_keys,
                "live_bytes": live,
                "file_bytes": file_bytes,
                "pool_file_bytes": self.pool.size,
                "index_file_bytes": tree_bytes,
                "space_ratio": (file_bytes / live) if live else None,
                "index": "eager" if self.eager else "lazy",
                "index_pending": self.index.count,
                "index_keys": self.tree.count(),
                "index_applied_lsn": self.tree.applied_lsn(),
                "checkpoints": self.ckpt_count,
                "checkpoint_seconds": self.ckpt_ns_total / 1e9,
                "checkpoint_max_seconds": self.ckpt_ns_max / 1e9,
                "checkpoint_entries": self.ckpt_applied,
                "checkpoint_error": self.idx_error,
                "log_head_lsn": self.log.head_lsn,
                "space_reclaim": bool(self.seg_ready),
                "free_bytes": self.pool.free_segs * SEG_SIZE,
                "free_segments": self.pool.free_segs,
                "space_bound_bytes": int(SPACE_RATIO * live) + SPACE_ALLOWANCE,
                "disk_full": int(self.pool.disk_full),
                "max_disk": self.max_disk,
                "freed_segments": self.pool.freed_segs,
                "reused_segments": self.pool.reused_segs,
                "relocated_keys": self.relocated_keys,
                "relocated_bytes": self.relocated_bytes,
                "cleaner_runs": self.cleaner_runs,
                "truncated_bytes": self.truncated_bytes,
                "persist": mode_name(self.barriers.mode),
                "map_sync": bool(self.pool.map_sync),
                "crc32c": "sse4.2" if crc32c_is_hw() else "table",
                "sync": bool(self.sync_default),
                "barriers": self.barriers.barriers,
                "barrier_errors": self.barriers.barrier_errors,
                "commit_groups": self.log.groups,
                "snapshots": len(self.snapshots),
                "log_records": self.log.records,
                "log_next_lsn": self.log.next_lsn,
                "log_durable_lsn": self.log.durable_lsn,
                "log_chunks_allocated": self.log.chunks,
                "pool_growths": self.pool.growths,
                "pool_background_growths": self.pool.background_growths,
                "recovered_records": self.recovered_records,
                "recovery_note": self.recovery_note,
                "failed": bool(self.log.failed),
                "readonly": bool(self.readonly),
                "readers": len(self.readers.live_readers()) if self.readers is not None else 0,
                "reader_lsn": self.ro_lsn if self.readonly else None,
            }
        finally:
            self.leave()

    @property
    def path(self):
        """The database directory."""
        return self.path

    @property
    def closed(self):
        """True once close() has been called."""
        return pdb_load_sc(&self.closed) != 0

    def close(self):
        """Make everything durable and release the database.  Idempotent.
        Refuses (pastedb.Error) while a db.view() memoryview is still
        referenced: its bytes lie in the mapping close() unmaps."""
        if pdb_load_sc(&self.closed):
            return
        for snap in list(self.snapshots):
            snap.close()
        if self.views:
            gc.collect()                      # views only a reference cycle still holds
            if self.views:
                raise Error(f"close(): {self.views} value view(s) from db.view() are still "
                            f"referenced (a memoryview or a slice of one); release them first")
        self._shutdown(True)

    def snapshot(self):
        """``with db.snapshot() as s:`` a read-only view (get, [], in, len,
        keys/values/items, get_many, view) of the database exactly as it is
        now, whatever writes, deletes, checkpoints, compaction and expiry
        follow (pastedb/snapshot.py)."""
        from pastedb.snapshot import Snapshot
        return Snapshot(self)

    def _snapshot_opened(self, snap):
        self.snapshots.add(snap)

    def _snapshot_closed(self, snap):
        self.snapshots.discard(snap)

    def view(self, key):
        """``with db.view(key) as mv:`` a read-only memoryview of the value
        where it lies in the pool -- no copy.  Its checksum is verified
        first; the bytes stay pinned (never reclaimed or reused) until the
        block ends and every slice of mv is gone; mv itself raises
        ValueError once the block has ended.  KeyError when key is absent."""
        cdef bytes k = self.skey(key)
        cdef Ref ref
        cdef int rc, found = 0
        cdef ValueView v
        rc = self.enter()
        if rc != 0:
            raise_status(rc, "view", self.pool_path)
        try:
            if PyBytes_GET_SIZE(k) <= MAX_KEY_LEN:
                read_lock_gil(&self.index_lock)
                found = self.read_value_locked(PyBytes_AS_STRING(k), <uint32_t>PyBytes_GET_SIZE(k),
                                               &ref, 1)
                pthread_rwlock_unlock(&self.index_lock)
        finally:
            self.leave()
        if found < 0:
            self.read_failed(found, "view", k)
        if not found:
            raise KeyError(key)
        v = ValueView.__new__(ValueView)
        v.db = self
        v.voff = ref.voff
        v.vlen = ref.vlen
        v.pinned = True
        self.views += 1
        return v

    def _shutdown(self, bint raise_errors):
        cdef int rc = 0, ckpt_rc = 0
        cdef bint forked = self.fork_gen != fork_generation
        # Only a database that finished opening is checkpointed at close (a
        # failed open may have stopped half way through recovery).
        cdef bint was_open = self.idx_thread is not None
        pdb_store_sc(&self.closed, 1)
        if self.idx_thread is not None and not forked:
            with nogil:
                pthread_mutex_lock(&self.idx_mutex)
                self.idx_stop = 1
                pthread_cond_signal(&self.idx_cond)
                pthread_mutex_unlock(&self.idx_mutex)
            self.idx_thread.join()
        self.idx_thread = None
        with nogil:
            while pdb_load_sc(&self.active) != 0:
                usleep(100)
            # A failed open (half way through recovery) writes nothing.
            if was_open and not forked and self.log is not None and not self.log.failed:
                rc = self.sync_all()
                # A clean close leaves nothing to replay.  Everything is
                # durable in the log already: a failed checkpoint here only
                # means the next open replays more.
                if rc == 0 and was_open and self.tree is not None and self.tree.file.fd >= 0:
                    ckpt_rc = self.checkpoint_index()
        if ckpt_rc != 0:
            log.warning("pastedb: the checkpoint at close failed (%s); nothing is lost, the next "
                        "open replays the log since the last checkpoint",
                        os.strerror(-ckpt_rc) if -1000 < ckpt_rc < 0 else f"status {ckpt_rc}")
        if self.log is not None:
            self.log.publish_durable_at(NULL)
        if self.readers is not None:
            self.readers.close()              # the writer: readers now read to the log's end
        if self.tree is not None and not forked:
            self.tree.close()
        if self.pool is not None:
            self.pool.close_map()
        # Closing the descriptor releases the POSIX lock (a forked child holds
        # none: its descriptor copy was closed after the fork).
        with _held_locks_guard:
            self._drop_lock_fd()
        if rc != 0 and raise_errors:
            raise_status(rc, "close", self.pool_path)

    def backup(self, dest):
        """Write a compacted, verified copy of the database to the new
        directory ``dest`` while writes go on; see pastedb.backup."""
        from pastedb.backup import backup
        return backup(self, dest)

    def _freeze(self, bint frozen):
        """Read-only handle: catch up with the writer once, then hold that
        state until unfrozen (one point in time for a backup).  Returns the
        log position the state is at."""
        cdef int rc
        if not self.readonly:
            raise Error("only a read-only handle can be frozen")
        if frozen:
            self.ro_frozen = 0
            rc = self.enter()             # the refresh
            if rc != 0:
                raise_status(rc, "backup", self.pool_path)
            self.ro_frozen = 1
            self.leave()
        else:
            self.ro_frozen = 0
        return self.ro_lsn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if pdb_load_sc(&self.closed) else "open"
        return f"<pastedb.DB {self.path!r} {state}>"

    def __reduce__(self):
        raise TypeError("a pastedb.DB cannot be pickled; open the path instead")

    # -------------------------------------------------------------- ingest
    # What the network server uses of the engine (engine.pxd: "ingest").

    cdef char *mapping(self) noexcept nogil:
        """The pool's mapping: fixed for the life of the DB (pool.pxd)."""
        return self.pool.base

    cdef long receive_splice(self, int pipe_fd, uint64_t off, size_t n) noexcept nogil:
        return self.pool.file.splice_from(pipe_fd, off, n)

    cdef long receive_into(self, int sock, char *dst, size_t n) noexcept nogil:
        return self.pool.file.recv_into(sock, dst, <uint64_t>(dst - self.pool.base), n,
                                        self.pool.write_syscall)

    cdef void note_moved(self, const char *p, uint64_t n) noexcept nogil:
        if self.pool.write_syscall:
            self.pool.file.note_store(<uint64_t>(p - self.pool.base), p, n)

    cdef int ordinary_file(self) noexcept nogil:
        return self.pool.write_syscall

    cdef int64_t range_live(self, uint64_t off, uint64_t n) noexcept nogil:
        return self.pool.range_live(off, n)

    cdef int alloc_arena(self, uint64_t nbytes, uint64_t minbytes, uint64_t *off,
                         uint64_t *got) noexcept nogil:
        """A pool extent to receive requests into, of nbytes -- or, when the
        free segments hold no run that long, of minbytes in free segments
        rather than growing the file.  It stays pinned (never released, never
        relocated from) until release_arena: the server holds it while it
        receives into it and while a connection's unparsed request lies in
        it.  After that its segments are reclaimed like data extents: once no
        tree entry, no record from the log head on and no pin names them.
        0 or -errno."""
        cdef int rc
        if self.readonly:
            return ST_READONLY
        nbytes = (nbytes + SEG_SIZE - 1) & ~(<uint64_t>SEG_SIZE - 1)
        minbytes = (minbytes + SEG_SIZE - 1) & ~(<uint64_t>SEG_SIZE - 1)
        pthread_mutex_lock(&self.pool.lock)
        rc = self.pool.take_free_run(nbytes >> SEG_SHIFT, off)
        if rc != 0 and minbytes < nbytes:
            rc = self.pool.take_free_run(minbytes >> SEG_SHIFT, off)
            if rc == 0:
                nbytes = minbytes
        if rc != 0:
            rc = self.pool.take_segments(nbytes >> SEG_SHIFT, off, 0)
        if rc == 0:
            self.pool.pin(off[0], nbytes, 1)
            got[0] = nbytes
        pthread_mutex_unlock(&self.pool.lock)
        return rc

    cdef void release_arena(self, uint64_t off, uint64_t nbytes) noexcept nogil:
        """The server no longer receives into [off, off + nbytes) and no
        unparsed request lies there: drop alloc_arena's pin."""
        self.pool.pin(off, nbytes, -1)

    cdef int stage_ref(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                       LogRecord *rec) noexcept nogil:
        """A PUT record for a key and value already in the pool, where they
        are (the zero-copy path): checksummed there and made persistent by
        the next barrier.  Bytes outside the pool: ST_CORRUPT."""
        cdef char *base = self.pool.base
        cdef uint64_t lo, ln
        if k < base + HEADER_SIZE or v < base + HEADER_SIZE or \
                <uint64_t>(k - base) + klen > self.pool.size or \
                <uint64_t>(v - base) + vlen > self.pool.size:
            return ST_CORRUPT
        memset(rec, 0, sizeof(LogRecord))
        rec.type = REC_PUT
        rec.klen = <uint16_t>klen
        rec.koff = <uint64_t>(k - base)
        rec.voff = <uint64_t>(v - base)
        rec.vlen = vlen
        rec.vcrc = crc32c_buf(v, vlen)
        rec.crc = key_crc_state(k, klen)
        self.barriers.persist_range(k, klen)
        self.barriers.persist_range(v, vlen)
        # Pinned like copied bytes until appended or unstaged (both unpin).
        rec_span(rec, &lo, &ln)
        self.pool.pin(lo, ln, 1)
        return 0

    cdef int append_group(self, LogRecord *recs, int n, uint64_t *last_lsn) noexcept nogil:
        """Append staged records as one group (not yet durable: see
        make_durable) and apply them to the index.  0 or a negative status."""
        cdef int existed
        return self.apply_records(recs, n, 0, &existed, last_lsn)

    cdef int make_durable(self, uint64_t lsn) noexcept nogil:
        """One barrier: everything appended up to lsn is durable on return 0."""
        return self.log.commit(lsn)

    cdef int read_value(self, const char *k, uint32_t klen, Ref *out, uint64_t pin_min) noexcept nogil:
        """Look k up and check the value it names: inside the file and
        matching the checksum its record carried.  1 (*out filled), 0 absent,
        ST_CORRUPT for damage (never a value), or a negative status from the
        tree.  A value of at least pin_min bytes (pin_min > 0) is also pinned
        (its segments) (pool.pin), taken under
        the index read lock: a segment is released only by a free pass after
        a checkpoint published a tree without the entry (write lock), so a
        pinned value stays where it is until unpin_value."""
        cdef int found
        pthread_rwlock_rdlock(&self.index_lock)
        found = self.read_value_locked(k, klen, out, pin_min)
        pthread_rwlock_unlock(&self.index_lock)
        return found

    cdef int read_value_locked(self, const char *k, uint32_t klen, Ref *out,
                               uint64_t pin_min) noexcept nogil:
        """read_value with the index read lock already held: every read of
        a value by key (get, get_many, pop, the server) goes through here."""
        cdef int found = self.lookup_locked(k, klen, out)
        if found > 0 and not self.value_ok(out):
            found = ST_CORRUPT
        if found > 0 and pin_min and out.vlen >= pin_min:
            self.pool.pin(out.voff, out.vlen, 1)
        return found

    cdef int value_ok(self, const Ref *r) noexcept nogil:
        """The bytes a reference names may be returned: inside the file and
        matching the checksum their record carried (1), else 0."""
        return (not span_outside(r.koff, r.klen, self.pool.size) and
                value_verifies(self.pool.base, self.pool.size, r.voff, r.vlen, r.vcrc))

    cdef void pin_value(self, uint64_t voff, uint64_t vlen, int delta) noexcept nogil:
        """Take (delta 1) or drop (delta -1) a reader's pin on pool bytes the
        caller knows cannot be released meanwhile (a pinned or staged value)."""
        self.pool.pin(voff, vlen, delta)

    cdef int walk_keys(self, MergeIter it, const char *after, uint32_t alen, int after_set,
                       int64_t budget, KeySink sink, void *ctx, int dbno) noexcept nogil:
        cdef int rc
        cdef char bound[2]
        pthread_rwlock_rdlock(&self.index_lock)
        rc = it.renew()
        if rc == 0:
            bound[0] = <char>KEY_ESC
            if after_set:
                rc = it.seek(SEEK_LT if it.reverse else SEEK_GT, after, alen)
            elif dbno < 0 or not self.keyspaces or (dbno == 0 and not it.reverse) or \
                    (dbno == 255 and it.reverse):
                rc = it.seek(SEEK_FIRST, NULL, 0)
            elif it.reverse:
                bound[1] = <char>(dbno + 1)
                rc = it.seek(SEEK_LT, bound, 2)
            else:
                bound[1] = <char>dbno
                rc = it.seek(SEEK_GE, bound, 2)
        while rc == 0:
            if budget == 0:
                rc = 1
                break
            rc = it.step()
            if rc <= 0:
                break
            if dbno >= 0 and self.key_db(it.key, it.klen) != dbno:
                rc = 0
                break                             # past the database's range
            budget -= 1
            rc = sink(ctx, it.key, it.klen)
            if rc == 1:
                break
        # The next call renews the snapshot anyway: holding it between calls
        # would keep the tree from reusing any page freed since (the index
        # file would grow with every checkpoint).
        it.tc.close()
        pthread_rwlock_unlock(&self.index_lock)
        return rc


cdef object key_too_long(const char *k, Py_ssize_t klen):
    """The ValueError for a stored key over MAX_KEY_LEN bytes."""
    if klen >= 2 and <unsigned char>k[0] == KEY_ESC:
        return ValueError(f"key is {klen - 2} bytes; the limit is {MAX_KEY_LEN - 2} for a key "
                          f"starting with byte 0xFF or of a database other than 0 (stored with "
                          f"a 2-byte database prefix; {MAX_KEY_LEN} for others)")
    return ValueError(f"key is {klen} bytes; the limit is {MAX_KEY_LEN}")


class StoredKey(bytes):
    """A key in its stored form (format.pxd's keyspace: database prefix
    included), as database views and backup pass them: never prefixed
    again."""
    __slots__ = ()


cdef inline tuple db_bounds(int dbno):
    """The stored key range [lo, hi) of database dbno (None: unbounded)."""
    if dbno == 0:
        return None, b"\xff\x01"
    return bytes((KEY_ESC, dbno)), (bytes((KEY_ESC, dbno + 1)) if dbno < 255 else None)


cdef bytes as_key(object o, str what):
    if isinstance(o, bytes):
        return <bytes>o
    if isinstance(o, str) or not PyObject_CheckBuffer(o):
        raise TypeError(f"{what} must be bytes-like, not {type(o).__name__}")
    return bytes(memoryview(o))


cdef class ValueView:
    """What db.view() returns: the exporter of a pinned value's bytes.  The
    pin (taken by read_value under the index read lock) is dropped once the
    with-block has ended and no memoryview of it remains."""

    cdef DB db
    cdef uint64_t voff
    cdef uint64_t vlen
    cdef int exports                  # live Py_buffers (memoryviews and their slices)
    cdef bint pinned
    cdef bint ended                   # the with-block is over
    cdef object mv

    def __getbuffer__(self, Py_buffer *buf, int flags):
        if self.ended or not self.pinned:
            raise ValueError("this value view was released (its with-block ended)")
        if flags & PyBUF_WRITABLE:
            raise BufferError("a value view is read-only")
        PyBuffer_FillInfo(buf, self, self.db.pool.base + self.voff, <Py_ssize_t>self.vlen, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buf):
        self.exports -= 1
        if self.exports == 0 and self.ended:
            self._unpin()

    def __enter__(self):
        if self.ended:
            raise ValueError("this value view was released (its with-block ended)")
        self.mv = memoryview(self)
        return self.mv

    def __exit__(self, *exc):
        self.release()
        return False

    def release(self):
        """End the view (what the with-block's exit does)."""
        self.ended = True
        if self.mv is not None:
            self.mv.release()
            self.mv = None
        if self.exports == 0:
            self._unpin()

    def __len__(self):
        return self.vlen

    def __dealloc__(self):
        if self.pinned and self.db is not None:
            self._unpin()

    cdef _unpin(self):
        if self.pinned:
            self.pinned = False
            if self.vlen:
                self.db.pool.pin(self.voff, self.vlen, -1)
            self.db.views -= 1


cdef class MergeIter:
    """The live entries of the pending table and a tree snapshot, merged in
    key order (a pending entry shadows the tree's; a tombstone hides it).
    renew() .. step() run under the index read lock."""

    def __cinit__(self, DB db, bint reverse):
        self.db = db
        self.reverse = reverse
        self.tc = db.tree.cursor(0)

    def __dealloc__(self):
        if self.tc is not None:
            self.tc.close()

    cdef int renew(self) noexcept nogil:
        self.now = self.db.now_ms()
        return self.tc.renew()

    cdef int seek(self, int op, const char *k, uint32_t klen) noexcept nogil:
        cdef int rc
        if op == SEEK_FIRST:
            if self.reverse:
                self.pn = self.db.index.last()
                rc = self.tc.last()
            else:
                self.pn = self.db.index.first()
                rc = self.tc.first()
        elif op == SEEK_GE:
            self.pn = self.db.index.seek_ge(k, klen)
            rc = self.tc.seek_ge(k, klen)
        elif op == SEEK_GT:
            self.pn = self.db.index.seek_gt(k, klen)
            rc = self.tc.seek_gt(k, klen)
        else:
            self.pn = self.db.index.seek_lt(k, klen)
            rc = self.tc.seek_lt(k, klen)
        self.adv_p = 0
        self.adv_t = 0
        if rc < 0:
            self.tvalid = 0
            return rc
        self.tvalid = rc
        return 0

    cdef int step(self) noexcept nogil:
        cdef const char *pk
        cdef const char *tk
        cdef const Ref *pref
        cdef uint32_t tklen = 0
        cdef int c, rc
        while True:
            if self.adv_p:
                self.pn = self.db.index.prev(self.pn) if self.reverse else self.db.index.next(self.pn)
                self.adv_p = 0
            if self.adv_t:
                rc = self.tc.prev() if self.reverse else self.tc.next()
                self.adv_t = 0
                if rc < 0:
                    self.tvalid = 0
                    return rc
                self.tvalid = rc
            if self.pn == NULL and not self.tvalid:
                return 0
            pref = self.db.index.node_ref(self.pn) if self.pn != NULL else NULL
            pk = self.db.pool.base + pref.koff if pref != NULL else NULL
            tk = self.tc.key(&tklen) if self.tvalid else NULL
            if pref != NULL and tk != NULL:
                c = key_compare(pk, pref.klen, tk, tklen)
                if self.reverse:
                    c = -c
            elif pref != NULL:
                c = -1
            else:
                c = 1
            if c <= 0:
                self.adv_p = 1
                if c == 0:
                    self.adv_t = 1
                if pref.voff == TOMB or ref_expired(pref, self.now):
                    continue
                self.key = pk
                self.klen = pref.klen
                self.ref = pref[0]
                return 1
            self.adv_t = 1
            self.tc.ref(&self.ref)
            if ref_expired(&self.ref, self.now):
                continue
            self.key = tk
            self.klen = tklen
            return 1


cdef class Cursor:
    """Iterator over a key range.  Fetches ITER_BATCH entries at a time under
    the index read lock (pending table merged with the newest tree commit)
    and resumes after the last key it returned, so it stays valid (and sees a
    consistent order) while writers and the indexer run."""

    cdef DB db
    cdef int what                     # 0 keys, 1 values, 2 items, 3 (key, value, expire_ms)
    cdef bytes start                  # inclusive lower bound or None
    cdef bytes stop                   # exclusive upper bound or None
    cdef bint reverse
    cdef bytes last                   # last key returned or None
    cdef list buf                     # fetched, not yet returned
    cdef Py_ssize_t pos
    cdef bint exhausted
    cdef MergeIter it
    cdef object remaining            # items still allowed (None: no limit)
    cdef int strip                    # keys returned: 0 as stored, 1 database 0's (a 0xFF 0x00
                                      # prefix dropped), 2 database n's (the 2-byte prefix dropped)
    cdef bint stored                  # keys returned as StoredKey (every database: backup)

    def __cinit__(self, DB db, int what, bytes start, bytes stop, bint reverse, limit=-1,
                  int strip=0, bint stored=False):
        self.db = db
        self.strip = strip
        self.stored = stored
        self.remaining = None if limit < 0 else limit
        self.what = what
        self.start = start
        self.stop = stop
        self.reverse = reverse
        self.buf = []
        self.pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.remaining is not None:
            if self.remaining == 0:
                self.buf = []
                self.exhausted = True
                self.it = None
                raise StopIteration
            self.remaining -= 1
        if self.pos >= len(self.buf):
            if self.exhausted:
                raise StopIteration
            self._fetch()
            if not self.buf:
                raise StopIteration
        item = self.buf[self.pos]
        self.pos += 1
        return item

    cdef _fetch(self):
        cdef DB db = self.db
        cdef MergeIter it
        cdef const char *kp
        cdef int n = 0, rc, more = 0, i
        cdef FetchEntry ents[ITER_BATCH_MAX]
        cdef FetchEntry *e
        cdef bytes sk
        cdef object k
        cdef list out = []
        cdef list keys = []
        rc = db.enter()
        if rc != 0:
            raise_status(rc, "iterate", db.pool_path)
        try:
            if self.it is None:
                self.it = MergeIter(db, self.reverse)
            it = self.it
            read_lock_gil(&db.index_lock)
            try:
                rc = it.renew()
                if rc == 0:
                    if self.last is None:
                        if not self.reverse:
                            if self.start is not None:
                                rc = it.seek(SEEK_GE, self.start, <uint32_t>len(self.start))
                            else:
                                rc = it.seek(SEEK_FIRST, NULL, 0)
                        elif self.stop is not None:
                            rc = it.seek(SEEK_LT, self.stop, <uint32_t>len(self.stop))
                        else:
                            rc = it.seek(SEEK_FIRST, NULL, 0)
                    elif not self.reverse:
                        rc = it.seek(SEEK_GT, self.last, <uint32_t>len(self.last))
                    else:
                        rc = it.seek(SEEK_LT, self.last, <uint32_t>len(self.last))
                # First the batch's keys and references (a tree key lives in
                # the cursor's buffer only until the next step, so it is
                # copied here), then the values, each verified as it is
                # copied, with those a few entries ahead already on their way
                # to the cache.
                while rc == 0 and n < ITER_BATCH:
                    rc = it.step()
                    if rc <= 0:
                        break
                    rc = 0
                    kp = it.key
                    if not self.reverse:
                        if self.stop is not None and key_compare(
                                kp, it.klen, self.stop, <uint32_t>len(self.stop)) >= 0:
                            break
                    elif self.start is not None and key_compare(
                            kp, it.klen, self.start, <uint32_t>len(self.start)) < 0:
                        break
                    keys.append(PyBytes_FromStringAndSize(kp, it.klen))
                    ents[n].ref = it.ref
                    n += 1
                    if n == ITER_BATCH:
                        more = 1
                if self.what != 0:
                    for i in range(n if n < FETCH_AHEAD else FETCH_AHEAD):
                        prefetch_value(db, &ents[i].ref)
                for i in range(n):
                    e = &ents[i]
                    sk = keys[i]
                    k = sk
                    if self.strip == 2 or (self.strip == 1 and PyBytes_GET_SIZE(k) >= 2 and
                                           <unsigned char>PyBytes_AS_STRING(k)[0] == KEY_ESC):
                        k = PyBytes_FromStringAndSize(PyBytes_AS_STRING(sk) + 2,
                                                      PyBytes_GET_SIZE(sk) - 2)
                    elif self.stored:
                        k = StoredKey(sk)
                    if self.what == 0:
                        out.append(k)
                    else:
                        if i + FETCH_AHEAD < n:
                            prefetch_value(db, &ents[i + FETCH_AHEAD].ref)
                        if not db.value_ok(&e.ref):
                            rc = ST_VALUE_DAMAGED
                            more = 0
                            break
                        v = PyBytes_FromStringAndSize(db.pool.base + e.ref.voff,
                                                      <Py_ssize_t>e.ref.vlen)
                        if self.what == 3:
                            out.append((k, v, e.ref.expire_ms))
                        else:
                            out.append(v if self.what == 1 else (k, v))
                    self.last = sk
            finally:
                pthread_rwlock_unlock(&db.index_lock)
        finally:
            db.leave()
        if rc == ST_VALUE_DAMAGED:
            raise_status(rc, f"iterate: a value after key {self.last!r}", db.pool_path)
        if rc < 0:
            raise_status(rc, "iterate", db.tree_path)
        if not more:
            self.exhausted = True
            self.it = None
        self.buf = out
        self.pos = 0


cdef class Batch:
    """Puts and deletes applied together, all or nothing.  Keys and values are
    copied into the pool as they are added; the records are appended as one
    batch when the block exits."""

    cdef DB db
    cdef LogRecord *recs
    cdef int n
    cdef int cap
    cdef bint done

    def __cinit__(self, DB db):
        self.db = db

    def __dealloc__(self):
        if self.n and not self.done and self.db is not None and self.db.pool is not None:
            self.db.unstage(self.recs, self.n)   # staged, never applied: drop the pins
        free(self.recs)

    cdef int _grow(self) except -1:
        cdef int cap = self.cap * 2 if self.cap else 16
        cdef LogRecord *p = <LogRecord *>realloc(self.recs, cap * sizeof(LogRecord))
        if p == NULL:
            raise MemoryError()
        self.recs = p
        self.cap = cap
        return 0

    cdef int _stage(self, object key, object value) except -1:
        cdef Py_buffer kb, vb
        cdef const char *k
        cdef const char *v = NULL
        cdef Py_ssize_t klen, vlen = 0
        cdef int kview = 0, vview = 0, rc
        if self.done:
            raise Error("this batch was already applied or discarded")
        key = self.db.ekey(key)
        kview = get_bytes(key, &kb, &k, &klen, "key")
        try:
            if value is not None:
                vview = get_bytes(value, &vb, &v, &vlen, "value")
            try:
                if klen > MAX_KEY_LEN:
                    raise key_too_long(k, klen)
                if vlen > MAX_VALUE_LEN:
                    raise ValueError(f"value is {vlen} bytes; the limit is {MAX_VALUE_LEN}")
                if self.n == self.cap:
                    self._grow()
                rc = self.db.enter()
                if rc == 0:
                    if value is None:
                        with nogil:
                            rc = self.db.stage_delete(k, <uint32_t>klen, &self.recs[self.n])
                    else:
                        with nogil:
                            rc = self.db.stage_put(k, <uint32_t>klen, v, <uint64_t>vlen,
                                                   &self.recs[self.n])
                    self.db.leave()
                if rc != 0:
                    raise_status(rc, "batch", self.db.pool_path)
                self.n += 1
            finally:
                if vview:
                    PyBuffer_Release(&vb)
        finally:
            if kview:
                PyBuffer_Release(&kb)
        return 0

    def put(self, key, value, *, ttl=None):
        """Add a put to the batch; ttl as for DB.put (ttl <= 0: a delete)."""
        cdef uint64_t at = 0
        if value is None:
            raise TypeError("value must be bytes-like, not None")
        if ttl is not None:
            at = self.db._expire_at(ttl)
            if at == 0:
                self._stage(key, None)
                return
        self._stage(key, value)
        self.recs[self.n - 1].expire_ms = at

    def _put_at(self, key, value, uint64_t expire_ms):
        """Add a put with the absolute expiry expire_ms (0 none; one already
        past adds a delete instead)."""
        if expire_ms != 0 and expire_ms <= self.db.now_ms():
            self._stage(key, None)
            return
        self._stage(key, value)
        self.recs[self.n - 1].expire_ms = expire_ms

    def _put_pairs(self, list keys, list values):
        """Add len(keys) puts of bytes keys and values (checked by the caller
        against the limits) with one C call, packed as put_many packs them
        (pastedb.load stages its records so)."""
        cdef Py_ssize_t n = len(keys), i
        cdef const char **ks = NULL
        cdef const char **vs = NULL
        cdef uint32_t *kl = NULL
        cdef uint64_t *vl = NULL
        cdef int rc = 0
        cdef bytes b
        if self.done:
            raise Error("this batch was already applied or discarded")
        if n == 0:
            return
        while self.cap - self.n < n:
            self._grow()
        try:
            ks = <const char **>malloc(n * sizeof(char *))
            kl = <uint32_t *>malloc(n * sizeof(uint32_t))
            vs = <const char **>malloc(n * sizeof(char *))
            vl = <uint64_t *>malloc(n * sizeof(uint64_t))
            if ks == NULL or kl == NULL or vs == NULL or vl == NULL:
                raise MemoryError()
            for i in range(n):
                b = self.db.skey(keys[i])
                keys[i] = b                       # kept alive (a stored form may be new)
                if PyBytes_GET_SIZE(b) > MAX_KEY_LEN:
                    raise key_too_long(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
                ks[i] = PyBytes_AS_STRING(b)
                kl[i] = <uint32_t>PyBytes_GET_SIZE(b)
                b = <bytes>values[i]
                if PyBytes_GET_SIZE(b) > MAX_VALUE_LEN:
                    raise ValueError(f"value is {PyBytes_GET_SIZE(b)} bytes; the limit is "
                                     f"{MAX_VALUE_LEN}")
                vs[i] = PyBytes_AS_STRING(b)
                vl[i] = <uint64_t>PyBytes_GET_SIZE(b)
            rc = self.db.enter()
            if rc == 0:
                with nogil:
                    rc = self.db.stage_many(n, ks, kl, vs, vl, &self.recs[self.n])
                self.db.leave()
            if rc != 0:
                raise_status(rc, "batch", self.db.pool_path)
            self.n += <int>n
        finally:
            free(ks)
            free(kl)
            free(vs)
            free(vl)

    def delete(self, key):
        """Add a delete to the batch (a key that does not exist is fine)."""
        self._stage(key, None)

    def __len__(self):
        return self.n

    def commit(self):
        """Apply the batch now (the with-block does this on a clean exit)."""
        cdef int rc, existed
        cdef int sync = self.db.sync_default
        if self.done:
            raise Error("this batch was already applied or discarded")
        self.done = True
        if self.n == 0:
            return
        rc = self.db.enter()
        if rc == 0:
            with nogil:
                rc = self.db.apply_records(self.recs, self.n, sync, &existed, NULL)
            self.db.leave()
        if rc != 0:
            raise_status(rc, "batch", self.db.pool_path)

    def discard(self):
        """Drop the batch; nothing of it is applied."""
        if not self.done and self.n:
            self.db.unstage(self.recs, self.n)
        self.done = True
        self.n = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def open_db(path, *, bint create=True, bint sync=True, str persist="auto", str index="lazy",
            faults=None, bint readonly=False):
    db = DB()
    try:
        db._open(path, create, sync, persist, index, dict(faults) if faults else None, readonly)
        if faults and not faults.get("from_open"):
            db._arm_faults(dict(faults))
    except BaseException:
        db._shutdown(False)
        raise
    return db


def limits():
    return {"max_key_len": MAX_KEY_LEN, "max_value_len": MAX_VALUE_LEN}
