# clib.pxd -- every C library and system call pastedb uses, declared once,
# all nogil.  Modules cimport from here; nothing else declares externs.

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from posix.types cimport off_t


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR
        EAGAIN
        E2BIG
        EWOULDBLOCK
        ENOSPC
        EDQUOT
        EIO
        EINVAL
        ENOMEM
        EOPNOTSUPP
        ENOTSUP
        EEXIST
        ENOENT
        EBADF
        ERANGE
        ENXIO


cdef extern from "<sys/mman.h>" nogil:
    enum:
        PROT_NONE
        PROT_READ
        PROT_WRITE
        MAP_SHARED
        MAP_PRIVATE
        MAP_ANONYMOUS
        MAP_NORESERVE
        MAP_FIXED
        MS_SYNC
        MS_ASYNC
        MADV_DONTNEED
    void *MAP_FAILED
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
    int munmap(void *addr, size_t length)
    int msync(void *addr, size_t length, int flags)
    int madvise(void *addr, size_t length, int advice)


cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MAP_SYNC
    #define MAP_SYNC 0x80000
    #endif
    #ifndef MAP_SHARED_VALIDATE
    #define MAP_SHARED_VALIDATE 0x03
    #endif
    """
    enum:
        MAP_SYNC
        MAP_SHARED_VALIDATE


cdef extern from "<fcntl.h>" nogil:
    enum:
        O_RDONLY
        O_RDWR
        O_CREAT
        O_EXCL
        O_CLOEXEC
    int open(const char *path, int flags, ...)
    int posix_fallocate(int fd, off_t offset, off_t length)


cdef extern from "<sched.h>" nogil:
    int sched_yield()


cdef extern from "<sys/file.h>" nogil:
    enum:
        LOCK_EX
        LOCK_SH
        LOCK_NB
        LOCK_UN
    int flock(int fd, int op)


cdef extern from "<unistd.h>" nogil:
    int usleep(unsigned int usec)
    ssize_t read(int fd, void *buf, size_t n)
    ssize_t write(int fd, const void *buf, size_t n)
    int close(int fd)
    int fsync(int fd)
    int fdatasync(int fd)
    int ftruncate(int fd, off_t length)
    off_t lseek(int fd, off_t offset, int whence)
    ssize_t pread(int fd, void *buf, size_t count, off_t offset)
    ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
    int getpid()
    int unlink(const char *path)
    long sysconf(int name)
    enum:
        _SC_PAGESIZE
        SEEK_DATA
        SEEK_HOLE


cdef extern from "<sys/stat.h>" nogil:
    cdef struct stat:
        off_t st_size
    int fstat(int fd, stat *buf)


cdef extern from "<sys/statfs.h>" nogil:
    cdef struct statfs:
        long f_type
    int fstatfs(int fd, statfs *buf)


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_rwlock_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, void *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_broadcast(pthread_cond_t *c)
    int pthread_cond_signal(pthread_cond_t *c)
    int pthread_rwlock_init(pthread_rwlock_t *l, void *attr)
    int pthread_rwlock_destroy(pthread_rwlock_t *l)
    int pthread_rwlock_rdlock(pthread_rwlock_t *l)
    int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
    int pthread_rwlock_wrlock(pthread_rwlock_t *l)
    int pthread_rwlock_unlock(pthread_rwlock_t *l)


cdef extern from "pastedb_hw.h" nogil:
    enum:
        PDB_FLUSH_NONE
        PDB_FLUSH_CLFLUSH
        PDB_FLUSH_CLFLUSHOPT
        PDB_FLUSH_CLWB
    int pdb_flush_kind()
    void pdb_flush_range(int kind, const void *p, size_t n)
    void pdb_sfence()
    void pdb_prefetch(const void *p, size_t n)
    uint64_t pdb_load_acquire_u64(const uint64_t *p)
    void pdb_store_release_u64(uint64_t *p, uint64_t v)
    uint64_t pdb_fetch_add_u64(uint64_t *p, uint64_t v)
    int64_t pdb_fetch_add_i64(int64_t *p, int64_t v)
    int64_t pdb_xadd_sc(int64_t *p, int64_t v)
    int64_t pdb_load_sc(const int64_t *p)
    int32_t pdb_xadd32(int32_t *p, int32_t v)
    int32_t pdb_load32(const int32_t *p)
    void pdb_store_sc(int64_t *p, int64_t v)


cdef extern from "<sys/epoll.h>" nogil:
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    union epoll_data:
        void *ptr
        int fd
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)


cdef extern from "<sys/eventfd.h>" nogil:
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC
    int eventfd(unsigned int initval, int flags)


cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    enum:
        SIGTERM
        SIGINT
        SIGPIPE
        SIGKILL
    int kill(int pid, int sig)
    int sigemptyset(sigset_t *s)
    int sigaddset(sigset_t *s, int sig)


cdef extern from "<sys/signalfd.h>" nogil:
    enum:
        SFD_NONBLOCK
        SFD_CLOEXEC
    int signalfd(int fd, const sigset_t *mask, int flags)


cdef extern from "<fcntl.h>" nogil:
    enum:
        SPLICE_F_MOVE
        SPLICE_F_NONBLOCK
        F_SETPIPE_SZ
        O_NONBLOCK
    ssize_t splice(int fd_in, long *off_in, int fd_out, long *off_out, size_t len,
                   unsigned int flags)
    int pipe2(int fds[2], int flags)
    int fcntl(int fd, int cmd, ...)
    # Start and wait for writeback of a range (no device flush, no metadata:
    # not a barrier).
    enum:
        SYNC_FILE_RANGE_WAIT_BEFORE
        SYNC_FILE_RANGE_WRITE
        SYNC_FILE_RANGE_WAIT_AFTER
    int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags)
    # POSIX record locks (the reader table's slot locks).
    enum:
        F_GETLK
        F_SETLK
        F_RDLCK
        F_WRLCK
        F_UNLCK
    struct posix_flock "flock":
        short l_type
        short l_whence
        off_t l_start
        off_t l_len
        int l_pid


cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t pwritev(int fd, const iovec *iov, int iovcnt, off_t offset)


cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int fd, int level, int name, const void *val, unsigned int len)
    enum:
        MSG_NOSIGNAL
        SOCK_NONBLOCK
        SOCK_CLOEXEC
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int accept4(int fd, void *addr, void *addrlen, int flags)
    cdef struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)



cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t *t, void *attr, void *(*fn)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t t, void **ret)


cdef extern from "<time.h>" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    enum:
        CLOCK_REALTIME
        CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *ts)


cdef extern from "<pthread.h>" nogil:
    int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const timespec *abstime)


cdef extern from * nogil:
    """
    #include <errno.h>
    static inline void pdb_errno_clear(void) { errno = 0; }
    """
    void errno_clear "pdb_errno_clear"()


cdef extern from "<stdlib.h>" nogil:
    long double strtold(const char *s, char **end)


cdef extern from "<stdio.h>" nogil:
    int snprintf(char *buf, size_t size, const char *fmt, ...)


cdef extern from "<math.h>" nogil:
    bint isnan(long double x)
    bint isinf(long double x)
