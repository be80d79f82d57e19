# reflog.pxd -- the persistent log of buffer references.
#
# The record and chunk format (LogRecord, LINKs, validity, durable_hint) is
# format.pxd's; the log walk is format's walk_start/walk_step.
#
# Commit order (one barrier per group, the critical path):
#   1. key and value bytes are written to a data extent and persist_range()d;
#   2. under the log lock the record(s) are written and persist_range()d;
#   3. a group leader calls barrier() once for every record appended before
#      it started, then publishes durable_lsn; only then are those writes
#      acknowledged.  Appends go on while the leader waits, forming group N+1.

from libc.stdint cimport int64_t, uint32_t, uint64_t
from pastedb.core.clib cimport pthread_cond_t, pthread_mutex_t
from pastedb.core.persist cimport Persist
from pastedb.core.format cimport LogRecord
from pastedb.core.pool cimport Pool

# Called by replay for every record to apply, in log order; batches are
# delivered only once complete.  Returns 0 or a negative status.  Replay runs
# at open, single-threaded, with the GIL held.
ctypedef int (*apply_fn)(void *ctx, const LogRecord *rec) noexcept


cdef struct ReplayResult:
    uint64_t records                  # records applied
    uint64_t end_lsn                  # lsn of the first record not replayed
    uint64_t tail_off                 # file offset where the tail was cut
    int torn                          # 1 if a non-empty slot ended the log (a torn tail)
    uint64_t dropped_batch            # records of an incomplete final batch dropped
    uint64_t damaged_off              # on ST_CORRUPT: offset of the damaged record


cdef class RefLog:
    cdef Pool pool                    # where chunks, keys and values live
    cdef Persist persist              # barrier and range persistence
    cdef pthread_mutex_t lock         # appends and group-commit bookkeeping
    cdef pthread_cond_t durable_cond  # followers wait here for the leader
    cdef uint64_t head_off            # first chunk (from the superblock)
    cdef uint64_t head_lsn            # lsn of its first record
    cdef uint64_t chunk_off           # chunk being appended to
    cdef uint64_t slot                # next free slot in it
    cdef uint64_t next_lsn            # lsn the next record gets
    cdef uint64_t durable_lsn         # every record <= this is durable
    cdef int64_t *pub_durable         # where readers of other processes read durable_lsn (NULL: none)
    cdef int flushing                 # a leader is inside barrier()
    cdef int waiters                  # threads inside commit()
    cdef int lingering                # the leader waits for the group to gather
    cdef char *stage                  # pwrite mode: records of the current chunk, gathered
    cdef uint64_t run_lo              # slots [run_lo, run_hi) staged, not yet written
    cdef uint64_t run_hi
    cdef pthread_cond_t linger_cond   # arrivals wake the lingering leader
    cdef int last_group               # threads the last barrier covered
    cdef int recent_groups[16]        # the sizes of the last 16 groups (a ring)
    cdef int recent_at                # next slot of recent_groups
    cdef int64_t last_barrier_ns      # how long it took
    cdef int failed                   # sticky -errno of a failed barrier (0 = healthy)
    cdef readonly unsigned long groups        # commit groups completed
    cdef readonly unsigned long records       # records appended since open
    cdef readonly unsigned long chunks        # chunks allocated since open

    # Position a log with nothing appended yet at its head chunk `off`, whose
    # first record is `lsn` (open, a reader's rebuild).
    cdef void set_head(self, uint64_t off, uint64_t lsn) noexcept nogil
    # A checkpoint's new head, once the superblock naming it is durable
    # (takes the log lock).
    cdef void move_head(self, uint64_t off, uint64_t lsn) noexcept nogil
    # Open, when the log ended at a record the tree already holds: a fresh
    # chain whose first record is applied + 1 (everything <= applied is
    # durable in the tree).  Takes the log lock; 0 or -errno.
    cdef int restart_after(self, uint64_t applied, uint64_t *off, uint64_t *lsn) noexcept nogil
    # Stop acknowledging anything (sticky): the index or the files lost step
    # with the log.  The caller holds the log lock where appends may race.
    cdef void fail(self, int rc) noexcept nogil
    # Where every group commit publishes durable_lsn for readers of other
    # processes (NULL: nowhere).
    cdef void publish_durable_at(self, int64_t *where) noexcept nogil
    cdef int replay(self, apply_fn fn, void *ctx, ReplayResult *res) noexcept
    # A reader's replay: from (chunk_off, slot, next_lsn), records with lsn <=
    # limit, complete batches only; leaves the position after the last one
    # applied.  Never writes.
    cdef int follow(self, apply_fn fn, void *ctx, uint64_t limit, ReplayResult *res) noexcept
    cdef int replay_from(self, apply_fn fn, void *ctx, ReplayResult *res, uint64_t start_chunk,
                         uint64_t start_slot, uint64_t start_lsn, uint64_t limit,
                         int readonly) noexcept
    # Append n records (n > 1 forms one batch) with the log lock HELD by the
    # caller (lock()/unlock()), so the caller can update its index in the same
    # critical section and keep index order == log order.
    cdef int append_locked(self, LogRecord *recs, int n, uint64_t *last_lsn) noexcept nogil
    cdef void lock_log(self) noexcept nogil
    cdef void unlock_log(self) noexcept nogil
    # The most threads one of the last 16 barriers covered (caller holds lock).
    cdef int want_group(self) noexcept nogil
    # Wait until `lsn` is durable, leading a barrier when nobody else is.
    cdef int commit(self, uint64_t lsn) noexcept nogil
    # Start a fresh chain in a new chunk (for log compaction); returns its
    # offset and first lsn.  Caller holds the log lock.
    cdef int start_chain_locked(self, uint64_t *off, uint64_t *lsn) noexcept nogil
    cdef int write_slot(self, LogRecord *rec, uint32_t key_state) noexcept nogil
    cdef int link_new_chunk(self) noexcept nogil
    cdef int flush_run(self) noexcept nogil
