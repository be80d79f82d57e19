# expire_cmds.pxi -- the expiry commands (included by commands.pxi, before
# the table): SET's expiry options, SETEX/PSETEX, GETEX, EXPIRE and friends,
# TTL and friends, PERSIST, DEBUG SET-ACTIVE-EXPIRE.  An expiry is an
# absolute time in ms since the Unix epoch on the engine's clock; setting
# one stages a record over the key's current bytes (no value copy); a time
# already past deletes the key, as Redis does.

cdef enum:
    UNIT_S = 0
    UNIT_MS = 1
    # SET / GETEX option bits
    SO_NX = 1
    SO_XX = 2
    SO_GET = 4
    SO_KEEPTTL = 8
    SO_PERSIST = 16
    SO_EX = 32
    SO_PX = 64
    SO_EXAT = 128
    SO_PXAT = 256
    SO_TIMES = 32 | 64 | 128 | 256
    # EXPIRE conditions
    EC_NX = 1
    EC_XX = 2
    EC_GT = 4
    EC_LT = 8


cdef void expire_time_error(Conn *c, const char *cmd) noexcept nogil:
    cdef char msg[96]
    cdef const char *pre = b"ERR invalid expire time in '"
    cdef size_t k = strlen(pre), n = strlen(cmd)
    memcpy(msg, pre, k)
    memcpy(msg + k, cmd, n)
    memcpy(msg + k + n, b"' command\0", 10)
    out_error(&c.out, msg)


cdef int parse_string_opts(Server srv, Conn *c, int start, int is_get, int *flags,
                           int *time_arg) noexcept nogil:
    """SET's (is_get 0, from argument 3) or GETEX's (from argument 2) options,
    by Redis's rules (a time option needs its argument; the exclusive ones
    exclude each other).  1 ok, 0 after replying ERR syntax error."""
    cdef Args *a = &srv.args
    cdef int j = start, f = 0, has_next
    time_arg[0] = -1
    while j < a.argc:
        has_next = j + 1 < a.argc
        if not is_get and ieq(a.ptr[j], a.len[j], b"nx") and not (f & SO_XX):
            f |= SO_NX
        elif not is_get and ieq(a.ptr[j], a.len[j], b"xx") and not (f & SO_NX):
            f |= SO_XX
        elif not is_get and ieq(a.ptr[j], a.len[j], b"get"):
            f |= SO_GET
        elif not is_get and ieq(a.ptr[j], a.len[j], b"keepttl") and not (f & (SO_PERSIST | SO_TIMES)):
            f |= SO_KEEPTTL
        elif is_get and ieq(a.ptr[j], a.len[j], b"persist") and not (f & (SO_KEEPTTL | SO_TIMES)):
            f |= SO_PERSIST
        elif ieq(a.ptr[j], a.len[j], b"ex") and has_next and \
                not (f & (SO_KEEPTTL | SO_PERSIST | SO_PX | SO_EXAT | SO_PXAT)):
            f |= SO_EX
            j += 1
            time_arg[0] = j
        elif ieq(a.ptr[j], a.len[j], b"px") and has_next and \
                not (f & (SO_KEEPTTL | SO_PERSIST | SO_EX | SO_EXAT | SO_PXAT)):
            f |= SO_PX
            j += 1
            time_arg[0] = j
        elif ieq(a.ptr[j], a.len[j], b"exat") and has_next and \
                not (f & (SO_KEEPTTL | SO_PERSIST | SO_EX | SO_PX | SO_PXAT)):
            f |= SO_EXAT
            j += 1
            time_arg[0] = j
        elif ieq(a.ptr[j], a.len[j], b"pxat") and has_next and \
                not (f & (SO_KEEPTTL | SO_PERSIST | SO_EX | SO_PX | SO_EXAT)):
            f |= SO_PXAT
            j += 1
            time_arg[0] = j
        else:
            out_error(&c.out, b"ERR syntax error")
            return 0
        j += 1
    flags[0] = f
    return 1


