# commands.pxi -- the server's commands: the table, dispatch and every
# command's implementation.  Included by server.pyx (one component: the
# commands reach the connection and the engine glue through Server's cdef
# methods; networking -- the loop, connections, buffers -- stays there).
#
# The command table is data: name, arity (negative: at least -arity),
# flags, the handler, and where the keys are (for COMMAND INFO).  execute()
# looks the name up, checks arity, AUTH and MULTI from the flags, and calls
# the handler; COMMAND reports the same table.

cdef enum CmdFlag:
    F_WRITE = 1
    F_READONLY = 2
    F_NOAUTH = 4            # allowed before AUTH
    F_NOMULTI = 8           # executed at once even inside MULTI
    F_DENYMULTI = 16        # refused inside MULTI, and the EXEC aborts: Redis 7.0's no-multi
                            # commands (SHUTDOWN, SAVE; SYNC/PSYNC are not served), and BGSAVE
                            # (it would commit part of the transaction)

cdef enum:
    MAX_COMMANDS = 64

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
        if c.in_multi:
            c.multi_error = 1
        srv.reply_done(c)
        return
    if not c.authed and not (spec.flags & F_NOAUTH):
        out_error(&c.out, b"NOAUTH Authentication required.")
        srv.reply_done(c)
        return
    if c.in_multi and (spec.flags & F_DENYMULTI):
        out_error(&c.out, b"ERR Command not allowed inside a transaction")
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


cdef void unknown_command(Server srv, Conn *c) noexcept nogil:
    cdef char msg[256]
    cdef size_t n = srv.args.len[0]
    cdef size_t k = 0, i
    cdef const char *pre = b"ERR unknown command '"
    cdef const char *post = b"', with args beginning with: "
    memcpy(msg, pre, strlen(pre))
    k = strlen(pre)
    if n > 64:
        n = 64
    for i in range(n):
        msg[k] = srv.args.ptr[0][i] if 32 <= srv.args.ptr[0][i] < 127 else 63
        k += 1
    memcpy(msg + k, post, strlen(post))
    k += strlen(post)
    msg[k] = 0
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
    out_int(&c.out, srv.staged_dbsize())


cdef void h_select(Server srv, Conn *c) noexcept nogil:
    if srv.args.len[1] == 1 and srv.args.ptr[1][0] == 48:
        out_simple(&c.out, b"OK")
    else:
        out_error(&c.out, b"ERR DB index is out of range (pastedb has database 0 only)")


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
    c.resp3 = 0
    c.authed = not srv.has_password
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


cdef void h_scan(Server srv, Conn *c) noexcept nogil:
    with gil:
        run_python(srv, c, py_scan)


# ---------------------------------------------------------------- data commands
cdef void cmd_set(Server srv, Conn *c, int setnx) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int nx = setnx, xx = 0, get = 0, i, found
    cdef const char *old = NULL
    cdef size_t oldlen = 0
    cdef char msg[160]
    cdef size_t n
    for i in range(3, a.argc):
        if ieq(a.ptr[i], a.len[i], b"nx"):
            nx = 1
        elif ieq(a.ptr[i], a.len[i], b"xx"):
            xx = 1
        elif ieq(a.ptr[i], a.len[i], b"get"):
            get = 1
        else:
            n = a.len[i] if a.len[i] < 40 else 40
            memcpy(msg, b"ERR SET option '", 16)
            memcpy(msg + 16, a.ptr[i], n)
            memcpy(msg + 16 + n, b"' is not supported by pastedb (no expiry; NX, XX and GET are)\0", 63)
            out_error(&c.out, msg)
            return
    if nx and xx:
        out_error(&c.out, b"ERR syntax error")
        return
    if not srv.key_ok(c, a.len[1]):
        return
    found = srv.find(a.ptr[1], a.len[1], &old, &oldlen)
    if get:
        if found:
            out_bulk(&c.out, old, oldlen)
        else:
            out_null(&c.out, c.resp3)
    if (nx and found) or (xx and not found):
        if setnx:
            out_int(&c.out, 0)
        elif not get:
            out_null(&c.out, c.resp3)
        return
    if srv.stage_record(REC_PUT, a.ptr[1], a.len[1], a.ptr[2], a.len[2], a.in_pool) != 0:
        srv.drop_cmd_recs()
        srv.space_error(c)
        return
    if a.in_pool:
        srv.keep_window(c, a.ptr[2] + a.len[2])
    if setnx:
        out_int(&c.out, 1)
    elif not get:
        out_simple(&c.out, b"OK")


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
    if srv.find(a.ptr[1], a.len[1], &v, &vlen):
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
        out_error(&c.out, b"EXECABORT Transaction discarded because of previous errors.")
        return
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
        if j.every or glob_match(j.pat, j.plen, j.base + r.koff, r.klen, 0):
            out_bulk(&j.found, j.base + r.koff, r.klen)
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
                           <KeySink>keys_sink, j)
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
    cdef char *base = srv.base
    cdef int rc = 0, i, n
    cdef OutBuf keys
    cdef size_t at = 0
    cdef uint32_t klen
    if out_init(&keys, 65536) != 0:
        out_error(&c.out, b"ERR out of memory")
        return
    # The walk copies the keys out (tree keys live in a cursor's buffer);
    # stage_record then copies each into the pool for its DEL record.
    rc = srv.db.walk_keys(srv.scan_it, NULL, 0, 0, -1, <KeySink>collect_key, &keys)
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
        if rc == 0 and srv.recs[i].type == REC_PUT:
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
    memcpy(j.last, k, klen)
    j.lastlen = klen
    j.started = 1
    if not (j.every or glob_match(j.pat, j.plen, k, klen, 0)):
        return 0
    for i in range(j.nrecs - 1, -1, -1):
        r = &j.recs[i]
        if r.klen == klen and memcmp(j.base + r.koff, k, klen) == 0:
            if r.type == REC_DEL:
                return 0
            break
    if out_bulk(&j.found, k, klen) != 0:
        return -ENOMEM
    j.n += 1
    return 0


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
    if sub == b"resetstat":
        return ROK
    return RError(f"ERR CONFIG {sub.decode('latin-1').upper()} is not supported by pastedb "
                  f"(CONFIG GET is)")


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


