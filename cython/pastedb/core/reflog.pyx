"""The persistent, checksummed log of buffer references, with group commit."""

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from pastedb.core.clib cimport (
    CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, pthread_cond_signal,
    pthread_cond_timedwait, timespec,
    pthread_cond_broadcast,
    pthread_cond_destroy, pthread_cond_init, pthread_cond_wait, pthread_mutex_destroy,
    pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock,
)
from pastedb.core.clib cimport ENOMEM, pdb_store_sc
from pastedb.core.format cimport (
    CHUNK_SIZE, CHUNK_SLOTS, CRC_START, F_BATCH, REC_LINK, REC_SIZE, RV_LINK, RV_OK, WALK_STRICT, LogWalk,
    record_crc, walk_acknowledged, walk_start, walk_step,
)
from pastedb.core.status cimport ST_CORRUPT, ST_FAILED

cdef inline int64_t mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline LogRecord *slot_at(Pool pool, uint64_t chunk, uint64_t slot) noexcept nogil:
    return <LogRecord *>(pool.base + chunk + slot * REC_SIZE)


cdef class RefLog:

    def __cinit__(self, Pool pool, Persist persist):
        self.pool = pool
        self.persist = persist
        pthread_mutex_init(&self.lock, NULL)
        pthread_cond_init(&self.durable_cond, NULL)
        pthread_cond_init(&self.linger_cond, NULL)
        self.stage = <char *>malloc(CHUNK_SIZE)
        if self.stage == NULL:
            raise MemoryError()

    def __dealloc__(self):
        pthread_cond_destroy(&self.durable_cond)
        pthread_cond_destroy(&self.linger_cond)
        free(self.stage)
        pthread_mutex_destroy(&self.lock)

    cdef void set_head(self, uint64_t off, uint64_t lsn) noexcept nogil:
        self.head_off = off
        self.head_lsn = lsn
        self.chunk_off = off
        self.slot = 0
        self.next_lsn = lsn
        self.durable_lsn = lsn - 1

    cdef void move_head(self, uint64_t off, uint64_t lsn) noexcept nogil:
        pthread_mutex_lock(&self.lock)
        self.head_off = off
        self.head_lsn = lsn
        pthread_mutex_unlock(&self.lock)

    cdef int restart_after(self, uint64_t applied, uint64_t *off, uint64_t *lsn) noexcept nogil:
        cdef int rc
        pthread_mutex_lock(&self.lock)
        self.next_lsn = applied + 1
        rc = self.start_chain_locked(off, lsn)
        if rc == 0:
            self.durable_lsn = applied
        pthread_mutex_unlock(&self.lock)
        return rc

    cdef void fail(self, int rc) noexcept nogil:
        self.failed = rc

    cdef void publish_durable_at(self, int64_t *where) noexcept nogil:
        self.pub_durable = where

    cdef void lock_log(self) noexcept nogil:
        pthread_mutex_lock(&self.lock)

    cdef void unlock_log(self) noexcept nogil:
        pthread_mutex_unlock(&self.lock)

    cdef int replay(self, apply_fn fn, void *ctx, ReplayResult *res) noexcept:
        return self.replay_from(fn, ctx, res, self.head_off, 0, self.head_lsn, ~(<uint64_t>0), 0)

    cdef int follow(self, apply_fn fn, void *ctx, uint64_t limit, ReplayResult *res) noexcept:
        return self.replay_from(fn, ctx, res, self.chunk_off, self.slot, self.next_lsn, limit, 1)

    cdef int replay_from(self, apply_fn fn, void *ctx, ReplayResult *res, uint64_t start_chunk,
                         uint64_t start_slot, uint64_t start_lsn, uint64_t limit,
                         int readonly) noexcept:
        cdef Pool pool = self.pool
        cdef LogWalk w
        cdef uint64_t chunk, slot, lsn
        cdef uint64_t b_chunk = 0, b_slot = 0, b_lsn = 0
        cdef const LogRecord *rec
        cdef const LogRecord **batch = NULL
        cdef const LogRecord **grown
        cdef size_t nbatch = 0, cap = 0, k
        cdef uint32_t expect_left = 0
        cdef int rc = 0, invalid = 0, v, torn = 0
        memset(res, 0, sizeof(ReplayResult))
        if walk_start(&w, pool.base, pool.size, start_chunk, start_lsn, WALK_STRICT, 1) != 0:
            res.damaged_off = start_chunk
            return ST_CORRUPT
        w.slot = start_slot
        while True:
            chunk = w.chunk
            slot = w.slot
            lsn = w.lsn
            if lsn > limit:
                break                     # a reader: not yet durable (batches never span it)
            v = walk_step(&w, &rec)
            if v == RV_LINK:
                # A LINK ends a chunk (a batch may span it).  The chunk is
                # part of the chain recovery reads: its segment may not be
                # reused before the head passes this lsn.
                pool.note_lsn(chunk, CHUNK_SIZE, lsn)
                continue
            if v != RV_OK:
                invalid = 1
                break
            if rec.flags & F_BATCH:
                if nbatch == 0:
                    b_chunk = chunk
                    b_slot = slot
                    b_lsn = lsn
                elif rec.batch_left + 1 != expect_left:
                    invalid = 1
                    break
                if nbatch == cap:
                    cap = cap * 2 if cap else 64
                    grown = <const LogRecord **>realloc(batch, cap * sizeof(LogRecord *))
                    if grown == NULL:
                        free(batch)
                        return -ENOMEM
                    batch = grown
                batch[nbatch] = rec
                nbatch += 1
                expect_left = rec.batch_left
                if rec.batch_left == 0:
                    for k in range(nbatch):
                        rc = fn(ctx, batch[k])
                        if rc != 0:
                            free(batch)
                            return rc
                    res.records += nbatch
                    nbatch = 0
            else:
                if nbatch != 0:
                    invalid = 1
                    break
                rc = fn(ctx, rec)
                if rc != 0:
                    free(batch)
                    return rc
                res.records += 1
        free(batch)

        if readonly:
            # A reader stops where the log ends for now and resumes there:
            # it never judges or cuts a tail (the writer does).
            if nbatch != 0:
                chunk = b_chunk
                slot = b_slot
                lsn = b_lsn
            res.end_lsn = lsn
            res.tail_off = chunk + slot * REC_SIZE
            self.chunk_off = chunk
            self.slot = slot
            self.next_lsn = lsn
            return 0
        if invalid:
            # Was the record that ended the log ever acknowledged?
            w.chunk = chunk
            w.slot = slot
            w.lsn = lsn
            if walk_acknowledged(&w, &torn):
                res.damaged_off = chunk + slot * REC_SIZE
                return ST_CORRUPT
            res.torn = torn
        if nbatch != 0:
            # An incomplete batch at the end never happened: cut back to its start.
            res.dropped_batch = nbatch
            res.torn = 1
            chunk = b_chunk
            slot = b_slot
            lsn = b_lsn
        res.end_lsn = lsn
        res.tail_off = chunk + slot * REC_SIZE
        # New records go here.  Zero the rest of the chunk so no stale record
        # from before the crash can ever follow a new one; the caller issues
        # the barrier before accepting writes.
        rc = pool.zero_at(res.tail_off, (CHUNK_SLOTS - slot) * REC_SIZE)
        if rc != 0:
            return rc
        self.persist.persist_range(pool.base + res.tail_off, (CHUNK_SLOTS - slot) * REC_SIZE)
        self.chunk_off = chunk
        self.slot = slot
        self.next_lsn = lsn
        self.durable_lsn = lsn - 1
        return 0

    cdef int write_slot(self, LogRecord *rec, uint32_t key_state) noexcept nogil:
        cdef uint64_t off = self.chunk_off + self.slot * REC_SIZE
        cdef int rc
        rec.lsn = self.next_lsn
        rec.durable_hint = self.durable_lsn
        rec.crc = record_crc(key_state, rec)
        if self.pool.write_syscall:
            # Gather consecutive slots; flush_run() writes them with one
            # pwrite() before the log lock is released.
            memcpy(self.stage + self.slot * REC_SIZE, rec, REC_SIZE)
            if self.run_hi == self.run_lo:
                self.run_lo = self.slot
            self.run_hi = self.slot + 1
        else:
            rc = self.pool.write_at(off, rec, REC_SIZE)
            if rc != 0:
                return rc
            self.persist.persist_range(self.pool.base + off, REC_SIZE)
        self.slot += 1
        self.next_lsn += 1
        self.records += 1
        return 0

    cdef int flush_run(self) noexcept nogil:
        cdef uint64_t off = self.chunk_off + self.run_lo * REC_SIZE
        cdef uint64_t n = (self.run_hi - self.run_lo) * REC_SIZE
        cdef int rc
        if n == 0:
            return 0
        rc = self.pool.write_at(off, self.stage + self.run_lo * REC_SIZE, n)
        self.run_lo = self.run_hi = 0
        if rc != 0:
            return rc
        self.persist.persist_range(self.pool.base + off, n)
        return 0

    cdef int link_new_chunk(self) noexcept nogil:
        cdef LogRecord link
        cdef uint64_t off
        cdef char zeros[REC_SIZE]
        cdef int rc = self.pool.alloc_extent(CHUNK_SIZE, &off)
        if rc != 0:
            return rc
        # Zero the new chunk's first slot before linking to it: a reused
        # extent may hold a record whose lsn happens to fit.
        memset(zeros, 0, REC_SIZE)
        rc = self.pool.write_at(off, zeros, REC_SIZE)
        if rc != 0:
            return rc
        self.persist.persist_range(self.pool.base + off, REC_SIZE)
        memset(&link, 0, sizeof(LogRecord))
        link.type = REC_LINK
        link.voff = off
        link.vlen = CHUNK_SIZE
        rc = self.write_slot(&link, CRC_START)
        if rc == 0:
            rc = self.flush_run()                 # the old chunk's slots, LINK included
        if rc != 0:
            return rc
        self.pool.note_lsn(self.chunk_off, CHUNK_SIZE, self.next_lsn - 1)
        self.chunk_off = off
        self.slot = 0
        self.chunks += 1
        return 0

    cdef int append_locked(self, LogRecord *recs, int n, uint64_t *last_lsn) noexcept nogil:
        cdef uint64_t save_chunk = self.chunk_off, save_slot = self.slot
        cdef uint64_t save_lsn = self.next_lsn
        cdef int i, rc
        cdef uint32_t key_state
        if self.failed:
            return ST_FAILED
        for i in range(n):
            if self.slot == CHUNK_SLOTS - 1:
                rc = self.link_new_chunk()
                if rc != 0:
                    # Undo the part of a batch already written: nothing of it
                    # was acknowledged, and an incomplete batch must not be
                    # followed by later records.
                    self.run_lo = self.run_hi = 0
                    memset(self.pool.base + save_chunk + save_slot * REC_SIZE, 0,
                           (CHUNK_SLOTS - save_slot) * REC_SIZE)
                    self.chunk_off = save_chunk
                    self.slot = save_slot
                    self.next_lsn = save_lsn
                    return rc
            key_state = recs[i].crc
            if n > 1:
                recs[i].flags |= F_BATCH
                recs[i].batch_left = <uint32_t>(n - 1 - i)
            else:
                recs[i].flags &= ~F_BATCH
                recs[i].batch_left = 0
            rc = self.write_slot(&recs[i], key_state)
            if rc != 0:
                # An I/O error while appending: nothing after this can be trusted.
                self.failed = rc
                return rc
        rc = self.flush_run()
        if rc != 0:
            self.failed = rc
            return rc
        last_lsn[0] = self.next_lsn - 1
        return 0

    cdef int want_group(self) noexcept nogil:
        # (caller holds self.lock)
        cdef int i, most = 0
        for i in range(16):
            if self.recent_groups[i] > most:
                most = self.recent_groups[i]
        return most

    cdef int commit(self, uint64_t lsn) noexcept nogil:
        cdef uint64_t target
        cdef int rc = 0, group, want
        cdef int64_t t0, linger
        cdef timespec deadline
        pthread_mutex_lock(&self.lock)
        self.waiters += 1
        if self.lingering:
            pthread_cond_signal(&self.linger_cond)
        while self.durable_lsn < lsn:
            if self.failed:
                rc = ST_FAILED
                break
            if not self.flushing:
                # Lead this group: everything appended so far rides along.
                self.flushing = 1
                # Linger: the threads the last group released are appending
                # their next writes now.  Wait (at most half a barrier, at
                # most 2 ms) until as many wait as the largest of the last 16
                # groups had, so one barrier covers them all.  (Waiting only
                # for the last group's count let a group that lost a thread
                # to the next one keep that size: 8 writers settled at groups
                # of ~6.4.)  A lone writer never waits.
                want = self.want_group()
                if want > 1 and self.waiters < want:
                    linger = self.last_barrier_ns // 2
                    if linger > 2000000:
                        linger = 2000000
                    clock_gettime(CLOCK_REALTIME, &deadline)
                    deadline.tv_nsec += linger
                    if deadline.tv_nsec >= 1000000000:
                        deadline.tv_sec += 1
                        deadline.tv_nsec -= 1000000000
                    self.lingering = 1
                    while self.waiters < want:
                        if pthread_cond_timedwait(&self.linger_cond, &self.lock, &deadline) != 0:
                            break
                    self.lingering = 0
                target = self.next_lsn - 1
                group = self.waiters
                pthread_mutex_unlock(&self.lock)
                t0 = mono_ns()
                rc = self.persist.barrier()
                pthread_mutex_lock(&self.lock)
                self.last_barrier_ns = mono_ns() - t0
                self.last_group = group
                self.recent_groups[self.recent_at] = group
                self.recent_at = (self.recent_at + 1) & 15
                self.flushing = 0
                if rc != 0:
                    # After a failed fdatasync the kernel may have dropped the
                    # dirty pages: nothing from here on can be acknowledged.
                    self.failed = rc
                else:
                    self.durable_lsn = target
                    if self.pub_durable != NULL:
                        pdb_store_sc(self.pub_durable, <int64_t>target)   # before anyone is acknowledged
                    self.groups += 1
                pthread_cond_broadcast(&self.durable_cond)
                if rc != 0:
                    break
            else:
                pthread_cond_wait(&self.durable_cond, &self.lock)
        self.waiters -= 1
        pthread_mutex_unlock(&self.lock)
        return rc

    cdef int start_chain_locked(self, uint64_t *off, uint64_t *lsn) noexcept nogil:
        cdef uint64_t new_off
        cdef int rc = self.pool.alloc_extent(CHUNK_SIZE, &new_off)
        if rc != 0:
            return rc
        rc = self.pool.zero_at(new_off, CHUNK_SIZE)
        if rc != 0:
            return rc
        self.persist.persist_range(self.pool.base + new_off, CHUNK_SIZE)
        self.chunk_off = new_off
        self.slot = 0
        self.chunks += 1
        off[0] = new_off
        lsn[0] = self.next_lsn
        return 0
