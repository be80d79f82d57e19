# engine.pxd -- the database: put/get/delete/batch over pool + reflog + index.
#
# Also the C-level entry points the network server uses: it receives keys and
# values straight into pool extents and hands the engine references to them.

from libc.stdint cimport int64_t, uint32_t, uint64_t
from pastedb.core.btree cimport BTree, Cursor as TreeCursor, Snapshot
from pastedb.core.clib cimport pthread_cond_t, pthread_mutex_t, pthread_rwlock_t
from pastedb.core.index cimport Index, Node, Ref
from pastedb.core.persist cimport Persist
from pastedb.core.vfs cimport Vfs
from pastedb.core.pool cimport Pool
from pastedb.core.format cimport LogRecord
from pastedb.core.reflog cimport RefLog
from pastedb.core.expiry cimport ExpEntry, ExpiryHeap
from pastedb.core.readers cimport ReaderTable

# A pending entry with voff == TOMB records a delete not yet applied to the tree.
cdef extern from *:
    """
    #define PDB_TOMB 0xFFFFFFFFFFFFFFFFULL
    """
    const uint64_t TOMB "PDB_TOMB"

cdef enum:
    SEEK_FIRST = 0                    # MergeIter.seek: first (forward) / last (reverse)
    SEEK_GE = 1
    SEEK_GT = 2
    SEEK_LT = 3


# walk_keys hands each key to a sink: 0 go on, 1 stop here (the key counts
# as visited), negative a status to stop with.
ctypedef int (*KeySink)(void *ctx, const char *k, uint32_t klen) noexcept nogil

cdef class MergeIter


