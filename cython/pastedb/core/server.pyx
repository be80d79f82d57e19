"""Redis-protocol server over the engine: epoll, nogil, zero-copy SET."""

import logging
import os
import resource
import socket
import threading
import time

from libc.stdint cimport INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, UINT64_MAX, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove, memset, strlen

from pastedb.core.clib cimport (
    E2BIG, EAGAIN, EDQUOT, EINTR, ENOMEM, ENOSPC, ERANGE, errno_clear, isinf, isnan, snprintf, strtold, EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EPOLLERR,
    EPOLLHUP, EPOLLIN, EPOLLOUT, EFD_CLOEXEC, EFD_NONBLOCK, MSG_NOSIGNAL, SFD_CLOEXEC,
    SFD_NONBLOCK, SIGINT, SIGTERM, SOCK_CLOEXEC, SOCK_NONBLOCK, CLOCK_MONOTONIC, CLOCK_REALTIME,
    accept4, pthread_cond_timedwait, iovec, msghdr, sendmsg,
    clock_gettime, close, epoll_create1, epoll_ctl, epoll_event, epoll_wait, errno, eventfd,
    pdb_load_acquire_u64, pthread_cond_destroy, pthread_cond_init,
    pthread_cond_signal, pthread_cond_wait, pthread_mutex_destroy, pthread_mutex_init,
    pthread_mutex_lock, pthread_mutex_unlock,
    recv, send, setsockopt, splice, pipe2, fcntl, F_SETPIPE_SZ, O_CLOEXEC, SPLICE_F_MOVE,
    SPLICE_F_NONBLOCK, sigaddset, sigemptyset, signalfd, sigset_t, timespec,
)
from pastedb.core.clib cimport read as c_read, write as c_write
from pastedb.core.engine cimport DB, KeySink, MergeIter
from pastedb.core.format cimport (
    BUF_SIZE, KEY_ESC, MAX_DATABASES, MAX_KEY_LEN, MAX_VALUE_LEN, db_of_key, key_prefix_len, REC_DEL, REC_PUT, LogRecord,
)
from pastedb.core.index cimport Ref
from pastedb.core.pattern cimport glob_match
from pastedb.core.resp cimport (
    PARSE_COMMAND, PARSE_ERROR, PARSE_NEED_MORE, OutBuf, RespParser, out_array, out_bulk,
    out_bulk_header, out_error, out_free, out_init, out_int, out_map, out_null, out_null_array,
    out_raw, out_reserve,
    out_simple, parse_command, parser_free, parser_init, parser_moved, parser_rebase,
)

log = logging.getLogger("pastedb")

VERSION = "7.2.0"          # the Redis version we answer to (clients probe it)

# A reply held for records not yet appended (finish_input sets the real lsn).
cdef uint64_t HOLD_PENDING = 0xFFFFFFFFFFFFFFFF

cdef enum:
    MAX_EVENTS = 256
    READS_PER_EVENT = 16
    UNAUTH_MAX_BULK = 16384
    UNAUTH_MAX_ARGS = 10240
    ARENA_BYTES = 4194304
    SCAN_DEFAULT_COUNT = 10
    SCAN_MAX_COUNT = 65536          # keys one SCAN call visits at most (COUNT is a hint)
    SCAN_SLOTS = 4096               # SCAN cursors remembered (an older one restarts the scan)
    WATCH_BUCKETS = 1024            # hash chains of WATCHed keys at first (a power of 2)
    KEYS_SLICE = 4096               # keys one KEYS slice visits before others are served
    # Fairness and bounded memory (per connection):
    CMDS_PER_SLICE = 1024           # commands run before the loop serves others
    REF_MIN = 16384                 # values this large are sent from the pool, not copied
    OUT_PAUSE_BYTES = 4194304       # unsent reply bytes in memory that pause input
    OUT_PAUSE_REFS = 16384          # unsent value references that pause input
    OUT_COMPACT = 1048576           # sent bytes at the front of the buffer worth moving
    SEND_IOV = 64                   # iovecs per sendmsg


# ---------------------------------------------------------------- small helpers
def parse_size(text):
    """A size as Redis writes it (parse_mem), for the command line."""
    return parse_mem(text)


cdef int64_t parse_mem(object text) except? -1:
    """Redis's memtoull: 100, 1k (1000), 1kb (1024), 1m, 1mb, 1g, 1gb."""
    t = text.strip().lower() if isinstance(text, str) else str(text)
    units = (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("g", 1000 ** 3),
             ("m", 1000 ** 2), ("k", 1000), ("b", 1))
    for suffix, mult in units:
        if t.endswith(suffix):
            num = t[:-len(suffix)]
            break
    else:
        num, mult = t, 1
    if not num.isdigit():
        raise ValueError(f"invalid memory size {text!r}")
    return int(num) * mult


def parse_output_limit(text):
    """`client-output-buffer-limit` as Redis takes it for normal clients:
    "<hard> <soft> <soft seconds>", optionally led by the class "normal".
    Returns (hard, soft, seconds) in bytes and seconds; 0 disables each."""
    words = str(text).split()
    if words and words[0].lower() == "normal":
        words = words[1:]
    if len(words) != 3:
        raise ValueError("client-output-buffer-limit wants '[normal] <hard> <soft> <soft seconds>'")
    hard, soft = parse_mem(words[0]), parse_mem(words[1])
    if not words[2].isdigit():
        raise ValueError(f"invalid soft seconds {words[2]!r}")
    return hard, soft, int(words[2])


cdef void free_keys_job(Conn *c) noexcept nogil:
    if c.keys != NULL:
        free(c.keys.pat)
        free(c.keys.last)
        out_free(&c.keys.found)
        free(c.keys)
        c.keys = NULL


cdef void free_queue(Conn *c) noexcept nogil:
    cdef int i
    for i in range(c.qlen):
        free(c.queue[i].blob)
        free(c.queue[i].lens)
    c.qlen = 0
    c.in_multi = 0
    c.multi_error = 0


include "commands.pxi"


