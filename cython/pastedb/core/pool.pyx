"""The pool file: packet buffers in one shared mapping that never moves."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport calloc, free

from pastedb.core.clib cimport (
    EDQUOT, EINVAL, ENOENT, ENOSPC, EOPNOTSUPP, MAP_ANONYMOUS, MAP_FAILED, MAP_FIXED, MAP_NORESERVE,
    MAP_PRIVATE, MAP_SHARED, pthread_cond_destroy, pthread_cond_init, pthread_cond_signal,
    pthread_cond_wait, MAP_SHARED_VALIDATE, MAP_SYNC, PROT_NONE, PROT_READ, PROT_WRITE, errno,
    mmap, munmap, pdb_load32, pdb_xadd32, pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock,
    pthread_mutex_unlock,
)
from pastedb.core.format cimport BUF_SIZE, CHUNK_SIZE, HEADER_SIZE, MAP_ALIGN, SEG_SHIFT, SEG_SIZE
from pastedb.core.status cimport ST_NO_MAP_SYNC
from pastedb.core.vfs cimport FAULT_GROW, FAULT_WRITE, File, Vfs, reserve_space

# 1 TiB of address space: no memory is committed for PROT_NONE, and the
# x86-64 user address space is 128 TiB.
cdef uint64_t RESERVE_BYTES = 1 << 40


cdef inline uint64_t round_up(uint64_t n, uint64_t align) noexcept nogil:
    return (n + align - 1) // align * align


cdef inline uint64_t grow_step(uint64_t size) noexcept nogil:
    """How much the file grows at a time: a quarter of its size, at least
    4 MiB, at most 256 MiB.  The grower starts when less than half a step is
    left, so a small database stays small."""
    cdef uint64_t step = size // 4
    if step < (4 << 20):
        step = 4 << 20
    if step > (256 << 20):
        step = 256 << 20
    return step


cdef class Pool:

    def __cinit__(self):
        self.base = NULL
        pthread_mutex_init(&self.lock, NULL)
        pthread_mutex_init(&self.grow_lock, NULL)
        pthread_cond_init(&self.grow_cond, NULL)

    def __dealloc__(self):
        self.close_map()
        free(self.seg_live)
        free(self.seg_lsn)
        free(self.seg_pins)
        free(self.seg_flags)
        free(self.seg_dead)
        free(self.seg_dtxn)
        pthread_cond_destroy(&self.grow_cond)
        pthread_mutex_destroy(&self.grow_lock)
        pthread_mutex_destroy(&self.lock)

    def start_grower(self):
        """Keep the file grown ahead of the allocator from a background
        thread, so no write waits for zeros to be written and synced."""
        import threading
        self.grower_thread = threading.Thread(target=self._grower_main, daemon=True,
                                              name="pastedb-grower")
        self.grower_thread.start()
        self.grower_running = 1

    def _grower_main(self):
        with nogil:
            self.grower()

    cdef void grower(self) noexcept nogil:
        cdef uint64_t target, step, gen
        cdef int rc
        pthread_mutex_lock(&self.lock)
        while True:
            while not self.grower_stop and not self.grow_requested:
                pthread_cond_wait(&self.grow_cond, &self.lock)
            if self.grower_stop:
                break
            step = grow_step(self.size)
            target = round_up(self.size + step, MAP_ALIGN)
            if self.max_size and target > self.max_size:
                target = self.max_size // MAP_ALIGN * MAP_ALIGN     # the quota is the disk's end
                self.disk_full = 1                # from here on ordinary allocations keep the reserve
            if target > self.reserved or target <= self.size:
                self.grow_requested = 0
                continue
            gen = self.truncations
            pthread_mutex_unlock(&self.lock)
            pthread_mutex_lock(&self.grow_lock)
            rc = self.extend_file(target)
            pthread_mutex_unlock(&self.grow_lock)
            pthread_mutex_lock(&self.lock)
            # A cut of the file's free end in between may have taken back
            # what was just written: then map nothing (a page past the end
            # of the file would fault on first touch).
            if rc == 0 and gen == self.truncations:
                self.map_to(target)
                self.background_growths += 1
            # A full disk: from now on ordinary allocations keep the reserve
            # out of what is still mapped (the deletes and the cleaner need
            # it).  Without this the foreground used up the mapped rest first
            # and only then learnt of the full disk, with no reserve left:
            # compact() on a full tmpfs then had no room to move one value.
            # (The write that needs space still fails by itself.)
            if rc == -ENOSPC or rc == -EDQUOT:
                self.disk_full = 1
            self.grow_requested = 0
        pthread_mutex_unlock(&self.lock)

    cdef int open_file(self, Vfs vfs, bytes path, int create, int want_sync, uint64_t initial,
                       int *created) except -1:
        cdef int rc
        cdef uint64_t have
        cdef char *p
        self.path = path.decode("utf-8", "surrogateescape")
        self.file = File(vfs)
        created[0] = 0
        rc = self.file.open(path, 0)
        if rc == -ENOENT and create:
            rc = self.file.open(path, 1)
            created[0] = 1
        if rc != 0:
            raise OSError(-rc, f"cannot open pool file {self.path}")
        rc = self.file.size(&have)
        if rc != 0:
            raise OSError(-rc, f"cannot stat {self.path}")
        rc = self.file.allocate_holes(have)
        if rc != 0:
            raise OSError(-rc, f"cannot give the holes of {self.path} their disk blocks "
                               f"(a writer stores into the file through a mapping)")
        p = reserve_space(RESERVE_BYTES)
        if p == NULL:
            raise OSError(errno, "cannot reserve address space for the pool mapping")
        self.base = p
        self.reserved = RESERVE_BYTES
        self.alloc_segments()
        self.seg_flags[0] = SEG_NOFREE            # the superblock's segment
        self.reserve = 2 * SEG_SIZE               # a data extent for deletes' keys + a chunk segment
        self.free_hint = 1
        self.size = 0
        self.map_sync = want_sync
        # A file that is not a whole number of growth steps was cut short: it
        # is extended with zeros, which recovery reads as the end of the log.
        cdef uint64_t want = have if have else initial
        want = round_up(want, MAP_ALIGN)
        rc = self.ensure(want)
        if rc != 0:
            if rc == -ENOSPC:
                raise OSError(ENOSPC, f"no space left to create the pool file {self.path}")
            if want_sync and (rc == -EOPNOTSUPP or rc == -EINVAL):
                return ST_NO_MAP_SYNC                # not a DAX file: caller falls back
            raise OSError(-rc, f"cannot map pool file {self.path}")
        self.alloc_tail = round_up(have, SEG_SIZE) if have else SEG_SIZE
        # The first log chunks share segment 0 with the superblock.
        self.chunk_seg = 0
        self.chunk_seg_used = HEADER_SIZE if not have else SEG_SIZE
        return 0

    cdef int open_readonly(self, Vfs vfs, bytes path) except -1:
        cdef int rc
        cdef char *p
        self.path = path.decode("utf-8", "surrogateescape")
        self.file = File(vfs)
        rc = self.file.open_readonly(path)
        if rc != 0:
            raise OSError(-rc, f"cannot open pool file {self.path}")
        p = reserve_space(RESERVE_BYTES)
        if p == NULL:
            raise OSError(errno, "cannot reserve address space for the pool mapping")
        self.base = p
        self.reserved = RESERVE_BYTES
        self.readonly = 1
        # Replay notes record lsns per segment (unused by a reader, but the
        # replay code is the writer's).
        self.alloc_segments()
        self.size = 0
        rc = self.remap()
        if rc != 0:
            raise OSError(-rc, f"cannot map pool file {self.path}")
        return 0

    cdef int remap(self) noexcept nogil:
        # Only ever more: a cut of the writer's free tail leaves our mapping
        # of it in place, and nothing we can reach lies there (the reader
        # table keeps it from being freed).
        cdef uint64_t have
        cdef int rc = self.file.size(&have)
        if rc != 0:
            return rc
        have = have // 4096 * 4096
        if have <= self.size:
            return 0
        pthread_mutex_lock(&self.lock)
        rc = self.map_to(have)
        pthread_mutex_unlock(&self.lock)
        return rc

    cdef int ensure(self, uint64_t end) noexcept nogil:
        """Grow the file and the mapping to cover [0, end) (caller holds
        self.lock, or is opening)."""
        cdef uint64_t new_size
        cdef int rc
        if end <= self.size:
            return 0
        rc = self.file.vfs.check(FAULT_GROW)
        if rc != 0:
            return rc
        new_size = round_up(end, MAP_ALIGN)
        if new_size > self.reserved or (self.max_size and new_size > self.max_size):
            return -ENOSPC                        # (a --max-disk quota: the disk is "full")
        pthread_mutex_lock(&self.grow_lock)
        rc = self.extend_file(new_size)
        pthread_mutex_unlock(&self.grow_lock)
        if rc != 0:
            return rc
        return self.map_to(new_size)

    cdef int extend_file(self, uint64_t new_size) noexcept nogil:
        """Make the file at least new_size bytes (caller holds grow_lock).
        Zeros are written, not just fallocated: measured here, a later
        fdatasync over fallocated (unwritten) blocks costs ~2x, since the
        extents must be converted."""
        cdef uint64_t have
        cdef int rc = self.file.size(&have)
        if rc != 0 or have >= new_size:
            return rc
        rc = self.file.write_zeros(have, new_size - have)
        if rc != 0:
            # Give back what this growth took: nothing that was
            # acknowledged lives beyond the old size.
            self.file.truncate(have)
            return rc
        return self.file.sync()

    cdef int map_to(self, uint64_t new_size) noexcept nogil:
        """Map [size, new_size) of the (already extended) file after the
        current mapping (caller holds self.lock)."""
        cdef int flags
        if new_size <= self.size:
            return 0
        flags = MAP_SHARED
        if self.map_sync:
            flags = MAP_SHARED_VALIDATE | MAP_SYNC
        cdef int rc = self.file.map(self.base + self.size, self.size, new_size - self.size,
                                    PROT_READ if self.readonly else PROT_READ | PROT_WRITE, flags)
        if rc != 0:
            return rc
        self.size = new_size
        self.growths += 1
        return 0

    cdef int alloc_extent(self, uint64_t nbytes, uint64_t *off) noexcept nogil:
        return self.alloc_extent_ex(nbytes, off, 0)

    cdef int alloc_extent_ex(self, uint64_t nbytes, uint64_t *off, int use_reserve) noexcept nogil:
        cdef int rc
        cdef uint64_t o
        nbytes = round_up(nbytes if nbytes else 1, BUF_SIZE)
        pthread_mutex_lock(&self.lock)
        if nbytes == CHUNK_SIZE:
            if self.chunk_seg_used + CHUNK_SIZE > SEG_SIZE:
                # The log must go on for deletes to be written: its chunks
                # may use the reserve.
                rc = self.take_segments(1, &o, 1)
                if rc != 0:
                    pthread_mutex_unlock(&self.lock)
                    return rc
                self.chunk_seg = o >> SEG_SHIFT
                self.chunk_seg_used = 0
            off[0] = (self.chunk_seg << SEG_SHIFT) + self.chunk_seg_used
            self.chunk_seg_used += CHUNK_SIZE
            pthread_mutex_unlock(&self.lock)
            return 0
        rc = self.take_segments((nbytes + SEG_SIZE - 1) >> SEG_SHIFT, off, use_reserve)
        pthread_mutex_unlock(&self.lock)
        return rc

    cdef int take_free_run(self, uint64_t nseg, uint64_t *off) noexcept nogil:
        """The lowest run of nseg free segments below the allocation tail
        (caller holds self.lock): 0 and *off, or -ENOSPC when there is none."""
        cdef uint64_t s, run, first, tail_seg
        if self.free_segs < nseg:
            return -ENOSPC
        tail_seg = self.alloc_tail >> SEG_SHIFT
        s = self.free_hint
        run = 0
        first = s
        while s < tail_seg:
            if self.seg_flags[s] & SEG_FREE:
                if run == 0:
                    first = s
                run += 1
                if run == nseg:
                    break
            else:
                run = 0
            s += 1
        if run < nseg:
            if nseg == 1:
                self.free_segs = 0                # (cannot happen) resynchronise
            return -ENOSPC
        self.claim_run(first, nseg)
        off[0] = first << SEG_SHIFT
        return 0

    cdef void claim_run(self, uint64_t first, uint64_t nseg) noexcept nogil:
        """Free segments [first, first + nseg) are in use again (self.lock)."""
        cdef uint64_t s
        for s in range(first, first + nseg):
            self.seg_flags[s] &= ~SEG_FREE
            self.seg_live[s] = 0
        self.free_segs -= nseg
        self.reused_segs += nseg
        if first == self.free_hint:
            self.free_hint = first + nseg

    cdef uint64_t headroom(self) noexcept nogil:
        """Bytes that can be handed out without growing the file: free
        segments plus the mapped part past the allocation tail (self.lock)."""
        return self.free_segs * SEG_SIZE + (self.size - self.alloc_tail if self.size > self.alloc_tail else 0)

    cdef int take_segments(self, uint64_t nseg, uint64_t *off, int use_reserve) noexcept nogil:
        """nseg whole segments (caller holds self.lock): the lowest run of
        free ones, else new ones at the end of the file.

        A full disk is a state: once a growth failed with ENOSPC (or passed
        max_size), an ordinary allocation must leave `reserve` bytes of
        headroom (it first tries to grow again: deletes elsewhere on the disk
        may have made room) -- those are for what gives space back: deletes
        (their key and log record), log chunks and the cleaner's relocations
        (use_reserve)."""
        cdef int rc = self.full_disk_room(nseg << SEG_SHIFT, use_reserve)
        if rc != 0:
            return rc
        if self.take_free_run(nseg, off) == 0:
            return 0
        return self.take_tail(nseg, off, use_reserve)

    cdef int full_disk_room(self, uint64_t need, int use_reserve) noexcept nogil:
        """On a full disk, an ordinary allocation of `need` bytes must leave
        the reserve: 0 when it may go on, -ENOSPC (caller holds self.lock)."""
        cdef int rc
        if self.disk_full and not use_reserve and self.headroom() < need + self.reserve:
            rc = self.ensure(round_up(self.size, SEG_SIZE) + need + self.reserve)
            if rc != 0:
                return -ENOSPC if rc == -ENOSPC or rc == -EDQUOT else rc
            if not self.at_quota():
                self.disk_full = 0                # room again (deletes elsewhere on the disk)
        return 0

    cdef int at_quota(self) noexcept nogil:
        """The file's next growth step would pass max_size: the disk is full
        for ordinary allocations whatever a growth up to the quota just did
        (the grower's own test).  Clearing disk_full here let the foreground
        take the mapped rest up to the quota, reserve included, while the
        grower was still mapping it: compact() then found no room to move a
        value (caller holds self.lock)."""
        return self.max_size != 0 and \
            round_up(self.size + grow_step(self.size), MAP_ALIGN) > self.max_size

    cdef int extend_extent(self, uint64_t *end_p, uint64_t nbytes, int use_reserve) noexcept nogil:
        cdef int rc
        cdef uint64_t end = end_p[0]
        cdef uint64_t nseg = (nbytes + SEG_SIZE - 1) >> SEG_SHIFT, o, s, first = end >> SEG_SHIFT
        if nseg == 0 or end & (SEG_SIZE - 1):
            return 1
        pthread_mutex_lock(&self.lock)
        if end < self.alloc_tail:
            # In the file: the segments right after the extent, when all free.
            if first + nseg > self.alloc_tail >> SEG_SHIFT:
                pthread_mutex_unlock(&self.lock)
                return 1
            for s in range(first, first + nseg):
                if not self.seg_flags[s] & SEG_FREE:
                    pthread_mutex_unlock(&self.lock)
                    return 1
            self.claim_run(first, nseg)
            pthread_mutex_unlock(&self.lock)
            end_p[0] = end + (nseg << SEG_SHIFT)
            return 0
        # At the tail: new segments, while the free ones are few (under
        # 1/16 of the file) -- past that they are reused first, or a file
        # whose extent always ends at the tail would grow without bound.
        if end != self.alloc_tail or self.free_segs * 16 > (self.alloc_tail >> SEG_SHIFT):
            pthread_mutex_unlock(&self.lock)
            return 1
        rc = self.full_disk_room(nseg << SEG_SHIFT, use_reserve)
        if rc == 0:
            rc = self.take_tail(nseg, &o, use_reserve)
        pthread_mutex_unlock(&self.lock)
        if rc == 0:
            end_p[0] = end + (nseg << SEG_SHIFT)
        return rc

    cdef int take_tail(self, uint64_t nseg, uint64_t *off, int use_reserve) noexcept nogil:
        """nseg new segments at the allocation tail, growing the file when
        it must (caller holds self.lock)."""
        cdef int rc
        cdef uint64_t start, end, grow_to
        start = self.alloc_tail
        end = start + (nseg << SEG_SHIFT)
        if end > self.size:
            # The grower did not keep up (or is not running): grow here, by
            # the same step, so a growing database pays for few growths.
            grow_to = self.size + grow_step(self.size)
            if grow_to < end:
                grow_to = end
            rc = self.ensure(grow_to)
            if rc == 0:
                if not self.at_quota():
                    self.disk_full = 0
            elif (rc == -ENOSPC or rc == -EDQUOT) and end < grow_to:
                # The disk is nearly full: take only what we need -- and an
                # ordinary allocation leaves the reserve's worth on the disk.
                rc = self.ensure(end if use_reserve else end + self.reserve)
                if rc == 0:
                    # Only the tail of the disk was left: from now on
                    # ordinary allocations keep the reserve's headroom.
                    # (Only here: a whole growth step is no full disk, and
                    # marking one so kept compact() relocating round after
                    # round while the file grew twentyfold.)
                    self.disk_full = 1
            if rc == -ENOSPC or rc == -EDQUOT:
                self.disk_full = 1
                if use_reserve:
                    rc = self.ensure(end)
                if rc != 0:
                    return -ENOSPC
            if rc != 0:
                return rc
        self.alloc_tail = end
        if self.grower_running and not self.grow_requested and \
                self.size - self.alloc_tail < grow_step(self.size) // 2:
            self.grow_requested = 1
            pthread_cond_signal(&self.grow_cond)
        off[0] = start
        return 0

    cdef int seg_span(self, uint64_t off, uint64_t n, uint64_t *first,
                      uint64_t *last) noexcept nogil:
        """The segments [first, last] that [off, off + n) touches (an empty
        range counts as the byte at off); 0 when it lies outside the pool."""
        if n == 0:
            n = 1
        if off + n > self.reserved:
            return 0
        first[0] = off >> SEG_SHIFT
        last[0] = (off + n - 1) >> SEG_SHIFT
        return 1

    cdef void set_path(self, object path):
        self.path = path

    cdef void set_write_syscall(self, int on) noexcept nogil:
        self.write_syscall = on

    cdef void set_alloc_tail(self, uint64_t end) noexcept nogil:
        pthread_mutex_lock(&self.lock)
        self.alloc_tail = (end + SEG_SIZE - 1) // SEG_SIZE * SEG_SIZE
        pthread_mutex_unlock(&self.lock)

    cdef void set_max_size(self, uint64_t nbytes) noexcept nogil:
        pthread_mutex_lock(&self.lock)
        self.max_size = nbytes
        if nbytes == 0:
            self.disk_full = 0
        pthread_mutex_unlock(&self.lock)

    cdef void leave_chunk_seg(self) noexcept nogil:
        pthread_mutex_lock(&self.lock)
        self.chunk_seg_used = SEG_SIZE
        pthread_mutex_unlock(&self.lock)

    cdef int settled(self, uint64_t s, uint64_t data_seg, uint64_t log_seg) noexcept nogil:
        if self.seg_flags[s] & (SEG_FREE | SEG_NOFREE):
            return 0
        return s != data_seg and s != log_seg and s != self.chunk_seg

    cdef void free_unreachable(self, uint64_t data_seg, uint64_t log_seg, uint64_t head_lsn,
                               uint64_t dead_lsn, uint64_t dead_txn, int64_t reader_lsn,
                               int64_t reader_txn) noexcept nogil:
        cdef uint64_t s, tail
        pthread_mutex_lock(&self.lock)
        tail = self.alloc_tail >> SEG_SHIFT
        for s in range(1, tail):
            if not self.settled(s, data_seg, log_seg) or self.seg_live[s] != 0 or \
                    pdb_load32(&self.seg_pins[s]) != 0 or self.seg_lsn[s] >= head_lsn:
                self.seg_dead[s] = 0
                continue
            # Nothing from the head on names it (seg_lsn < head_lsn) and the
            # records that replaced what it held are at most dead_lsn, so a
            # reader whose state is at dead_lsn or later and whose tree is the
            # commit that stopped naming it or a later one cannot reach it.
            # (A reader of an older commit may be past dead_lsn and still
            # hold a delete that commit applied: its key is in here.)
            if self.seg_dead[s] == 0:
                self.seg_dead[s] = dead_lsn + 1
                self.seg_dtxn[s] = dead_txn
            if <int64_t>(self.seg_dead[s] - 1) > reader_lsn or \
                    <int64_t>self.seg_dtxn[s] > reader_txn:
                continue
            self.seg_dead[s] = 0
            self.seg_flags[s] = <uint8_t>(self.seg_flags[s] | SEG_FREE)
            self.free_segs += 1
            self.freed_segs += 1
            if s < self.free_hint:
                self.free_hint = s
        pthread_mutex_unlock(&self.lock)

    cdef void mark_nofree(self, uint64_t off, uint64_t n) noexcept nogil:
        cdef uint64_t s, first, last
        if n == 0 or not self.seg_span(off, n, &first, &last):
            return
        pthread_mutex_lock(&self.lock)
        for s in range(first, last + 1):
            self.seg_flags[s] |= SEG_NOFREE
        pthread_mutex_unlock(&self.lock)

    cdef void note_lsn(self, uint64_t off, uint64_t n, uint64_t lsn) noexcept nogil:
        cdef uint64_t s, first, last
        if self.seg_span(off, n, &first, &last):
            for s in range(first, last + 1):
                if self.seg_lsn[s] < lsn:
                    self.seg_lsn[s] = lsn

    cdef alloc_segments(self):
        """The per-segment arrays over the whole reserved range (calloc:
        untouched pages of them cost nothing)."""
        self.nsegs = RESERVE_BYTES >> SEG_SHIFT
        self.seg_live = <int64_t *>calloc(self.nsegs, sizeof(int64_t))
        self.seg_lsn = <uint64_t *>calloc(self.nsegs, sizeof(uint64_t))
        self.seg_pins = <int32_t *>calloc(self.nsegs, sizeof(int32_t))
        self.seg_flags = <uint8_t *>calloc(self.nsegs, sizeof(uint8_t))
        self.seg_dead = <uint64_t *>calloc(self.nsegs, sizeof(uint64_t))
        self.seg_dtxn = <uint64_t *>calloc(self.nsegs, sizeof(uint64_t))
        if self.seg_live == NULL or self.seg_lsn == NULL or self.seg_pins == NULL or \
                self.seg_flags == NULL or self.seg_dead == NULL or self.seg_dtxn == NULL:
            raise MemoryError()

    cdef void pin(self, uint64_t off, uint64_t n, int delta) noexcept nogil:
        cdef uint64_t s, first, last
        if self.seg_span(off, n, &first, &last):
            for s in range(first, last + 1):
                pdb_xadd32(&self.seg_pins[s], delta)

    cdef void add_live(self, uint64_t off, uint64_t n, int sign) noexcept nogil:
        """Add (sign > 0) or take away the bytes of [off, off + n): each
        segment gets the part of the range in it."""
        cdef uint64_t s, lo, hi, end = off + n
        cdef int64_t part
        if n == 0 or end > self.reserved:
            return
        s = off >> SEG_SHIFT
        while (s << SEG_SHIFT) < end:
            lo = s << SEG_SHIFT
            if lo < off:
                lo = off
            hi = (s + 1) << SEG_SHIFT
            if hi > end:
                hi = end
            part = <int64_t>(hi - lo)
            self.seg_live[s] += part if sign > 0 else -part
            s += 1

    cdef int64_t range_live(self, uint64_t off, uint64_t n) noexcept nogil:
        """Tree bytes in the segments [off, off + n) touches (a racy read:
        for heuristics, never for a decision to free)."""
        cdef uint64_t s, first, last
        cdef int64_t total = 0
        if self.seg_span(off, n, &first, &last):
            for s in range(first, last + 1):
                total += self.seg_live[s]
        return total

    cdef int64_t truncate_free_tail(self, uint64_t min_cut) noexcept nogil:
        cdef uint64_t tail_seg, s, new_tail, new_size
        cdef void *p
        cdef int err
        pthread_mutex_lock(&self.lock)
        tail_seg = self.alloc_tail >> SEG_SHIFT
        s = tail_seg
        while s > 1 and (self.seg_flags[s - 1] & SEG_FREE):
            s -= 1
        if s <= self.chunk_seg:
            s = self.chunk_seg + 1
        new_tail = s << SEG_SHIFT
        if new_tail > self.alloc_tail:
            new_tail = self.alloc_tail
        new_size = round_up(new_tail, MAP_ALIGN)
        # min_cut 0 (compact, a full disk) also gives back the grown part past
        # the allocation tail.
        if (min_cut > 0 and (new_tail >= self.alloc_tail or self.alloc_tail - new_tail < min_cut)) \
                or (min_cut == 0 and new_size >= self.size):
            pthread_mutex_unlock(&self.lock)
            return 0
        pthread_mutex_lock(&self.grow_lock)
        if new_size < self.size:
            # Back to reserved address space first, then cut the file.
            p = mmap(self.base + new_size, self.size - new_size, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
            if p == MAP_FAILED:
                pthread_mutex_unlock(&self.grow_lock)
                pthread_mutex_unlock(&self.lock)
                return -errno
            err = -self.file.truncate(new_size)
            if err != 0:
                # The mapping is gone but the file is not cut: map it again.
                pthread_mutex_unlock(&self.grow_lock)
                self.size = new_size
                self.map_to(round_up(self.alloc_tail, MAP_ALIGN))
                pthread_mutex_unlock(&self.lock)
                return -err
            self.size = new_size
        pthread_mutex_unlock(&self.grow_lock)
        for s in range(new_tail >> SEG_SHIFT, tail_seg):
            if self.seg_flags[s] & SEG_FREE:
                self.free_segs -= 1
            self.seg_flags[s] = 0
            self.seg_live[s] = 0
            self.seg_lsn[s] = 0
        cdef uint64_t cut = self.alloc_tail - new_tail
        if cut == 0:
            cut = 1                               # (only the slack past the tail went)
        self.alloc_tail = new_tail
        self.truncations += 1
        pthread_mutex_unlock(&self.lock)
        return <int64_t>cut

    cdef int write_at(self, uint64_t off, const void *p, size_t n) noexcept nogil:
        # Measured on the development VM (ext4 on virtio): a page dirtied
        # through a shared mapping adds ~1.3 ms to the next fdatasync, a page
        # dirtied by pwrite() ~0.1 ms (write-protect + writeback of mapped
        # pages).  So on ordinary files the bytes go in with pwrite(); the
        # mapping sees them at once (one page cache) and serves every read.
        cdef int rc
        if self.write_syscall:
            return self.file.write(off, p, n)
        rc = self.file.vfs.check(FAULT_WRITE)
        if rc == 0:
            memcpy(self.base + off, p, n)
        return rc

    cdef int write_at2(self, uint64_t off, const void *p1, size_t n1, const void *p2,
                       size_t n2) noexcept nogil:
        cdef int rc
        if self.write_syscall:
            return self.file.write2(off, p1, n1, p2, n2)
        rc = self.write_at(off, p1, n1)
        if rc == 0:
            rc = self.write_at(off + n1, p2, n2)
        return rc

    cdef int zero_at(self, uint64_t off, uint64_t n) noexcept nogil:
        cdef int rc
        if self.write_syscall:
            return self.file.write_zeros(off, n)
        rc = self.file.vfs.check(FAULT_WRITE)
        if rc == 0:
            memset(self.base + off, 0, n)
        return rc

    cdef void close_map(self) noexcept:
        if self.grower_thread is not None:
            with nogil:
                pthread_mutex_lock(&self.lock)
                self.grower_stop = 1
                pthread_cond_signal(&self.grow_cond)
                pthread_mutex_unlock(&self.lock)
            try:
                self.grower_thread.join()
            except BaseException:
                pass
            self.grower_thread = None
            self.grower_running = 0
        if self.base != NULL:
            munmap(self.base, self.reserved)
            self.base = NULL
            self.size = 0
        if self.file is not None:
            self.file.close()