cdef int expire_ms_of(Server srv, Conn *c, int arg, int flags, const char *cmd,
                      uint64_t *out) noexcept nogil:
    """The absolute expire_ms a SET/GETEX/SETEX time argument names (Redis's
    getExpireMillisecondsOrReply): 1, or 0 after replying the error."""
    cdef Args *a = &srv.args
    cdef int64_t v, now
    if not parse_i64(a.ptr[arg], a.len[arg], &v):
        out_error(&c.out, b"ERR value is not an integer or out of range")
        return 0
    if v <= 0 or ((flags & (SO_EX | SO_EXAT)) and v > INT64_MAX // 1000):
        expire_time_error(c, cmd)
        return 0
    if flags & (SO_EX | SO_EXAT):
        v *= 1000
    if flags & (SO_EX | SO_PX):
        now = <int64_t>srv.now_ms()
        if v > INT64_MAX - now:
            expire_time_error(c, cmd)
            return 0
        v += now
    out[0] = <uint64_t>v
    return 1


cdef int stage_value(Server srv, Conn *c, int key_arg, int val_arg, uint64_t expire_ms,
                     int found) noexcept nogil:
    """Stage SET's write: a PUT with expire_ms (0 none), or, when the time is
    already past, a DEL of the key if it exists (found).  1, or 0 after
    replying the error."""
    cdef Args *a = &srv.args
    cdef int rc = 0
    if expire_ms != 0 and expire_ms <= srv.now_ms():
        if found:
            rc = srv.stage_record(REC_DEL, a.ptr[key_arg], a.len[key_arg], NULL, 0, 0)
    else:
        rc = srv.stage_record(REC_PUT, a.ptr[key_arg], a.len[key_arg], a.ptr[val_arg],
                              a.len[val_arg], a.in_pool)
        if rc == 0:
            srv.recs[srv.nrecs - 1].expire_ms = expire_ms
            if a.in_pool:
                srv.keep_window(c, a.ptr[val_arg] + a.len[val_arg])
    if rc != 0:
        srv.drop_cmd_recs()
        srv.space_error(c)
        return 0
    return 1


cdef void cmd_set(Server srv, Conn *c, int setnx) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int flags = 0, targ = -1, found
    cdef const char *old = NULL
    cdef size_t oldlen = 0
    cdef uint64_t at = 0, old_exp = 0
    if setnx:
        flags = SO_NX
    elif not parse_string_opts(srv, c, 3, 0, &flags, &targ):
        return
    if targ >= 0 and not expire_ms_of(srv, c, targ, flags, b"set", &at):
        return
    if not srv.key_ok(c, a.len[1]):
        return
    found = srv.find_exp(a.ptr[1], a.len[1], &old, &oldlen, &old_exp)
    if flags & SO_GET:
        if found:
            out_bulk(&c.out, old, oldlen)
        else:
            out_null(&c.out, c.resp3)
    if ((flags & SO_NX) and found) or ((flags & SO_XX) and not found):
        if setnx:
            out_int(&c.out, 0)
        elif not (flags & SO_GET):
            out_null(&c.out, c.resp3)
        return
    if (flags & SO_KEEPTTL) and found:
        at = old_exp
    if not stage_value(srv, c, 1, 2, at, found):
        return
    if setnx:
        out_int(&c.out, 1)
    elif not (flags & SO_GET):
        out_simple(&c.out, b"OK")


cdef void cmd_setex(Server srv, Conn *c, int unit) noexcept nogil:
    cdef Args *a = &srv.args
    cdef uint64_t at
    if not expire_ms_of(srv, c, 2, SO_EX if unit == UNIT_S else SO_PX,
                        b"setex" if unit == UNIT_S else b"psetex", &at):
        return
    if not srv.key_ok(c, a.len[1]):
        return
    if stage_value(srv, c, 1, 3, at, 1):
        out_simple(&c.out, b"OK")


cdef void h_setex(Server srv, Conn *c) noexcept nogil:
    cmd_setex(srv, c, UNIT_S)


cdef void h_psetex(Server srv, Conn *c) noexcept nogil:
    cmd_setex(srv, c, UNIT_MS)


cdef void cmd_getex(Server srv, Conn *c) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int flags = 0, targ = -1, rc = 0
    cdef const char *v
    cdef size_t vlen
    cdef uint64_t at = 0, old_exp = 0
    if not parse_string_opts(srv, c, 2, 1, &flags, &targ):
        return
    if not srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &old_exp):
        out_null(&c.out, c.resp3)
        return
    if targ >= 0 and not expire_ms_of(srv, c, targ, flags, b"getex", &at):
        return
    # The reply first: a delete below stages a DEL, the value stays where it is
    # until the batch is appended (and staged bytes are held until then).
    out_bulk(&c.out, v, vlen)
    if targ >= 0 and at <= srv.now_ms():
        rc = srv.stage_record(REC_DEL, a.ptr[1], a.len[1], NULL, 0, 0)
    elif targ >= 0:
        rc = srv.stage_expiry(a.ptr[1], a.len[1], at)
    elif (flags & SO_PERSIST) and old_exp != 0:
        rc = srv.stage_expiry(a.ptr[1], a.len[1], 0)
    if rc < 0:
        srv.find_err = rc