cdef object py_scan(Server srv, Conn *c, list args):
    # The cursor is the key to resume after, hex-encoded into an integer
    # string would overflow 64 bits; instead cursor N names an entry of a
    # small table of resume keys.  A stale cursor restarts from the top,
    # which SCAN's guarantees allow (it may return duplicates).
    try:
        cursor = int(args[1])
    except ValueError:
        return RError("ERR invalid cursor")
    count = SCAN_DEFAULT_COUNT
    pattern = None
    i = 2
    while i < len(args):
        opt = args[i].lower()
        if opt == b"count" and i + 1 < len(args):
            try:
                count = int(args[i + 1])
            except ValueError:
                return RError("ERR value is not an integer or out of range")
            if count < 1:
                return RError("ERR syntax error")
            count = min(count, SCAN_MAX_COUNT)    # one call stays a bounded slice
            i += 2
        elif opt == b"match" and i + 1 < len(args):
            pattern = args[i + 1] if args[i + 1] != b"*" else None   # every key
            i += 2
        elif opt == b"type" and i + 1 < len(args):
            if args[i + 1].lower() != b"string":
                return [b"0", []]
            i += 2
        else:
            return RError("ERR syntax error")
    table = _scan_table(srv)
    start = None
    if cursor != 0:
        start = table.get(cursor)
    keys = []
    last = None
    n = 0
    it = srv.db.keys(start=start) if start is not None else srv.db.keys()
    for k in it:
        if start is not None and k == start:
            continue
        n += 1
        last = k
        if pattern is None or glob_match(pattern, len(pattern), k, len(k), 0):
            keys.append(k)
        if n >= count:
            break
    else:
        return [b"0", keys]
    nxt = table.put(last)
    return [str(nxt).encode(), keys]


cdef object _scan_table(Server srv):
    if srv.scans is None:
        srv.scans = ScanTable()
    return srv.scans


class ScanTable:
    """Cursor ids for SCAN: a bounded map from id to the key to resume after."""

    def __init__(self, size=4096):
        self.size = size
        self.keys = {}
        self.next = 1

    def put(self, key):
        cid = self.next
        self.next += 1
        self.keys[cid] = key
        if len(self.keys) > self.size:
            self.keys.pop(next(iter(self.keys)))
        return cid

    def get(self, cid):
        return self.keys.get(cid)


class RError(str):
    """An error reply."""


class RStatus(str):
    """A simple-string reply."""


ROK = RStatus("OK")


cdef int encode_reply(OutBuf *o, object r, int resp3) except -1:
    cdef bytes b
    if r is None:
        out_null(o, resp3)
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
defcmd(b"scan", -2, F_READONLY, h_scan)
defcmd(b"type", 2, F_READONLY, cmd_type, 1, 1, 1)
defcmd(b"multi", 1, F_READONLY | F_NOMULTI, h_multi)
defcmd(b"exec", 1, F_NOMULTI, cmd_exec)
defcmd(b"discard", 1, F_READONLY | F_NOMULTI, h_discard)
defcmd(b"save", 1, F_WRITE | F_DENYMULTI, h_save)
defcmd(b"bgsave", -1, F_WRITE | F_DENYMULTI, h_bgsave)
defcmd(b"shutdown", -1, F_DENYMULTI, h_shutdown)
defcmd(b"time", 1, F_READONLY, cmd_time)
defcmd(b"reset", 1, F_NOAUTH | F_NOMULTI, h_reset)
