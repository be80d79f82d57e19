# reflog.pxd -- the persistent log of buffer references.
#
# The log never holds a value: each record names where a key and its value
# already lie in the pool.  Records are 64 bytes (one cache line) and live in
# log chunks, extents of CHUNK_SIZE bytes in the pool file; the last slot of
# every chunk is a LINK record naming the next chunk (a checkpoint may also
# end a chunk early with a LINK, so that the new log head is a fresh chunk).  The superblock names
# the first chunk (and the LSN it starts at); replay follows the links.
#
# A record is valid when
#   - its lsn is exactly the next expected one (so a stale record left in a
#     reused chunk, or a zeroed slot, ends the log), and
#   - crc == crc32c(key bytes || record bytes 4..63), and, for a PUT,
#     vcrc == crc32c(value bytes): the checksum covers record, key and value.
#
# Commit order (one barrier per group, the critical path):
#   1. key and value bytes are written to a data extent and persist_range()d;
#   2. under the log lock the record(s) are written and persist_range()d;
#   3. a group leader calls barrier() once for every record appended before
#      it started, then publishes durable_lsn; only then are those writes
#      acknowledged.  Appends go on while the leader waits, forming group N+1.
#
# Torn tail versus damage: every record carries durable_hint, the durable_lsn
# known when it was appended.  If replay meets an invalid record at lsn N and
# a later record in the chunk verifies with durable_hint >= N, record N had
# been acknowledged: that is damage (CorruptionError), not a torn tail.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from pastedb.core.clib cimport pthread_cond_t, pthread_mutex_t
from pastedb.core.persist cimport Persist
from pastedb.core.pool cimport Pool

cdef enum:
    REC_SIZE = 64
    CHUNK_SIZE = 262144               # 4096 record slots
    CHUNK_SLOTS = 4096
    REC_PUT = 1
    REC_DEL = 2
    REC_LINK = 3
    F_BATCH = 1                       # part of an all-or-nothing batch
    MAX_KEY_LEN = 1024
    MAX_VALUE_LEN = 536870912         # 512 MiB, as Redis's proto-max-bulk-len


cdef packed struct LogRecord:
    uint32_t crc                      # see above; holds the key's partial crc before append
    uint8_t type                      # REC_PUT / REC_DEL / REC_LINK
    uint8_t flags                     # F_BATCH
    uint16_t klen                     # key length
    uint32_t vcrc                     # crc32c of the value (PUT)
    uint32_t batch_left               # records of the batch still to come after this one
    uint64_t lsn                      # log sequence number, consecutive from 1
    uint64_t koff                     # key offset in the pool file
    uint64_t voff                     # value offset (LINK: next chunk offset)
    uint64_t vlen                     # value length (LINK: next chunk size)
    uint64_t durable_hint             # durable_lsn when this record was appended
    uint64_t reserved                 # zero


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
    cdef int flushing                 # a leader is inside barrier()
    cdef int waiters                  # threads inside commit()
    cdef int lingering                # the leader waits for the group to gather
    cdef char *stage                  # pwrite mode: records of the current chunk, gathered
    cdef uint64_t run_lo              # slots [run_lo, run_hi) staged, not yet written
    cdef uint64_t run_hi
    cdef pthread_cond_t linger_cond   # arrivals wake the lingering leader
    cdef int last_group               # threads the last barrier covered
    cdef int64_t last_barrier_ns      # how long it took
    cdef int failed                   # sticky -errno of a failed barrier (0 = healthy)
    cdef readonly unsigned long groups        # commit groups completed
    cdef readonly unsigned long records       # records appended since open
    cdef readonly unsigned long chunks        # chunks allocated since open

    cdef void set_head(self, uint64_t off, uint64_t lsn) noexcept nogil
    cdef int replay(self, apply_fn fn, void *ctx, ReplayResult *res) noexcept
    # Append n records (n > 1 forms one batch) with the log lock HELD by the
    # caller (lock()/unlock()), so the caller can update its index in the same
    # critical section and keep index order == log order.
    cdef int append_locked(self, LogRecord *recs, int n, uint64_t *last_lsn) noexcept nogil
    cdef void lock_log(self) noexcept nogil
    cdef void unlock_log(self) noexcept nogil
    # Wait until `lsn` is durable, leading a barrier when nobody else is.
    cdef int commit(self, uint64_t lsn) noexcept nogil
    # Start a fresh chain in a new chunk (for log compaction); returns its
    # offset and first lsn.  Caller holds the log lock.
    cdef int start_chain_locked(self, uint64_t *off, uint64_t *lsn) noexcept nogil
    cdef int write_slot(self, LogRecord *rec, uint32_t key_state) noexcept nogil
    cdef int link_new_chunk(self) noexcept nogil
    cdef int flush_run(self) noexcept nogil


# Verify one record in place: 1 valid, 0 invalid.  Checks the value crc too.
cdef int verify_record(Pool pool, const LogRecord *rec, uint64_t expect_lsn, int check_value) noexcept nogil
# crc of the key bytes, the partial state a record starts from.
cdef uint32_t key_crc_state(const char *key, uint32_t klen) noexcept nogil
