# server.pxd -- the network front end: an epoll loop that receives requests
# straight into pool extents, and a flusher thread that makes them durable.
#
# Zero-copy PUT path (the PASTE idea): a connection's receive window IS an
# extent of the pool file.  recv() writes the request bytes there; a SET's
# key and value are never moved -- the log record references them where they
# landed.  Only an incomplete request at the end of a full window is moved to
# the next window (and a value larger than a window gets a window of its own
# size, so it too is received in place).
#
# Durability: the loop appends records and hands the highest lsn to the
# flusher thread, which runs the group commit (one barrier for everything
# appended so far) while the loop goes on receiving and parsing the next
# group.  A reply is sent only once everything appended before it is durable,
# so no reply -- not even a GET -- reveals a write that could still be lost.

from libc.stdint cimport int64_t, uint32_t, uint64_t
from pastedb.core.clib cimport epoll_event, pthread_cond_t, pthread_mutex_t
from pastedb.core.engine cimport DB, MergeIter
from pastedb.core.index cimport Ref
from pastedb.core.format cimport LogRecord
from pastedb.core.resp cimport OutBuf, RespParser


cdef struct QueuedCmd:                # a command queued inside MULTI (copied)
    int argc
    char *blob                        # malloc'ed: the argument bytes back to back
    size_t *lens                      # malloc'ed: argument lengths


# INFO breakdown: where the server's time goes, in ns since the start or the
# last CONFIG RESETSTAT.  Cheap enough to leave on: two clock reads (vDSO,
# ~25 ns each) around each phase of a loop turn, not per byte.  The loop
# thread owns the loop_* fields; the flusher owns fl_* and writes them under
# flush_lock (INFO and RESETSTAT read and reset them under it too).
cdef struct Breakdown:
    int64_t since_ns                  # counting began (CLOCK_MONOTONIC)
    uint64_t commands_at_start        # total_commands then
    uint64_t writes_at_start          # zero_copy_puts + copied_puts then
    int64_t loop_wait_ns              # in epoll_wait: idle, or waiting on clients / the flusher
    int64_t loop_recv_ns              # recv / splice of request bytes
    int64_t loop_exec_ns              # parsing and running commands, the appends included
    int64_t loop_append_ns            # appending staged records to the log (append_group)
    int64_t loop_send_ns              # sending replies (sendmsg)
    int64_t loop_barrier_ns           # barriers the loop ran itself (<= 1 connection waiting)
    uint64_t loop_barriers
    int64_t wake_ns                   # the flusher's barrier end -> the loop reading its wake-up
    uint64_t wakes
    int64_t fl_linger_ns              # the flusher lingering for a fuller group
    int64_t fl_barrier_ns             # the flusher in make_durable
    uint64_t fl_barriers
    uint64_t fl_group_conns           # connections its barriers covered, summed
    int64_t fl_done_ns                # when its last barrier ended (for wake_ns)
    int64_t wake_seen_ns              # the loop: the last fl_done_ns it counted


cdef struct OutRef:                   # a reply's value, sent from where it lies in the pool
    size_t at                         # its place in the reply stream: before out.data[at]
    uint64_t off                      # pool offset of the value
    size_t len                        # its bytes (pinned until sent or dropped)


cdef struct KeysJob:                  # a KEYS walk in progress, a slice per loop turn
    char *pat                         # malloc'ed copy of the pattern
    size_t plen
    int every                         # the pattern is "*": every key, even the empty one
    OutBuf found                      # the matching keys so far, as bulk strings
    int64_t n                         # how many
    char *last                        # malloc'ed (MAX_KEY_LEN): the walk resumes after it
    uint32_t lastlen
    int started                       # last is set
    const LogRecord *recs             # inside EXEC: records staged before KEYS (they hide
    int nrecs                         # or add keys the index does not have yet)
    const char *base                  # the pool mapping (record offsets)
    int keyspaces                     # the keys carry their database (user_key)


cdef struct Arena:                   # a receive arena (zero-copy mode)
    uint64_t off                      # its pool offset
    uint64_t size                     # its bytes (whole segments)
    int users                         # 1 while current, + connections whose window lies in it;
                                      # at 0 its pin is dropped (release_arena) and the slot freed

