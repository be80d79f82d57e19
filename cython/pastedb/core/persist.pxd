# persist.pxd -- durability primitives behind one interface.
#
#   PERSIST_PMEM       the pool is mapped MAP_SYNC on a DAX file system: a range
#                      is persisted by writing back its cache lines (clwb, else
#                      clflushopt, else clflush, chosen by CPUID); the barrier
#                      is one sfence.  No system calls.
#   PERSIST_FDATASYNC  an ordinary file: ranges need nothing, the barrier is one
#                      fdatasync() of the pool file (data and log live in the
#                      same file, so one call covers both).
#   PERSIST_MSYNC      like fdatasync, but msync(MS_SYNC) over the range dirtied
#                      since the last barrier.
#   PERSIST_NONE       no barrier at all: survives a process crash (the page
#                      cache has the bytes), not a power loss.
#
# Crash simulation is not a mode: with the database's Vfs simulating
# (persist="crashsim", "crashsim-msync", "crashsim-pmem": the fdatasync,
# msync or pmem backend), every backend runs as in production and only its
# barrier is simulated (vfs.pxd).

# Writers call persist_range() on every byte range they wrote, then a group
# commit calls barrier() once for everything written before it.

from libc.stdint cimport uint64_t
from pastedb.core.clib cimport pthread_mutex_t
from pastedb.core.pool cimport Pool

cdef enum PersistMode:
    PERSIST_AUTO = 0
    PERSIST_NONE = 1
    PERSIST_FDATASYNC = 2
    PERSIST_MSYNC = 3
    PERSIST_PMEM = 4


cdef class Persist:
    cdef Pool pool                    # the mapping whose bytes we persist
    cdef PersistMode mode             # chosen at open
    cdef int flush_kind               # PDB_FLUSH_* for PERSIST_PMEM
    cdef pthread_mutex_t dirty_lock   # guards the msync dirty range
    cdef uint64_t dirty_lo            # msync: lowest dirty byte since last barrier
    cdef uint64_t dirty_hi            # msync: one past the highest
    cdef readonly unsigned long barriers   # barriers issued (stats)
    cdef readonly unsigned long barrier_errors

    # Note that [p, p + n) of the mapping was written.
    cdef void persist_range(self, const char *p, uint64_t n) noexcept nogil
    # Make everything persist_range()d before this call durable.  0 or -errno.
    cdef int barrier(self) noexcept nogil


cdef str mode_name(PersistMode mode)
# The backend a persist= name selects; *sim says whether its durability is simulated.
cdef PersistMode mode_from_name(str name, int *sim) except *
