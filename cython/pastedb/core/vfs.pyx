"""The I/O layer: every write, growth, cut, mapping and barrier of a database
file, with one fault numbering and one power-loss simulator (see vfs.pxd)."""

import os

from libc.stdint cimport uint32_t, uint64_t
from libc.stdio cimport rename as c_rename
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset, strlen, strncpy, strrchr

from pastedb.core.clib cimport (
    EINTR, EINVAL, EIO, ENOMEM, ENOSPC, ENXIO, EOPNOTSUPP, SEEK_DATA, SEEK_HOLE, lseek,
    posix_fallocate, MAP_ANONYMOUS, MAP_FAILED, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE,
    MS_SYNC, O_CLOEXEC, O_CREAT, O_RDONLY, O_RDWR, PROT_NONE, SIGKILL, close as c_close, errno, fdatasync,
    fstat, ftruncate, getpid, kill, mmap, msync as c_msync, open as c_open, pdb_sfence, pread,
    pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock, pwrite,
    recv, SPLICE_F_MOVE, splice, stat, sync_file_range, SYNC_FILE_RANGE_WAIT_AFTER,
    SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, iovec, pwritev,
)
from posix.types cimport off_t

cdef extern from "<stdio.h>" nogil:
    int snprintf(char *s, size_t n, const char *fmt, ...)

cdef extern from "<sys/stat.h>" nogil:
    int mkdir(const char *path, unsigned int mode)

cdef enum:
    COPY_CHUNK = 1048576              # zero fills and image writes go in pieces of this
    BLOCK = 4096                      # images leave all-zero blocks of this size as holes
    ZERO_PIECE = 65536                # zero fills go in aligned pieces of this (write_zeros)

_KINDS = {"write": FAULT_WRITE, "barrier": FAULT_BARRIER, "grow": FAULT_GROW, "io": FAULT_IO,
          "kill": FAULT_KILL}

cdef char ZEROS[1048576]              # COPY_CHUNK zeros (static storage is zero-filled)


cdef char *reserve_space(uint64_t n) noexcept nogil:
    cdef void *p = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    return NULL if p == MAP_FAILED else <char *>p