cdef class Server:

    def __cinit__(self):
        self.listen_fd = -1
        self.epoll_fd = -1
        self.event_fd = -1
        self.signal_fd = -1
        self.splice_pipe[0] = -1
        self.splice_pipe[1] = -1
        pthread_mutex_init(&self.flush_lock, NULL)
        pthread_cond_init(&self.flush_cond, NULL)

    def __dealloc__(self):
        cdef int fd
        self.narenas = 0                          # the pins go with the process or the DB
        free(self.arenas)
        self.arenas = NULL
        self.cur_arena = 0
        if self.conns != NULL:
            for fd in range(self.conns_cap):
                if self.conns[fd] != NULL:
                    self.free_conn(self.conns[fd])
            free(self.conns)
        free(<void *>self.args.ptr)
        free(self.args.len)
        free(self.recs)
        free(self.kbuf)
        free(self.watch_buckets)
        if self.scan_slots != NULL:
            for fd in range(SCAN_SLOTS):
                free(self.scan_slots[fd].key)
            free(self.scan_slots)
        free(self.cmd_calls)
        free(self.cmd_rejected)
        for fd in (self.listen_fd, self.epoll_fd, self.event_fd, self.signal_fd,
                   self.splice_pipe[0], self.splice_pipe[1]):
            if fd >= 0:
                close(fd)
        pthread_cond_destroy(&self.flush_cond)
        pthread_mutex_destroy(&self.flush_lock)

    def __init__(self, DB db, *, host="127.0.0.1", int port=6380, requirepass=None,
                 int maxclients=10000, bint sync=True, bint copy=False,
                 int window=65536, max_bulk_len=MAX_VALUE_LEN,
                 max_query=1 << 30, str receive="auto", client_output_buffer_limit="0 0 0",
                 int databases=16):
        self.db = db
        if not 1 <= databases <= MAX_DATABASES:
            raise ValueError(f"databases must be 1..{MAX_DATABASES}, not {databases}")
        if databases > 1 and not db.keyspaces:
            log.warning("pastedb serve: %s has one keyspace (keys starting with byte 0xFF from "
                        "before numbered databases): serving database 0 only", db.path)
            databases = 1
        self.ndb = databases
        self.base = db.mapping()
        self.scan_it = MergeIter(db, False)
        self.rev_it = MergeIter(db, True)
        # Pinned only inside walk_keys (engine.pyx): a snapshot held between
        # calls would stop the tree from reusing pages.
        self.scan_it.tc.close()
        self.rev_it.tc.close()
        self.watch_nbuckets = WATCH_BUCKETS
        self.watch_buckets = <WatchKey **>calloc(WATCH_BUCKETS, sizeof(WatchKey *))
        self.scan_slots = <ScanSlot *>calloc(SCAN_SLOTS, sizeof(ScanSlot))
        self.cmd_calls = <uint64_t *>calloc(MAX_COMMANDS, sizeof(uint64_t))
        self.cmd_rejected = <uint64_t *>calloc(MAX_COMMANDS, sizeof(uint64_t))
        if self.watch_buckets == NULL or self.scan_slots == NULL or \
                self.cmd_calls == NULL or self.cmd_rejected == NULL:
            raise MemoryError()
        self.next_cursor = 1
        self.rand_state = <uint64_t>time.time_ns() | 1
        self.kbuf_cap = 4096
        self.kbuf = <char *>malloc(self.kbuf_cap)
        if self.kbuf == NULL:
            raise MemoryError()
        self.sync_acks = sync
        self.copy_mode = copy
        self.window = max(4096, (window + BUF_SIZE - 1) // BUF_SIZE * BUF_SIZE)
        self.maxclients = maxclients
        self.max_bulk_len = min(int(max_bulk_len), MAX_VALUE_LEN)
        self.max_query = int(max_query)
        hard, soft, secs = parse_output_limit(client_output_buffer_limit)
        self.obuf_hard = hard
        self.obuf_soft = soft
        self.obuf_soft_ns = <int64_t>secs * 1000000000
        self.requirepass = (requirepass.encode() if isinstance(requirepass, str)
                            else (requirepass or b""))
        self.has_password = len(self.requirepass) > 0
        self.bind = host
        self.next_client_id = 1
        self.args.cap = 16
        self.args.ptr = <const char **>malloc(16 * sizeof(char *))
        self.args.len = <size_t *>malloc(16 * sizeof(size_t))
        self.recs_cap = 16
        self.recs = <LogRecord *>malloc(16 * sizeof(LogRecord))
        if self.args.ptr == NULL or self.args.len == NULL or self.recs == NULL:
            raise MemoryError()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(511)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.listen_fd = sock.detach()
        self.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
        self.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.epoll_fd < 0 or self.event_fd < 0:
            raise OSError(errno, "cannot create epoll/eventfd")
        self.conns_cap = 1024
        self.conns = <Conn **>calloc(self.conns_cap, sizeof(Conn *))
        if self.conns == NULL:
            raise MemoryError()
        self.watch(self.listen_fd, EPOLLIN, 0)
        self.watch(self.event_fd, EPOLLIN, 0)
        # Zero-copy receive on an ordinary file goes through splice(); on
        # DAX (stores are the persistence path) and with persist=none it is
        # recv() straight into the mapping.
        if not copy and (receive == "splice" or (receive == "auto" and db.ordinary_file())):
            if pipe2(self.splice_pipe, O_CLOEXEC) != 0:
                raise OSError(errno, "pipe2")
            self.splice_max = fcntl(self.splice_pipe[1], F_SETPIPE_SZ, 1 << 20)
            if <long>self.splice_max <= 0:
                self.splice_max = 65536
        self.start_time = time.time()

    @property
    def address(self):
        return (self.bind, self.port)

    cdef int watch(self, int fd, uint32_t events, int mod) noexcept nogil:
        cdef epoll_event ev
        ev.events = events
        ev.data.fd = fd
        return epoll_ctl(self.epoll_fd, EPOLL_CTL_MOD if mod else EPOLL_CTL_ADD, fd, &ev)

    def serve_forever(self, handle_signals=True):
        """Run until SHUTDOWN, SIGTERM or SIGINT.  Returns 0, or 1 if a
        durability barrier failed (nothing after it was acknowledged)."""
        cdef sigset_t mask
        cdef int rc
        if handle_signals and threading.current_thread() is threading.main_thread():
            import signal
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
            sigemptyset(&mask)
            sigaddset(&mask, SIGTERM)
            sigaddset(&mask, SIGINT)
            self.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)
            if self.signal_fd < 0:
                raise OSError(errno, "signalfd")
            self.watch(self.signal_fd, EPOLLIN, 0)
        self.reset_breakdown()
        flusher = threading.Thread(target=self._run_flusher, name="pastedb-flusher", daemon=True)
        flusher.start()
        try:
            with nogil:
                rc = self.loop()
        finally:
            pthread_mutex_lock(&self.flush_lock)
            self.stopping = 1
            pthread_cond_signal(&self.flush_cond)
            pthread_mutex_unlock(&self.flush_lock)
            flusher.join()
        if rc == 0:
            try:
                self.db.checkpoint()
            except OSError as e:
                if e.errno not in (ENOSPC, EDQUOT):
                    raise
                # Everything acknowledged is durable in the log already.
                log.warning("pastedb: no disk space for the checkpoint at shutdown; nothing is "
                            "lost, the next open replays the log since the last one")
        return rc

    def _run_flusher(self):
        with nogil:
            self.flusher()

    # ------------------------------------------------------------ flusher
    cdef void flusher(self) noexcept nogil:
        cdef uint64_t target
        cdef uint64_t one = 1
        cdef int rc, group_conns
        cdef int64_t t0, t1, linger, tl
        cdef timespec deadline
        pthread_mutex_lock(&self.flush_lock)
        while True:
            while (self.flush_requested <= self.flushed_lsn or self.flusher_busy) \
                    and not self.stopping:
                pthread_cond_wait(&self.flush_cond, &self.flush_lock)
            if self.stopping and self.flusher_busy:
                pthread_cond_wait(&self.flush_cond, &self.flush_lock)
                continue
            if self.appended_lsn <= self.flushed_lsn:
                if self.stopping:
                    break
                continue
            # Linger: the clients the last group released are sending their
            # next writes right now.  Wait (at most half a barrier, at most
            # 2 ms) until as many connections wait as the last group had, so
            # one barrier covers them all instead of every other half.  One
            # client never waits: its group had one connection.
            if self.last_group_conns > 1 and not self.stopping:
                tl = now_ns()
                linger = self.last_barrier_ns // 2
                if linger > 2000000:
                    linger = 2000000
                clock_gettime(CLOCK_REALTIME, &deadline)
                deadline.tv_nsec += linger
                if deadline.tv_nsec >= 1000000000:
                    deadline.tv_sec += 1
                    deadline.tv_nsec -= 1000000000
                self.flusher_lingering = 1
                while self.waiting_conns < self.last_group_conns and not self.stopping:
                    if pthread_cond_timedwait(&self.flush_cond, &self.flush_lock, &deadline) != 0:
                        break
                self.flusher_lingering = 0
                self.bd.fl_linger_ns += now_ns() - tl
            target = self.appended_lsn
            group_conns = self.waiting_conns
            self.flusher_busy = 1
            pthread_mutex_unlock(&self.flush_lock)
            t0 = now_ns()
            rc = self.db.make_durable(target)
            t1 = now_ns()
            pthread_mutex_lock(&self.flush_lock)
            self.flusher_busy = 0
            self.last_barrier_ns = t1 - t0
            self.last_group_conns = group_conns
            self.bd.fl_barrier_ns += t1 - t0
            self.bd.fl_barriers += 1
            self.bd.fl_group_conns += <uint64_t>group_conns
            self.bd.fl_done_ns = t1
            if rc != 0:
                self.flush_error = rc
            self.flushed_lsn = target
            c_write(self.event_fd, &one, 8)
            if rc != 0:
                break
        self.flusher_done = 1
        pthread_mutex_unlock(&self.flush_lock)
        c_write(self.event_fd, &one, 8)

    cdef void lift_unauth_limits(self, Conn *c) noexcept nogil:
        # Before AUTH a client may not make the server reserve a large value
        # (Redis: 16 KiB bulks, 10240 arguments); after it, the configured limits.
        c.parser.max_bulk_len = self.max_bulk_len
        c.parser.max_args = 1024 * 1024

    cdef void kick_flusher(self, uint64_t lsn) noexcept nogil:
        # Only record it: after_events decides who runs the barrier.
        pthread_mutex_lock(&self.flush_lock)
        if lsn > self.appended_lsn:
            self.appended_lsn = lsn
        pthread_mutex_unlock(&self.flush_lock)

    # ------------------------------------------------------------ the loop
    cdef int loop(self) noexcept nogil:
        cdef epoll_event events[MAX_EVENTS]
        cdef int n, i, fd
        cdef uint64_t junk
        cdef uint32_t ev
        cdef Conn *c
        cdef int draining = 0
        cdef int64_t drain_deadline = 0, tw
        while True:
            tw = now_ns()
            n = epoll_wait(self.epoll_fd, events, MAX_EVENTS,
                           0 if self.nready else (100 if draining else 1000))
            self.bd.loop_wait_ns += now_ns() - tw
            if n < 0:
                if errno == EINTR:
                    continue
                return 1
            for i in range(n):
                fd = events[i].data.fd
                ev = events[i].events
                if fd == self.listen_fd:
                    if not draining:
                        self.accept_all()
                elif fd == self.event_fd:
                    c_read(self.event_fd, &junk, 8)
                elif fd == self.signal_fd:
                    self.drain_signalfd()
                    self.shutdown_requested = 1
                elif fd < self.conns_cap and self.conns[fd] != NULL:
                    c = self.conns[fd]
                    if (ev & (EPOLLHUP | EPOLLERR)) and (c.paused or c.ready):
                        self.close_conn(c)                # gone while its input waited
                        continue
                    if ev & (EPOLLIN | EPOLLHUP | EPOLLERR):
                        self.on_readable(c)
                    if self.conns[fd] != NULL and (ev & EPOLLOUT):
                        self.flush_output(self.conns[fd])
            if self.nready:
                self.run_ready()
            if self.shutdown_requested and not draining:
                draining = 1
                drain_deadline = now_ns() + <int64_t>5 * 1000000000
                # Close the listening socket, not just stop accepting: a
                # connection made now is refused at once (a proxy fails the
                # request and may eject this shard) instead of waiting in
                # the backlog until the process exits and the kernel resets it.
                # INFO's shutting_down is this closed socket, so no client
                # sees shutting_down:1 while the port still accepts.
                epoll_ctl(self.epoll_fd, EPOLL_CTL_DEL, self.listen_fd, NULL)
                close(self.listen_fd)
                self.listen_fd = -1
            self.after_events()
            self.loop_ns = now_ns()
            if not self.copy_mode and self.loop_ns - self.last_sweep_ns > 100000000:
                self.last_sweep_ns = self.loop_ns
                self.sweep_arenas()
            if self.flush_error:
                self.fail_all()
                return 1
            if draining:
                # Replies get 5 s to drain (a client that stops reading must
                # not keep the server up); the writes behind them are durable
                # once the flusher has caught up.
                if self.all_replies_sent() or (
                        now_ns() > drain_deadline
                        and pdb_load_acquire_u64(&self.flushed_lsn) >= self.appended_lsn):
                    return 0

    cdef void drain_signalfd(self) noexcept nogil:
        cdef char buf[128]
        while c_read(self.signal_fd, buf, 128) > 0:
            pass

    cdef int all_replies_sent(self) noexcept nogil:
        cdef int fd
        cdef Conn *c
        if pdb_load_acquire_u64(&self.flushed_lsn) < self.appended_lsn:
            return 0
        for fd in range(self.conns_cap):
            c = self.conns[fd]
            if c != NULL and c.out.len > c.out.sent:
                return 0
        return 1

    cdef void after_events(self) noexcept nogil:
        """Release replies whose writes are durable, send what is ready, and
        start the next group commit.  With at most one connection waiting the
        loop runs the barrier itself: handing it to the flusher thread and
        being woken back costs two thread switches for nothing to overlap."""
        cdef uint64_t durable, target
        cdef int waiting, rc
        cdef int64_t t0, done_ns = 0
        pthread_mutex_lock(&self.flush_lock)
        durable = self.flushed_lsn
        if self.bd.fl_done_ns > self.bd.wake_seen_ns:
            done_ns = self.bd.fl_done_ns          # a barrier of the flusher's, new to the loop
            self.bd.wake_seen_ns = done_ns
        pthread_mutex_unlock(&self.flush_lock)
        if done_ns:
            self.bd.wake_ns += now_ns() - done_ns
            self.bd.wakes += 1
        waiting = self.release_replies(durable)
        pthread_mutex_lock(&self.flush_lock)
        if waiting != self.waiting_conns:
            self.waiting_conns = waiting
            if self.flusher_lingering:
                # Only a lingering flusher waits for this; a signal at every
                # change woke an idle flusher for nothing once a request at
                # 1 client (a futex wake for the loop, a thread switch on a
                # core the client needs).
                pthread_cond_signal(&self.flush_cond)
        if self.appended_lsn > self.flushed_lsn and self.flush_requested <= self.flushed_lsn:
            if waiting <= 1 and not self.flusher_busy and self.sync_acks:
                target = self.appended_lsn
                self.flusher_busy = 1
                pthread_mutex_unlock(&self.flush_lock)
                t0 = now_ns()
                rc = self.db.make_durable(target)
                pthread_mutex_lock(&self.flush_lock)
                self.flusher_busy = 0
                self.last_barrier_ns = now_ns() - t0
                self.last_group_conns = waiting
                self.bd.loop_barrier_ns += self.last_barrier_ns
                self.bd.loop_barriers += 1
                if rc != 0:
                    self.flush_error = rc
                self.flushed_lsn = target
                durable = target
                pthread_mutex_unlock(&self.flush_lock)
                waiting = self.release_replies(durable)
                pthread_mutex_lock(&self.flush_lock)
                self.waiting_conns = waiting
            else:
                self.flush_requested = self.appended_lsn
                pthread_cond_signal(&self.flush_cond)
        pthread_mutex_unlock(&self.flush_lock)

    cdef int release_replies(self, uint64_t durable) noexcept nogil:
        """Let out every reply whose writes are durable; returns how many
        connections still hold replies."""
        cdef int fd
        cdef Conn *c
        cdef int waiting = 0
        for fd in range(self.conns_cap):
            c = self.conns[fd]
            if c == NULL:
                continue
            if c.out_ready < c.out.len and (not self.sync_acks or c.hold_lsn <= durable):
                c.out_ready = c.out.len
            if c.out_ready > c.out.sent:
                self.flush_output(c)
            elif c.closing and c.out.len == c.out.sent:
                self.close_conn(c)
                continue
            if self.conns[fd] != NULL and c.out_ready < c.out.len:
                waiting += 1
        return waiting

    cdef void fail_all(self) noexcept nogil:
        """A barrier failed: what it covered may be lost.  Close every
        connection without sending replies that were waiting for it."""
        cdef int fd
        for fd in range(self.conns_cap):
            if self.conns[fd] != NULL:
                self.close_conn(self.conns[fd])

    cdef void accept_all(self) noexcept nogil:
        cdef int fd
        cdef Conn *c
        cdef Conn **bigger
        cdef int newcap
        cdef const char *msg = b"-ERR max number of clients reached\r\n"
        while True:
            fd = accept4(self.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                return
            if self.nclients >= self.maxclients:
                send(fd, msg, strlen(msg), MSG_NOSIGNAL)
                close(fd)
                self.rejected_connections += 1
                continue
            if fd >= self.conns_cap:
                newcap = self.conns_cap
                while newcap <= fd:
                    newcap *= 2
                bigger = <Conn **>realloc(self.conns, newcap * sizeof(Conn *))
                if bigger == NULL:
                    close(fd)
                    continue
                memset(bigger + self.conns_cap, 0, (newcap - self.conns_cap) * sizeof(Conn *))
                self.conns = bigger
                self.conns_cap = newcap
            c = <Conn *>calloc(1, sizeof(Conn))
            if c == NULL or parser_init(&c.parser, self.max_bulk_len if not self.has_password
                                        else UNAUTH_MAX_BULK,
                                        1024 * 1024 if not self.has_password else UNAUTH_MAX_ARGS,
                                        65536) != 0 \
                    or out_init(&c.out, 16384) != 0:
                if c != NULL:
                    parser_free(&c.parser)
                    free(c)
                close(fd)
                continue
            c.fd = fd
            c.id = self.next_client_id
            self.next_client_id += 1
            c.authed = not self.has_password
            self.conns[fd] = c
            self.nclients += 1
            self.total_connections += 1
            set_nodelay(fd)
            self.watch(fd, EPOLLIN, 0)

    cdef void free_conn(self, Conn *c) noexcept nogil:
        self.unwatch_all(c)
        self.drop_refs(c, 0)
        free(c.refs)
        free_keys_job(c)
        if c.ready:
            self.nready -= 1
        parser_free(&c.parser)
        out_free(&c.out)
        free_queue(c)
        free(c.queue)
        if (self.copy_mode or c.heap_win) and c.win != NULL:
            free(c.win)
        elif c.arena:
            self.conn_arena(c, 0)
        free(c)

    cdef void close_conn(self, Conn *c) noexcept nogil:
        epoll_ctl(self.epoll_fd, EPOLL_CTL_DEL, c.fd, NULL)
        close(c.fd)
        self.conns[c.fd] = NULL
        self.nclients -= 1
        self.free_conn(c)

    # ------------------------------------------------------------ receiving
    cdef int new_window(self, Conn *c, size_t need) noexcept nogil:
        """Give c a fresh window of at least `need` bytes, moving the
        incomplete command [cmd_start, win_len) to its start."""
        cdef size_t size = self.window
        cdef size_t keep = c.win_len - c.parser.cmd_start
        cdef char *w
        if need > size:
            size = (need + BUF_SIZE - 1) // BUF_SIZE * BUF_SIZE
        w = <char *>malloc(size)                 # copy mode: a heap window
        if w == NULL:
            return -ENOMEM
        if keep:
            memcpy(w, c.win + c.parser.cmd_start, keep)
        if self.copy_mode and c.win != NULL:
            free(c.win)
        c.win = w
        c.win_size = size
        c.win_len = keep
        c.win_keep = 0
        parser_moved(&c.parser, 0)
        return 0

    cdef int make_room(self, Conn *c) noexcept nogil:
        """Ensure the window has free space for the next recv()."""
        cdef size_t start, keep, need
        if c.win == NULL:
            return self.new_window(c, 0)
        if c.win_len < c.win_size:
            return 0
        keep = c.win_len - c.parser.cmd_start
        need = c.parser.need_total if c.parser.need_total > keep else keep
        if need >= self.max_query:
            return -E2BIG                         # reported as a query limit
        # Reuse the space before the command when nothing there is referenced
        # and the rest of the command fits comfortably.
        start = (c.win_keep + 7) & ~(<size_t>7)
        if start < c.parser.cmd_start and need + self.window // 4 <= c.win_size - start:
            memmove(c.win + start, c.win + c.parser.cmd_start, keep)
            c.win_len = start + keep
            parser_moved(&c.parser, start)
            return 0
        if need < self.window // 2:
            need = 0
        else:
            need = need + 64
        return self.new_window(c, need)

    cdef ssize_t splice_in(self, int fd, char *dst, size_t space) noexcept nogil:
        """Receive into the pool without a user-space copy and without
        dirtying pages through the mapping: socket -> pipe -> pool file at
        dst's offset.  The kernel copies once, into the page cache, as recv()
        into the mapping would -- but the pages are dirtied the way write()
        dirties them, which keeps the next fdatasync cheap (see Pool.write_at).
        The bytes are then read (never written) through the mapping."""
        cdef uint64_t off = <uint64_t>(dst - self.db.mapping())
        cdef ssize_t got, moved, n
        if space > self.splice_max:
            space = self.splice_max
        got = splice(fd, NULL, self.splice_pipe[1], NULL, space,
                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
        if got <= 0:
            return got
        moved = 0
        while moved < got:
            n = self.db.receive_splice(self.splice_pipe[0], off + <uint64_t>moved,
                                       <size_t>(got - moved))
            if n <= 0:
                if n == -EINTR:
                    continue
                # The pipe now holds bytes of this connection we cannot place:
                # the server cannot go on safely.
                self.flush_error = <int>n if n < 0 else -5
                return -1
            moved += n
        return got

    cdef int arena_room(self, Conn *c) noexcept nogil:
        """Zero-copy mode: every connection receives at the tail of one shared
        arena (a pool extent), so the bytes a commit group dirties are
        contiguous and one barrier writes them back in few device requests.
        A connection's incomplete command must end at the tail to be
        continued in place; if another connection received since, the
        incomplete command is moved to the tail (the only copy on this path).
        A command that needs more than the arena has left (a large value) gets
        a new arena of at least its size, so the value is received in place.
        When no arena can be had (a full disk), the connection receives on the
        heap: its reads go on, its writes are refused for want of space."""
        cdef size_t pending = 0, need, want, room
        cdef char *tail
        cdef int rc
        if c.heap_win:
            return self.heap_room(c)
        if c.win != NULL:
            pending = c.win_len - c.parser.cmd_start
        need = c.parser.need_total if c.parser.need_total > pending else pending
        if need >= self.max_query:
            return -E2BIG
        room = self.arena_size - self.arena_tail if self.cur_arena else 0
        tail = self.arena + self.arena_tail
        if c.win != NULL and self.cur_arena and c.win + c.win_len == tail and \
                need - pending <= room and room >= 4096:
            return 0                              # contiguous at the tail: recv appends
        want = need + self.window
        if want > room:
            if self.arena_retry_ns and now_ns() < self.arena_retry_ns:
                rc = -ENOSPC
            else:
                rc = self.arena_new(want if want > ARENA_BYTES else ARENA_BYTES, want)
            if rc != 0:
                if rc == -ENOSPC or rc == -EDQUOT:
                    # Retry the pool a little later (deletes and the free
                    # pass make room); meanwhile receive on the heap.
                    self.arena_retry_ns = now_ns() + 50000000
                    return self.heap_room(c)
                return rc
            self.arena_retry_ns = 0
            tail = self.arena
        if pending:
            memmove(tail, c.win + c.parser.cmd_start, pending)
            # A store through the mapping of an ordinary file: durable with
            # the next barrier (the I/O layer notes it; on pmem the staged
            # key and value are flushed by persist_range).
            self.db.note_moved(tail, pending)
        c.win = tail
        self.conn_arena(c, self.cur_arena)      # after the move: the old arena held the bytes
        c.win_off = self.arena_off + self.arena_tail
        c.win_len = pending
        c.win_keep = 0
        parser_moved(&c.parser, 0)
        self.arena_tail += pending
        return 0

    cdef int arena_new(self, size_t want, size_t minwant) noexcept nogil:
        """A new current arena of want bytes (minwant if only free segments
        that small can be had without growing the file)."""
        cdef uint64_t off, got
        cdef int i, slot = -1
        cdef Arena *grown
        for i in range(self.narenas):
            if self.arenas[i].size == 0:
                slot = i
                break
        if slot < 0:
            grown = <Arena *>realloc(self.arenas, (self.narenas + 8) * sizeof(Arena))
            if grown == NULL:
                return -ENOMEM
            self.arenas = grown
            memset(self.arenas + self.narenas, 0, 8 * sizeof(Arena))
            slot = self.narenas
            self.narenas += 8
        cdef int rc = self.db.alloc_arena(want, minwant, &off, &got)
        if rc != 0:
            return rc
        self.arenas[slot].off = off
        self.arenas[slot].size = got
        self.arenas[slot].users = 1               # the current arena's own hold
        self.arenas_allocated += 1
        if self.cur_arena:
            self.arena_unuse(self.cur_arena)
        self.cur_arena = slot + 1
        self.arena = self.base + off
        self.arena_off = off
        self.arena_size = got
        self.arena_tail = 0
        return 0

    cdef void conn_arena(self, Conn *c, int slot) noexcept nogil:
        """c's window now lies in arena `slot` (1-based; 0: none)."""
        if c.arena == slot:
            return
        if slot:
            self.arenas[slot - 1].users += 1
        if c.arena:
            self.arena_unuse(c.arena)
        c.arena = slot

    cdef void arena_unuse(self, int slot) noexcept nogil:
        cdef Arena *a
        if slot > self.narenas:
            return                                # the server is going away
        a = &self.arenas[slot - 1]
        a.users -= 1
        if a.users == 0:
            # Nothing is received into it any more and no unparsed byte lies
            # in it: from now on its segments are reclaimed like data extents.
            self.db.release_arena(a.off, a.size)
            a.size = 0
            a.off = 0
            self.arenas_released += 1

    cdef void sweep_arenas(self) noexcept nogil:
        """Move the partial requests that are the last thing keeping an old,
        sparse arena pinned (idle connections mid-request) to the current
        arena's tail, so the old one can be reclaimed.  Only unparsed request
        bytes are ever copied; an arena still mostly live stays until the
        values in it die."""
        cdef int fd, i, any_old = 0
        cdef Conn *c
        cdef Arena *a
        cdef int64_t now = now_ns()
        for i in range(self.narenas):
            if self.arenas[i].size and i + 1 != self.cur_arena:
                any_old = 1
                break
        if not any_old:
            return
        for fd in range(self.conns_cap):
            c = self.conns[fd]
            if c == NULL or not c.arena or c.arena == self.cur_arena or c.keys != NULL or \
                    now - c.last_recv_ns < 1000000000:
                continue                          # (a request still arriving moves by itself)
            a = &self.arenas[c.arena - 1]
            if self.db.range_live(a.off, a.size) * 2 > <int64_t>a.size:
                continue
            i = <int>(c.win_len - c.parser.cmd_start)
            if self.arena_room(c) == 0:
                self.partial_moves += 1
                self.partial_moved_bytes += <uint64_t>i

    cdef int heap_room(self, Conn *c) noexcept nogil:
        """Receive on the heap (no pool arena could be had): the window is
        malloc'ed, the pending request copied into it, and commands see
        their arguments as not in the pool (a write then needs new space and
        is refused on a full disk; reads and deletes go on)."""
        cdef size_t pending = 0, need, size
        cdef char *w
        if c.win != NULL:
            pending = c.win_len - c.parser.cmd_start
        need = c.parser.need_total if c.parser.need_total > pending else pending
        if need >= self.max_query:
            return -E2BIG
        if c.heap_win and c.win_len < c.win_size:
            return 0
        size = need + self.window
        size = (size + BUF_SIZE - 1) // BUF_SIZE * BUF_SIZE
        w = <char *>malloc(size)
        if w == NULL:
            return -ENOMEM
        if pending:
            memcpy(w, c.win + c.parser.cmd_start, pending)
        if c.heap_win:
            free(c.win)
        else:
            self.conn_arena(c, 0)
        c.win = w
        c.heap_win = 1
        c.win_size = size
        c.win_len = pending
        c.win_keep = 0
        parser_moved(&c.parser, 0)
        return 0

    cdef void on_readable(self, Conn *c) noexcept nogil:
        cdef ssize_t got
        cdef size_t space
        cdef int i, rc
        cdef int64_t t0
        cdef int fd = c.fd
        if c.ready or c.paused:
            return                                # its window's input comes first
        for i in range(READS_PER_EVENT):
            if self.copy_mode:
                rc = self.make_room(c)
            else:
                rc = self.arena_room(c)
            if rc != 0:
                if rc == -E2BIG:
                    out_error(&c.out, b"ERR Protocol error: query buffer limit exceeded")
                else:
                    out_error(&c.out, b"ERR server out of memory for the request")
                c.closing = 1
                c.out_ready = c.out.len
                return
            if self.copy_mode or c.heap_win:
                space = c.win_size - c.win_len
            else:
                space = self.arena_size - self.arena_tail
            t0 = now_ns()
            if self.copy_mode or c.heap_win:
                got = recv(fd, c.win + c.win_len, space, 0)
            elif self.splice_pipe[0] >= 0:
                got = self.splice_in(fd, c.win + c.win_len, space)
            else:
                # Into the mapping: on an ordinary file these stores are made
                # durable by the file's barrier (the I/O layer notes them).
                got = self.db.receive_into(fd, c.win + c.win_len, space)
            self.bd.loop_recv_ns += now_ns() - t0
            if got == 0:
                self.close_conn(c)
                return
            if got < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    return
                self.close_conn(c)
                return
            c.win_len += <size_t>got
            c.last_recv_ns = self.loop_ns
            if not self.copy_mode and not c.heap_win:
                self.arena_tail += <size_t>got
            self.bytes_received += <uint64_t>got
            self.process_input(c)
            if c.over_limit:
                self.close_conn(c)
                return
            if self.conns[fd] == NULL or c.closing or c.ready or c.paused:
                return
            if <size_t>got < space:
                return                            # socket drained (short read)

    cdef void finish_input(self, Conn *c) noexcept nogil:
        """Append what this read's commands staged; their replies wait for it."""
        cdef int rc
        if self.nrecs == 0:
            return
        rc = self.commit_staged()
        if rc != 0:
            # Nothing staged was logged: the replies written for it must never
            # be sent.  Drop them and close (a reply cannot be taken back).
            self.nrecs = 0
            self.out_truncate(c, c.out_ready)
            c.closing = 1
            return
        if c.hold_lsn == HOLD_PENDING:
            c.hold_lsn = self.appended_lsn
        if not self.sync_acks:
            c.out_ready = c.out.len

    cdef void process_input(self, Conn *c) noexcept nogil:
        """Run the complete commands in the window -- at most a slice of
        them, and none while the connection's unsent output is over the
        pause mark: the rest waits in the window (run_ready comes back to it)
        and nothing more is read from the socket meanwhile, so one pipelining
        or non-reading client neither holds the loop nor grows memory."""
        cdef int r, i, budget = CMDS_PER_SLICE
        cdef RespParser *p = &c.parser
        cdef int64_t t0
        if c.keys != NULL:
            return
        t0 = now_ns()
        while not c.closing:
            if budget == 0 or self.output_full(c):
                if p.pos < c.win_len:
                    if self.output_full(c):
                        c.paused = 1
                        self.rearm(c)
                    elif not c.ready:
                        c.ready = 1
                        self.nready += 1
                break
            budget -= 1
            r = parse_command(p, c.win, c.win_len)
            if r == PARSE_NEED_MORE:
                break
            if r == PARSE_ERROR:
                self.protocol_errors += 1
                out_error(&c.out, p.error)
                c.closing = 1
                self.reply_done(c)
                break
            if p.argc > 0:
                if p.argc > self.args.cap and self.grow_args(p.argc) != 0:
                    out_error(&c.out, b"ERR out of memory")
                    c.closing = 1
                    break
                for i in range(p.argc):
                    self.args.ptr[i] = c.win + p.cmd_start + p.arg_off[i]
                    self.args.len[i] = p.arg_len[i]
                self.args.argc = p.argc
                self.args.in_pool = not self.copy_mode and not c.heap_win
                execute(self, c, p.cmd_start)
                if self.check_output_limit(c):
                    c.over_limit = 1
                    c.closing = 1
            parser_rebase(p, p.pos)
            if c.keys != NULL:
                # KEYS runs a slice per loop turn; the commands after it
                # wait in the window (their replies come after its reply).
                if not c.ready:
                    c.ready = 1
                    self.nready += 1
                break
        self.finish_input(c)
        self.bd.loop_exec_ns += now_ns() - t0
        # Everything consumed: the bytes after the last referenced value are
        # dead and may be received into again.
        if p.cmd_start == c.win_len and p.state == 0:
            if self.copy_mode:
                c.win_len = 0
            else:
                if c.heap_win:
                    free(c.win)                   # the next read tries the pool again
                    c.heap_win = 0
                elif c.win + c.win_len == self.arena + self.arena_tail:
                    self.arena_tail = <size_t>(c.win - self.arena) + c.win_keep
                # Nothing unparsed is left: the connection holds no arena
                # (the next read takes the current one's tail).
                self.conn_arena(c, 0)
                c.win = NULL
                c.win_len = 0
                c.win_keep = 0
            parser_rebase(p, c.win_len)

    cdef int grow_args(self, int n) noexcept nogil:
        cdef const char **pp = <const char **>realloc(<void *>self.args.ptr, n * sizeof(char *))
        if pp == NULL:
            return -1
        self.args.ptr = pp
        cdef size_t *ll = <size_t *>realloc(self.args.len, n * sizeof(size_t))
        if ll == NULL:
            return -1
        self.args.len = ll
        self.args.cap = n
        return 0

    # ------------------------------------------------------------ sending
    cdef void flush_output(self, Conn *c) noexcept nogil:
        """send_output, its time counted in INFO breakdown's loop_send_us."""
        cdef int64_t t0 = now_ns()
        self.send_output(c)
        self.bd.loop_send_ns += now_ns() - t0

    cdef void send_output(self, Conn *c) noexcept nogil:
        """Send the ready replies: reply bytes from out.data and, between
        them, values straight from the pool (OutRef), in one sendmsg."""
        cdef iovec iov[SEND_IOV]
        cdef msghdr msg
        cdef ssize_t n
        cdef size_t pos, end, rs
        cdef int r, niov
        cdef char *base = self.base
        memset(&msg, 0, sizeof(msghdr))
        msg.msg_iov = iov
        while True:
            niov = 0
            pos = c.out.sent
            r = c.ref_head
            rs = c.ref_sent
            while niov < SEND_IOV:
                if r < c.nrefs and c.refs[r].at == pos and pos < c.out_ready:
                    iov[niov].iov_base = base + c.refs[r].off + rs
                    iov[niov].iov_len = c.refs[r].len - rs
                    niov += 1
                    r += 1
                    rs = 0
                    continue
                end = c.out_ready
                if r < c.nrefs and c.refs[r].at < end:
                    end = c.refs[r].at
                if end <= pos:
                    break
                iov[niov].iov_base = c.out.data + pos
                iov[niov].iov_len = end - pos
                niov += 1
                pos = end
            if niov == 0:
                break
            msg.msg_iovlen = <size_t>niov
            n = sendmsg(c.fd, &msg, MSG_NOSIGNAL)
            if n < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    if not c.want_out:
                        c.want_out = 1
                        self.rearm(c)
                    return
                self.close_conn(c)
                return
            self.sent_bytes(c, <size_t>n)
        if c.out.sent == c.out.len:
            # Every reference lies before out.data[len] (a CRLF follows each).
            c.out.sent = 0
            c.out.len = 0
            c.out_ready = 0
            c.nrefs = 0
            c.ref_head = 0
        elif c.out.sent >= OUT_COMPACT:
            self.compact_output(c)
        if c.soft_since and self.obuf_soft and \
                c.out.len - c.out.sent + c.ref_bytes < self.obuf_soft:
            c.soft_since = 0
        if c.paused and not self.output_full(c):
            c.paused = 0
            if not c.ready:
                c.ready = 1                       # its window's input runs next
                self.nready += 1
            self.rearm(c)
        if c.want_out:
            c.want_out = 0
            self.rearm(c)
        if c.closing and c.out.len == 0:
            self.close_conn(c)

    cdef void sent_bytes(self, Conn *c, size_t n) noexcept nogil:
        """Advance the send position over n bytes of the reply stream,
        unpinning each value once all of it is sent."""
        cdef size_t left, end, take
        cdef OutRef *ref
        while n > 0:
            if c.ref_head < c.nrefs and c.refs[c.ref_head].at == c.out.sent:
                ref = &c.refs[c.ref_head]
                left = ref.len - c.ref_sent
                if n >= left:
                    n -= left
                    c.ref_bytes -= left
                    self.db.pin_value(ref.off, ref.len, -1)
                    c.ref_head += 1
                    c.ref_sent = 0
                else:
                    c.ref_sent += n
                    c.ref_bytes -= n
                    n = 0
                continue
            end = c.out_ready
            if c.ref_head < c.nrefs and c.refs[c.ref_head].at < end:
                end = c.refs[c.ref_head].at
            take = end - c.out.sent
            if take > n:
                take = n
            c.out.sent += take
            n -= take

    cdef void compact_output(self, Conn *c) noexcept nogil:
        """Move the unsent part of the reply stream to the front, so a
        client that reads slowly does not keep what it has read in memory."""
        cdef size_t cut = c.out.sent
        cdef int i, live = c.nrefs - c.ref_head
        memmove(c.out.data, c.out.data + cut, c.out.len - cut)
        c.out.len -= cut
        c.out.sent = 0
        c.out_ready -= cut
        if c.ref_head:
            memmove(c.refs, c.refs + c.ref_head, <size_t>live * sizeof(OutRef))
            c.nrefs = live
            c.ref_head = 0
        for i in range(c.nrefs):
            c.refs[i].at -= cut

    cdef void drop_refs(self, Conn *c, size_t from_at) noexcept nogil:
        """Forget (and unpin) the unsent values placed at from_at or later."""
        cdef OutRef *ref
        while c.nrefs > c.ref_head and c.refs[c.nrefs - 1].at >= from_at:
            c.nrefs -= 1
            ref = &c.refs[c.nrefs]
            if c.nrefs == c.ref_head:
                c.ref_bytes -= ref.len - c.ref_sent
                c.ref_sent = 0
            else:
                c.ref_bytes -= ref.len
            self.db.pin_value(ref.off, ref.len, -1)

    cdef void out_truncate(self, Conn *c, size_t n) noexcept nogil:
        """Take back the replies written after stream offset n (never sent)."""
        self.drop_refs(c, n)
        c.out.len = n

    cdef void reply_value(self, Conn *c, const char *v, size_t vlen, int pinned) noexcept nogil:
        """A bulk reply of a value in the pool.  A pinned value (find_pinned
        pins those of REF_MIN bytes or more) is sent from where it lies; the
        pin goes when it is sent or dropped."""
        cdef OutRef *grown
        cdef uint64_t off = <uint64_t>(v - self.base)
        if pinned and c.nrefs == c.refs_cap:
            grown = <OutRef *>realloc(c.refs, (c.refs_cap * 2 + 16) * sizeof(OutRef))
            if grown == NULL:
                self.db.pin_value(off, vlen, -1)
                pinned = 0
            else:
                c.refs = grown
                c.refs_cap = c.refs_cap * 2 + 16
        if not pinned:
            out_bulk(&c.out, v, vlen)
            return
        if out_bulk_header(&c.out, vlen) != 0 or out_reserve(&c.out, 2) != 0:
            self.db.pin_value(off, vlen, -1)
            return
        c.refs[c.nrefs].at = c.out.len
        c.refs[c.nrefs].off = off
        c.refs[c.nrefs].len = vlen
        c.nrefs += 1
        c.ref_bytes += vlen
        out_raw(&c.out, b"\r\n", 2)
        self.referenced_replies += 1

    cdef int output_full(self, Conn *c) noexcept nogil:
        """Enough unsent output in memory that the connection's input waits."""
        return (c.out.len - c.out.sent >= OUT_PAUSE_BYTES or
                c.nrefs - c.ref_head >= OUT_PAUSE_REFS)

    cdef int check_output_limit(self, Conn *c) noexcept nogil:
        """Redis's client-output-buffer-limit for normal clients: 1 when the
        unsent replies (bytes and referenced values) reached the hard limit,
        or stayed at or over the soft limit for the soft seconds."""
        cdef uint64_t size
        cdef int64_t t
        if self.obuf_hard == 0 and self.obuf_soft == 0:
            return 0
        size = c.out.len - c.out.sent + c.ref_bytes
        if self.obuf_hard and size >= self.obuf_hard:
            self.note_limit_close(c)
            return 1
        if self.obuf_soft and size >= self.obuf_soft:
            t = now_ns()
            if c.soft_since == 0:
                c.soft_since = t
            elif t - c.soft_since >= self.obuf_soft_ns:
                self.note_limit_close(c)
                return 1
        else:
            c.soft_since = 0
        return 0

    cdef void note_limit_close(self, Conn *c) noexcept nogil:
        self.obuf_disconnections += 1
        with gil:
            log.warning("client id=%d closed for overcoming of output buffer limits "
                        "(%d bytes of replies unsent)", c.id, c.out.len - c.out.sent + c.ref_bytes)

    cdef void rearm(self, Conn *c) noexcept nogil:
        """epoll interest from the connection's state: input unless paused,
        output while a send would block."""
        self.watch(c.fd, (0 if c.paused else EPOLLIN) | (EPOLLOUT if c.want_out else 0), 1)

    cdef void run_ready(self) noexcept nogil:
        """Give every connection with unprocessed input its next slice."""
        cdef int fd
        cdef Conn *c
        cdef int64_t t0
        for fd in range(self.conns_cap):
            if self.nready == 0:
                return
            c = self.conns[fd]
            if c == NULL or not c.ready:
                continue
            c.ready = 0
            self.nready -= 1
            if c.paused or c.closing:
                continue
            if c.keys != NULL:
                t0 = now_ns()
                keys_step(self, c, KEYS_SLICE)
                self.bd.loop_exec_ns += now_ns() - t0
                c.ready = 1                       # the next slice, or (done) its input
                self.nready += 1
                continue
            self.process_input(c)
            if c.over_limit:
                self.close_conn(c)

    cdef void reply_done(self, Conn *c) noexcept nogil:
        """A reply was appended: it may go out at once only if nothing that
        is not yet durable has been appended before it."""
        cdef uint64_t durable
        if not self.sync_acks:
            if self.nrecs == 0:
                c.out_ready = c.out.len
            return
        if self.nrecs > 0:
            c.hold_lsn = HOLD_PENDING             # set to the real lsn by finish_input
            return
        pthread_mutex_lock(&self.flush_lock)
        durable = self.flushed_lsn
        pthread_mutex_unlock(&self.flush_lock)
        if self.appended_lsn > durable:
            c.hold_lsn = self.appended_lsn
        else:
            c.out_ready = c.out.len               # nothing pending: all may go

    # ------------------------------------------------------------ engine glue
    cdef LogRecord *next_rec(self) noexcept nogil:
        """The group's next record slot (grown when full), or NULL (ENOMEM)."""
        cdef LogRecord *grown
        if self.nrecs == self.recs_cap:
            grown = <LogRecord *>realloc(self.recs, self.recs_cap * 2 * sizeof(LogRecord))
            if grown == NULL:
                return NULL
            self.recs = grown
            self.recs_cap *= 2
        return &self.recs[self.nrecs]

    cdef int stage_record(self, int rtype, const char *k, size_t klen, const char *v,
                          size_t vlen, int in_pool) noexcept nogil:
        """Stage a PUT or DEL for the current command.  Bytes already in the
        pool are referenced where they are (the zero-copy path); anything else
        is copied into a data extent first."""
        cdef LogRecord *rec
        cdef int rc
        rec = self.next_rec()
        if rec == NULL:
            return -ENOMEM
        if in_pool and rtype == REC_PUT:
            rc = self.db.stage_ref(k, <uint32_t>klen, v, vlen, rec)
            self.zero_copy_puts += 1
        elif rtype == REC_PUT:
            rc = self.db.stage_put(k, <uint32_t>klen, v, vlen, rec)
            self.copied_puts += 1
        else:
            rc = self.db.stage_delete(k, <uint32_t>klen, rec)
        if rc == 0:
            self.nrecs += 1
            if self.nwatched:
                self.key_modified(k, klen)
        else:
            self.stage_rc = rc
        return rc

    cdef void space_error(self, Conn *c) noexcept nogil:
        """The reply to a write that could not get space (stage_record
        failed with stage_rc): on a full disk (or past --max-disk) Redis's
        -OOM class, naming the disk; reads, deletes and INFO go on."""
        if self.stage_rc == -ENOSPC or self.stage_rc == -EDQUOT:
            self.disk_full_refusals += 1
            out_error(&c.out, b"OOM command not allowed when the disk is full: no space left for "
                              b"the database's files (delete keys or raise --max-disk; writes "
                              b"resume once space is reclaimed)")
        else:
            out_error(&c.out, b"ERR out of memory for the value")

    cdef void drop_cmd_recs(self) noexcept nogil:
        """Forget the records the current command staged (releasing the
        pins on the bytes they copied into the pool)."""
        if self.nrecs > self.cmd_recs_start:
            self.db.unstage(self.recs + self.cmd_recs_start, self.nrecs - self.cmd_recs_start)
        self.nrecs = self.cmd_recs_start

    cdef int commit_staged(self) noexcept nogil:
        cdef int rc
        cdef uint64_t lsn
        cdef int64_t t0
        if self.nrecs == 0:
            return 0
        t0 = now_ns()
        rc = self.db.append_group(self.recs, self.nrecs, &lsn)
        self.bd.loop_append_ns += now_ns() - t0
        self.nrecs = 0
        if rc == 0:
            self.kick_flusher(lsn)
        return rc

    cdef int find(self, const char *k, size_t klen, const char **vp, size_t *vlen) noexcept nogil:
        return self.find_ex(k, klen, vp, vlen, 0)

    cdef int find_pinned(self, const char *k, size_t klen, const char **vp, size_t *vlen) noexcept nogil:
        """find() for a reply: a value of REF_MIN bytes or more comes back
        pinned, for reply_value to send from the pool."""
        return self.find_ex(k, klen, vp, vlen, 1)

    cdef int find_ex(self, const char *k, size_t klen, const char **vp, size_t *vlen,
                     int pin) noexcept nogil:
        """Look a key up, seeing records staged by this command/transaction
        first.  1 found (vp/vlen set), 0 missing (or the index failed:
        find_err is set)."""
        cdef int i, rc
        cdef LogRecord *r
        cdef Ref ref
        cdef char *base = self.base
        for i in range(self.nrecs - 1, -1, -1):
            r = &self.recs[i]
            if r.klen == klen and memcmp(base + r.koff, k, klen) == 0:
                if r.type == REC_DEL:
                    return 0
                vp[0] = base + r.voff
                vlen[0] = r.vlen
                if pin and r.vlen >= REF_MIN:
                    # Staged bytes are held (a staging pin, or an arena) until
                    # appended, so this pin is taken before any release.
                    self.db.pin_value(r.voff, r.vlen, 1)
                return 1
        if klen > MAX_KEY_LEN:
            return 0
        rc = self.db.read_value(k, <uint32_t>klen, &ref, REF_MIN if pin else 0)
        if rc <= 0:
            if rc < 0:
                self.find_err = rc                # execute() replaces the reply
            return 0
        vp[0] = base + ref.voff
        vlen[0] = ref.vlen
        return 1

    cdef uint64_t now_ms(self) noexcept nogil:
        return self.db.now_ms()

    cdef int find_exp(self, const char *k, size_t klen, const char **vp, size_t *vlen,
                      uint64_t *expire_ms) noexcept nogil:
        """find(), and the key's expire_ms (0: none) in *expire_ms."""
        cdef int i, rc
        cdef LogRecord *r
        cdef Ref ref
        cdef char *base = self.base
        expire_ms[0] = 0
        for i in range(self.nrecs - 1, -1, -1):
            r = &self.recs[i]
            if r.klen == klen and memcmp(base + r.koff, k, klen) == 0:
                if r.type == REC_DEL or (r.expire_ms != 0 and r.expire_ms <= self.db.now_ms()):
                    return 0
                vp[0] = base + r.voff
                vlen[0] = r.vlen
                expire_ms[0] = r.expire_ms
                return 1
        if klen > MAX_KEY_LEN:
            return 0
        rc = self.db.read_value(k, <uint32_t>klen, &ref, 0)
        if rc <= 0:
            if rc < 0:
                self.find_err = rc
            return 0
        vp[0] = base + ref.voff
        vlen[0] = ref.vlen
        expire_ms[0] = ref.expire_ms
        return 1

    cdef int stage_expiry(self, const char *k, size_t klen, uint64_t expire_ms) noexcept nogil:
        """Stage a PUT naming k's current bytes with expire_ms: a copy of
        its record staged in this command/transaction, or (committed) the
        engine's stage_expiry.  Pinned like any staged record."""
        cdef LogRecord *rec
        cdef LogRecord *r
        cdef Ref cur
        cdef int i, rc
        cdef char *base = self.base
        rec = self.next_rec()
        if rec == NULL:
            return -ENOMEM
        for i in range(self.nrecs - 1, -1, -1):
            r = &self.recs[i]
            if r.klen == klen and memcmp(base + r.koff, k, klen) == 0:
                if r.type == REC_DEL or (r.expire_ms != 0 and r.expire_ms <= self.db.now_ms()):
                    return 0
                rec[0] = r[0]
                rec.expire_ms = expire_ms
                self.db.pin_record(rec)
                self.nrecs += 1
                self.key_modified(k, klen)
                return 1
        if klen > MAX_KEY_LEN:
            return 0
        rc = self.db.stage_expiry(k, <uint32_t>klen, expire_ms, rec, &cur)
        if rc > 0:
            self.nrecs += 1
            self.key_modified(k, klen)            # EXPIRE/PERSIST touch the key (WATCH)
        return rc

    cdef int64_t staged_dbsize(self, int dbno) noexcept nogil:
        """Database dbno's key count as the index will have it once the
        records staged by this transaction are applied."""
        cdef int64_t n = 0, live = 0
        cdef int i, j, later, rc
        rc = self.db.count_live(dbno, &n, &live)
        if rc != 0:
            self.find_err = rc
        cdef LogRecord *r
        cdef Ref ref
        cdef char *base = self.base
        for i in range(self.nrecs):
            r = &self.recs[i]
            if self.db.key_db(base + r.koff, r.klen) != dbno:
                continue
            later = 0
            for j in range(i + 1, self.nrecs):
                if self.recs[j].klen == r.klen and \
                        memcmp(base + self.recs[j].koff, base + r.koff, r.klen) == 0:
                    later = 1
                    break
            if later:
                continue                          # only the last record for a key counts
            rc = self.db.lookup(base + r.koff, r.klen, &ref)
            if rc < 0:
                self.find_err = rc
                rc = 0
            n += (r.type == REC_PUT) - rc
        return n

    cdef int key_ok(self, Conn *c, size_t klen) noexcept nogil:
        if klen > MAX_KEY_LEN:
            out_error(&c.out, b"ERR key too long: pastedb keys are at most 1024 bytes (1022 in "
                              b"a database other than 0, or starting with byte 0xFF)")
            return 0
        return 1

    # ------------------------------------------------------------ WATCH
    cdef void key_modified(self, const char *k, size_t klen) noexcept nogil:
        cdef WatchKey *w
        cdef uint32_t h
        if self.nwatched == 0:
            return
        h = key_hash(k, klen)
        w = self.watch_buckets[h & (self.watch_nbuckets - 1)]
        while w != NULL:
            if w.hash == h and w.klen == klen and memcmp(w.key, k, klen) == 0:
                w.conn.watch_dirty = 1
            w = w.next

    cdef int watch_key(self, Conn *c, const char *k, size_t klen) noexcept nogil:
        """Add k to c's watched keys (once).  0 or -ENOMEM.  The table
        doubles when it holds twice as many entries as chains, so a lookup
        (here and in key_modified) stays a short chain however many keys
        are watched."""
        cdef uint32_t h = key_hash(k, klen)
        cdef WatchKey *w = self.watch_buckets[h & (self.watch_nbuckets - 1)]
        cdef WatchKey **grown
        cdef WatchKey *nxt
        cdef uint64_t i, n, exp
        cdef const char *v
        cdef size_t vlen
        while w != NULL:
            if w.conn == c and w.hash == h and w.klen == klen and memcmp(w.key, k, klen) == 0:
                return 0
            w = w.next
        if <uint64_t>self.nwatched >= 2 * self.watch_nbuckets:
            n = self.watch_nbuckets * 2
            grown = <WatchKey **>calloc(n, sizeof(WatchKey *))
            if grown != NULL:
                for i in range(self.watch_nbuckets):
                    w = self.watch_buckets[i]
                    while w != NULL:
                        nxt = w.next
                        w.next = grown[w.hash & (n - 1)]
                        grown[w.hash & (n - 1)] = w
                        w = nxt
                free(self.watch_buckets)
                self.watch_buckets = grown
                self.watch_nbuckets = n
        w = <WatchKey *>malloc(sizeof(WatchKey))
        if w == NULL:
            return -ENOMEM
        w.key = <char *>malloc(klen + 1)
        if w.key == NULL:
            free(w)
            return -ENOMEM
        memcpy(w.key, k, klen)
        w.klen = <uint32_t>klen
        w.hash = h
        exp = 0
        if not self.find_exp(k, klen, &v, &vlen, &exp):
            exp = 0                                # absent or already expired: nothing to expire
        w.expire_ms = exp
        w.conn = c
        w.conn_next = c.watched
        c.watched = w
        w.next = self.watch_buckets[h & (self.watch_nbuckets - 1)]
        self.watch_buckets[h & (self.watch_nbuckets - 1)] = w
        self.nwatched += 1
        return 0

    cdef void unwatch_all(self, Conn *c) noexcept nogil:
        """UNWATCH: forget c's watched keys and its dirty flag."""
        cdef WatchKey *w = c.watched
        cdef WatchKey *nxt
        cdef WatchKey **pp
        while w != NULL:
            nxt = w.conn_next
            pp = &self.watch_buckets[w.hash & (self.watch_nbuckets - 1)]
            while pp[0] != w:
                pp = &pp[0].next
            pp[0] = w.next
            free(w.key)
            free(w)
            self.nwatched -= 1
            w = nxt
        c.watched = NULL
        c.watch_dirty = 0

    cdef int watched_expired(self, Conn *c) noexcept nogil:
        """1 if a key c WATCHes was alive at WATCH and has expired since."""
        cdef WatchKey *w = c.watched
        cdef uint64_t now = 0
        while w != NULL:
            if w.expire_ms != 0:
                if now == 0:
                    now = self.db.now_ms()
                if w.expire_ms <= now:
                    return 1
            w = w.conn_next
        return 0

    # --------------------------------------------------------- data commands
    cdef void keep_window(self, Conn *c, const char *end) noexcept nogil:
        cdef size_t upto = <size_t>(end - c.win)
        if upto > c.win_keep:
            c.win_keep = upto

    # ------------------------------------------------ rare commands in Python
    def receive_path(self):
        if self.copy_mode:
            return "recv-heap+copy"
        return "splice" if self.splice_pipe[0] >= 0 else "recv-mapping"

    def config_values(self):
        return {
            b"save": b"", b"appendonly": b"yes",
            b"appendfsync": b"always" if self.sync_acks else b"no",
            b"port": str(self.port).encode(), b"bind": str(self.bind).encode(),
            b"maxclients": str(self.maxclients).encode(),
            b"proto-max-bulk-len": str(self.max_bulk_len).encode(),
            b"client-query-buffer-limit": str(self.max_query).encode(),
            b"client-output-buffer-limit": b"normal %d %d %d" % (
                self.obuf_hard, self.obuf_soft, self.obuf_soft_ns // 1000000000),
            b"databases": str(self.ndb).encode(), b"requirepass": b"", b"maxmemory": b"0",
            b"maxmemory-policy": b"noeviction",
            b"dir": os.fsencode(self.db.path),
        }

    def space_info(self, st):
        """INFO persistence's space lines: live and file bytes, their ratio
        and the bound it is held to, segments free and reclaimed, the
        receive arenas, and whether the disk is full."""
        ratio = st["space_ratio"]
        return ("live_bytes:%d\r\nfile_bytes:%d\r\npool_file_bytes:%d\r\nindex_file_bytes:%d\r\n"
                "space_ratio:%s\r\nspace_bound_bytes:%d\r\nfree_segments:%d\r\n"
                "reclaimed_segments:%d\r\nreused_segments:%d\r\nrelocated_bytes:%d\r\n"
                "truncated_bytes:%d\r\narenas_allocated:%d\r\narenas_released:%d\r\n"
                "arenas_pinned:%d\r\npartial_requests_moved:%d\r\n"
                "partial_bytes_moved:%d\r\ndisk_full:%d\r\ndisk_full_refusals:%d\r\n"
                "max_disk:%d\r\n"
                % (st["live_bytes"], st["file_bytes"], st["pool_file_bytes"],
                   st["index_file_bytes"], "%.3f" % ratio if ratio is not None else "-",
                   st["space_bound_bytes"], st["free_segments"], st["freed_segments"],
                   st["reused_segments"], st["relocated_bytes"], st["truncated_bytes"],
                   self.arenas_allocated, self.arenas_released, self.arenas_pinned(),
                   self.partial_moves, self.partial_moved_bytes, st["disk_full"],
                   self.disk_full_refusals, st["max_disk"]))

    def arenas_pinned(self):
        cdef int i, n = 0
        for i in range(self.narenas):
            if self.arenas[i].size:
                n += 1
        return n

    def config_set(self, bytes name, bytes value):
        """CONFIG SET of one option: None when set, else the error text.
        What pastedb can change at run time changes; an option it has but
        cannot change is accepted only with the value it already has."""
        name = name.lower()
        text = value.decode("latin-1")
        current = self.config_values()
        try:
            if name == b"maxclients":
                n = int(text) if text.isdigit() else 0
                if n < 1:
                    raise ValueError("argument must be between 1 and 2147483647 inclusive")
                self.maxclients = n
            elif name == b"proto-max-bulk-len":
                n = parse_mem(text)
                if n < 1024:
                    raise ValueError("argument must be a memory value of at least 1024")
                self.max_bulk_len = min(n, MAX_VALUE_LEN)
                self.apply_bulk_limit()
            elif name == b"client-query-buffer-limit":
                n = parse_mem(text)
                if n < 1024 * 1024:
                    raise ValueError("argument must be a memory value of at least 1mb")
                self.max_query = n
            elif name == b"client-output-buffer-limit":
                words = text.split()
                if len(words) % 4 != 0 or not words:
                    raise ValueError("wrong number of arguments")
                for i in range(0, len(words), 4):
                    if words[i].lower() != "normal":
                        raise ValueError("pastedb has normal clients only")
                    hard, soft, secs = parse_output_limit(" ".join(words[i:i + 4]))
                    self.obuf_hard = hard
                    self.obuf_soft = soft
                    self.obuf_soft_ns = <int64_t>secs * 1000000000
            elif name in current:
                if name == b"maxmemory":
                    parse_mem(text)                   # Redis's check of the value first
                if value.lower() != current[name].lower():
                    return (f"ERR CONFIG SET '{name.decode('latin-1')}' is not supported by "
                            f"pastedb: it runs with {current[name].decode('latin-1')!r}")
            else:
                return ("ERR Unknown option or number of arguments for CONFIG SET - "
                        f"'{name.decode('latin-1')}'")
        except ValueError as e:
            return (f"ERR CONFIG SET failed (possibly related to argument "
                    f"'{name.decode('latin-1')}') - {e}")
        return None

    cdef void apply_bulk_limit(self):
        cdef int fd
        cdef Conn *c
        for fd in range(self.conns_cap):
            c = self.conns[fd]
            if c != NULL and c.authed:
                c.parser.max_bulk_len = self.max_bulk_len

    def keyspace_line(self, st):
        """INFO keyspace: a line per non-empty database."""
        return "".join("db%d:keys=%d,expires=%d,avg_ttl=0\r\n" % (n, keys, expires)
                       for n, (keys, expires) in sorted(self.db._keyspace().items()))

    def command_stats(self):
        """INFO commandstats: calls and refused calls per command run so far."""
        cdef int i
        lines = []
        for i in range(NCOMMANDS):
            if self.cmd_calls[i] or self.cmd_rejected[i]:
                lines.append("cmdstat_%s:calls=%d,rejected_calls=%d\r\n" % (
                    (<bytes>COMMANDS[i].name).decode(), self.cmd_calls[i], self.cmd_rejected[i]))
        return "".join(lines)

    cdef void reset_breakdown(self) noexcept nogil:
        """Start counting INFO breakdown afresh (serve start, CONFIG RESETSTAT)."""
        pthread_mutex_lock(&self.flush_lock)
        memset(&self.bd, 0, sizeof(Breakdown))
        self.bd.since_ns = now_ns()
        self.bd.commands_at_start = self.total_commands
        self.bd.writes_at_start = self.zero_copy_puts + self.copied_puts
        pthread_mutex_unlock(&self.flush_lock)

    def breakdown_info(self):
        """INFO breakdown: the loop thread's time by phase, and the flusher's
        (microseconds since the start or CONFIG RESETSTAT).  loop_other_us is
        the loop's time outside the phases named (the turn's bookkeeping:
        arena sweeps, ready lists, accepting)."""
        cdef Breakdown b
        pthread_mutex_lock(&self.flush_lock)
        b = self.bd
        pthread_mutex_unlock(&self.flush_lock)
        elapsed = now_ns() - b.since_ns
        named = (b.loop_wait_ns + b.loop_recv_ns + b.loop_exec_ns + b.loop_send_ns
                 + b.loop_barrier_ns)
        us = lambda ns: max(0, ns) // 1000
        return ("# Breakdown\r\nbreakdown_us:%d\r\nbreakdown_commands:%d\r\n"
                "breakdown_writes:%d\r\nloop_wait_us:%d\r\nloop_recv_us:%d\r\n"
                "loop_exec_us:%d\r\nloop_append_us:%d\r\nloop_send_us:%d\r\n"
                "loop_barrier_us:%d\r\nloop_barriers:%d\r\nloop_other_us:%d\r\n"
                "flusher_linger_us:%d\r\nflusher_barrier_us:%d\r\nflusher_barriers:%d\r\n"
                "flusher_group_conns:%d\r\nwake_us:%d\r\nwakes:%d\r\n"
                % (us(elapsed), self.total_commands - b.commands_at_start,
                   self.zero_copy_puts + self.copied_puts - b.writes_at_start,
                   us(b.loop_wait_ns), us(b.loop_recv_ns), us(b.loop_exec_ns),
                   us(b.loop_append_ns), us(b.loop_send_ns), us(b.loop_barrier_ns),
                   b.loop_barriers, us(elapsed - named), us(b.fl_linger_ns),
                   us(b.fl_barrier_ns), b.fl_barriers, b.fl_group_conns, us(b.wake_ns),
                   b.wakes))

    def info_text(self, sections=()):
        default = [b"server", b"clients", b"memory", b"persistence", b"stats", b"replication",
                   b"cpu", b"keyspace"]
        every = default[:-1] + [b"breakdown", b"commandstats", b"keyspace"]
        want = set()
        for sec in sections or [b"default"]:
            if sec in (b"all", b"everything"):
                want.update(every)
            elif sec == b"default":
                want.update(default)
            else:
                want.add(sec)
        st = self.db.stats() if (want & {b"persistence", b"keyspace", b"memory"}) else None
        parts = []
        for sec in every:
            if sec in want:
                parts.append(self.info_section(sec, st))
        return "\r\n".join(parts)

    def info_section(self, bytes sec, st):
        if sec == b"server":
            return ("# Server\r\nredis_version:%s\r\npastedb_version:0.1.0\r\n"
                    "redis_mode:standalone\r\nos:%s\r\narch_bits:64\r\nprocess_id:%d\r\n"
                    "tcp_port:%s\r\nuptime_in_seconds:%d\r\nuptime_in_days:%d\r\n"
                    "executable:pastedb\r\n"
                    % (VERSION, " ".join(os.uname()[0:3:2]), os.getpid(), self.port,
                       int(time.time() - self.start_time),
                       int(time.time() - self.start_time) // 86400))
        if sec == b"clients":
            return ("# Clients\r\nconnected_clients:%d\r\nmaxclients:%d\r\n"
                    "blocked_clients:0\r\nwatching_clients:%d\r\ntotal_watched_keys:%d\r\n"
                    % (self.nclients, self.maxclients, self.watching_clients(), self.nwatched))
        if sec == b"memory":
            # pastedb has no allocator accounting of its own: used_memory is
            # the process's resident set (the pool's mapped pages included).
            rss = resident_bytes()
            return ("# Memory\r\nused_memory:%d\r\nused_memory_human:%s\r\n"
                    "used_memory_rss:%d\r\nused_memory_rss_human:%s\r\n"
                    "used_memory_dataset:%d\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\n"
                    "maxmemory_policy:noeviction\r\n"
                    % (rss, human_bytes(rss), rss, human_bytes(rss), st["live_bytes"]))
        if sec == b"persistence":
            # Health, for a monitor that asks each shard directly (INFO does
            # not pass a proxy): "err" means writes are no longer acknowledged
            # (a barrier failed) -- restart the shard; shutting_down:1 means it
            # refuses new connections (its listening socket is closed) and
            # exits once its replies are out.
            health = ("aof_last_write_status:%s\r\nbarrier_errors:%d\r\ncheckpoint_error:%d\r\n"
                      "shutting_down:%d\r\nrecovered_records:%d\r\n"
                      % ("err" if (st["failed"] or self.flush_error) else "ok",
                         st["barrier_errors"], st["checkpoint_error"], self.listen_fd < 0,
                         st["recovered_records"]))
            return ("# Persistence\r\nloading:0\r\naof_enabled:1\r\nrdb_bgsave_in_progress:0\r\n"
                    "aof_rewrite_in_progress:0\r\npersist_backend:%s\r\n"
                    "ack_after_durable:%d\r\nreceive_mode:%s\r\nbarriers:%d\r\ncommit_groups:%d\r\n"
                    "log_records:%d\r\nlog_durable_lsn:%d\r\n%s%s"
                    % (st["persist"], self.sync_acks, "copy" if self.copy_mode else "zero-copy",
                       st["barriers"], st["commit_groups"], st["log_records"],
                       st["log_durable_lsn"], self.space_info(st), health))
        if sec == b"stats":
            return ("# Stats\r\ntotal_connections_received:%d\r\ntotal_commands_processed:%d\r\n"
                    "rejected_connections:%d\r\ntotal_net_input_bytes:%d\r\nprotocol_errors:%d\r\n"
                    "client_output_buffer_limit_disconnections:%d\r\n"
                    "zero_copy_puts:%d\r\ncopied_puts:%d\r\nreferenced_replies:%d\r\n"
                    "receive_path:%s\r\n"
                    % (self.total_connections, self.total_commands, self.rejected_connections,
                       self.bytes_received, self.protocol_errors, self.obuf_disconnections,
                       self.zero_copy_puts, self.copied_puts, self.referenced_replies,
                       self.receive_path()))
        if sec == b"replication":
            # No replication: a primary without replicas, at offset 0.
            return ("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
                    "master_failover_state:no-failover\r\nmaster_repl_offset:0\r\n"
                    "repl_backlog_active:0\r\n")
        if sec == b"cpu":
            me = resource.getrusage(resource.RUSAGE_SELF)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            return ("# CPU\r\nused_cpu_sys:%.6f\r\nused_cpu_user:%.6f\r\n"
                    "used_cpu_sys_children:%.6f\r\nused_cpu_user_children:%.6f\r\n"
                    % (me.ru_stime, me.ru_utime, kids.ru_stime, kids.ru_utime))
        if sec == b"commandstats":
            return "# Commandstats\r\n" + self.command_stats()
        if sec == b"breakdown":
            return self.breakdown_info()
        if sec == b"keyspace":
            return "# Keyspace\r\n" + self.keyspace_line(st)
        return ""

    def watching_clients(self):
        cdef int fd
        cdef int n = 0
        for fd in range(self.conns_cap):
            if self.conns[fd] != NULL and self.conns[fd].watched != NULL:
                n += 1
        return n


def resident_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def human_bytes(n):
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1024


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int set_nodelay(int fd) noexcept nogil:
    cdef int one = 1
    return setsockopt(fd, 6, 1, &one, sizeof(int))      # IPPROTO_TCP, TCP_NODELAY
