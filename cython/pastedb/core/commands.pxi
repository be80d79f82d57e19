# commands.pxi -- the server's commands: the table, dispatch and every
# command's implementation.  Included by server.pyx (one component: the
# commands reach the connection and the engine glue through Server's cdef
# methods; networking -- the loop, connections, buffers -- stays there).
#
# The command table is data: name, arity (negative: at least -arity),
# flags, the handler, and where the keys are (for COMMAND INFO).  execute()
# looks the name up, checks arity, AUTH and MULTI from the flags, and calls
# the handler; COMMAND reports the same table.

cdef extern from *:
    int __builtin_popcount(unsigned int x) nogil        # gcc/clang: BITCOUNT


cdef enum CmdFlag:
    F_WRITE = 1
    F_READONLY = 2
    F_NOAUTH = 4            # allowed before AUTH
    F_NOMULTI = 8           # executed at once even inside MULTI
    F_DENYMULTI = 16        # refused inside MULTI, and the EXEC aborts: Redis 7.0's no-multi
                            # commands (SHUTDOWN, SAVE; SYNC/PSYNC are not served), and BGSAVE
                            # (it would commit part of the transaction)

cdef enum:
    MAX_COMMANDS = 128
    LCS_MAX_CELLS = 4194304       # LCS's table: (len1+1)*(len2+1) cells of 4 bytes at most
    RANDOM_SKIP = 16              # RANDOMKEY walks up to this many keys past its probe
    SWAPDB_MAX_KEYS = 100000      # SWAPDB moves every key: bounded work in the event loop

# A command's implementation: its arguments are in srv.args, its reply goes
# to c.out.  Never fails: errors are replies (or srv.find_err, which
# execute() turns into one).
ctypedef void (*CmdHandler)(Server srv, Conn *c) noexcept nogil
# A rare command written in Python (under the GIL): returns the reply.
ctypedef object (*PyHandler)(Server srv, Conn *c, list args)

cdef struct CmdSpec:
    const char *name                  # lower case
    int arity
    int flags                         # CmdFlag
    CmdHandler handler
    int first_key                     # COMMAND INFO: first key argument (0: none),
    int last_key                      # last (-1: the last argument)
    int key_step                      # and the step between keys

cdef CmdSpec COMMANDS[MAX_COMMANDS]
cdef int NCOMMANDS = 0


cdef int defcmd(const char *name, int arity, int flags, CmdHandler handler,
                int first_key=0, int last_key=0, int key_step=0) except -1:
    global NCOMMANDS
    if NCOMMANDS == MAX_COMMANDS:
        raise OverflowError("command table full: raise MAX_COMMANDS")
    COMMANDS[NCOMMANDS] = CmdSpec(name, arity, flags, handler, first_key, last_key, key_step)
    NCOMMANDS += 1
    return 0


# ---------------------------------------------------------------- helpers
cdef inline int ieq(const char *a, size_t alen, const char *lit) noexcept nogil:
    """Case-insensitive equality of a counted string with a C literal."""
    cdef size_t i
    cdef char x
    for i in range(alen):
        if lit[i] == 0:
            return 0
        x = a[i]
        if 65 <= x <= 90:
            x = x + 32
        if x != lit[i]:
            return 0
    return lit[alen] == 0


cdef int parse_i64(const char *s, size_t n, int64_t *out) noexcept nogil:
    """Strict decimal int64 (Redis string2ll): 1 ok, 0 not an integer."""
    cdef size_t i = 0
    cdef int neg = 0
    cdef uint64_t v = 0, d, lim
    if n == 0 or n > 20:
        return 0
    if s[0] == 45:                                # '-'
        neg = 1
        i = 1
        if n == 1:
            return 0
    if s[i] == 48 and n > i + 1:                  # leading zero
        return 0
    lim = (<uint64_t>1 << 63) if neg else ((<uint64_t>1 << 63) - 1)
    while i < n:
        if s[i] < 48 or s[i] > 57:
            return 0
        d = <uint64_t>(s[i] - 48)
        if v > (lim - d) // 10:
            return 0
        v = v * 10 + d
        i += 1
    if neg:
        out[0] = <int64_t>(0 - v)
    else:
        out[0] = <int64_t>v
    return 1