cdef class DB:
    cdef object path                  # the database directory (str)
    cdef object pool_path             # the pool file inside it
    cdef int lock_fd                  # LOCK file, fcntl-locked: one writer process
    cdef object lock_ident            # its (st_dev, st_ino), in _held_locks while held
    cdef Vfs vfs                      # the I/O layer under pool and index (faults, crash simulation)
    cdef Pool pool                    # the mapped buffers
    cdef Persist barriers             # barriers and range persistence
    cdef RefLog log                   # the reference log
    cdef Index index                  # the pending table: logged, not yet in the tree (TOMB = deleted)
    cdef pthread_rwlock_t index_lock  # guards `index`; writers hold it inside the log lock
    cdef int64_t idx_waiting          # writers queued for the index write lock (a checkpoint
                                      # lets them in between its batches: yield_to_writers)
    # expiry (expiry.pxd): the live keys whose Ref has an expire_ms, and their
    # time order.  exp_map changes with the pending table (index write lock);
    # exp_heap under exp_lock (taken inside the index lock when both are).
    cdef Index exp_map
    cdef ExpiryHeap exp_heap
    cdef pthread_mutex_t exp_lock
    cdef int64_t clock_offset_ms      # tests: added to the wall clock (0 in production)
    cdef uint64_t clock_fixed_ms      # tests: a frozen clock (0: the wall clock)
    cdef int active_expire            # 1: the indexer deletes expired keys (DEBUG SET-ACTIVE-EXPIRE)
    cdef int lazy_hits                # a read met an expired key: the expirer deletes it even when inactive
    cdef uint64_t expired_keys        # DELs the expirer logged, since open
    cdef BTree tree                   # the persistent index (file "index")
    cdef object tree_path
    cdef int eager                    # 1: the put path updates the tree (the ablation)
    cdef int eager_synced             # eager: the tree's write txn holds everything pending
    cdef pthread_mutex_t tree_lock    # the one tree writer: checkpoints (and eager writers)
    cdef int64_t w_live               # live key + value bytes of the tree's write txn (tree_lock)
    cdef int64_t c_live               # ... of its last commit (tree_lock)
    # What readers use (under the index read lock): the newest commit and its
    # live bytes, changed together with the pending table under the write
    # lock.  Readers need no snapshot pin: the tree reuses a page only two
    # commits after freeing it, and between two commits a checkpoint takes
    # the write lock once, so no reader of an older snapshot is left.
    cdef Snapshot cur_snap
    cdef int64_t cur_live
    # Numbered databases (format.pxd's keyspace): keys per database in the
    # tree's write txn, its last commit and the published commit, kept like
    # the live bytes above (counted at open in the walk that loads expiries).
    cdef int keyspaces                # 1: the tree is version 3 (keys carry their database)
    cdef int dbn_stale                # read-only: the counts below await _ro_counts
    cdef int64_t w_dbn[256]
    cdef int64_t c_dbn[256]
    cdef int64_t cur_dbn[256]
    cdef uint64_t created_ns          # the superblock's creation time (kept across rewrites)
    cdef uint64_t cut_lsn             # log position the last checkpoint covers
    # the indexer thread
    cdef pthread_mutex_t idx_mutex
    cdef pthread_cond_t idx_cond
    cdef int idx_stop
    cdef object idx_thread
    cdef int idx_error                # last checkpoint failure (0 none)
    cdef uint64_t ckpt_every          # records since the last cut that start a checkpoint
    cdef uint64_t ckpt_bytes          # or key + value bytes since the last cut (0: off)
    cdef uint64_t logged_bytes        # key + value bytes appended since open (log lock)
    cdef uint64_t cut_bytes           # logged_bytes at the last checkpoint's cut
    cdef int64_t ckpt_interval_ns     # or this long since the last one, with anything logged
    cdef uint64_t ckpt_count
    cdef int64_t ckpt_ns_total
    cdef int64_t ckpt_ns_max
    cdef uint64_t ckpt_applied        # pending entries moved into the tree, all checkpoints
    # space reclamation (see Pool's segment arrays)
    cdef int seg_ready                # pool.seg_live holds the tree's bytes per segment
    cdef uint64_t relocated_bytes     # the cleaner's copies, since open
    cdef uint64_t relocated_keys
    cdef uint64_t cleaner_runs
    cdef uint64_t truncated_bytes
    cdef double clean_at              # auto-clean when file bytes > clean_at * live bytes
    cdef readonly uint64_t max_disk   # quota on pool + index file bytes (0: none): set_max_disk
    cdef pthread_mutex_t data_lock    # guards the data extent cursor
    cdef uint64_t data_off            # next free byte of the current data extent
    cdef uint64_t data_end            # end of the current data extent
    cdef readonly bint sync_default   # sync= given to open()
    cdef int64_t closed               # set by close(); operations check it
    cdef int64_t active               # operations in flight (close waits for 0)
    cdef int views                    # ValueViews holding a pin (close refuses while any does)
    cdef object snapshots             # the open Snapshots of this writer (close() closes them)
    cdef long fork_gen                # fork generation at open
    cdef uint64_t recovered_records   # records replayed at open
    cdef object recovery_note         # what open had to cut, for stats()/logging
    cdef uint64_t sb_seq              # seq of the superblock slot in force
    # Readers in other processes (readers.pxd).  The writer publishes its
    # durable lsn and tree commits there and respects what readers pin; a
    # read-only handle holds a slot, follows the log tail and moves to newer
    # tree commits at the start of each call (ro_refresh).
    cdef ReaderTable readers          # None: no table (a read-only directory)
    cdef readonly bint readonly       # opened with readonly=True: never writes a database file
    cdef int64_t ro_epoch             # writer_epoch the reader's state was built under
    cdef int64_t ro_lsn               # log position the reader's state is at
    cdef int64_t ro_seen_durable      # the writer's durable_lsn at the last refresh
    cdef int64_t ro_seen_tree         # the writer's tree_txn at the last refresh
    cdef int ro_frozen                # a backup runs: the state stays where it is
    cdef object __weakref__           # for the after-fork registry

    # Operation bracket: enter() returns 0 or ST_CLOSED / ST_FORKED.
    cdef int enter(self) noexcept nogil
    # Read-only handle: catch up with the writer (log tail, newer tree
    # commit, a new writer).  0 or a negative status.
    cdef int ro_refresh(self) noexcept with gil
    # Writer: what readers of other processes hold -> the tree's page reuse
    # bound; returns their oldest log position (INT64_MAX: none).
    cdef int64_t bound_readers(self, int64_t *txn_out=*) noexcept nogil
    cdef void leave(self) noexcept nogil

    # Reserve n bytes in a data extent (8-byte aligned).  0 or -errno.
    cdef int reserve_data(self, uint64_t n, uint64_t *off) noexcept nogil
    cdef int reserve_data_ex(self, uint64_t n, uint64_t *off, int use_reserve) noexcept nogil
    # Copy key (and value) into the pool and fill a PUT / DEL record for them.
    cdef int stage_put(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                       LogRecord *rec) noexcept nogil
    cdef int stage_copy(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                        LogRecord *rec, int use_reserve) noexcept nogil
    cdef int stage_delete(self, const char *k, uint32_t klen, LogRecord *rec) noexcept nogil
    cdef int stage_delete_in_place(self, const char *k, uint32_t klen, LogRecord *rec,
                                   int rc) noexcept nogil
    # Append staged records (one batch when n > 1), update the index in log
    # order, optionally wait for durability.  *existed gets 1 when a DEL hit;
    # *last_lsn (may be NULL) the lsn of the last record appended.
    cdef int apply_records(self, LogRecord *recs, int n, int sync, int *existed,
                           uint64_t *last_lsn) noexcept nogil
    cdef int apply_records_ex(self, LogRecord *recs, int n, int sync, int *existed,
                              uint64_t *last_lsn, const Ref *expect) noexcept nogil
    cdef int append_locked_tail(self, LogRecord *recs, int n, int sync,
                                uint64_t *last_lsn) noexcept nogil
    cdef int clear_all(self, MergeIter it, int sync, int dbno) noexcept nogil
    # Keys in their stored form (format.pxd's keyspace): database 0's key
    # (ekey, skey: a bytes-like key / any key), database dbno's (db_key).
    cdef object ekey(self, object key)
    cdef bytes skey(self, object key)
    cdef object db_key(self, object key, int dbno)
    # Staged records that will not be appended: release their segment pins.
    cdef void unstage(self, LogRecord *recs, int n) noexcept nogil
    # Look a key up (pending table, then the tree); 1 and *out filled, 0
    # absent, or a negative status (a damaged tree page).
    cdef int lookup(self, const char *k, uint32_t klen, Ref *out) noexcept nogil
    cdef int lookup_locked(self, const char *k, uint32_t klen, Ref *out) noexcept nogil
    # lookup_locked including expired entries (what the log and tree hold).
    cdef int lookup_raw_locked(self, const char *k, uint32_t klen, Ref *out) noexcept nogil
    # ---- expiry.  The clock: wall-clock ms since the Unix epoch (+ the test offset).
    cdef uint64_t now_ms(self) noexcept nogil
    # Keys (and their key + value bytes) expired but not yet deleted (index read lock held).
    cdef void count_expired(self, uint64_t now, int dbno, int64_t *keys, int64_t *nbytes) noexcept nogil
    cdef int key_db(self, const char *k, uint32_t klen) noexcept nogil
    # Volatile keys not yet expired (index read lock held).
    cdef int64_t count_volatile(self, uint64_t now, int dbno) noexcept nogil
    # Stage a PUT that names k's current key and value bytes with a new
    # expire_ms (no value copy; the bytes pinned like a staged write): 1 and
    # *rec, *cur (the Ref it replaces), 0 when k is absent or expired.
    cdef int stage_expiry(self, const char *k, uint32_t klen, uint64_t expire_ms, LogRecord *rec,
                          Ref *cur) noexcept nogil
    # Pin the bytes a record names as staging does (a record staged from another one).
    cdef void pin_record(self, const LogRecord *rec) noexcept nogil
    # Log DELs for up to budget expired keys (no sync): how many, or a negative status.
    cdef int expire_pass(self, int budget) noexcept nogil
    cdef void exp_note(self, const char *k, uint32_t klen, const Ref *ref) noexcept nogil
    cdef int ref_in_pool(self, const Ref *r) noexcept nogil
    # Exact live key count and live key + value bytes (O(pending)).
    cdef int count_live(self, int dbno, int64_t *keys, int64_t *live) noexcept nogil
    # count_live and count_volatile of every database in one pass (256 entries each).
    cdef int count_all_dbs(self, int64_t *keys, int64_t *vol) noexcept nogil
    cdef int pending_effect(self, const Ref *ref, int64_t *dkeys, int64_t *dbytes) noexcept nogil
    # Move everything logged so far into the tree, commit it, advance the
    # log head.  0 or a negative status.
    cdef int checkpoint_index(self) noexcept nogil
    cdef int checkpoint_locked(self) noexcept nogil
    # Between two index-lock holds of a checkpoint: wait (bounded) until the
    # writers queued for the write lock have had it -- the lock itself lets
    # the releasing thread take it again at once.
    cdef void yield_to_writers(self) noexcept nogil
    cdef int tree_apply(self, const char *key, uint32_t klen, const Ref *ref) noexcept nogil
    cdef void indexer(self) noexcept nogil
    cdef void publish_tree(self) noexcept nogil
    cdef int seg_scan(self) noexcept with gil
    cdef int write_head(self, uint64_t head_off, uint64_t head_lsn, uint64_t tree_lsn,
                        uint64_t mark) noexcept nogil
    cdef void auto_clean(self) noexcept with gil
    cdef int seg_settled(self, uint64_t s) noexcept nogil
    cdef uint64_t data_seg(self) noexcept nogil
    # dead_lsn: the newest record the checkpoint applied (at least its cut):
    # what it stopped naming died by then, and is released only once every
    # reader of another process is at or past it.
    cdef void free_pass(self, uint64_t head_lsn, uint64_t dead_lsn) noexcept nogil
    cdef void apply_quota(self) noexcept nogil
    cdef int relocate(self, const char *key, uint32_t klen, const Ref *ref) noexcept nogil
    # Make everything appended so far durable.
    cdef int sync_all(self) noexcept nogil
    # Apply one logged record to the index (index write lock held, or replay).
    cdef int index_apply(self, const LogRecord *rec) noexcept nogil

    # ---- ingest: the network server's view of the engine.  Stage records
    # (stage_ref for bytes already in the pool, stage_put / stage_delete for
    # bytes to copy in, unstage to drop them), append a group, make it
    # durable, look a key up; the pool's mapping and arenas to receive into.
    cdef char *mapping(self) noexcept nogil
    # Receiving into the pool, through its I/O layer (faults, the crash
    # simulator): splice from a pipe to offset off; recv() from a socket
    # into the mapping at dst; note bytes moved within the mapping at p (an
    # ordinary file: durable with the next barrier).  As splice / recv.
    cdef long receive_splice(self, int pipe_fd, uint64_t off, size_t n) noexcept nogil
    cdef long receive_into(self, int sock, char *dst, size_t n) noexcept nogil
    cdef void note_moved(self, const char *p, uint64_t n) noexcept nogil
    # An ordinary file (writes go in by system call, not through the mapping).
    cdef int ordinary_file(self) noexcept nogil
    # Bytes of [off, off + n) that tree entries name (an arena worth moving out of).
    cdef int64_t range_live(self, uint64_t off, uint64_t n) noexcept nogil
    cdef int alloc_arena(self, uint64_t nbytes, uint64_t minbytes, uint64_t *off,
                         uint64_t *got) noexcept nogil
    cdef void release_arena(self, uint64_t off, uint64_t nbytes) noexcept nogil
    cdef int stage_ref(self, const char *k, uint32_t klen, const char *v, uint64_t vlen,
                       LogRecord *rec) noexcept nogil
    cdef int append_group(self, LogRecord *recs, int n, uint64_t *last_lsn) noexcept nogil
    cdef int make_durable(self, uint64_t lsn) noexcept nogil
    # Look a key up and verify its value (1 / 0 / negative status); a value
    # of pin_min bytes or more (pin_min > 0) is pinned: its segments are not
    # released until pin_value(-1).
    cdef int read_value(self, const char *k, uint32_t klen, Ref *out, uint64_t pin_min) noexcept nogil
    cdef int read_value_locked(self, const char *k, uint32_t klen, Ref *out,
                               uint64_t pin_min) noexcept nogil
    cdef int value_ok(self, const Ref *r) noexcept nogil
    cdef tuple read_bytes(self, const char *k, uint32_t klen, Ref *ref)
    cdef read_failed(self, int found, str what, bytes key)
    cdef int lookup_key(self, object key, str what, Ref *out) except -1
    cdef int stage_many(self, Py_ssize_t n, const char **ks, const uint32_t *kl,
                        const char **vs, const uint64_t *vl, LogRecord *recs) noexcept nogil
    cdef _write_many(self, list keys, list values, str what, uint64_t expire_ms=*)
    cdef int _remove_if(self, bytes key, const Ref *expect) except? -1000000
    cdef void pin_value(self, uint64_t voff, uint64_t vlen, int delta) noexcept nogil
    # Visit live keys in order, after (after, alen) when after_set, at most
    # budget of them (budget < 0: all): 1 when keys remain, 0 at the end, or
    # a negative status; dbno >= 0: only that database's keys (stored form).
    # The index read lock is held only inside the call,
    # so a long walk is many short calls, each seeing the newest state.
    cdef int walk_keys(self, MergeIter it, const char *after, uint32_t alen, int after_set,
                       int64_t budget, KeySink sink, void *ctx, int dbno) noexcept nogil

    cdef int _put(self, const char *k, Py_ssize_t klen, const char *v, Py_ssize_t vlen,
                  int sync, uint64_t expire_ms) noexcept nogil
    cdef object _get(self, object key, object default, bint raise_missing)
    cdef int _delete(self, const char *k, Py_ssize_t klen, int sync, int *existed) noexcept nogil


# Merged, ordered iteration over the pending table and a tree snapshot (the
# caller holds the index read lock from renew() through the last step()).
cdef class MergeIter:
    cdef DB db
    cdef TreeCursor tc
    cdef int reverse
    cdef Node *pn                     # pending entry to compare next (NULL: none)
    cdef int tvalid                   # tree cursor at an entry
    cdef int adv_p                    # consume: advance before the next comparison
    cdef int adv_t
    cdef uint64_t now                 # the clock at renew(): entries expired by then are skipped
    cdef const char *key              # current entry (valid until the next step)
    cdef uint32_t klen
    cdef Ref ref

    cdef int renew(self) noexcept nogil
    # op: SEEK_FIRST (first / last by direction), SEEK_GE, SEEK_GT, SEEK_LT
    cdef int seek(self, int op, const char *k, uint32_t klen) noexcept nogil
    # 1 at the next live entry, 0 at the end, negative on damage.
    cdef int step(self) noexcept nogil