cdef struct WatchKey:                # one key one connection WATCHes
    WatchKey *next                    # the next entry in the same hash bucket
    WatchKey *conn_next               # the connection's next watched key
    Conn *conn                        # who watches
    uint32_t hash                     # of the key (its chain: hash & (watch_nbuckets - 1))
    uint32_t klen
    uint64_t expire_ms                # the key's expiry at WATCH if it was alive then (0: none):
                                      # EXEC fails once it passes (Redis 7.0: expiring is a change)
    char *key                         # malloc'ed copy


cdef struct ScanSlot:                 # a SCAN cursor: the key the next call resumes after
    uint64_t cursor                   # the cursor id handed out (0: slot unused)
    uint32_t klen
    char *key                         # malloc'ed (MAX_KEY_LEN), allocated on first use


cdef struct Conn:
    int fd                            # the socket
    uint64_t id                       # CLIENT ID
    int resp3                         # HELLO 3 was negotiated
    int authed                        # AUTH passed (or no password set)
    int db                            # SELECTed database (format.pxd's keyspace)
    int closing                       # close once the output is flushed
    int in_multi                      # between MULTI and EXEC/DISCARD
    int multi_error                   # a queued command was rejected: EXEC aborts
    int want_out                      # EPOLLOUT is armed
    int waiting                       # on the server's list of held connections
    char *win                         # receive window (pool extent or heap)
    int arena                         # 1 + slot in Server.arenas holding win (0: none)
    int heap_win                      # zero-copy mode, but win is on the heap (no arena to be had)
    int64_t last_recv_ns              # when bytes last arrived (the loop's clock)
    uint64_t win_off                  # its pool offset (zero-copy mode)
    size_t win_size                   # window bytes
    size_t win_len                    # bytes received into it
    size_t win_keep                   # [0, win_keep) holds referenced values: never reused
    RespParser parser                 # request parser state
    OutBuf out                        # replies
    size_t out_ready                  # replies before this offset may be sent
    uint64_t hold_lsn                 # replies after out_ready wait for this lsn
    OutRef *refs                      # values in the replies, in stream order
    int nrefs                         # refs[ref_head, nrefs) are not fully sent
    int refs_cap
    int ref_head
    size_t ref_sent                   # bytes of refs[ref_head] already sent
    uint64_t ref_bytes                # unsent bytes of refs[ref_head, nrefs)
    int64_t soft_since                # when the output went over the soft limit (0: under)
    int paused                        # input not processed: too much output unsent
    int ready                         # unprocessed input in the window (a slice ended)
    int over_limit                    # past the output limit: close at once
    KeysJob *keys                     # KEYS running (NULL: none): input waits for it
    WatchKey *watched                 # WATCHed keys (chained through conn_next)
    int watch_dirty                   # a watched key was modified since WATCH: EXEC fails
    QueuedCmd *queue                  # MULTI queue
    int qlen
    int qcap
    char name[128]                    # CLIENT SETNAME
    int name_len


cdef struct Args:                     # the current command's arguments
    int argc
    int cap
    const char **ptr
    size_t *len
    int in_pool                       # the bytes lie in the pool (may be referenced)


