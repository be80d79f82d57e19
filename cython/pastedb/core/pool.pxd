# pool.pxd -- the "DAX file": one file of fixed-size packet buffers, mapped
# shared at a fixed address for the life of the Pool.
#
# The file layout (superblock slots, buffers, segments) is format.pxd's.
#
# Growth never moves the mapping: at open we reserve a large range of address
# space (PROT_NONE, no memory is committed) and map each newly grown piece of
# the file with MAP_FIXED right after the previous one.  A pointer into the
# pool, and every memoryview handed out, stays valid until close.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from pastedb.core.clib cimport pthread_cond_t, pthread_mutex_t
from pastedb.core.vfs cimport File, Vfs

cdef enum:
    DATA_EXTENT = 1048576             # data extent handed to the put path (1 MiB)
    SEG_FREE = 1                      # seg_flags: reusable
    SEG_NOFREE = 2                    # never reclaimed (the superblock's segment)



cdef class Pool:
    cdef File file                    # the pool file, written only through it (vfs.pxd)
    cdef object path                  # its path (for messages)
    cdef char *base                   # start of the reserved address range
    cdef uint64_t reserved            # bytes of address space reserved
    cdef uint64_t size                # bytes of the file mapped (== file size)
    cdef int map_sync                 # mapped with MAP_SYNC (real DAX)
    cdef int growths                  # times the file was grown (stats)
    cdef pthread_mutex_t lock         # serialises growth and extent allocation
    cdef uint64_t alloc_tail          # next free byte for the bump allocator
    cdef long live_views              # memoryviews into the mapping still alive
    cdef int write_syscall            # write with pwrite() instead of stores (see write_at)
    cdef int readonly                 # a read-only handle's pool: mapped PROT_READ, never written
    cdef pthread_mutex_t grow_lock    # serialises extending the file (zero writes)
    cdef pthread_cond_t grow_cond     # wakes the grower (under self.lock)
    cdef int grow_requested           # the allocator is within a step of the end
    cdef int grower_stop
    cdef object grower_thread         # background growth thread, or None
    cdef int grower_running           # grower_thread is alive (readable without the GIL)
    cdef readonly int background_growths
    # Space reclamation, per 1 MiB segment (index = offset >> SEG_SHIFT).
    # Every extent is a run of whole segments, except log chunks, which are
    # carved four to a segment.  A segment is reused only when the engine's
    # free pass finds it holds no byte the tree names (seg_live), no byte a
    # staged-but-unappended write names (seg_pins) and no byte a record the
    # next recovery would read names (seg_lsn below the log head's lsn).
    cdef uint64_t nsegs               # entries in the arrays below (reserved >> SEG_SHIFT)
    cdef int64_t *seg_live            # bytes of tree entries in the segment (the indexer)
    cdef uint64_t *seg_lsn            # newest record naming bytes in it (log lock)
    cdef int32_t *seg_pins            # staged bytes not yet appended (atomic)
    cdef uint8_t *seg_flags           # SEG_FREE / SEG_NOFREE (self.lock)
    cdef uint64_t *seg_dead           # 1 + the dead_lsn of the first free pass that found it free to release (0: not yet): the newest record that checkpoint applied; released once every reader is at or past it
    cdef uint64_t *seg_dtxn           # the tree commit that free pass published: released once every reader's commit is at or past it too
    cdef uint64_t free_segs           # segments with SEG_FREE
    cdef uint64_t free_hint           # no free segment below this one
    cdef uint64_t chunk_seg           # segment being carved into log chunks (0: none)
    cdef uint64_t chunk_seg_used      # bytes of it handed out
    cdef readonly uint64_t reused_segs        # segments handed out again (stats)
    cdef readonly uint64_t freed_segs         # segments the free passes released (stats)
    cdef readonly uint64_t truncations        # times the file was cut back
    # A full disk (pool.pyx, take_segments).
    cdef uint64_t max_size            # quota on the file's size (0: none), the --max-disk share
    cdef uint64_t reserve             # headroom ordinary allocations leave once the disk is full
    cdef int disk_full                # the last growth failed for want of space (self.lock)

    # Map `path` through `vfs` (creating it with `initial` bytes when new;
    # `created` says so).  Returns 0, or ST_NO_MAP_SYNC when want_sync and the
    # file system refused MAP_SYNC.
    cdef int open_file(self, Vfs vfs, bytes path, int create, int want_sync, uint64_t initial, int *created) except -1
    # A read-only handle's pool: open and map the file as it is (never grown).
    cdef int open_readonly(self, Vfs vfs, bytes path) except -1
    # Read-only: map what the file holds now (the writer grew it).  0 or -errno.
    cdef int remap(self) noexcept nogil
    # Make [0, end) part of the file and of the mapping.  -errno on failure
    # (ENOSPC leaves the file as it was).
    cdef int ensure(self, uint64_t end) noexcept nogil
    cdef int extend_file(self, uint64_t new_size) noexcept nogil
    cdef int map_to(self, uint64_t new_size) noexcept nogil
    cdef void grower(self) noexcept nogil
    # Hand out an extent of at least nbytes, buffer aligned; offset in *off.
    # A log chunk (format's CHUNK_SIZE) is carved from a chunk segment; anything else
    # is whole segments: the lowest run of free ones, else new ones at the
    # end of the file.
    cdef int alloc_extent(self, uint64_t nbytes, uint64_t *off) noexcept nogil
    # use_reserve: may take the space kept for deletes once the disk is full
    # (see take_segments).
    cdef int alloc_extent_ex(self, uint64_t nbytes, uint64_t *off, int use_reserve) noexcept nogil
    cdef int take_segments(self, uint64_t nseg, uint64_t *off, int use_reserve) noexcept nogil
    cdef int full_disk_room(self, uint64_t need, int use_reserve) noexcept nogil
    cdef int at_quota(self) noexcept nogil
    cdef int take_tail(self, uint64_t nseg, uint64_t *off, int use_reserve) noexcept nogil
    cdef void claim_run(self, uint64_t first, uint64_t nseg) noexcept nogil
    # Grow the extent that ends at *end (a segment boundary; moved to the new
    # end on success) by whole segments covering nbytes, in place: the free segments right after it,
    # or new ones when it ends at the allocation tail and free segments are
    # under 1/16 of the file (past that they are reused first, as
    # alloc_extent does).  0 done, 1 not possible here (allocate a new
    # extent), or -errno (a full disk, as alloc_extent).
    cdef int extend_extent(self, uint64_t *end, uint64_t nbytes, int use_reserve) noexcept nogil
    cdef uint64_t headroom(self) noexcept nogil
    cdef int take_free_run(self, uint64_t nseg, uint64_t *off) noexcept nogil
    # The file was renamed into place (messages name it).
    cdef void set_path(self, object path)
    # Set once at open by the engine (see write_at).
    cdef void set_write_syscall(self, int on) noexcept nogil
    # Recovery: the bump allocator resumes at `end`, rounded up to a segment.
    cdef void set_alloc_tail(self, uint64_t end) noexcept nogil
    # The quota on the file's size (0: none, which also ends a full-disk state).
    cdef void set_max_size(self, uint64_t nbytes) noexcept nogil
    # The cleaner's packing: carve no more log chunks from the current chunk segment.
    cdef void leave_chunk_seg(self) noexcept nogil
    # Segment s is in ordinary use: not free, not SEG_NOFREE, not being
    # filled (data_seg, log_seg, the chunk segment; see free_unreachable).
    # Caller holds self.lock (and what keeps data_seg and log_seg current).
    cdef int settled(self, uint64_t s, uint64_t data_seg, uint64_t log_seg) noexcept nogil
    # The free pass: release every settled segment (not free, not SEG_NOFREE,
    # not being filled: the data extent's segment data_seg, the log's chunk
    # segment log_seg, the chunk segment being carved) that no tree entry
    # names (seg_live), no staged write pins and no record from the log head
    # (head_lsn) on names.  A segment found so is stamped with dead_lsn (the
    # newest record the checkpoint applied: what it stopped naming died by
    # then) and with the tree commit it published (dead_txn), and released
    # once every reader is at or past both (reader_lsn, reader_txn): a reader
    # of an older commit whose log position is past dead_lsn still holds, in
    # its pending table, the deletes that commit applied -- and their keys
    # are bytes of the segment.  The caller holds
    # whatever keeps records from being appended and bytes from being staged
    # meanwhile (the engine: its log lock and data lock).
    cdef void free_unreachable(self, uint64_t data_seg, uint64_t log_seg, uint64_t head_lsn,
                               uint64_t dead_lsn, uint64_t dead_txn, int64_t reader_lsn,
                               int64_t reader_txn) noexcept nogil
    # Segment bookkeeping (see above).
    cdef void mark_nofree(self, uint64_t off, uint64_t n) noexcept nogil
    cdef void note_lsn(self, uint64_t off, uint64_t n, uint64_t lsn) noexcept nogil
    cdef alloc_segments(self)
    cdef void pin(self, uint64_t off, uint64_t n, int delta) noexcept nogil
    cdef int seg_span(self, uint64_t off, uint64_t n, uint64_t *first, uint64_t *last) noexcept nogil
    cdef void add_live(self, uint64_t off, uint64_t n, int sign) noexcept nogil
    cdef int64_t range_live(self, uint64_t off, uint64_t n) noexcept nogil
    # Cut the file back to the last segment in use when at least `min_cut`
    # bytes at its end are free (caller guarantees no pointer into them is
    # in use).  Returns bytes cut, or -errno.
    cdef int64_t truncate_free_tail(self, uint64_t min_cut) noexcept nogil
    # Write bytes into the pool at `off`: stores through the mapping, or
    # pwrite() when write_syscall is set.  0 or -errno.
    cdef int write_at(self, uint64_t off, const void *p, size_t n) noexcept nogil
    # write_at(off, p1, n1) then write_at(off + n1, p2, n2) (one system call
    # where File.write2 can make it one).  0 or -errno.
    cdef int write_at2(self, uint64_t off, const void *p1, size_t n1, const void *p2,
                       size_t n2) noexcept nogil
    # Write n zeros at `off`, the same way.  0 or -errno.
    cdef int zero_at(self, uint64_t off, uint64_t n) noexcept nogil
    cdef void close_map(self) noexcept
