# vfs.pxd -- the one I/O layer under every file of a database (SQLite's VFS
# idea): the pool, the index and the superblock inside the pool are written,
# grown, cut, mapped and made durable only through a File of one Vfs.
#
# That one place gives the tests two things:
#
#   faults     one numbering of I/O operations for the whole database (SQLite
#              style): the n-th write, barrier, growth, write-or-barrier
#              ("io") or operation of any kind ("kill": the process SIGKILLs
#              itself there) fails, once or from then on.
#
#   crash simulation (Vfs.sim, a test-only persistence mode): production code
#              runs unchanged and its writes reach the real file, but no
#              barrier reaches the disk.  Instead the simulator keeps, per
#              file, the durable image (what a power loss cannot take away)
#              and the operations since that file's last barrier: every
#              pwrite, splice, recv into the mapping, zero fill, ftruncate and
#              flushed store.  fdatasync / msync / the pmem fence apply a
#              file's pending operations to its durable image.  A crash image
#              is every file's durable image plus any subset of its pending
#              operations, each whole, torn at a 512-byte sector of the file,
#              or lost -- pool and index torn together.  Renames (the atomic
#              creation of pool and index) are durable at once: both are
#              followed by a directory fsync.

from libc.stdint cimport uint32_t, uint64_t
from pastedb.core.clib cimport pthread_mutex_t

cdef enum:
    SECTOR = 512                      # the unit a torn write is cut at
    SIM_FILES = 8                     # files the simulator can follow
    SIM_NAME = 64                     # longest file name (basename) it keeps
    OP_WRITE = 1                      # bytes written (pwrite, splice, recv, store)
    OP_ZERO = 2                       # zeros written (growth)
    OP_TRUNCATE = 3                   # the file's size set
    FAULT_WRITE = 0                   # every write into a file
    FAULT_BARRIER = 1                 # every fdatasync / msync / fence
    FAULT_GROW = 2                    # every growth of the pool
    FAULT_IO = 3                      # writes and barriers, one count
    FAULT_KILL = 4                    # any operation: SIGKILL this process there
    NFAULTS = 5


# Injected failure: operation number `at` (1-based, counted from when the
# fault is armed) fails with -err; with `persistent` every later one fails
# too.  at == 0: disarmed.
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


cdef struct SimOp:                    # an operation not yet covered by a barrier
    int slot                          # which file (SimImage index)
    int kind                          # OP_WRITE / OP_ZERO / OP_TRUNCATE
    uint64_t off                      # write: file offset; truncate: the new size
    uint64_t len                      # bytes (0 for a truncate)
    char *data                        # OP_WRITE: malloc'ed copy of the bytes


cdef struct SimImage:                 # the durable state of one file
    int used                          # slot in use
    char name[64]                     # the file's basename (SIM_NAME)
    char *data                        # its durable bytes (malloc)
    uint64_t size                     # durable file size
    uint64_t cap                      # bytes allocated at data


cdef class Vfs:
    cdef Fault faults[5]              # NFAULTS, indexed by FAULT_*
    cdef uint32_t torn                # a failing write first writes this many bytes
    cdef int nosync                   # persist="none": barriers are counted, not issued
    cdef readonly int sim             # crash simulation: barriers update the images below
    cdef pthread_mutex_t lock         # guards everything below
    cdef SimImage files[8]            # SIM_FILES durable images
    cdef SimOp *ops                   # pending operations, in the order they were made
    cdef size_t nops
    cdef size_t opcap
    cdef readonly long sim_ops        # operations (writes, truncates, barriers) seen
    cdef long image_every             # > 0: write an image before every n-th operation ...
    cdef char image_dir[4096]         # ... into the directory image_dir + <number>
    cdef uint64_t image_seed          # ... choosing with this seed (+ the image number)
    cdef readonly long images_taken   # images written by that trigger
    cdef readonly int sim_failed      # out of memory keeping an image: images are void

    # A fault check for one operation of `kind`: 0 or -errno (SIGKILL for FAULT_KILL).
    cdef int check(self, int kind) noexcept nogil
    # The simulator's slot for the file `path` open at fd (taking its bytes
    # as durable when it is new to the simulator); -1 when not simulating.
    cdef int sim_attach(self, const char *path, int fd) noexcept nogil
    # Note an operation of file `slot` (data: the bytes of an OP_WRITE).
    cdef void sim_record(self, int slot, int kind, uint64_t off, const char *data,
                         uint64_t n) noexcept nogil
    # A barrier of file `slot` succeeded (ok) or failed (what was pending may be gone).
    cdef void sim_barrier(self, int slot, int ok) noexcept nogil
    # Counts one operation; writes the triggered image when it is due.
    cdef void sim_tick(self) noexcept nogil
    # Write a crash image into directory `dir` (lock held).  0 or -errno.
    cdef int image_locked(self, const char *dir, uint64_t seed, double keep,
                          double torn) noexcept nogil
    # rename(2), followed by the simulator (its slot takes the new name).  0 or -errno.
    cdef int rename(self, const char *old, const char *new) noexcept nogil