cdef inline uint64_t rng_next(uint64_t *s) noexcept nogil:
    # splitmix64: one seed gives one reproducible image.
    s[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = s[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double rng_unit(uint64_t *s) noexcept nogil:
    return <double>(rng_next(s) >> 11) / 9007199254740992.0


cdef const char *base_name(const char *path) noexcept nogil:
    cdef const char *slash = strrchr(path, 47)          # '/'
    return path if slash == NULL else slash + 1


cdef int image_apply(SimImage *im, const SimOp *op, uint64_t n) noexcept nogil:
    """Apply the first n bytes of op (all of a truncate) to im.  0 or -ENOMEM."""
    cdef uint64_t end, cap
    cdef char *grown
    end = op.off if op.kind == OP_TRUNCATE else op.off + n
    if end > im.cap:
        cap = im.cap * 2 if im.cap * 2 > end else end
        grown = <char *>realloc(im.data, cap if cap else 1)
        if grown == NULL:
            return -ENOMEM
        memset(grown + im.cap, 0, cap - im.cap)
        im.data = grown
        im.cap = cap
    if op.kind == OP_TRUNCATE:
        if end < im.size:
            memset(im.data + end, 0, im.size - end)      # what a later extension reads
        im.size = end
        return 0
    if end > im.size:
        im.size = end
    if op.kind == OP_WRITE:
        memcpy(im.data + op.off, op.data, n)
    else:
        memset(im.data + op.off, 0, n)
    return 0


cdef int write_sparse(const char *path, const char *data, uint64_t size) noexcept nogil:
    """Write size bytes to a new file at path, leaving all-zero blocks as holes."""
    cdef int fd = c_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    cdef uint64_t off = 0, n
    cdef int rc = 0
    if fd < 0:
        return -errno
    if ftruncate(fd, 0) != 0:
        rc = -errno
    while rc == 0 and off < size:
        n = size - off if size - off < BLOCK else BLOCK
        if memcmp(data + off, ZEROS, n) != 0:
            if pwrite(fd, data + off, n, <long>off) != <long>n:
                rc = -errno if errno else -EIO
        off += n
    if rc == 0 and ftruncate(fd, <long>size) != 0:
        rc = -errno
    c_close(fd)
    return rc


cdef class Vfs:

    def __cinit__(self, bint sim=False, bint nosync=False):
        self.sim = sim
        self.nosync = nosync
        pthread_mutex_init(&self.lock, NULL)

    def __dealloc__(self):
        cdef size_t i
        for i in range(self.nops):
            free(self.ops[i].data)
        free(self.ops)
        for i in range(SIM_FILES):
            free(self.files[i].data)
        pthread_mutex_destroy(&self.lock)

    # ------------------------------------------------------------ faults
    cdef int check(self, int kind) noexcept nogil:
        cdef int rc
        if fault_hit(&self.faults[FAULT_KILL]) != 0:
            kill(getpid(), SIGKILL)
        if kind != FAULT_GROW:
            rc = fault_hit(&self.faults[FAULT_IO])
            if rc != 0:
                return rc
        return fault_hit(&self.faults[kind])

    def arm(self, dict faults):
        """Fail the n-th operation of a kind from now on: faults = {"write": n,
        "barrier": n, "grow": n, "io": n (writes and barriers counted
        together), "kill": n (any operation; the process SIGKILLs itself),
        "persistent": bool, "errno": "EIO" | "ENOSPC", "torn": bytes a failing
        write writes first, "images": (every, prefix, seed) as arm_images(),
        "from_open": armed before the database's open does any I/O}."""
        import errno as _errno
        unknown = set(faults) - set(_KINDS) - {"persistent", "errno", "torn", "images", "from_open"}
        if unknown:
            raise TypeError(f"unknown fault kind(s): {', '.join(sorted(unknown))}")
        err = faults.get("errno")
        code = getattr(_errno, err) if err else 0
        cdef Fault *f
        for name, kind in _KINDS.items():
            n = int(faults.get(name, 0))
            if n < 0:
                raise ValueError("a fault position is a positive operation number")
            f = &self.faults[<int>kind]
            f.at = n
            f.count = 0
            f.fired = 0
            f.persistent = 1 if faults.get("persistent") else 0
            f.err = code or (_errno.ENOSPC if name == "grow" else _errno.EIO)
        self.torn = int(faults.get("torn", 0))
        if faults.get("images"):
            self.arm_images(*faults["images"])

    def fired(self):
        """Failures injected per kind since the last arm()."""
        return {name: self.faults[<int>kind].fired for name, kind in _KINDS.items()}

    def counted(self):
        """Operations counted per kind since the last arm() (armed kinds only)."""
        return {name: self.faults[<int>kind].count for name, kind in _KINDS.items()}

    # ------------------------------------------------------------ simulator
    cdef int sim_attach(self, const char *path, int fd) noexcept nogil:
        cdef const char *name = base_name(path)
        cdef int i, slot = -1
        cdef stat st
        cdef SimImage *im
        cdef long got
        if not self.sim or strlen(name) >= SIM_NAME:
            return -1
        pthread_mutex_lock(&self.lock)
        for i in range(SIM_FILES):
            if self.files[i].used and memcmp(self.files[i].name, name, strlen(name) + 1) == 0:
                pthread_mutex_unlock(&self.lock)
                return i
            if not self.files[i].used and slot < 0:
                slot = i
        if slot >= 0:
            im = &self.files[slot]
            memset(im, 0, sizeof(SimImage))
            strncpy(im.name, name, SIM_NAME - 1)
            # What the file holds when the simulator first sees it is durable
            # (the test starts from a clean state or from an earlier image).
            if fstat(fd, &st) == 0 and st.st_size > 0:
                im.data = <char *>malloc(<size_t>st.st_size)
                if im.data != NULL:
                    got = pread(fd, im.data, <size_t>st.st_size, 0)
                    im.cap = im.size = <uint64_t>(got if got > 0 else 0)
                else:
                    self.sim_failed = 1
            im.used = 1
        else:
            self.sim_failed = 1
        pthread_mutex_unlock(&self.lock)
        return slot

    cdef void sim_tick(self) noexcept nogil:
        cdef char dirname[4096]
        cdef int rc
        self.sim_ops += 1
        if self.image_every > 0 and self.sim_ops % self.image_every == 0:
            snprintf(dirname, sizeof(dirname), b"%s%ld", self.image_dir, self.images_taken)
            mkdir(dirname, 0o755)
            rc = self.image_locked(dirname, self.image_seed + <uint64_t>self.images_taken, 0.5, 0.25)
            if rc != 0:
                self.sim_failed = 1
            self.images_taken += 1

    cdef void sim_record(self, int slot, int kind, uint64_t off, const char *data,
                         uint64_t n) noexcept nogil:
        cdef SimOp *grown
        cdef SimOp *op
        cdef char *copy = NULL
        if slot < 0:
            return
        if kind == OP_WRITE:
            copy = <char *>malloc(n if n else 1)
            if copy == NULL:
                self.sim_failed = 1
                return
            memcpy(copy, data, n)
        pthread_mutex_lock(&self.lock)
        self.sim_tick()
        if self.nops == self.opcap:
            grown = <SimOp *>realloc(self.ops, (self.opcap * 2 + 64) * sizeof(SimOp))
            if grown == NULL:
                self.sim_failed = 1
                pthread_mutex_unlock(&self.lock)
                free(copy)
                return
            self.ops = grown
            self.opcap = self.opcap * 2 + 64
        op = &self.ops[self.nops]
        op.slot = slot
        op.kind = kind
        op.off = off
        op.len = n
        op.data = copy
        self.nops += 1
        pthread_mutex_unlock(&self.lock)

    cdef void sim_barrier(self, int slot, int ok) noexcept nogil:
        """The file's pending operations become durable (in order), or, after
        a failed barrier, are dropped, as a real failed fdatasync may drop them."""
        cdef size_t i, j = 0
        if slot < 0:
            return
        pthread_mutex_lock(&self.lock)
        self.sim_tick()
        for i in range(self.nops):
            if self.ops[i].slot == slot:
                if ok and image_apply(&self.files[slot], &self.ops[i], self.ops[i].len) != 0:
                    self.sim_failed = 1
                free(self.ops[i].data)
            else:
                self.ops[j] = self.ops[i]
                j += 1
        self.nops = j
        pthread_mutex_unlock(&self.lock)

    cdef int image_locked(self, const char *dir, uint64_t seed, double keep,
                          double torn) noexcept nogil:
        cdef uint64_t rs = seed * 0x2545F4914F6CDD1DULL + 1
        cdef int slot, rc = 0
        cdef size_t i
        cdef SimImage out
        cdef SimOp *op
        cdef uint64_t n, first, sectors
        cdef double x
        cdef char path[4096]
        for slot in range(SIM_FILES):
            if not self.files[slot].used or rc != 0:
                continue
            out = self.files[slot]
            out.data = <char *>malloc(out.size if out.size else 1)
            if out.data == NULL:
                return -ENOMEM
            memcpy(out.data, self.files[slot].data, out.size)
            out.cap = out.size
            for i in range(self.nops):
                op = &self.ops[i]
                if op.slot != slot:
                    continue
                x = rng_unit(&rs)
                n = op.len
                if x < keep:
                    pass                                  # reached the disk whole
                elif x < keep + torn and op.kind != OP_TRUNCATE:
                    # Torn: the sectors of the file before some sector
                    # boundary inside the write made it, the rest did not.
                    first = op.off // SECTOR + 1
                    if first * SECTOR >= op.off + op.len:
                        continue                          # one sector: whole or nothing
                    sectors = (op.off + op.len - 1) // SECTOR - first + 1
                    n = (first + rng_next(&rs) % sectors) * SECTOR - op.off
                else:
                    continue                              # lost
                if image_apply(&out, op, n) != 0:
                    rc = -ENOMEM
                    break
            if rc == 0:
                snprintf(path, sizeof(path), b"%s/%s", dir, out.name)
                rc = write_sparse(path, out.data, out.size)
            free(out.data)
        return rc

    def crash_image(self, directory, seed, double keep=0.5, double torn=0.25):
        """Write into `directory` every file a power loss at this instant
        could leave: each file's durable image plus each pending operation
        kept whole (probability keep), torn at a sector (torn), or lost.
        Returns the number of pending operations it chose from."""
        cdef bytes d = os.fsencode(directory)
        cdef const char *cd = d
        cdef uint64_t s = <uint64_t>seed
        cdef int rc
        cdef size_t n
        if not self.sim:
            raise RuntimeError("crash images need a simulating I/O layer (persist='crashsim')")
        if self.sim_failed:
            raise MemoryError("the crash simulator ran out of memory: its images are void")
        os.makedirs(directory, exist_ok=True)
        with nogil:
            pthread_mutex_lock(&self.lock)
            n = self.nops
            rc = self.image_locked(cd, s, keep, torn)
            pthread_mutex_unlock(&self.lock)
        if rc != 0:
            raise OSError(-rc, f"cannot write a crash image into {directory}")
        return n

    def arm_images(self, long every, prefix, seed=0):
        """Before every `every`-th operation from now on (0: stop), write a
        crash image into the directory prefix + str(number)."""
        cdef bytes p = os.fsencode(prefix)
        if len(p) >= 4000:
            raise ValueError("image directory prefix too long")
        memset(self.image_dir, 0, sizeof(self.image_dir))
        memcpy(self.image_dir, <const char *>p, len(p))
        self.image_seed = <uint64_t>seed
        self.images_taken = 0
        with nogil:
            pthread_mutex_lock(&self.lock)
            self.sim_ops = 0
            self.image_every = every
            pthread_mutex_unlock(&self.lock)

    @property
    def pending_ops(self):
        return self.nops

    cdef int rename(self, const char *old, const char *new) noexcept nogil:
        cdef const char *oname = base_name(old)
        cdef const char *nname = base_name(new)
        cdef int i
        if c_rename(old, new) != 0:
            return -errno
        if self.sim and strlen(nname) < SIM_NAME:
            pthread_mutex_lock(&self.lock)
            for i in range(SIM_FILES):          # a file the new name replaces is gone
                if self.files[i].used and memcmp(self.files[i].name, nname, strlen(nname) + 1) == 0:
                    free(self.files[i].data)
                    memset(&self.files[i], 0, sizeof(SimImage))
            for i in range(SIM_FILES):
                if self.files[i].used and memcmp(self.files[i].name, oname, strlen(oname) + 1) == 0:
                    memset(self.files[i].name, 0, SIM_NAME)
                    strncpy(self.files[i].name, nname, SIM_NAME - 1)
            pthread_mutex_unlock(&self.lock)
        return 0

    def rename_file(self, old, new):
        """rename(2) through the layer (the simulator follows the name)."""
        cdef bytes o = os.fsencode(old)
        cdef bytes n = os.fsencode(new)
        cdef int rc = self.rename(o, n)
        if rc != 0:
            raise OSError(-rc, f"cannot rename {old} to {new}")


cdef class File:

    def __cinit__(self, Vfs vfs not None):
        self.vfs = vfs
        self.fd = -1
        self.slot = -1

    def __dealloc__(self):
        self.close()

    cdef int open(self, const char *path, int create) noexcept nogil:
        cdef int flags = O_RDWR | O_CLOEXEC
        if create:
            flags |= O_CREAT
        self.fd = c_open(path, flags, 0o644)
        if self.fd < 0:
            return -errno
        self.slot = self.vfs.sim_attach(path, self.fd)
        return 0

    cdef int open_readonly(self, const char *path) noexcept nogil:
        self.fd = c_open(path, O_RDONLY | O_CLOEXEC, 0)
        if self.fd < 0:
            return -errno
        self.slot = -1
        return 0

    cdef void close(self) noexcept nogil:
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1
        self.slot = -1

    cdef int size(self, uint64_t *size) noexcept nogil:
        cdef stat st
        if fstat(self.fd, &st) != 0:
            return -errno
        size[0] = <uint64_t>st.st_size
        return 0

    cdef int write(self, uint64_t off, const void *p, size_t n) noexcept nogil:
        cdef const char *src = <const char *>p
        cdef uint64_t start = off
        cdef size_t want = n
        cdef long w
        cdef int rc = self.vfs.check(FAULT_WRITE)
        if rc != 0:
            if self.vfs.torn:
                # The failing write first gets part of its bytes out, as a
                # write interrupted by a device error may.
                want = self.vfs.torn if self.vfs.torn < n else n
                if pwrite(self.fd, src, want, <long>off) == <long>want:
                    self.vfs.sim_record(self.slot, OP_WRITE, off, src, want)
            return rc
        while n:
            w = pwrite(self.fd, src, n, <long>off)
            if w < 0:
                if errno == EINTR:
                    continue
                return -errno
            src += w
            off += <uint64_t>w
            n -= <size_t>w
        self.vfs.sim_record(self.slot, OP_WRITE, start, <const char *>p, want)
        return 0

    cdef int write2(self, uint64_t off, const void *p1, size_t n1, const void *p2,
                    size_t n2) noexcept nogil:
        # A put's key and value in one system call (each pwrite of a small
        # piece costs ~1.5 us of kernel write path on ext4).  Under the crash
        # simulator or with a write fault armed the two writes are made one
        # by one, so both see the same operations as before.
        cdef iovec iov[2]
        cdef long w
        cdef int rc
        if self.vfs.sim or n1 == 0 or n2 == 0 or self.vfs.faults[FAULT_WRITE].at or \
                self.vfs.faults[FAULT_IO].at or self.vfs.faults[FAULT_KILL].at:
            rc = self.write(off, p1, n1)
            if rc == 0:
                rc = self.write(off + n1, p2, n2)
            return rc
        iov[0].iov_base = <void *>p1
        iov[0].iov_len = n1
        iov[1].iov_base = <void *>p2
        iov[1].iov_len = n2
        w = pwritev(self.fd, iov, 2, <long>off)
        if w == <long>(n1 + n2):
            return 0
        if w < 0:
            if errno != EINTR:
                return -errno
            w = 0
        # A short write: the rest piece by piece.
        if <size_t>w < n1:
            rc = self.write(off + <uint64_t>w, <const char *>p1 + w, n1 - <size_t>w)
            if rc == 0:
                rc = self.write(off + n1, p2, n2)
            return rc
        return self.write(off + <uint64_t>w, <const char *>p2 + (<size_t>w - n1),
                          n2 - (<size_t>w - n1))

    cdef int write_zeros(self, uint64_t off, uint64_t n) noexcept nogil:
        cdef uint64_t start = off, total = n, k
        cdef long w
        cdef int rc = self.vfs.check(FAULT_WRITE)
        if rc != 0:
            return rc
        # 64 KiB per write, aligned: the page cache sizes a new folio by the
        # write that creates it, and on a filesystem with large folios (ext4
        # since Linux 6.16) zeros written a MiB at a time leave MiB folios
        # behind, whose every later small write (a 64-byte record, a 1 KiB
        # value) walks all their blocks.  Measured on this VM's ext4 (kernel
        # 6.18), a 64 B pwrite into a file grown in writes of 1 MiB: 2.7 us;
        # 64 KiB: 1.2 us; 4 KiB: 1.1 us (1 KiB pwrites 3.0, 1.5, 1.5 us).
        while n:
            k = ZERO_PIECE - (off & (ZERO_PIECE - 1))
            if k > n:
                k = n
            w = pwrite(self.fd, ZEROS, k, <long>off)
            if w < 0:
                if errno == EINTR:
                    continue
                return -errno
            off += <uint64_t>w
            n -= <uint64_t>w
        self.vfs.sim_record(self.slot, OP_ZERO, start, NULL, total)
        return 0

    cdef int truncate(self, uint64_t size) noexcept nogil:
        cdef int rc = self.vfs.check(FAULT_WRITE)
        if rc != 0:
            return rc
        if ftruncate(self.fd, <long>size) != 0:
            return -errno
        self.vfs.sim_record(self.slot, OP_TRUNCATE, size, NULL, 0)
        return 0

    cdef int allocate_holes(self, uint64_t end) noexcept nogil:
        # A page of a MAP_SHARED mapping that lies in a hole gets its block
        # when it is first stored to; on a full disk the kernel can only
        # answer that store with SIGBUS.  Holes come from power-loss images,
        # sparse copies and tools that extend a file with ftruncate.  The
        # content stays zeros, so nothing is recorded for the simulator.
        cdef long pos = 0, hole, data
        cdef int rc
        while <uint64_t>pos < end:
            hole = lseek(self.fd, pos, SEEK_HOLE)
            if hole < 0:
                return 0 if errno == ENXIO or errno == EINVAL else -errno
            if <uint64_t>hole >= end:
                return 0
            data = lseek(self.fd, hole, SEEK_DATA)
            if data < 0 or <uint64_t>data > end:
                data = <long>end
            rc = posix_fallocate(self.fd, hole, data - hole)
            if rc != 0:
                return 0 if rc == EOPNOTSUPP or rc == EINVAL else -rc
            pos = data
        return 0

    cdef void writeback(self, uint64_t off, uint64_t n) noexcept nogil:
        if self.vfs.sim or self.vfs.nosync or self.fd < 0 or n == 0:
            return
        sync_file_range(self.fd, <off_t>off, <off_t>n, SYNC_FILE_RANGE_WAIT_BEFORE |
                        SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)

    cdef int sync(self) noexcept nogil:
        cdef int rc = self.vfs.check(FAULT_BARRIER)
        if rc == 0 and not self.vfs.sim and not self.vfs.nosync and fdatasync(self.fd) != 0:
            rc = -errno
        self.vfs.sim_barrier(self.slot, rc == 0)
        return rc

    cdef int msync(self, char *addr, uint64_t n) noexcept nogil:
        cdef int rc = self.vfs.check(FAULT_BARRIER)
        if rc == 0 and not self.vfs.sim and n and c_msync(addr, n, MS_SYNC) != 0:
            rc = -errno
        self.vfs.sim_barrier(self.slot, rc == 0)
        return rc

    cdef int fence(self) noexcept nogil:
        cdef int rc = self.vfs.check(FAULT_BARRIER)
        if rc == 0:
            pdb_sfence()
        self.vfs.sim_barrier(self.slot, rc == 0)
        return rc

    cdef void note_store(self, uint64_t off, const char *p, uint64_t n) noexcept nogil:
        self.vfs.sim_record(self.slot, OP_WRITE, off, p, n)

    cdef long splice_from(self, int pipe_fd, uint64_t off, size_t n) noexcept nogil:
        cdef long pos = <long>off
        cdef long got
        cdef int rc = self.vfs.check(FAULT_WRITE)
        if rc != 0:
            return rc
        got = splice(pipe_fd, NULL, self.fd, &pos, n, SPLICE_F_MOVE)
        if got < 0:
            return -errno
        if got > 0 and self.slot >= 0:
            # The page cache now holds the bytes: copy them from the file.
            self.record_from_file(off, <uint64_t>got)
        return got

    cdef long recv_into(self, int sock, char *dst, uint64_t off, size_t n, int record) noexcept nogil:
        cdef long got = recv(sock, dst, n, 0)
        if got > 0 and record:
            self.vfs.sim_record(self.slot, OP_WRITE, off, dst, <uint64_t>got)
        return got

    cdef void record_from_file(self, uint64_t off, uint64_t n) noexcept nogil:
        cdef char *buf = <char *>malloc(n)
        if buf == NULL:
            self.vfs.sim_failed = 1
            return
        if pread(self.fd, buf, n, <long>off) == <long>n:
            self.vfs.sim_record(self.slot, OP_WRITE, off, buf, n)
        else:
            self.vfs.sim_failed = 1
        free(buf)

    cdef int map(self, char *addr, uint64_t off, uint64_t n, int prot, int flags) noexcept nogil:
        cdef void *p = mmap(addr, n, prot, flags | MAP_FIXED, self.fd, <long>off)
        if p == MAP_FAILED:
            return -errno
        return 0
