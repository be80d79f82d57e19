"""The reader table (READERS): read-only handles register; the writer's
reclamation respects what they hold.  See readers.pxd for the protocol."""

import fcntl
import os

from libc.stdint cimport int64_t
from pastedb.core.clib cimport (
    F_GETLK, F_UNLCK, F_WRLCK, EINVAL, EOPNOTSUPP, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE,
    errno, fcntl as c_fcntl, posix_fallocate, posix_flock, getpid, mmap, munmap, pdb_load_sc, pdb_store_sc, pdb_xadd_sc,
)
from pastedb.core.format cimport (
    RDR_FILE_SIZE, RDR_LOCK_BASE, RDR_MAGIC, RDR_SLOTS, RDR_VERSION, ReaderHeader, ReaderSlot,
)

from pastedb.errors import Error

READERS_FILE = "READERS"

# One descriptor per READERS file per process: closing any descriptor of a
# file drops every POSIX lock the process holds on it, so handles share one
# and it is closed only when the last table of the file goes.
_files = {}                           # (st_dev, st_ino) -> [fd, tables using it]
_held = set()                         # (ident, slot) claimed by a handle of this process


def _after_fork_in_child():
    # The child holds none of the parent's locks; its copies of the parent's
    # tables must neither release the parent's slots nor close shared fds.
    _held.clear()
    _files.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