cdef class Server:
    cdef DB db                        # the engine (its ingest API: engine.pxd)
    cdef char *base                   # the pool's mapping (fixed for the DB's life)
    cdef MergeIter scan_it            # FLUSHALL's walk over every live key (loop thread)
    cdef MergeIter rev_it             # the same, last key first (RANDOMKEY's upper bound)
    cdef WatchKey **watch_buckets     # WATCHed keys by hash (watch_nbuckets chains)
    cdef uint64_t watch_nbuckets      # a power of 2: doubles as entries grow
    cdef int64_t nwatched             # entries in them (0: key_modified returns at once)
    cdef ScanSlot *scan_slots         # SCAN cursors (SCAN_SLOTS, by cursor % SCAN_SLOTS)
    cdef uint64_t next_cursor         # the next SCAN cursor id
    cdef uint64_t rand_state          # RANDOMKEY's xorshift state
    cdef int ndb                      # --databases: SELECT 0..ndb-1 (1: the keyspace is one)
    cdef char *kbuf                   # the current command's keys in their stored form
    cdef size_t kbuf_cap
    cdef int find_err                 # a lookup failed (damaged index) in this command
    cdef int listen_fd
    cdef int epoll_fd
    cdef int event_fd                 # the flusher's "durable progress" doorbell
    cdef int signal_fd                # SIGTERM / SIGINT
    cdef Conn **conns                 # by fd
    cdef int conns_cap
    cdef int nclients
    cdef uint64_t next_client_id
    # configuration
    cdef int sync_acks                # 1: reply only after durable (default)
    cdef int copy_mode                # 1: the copying baseline (heap windows + memcpy)
    cdef size_t window                # receive window bytes
    cdef int maxclients
    cdef uint64_t max_bulk_len
    cdef size_t max_query             # per-client query buffer limit
    cdef uint64_t obuf_hard           # client-output-buffer-limit (normal): 0 = none
    cdef uint64_t obuf_soft
    cdef int64_t obuf_soft_ns         # how long past the soft limit is tolerated
    cdef int nready                   # connections with ready set
    cdef bytes requirepass            # b"" = none
    cdef int has_password             # requirepass is set
    cdef object port
    cdef object bind
    # group commit hand-off to the flusher thread
    cdef pthread_mutex_t flush_lock
    cdef pthread_cond_t flush_cond
    cdef uint64_t appended_lsn        # highest lsn appended by the loop
    cdef uint64_t flushed_lsn         # highest lsn the flusher made durable
    cdef int flush_error              # a barrier failed
    cdef int stopping                 # loop is shutting down
    cdef int flusher_done
    cdef int waiting_conns            # connections holding replies (set by the loop)
    cdef uint64_t flush_requested     # the loop asked the flusher to cover up to here
    cdef int flusher_busy             # a barrier is running (flusher or loop)
    cdef int last_group_conns         # waiting connections the last barrier covered
    cdef int flusher_lingering        # the flusher waits for waiting_conns to reach last_group_conns (only then does the loop signal a change of it)
    cdef int64_t last_barrier_ns      # how long the last barrier took
    cdef Breakdown bd                 # INFO breakdown (see Breakdown)
    # per-command scratch
    cdef Args args
    cdef LogRecord *recs              # records staged by the current command / EXEC
    cdef int nrecs
    cdef int recs_cap
    cdef int cmd_recs_start           # first record staged by the current command
    cdef int stage_rc                 # why the last stage_record failed (-errno)
    cdef int shutdown_requested
    cdef int in_exec                  # running EXEC's queue (no slicing: a transaction is whole)
    # stats
    cdef readonly uint64_t total_commands
    cdef readonly uint64_t total_connections
    cdef readonly uint64_t rejected_connections
    cdef readonly uint64_t protocol_errors
    cdef readonly uint64_t bytes_received
    cdef readonly uint64_t zero_copy_puts
    cdef readonly uint64_t copied_puts
    cdef readonly uint64_t obuf_disconnections    # clients closed past the output limit
    cdef readonly uint64_t referenced_replies     # values sent from the pool, not copied
    cdef double start_time
    cdef uint64_t *cmd_calls          # per command table entry: calls
    cdef uint64_t *cmd_rejected       # ... refused before running (arity, auth, MULTI)

    # the shared receive arena (zero-copy mode)
    cdef char *arena                  # current arena extent
    cdef uint64_t arena_off           # its pool offset
    cdef size_t arena_size
    cdef size_t arena_tail            # next byte to receive into
    cdef Arena *arenas                # arenas still pinned (slots with size 0 are free)
    cdef int narenas
    cdef int cur_arena                # 1 + slot of the current arena (0: none)
    cdef int64_t arena_retry_ns       # no arena could be had: receive on the heap until then
    cdef int64_t last_sweep_ns
    cdef int64_t loop_ns              # the loop's clock, taken once per turn
    cdef readonly uint64_t arenas_allocated
    cdef readonly uint64_t arenas_released    # arenas whose pin was dropped (reclaimable)
    cdef readonly uint64_t partial_moves      # partial requests moved out of old arenas
    cdef readonly uint64_t partial_moved_bytes
    cdef readonly uint64_t disk_full_refusals # commands refused for want of disk space
    cdef int splice_pipe[2]           # socket -> pipe -> pool file (ordinary files)
    cdef size_t splice_max            # pipe capacity

    cdef int loop(self) noexcept nogil
    cdef void reset_breakdown(self) noexcept nogil
    cdef void flusher(self) noexcept nogil
    cdef int watch(self, int fd, uint32_t events, int mod) noexcept nogil
    cdef void kick_flusher(self, uint64_t lsn) noexcept nogil
    cdef void drain_signalfd(self) noexcept nogil
    cdef int all_replies_sent(self) noexcept nogil
    cdef void after_events(self) noexcept nogil
    cdef int release_replies(self, uint64_t durable) noexcept nogil
    cdef void fail_all(self) noexcept nogil
    cdef void accept_all(self) noexcept nogil
    cdef void free_conn(self, Conn *c) noexcept nogil
    cdef void close_conn(self, Conn *c) noexcept nogil
    cdef int new_window(self, Conn *c, size_t need) noexcept nogil
    cdef int make_room(self, Conn *c) noexcept nogil
    cdef void on_readable(self, Conn *c) noexcept nogil
    cdef int arena_room(self, Conn *c) noexcept nogil
    cdef int arena_new(self, size_t want, size_t minwant) noexcept nogil
    cdef void conn_arena(self, Conn *c, int slot) noexcept nogil
    cdef void arena_unuse(self, int slot) noexcept nogil
    cdef void sweep_arenas(self) noexcept nogil
    cdef int heap_room(self, Conn *c) noexcept nogil
    cdef ssize_t splice_in(self, int fd, char *dst, size_t space) noexcept nogil
    cdef void process_input(self, Conn *c) noexcept nogil
    cdef void finish_input(self, Conn *c) noexcept nogil
    cdef int grow_args(self, int n) noexcept nogil
    cdef void flush_output(self, Conn *c) noexcept nogil
    cdef void send_output(self, Conn *c) noexcept nogil
    cdef void sent_bytes(self, Conn *c, size_t n) noexcept nogil
    cdef void compact_output(self, Conn *c) noexcept nogil
    cdef void drop_refs(self, Conn *c, size_t from_at) noexcept nogil
    cdef void out_truncate(self, Conn *c, size_t n) noexcept nogil
    cdef void reply_value(self, Conn *c, const char *v, size_t vlen, int pinned) noexcept nogil
    cdef int output_full(self, Conn *c) noexcept nogil
    cdef int check_output_limit(self, Conn *c) noexcept nogil
    cdef void note_limit_close(self, Conn *c) noexcept nogil
    cdef void rearm(self, Conn *c) noexcept nogil
    cdef void run_ready(self) noexcept nogil
    cdef void reply_done(self, Conn *c) noexcept nogil
    cdef LogRecord *next_rec(self) noexcept nogil
    cdef int stage_record(self, int rtype, const char *k, size_t klen, const char *v,
                          size_t vlen, int in_pool) noexcept nogil
    cdef void drop_cmd_recs(self) noexcept nogil
    cdef void space_error(self, Conn *c) noexcept nogil
    cdef int commit_staged(self) noexcept nogil
    cdef int find(self, const char *k, size_t klen, const char **vp, size_t *vlen) noexcept nogil
    cdef int find_pinned(self, const char *k, size_t klen, const char **vp, size_t *vlen) noexcept nogil
    cdef int find_ex(self, const char *k, size_t klen, const char **vp, size_t *vlen,
                     int pin) noexcept nogil
    cdef int key_ok(self, Conn *c, size_t klen) noexcept nogil
    # expiry: find() that also gives the key's expire_ms (0 none); stage a
    # record giving a key (staged or committed) a new expire_ms over its
    # current bytes (1 staged, 0 absent, negative status); the engine's clock.
    cdef int find_exp(self, const char *k, size_t klen, const char **vp, size_t *vlen,
                      uint64_t *expire_ms) noexcept nogil
    cdef int stage_expiry(self, const char *k, size_t klen, uint64_t expire_ms) noexcept nogil
    cdef uint64_t now_ms(self) noexcept nogil
    # The per-key modification hook: every write of a key (staged PUT or DEL,
    # and whatever else ends a key's life, e.g. an expiry) calls it, and it
    # marks the connections WATCHing the key, whose EXEC then fails.
    cdef void key_modified(self, const char *k, size_t klen) noexcept nogil
    cdef int watch_key(self, Conn *c, const char *k, size_t klen) noexcept nogil
    cdef void unwatch_all(self, Conn *c) noexcept nogil
    cdef int watched_expired(self, Conn *c) noexcept nogil
    cdef void apply_bulk_limit(self)
    cdef int64_t staged_dbsize(self, int dbno) noexcept nogil
    cdef void lift_unauth_limits(self, Conn *c) noexcept nogil
    cdef void keep_window(self, Conn *c, const char *end) noexcept nogil