cdef int parse_expire_cond(Server srv, Conn *c, int *cond) noexcept nogil:
    cdef Args *a = &srv.args
    cdef int j, f = 0
    cdef char msg[96]
    cdef size_t n
    for j in range(3, a.argc):
        if ieq(a.ptr[j], a.len[j], b"nx"):
            f |= EC_NX
        elif ieq(a.ptr[j], a.len[j], b"xx"):
            f |= EC_XX
        elif ieq(a.ptr[j], a.len[j], b"gt"):
            f |= EC_GT
        elif ieq(a.ptr[j], a.len[j], b"lt"):
            f |= EC_LT
        else:
            n = a.len[j] if a.len[j] < 60 else 60
            memcpy(msg, b"ERR Unsupported option ", 23)
            memcpy(msg + 23, a.ptr[j], n)
            msg[23 + n] = 0
            out_error(&c.out, msg)
            return 0
    if (f & EC_NX) and (f & (EC_XX | EC_GT | EC_LT)):
        out_error(&c.out, b"ERR NX and XX, GT or LT options at the same time are not compatible")
        return 0
    if (f & EC_GT) and (f & EC_LT):
        out_error(&c.out, b"ERR GT and LT options at the same time are not compatible")
        return 0
    cond[0] = f
    return 1


cdef void cmd_expire(Server srv, Conn *c, int unit, int absolute, const char *name) noexcept nogil:
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis's expireGenericCommand)."""
    cdef Args *a = &srv.args
    cdef int cond = 0, rc
    cdef int64_t when, base = 0
    cdef const char *v
    cdef size_t vlen
    cdef uint64_t cur = 0
    if not parse_expire_cond(srv, c, &cond):
        return
    if not parse_i64(a.ptr[2], a.len[2], &when):
        out_error(&c.out, b"ERR value is not an integer or out of range")
        return
    if not absolute:
        base = <int64_t>srv.now_ms()
    if unit == UNIT_S:
        if when > INT64_MAX // 1000 or when < INT64_MIN // 1000:
            expire_time_error(c, name)
            return
        when *= 1000
    if when > INT64_MAX - base:
        expire_time_error(c, name)
        return
    when += base
    if not srv.find_exp(a.ptr[1], a.len[1], &v, &vlen, &cur):
        out_int(&c.out, 0)
        return
    if ((cond & EC_NX) and cur != 0) or ((cond & EC_XX) and cur == 0) or \
            ((cond & EC_GT) and (cur == 0 or when <= <int64_t>cur)) or \
            ((cond & EC_LT) and cur != 0 and when >= <int64_t>cur):
        out_int(&c.out, 0)
        return
    if when <= <int64_t>srv.now_ms():
        rc = srv.stage_record(REC_DEL, a.ptr[1], a.len[1], NULL, 0, 0)
    else:
        rc = srv.stage_expiry(a.ptr[1], a.len[1], <uint64_t>when)
    if rc < 0:
        srv.drop_cmd_recs()
        srv.space_error(c)
        return
    out_int(&c.out, 1)


cdef void h_expire(Server srv, Conn *c) noexcept nogil:
    cmd_expire(srv, c, UNIT_S, 0, b"expire")


cdef void h_pexpire(Server srv, Conn *c) noexcept nogil:
    cmd_expire(srv, c, UNIT_MS, 0, b"pexpire")


cdef void h_expireat(Server srv, Conn *c) noexcept nogil:
    cmd_expire(srv, c, UNIT_S, 1, b"expireat")


cdef void h_pexpireat(Server srv, Conn *c) noexcept nogil:
    cmd_expire(srv, c, UNIT_MS, 1, b"pexpireat")


cdef void cmd_ttl(Server srv, Conn *c, int unit, int absolute) noexcept nogil:
    """TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 no key, -1 no expiry."""
    cdef const char *v
    cdef size_t vlen
    cdef uint64_t at = 0, now
    cdef int64_t t
    if not srv.find_exp(srv.args.ptr[1], srv.args.len[1], &v, &vlen, &at):
        out_int(&c.out, -2)
        return
    if at == 0:
        out_int(&c.out, -1)
        return
    if absolute:
        t = <int64_t>at
    else:
        now = srv.now_ms()
        t = <int64_t>(at - now) if at > now else 0
    out_int(&c.out, t if unit == UNIT_MS else (t + 500) // 1000)


cdef void h_ttl(Server srv, Conn *c) noexcept nogil:
    cmd_ttl(srv, c, UNIT_S, 0)


cdef void h_pttl(Server srv, Conn *c) noexcept nogil:
    cmd_ttl(srv, c, UNIT_MS, 0)


cdef void h_expiretime(Server srv, Conn *c) noexcept nogil:
    cmd_ttl(srv, c, UNIT_S, 1)


cdef void h_pexpiretime(Server srv, Conn *c) noexcept nogil:
    cmd_ttl(srv, c, UNIT_MS, 1)


cdef void h_persist(Server srv, Conn *c) noexcept nogil:
    cdef const char *v
    cdef size_t vlen
    cdef uint64_t at = 0
    cdef int rc
    if not srv.find_exp(srv.args.ptr[1], srv.args.len[1], &v, &vlen, &at) or at == 0:
        out_int(&c.out, 0)
        return
    rc = srv.stage_expiry(srv.args.ptr[1], srv.args.len[1], 0)
    if rc < 0:
        srv.drop_cmd_recs()
        srv.space_error(c)
        return
    out_int(&c.out, rc)
