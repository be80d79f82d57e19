# readers.pxd -- the reader table: read-only handles in any process register
# here, and the writer's reclamation asks it what they can still reach.
#
# The file layout (ReaderHeader, ReaderSlot, the slot lock bytes) is
# format.pxd's.  A slot says "my state is tree commit `txn` plus the log up to
# `lsn`"; the writer then reuses no tree page that commit reaches (BTree's
# ext_min_txn) and frees no segment that died after a checkpoint at `lsn` or
# later (the engine's free pass).  Registration order (both sides fence):
#   reader: claim the slot with txn = lsn = 0 (pins everything), then read the
#           superblock and the tree meta, then store the real txn and lsn;
#   writer: make the new superblock / tree meta durable, then scan.
# Whichever comes second sees the other: a reader the scan missed read the
# state the writer had already published, which needs nothing freed.

from libc.stdint cimport int64_t
from pastedb.core.format cimport ReaderHeader, ReaderSlot


cdef class ReaderTable:
    cdef object path                  # the READERS file
    cdef object ident                 # (st_dev, st_ino): the process-wide descriptor's key
    cdef int fd                       # shared by every table of the file in this process
    cdef char *map                    # RDR_FILE_SIZE bytes, MAP_SHARED
    cdef ReaderHeader *hdr
    cdef ReaderSlot *slots
    cdef int slot                     # this handle's slot, -1 none
    cdef int owner_pid                # pid that claimed it (a forked child never releases it)
    cdef int writer                   # this table belongs to the writer (it wrote writer_pid)

    # Reader side.  claim: the slot pins everything; pin: the real state.
    cdef int claim(self) except -1
    cdef void pin(self, int64_t txn, int64_t lsn) noexcept nogil
    cdef void release(self) noexcept
    # Writer side.  The oldest tree commit and log position live readers
    # hold (INT64_MAX each when none); returns how many are live.
    cdef int scan(self, int64_t *min_txn, int64_t *min_lsn) noexcept nogil
    cdef void publish_durable(self, int64_t lsn) noexcept nogil
    cdef void publish_tree(self, int64_t txn) noexcept nogil
