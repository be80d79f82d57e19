# pool.pxd -- the "DAX file": one file of fixed-size packet buffers, mapped
# shared at a fixed address for the life of the Pool.
#
# File layout (all integers little-endian):
#
#   [0, 4096)        two superblock slots of 2048 bytes (see Superblock)
#   [4096, size)     buffers of BUF_SIZE bytes, handed out as extents of
#                    contiguous buffers: log chunks (reflog) and data extents
#                    (keys and values, packed back to back)
#
# Growth never moves the mapping: at open we reserve a large range of address
# space (PROT_NONE, no memory is committed) and map each newly grown piece of
# the file with MAP_FIXED right after the previous one.  A pointer into the
# pool, and every memoryview handed out, stays valid until close.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from pastedb.core.clib cimport pthread_cond_t, pthread_mutex_t

cdef enum:
    BUF_SIZE = 2048                   # one packet buffer (netmap's size)
    SUPER_SLOT = 2048                 # bytes per superblock slot
    HEADER_SIZE = 4096                # both slots
    POOL_VERSION = 2                  # 2: index checkpoint fields (tree_lsn, tree_live, alloc_tail)
    DATA_EXTENT = 1048576             # data extent handed to the put path (1 MiB)
    MAP_ALIGN = 2097152               # growth granularity (2 MiB)

# Injected I/O failure (tests, SQLite style): operation number `at` (1-based,
# counted from when the fault is armed) fails with -err; with `persistent`
# every later one fails too.  at == 0: disarmed.
cdef struct Fault:
    long at                           # which operation fails
    long count                        # operations seen since armed
    int persistent                    # keep failing after the first
    int err                           # errno to fail with
    long fired                        # failures injected


cdef inline int fault_hit(Fault *f) noexcept nogil:
    if f.at == 0:
        return 0
    f.count += 1
    if f.count == f.at or (f.persistent and f.count > f.at):
        f.fired += 1
        return -f.err
    return 0


# One superblock slot.  The slot with the higher `seq` whose crc verifies wins;
# updates write the other slot, so a torn slot write loses nothing.
cdef packed struct Superblock:
    char magic[8]                     # b"PASTEDB\0"
    uint32_t version                  # POOL_VERSION
    uint32_t buf_size                 # BUF_SIZE at creation
    uint64_t seq                      # bumped on every superblock write
    uint64_t log_head_off             # first log chunk to replay (byte offset)
    uint64_t log_head_size            # its size in bytes
    uint64_t log_head_lsn             # LSN of the first record in it
    uint64_t created_ns               # creation time (informational)
    uint64_t tree_lsn                 # applied_lsn of the index checkpoint this slot goes with
    uint64_t tree_live                # key + value bytes of the live entries in that checkpoint
    uint64_t alloc_tail               # allocator high-water mark when the checkpoint was cut
    uint32_t crc                      # crc32c of the slot bytes before this field


cdef class Pool:
    cdef int fd                       # the pool file, O_RDWR
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
    cdef Fault write_fault            # injected failures of write_at
    cdef Fault grow_fault             # injected failures of growth (ENOSPC)
    cdef pthread_mutex_t grow_lock    # serialises extending the file (zero writes)
    cdef pthread_cond_t grow_cond     # wakes the grower (under self.lock)
    cdef int grow_requested           # the allocator is within a step of the end
    cdef int grower_stop
    cdef object grower_thread         # background growth thread, or None
    cdef int grower_running           # grower_thread is alive (readable without the GIL)
    cdef readonly int background_growths

    # Map `path` (creating it with `initial` bytes when new; `created` says so).
    # Returns 0, or -2 when want_sync and the file system refused MAP_SYNC.
    cdef int open_file(self, bytes path, int create, int want_sync, uint64_t initial, int *created) except -1
    # Make [0, end) part of the file and of the mapping.  -errno on failure
    # (ENOSPC leaves the file as it was).
    cdef int ensure(self, uint64_t end) noexcept nogil
    cdef int extend_file(self, uint64_t new_size) noexcept nogil
    cdef int map_to(self, uint64_t new_size) noexcept nogil
    cdef void grower(self) noexcept nogil
    # Hand out an extent of at least nbytes, buffer aligned; offset in *off.
    cdef int alloc_extent(self, uint64_t nbytes, uint64_t *off) noexcept nogil
    # Write bytes into the pool at `off`: stores through the mapping, or
    # pwrite() when write_syscall is set.  0 or -errno.
    cdef int write_at(self, uint64_t off, const void *p, size_t n) noexcept nogil
    cdef void close_map(self) noexcept