cdef class File:
    cdef Vfs vfs                      # the database's I/O layer
    cdef int fd                       # the open file, -1 when closed
    cdef int slot                     # simulator slot, -1 when not simulated

    # Open `path` O_RDWR (O_CREAT with create).  0 or -errno.
    cdef int open(self, const char *path, int create) noexcept nogil
    # Open for reading only (a read-only handle: never written, never simulated).
    cdef int open_readonly(self, const char *path) noexcept nogil
    cdef void close(self) noexcept nogil
    # File size in *size.  0 or -errno.
    cdef int size(self, uint64_t *size) noexcept nogil
    # Write all n bytes at off (pwrite).  0 or -errno.
    cdef int write(self, uint64_t off, const void *p, size_t n) noexcept nogil
    # write(off, p1, n1) then write(off + n1, p2, n2): one pwritev() when
    # nothing watches the operations one by one (no simulation, no fault
    # armed for writes), else exactly those two writes.  0 or -errno.
    cdef int write2(self, uint64_t off, const void *p1, size_t n1, const void *p2,
                    size_t n2) noexcept nogil
    # Write n zeros at off.  0 or -errno.
    cdef int write_zeros(self, uint64_t off, uint64_t n) noexcept nogil
    # Set the file's size (ftruncate; counted as a write).  0 or -errno.
    cdef int truncate(self, uint64_t size) noexcept nogil
    # Give every hole in [0, end) disk blocks (posix_fallocate), so that a
    # store through a shared mapping never faults on a full disk.  0 or -errno
    # (-ENOSPC when the disk cannot hold them).
    cdef int allocate_holes(self, uint64_t end) noexcept nogil
    # Write back [off, off + n) now and wait for it (sync_file_range): not a
    # barrier -- no device flush, no metadata, nothing the crash simulator
    # counts as durable -- but it paces a big flush, so the disk never holds
    # more than one such range of this file's writes queued before another
    # file's barrier.  Skipped under simulation and nosync; errors are left
    # to the barrier that follows.
    cdef void writeback(self, uint64_t off, uint64_t n) noexcept nogil
    # Barriers: fdatasync, msync(MS_SYNC) of [addr, addr + n), the pmem fence.  0 or -errno.
    cdef int sync(self) noexcept nogil
    cdef int msync(self, char *addr, uint64_t n) noexcept nogil
    cdef int fence(self) noexcept nogil
    # [off, off + n) was stored through the mapping at p and flushed (pmem):
    # durable at the next fence.
    cdef void note_store(self, uint64_t off, const char *p, uint64_t n) noexcept nogil
    # Move up to n bytes from the pipe pipe_fd into the file at off (splice);
    # bytes moved, or -errno (0: the pipe was empty).
    cdef long splice_from(self, int pipe_fd, uint64_t off, size_t n) noexcept nogil
    # recv() from sock into dst, the mapping of [off, off + n); as recv().
    # record: the stores are made durable by the file's barrier (not a flush).
    cdef long recv_into(self, int sock, char *dst, uint64_t off, size_t n, int record) noexcept nogil
    # Note [off, off + n) as written, copying the bytes from the file.
    cdef void record_from_file(self, uint64_t off, uint64_t n) noexcept nogil
    # Map [off, off + n) of the file at addr (MAP_FIXED).  0 or -errno.
    cdef int map(self, char *addr, uint64_t off, uint64_t n, int prot, int flags) noexcept nogil


# Reserve n bytes of address space (PROT_NONE, nothing committed) for a
# mapping that grows in place; NULL with errno set on failure.
cdef char *reserve_space(uint64_t n) noexcept nogil