cdef int format_i64(char *buf, int64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef int n = 0, i
    cdef uint64_t u
    cdef int neg = v < 0
    u = <uint64_t>(-(v + 1)) + 1 if neg else <uint64_t>v
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    i = 0
    if neg:
        buf[0] = 45
        i = 1
    while n:
        n -= 1
        buf[i] = tmp[n]
        i += 1
    return i


# ---------------------------------------------------------------- dispatch
cdef int lookup_command(Server srv, const char *name, size_t n) noexcept nogil:
    cdef int i
    for i in range(NCOMMANDS):
        if ieq(name, n, COMMANDS[i].name):
            return i
    return -1


cdef int encode_keys(Server srv, Conn *c, const CmdSpec *spec) noexcept nogil:
    """The command's key arguments in their stored form for c's database
    (format.pxd's keyspace), before its handler runs: a key of a database
    other than 0, or one starting with 0xFF, gets its 2-byte prefix in a
    copy (srv.kbuf), and the command then stages copies (in_pool 0: its
    bytes are not referenced where they were received).  Keys of database
    0 not starting with 0xFF -- the common case -- stay as received.
    0, or -ENOMEM."""
    cdef Args *a = &srv.args
    cdef int i, last
    cdef size_t need = 0, at = 0
    cdef char *grown
    if spec.first_key == 0 or not srv.db.keyspaces or spec.first_key >= a.argc:
        return 0
    last = spec.last_key if spec.last_key > 0 else a.argc + spec.last_key
    if last >= a.argc:
        last = a.argc - 1
    i = spec.first_key
    while i <= last:
        if c.db != 0 or (a.len[i] > 0 and <unsigned char>a.ptr[i][0] == KEY_ESC):
            need += a.len[i] + 2
        i += spec.key_step
    if need == 0:
        return 0
    if need > srv.kbuf_cap:
        grown = <char *>realloc(srv.kbuf, need)
        if grown == NULL:
            return -ENOMEM
        srv.kbuf = grown
        srv.kbuf_cap = need
    i = spec.first_key
    while i <= last:
        if c.db != 0 or (a.len[i] > 0 and <unsigned char>a.ptr[i][0] == KEY_ESC):
            srv.kbuf[at] = <char>KEY_ESC
            srv.kbuf[at + 1] = <char>c.db
            memcpy(srv.kbuf + at + 2, a.ptr[i], a.len[i])
            a.ptr[i] = srv.kbuf + at
            a.len[i] += 2
            at += a.len[i]
        i += spec.key_step
    a.in_pool = 0
    return 0


cdef inline void user_key(const char **k, uint32_t *klen, int keyspaces) noexcept nogil:
    """A stored key as its database's users know it (the prefix dropped)."""
    cdef uint32_t p = key_prefix_len(k[0], klen[0]) if keyspaces else 0
    k[0] += p
    klen[0] -= p


cdef void execute(Server srv, Conn *c, size_t cmd_start) noexcept nogil:
    cdef int idx, rc
    cdef size_t olen
    cdef Args *a = &srv.args
    cdef CmdSpec *spec
    srv.total_commands += 1
    idx = lookup_command(srv, a.ptr[0], a.len[0])
    if idx < 0:
        unknown_command(srv, c)
        if c.in_multi:
            c.multi_error = 1
        srv.reply_done(c)
        return
    spec = &COMMANDS[idx]
    if (spec.arity > 0 and a.argc != spec.arity) or (spec.arity < 0 and a.argc < -spec.arity):
        wrong_arity(srv, c, spec.name)
        srv.cmd_rejected[idx] += 1
        if c.in_multi:
            c.multi_error = 1
        srv.reply_done(c)
        return
    if not c.authed and not (spec.flags & F_NOAUTH):
        out_error(&c.out, b"NOAUTH Authentication required.")
        srv.cmd_rejected[idx] += 1
        srv.reply_done(c)
        return
    if c.in_multi and (spec.flags & F_DENYMULTI):
        out_error(&c.out, b"ERR Command not allowed inside a transaction")
        srv.cmd_rejected[idx] += 1
        c.multi_error = 1
        srv.reply_done(c)
        return
    if c.in_multi and not (spec.flags & F_NOMULTI):
        if queue_command(srv, c) != 0:
            out_error(&c.out, b"ERR out of memory")
        else:
            out_simple(&c.out, b"QUEUED")
        srv.reply_done(c)
        return
    srv.cmd_recs_start = srv.nrecs
    olen = c.out.len
    srv.find_err = 0
    srv.cmd_calls[idx] += 1
    if encode_keys(srv, c, spec) != 0:
        out_error(&c.out, b"ERR out of memory")
        srv.reply_done(c)
        return
    spec.handler(srv, c)
    if srv.find_err:
        # A damaged index page: no partial answer, nothing of the command staged.
        srv.out_truncate(c, olen)
        srv.drop_cmd_recs()
        out_error(&c.out, b"ERR damaged data (a value or index page failed its checksum); run pastedb-check")
    # The records stay staged until the end of this read (finish_input):
    # a pipeline's writes are appended together, in one lock hold and one
    # write of the log slots; commands later in it see them (find()).
    srv.reply_done(c)


cdef void sanitize_error(char *msg) noexcept nogil:
    """An error line holds no CR or LF (Redis turns them into spaces)."""
    while msg[0] != 0:
        if msg[0] == 13 or msg[0] == 10:
            msg[0] = 32
        msg += 1


cdef size_t put_quoted(char *msg, size_t k, const char *s, size_t n, size_t most) noexcept nogil:
    """Append s (at most `most` bytes, NULs skipped) to msg at k."""
    cdef size_t i
    for i in range(n):
        if i == most:
            break
        if s[i] != 0:
            msg[k] = s[i]
            k += 1
    return k


cdef void unknown_command(Server srv, Conn *c) noexcept nogil:
    """Redis's wording: the name (128 bytes at most) and the arguments,
    each quoted and followed by a space, while fewer than 128 bytes of them
    are written.  Commands of the data types, scripting, pub/sub and
    replication, which pastedb does not serve, say so instead."""
    cdef char msg[512]
    cdef Args *a = &srv.args
    cdef size_t k, start
    cdef int i, fam = unsupported_family(a.ptr[0], a.len[0])
    if fam >= 0:
        k = put_quoted(msg, 0, b"ERR unsupported command '", 25, 25)
        k = put_quoted(msg, k, a.ptr[0], a.len[0], 128)
        k = put_quoted(msg, k, b"': pastedb does not serve ", 26, 26)
        k = put_quoted(msg, k, UNSUPPORTED_FAMILIES[fam], strlen(UNSUPPORTED_FAMILIES[fam]), 64)
        if fam < 5:
            k = put_quoted(msg, k, b" (it stores strings only)", 25, 25)
        msg[k] = 0
        sanitize_error(msg)
        out_error(&c.out, msg)
        return
    k = put_quoted(msg, 0, b"ERR unknown command '", 21, 21)
    k = put_quoted(msg, k, a.ptr[0], a.len[0], 128)
    k = put_quoted(msg, k, b"', with args beginning with: ", 29, 29)
    start = k
    for i in range(1, a.argc):
        if k - start >= 128:
            break
        msg[k] = 39
        k = put_quoted(msg, k + 1, a.ptr[i], a.len[i], 128 - (k - start))
        msg[k] = 39
        msg[k + 1] = 32
        k += 2
    msg[k] = 0
    sanitize_error(msg)
    out_error(&c.out, msg)


cdef void wrong_arity(Server srv, Conn *c, const char *name) noexcept nogil:
    cdef char msg[128]
    cdef const char *pre = b"ERR wrong number of arguments for '"
    cdef const char *post = b"' command"
    cdef size_t k = strlen(pre), n = strlen(name)
    memcpy(msg, pre, k)
    memcpy(msg + k, name, n)
    memcpy(msg + k + n, post, strlen(post) + 1)
    out_error(&c.out, msg)


cdef int queue_command(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef size_t total = 0, off = 0
    cdef int i
    cdef QueuedCmd *q
    cdef QueuedCmd *grown
    if c.qlen == c.qcap:
        grown = <QueuedCmd *>realloc(c.queue, (c.qcap * 2 + 4) * sizeof(QueuedCmd))
        if grown == NULL:
            return -1
        c.queue = grown
        c.qcap = c.qcap * 2 + 4
    for i in range(a.argc):
        total += a.len[i]
    q = &c.queue[c.qlen]
    q.argc = a.argc
    q.blob = <char *>malloc(total + 1)
    q.lens = <size_t *>malloc(a.argc * sizeof(size_t))
    if q.blob == NULL or q.lens == NULL:
        free(q.blob)
        free(q.lens)
        return -1
    for i in range(a.argc):
        memcpy(q.blob + off, a.ptr[i], a.len[i])
        q.lens[i] = a.len[i]
        off += a.len[i]
    c.qlen += 1
    return 0


# ---------------------------------------------------------------- handlers
cdef void h_ping(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    if a.argc == 1:
        out_simple(&c.out, b"PONG")
    elif a.argc == 2:
        out_bulk(&c.out, a.ptr[1], a.len[1])
    else:
        wrong_arity(srv, c, b"ping")


cdef void h_echo(Server srv, Conn *c) noexcept nogil:
    out_bulk(&c.out, srv.args.ptr[1], srv.args.len[1])


cdef void h_set(Server srv, Conn *c) noexcept nogil:
    cmd_set(srv, c, 0)


cdef void h_setnx(Server srv, Conn *c) noexcept nogil:
    cmd_set(srv, c, 1)


cdef void h_get(Server srv, Conn *c) noexcept nogil:
    cmd_get(srv, c, 0)


cdef void h_getdel(Server srv, Conn *c) noexcept nogil:
    cmd_get(srv, c, 1)


cdef void h_incr(Server srv, Conn *c) noexcept nogil:
    cmd_incr(srv, c, 1, 0)


cdef void h_decr(Server srv, Conn *c) noexcept nogil:
    cmd_incr(srv, c, -1, 0)


cdef void h_incrby(Server srv, Conn *c) noexcept nogil:
    cmd_incr(srv, c, 1, 1)


cdef void h_decrby(Server srv, Conn *c) noexcept nogil:
    cmd_incr(srv, c, -1, 1)


cdef void h_dbsize(Server srv, Conn *c) noexcept nogil:
    out_int(&c.out, srv.staged_dbsize(c.db))


cdef void h_select(Server srv, Conn *c) noexcept nogil:
    """SELECT n: the connection's database (Redis's replies)."""
    cdef int64_t n
    if not parse_i64(srv.args.ptr[1], srv.args.len[1], &n) or n < INT32_MIN or n > INT32_MAX:
        out_error(&c.out, b"ERR value is not an integer or out of range")
    elif n < 0 or n >= srv.ndb:
        out_error(&c.out, b"ERR DB index is out of range")
    else:
        c.db = <int>n
        out_simple(&c.out, b"OK")


cdef void h_quit(Server srv, Conn *c) noexcept nogil:
    out_simple(&c.out, b"OK")
    c.closing = 1


cdef void h_multi(Server srv, Conn *c) noexcept nogil:
    if c.in_multi:
        out_error(&c.out, b"ERR MULTI calls can not be nested")
    else:
        c.in_multi = 1
        c.multi_error = 0
        out_simple(&c.out, b"OK")


cdef void h_discard(Server srv, Conn *c) noexcept nogil:
    if not c.in_multi:
        out_error(&c.out, b"ERR DISCARD without MULTI")
    else:
        free_queue(c)
        srv.unwatch_all(c)
        out_simple(&c.out, b"OK")


cdef void h_save(Server srv, Conn *c) noexcept nogil:
    cmd_save(srv, c, 0)


cdef void h_bgsave(Server srv, Conn *c) noexcept nogil:
    cmd_save(srv, c, 1)


cdef void h_shutdown(Server srv, Conn *c) noexcept nogil:
    srv.shutdown_requested = 1
    c.closing = 1


cdef void h_reset(Server srv, Conn *c) noexcept nogil:
    free_queue(c)
    srv.unwatch_all(c)
    c.resp3 = 0
    c.authed = not srv.has_password
    c.db = 0
    if srv.has_password:
        c.parser.max_bulk_len = UNAUTH_MAX_BULK
        c.parser.max_args = UNAUTH_MAX_ARGS
    c.name_len = 0
    out_simple(&c.out, b"RESET")


cdef void run_python(Server srv, Conn *c, PyHandler handler):
    cdef Args *a = &srv.args
    args = [a.ptr[i][:a.len[i]] for i in range(a.argc)]
    try:
        reply = handler(srv, c, args)
    except Exception as e:                       # never let a command kill the loop
        reply = RError(f"ERR internal error: {type(e).__name__}: {e}")
    encode_reply(&c.out, reply, c.resp3)


cdef void h_hello(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_hello)


cdef void h_auth(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_auth)


cdef void h_client(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_client)


cdef void h_command(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_command)


cdef void h_config(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_config)


cdef void h_info(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_info)


cdef void h_debug(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_debug)


# ---------------------------------------------------------------- data commands
# cmd_set (SET with its expiry options, SETNX) is in expire_cmds.pxi.
include "expire_cmds.pxi"


cdef void cmd_get(Server srv, Conn *c, int delete) noexcept nogil:
    cdef const char *v
    cdef size_t vlen
    if not srv.find_pinned(srv.args.ptr[1], srv.args.len[1], &v, &vlen):
        out_null(&c.out, c.resp3)
        return
    srv.reply_value(c, v, vlen, vlen >= REF_MIN)
    if delete:
        srv.stage_record(REC_DEL, srv.args.ptr[1], srv.args.len[1], NULL, 0, 0)


cdef void cmd_mset(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int i
    if a.argc % 2 == 0:
        wrong_arity(srv, c, b"mset")
        return
    for i in range(1, a.argc, 2):
        if not srv.key_ok(c, a.len[i]):
            srv.drop_cmd_recs()
            return
    for i in range(1, a.argc, 2):
        if srv.stage_record(REC_PUT, a.ptr[i], a.len[i], a.ptr[i + 1], a.len[i + 1],
                             a.in_pool) != 0:
            srv.drop_cmd_recs()
            srv.space_error(c)
            return
        if a.in_pool:
            srv.keep_window(c, a.ptr[i + 1] + a.len[i + 1])
    out_simple(&c.out, b"OK")


cdef void cmd_mget(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int i
    cdef const char *v
    cdef size_t vlen
    out_array(&c.out, a.argc - 1)
    for i in range(1, a.argc):
        if srv.find_pinned(a.ptr[i], a.len[i], &v, &vlen):
            srv.reply_value(c, v, vlen, vlen >= REF_MIN)
        else:
            out_null(&c.out, c.resp3)


cdef void cmd_del(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int i
    cdef int64_t n = 0
    cdef const char *v
    cdef size_t vlen
    for i in range(1, a.argc):
        if srv.find(a.ptr[i], a.len[i], &v, &vlen):
            if srv.stage_record(REC_DEL, a.ptr[i], a.len[i], NULL, 0, 0) != 0:
                srv.drop_cmd_recs()
                srv.space_error(c)
                return
            n += 1
    out_int(&c.out, n)


cdef void cmd_exists(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int i
    cdef int64_t n = 0
    cdef const char *v
    cdef size_t vlen
    for i in range(1, a.argc):
        n += srv.find(a.ptr[i], a.len[i], &v, &vlen)
    out_int(&c.out, n)


cdef void cmd_strlen(Server srv, Conn *c) noexcept nogil:
    cdef const char *v
    cdef size_t vlen = 0
    if not srv.find(srv.args.ptr[1], srv.args.len[1], &v, &vlen):
        vlen = 0
    out_int(&c.out, <int64_t>vlen)


cdef void cmd_type(Server srv, Conn *c) noexcept nogil:
    cdef const char *v
    cdef size_t vlen
    if srv.find(srv.args.ptr[1], srv.args.len[1], &v, &vlen):
        out_simple(&c.out, b"string")
    else:
        out_simple(&c.out, b"none")


cdef void cmd_incr(Server srv, Conn *c, int sign, int has_arg) noexcept nogil:
    cdef Args *a = &srv.args
    cdef const char *v
    cdef size_t vlen
    cdef int64_t cur = 0, by = 1
    cdef char buf[32]
    cdef int n
    cdef uint64_t exp = 0
    if has_arg and not parse_i64(a.ptr[2], a.len[2], &by):
        out_error(&c.out, b"ERR value is not an integer or out of range")
        return
    if sign < 0:
        if by == INT64_MIN:
            out_error(&c.out, b"ERR decrement would overflow")
            return
        by = -by
    if not srv.key_ok(c, a.len[1]):
        return
    if srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &exp):     # INCR keeps the expiry
        if not parse_i64(v, vlen, &cur):
            out_error(&c.out, b"ERR value is not an integer or out of range")
            return
    if (by > 0 and cur > INT64_MAX - by) or \
            (by < 0 and cur < INT64_MIN - by):
        out_error(&c.out, b"ERR increment or decrement would overflow")
        return
    cur += by
    n = format_i64(buf, cur)
    if srv.stage_record(REC_PUT, a.ptr[1], a.len[1], buf, <size_t>n, 0) != 0:
        srv.drop_cmd_recs()
        srv.space_error(c)
        return
    srv.recs[srv.nrecs - 1].expire_ms = exp
    out_int(&c.out, cur)


cdef void cmd_exec(Server srv, Conn *c) noexcept nogil:
    cdef int i, j, idx
    cdef size_t off
    cdef QueuedCmd *q
    if not c.in_multi:
        out_error(&c.out, b"ERR EXEC without MULTI")
        return
    if c.multi_error:
        free_queue(c)
        srv.unwatch_all(c)
        out_error(&c.out, b"EXECABORT Transaction discarded because of previous errors.")
        return
    if c.watch_dirty or srv.watched_expired(c):
        # A WATCHed key was written (by anyone) or expired since WATCH: nothing runs.
        free_queue(c)
        srv.unwatch_all(c)
        out_null_array(&c.out, c.resp3)
        return
    srv.unwatch_all(c)                        # its own writes below touch no watch of its own
    # Every queued command runs against the staged records of the ones
    # before it; all their writes are appended as ONE batch afterwards.
    out_array(&c.out, c.qlen)
    srv.in_exec = 1
    for i in range(c.qlen):
        q = &c.queue[i]
        if q.argc > srv.args.cap and srv.grow_args(q.argc) != 0:
            break
        off = 0
        for j in range(q.argc):
            srv.args.ptr[j] = q.blob + off
            srv.args.len[j] = q.lens[j]
            off += q.lens[j]
        srv.args.argc = q.argc
        srv.args.in_pool = 0
        idx = lookup_command(srv, srv.args.ptr[0], srv.args.len[0])
        if encode_keys(srv, c, &COMMANDS[idx]) != 0:  # the database SELECTed by now
            out_error(&c.out, b"ERR out of memory")
            continue
        COMMANDS[idx].handler(srv, c)
    srv.in_exec = 0
    free_queue(c)


cdef void cmd_keys(Server srv, Conn *c) noexcept nogil:
    """KEYS walks the keys a slice at a time (KEYS_SLICE per loop turn),
    so other clients are served however many keys there are: every key
    present throughout the walk is returned once; one written or deleted
    meanwhile may or may not be.  Inside EXEC it runs whole, over the
    transaction's own writes too."""
    cdef KeysJob *j = <KeysJob *>calloc(1, sizeof(KeysJob))
    cdef Args *a = &srv.args
    cdef const char *uk
    cdef uint32_t uklen
    cdef int i, k, later, rc
    cdef const LogRecord *r
    cdef Ref ref
    if j == NULL or out_init(&j.found, 4096) != 0:
        free(j)
        out_error(&c.out, b"ERR out of memory")
        return
    j.pat = <char *>malloc(a.len[1] + 1)
    j.last = <char *>malloc(MAX_KEY_LEN)
    c.keys = j
    if j.pat == NULL or j.last == NULL:
        free_keys_job(c)
        out_error(&c.out, b"ERR out of memory")
        return
    memcpy(j.pat, a.ptr[1], a.len[1])
    j.plen = a.len[1]
    j.keyspaces = srv.db.keyspaces
    j.every = j.plen == 1 and j.pat[0] == 42
    if not srv.in_exec:
        # What this read staged before KEYS is appended first, so the
        # walk sees it in the index and nothing else overlays it.
        srv.finish_input(c)
        return                                # run_ready takes it from here
    j.recs = srv.recs
    j.nrecs = srv.nrecs
    j.base = srv.base
    rc = keys_step(srv, c, -1)
    if rc < 0:
        return
    # Keys the transaction wrote that the index does not hold yet.
    for i in range(srv.nrecs):
        r = &srv.recs[i]
        if r.type != REC_PUT:
            continue
        later = 0
        for k in range(i + 1, srv.nrecs):
            if srv.recs[k].klen == r.klen and \
                    memcmp(j.base + srv.recs[k].koff, j.base + r.koff, r.klen) == 0:
                later = 1
                break
        if later or srv.db.read_value(j.base + r.koff, r.klen, &ref, 0) != 0:
            continue                          # a later record decides / the index has it
        if srv.db.key_db(j.base + r.koff, r.klen) != c.db:
            continue
        uk = j.base + r.koff
        uklen = r.klen
        user_key(&uk, &uklen, j.keyspaces)
        if j.every or glob_match(j.pat, j.plen, uk, uklen, 0):
            out_bulk(&j.found, uk, uklen)
            j.n += 1
    out_array(&c.out, j.n)
    out_raw(&c.out, j.found.data, j.found.len)
    free_keys_job(c)


cdef int keys_step(Server srv, Conn *c, int64_t budget) noexcept nogil:
    """One slice of a KEYS walk: 1 more to do; 0 done and replied (the
    job is gone unless inside EXEC, where cmd_keys finishes it); <0 failed
    and replied."""
    cdef KeysJob *j = c.keys
    cdef int rc
    rc = srv.db.walk_keys(srv.scan_it, j.last, j.lastlen, j.started, budget,
                           <KeySink>keys_sink, j, c.db)
    if rc == 1:
        return 1
    if rc < 0:
        if rc == -ENOMEM:
            out_error(&c.out, b"ERR out of memory")
        else:
            out_error(&c.out, b"ERR damaged data (a value or index page failed its checksum); run pastedb-check")
        free_keys_job(c)
        if not srv.in_exec:
            srv.reply_done(c)
        return rc
    if not srv.in_exec:
        out_array(&c.out, j.n)
        out_raw(&c.out, j.found.data, j.found.len)
        free_keys_job(c)
        srv.reply_done(c)
    return 0


cdef void cmd_time(Server srv, Conn *c) noexcept nogil:
    cdef timespec ts
    cdef char buf[32]
    cdef int n
    clock_gettime(CLOCK_REALTIME, &ts)
    out_array(&c.out, 2)
    n = format_i64(buf, ts.tv_sec)
    out_bulk(&c.out, buf, <size_t>n)
    n = format_i64(buf, ts.tv_nsec // 1000)
    out_bulk(&c.out, buf, <size_t>n)


cdef int collect_key(void *ctx, const char *k, uint32_t klen) noexcept nogil:
    """walk_keys' sink for FLUSHDB: every key, length-prefixed, into an OutBuf."""
    cdef OutBuf *keys = <OutBuf *>ctx
    if out_raw(keys, <const char *>&klen, sizeof(uint32_t)) != 0 or out_raw(keys, k, klen) != 0:
        return -ENOMEM
    return 0


cdef void cmd_flush(Server srv, Conn *c) noexcept nogil:
    """FLUSHDB: the keys of c's database; FLUSHALL: every database's."""
    cdef char *base = srv.base
    cdef int rc = 0, i, n
    cdef int all_dbs = ieq(srv.args.ptr[0], srv.args.len[0], b"flushall")
    cdef OutBuf keys
    cdef size_t at = 0
    cdef uint32_t klen
    if out_init(&keys, 65536) != 0:
        out_error(&c.out, b"ERR out of memory")
        return
    # The walk copies the keys out (tree keys live in a cursor's buffer);
    # stage_record then copies each into the pool for its DEL record.
    rc = srv.db.walk_keys(srv.scan_it, NULL, 0, 0, -1, <KeySink>collect_key, &keys,
                          -1 if all_dbs else c.db)
    while rc == 0 and at < keys.len:
        memcpy(&klen, keys.data + at, sizeof(uint32_t))
        rc = srv.stage_record(REC_DEL, keys.data + at + sizeof(uint32_t), klen, NULL, 0, 0)
        at += sizeof(uint32_t) + klen
    out_free(&keys)
    if rc < 0 and rc != -ENOMEM and rc != -ENOSPC:
        srv.find_err = rc
        return
    # Keys written earlier in the same transaction are not in the index
    # yet: delete them too (a DEL after a PUT in one batch wins).
    n = srv.nrecs
    for i in range(n):
        if rc == 0 and srv.recs[i].type == REC_PUT and (
                all_dbs or srv.db.key_db(base + srv.recs[i].koff, srv.recs[i].klen) == c.db):
            rc = srv.stage_record(REC_DEL, base + srv.recs[i].koff, srv.recs[i].klen,
                                   NULL, 0, 0)
    if rc != 0:
        srv.drop_cmd_recs()
        srv.space_error(c)
        return
    out_simple(&c.out, b"OK")


cdef void cmd_save(Server srv, Conn *c, int bg) noexcept nogil:
    cdef int rc
    if srv.commit_staged() != 0:
        out_error(&c.out, b"ERR the database failed")
        return
    rc = srv.db.checkpoint_index()
    if rc != 0:
        out_error(&c.out, b"ERR checkpoint failed")
    elif bg:
        out_simple(&c.out, b"Background saving started")
    else:
        out_simple(&c.out, b"OK")


cdef int keys_sink(void *ctx, const char *k, uint32_t klen) noexcept nogil:
    """walk_keys' sink for KEYS: remember where the walk is, keep the key
    when it matches (and, inside EXEC, the transaction has not deleted it)."""
    cdef KeysJob *j = <KeysJob *>ctx
    cdef int i
    cdef const LogRecord *r
    cdef const char *uk = k
    cdef uint32_t uklen = klen
    memcpy(j.last, k, klen)
    j.lastlen = klen
    j.started = 1
    user_key(&uk, &uklen, j.keyspaces)
    if not (j.every or glob_match(j.pat, j.plen, uk, uklen, 0)):
        return 0
    for i in range(j.nrecs - 1, -1, -1):
        r = &j.recs[i]
        if r.klen == klen and memcmp(j.base + r.koff, k, klen) == 0:
            if r.type == REC_DEL:
                return 0
            break
    if out_bulk(&j.found, uk, uklen) != 0:
        return -ENOMEM
    j.n += 1
    return 0


# ---------------------------------------------------------------- string commands
cdef void value_too_big(Conn *c) noexcept nogil:
    out_error(&c.out, b"ERR string exceeds maximum allowed size (proto-max-bulk-len)")


cdef void no_space(Server srv, Conn *c) noexcept nogil:
    srv.drop_cmd_recs()
    srv.space_error(c)


cdef void cmd_getset(Server srv, Conn *c) noexcept nogil:
    """GETSET key value: SET's GET, one logged put."""
    cdef Args *a = &srv.args
    cdef const char *old = NULL
    cdef size_t oldlen = 0
    cdef int found
    if not srv.key_ok(c, a.len[1]):
        return
    found = srv.find(a.ptr[1], a.len[1], &old, &oldlen)
    if srv.find_err:
        return
    # The old bytes stay where they are until this group is appended.
    if srv.stage_record(REC_PUT, a.ptr[1], a.len[1], a.ptr[2], a.len[2], a.in_pool) != 0:
        no_space(srv, c)
        return
    if a.in_pool:
        srv.keep_window(c, a.ptr[2] + a.len[2])
    if found:
        out_bulk(&c.out, old, oldlen)
    else:
        out_null(&c.out, c.resp3)


cdef int put_joined(Server srv, const char *k, size_t klen, const char *old, size_t oldlen,
                    size_t at, const char *add, size_t addlen, uint64_t exp) noexcept nogil:
    """Stage one PUT of old with add written at offset at (the gap zero
    filled): APPEND and SETRANGE's read-modify-write, one record, keeping
    the key's expiry exp (as Redis).  0, or -ENOMEM / the staging status."""
    cdef size_t n = at + addlen if at + addlen > oldlen else oldlen
    cdef char *buf = <char *>malloc(n if n else 1)
    cdef int rc
    if buf == NULL:
        return -ENOMEM
    memcpy(buf, old, oldlen)
    if at > oldlen:
        memset(buf + oldlen, 0, at - oldlen)
    memcpy(buf + at, add, addlen)
    rc = srv.stage_record(REC_PUT, k, klen, buf, n, 0)
    if rc == 0:
        srv.recs[srv.nrecs - 1].expire_ms = exp
    free(buf)
    return rc


cdef void cmd_append(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef const char *old = NULL
    cdef size_t oldlen = 0
    cdef uint64_t exp = 0
    if not srv.key_ok(c, a.len[1]):
        return
    if not srv.find_exp(a.ptr[1], a.len[1], &old, &oldlen, &exp):
        oldlen = 0
    if oldlen + a.len[2] > srv.max_bulk_len:
        value_too_big(c)
        return
    if put_joined(srv, a.ptr[1], a.len[1], old, oldlen, oldlen, a.ptr[2], a.len[2], exp) != 0:
        no_space(srv, c)
        return
    out_int(&c.out, <int64_t>(oldlen + a.len[2]))


cdef void cmd_setrange(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef const char *old = NULL
    cdef size_t oldlen = 0
    cdef int64_t off
    cdef int found
    cdef uint64_t exp = 0
    if not parse_i64(a.ptr[2], a.len[2], &off):
        out_error(&c.out, b"ERR value is not an integer or out of range")
        return
    if off < 0:
        out_error(&c.out, b"ERR offset is out of range")
        return
    if not srv.key_ok(c, a.len[1]):
        return
    found = srv.find_exp(a.ptr[1], a.len[1], &old, &oldlen, &exp)
    if not found:
        oldlen = 0
    if a.len[3] == 0:                             # nothing to write: no key is made
        out_int(&c.out, <int64_t>oldlen)
        return
    if <uint64_t>off + a.len[3] > srv.max_bulk_len:
        value_too_big(c)
        return
    if put_joined(srv, a.ptr[1], a.len[1], old, oldlen, <size_t>off, a.ptr[3], a.len[3], exp) != 0:
        no_space(srv, c)
        return
    out_int(&c.out, <int64_t>(oldlen if oldlen > <size_t>off + a.len[3] else <size_t>off + a.len[3]))


cdef int parse_bit_offset(Server srv, Conn *c, const char *s, size_t n,
                          uint64_t *out) noexcept nogil:
    """A bit offset (GETBIT, SETBIT): 1, or 0 with Redis's error replied."""
    cdef int64_t v
    if not parse_i64(s, n, &v) or v < 0 or <uint64_t>(v >> 3) >= srv.max_bulk_len:
        out_error(&c.out, b"ERR bit offset is not an integer or out of range")
        return 0
    out[0] = <uint64_t>v
    return 1


cdef void cmd_getbit(Server srv, Conn *c) noexcept nogil:
    """GETBIT key offset: the bit (bit 0 is the most significant of byte 0)."""
    cdef Args *a = &srv.args
    cdef const char *v = NULL
    cdef size_t vlen = 0
    cdef uint64_t off
    if not parse_bit_offset(srv, c, a.ptr[2], a.len[2], &off):
        return
    if not srv.find(a.ptr[1], a.len[1], &v, &vlen) or (off >> 3) >= vlen:
        out_int(&c.out, 0)
        return
    out_int(&c.out, (<uint8_t>v[off >> 3] >> (7 - (off & 7))) & 1)


cdef void cmd_setbit(Server srv, Conn *c) noexcept nogil:
    """SETBIT key offset 0|1: the bit's old value; the string grows with
    zero bytes to reach it (one logged put, the expiry kept, as SETRANGE)."""
    cdef Args *a = &srv.args
    cdef const char *old = NULL
    cdef size_t oldlen = 0
    cdef uint64_t off, exp = 0
    cdef int bit, was = 0
    cdef uint8_t byte = 0
    if not parse_bit_offset(srv, c, a.ptr[2], a.len[2], &off):
        return
    if a.len[3] != 1 or (a.ptr[3][0] != 48 and a.ptr[3][0] != 49):
        out_error(&c.out, b"ERR bit is not an integer or out of range")
        return
    bit = a.ptr[3][0] - 48
    if not srv.key_ok(c, a.len[1]):
        return
    if not srv.find_exp(a.ptr[1], a.len[1], &old, &oldlen, &exp):
        if srv.find_err:
            return
        oldlen = 0
    if (off >> 3) < oldlen:
        byte = <uint8_t>old[off >> 3]
        was = (byte >> (7 - (off & 7))) & 1
    if bit:
        byte = byte | <uint8_t>(1 << (7 - (off & 7)))
    else:
        byte = byte & <uint8_t>~(1 << (7 - (off & 7)))
    if put_joined(srv, a.ptr[1], a.len[1], old, oldlen, <size_t>(off >> 3),
                  <const char *>&byte, 1, exp) != 0:
        no_space(srv, c)
        return
    out_int(&c.out, was)


cdef void cmd_bitcount(Server srv, Conn *c) noexcept nogil:
    """BITCOUNT key [start end [BYTE|BIT]]: set bits, over bytes (or bits)
    start..end, negative counting from the end, as Redis 7.0."""
    cdef Args *a = &srv.args
    cdef const char *v = NULL
    cdef size_t vlen = 0, i
    cdef int64_t start = 0, end = -1, total, n = 0
    cdef int isbit = 0
    cdef uint8_t b, first_mask = 0xFF, last_mask = 0xFF
    if a.argc == 3 or a.argc > 5:
        out_error(&c.out, b"ERR syntax error")
        return
    if a.argc >= 4:
        if not parse_i64(a.ptr[2], a.len[2], &start) or not parse_i64(a.ptr[3], a.len[3], &end):
            out_error(&c.out, b"ERR value is not an integer or out of range")
            return
        if a.argc == 5:
            if ieq(a.ptr[4], a.len[4], b"bit"):
                isbit = 1
            elif not ieq(a.ptr[4], a.len[4], b"byte"):
                out_error(&c.out, b"ERR syntax error")
                return
    if not srv.find(a.ptr[1], a.len[1], &v, &vlen):
        if not srv.find_err:
            out_int(&c.out, 0)
        return
    total = <int64_t>vlen * 8 if isbit else <int64_t>vlen
    if a.argc >= 4:
        if start < 0 and end < 0 and start > end:
            out_int(&c.out, 0)
            return
        if start < 0:
            start = total + start
        if end < 0:
            end = total + end
        if start < 0:
            start = 0
        if end < 0:
            end = 0
        if end >= total:
            end = total - 1
    else:
        end = total - 1
    if start > end or total == 0:
        out_int(&c.out, 0)
        return
    if isbit:
        first_mask = <uint8_t>(0xFF >> (start & 7))
        last_mask = <uint8_t>(0xFF << (7 - (end & 7)))
        start >>= 3
        end >>= 3
    for i in range(<size_t>start, <size_t>end + 1):
        b = <uint8_t>v[i]
        if <int64_t>i == start:
            b &= first_mask
        if <int64_t>i == end:
            b &= last_mask
        n += __builtin_popcount(b)
    out_int(&c.out, n)


cdef void cmd_getrange(Server srv, Conn *c) noexcept nogil:
    """GETRANGE / SUBSTR key start end, Redis's clamping of both ends."""
    cdef Args *a = &srv.args
    cdef const char *v = NULL
    cdef size_t vlen = 0
    cdef int64_t start, end, n
    if not parse_i64(a.ptr[2], a.len[2], &start) or not parse_i64(a.ptr[3], a.len[3], &end):
        out_error(&c.out, b"ERR value is not an integer or out of range")
        return
    if not srv.find(a.ptr[1], a.len[1], &v, &vlen):
        vlen = 0
    n = <int64_t>vlen
    if start < 0 and end < 0 and start > end:
        out_bulk(&c.out, b"", 0)
        return
    if start < 0:
        start = n + start
    if end < 0:
        end = n + end
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= n:
        end = n - 1
    if n == 0 or start > end:
        out_bulk(&c.out, b"", 0)
        return
    out_bulk(&c.out, v + start, <size_t>(end - start + 1))


cdef int parse_ld(const char *s, size_t n, long double *out) noexcept nogil:
    """Redis's string2ld: the whole string is a finite-or-infinite long
    double, no leading space, no NaN.  1 ok, 0 not a float."""
    cdef char buf[5120]
    cdef char *end
    cdef long double v
    if n == 0 or n >= sizeof(buf):
        return 0
    memcpy(buf, s, n)
    buf[n] = 0
    if buf[0] == 32 or (9 <= buf[0] <= 13):
        return 0
    errno_clear()
    v = strtold(buf, &end)
    if end != buf + n or isnan(v):
        return 0
    if errno == ERANGE and (v == 0 or isinf(v)):
        return 0
    out[0] = v
    return 1


cdef int format_ld(char *buf, size_t cap, long double v) noexcept nogil:
    """A long double as INCRBYFLOAT writes it: 17 decimals, trailing zeros
    (and a bare point) dropped, no negative zero.  The length, or -1."""
    cdef int n = snprintf(buf, cap, b"%.17Lf", v)
    cdef int i, dot = 0
    if n < 0 or <size_t>n >= cap:
        return -1
    for i in range(n):
        if buf[i] == 46:
            dot = 1
    if dot:
        while buf[n - 1] == 48:
            n -= 1
        if buf[n - 1] == 46:
            n -= 1
    if n == 2 and buf[0] == 45 and buf[1] == 48:
        buf[0] = 48
        n = 1
    return n


cdef void cmd_incrbyfloat(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef const char *v
    cdef size_t vlen
    cdef long double cur = 0, by
    cdef char buf[5200]
    cdef int n
    cdef uint64_t exp = 0
    if not srv.key_ok(c, a.len[1]):
        return
    if srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &exp) and not parse_ld(v, vlen, &cur):
        out_error(&c.out, b"ERR value is not a valid float")
        return
    if not parse_ld(a.ptr[2], a.len[2], &by):
        out_error(&c.out, b"ERR value is not a valid float")
        return
    cur = cur + by
    if isnan(cur) or isinf(cur):
        out_error(&c.out, b"ERR increment would produce NaN or Infinity")
        return
    n = format_ld(buf, sizeof(buf), cur)
    if n < 0:
        out_error(&c.out, b"ERR increment would produce NaN or Infinity")
        return
    if srv.stage_record(REC_PUT, a.ptr[1], a.len[1], buf, <size_t>n, 0) != 0:
        no_space(srv, c)
        return
    srv.recs[srv.nrecs - 1].expire_ms = exp            # kept, as Redis
    out_bulk(&c.out, buf, <size_t>n)


cdef void cmd_msetnx(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int i
    cdef const char *v
    cdef size_t vlen
    if a.argc % 2 == 0:
        wrong_arity(srv, c, b"msetnx")
        return
    for i in range(1, a.argc, 2):
        if not srv.key_ok(c, a.len[i]):
            return
    for i in range(1, a.argc, 2):
        if srv.find(a.ptr[i], a.len[i], &v, &vlen):
            out_int(&c.out, 0)
            return
    for i in range(1, a.argc, 2):
        if srv.stage_record(REC_PUT, a.ptr[i], a.len[i], a.ptr[i + 1], a.len[i + 1],
                             a.in_pool) != 0:
            no_space(srv, c)
            return
        if a.in_pool:
            srv.keep_window(c, a.ptr[i + 1] + a.len[i + 1])
    out_int(&c.out, 1)


cdef void lcs_range(OutBuf *o, int64_t a0, int64_t a1, int64_t b0, int64_t b1,
                    int withlen) noexcept nogil:
    out_array(o, 3 if withlen else 2)
    out_array(o, 2)
    out_int(o, a0)
    out_int(o, a1)
    out_array(o, 2)
    out_int(o, b0)
    out_int(o, b1)
    if withlen:
        out_int(o, a1 - a0 + 1)


cdef void cmd_lcs(Server srv, Conn *c) noexcept nogil:
    """LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN].  The
    dynamic-programming table is (len1+1)*(len2+1) cells of 4 bytes, so
    its size is capped (LCS_MAX_CELLS): that bounds both its memory and
    how long it holds the loop (it runs whole, like any command)."""
    cdef Args *a = &srv.args
    cdef const char *x = b""
    cdef const char *y = b""
    cdef size_t xl = 0, yl = 0, i, j, w
    cdef int want_len = 0, want_idx = 0, withlen = 0, k, inrange = 0, nmatch = 0
    cdef int64_t minlen = 0, a0 = 0, a1 = 0, b0 = 0, b1 = 0
    cdef uint32_t *t
    cdef uint32_t *row
    cdef uint32_t *prev
    cdef char xc
    cdef uint32_t total, up, left
    cdef char *s
    cdef size_t si
    cdef OutBuf matches
    k = 3
    while k < a.argc:
        if ieq(a.ptr[k], a.len[k], b"idx"):
            want_idx = 1
        elif ieq(a.ptr[k], a.len[k], b"len"):
            want_len = 1
        elif ieq(a.ptr[k], a.len[k], b"withmatchlen"):
            withlen = 1
        elif ieq(a.ptr[k], a.len[k], b"minmatchlen") and k + 1 < a.argc:
            if not parse_i64(a.ptr[k + 1], a.len[k + 1], &minlen):
                out_error(&c.out, b"ERR value is not an integer or out of range")
                return
            if minlen < 0:
                minlen = 0
            k += 1
        else:
            out_error(&c.out, b"ERR syntax error")
            return
        k += 1
    if want_len and want_idx:
        out_error(&c.out, b"ERR If you want both the length and indexes, please just use IDX.")
        return
    if not srv.find(a.ptr[1], a.len[1], &x, &xl):
        x = b""
        xl = 0
    if not srv.find(a.ptr[2], a.len[2], &y, &yl):
        y = b""
        yl = 0
    if srv.find_err:
        return
    if (<uint64_t>xl + 1) * (<uint64_t>yl + 1) > LCS_MAX_CELLS:
        out_error(&c.out, b"ERR LCS of values this large is not supported by pastedb: "
                          b"(len1+1)*(len2+1) must be at most 4194304 (16 MB of working memory)")
        return
    w = yl + 1
    t = <uint32_t *>malloc((xl + 1) * w * sizeof(uint32_t))
    if t == NULL:
        out_error(&c.out, b"ERR Insufficient memory, failed allocating transient memory for LCS")
        return
    memset(t, 0, w * sizeof(uint32_t))
    for i in range(1, xl + 1):
        row = t + i * w
        prev = row - w
        row[0] = 0
        xc = x[i - 1]
        for j in range(1, yl + 1):
            if xc == y[j - 1]:
                row[j] = prev[j - 1] + 1
            else:
                up = prev[j]
                left = row[j - 1]
                row[j] = up if up > left else left
    total = t[xl * w + yl]
    if want_len:
        free(t)
        out_int(&c.out, total)
        return
    s = <char *>malloc(total + 1)
    if s == NULL or out_init(&matches, 256) != 0:
        free(s)
        free(t)
        out_error(&c.out, b"ERR out of memory")
        return
    # Walk back from the end: the common string from its last byte, and
    # (IDX) the matching ranges, last first.
    i = xl
    j = yl
    si = total
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            si -= 1
            s[si] = x[i - 1]
            if not inrange:
                inrange = 1
                a1 = <int64_t>i - 1
                b1 = <int64_t>j - 1
            a0 = <int64_t>i - 1
            b0 = <int64_t>j - 1
            i -= 1
            j -= 1
            if (i == 0 or j == 0) and inrange:
                if a1 - a0 + 1 >= minlen:
                    lcs_range(&matches, a0, a1, b0, b1, withlen)
                    nmatch += 1
                inrange = 0
        else:
            if t[(i - 1) * w + j] > t[i * w + j - 1]:
                i -= 1
            else:
                j -= 1
            if inrange:
                if a1 - a0 + 1 >= minlen:
                    lcs_range(&matches, a0, a1, b0, b1, withlen)
                    nmatch += 1
                inrange = 0
    free(t)
    if want_idx:
        out_map(&c.out, 2, c.resp3)
        out_bulk(&c.out, b"matches", 7)
        out_array(&c.out, nmatch)
        out_raw(&c.out, matches.data, matches.len)
        out_bulk(&c.out, b"len", 3)
        out_int(&c.out, total)
    else:
        out_bulk(&c.out, s, total)
    out_free(&matches)
    free(s)


# ---------------------------------------------------------------- keyspace commands
cdef void cmd_rename(Server srv, Conn *c, int nx) noexcept nogil:
    """RENAME / RENAMENX: a PUT of the value under the new name and a DEL
    of the old one, appended together (one batch: both or neither)."""
    cdef Args *a = &srv.args
    cdef const char *v
    cdef const char *d
    cdef size_t vlen, dlen
    cdef uint64_t exp = 0
    if not srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &exp):
        if not srv.find_err:
            out_error(&c.out, b"ERR no such key")
        return
    if not srv.key_ok(c, a.len[2]):
        return
    if a.len[1] == a.len[2] and memcmp(a.ptr[1], a.ptr[2], a.len[1]) == 0:
        if nx:
            out_int(&c.out, 0)
        else:
            out_simple(&c.out, b"OK")
        return
    if nx and srv.find(a.ptr[2], a.len[2], &d, &dlen):
        out_int(&c.out, 0)
        return
    if srv.stage_record(REC_PUT, a.ptr[2], a.len[2], v, vlen, 0) != 0:
        no_space(srv, c)
        return
    srv.recs[srv.nrecs - 1].expire_ms = exp            # the new name keeps the expiry
    if srv.stage_record(REC_DEL, a.ptr[1], a.len[1], NULL, 0, 0) != 0:
        no_space(srv, c)
        return
    if nx:
        out_int(&c.out, 1)
    else:
        out_simple(&c.out, b"OK")


cdef void h_rename(Server srv, Conn *c) noexcept nogil:
    cmd_rename(srv, c, 0)


cdef void h_renamenx(Server srv, Conn *c) noexcept nogil:
    cmd_rename(srv, c, 1)


cdef int key_in_db(Server srv, const char *k, size_t klen, int dbno, char *out,
                   size_t *outlen) noexcept nogil:
    """The stored key (format.pxd's keyspace) in database dbno of the user
    key that stored key k names: into out (MAX_KEY_LEN bytes); 0, or -1
    when it would be longer than MAX_KEY_LEN."""
    cdef const char *u = k
    cdef uint32_t ulen = <uint32_t>klen
    cdef size_t p
    user_key(&u, &ulen, srv.db.keyspaces)
    p = 2 if dbno != 0 or (ulen > 0 and <unsigned char>u[0] == KEY_ESC) else 0
    if ulen + p > MAX_KEY_LEN:
        return -1
    if p:
        out[0] = <char>KEY_ESC
        out[1] = <char>dbno
    memcpy(out + p, u, ulen)
    outlen[0] = ulen + p
    return 0


cdef int parse_db(Server srv, Conn *c, const char *s, size_t n, int *dbno) noexcept nogil:
    """A database number argument: 1, or 0 with the error replied (Redis's words)."""
    cdef int64_t v
    if not parse_i64(s, n, &v) or v < INT32_MIN or v > INT32_MAX:
        out_error(&c.out, b"ERR value is not an integer or out of range")
        return 0
    if v < 0 or v >= srv.ndb:
        out_error(&c.out, b"ERR DB index is out of range")
        return 0
    dbno[0] = <int>v
    return 1


cdef void cmd_move(Server srv, Conn *c) noexcept nogil:
    """MOVE key db: 1 when moved (its value and expiry, one batch: PUT in
    db, DEL here), 0 when absent here or present there."""
    cdef Args *a = &srv.args
    cdef const char *v
    cdef const char *d
    cdef size_t vlen, dlen, tlen
    cdef int dbno
    cdef uint64_t exp = 0
    cdef char target[MAX_KEY_LEN]
    if not parse_db(srv, c, a.ptr[2], a.len[2], &dbno):
        return
    if dbno == c.db:
        out_error(&c.out, b"ERR source and destination objects are the same")
        return
    if key_in_db(srv, a.ptr[1], a.len[1], dbno, target, &tlen) != 0:
        out_error(&c.out, b"ERR key too long: pastedb keys are at most 1024 bytes")
        return
    if not srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &exp):
        if not srv.find_err:
            out_int(&c.out, 0)
        return
    if srv.find(target, tlen, &d, &dlen) or srv.find_err:
        if not srv.find_err:
            out_int(&c.out, 0)
        return
    if srv.stage_record(REC_PUT, target, tlen, v, vlen, 0) != 0:
        no_space(srv, c)
        return
    srv.recs[srv.nrecs - 1].expire_ms = exp
    if srv.stage_record(REC_DEL, a.ptr[1], a.len[1], NULL, 0, 0) != 0:
        no_space(srv, c)
        return
    out_int(&c.out, 1)


cdef struct SwapKey:                  # SWAPDB: one key to move, read before anything is staged
    size_t koff                       # its stored key in the walk's buffer
    uint32_t klen
    int dbno                          # the database it moves to
    const char *v
    size_t vlen
    uint64_t exp


cdef void cmd_swapdb(Server srv, Conn *c) noexcept nogil:
    """SWAPDB a b: the two databases' keys exchanged, as one batch (a DEL
    of every key of both, then a PUT of each under the other database;
    values copied, expiries kept).  Redis swaps two pointers; here it is
    O(keys + bytes) inside the event loop, so it is refused past
    SWAPDB_MAX_KEYS keys (MOVE them, or use FLUSHDB)."""
    cdef Args *a = &srv.args
    cdef int da, db_, i, j, rc = 0, side
    cdef OutBuf keys
    cdef size_t at, n = 0, cap = 0, tlen
    cdef uint32_t klen
    cdef SwapKey *sk = NULL
    cdef SwapKey *grown
    cdef char target[MAX_KEY_LEN]
    cdef char *base = srv.base
    cdef const LogRecord *r
    cdef Ref ref
    cdef int64_t v1, v2
    if not parse_i64(a.ptr[1], a.len[1], &v1) or v1 < INT32_MIN or v1 > INT32_MAX:
        out_error(&c.out, b"ERR invalid first DB index")
        return
    if not parse_i64(a.ptr[2], a.len[2], &v2) or v2 < INT32_MIN or v2 > INT32_MAX:
        out_error(&c.out, b"ERR invalid second DB index")
        return
    if v1 < 0 or v1 >= srv.ndb or v2 < 0 or v2 >= srv.ndb:
        out_error(&c.out, b"ERR DB index is out of range")
        return
    da = <int>v1
    db_ = <int>v2
    if da == db_:
        out_simple(&c.out, b"OK")
        return
    if out_init(&keys, 65536) != 0:
        out_error(&c.out, b"ERR out of memory")
        return
    for side in range(2):
        rc = srv.db.walk_keys(srv.scan_it, NULL, 0, 0, SWAPDB_MAX_KEYS + 1, <KeySink>collect_key,
                              &keys, da if side == 0 else db_)
        if rc < 0:
            break
        rc = 0                                    # 1: more keys than the budget (counted below)
    # Keys this transaction staged that the index does not hold yet.
    for i in range(srv.nrecs):
        if rc < 0:
            break
        r = &srv.recs[i]
        side = srv.db.key_db(base + r.koff, r.klen)
        if r.type != REC_PUT or (side != da and side != db_):
            continue
        if srv.db.read_value(base + r.koff, r.klen, &ref, 0) != 0:
            continue                              # the walk has it (or it failed: find says)
        j = 0
        for j in range(i + 1, srv.nrecs):
            if srv.recs[j].klen == r.klen and \
                    memcmp(base + srv.recs[j].koff, base + r.koff, r.klen) == 0:
                break
        else:
            klen = r.klen                         # the record's is 16 bits, the buffer's 32
            if out_raw(&keys, <const char *>&klen, sizeof(uint32_t)) != 0 or \
                    out_raw(&keys, base + r.koff, klen) != 0:
                rc = -ENOMEM
    if rc < 0:
        out_free(&keys)
        if rc == -ENOMEM:
            out_error(&c.out, b"ERR out of memory")
        else:
            srv.find_err = rc
        return
    # Every value first: staging changes what find() sees.
    at = 0
    while at < keys.len:
        memcpy(&klen, keys.data + at, sizeof(uint32_t))
        if n == cap:
            cap = cap * 2 if cap else 1024
            grown = <SwapKey *>realloc(sk, cap * sizeof(SwapKey))
            if grown == NULL:
                rc = -ENOMEM
                break
            sk = grown
        sk[n].koff = at + sizeof(uint32_t)
        sk[n].klen = klen
        sk[n].dbno = db_ if srv.db.key_db(keys.data + at + sizeof(uint32_t), klen) == da else da
        if srv.find_exp(keys.data + at + sizeof(uint32_t), klen, &sk[n].v, &sk[n].vlen,
                        &sk[n].exp):
            n += 1
        elif srv.find_err:
            rc = srv.find_err
            break
        at += sizeof(uint32_t) + klen
    if rc == 0 and n > SWAPDB_MAX_KEYS:
        out_free(&keys)
        free(sk)
        out_error(&c.out, b"ERR SWAPDB of databases holding more than 100000 keys is not "
                          b"supported (pastedb moves every key; MOVE them in steps)")
        return
    for i in range(n):
        if rc == 0:
            rc = srv.stage_record(REC_DEL, keys.data + sk[i].koff, sk[i].klen, NULL, 0, 0)
    for i in range(n):
        if rc != 0:
            break
        if key_in_db(srv, keys.data + sk[i].koff, sk[i].klen, sk[i].dbno, target, &tlen) != 0:
            rc = 1                                # a key too long for the other database
            break
        rc = srv.stage_record(REC_PUT, target, tlen, sk[i].v, sk[i].vlen, 0)
        if rc == 0:
            srv.recs[srv.nrecs - 1].expire_ms = sk[i].exp
    out_free(&keys)
    free(sk)
    if rc == -ENOMEM and srv.stage_rc != -ENOMEM:
        srv.drop_cmd_recs()
        out_error(&c.out, b"ERR out of memory")
    elif rc == 1:
        srv.drop_cmd_recs()
        out_error(&c.out, b"ERR a key of database 0 is too long to move (1022 bytes at most "
                          b"in a database other than 0)")
    elif rc < 0 and rc == srv.find_err:
        srv.drop_cmd_recs()
    elif rc != 0:
        no_space(srv, c)
    else:
        out_simple(&c.out, b"OK")             # the DELs and PUTs touched every WATCH on them


cdef void cmd_copy(Server srv, Conn *c) noexcept nogil:
    """COPY source destination [DB n] [REPLACE]."""
    cdef Args *a = &srv.args
    cdef const char *v
    cdef const char *d
    cdef size_t vlen, dlen
    cdef int replace = 0, k = 3, dbno = c.db
    cdef uint64_t exp = 0
    cdef const char *dst = a.ptr[2]
    cdef size_t dstlen = a.len[2]
    cdef char target[MAX_KEY_LEN]
    while k < a.argc:
        if ieq(a.ptr[k], a.len[k], b"replace"):
            replace = 1
        elif ieq(a.ptr[k], a.len[k], b"db") and k + 1 < a.argc:
            if not parse_db(srv, c, a.ptr[k + 1], a.len[k + 1], &dbno):
                return
            k += 1
        else:
            out_error(&c.out, b"ERR syntax error")
            return
        k += 1
    if dbno != c.db:
        if key_in_db(srv, a.ptr[2], a.len[2], dbno, target, &dstlen) != 0:
            out_error(&c.out, b"ERR key too long: pastedb keys are at most 1024 bytes")
            return
        dst = target
    if a.len[1] == dstlen and memcmp(a.ptr[1], dst, dstlen) == 0:
        out_error(&c.out, b"ERR source and destination objects are the same")
        return
    if not srv.key_ok(c, dstlen):
        return
    if not srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &exp):
        if not srv.find_err:
            out_int(&c.out, 0)
        return
    if not replace and srv.find(dst, dstlen, &d, &dlen):
        out_int(&c.out, 0)
        return
    if srv.stage_record(REC_PUT, dst, dstlen, v, vlen, 0) != 0:
        no_space(srv, c)
        return
    srv.recs[srv.nrecs - 1].expire_ms = exp            # the copy has the source's expiry
    out_int(&c.out, 1)


cdef void cmd_touch(Server srv, Conn *c) noexcept nogil:
    """TOUCH: how many of the keys exist (pastedb keeps no access times)."""
    cmd_exists(srv, c)


cdef struct OneKey:                   # walk_keys' sink for RANDOMKEY: the first / last key visited
    int got
    int64_t visited                   # keys visited (last_key_sink)
    uint32_t klen
    char key[MAX_KEY_LEN]


cdef int one_key_sink(void *ctx, const char *k, uint32_t klen) noexcept nogil:
    cdef OneKey *o = <OneKey *>ctx
    memcpy(o.key, k, klen)
    o.klen = klen
    o.got = 1
    return 1


cdef inline uint64_t next_rand(Server srv) noexcept nogil:
    cdef uint64_t x = srv.rand_state
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    srv.rand_state = x
    return x


cdef void cmd_randomkey(Server srv, Conn *c) noexcept nogil:
    """RANDOMKEY in O(log n): the first live key after a random probe drawn
    between the first and the last key (their common prefix, a byte between
    theirs, then fewer bytes than the longer has after it, each within the
    range of bytes the two use past the prefix), then up to RANDOM_SKIP keys
    further.  The tree keeps no counts, so keys are not equally likely: one
    after a wide gap of the key space comes up more often.  A few draws at
    most (inside EXEC the transaction may have deleted what the index has),
    then nil."""
    cdef OneKey lo, hi, pick
    cdef const char *uk
    cdef uint32_t uklen
    cdef char probe[MAX_KEY_LEN]
    cdef uint32_t plen, i, common, longest, tail
    cdef int tries, rc, span, bmin = 255, bmax = 0, p, x
    cdef int64_t left
    cdef const char *v
    cdef size_t vlen
    lo.got = 0
    hi.got = 0
    rc = srv.db.walk_keys(srv.scan_it, NULL, 0, 0, 1, <KeySink>one_key_sink, &lo, c.db)
    if rc >= 0:
        rc = srv.db.walk_keys(srv.rev_it, NULL, 0, 0, 1, <KeySink>one_key_sink, &hi, c.db)
    if rc < 0:
        srv.find_err = rc
        return
    if not lo.got:
        out_null(&c.out, c.resp3)
        return
    common = 0
    while common < lo.klen and common < hi.klen and lo.key[common] == hi.key[common]:
        common += 1
    longest = lo.klen if lo.klen > hi.klen else hi.klen
    for i in range(common, lo.klen):
        x = <uint8_t>lo.key[i]
        bmin = x if x < bmin else bmin
        bmax = x if x > bmax else bmax
    for i in range(common, hi.klen):
        x = <uint8_t>hi.key[i]
        bmin = x if x < bmin else bmin
        bmax = x if x > bmax else bmax
    if bmin > bmax:
        bmin = 0
        bmax = 255
    for tries in range(8):
        memcpy(probe, lo.key, common)
        plen = common
        if common < hi.klen:
            p = <uint8_t>lo.key[common] if common < lo.klen else 0
            span = <uint8_t>hi.key[common] - p + 1
            probe[plen] = <char>(p + <int>(next_rand(srv) % <uint64_t>span))
            plen += 1
            tail = <uint32_t>(next_rand(srv) % <uint64_t>(longest - common))
            for i in range(tail):
                probe[plen] = <char>(bmin + <int>(next_rand(srv) % <uint64_t>(bmax - bmin + 1)))
                plen += 1
        # Walk 1..RANDOM_SKIP keys from the probe, wrapping past the last
        # key to the first (the keys as a circle: no end is favoured).
        pick.got = 0
        pick.visited = 0
        left = 1 + <int64_t>(next_rand(srv) % RANDOM_SKIP)
        rc = srv.db.walk_keys(srv.scan_it, probe, plen, 1, left,
                              <KeySink>last_key_sink, &pick, c.db)
        while rc >= 0 and pick.visited < left:
            left -= pick.visited
            pick.visited = 0
            rc = srv.db.walk_keys(srv.scan_it, NULL, 0, 0, left, <KeySink>last_key_sink, &pick,
                                  c.db)
            if pick.visited == 0:
                break
        if rc < 0:
            srv.find_err = rc
            return
        if not pick.got:
            pick = lo
        if srv.find(pick.key, pick.klen, &v, &vlen):
            uk = pick.key
            uklen = pick.klen
            user_key(&uk, &uklen, srv.db.keyspaces)
            out_bulk(&c.out, uk, uklen)
            return
    out_null(&c.out, c.resp3)


cdef int last_key_sink(void *ctx, const char *k, uint32_t klen) noexcept nogil:
    """walk_keys' sink keeping the last key visited."""
    cdef OneKey *o = <OneKey *>ctx
    memcpy(o.key, k, klen)
    o.klen = klen
    o.got = 1
    o.visited += 1
    return 0


cdef void cmd_object(Server srv, Conn *c) noexcept nogil:
    """OBJECT ENCODING / REFCOUNT / FREQ / IDLETIME / HELP for strings."""
    cdef Args *a = &srv.args
    cdef const char *v
    cdef size_t vlen
    cdef int64_t iv
    cdef char msg[256]
    cdef size_t n
    if ieq(a.ptr[1], a.len[1], b"help") and a.argc == 2:
        out_array(&c.out, 5)
        out_simple(&c.out, b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
        out_simple(&c.out, b"ENCODING <key>: int, embstr or raw, as Redis would store the string.")
        out_simple(&c.out, b"FREQ <key>: not tracked by pastedb (no LFU policy).")
        out_simple(&c.out, b"IDLETIME <key>: not tracked by pastedb (no access times).")
        out_simple(&c.out, b"REFCOUNT <key>: 1 (pastedb shares no values).")
        return
    if a.argc != 3 or not (ieq(a.ptr[1], a.len[1], b"encoding") or
                           ieq(a.ptr[1], a.len[1], b"refcount") or
                           ieq(a.ptr[1], a.len[1], b"freq") or
                           ieq(a.ptr[1], a.len[1], b"idletime")):
        n = put_quoted(msg, 0, b"ERR unknown subcommand or wrong number of arguments for '",
                       57, 57)
        n = put_quoted(msg, n, a.ptr[1], a.len[1], 128)
        n = put_quoted(msg, n, b"'. Try OBJECT HELP.", 19, 19)
        msg[n] = 0
        sanitize_error(msg)
        out_error(&c.out, msg)
        return
    if not srv.find(a.ptr[2], a.len[2], &v, &vlen):
        out_null(&c.out, c.resp3)
        return
    if ieq(a.ptr[1], a.len[1], b"encoding"):
        if vlen <= 20 and parse_i64(v, vlen, &iv):
            out_bulk(&c.out, b"int", 3)
        elif vlen <= 44:
            out_bulk(&c.out, b"embstr", 6)
        else:
            out_bulk(&c.out, b"raw", 3)
    elif ieq(a.ptr[1], a.len[1], b"refcount"):
        out_int(&c.out, 1)
    elif ieq(a.ptr[1], a.len[1], b"freq"):
        out_error(&c.out, b"ERR An LFU maxmemory policy is not selected, access frequency not "
                          b"tracked. pastedb keeps no access frequencies.")
    else:
        out_error(&c.out, b"ERR pastedb keeps no access times: OBJECT IDLETIME is not available")


# ---------------------------------------------------------------- SCAN
cdef struct ScanCtx:                  # walk_keys' sink for SCAN
    const char *pat
    size_t plen
    int every                         # no MATCH (or "*")
    int type_ok                       # no TYPE, or TYPE string
    OutBuf *found                     # the keys to return, as bulk strings
    int64_t n
    char *last                        # the last key visited (MAX_KEY_LEN)
    uint32_t lastlen
    int keyspaces                     # the keys carry their database (user_key)


cdef int scan_sink(void *ctx, const char *k, uint32_t klen) noexcept nogil:
    cdef ScanCtx *s = <ScanCtx *>ctx
    memcpy(s.last, k, klen)
    s.lastlen = klen
    user_key(&k, &klen, s.keyspaces)
    if s.type_ok and (s.every or glob_match(s.pat, s.plen, k, klen, 0)):
        if out_bulk(s.found, k, klen) != 0:
            return -ENOMEM
        s.n += 1
    return 0


cdef int parse_u64(const char *s, size_t n, uint64_t *out) noexcept nogil:
    cdef uint64_t v = 0, d
    cdef size_t i
    if n == 0 or n > 20:
        return 0
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return 0
        d = <uint64_t>(s[i] - 48)
        if v > (UINT64_MAX - d) // 10:
            return 0
        v = v * 10 + d
    out[0] = v
    return 1


cdef void cmd_scan(Server srv, Conn *c) noexcept nogil:
    """SCAN cursor [MATCH p] [COUNT n] [TYPE t]: at most COUNT keys
    (capped at SCAN_MAX_COUNT) are visited per call, in key order.  The
    cursor names a slot remembering the key to resume after; a cursor
    whose slot was reused since restarts the scan (SCAN may return a key
    more than once, never misses one present throughout)."""
    cdef Args *a = &srv.args
    cdef uint64_t cursor
    cdef int64_t count = SCAN_DEFAULT_COUNT
    cdef int k = 2, rc, resume = 0
    cdef ScanCtx s
    cdef OutBuf found
    cdef ScanSlot *slot
    cdef char buf[24]
    cdef int n
    cdef char last[MAX_KEY_LEN]
    if not parse_u64(a.ptr[1], a.len[1], &cursor):
        out_error(&c.out, b"ERR invalid cursor")
        return
    memset(&s, 0, sizeof(ScanCtx))
    s.every = 1
    s.type_ok = 1
    while k < a.argc:
        if k + 1 >= a.argc:
            out_error(&c.out, b"ERR syntax error")
            return
        if ieq(a.ptr[k], a.len[k], b"count"):
            if not parse_i64(a.ptr[k + 1], a.len[k + 1], &count):
                out_error(&c.out, b"ERR value is not an integer or out of range")
                return
            if count < 1:
                out_error(&c.out, b"ERR syntax error")
                return
            if count > SCAN_MAX_COUNT:
                count = SCAN_MAX_COUNT
        elif ieq(a.ptr[k], a.len[k], b"match"):
            s.pat = a.ptr[k + 1]
            s.plen = a.len[k + 1]
            s.every = s.plen == 1 and s.pat[0] == 42
        elif ieq(a.ptr[k], a.len[k], b"type"):
            s.type_ok = ieq(a.ptr[k + 1], a.len[k + 1], b"string")
        else:
            out_error(&c.out, b"ERR syntax error")
            return
        k += 2
    if out_init(&found, 4096) != 0:
        out_error(&c.out, b"ERR out of memory")
        return
    s.found = &found
    s.last = last
    s.keyspaces = srv.db.keyspaces
    slot = &srv.scan_slots[cursor % SCAN_SLOTS]
    if cursor != 0 and slot.cursor == cursor and slot.key != NULL:
        resume = 1
    rc = srv.db.walk_keys(srv.scan_it, slot.key if resume else NULL,
                          slot.klen if resume else 0, resume, count, <KeySink>scan_sink, &s, c.db)
    if rc < 0:
        out_free(&found)
        if rc == -ENOMEM:
            out_error(&c.out, b"ERR out of memory")
        else:
            srv.find_err = rc
        return
    cursor = 0
    if rc == 1:
        cursor = srv.next_cursor
        srv.next_cursor += 1
        if srv.next_cursor == 0:
            srv.next_cursor = 1
        slot = &srv.scan_slots[cursor % SCAN_SLOTS]
        if slot.key == NULL:
            slot.key = <char *>malloc(MAX_KEY_LEN)
        if slot.key == NULL:
            cursor = 0                        # cannot remember it: the scan ends here
        else:
            memcpy(slot.key, last, s.lastlen)
            slot.klen = s.lastlen
            slot.cursor = cursor
    out_array(&c.out, 2)
    n = format_i64(buf, <int64_t>cursor) if cursor <= <uint64_t>INT64_MAX else 0
    out_bulk(&c.out, buf, <size_t>n)
    out_array(&c.out, s.n)
    out_raw(&c.out, found.data, found.len)
    out_free(&found)


# ---------------------------------------------------------------- WATCH
cdef void cmd_watch(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int i
    if c.in_multi:
        out_error(&c.out, b"ERR WATCH inside MULTI is not allowed")
        return
    for i in range(1, a.argc):
        if srv.watch_key(c, a.ptr[i], a.len[i]) != 0:
            out_error(&c.out, b"ERR out of memory")
            return
    out_simple(&c.out, b"OK")


cdef void cmd_unwatch(Server srv, Conn *c) noexcept nogil:
    srv.unwatch_all(c)
    out_simple(&c.out, b"OK")


cdef uint32_t key_hash(const char *k, size_t klen) noexcept nogil:
    """FNV-1a over the key (the WATCH table's buckets)."""
    cdef uint32_t h = 2166136261
    cdef size_t i
    for i in range(klen):
        h = (h ^ <uint8_t>k[i]) * 16777619
    return h


# ---------------------------------------------------------------- unsupported commands
# Redis commands pastedb answers with a clear error rather than "unknown":
# the family each belongs to and why it is not served.
cdef const char *UNSUPPORTED_FAMILIES[8]
UNSUPPORTED_FAMILIES[0] = b"hashes"
UNSUPPORTED_FAMILIES[1] = b"lists"
UNSUPPORTED_FAMILIES[2] = b"sets"
UNSUPPORTED_FAMILIES[3] = b"sorted sets"
UNSUPPORTED_FAMILIES[4] = b"streams"
UNSUPPORTED_FAMILIES[5] = b"scripting"
UNSUPPORTED_FAMILIES[6] = b"pub/sub"
UNSUPPORTED_FAMILIES[7] = b"replication"

UNSUPPORTED = {
    0: b"hset hget hmset hmget hdel hlen hexists hgetall hkeys hvals hincrby hincrbyfloat "
       b"hsetnx hstrlen hscan hrandfield",
    1: b"lpush rpush lpop rpop llen lrange lindex lset lrem ltrim linsert lpushx rpushx "
       b"rpoplpush lmove blpop brpop brpoplpush blmove lpos lmpop blmpop sort sort_ro",
    2: b"sadd srem smembers sismember smismember scard spop srandmember smove sinter "
       b"sinterstore sunion sunionstore sdiff sdiffstore sscan sintercard",
    3: b"zadd zrem zrange zscore zcard zincrby zrank zrevrank zrangebyscore zrevrange "
       b"zrevrangebyscore zcount zlexcount zrangebylex zrevrangebylex zremrangebyrank "
       b"zremrangebyscore zremrangebylex zunionstore zinterstore zscan zpopmin zpopmax "
       b"bzpopmin bzpopmax zrandmember zmscore zdiff zdiffstore zunion zinter zintercard "
       b"zrangestore zmpop bzmpop",
    4: b"xadd xrange xrevrange xlen xread xreadgroup xgroup xack xpending xclaim xautoclaim "
       b"xinfo xdel xtrim xsetid",
    5: b"eval evalsha eval_ro evalsha_ro script function fcall fcall_ro",
    6: b"subscribe unsubscribe psubscribe punsubscribe publish pubsub ssubscribe "
       b"sunsubscribe spublish",
    7: b"replicaof slaveof sync psync wait failover replconf",
}

cdef int NUNSUPPORTED = 0
cdef const char *UNSUPPORTED_NAMES[256]
cdef int UNSUPPORTED_OF[256]
_unsupported_keep = []
for _fam, _names in UNSUPPORTED.items():
    for _name in _names.split():
        _unsupported_keep.append(_name)
        UNSUPPORTED_NAMES[NUNSUPPORTED] = _name
        UNSUPPORTED_OF[NUNSUPPORTED] = _fam
        NUNSUPPORTED += 1


cdef int unsupported_family(const char *name, size_t n) noexcept nogil:
    """Which UNSUPPORTED_FAMILIES entry a command belongs to, or -1."""
    cdef int i
    for i in range(NUNSUPPORTED):
        if ieq(name, n, UNSUPPORTED_NAMES[i]):
            return UNSUPPORTED_OF[i]
    return -1




# ---------------------------------------------------------------- rare commands in Python
cdef object py_auth(Server srv, Conn *c, list args):
    password = args[len(args) - 1]
    if len(args) > 3:
        return RError("ERR syntax error")
    if not srv.requirepass:
        return RError("ERR AUTH <password> called without any password configured "
                      "for the default user. Are you sure your configuration is correct?")
    if len(args) == 3 and args[1] != b"default":
        return RError("WRONGPASS invalid username-password pair or user is disabled.")
    if password != srv.requirepass:
        return RError("WRONGPASS invalid username-password pair or user is disabled.")
    c.authed = 1
    srv.lift_unauth_limits(c)
    return ROK


cdef object py_client(Server srv, Conn *c, list args):
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        name = args[2]
        if len(name) >= 128 or any(ch <= 32 or ch >= 127 for ch in name):
            return RError("ERR Client names cannot contain spaces, newlines or special "
                          "characters.")
        memcpy(c.name, <const char *>name, len(name))
        c.name_len = len(name)
        return ROK
    if sub == b"getname":
        return c.name[:c.name_len] if c.name_len else None
    if sub == b"setinfo":
        return ROK
    if sub == b"id":
        return int(c.id)
    if sub == b"info":
        return f"id={c.id} name={c.name[:c.name_len].decode('latin-1')} resp={3 if c.resp3 else 2}\n".encode()
    return RError(f"ERR unknown subcommand '{sub.decode('latin-1')}'. Try CLIENT HELP.")


cdef object py_command(Server srv, Conn *c, list args):
    cdef int i
    cdef CmdSpec *spec
    sub = args[1].lower() if len(args) > 1 else b""
    if sub == b"count":
        return NCOMMANDS
    if sub == b"docs":
        return {}
    if sub in (b"info", b""):
        wanted = [x.lower() for x in args[2:]]
        out = []
        for i in range(NCOMMANDS):
            spec = &COMMANDS[i]
            name = <bytes>spec.name
            if wanted and name not in wanted:
                continue
            fl = [RStatus("write" if spec.flags & F_WRITE else "readonly")]
            out.append([name, spec.arity, fl, spec.first_key, spec.last_key, spec.key_step])
        return out
    return RError(f"ERR unknown subcommand '{sub.decode('latin-1')}'. Try COMMAND HELP.")


cdef object py_config(Server srv, Conn *c, list args):
    sub = args[1].lower()
    if sub == b"get":
        return config_get(srv, args[2:])
    if sub == b"set":
        if len(args) < 4 or len(args) % 2 != 0:
            return RError("ERR wrong number of arguments for 'config|set' command")
        for i in range(2, len(args), 2):
            err = srv.config_set(args[i], args[i + 1])
            if err is not None:
                return RError(err)
        return ROK
    if sub == b"resetstat":
        memset(srv.cmd_calls, 0, MAX_COMMANDS * sizeof(uint64_t))
        memset(srv.cmd_rejected, 0, MAX_COMMANDS * sizeof(uint64_t))
        srv.reset_breakdown()
        return ROK
    return RError(f"ERR CONFIG {sub.decode('latin-1').upper()} is not supported by pastedb "
                  f"(CONFIG GET, SET and RESETSTAT are)")


cdef object py_debug(Server srv, Conn *c, list args):
    """DEBUG: the subcommands of Redis's test infrastructure that map onto
    pastedb.  SLEEP holds the whole server, as it does in Redis."""
    cdef int rc
    sub = args[1].lower()
    if sub == b"sleep" and len(args) == 3:
        try:
            secs = float(args[2])
        except ValueError:
            return RError("ERR value is not a valid float")
        if secs > 0:
            time.sleep(secs)
        return ROK
    if (sub == b"reload" or sub == b"loadaof") and len(args) == 2:
        # Everything logged is moved into the tree file and committed
        # there; reads then come from the files (the server keeps its
        # mapping: its receive windows live in it).  The log and the index
        # are pastedb's AOF: LOADAOF is the same step.
        with nogil:
            rc = srv.commit_staged()
            if rc == 0:
                rc = srv.db.checkpoint_index()
        if rc != 0:
            return RError("ERR DEBUG RELOAD failed: the checkpoint did not complete")
        return ROK
    if sub == b"object" and len(args) == 3:
        value = srv.db.get(srv.db._db_key(args[2], c.db))   # the SELECTed database's key
        if value is None:
            return RError("ERR no such key")
        enc = (b"int" if len(value) <= 20 and value.lstrip(b"-").isdigit() else
               b"embstr" if len(value) <= 44 else b"raw")
        return RStatus("Value refcount:1 encoding:%s serializedlength:%d"
                       % (enc.decode(), len(value)))
    if sub == b"protocol" and len(args) == 3:
        return debug_protocol(args[2].lower(), c.resp3)
    if sub == b"set-active-expire" and len(args) == 3:
        # Off: expired keys stay invisible; only reads of them get them deleted.
        srv.db._set_active_expire(args[2] != b"0")
        return ROK
    return RError(f"ERR DEBUG {sub.decode('latin-1').upper()} is not supported by pastedb "
                  f"(SLEEP, RELOAD, LOADAOF, OBJECT, PROTOCOL and SET-ACTIVE-EXPIRE are)")


def debug_protocol(bytes kind, int resp3):
    """DEBUG PROTOCOL <type>: one reply of each RESP3 type (and its RESP2
    form), for testing clients' parsers, as Redis's."""
    def bulk(b):
        return b"$%d\r\n%s\r\n" % (len(b), b)
    if kind == b"string":
        return b"Hello World"
    if kind == b"integer":
        return 12345
    if kind == b"double":
        return RRaw(b",3.14159265359\r\n" if resp3 else bulk(b"3.14159265359"))
    if kind == b"bignum":
        n = b"1234567999999999999999999999999999999"
        return RRaw(b"(" + n + b"\r\n" if resp3 else bulk(n))
    if kind == b"null":
        return None
    if kind == b"array":
        return [0, 1, 2]
    if kind == b"set":
        return RRaw((b"~3\r\n" if resp3 else b"*3\r\n") + b":0\r\n:1\r\n:2\r\n")
    if kind == b"map":
        if resp3:
            return RRaw(b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n")
        return RRaw(b"*6\r\n:0\r\n:0\r\n:1\r\n:1\r\n:2\r\n:0\r\n")
    if kind == b"attrib":
        attrib = b"|1\r\n" + bulk(b"key-popularity") + b"*2\r\n" + bulk(b"key:123") + b":90\r\n"
        return RRaw((attrib if resp3 else b"") + bulk(b"Some real reply following the attribute"))
    if kind == b"push":
        if not resp3:
            return RError("ERR RESP2 is not supported by this command")
        return RRaw(b">2\r\n" + bulk(b"server-cpu-usage") + b":42\r\n" +
                    bulk(b"Some real reply following the push reply"))
    if kind in (b"true", b"false"):
        t = kind == b"true"
        return RRaw((b"#t\r\n" if t else b"#f\r\n") if resp3 else (b":1\r\n" if t else b":0\r\n"))
    if kind == b"verbatim":
        text = b"This is a verbatim\nstring"
        return RRaw(b"=%d\r\ntxt:%s\r\n" % (len(text) + 4, text) if resp3 else bulk(text))
    return RError("ERR Wrong protocol type name. Please use one of the following: "
                  "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false")


cdef object py_info(Server srv, Conn *c, list args):
    return srv.info_text([x.lower() for x in args[1:]]).encode()


cdef object py_hello(Server srv, Conn *c, list args):
    cdef int proto = 3 if c.resp3 else 2
    i = 1
    if len(args) > 1:
        try:
            proto = int(args[1])
        except ValueError:
            return RError("ERR Protocol version is not an integer or out of range")
        if proto not in (2, 3):
            return RError("NOPROTO unsupported protocol version")
        i = 2
    name = None
    while i < len(args):
        opt = args[i].lower()
        if opt == b"auth" and i + 2 < len(args):
            if (not srv.requirepass or args[i + 1] != b"default"
                    or args[i + 2] != srv.requirepass):
                return RError("WRONGPASS invalid username-password pair or user is disabled.")
            c.authed = 1
            srv.lift_unauth_limits(c)
            i += 3
        elif opt == b"setname" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            return RError(f"ERR Syntax error in HELLO option '{opt.decode('latin-1')}'")
    if not c.authed:
        return RError("NOAUTH HELLO must be called with the client already authenticated, "
                      "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                      "authenticate the client and select the RESP protocol version at the "
                      "same time")
    if name is not None and len(name) < 128:
        memcpy(c.name, <const char *>name, len(name))
        c.name_len = len(name)
    c.resp3 = proto == 3
    return {b"server": b"redis", b"version": VERSION.encode(), b"proto": proto,
            b"id": int(c.id), b"mode": b"standalone", b"role": b"master",
            b"modules": [], b"engine": b"pastedb"}


cdef object config_get(Server srv, list patterns):
    cdef bytes pat
    values = srv.config_values()
    out = {}
    for pat in patterns:
        for k, v in values.items():
            if glob_match(pat, len(pat), k, len(k), 1):
                out[k] = v
    return out


class RError(str):
    """An error reply."""


class RStatus(str):
    """A simple-string reply."""


class RRaw(bytes):
    """A reply already encoded (DEBUG PROTOCOL's types)."""


ROK = RStatus("OK")


cdef int encode_reply(OutBuf *o, object r, int resp3) except -1:
    cdef bytes b
    if r is None:
        out_null(o, resp3)
    elif isinstance(r, RRaw):
        b = bytes(r)
        out_raw(o, b, len(b))
    elif isinstance(r, RError):
        b = str(r).encode()
        out_error(o, b)
    elif isinstance(r, RStatus):
        b = str(r).encode()
        out_simple(o, b)
    elif isinstance(r, bool):
        out_int(o, 1 if r else 0)
    elif isinstance(r, int):
        out_int(o, r)
    elif isinstance(r, bytes):
        out_bulk(o, r, len(r))
    elif isinstance(r, str):
        b = r.encode()
        out_bulk(o, b, len(b))
    elif isinstance(r, dict):
        out_map(o, len(r), resp3)
        for k, v in r.items():
            encode_reply(o, k, resp3)
            encode_reply(o, v, resp3)
    elif isinstance(r, (list, tuple)):
        out_array(o, len(r))
        for v in r:
            encode_reply(o, v, resp3)
    else:
        raise TypeError(f"cannot encode {type(r).__name__} as a reply")
    return 0


# ---------------------------------------------------------------- the table
defcmd(b"ping", -1, F_READONLY | F_NOAUTH, h_ping)
defcmd(b"echo", 2, F_READONLY, h_echo)
defcmd(b"hello", -1, F_NOAUTH | F_NOMULTI, h_hello)
defcmd(b"auth", -2, F_NOAUTH | F_NOMULTI, h_auth)
defcmd(b"select", 2, F_READONLY, h_select)
defcmd(b"quit", -1, F_NOAUTH | F_NOMULTI, h_quit)
defcmd(b"client", -2, F_READONLY, h_client)
defcmd(b"command", -1, F_READONLY, h_command)
defcmd(b"config", -2, F_READONLY, h_config)
defcmd(b"info", -1, F_READONLY, h_info)
defcmd(b"dbsize", 1, F_READONLY, h_dbsize)
defcmd(b"flushdb", -1, F_WRITE, cmd_flush)
defcmd(b"flushall", -1, F_WRITE, cmd_flush)
defcmd(b"set", -3, F_WRITE, h_set, 1, 1, 1)
defcmd(b"get", 2, F_READONLY, h_get, 1, 1, 1)
defcmd(b"getdel", 2, F_WRITE, h_getdel, 1, 1, 1)
defcmd(b"setnx", 3, F_WRITE, h_setnx, 1, 1, 1)
defcmd(b"mset", -3, F_WRITE, cmd_mset, 1, -1, 2)
defcmd(b"mget", -2, F_READONLY, cmd_mget, 1, -1, 1)
defcmd(b"del", -2, F_WRITE, cmd_del, 1, -1, 1)
defcmd(b"unlink", -2, F_WRITE, cmd_del, 1, -1, 1)
defcmd(b"exists", -2, F_READONLY, cmd_exists, 1, -1, 1)
defcmd(b"strlen", 2, F_READONLY, cmd_strlen, 1, 1, 1)
defcmd(b"incr", 2, F_WRITE, h_incr, 1, 1, 1)
defcmd(b"decr", 2, F_WRITE, h_decr, 1, 1, 1)
defcmd(b"incrby", 3, F_WRITE, h_incrby, 1, 1, 1)
defcmd(b"decrby", 3, F_WRITE, h_decrby, 1, 1, 1)
defcmd(b"keys", 2, F_READONLY, cmd_keys)
defcmd(b"scan", -2, F_READONLY, cmd_scan)
defcmd(b"type", 2, F_READONLY, cmd_type, 1, 1, 1)
defcmd(b"multi", 1, F_READONLY | F_NOMULTI, h_multi)
defcmd(b"exec", 1, F_NOMULTI, cmd_exec)
defcmd(b"discard", 1, F_READONLY | F_NOMULTI, h_discard)
defcmd(b"save", 1, F_WRITE | F_DENYMULTI, h_save)
defcmd(b"bgsave", -1, F_WRITE | F_DENYMULTI, h_bgsave)
defcmd(b"shutdown", -1, F_DENYMULTI, h_shutdown)
defcmd(b"time", 1, F_READONLY, cmd_time)
defcmd(b"reset", 1, F_NOAUTH | F_NOMULTI, h_reset)
defcmd(b"setex", 4, F_WRITE, h_setex, 1, 1, 1)
defcmd(b"psetex", 4, F_WRITE, h_psetex, 1, 1, 1)
defcmd(b"getex", -2, F_WRITE, cmd_getex, 1, 1, 1)
defcmd(b"expire", -3, F_WRITE, h_expire, 1, 1, 1)
defcmd(b"pexpire", -3, F_WRITE, h_pexpire, 1, 1, 1)
defcmd(b"expireat", -3, F_WRITE, h_expireat, 1, 1, 1)
defcmd(b"pexpireat", -3, F_WRITE, h_pexpireat, 1, 1, 1)
defcmd(b"ttl", 2, F_READONLY, h_ttl, 1, 1, 1)
defcmd(b"pttl", 2, F_READONLY, h_pttl, 1, 1, 1)
defcmd(b"expiretime", 2, F_READONLY, h_expiretime, 1, 1, 1)
defcmd(b"pexpiretime", 2, F_READONLY, h_pexpiretime, 1, 1, 1)
defcmd(b"persist", 2, F_WRITE, h_persist, 1, 1, 1)
defcmd(b"getset", 3, F_WRITE, cmd_getset, 1, 1, 1)
defcmd(b"append", 3, F_WRITE, cmd_append, 1, 1, 1)
defcmd(b"getrange", 4, F_READONLY, cmd_getrange, 1, 1, 1)
defcmd(b"substr", 4, F_READONLY, cmd_getrange, 1, 1, 1)
defcmd(b"setrange", 4, F_WRITE, cmd_setrange, 1, 1, 1)
defcmd(b"incrbyfloat", 3, F_WRITE, cmd_incrbyfloat, 1, 1, 1)
defcmd(b"msetnx", -3, F_WRITE, cmd_msetnx, 1, -1, 2)
defcmd(b"lcs", -3, F_READONLY, cmd_lcs, 1, 2, 1)
defcmd(b"rename", 3, F_WRITE, h_rename, 1, 2, 1)
defcmd(b"renamenx", 3, F_WRITE, h_renamenx, 1, 2, 1)
defcmd(b"copy", -3, F_WRITE, cmd_copy, 1, 2, 1)
defcmd(b"randomkey", 1, F_READONLY, cmd_randomkey)
defcmd(b"touch", -2, F_READONLY, cmd_touch, 1, -1, 1)
defcmd(b"object", -2, F_READONLY, cmd_object, 2, 2, 1)
defcmd(b"watch", -2, F_READONLY | F_NOMULTI, cmd_watch, 1, -1, 1)
defcmd(b"unwatch", 1, F_READONLY, cmd_unwatch)
defcmd(b"debug", -2, F_READONLY, h_debug)
defcmd(b"move", 3, F_WRITE, cmd_move, 1, 1, 1)
defcmd(b"getbit", 3, F_READONLY, cmd_getbit, 1, 1, 1)
defcmd(b"setbit", 4, F_WRITE, cmd_setbit, 1, 1, 1)
defcmd(b"bitcount", -2, F_READONLY, cmd_bitcount, 1, 1, 1)
defcmd(b"swapdb", 3, F_WRITE, cmd_swapdb)