cdef class ReaderTable:

    def __cinit__(self):
        self.fd = -1
        self.slot = -1
        self.map = NULL

    def __init__(self, directory, bint writer, bint create=True):
        self.path = os.path.join(os.fspath(directory), READERS_FILE)
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        fd = os.open(self.path, flags, 0o644)
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        ent = _files.get(ident)
        if ent is not None:
            os.close(fd)                  # this process holds no lock through it yet
            fd = ent[0]
            ent[1] += 1
        else:
            _files[ident] = [fd, 1]
        self.ident = ident
        self.fd = fd
        # Blocks, not a hole: a store into a hole of a shared mapping on a
        # full disk is answered with SIGBUS, an error here instead.
        cdef int rc = posix_fallocate(fd, 0, RDR_FILE_SIZE)
        if rc != 0 and rc != EOPNOTSUPP and rc != EINVAL:
            self._unref()
            raise OSError(rc, f"cannot make room for the reader table {self.path}")
        cdef void *p = mmap(NULL, RDR_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            e = errno
            self._unref()
            raise OSError(e, f"cannot map the reader table {self.path}")
        self.map = <char *>p
        self.hdr = <ReaderHeader *>p
        self.slots = <ReaderSlot *>(self.map + sizeof(ReaderHeader))
        if pdb_load_sc(&self.hdr.magic) != RDR_MAGIC:
            pdb_store_sc(&self.hdr.version, RDR_VERSION)
            pdb_store_sc(&self.hdr.magic, RDR_MAGIC)
        elif pdb_load_sc(&self.hdr.version) != RDR_VERSION:
            self.close()
            raise Error(f"{self.path}: reader table version {self.hdr.version}, "
                        f"this build knows {RDR_VERSION}")
        self.writer = writer

    def start_writer(self):
        """This process writes from now on (after publishing its durable lsn
        and tree commit: a reader that sees the new epoch reads them next)."""
        pdb_store_sc(&self.hdr.writer_pid, getpid())
        pdb_xadd_sc(&self.hdr.writer_epoch, 1)

    def __dealloc__(self):
        self.close()

    def _unref(self):
        ent = _files.get(self.ident)
        if ent is not None and ent[0] == self.fd:
            ent[1] -= 1
            if ent[1] == 0:
                del _files[self.ident]
                os.close(self.fd)
        self.fd = -1

    def close(self):
        """Release the slot (reader) or say no writer runs (writer)."""
        if self.map == NULL:
            return
        self.release()
        if self.writer and pdb_load_sc(&self.hdr.writer_pid) == getpid():
            pdb_store_sc(&self.hdr.writer_pid, 0)
            pdb_xadd_sc(&self.hdr.writer_epoch, 1)
        self.writer = 0
        munmap(self.map, RDR_FILE_SIZE)
        self.map = NULL
        if self.fd >= 0:
            self._unref()

    cdef int claim(self) except -1:
        cdef int i
        for i in range(RDR_SLOTS):
            if (self.ident, i) in _held:
                continue
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, RDR_LOCK_BASE + i)
            except OSError:
                continue                  # a live reader in another process
            _held.add((self.ident, i))
            self.slot = i
            self.owner_pid = getpid()
            # Pin everything before the caller reads the superblock (the
            # stores are sequentially consistent: a full fence after each).
            pdb_store_sc(&self.slots[i].txn, 0)
            pdb_store_sc(&self.slots[i].lsn, 0)
            pdb_store_sc(&self.slots[i].pid, getpid())
            return 0
        raise Error(f"{self.path}: all {RDR_SLOTS} reader slots are in use")

    cdef void pin(self, int64_t txn, int64_t lsn) noexcept nogil:
        if self.slot >= 0:
            pdb_store_sc(&self.slots[self.slot].txn, txn)
            pdb_store_sc(&self.slots[self.slot].lsn, lsn)

    cdef void release(self) noexcept:
        if self.slot < 0:
            return
        if self.owner_pid == getpid() and (self.ident, self.slot) in _held:
            pdb_store_sc(&self.slots[self.slot].pid, 0)
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, RDR_LOCK_BASE + self.slot)
            except OSError:
                pass
            _held.discard((self.ident, self.slot))
        self.slot = -1

    cdef int scan(self, int64_t *min_txn, int64_t *min_lsn) noexcept nogil:
        cdef posix_flock fl
        cdef int i, live = 0
        cdef int64_t pid, t, l, me = getpid()
        min_txn[0] = 0x7FFFFFFFFFFFFFFF
        min_lsn[0] = 0x7FFFFFFFFFFFFFFF
        if self.map == NULL:
            return 0
        for i in range(RDR_SLOTS):
            pid = pdb_load_sc(&self.slots[i].pid)
            if pid == 0:
                continue
            if pid != me:
                # Held by a live process?  (Our own locks never conflict
                # with us, so a slot with our pid is one of ours.)
                fl.l_type = F_WRLCK
                fl.l_whence = 0
                fl.l_start = RDR_LOCK_BASE + i
                fl.l_len = 1
                fl.l_pid = 0
                if c_fcntl(self.fd, F_GETLK, &fl) != 0:
                    pass                  # cannot tell: count it as live
                elif fl.l_type == F_UNLCK:
                    continue              # its process died: stale
            t = pdb_load_sc(&self.slots[i].txn)
            l = pdb_load_sc(&self.slots[i].lsn)
            if pdb_load_sc(&self.slots[i].pid) == 0:
                continue                  # released meanwhile
            live += 1
            if t < min_txn[0]:
                min_txn[0] = t
            if l < min_lsn[0]:
                min_lsn[0] = l
        return live

    cdef void publish_durable(self, int64_t lsn) noexcept nogil:
        if self.map != NULL and self.writer:
            pdb_store_sc(&self.hdr.durable_lsn, lsn)

    cdef void publish_tree(self, int64_t txn) noexcept nogil:
        if self.map != NULL and self.writer:
            pdb_store_sc(&self.hdr.tree_txn, txn)

    # -------------------------------------------------------------- Python edge
    def live_readers(self):
        """[(pid, txn, lsn)] of the slots held by live processes (stats, tests)."""
        cdef posix_flock fl
        out = []
        me = getpid()
        for i in range(RDR_SLOTS):
            pid = pdb_load_sc(&self.slots[i].pid)
            if pid == 0:
                continue
            if pid != me:
                fl.l_type = F_WRLCK
                fl.l_whence = 0
                fl.l_start = RDR_LOCK_BASE + i
                fl.l_len = 1
                fl.l_pid = 0
                if c_fcntl(self.fd, F_GETLK, &fl) == 0 and fl.l_type == F_UNLCK:
                    continue
            out.append((pid, pdb_load_sc(&self.slots[i].txn), pdb_load_sc(&self.slots[i].lsn)))
        return out

    @property
    def writer_pid(self):
        return pdb_load_sc(&self.hdr.writer_pid)

    @property
    def writer_epoch(self):
        return pdb_load_sc(&self.hdr.writer_epoch)

    @property
    def durable_lsn(self):
        return pdb_load_sc(&self.hdr.durable_lsn)

    @property
    def tree_txn(self):
        return pdb_load_sc(&self.hdr.tree_txn)
