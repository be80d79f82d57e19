# resp.pyx -- RESP request parser (explicit resumable state machine) and reply
# encoder.  Everything below the "Python test shim" line is nogil C over the
# caller's buffer; the shim at the end exists for the tests and tools only.
#
# Behaviour follows Redis's networking.c (processInlineBuffer,
# processMultibulkBuffer, sdssplitargs), with these deliberate differences:
#   * the result never depends on how the bytes were split across reads: a
#     line is "too big" when its length (bytes before the terminator) exceeds
#     max_inline, whether or not the terminator has arrived yet;
#   * the byte after '\r' in a length line must be '\n', and a bulk payload
#     must be followed by "\r\n" (Redis skips those two bytes unchecked);
#   * a bulk header is checked for '$' as soon as its first byte arrives
#     (Redis first waits for the '\r' of that line);
#   * an inline line may hold at most max_args arguments.

from libc.limits cimport INT_MAX
from libc.math cimport isinf, isnan
from libc.stdint cimport INT64_MAX, SIZE_MAX, int64_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc, realloc, strtod
from libc.string cimport memchr, memcpy, memset, strlen


cdef enum:
    _PARSE_CONTINUE = 2      # private: state advanced, keep looping
    ARGS_INITIAL = 8         # first capacity of the argument arrays
    ARGS_KEEP = 1024         # rebase shrinks arrays grown beyond this back to ARGS_INITIAL
    INT64_DIGITS = 19        # decimal digits of INT64_MAX


cdef const char *ERR_MBULK_LEN = b"ERR Protocol error: invalid multibulk length"
cdef const char *ERR_BULK_LEN = b"ERR Protocol error: invalid bulk length"
cdef const char *ERR_MBULK_BIG = b"ERR Protocol error: too big mbulk count string"
cdef const char *ERR_BULK_BIG = b"ERR Protocol error: too big bulk count string"
cdef const char *ERR_INLINE_BIG = b"ERR Protocol error: too big inline request"
cdef const char *ERR_QUOTES = b"ERR Protocol error: unbalanced quotes in request"
cdef const char *ERR_CRLF = b"ERR Protocol error: expected '\\r\\n' after bulk data"
cdef const char *ERR_INLINE_ARGS = b"ERR Protocol error: too many arguments in inline request"
cdef const char *ERR_END = b"ERR internal error: parse end before parse position"
cdef const char *ERR_OOM = b"ERR out of memory while parsing the request"


# ---------------------------------------------------------------- parser

cdef int parser_init(RespParser *p, uint64_t max_bulk_len, int64_t max_args,
                     size_t max_inline) noexcept nogil:
    memset(p, 0, sizeof(RespParser))
    p.max_bulk_len = max_bulk_len
    # argc is an int: no command can have more arguments than that.
    p.max_args = INT_MAX if max_args > INT_MAX else (0 if max_args < 0 else max_args)
    p.max_inline = max_inline
    p.bulk_len = -1
    p.arg_off = <uint64_t *>malloc(ARGS_INITIAL * sizeof(uint64_t))
    p.arg_len = <uint64_t *>malloc(ARGS_INITIAL * sizeof(uint64_t))
    if p.arg_off == NULL or p.arg_len == NULL:
        parser_free(p)
        return -1
    p.arg_cap = ARGS_INITIAL
    return 0


cdef void parser_free(RespParser *p) noexcept nogil:
    free(p.arg_off)
    free(p.arg_len)
    p.arg_off = NULL
    p.arg_len = NULL
    p.arg_cap = 0
    p.argc = 0


cdef void parser_rebase(RespParser *p, size_t at) noexcept nogil:
    cdef uint64_t *off
    cdef uint64_t *ln
    p.state = PS_START
    p.cmd_start = at
    p.pos = at
    p.line_scanned = 0
    p.multibulk_left = 0
    p.bulk_len = -1
    p.argc = 0
    p.need_total = 0
    p.error = NULL
    # One huge command must not pin its argument arrays for the life of the
    # connection.  A failed shrink just keeps the bigger arrays.
    if p.arg_cap > ARGS_KEEP:
        off = <uint64_t *>realloc(p.arg_off, ARGS_INITIAL * sizeof(uint64_t))
        if off != NULL:
            p.arg_off = off
            ln = <uint64_t *>realloc(p.arg_len, ARGS_INITIAL * sizeof(uint64_t))
            if ln != NULL:
                p.arg_len = ln
                p.arg_cap = ARGS_INITIAL


cdef void parser_moved(RespParser *p, size_t new_cmd_start) noexcept nogil:
    # Everything else is relative to cmd_start (arg_off) or to pos
    # (line_scanned), so only these two absolute offsets change.
    p.pos = new_cmd_start + (p.pos - p.cmd_start)
    p.cmd_start = new_cmd_start


cdef inline int _fail(RespParser *p, const char *msg) noexcept nogil:
    p.error = msg
    return PARSE_ERROR


cdef int _fail_expected_dollar(RespParser *p, unsigned char got) noexcept nogil:
    # Redis quotes the byte raw; a control byte or CR/LF would corrupt the
    # error line, so those are shown as \xNN.
    if 0x20 <= got < 0x7f:
        snprintf(p.errbuf, sizeof(p.errbuf), "ERR Protocol error: expected '$', got '%c'",
                 <int>got)
    else:
        snprintf(p.errbuf, sizeof(p.errbuf),
                 "ERR Protocol error: expected '$', got '\\x%02x'", <unsigned int>got)
    p.error = p.errbuf
    return PARSE_ERROR


cdef int _push_arg(RespParser *p, uint64_t off, uint64_t n) noexcept nogil:
    """Append one argument, growing the arrays by doubling as arguments arrive
    (never to a count the client merely declared).  0, -1 out of memory,
    -2 more than max_args."""
    cdef int64_t new_cap
    cdef uint64_t *a
    if p.argc >= p.max_args:
        return -2
    if p.argc == p.arg_cap:
        new_cap = <int64_t>p.arg_cap * 2 if p.arg_cap > 0 else ARGS_INITIAL
        if new_cap > p.max_args:
            new_cap = p.max_args
        a = <uint64_t *>realloc(p.arg_off, <size_t>new_cap * sizeof(uint64_t))
        if a == NULL:
            return -1
        p.arg_off = a
        a = <uint64_t *>realloc(p.arg_len, <size_t>new_cap * sizeof(uint64_t))
        if a == NULL:
            return -1           # arg_off is bigger than arg_cap says: harmless
        p.arg_len = a
        p.arg_cap = <int>new_cap
    p.arg_off[p.argc] = off
    p.arg_len[p.argc] = n
    p.argc += 1
    return 0


cdef int _string2ll(const char *s, size_t n, int64_t *out) noexcept nogil:
    """Redis's string2ll: optional '-', then decimal digits without leading
    zeros ("0" alone is fine, "-0" is not), no overflow.  1 ok, 0 invalid."""
    cdef size_t i = 0
    cdef bint neg = False
    cdef uint64_t v = 0
    cdef uint64_t limit
    cdef unsigned int d
    if n == 0 or n > INT64_DIGITS + 1:
        return 0
    if n == 1 and s[0] == c'0':
        out[0] = 0
        return 1
    if s[0] == c'-':
        neg = True
        i = 1
        if n == 1:
            return 0
    if not (c'1' <= s[i] <= c'9'):
        return 0
    limit = <uint64_t>INT64_MAX + 1 if neg else <uint64_t>INT64_MAX
    while i < n:
        d = <unsigned char>s[i] - <unsigned int>c'0'
        if d > 9:
            return 0
        if v > (limit - d) // 10:
            return 0
        v = v * 10 + d
        i += 1
    if neg:
        out[0] = <int64_t>(0 - v)       # two's complement; covers INT64_MIN
    else:
        out[0] = <int64_t>v
    return 1


cdef int _find_line_end(RespParser *p, const char *buf, size_t end, char term,
                        size_t *at) noexcept nogil:
    """Find `term` in the line starting at p.pos, resuming at p.line_scanned.
    1: found at *at;  0: not yet;  -1: the line is longer than max_inline
    (decided from its length alone, so independent of how reads were split)."""
    cdef size_t start = p.pos + p.line_scanned
    cdef const char *hit = NULL
    if start < end:
        hit = <const char *>memchr(buf + start, term, end - start)
    if hit == NULL:
        p.line_scanned = end - p.pos
        return -1 if p.line_scanned > p.max_inline else 0
    at[0] = <size_t>(hit - buf)
    p.line_scanned = at[0] - p.pos      # a resumed call finds it again at once
    return -1 if p.line_scanned > p.max_inline else 1


cdef inline bint _isspace(char c) noexcept nogil:
    return c == c' ' or c == c'\t' or c == c'\n' or c == c'\r' or c == c'\v' or c == c'\f'


cdef inline int _hexval(char c) noexcept nogil:
    if c'0' <= c <= c'9':
        return c - c'0'
    if c'a' <= c <= c'f':
        return c - c'a' + 10
    if c'A' <= c <= c'F':
        return c - c'A' + 10
    return -1


cdef int _split_inline(RespParser *p, char *buf, size_t r, size_t end) noexcept nogil:
    """sdssplitargs over buf[r:end], unescaping quoted tokens in place.
    Writes never overtake reads: quotes and escapes only shrink a token.  A
    byte already in its place is not rewritten, so plain tokens leave the
    buffer (possibly a mapped pool region) untouched."""
    cdef size_t w, tok
    cdef bint inq, insq, done
    cdef char c
    cdef int rc
    while True:
        while r < end and _isspace(buf[r]):
            r += 1
        if r == end:
            return PARSE_COMMAND
        tok = r
        w = r
        inq = insq = done = False
        while not done:
            if inq:
                if r == end:
                    return _fail(p, ERR_QUOTES)
                c = buf[r]
                if (c == c'\\' and r + 3 < end and buf[r + 1] == c'x'
                        and _hexval(buf[r + 2]) >= 0 and _hexval(buf[r + 3]) >= 0):
                    buf[w] = <char>(_hexval(buf[r + 2]) * 16 + _hexval(buf[r + 3]))
                    w += 1
                    r += 4
                elif c == c'\\' and r + 1 < end:
                    c = buf[r + 1]
                    if c == c'n':
                        c = c'\n'
                    elif c == c'r':
                        c = c'\r'
                    elif c == c't':
                        c = c'\t'
                    elif c == c'b':
                        c = c'\b'
                    elif c == c'a':
                        c = c'\a'
                    buf[w] = c
                    w += 1
                    r += 2
                elif c == c'"':
                    # the closing quote must end the token
                    if r + 1 < end and not _isspace(buf[r + 1]):
                        return _fail(p, ERR_QUOTES)
                    r += 1
                    done = True
                else:
                    if w != r:
                        buf[w] = c
                    w += 1
                    r += 1
            elif insq:
                if r == end:
                    return _fail(p, ERR_QUOTES)
                c = buf[r]
                if c == c'\\' and r + 1 < end and buf[r + 1] == c"'":
                    buf[w] = c"'"
                    w += 1
                    r += 2
                elif c == c"'":
                    if r + 1 < end and not _isspace(buf[r + 1]):
                        return _fail(p, ERR_QUOTES)
                    r += 1
                    done = True
                else:
                    if w != r:
                        buf[w] = c
                    w += 1
                    r += 1
            else:
                if r == end:
                    done = True
                else:
                    c = buf[r]
                    r += 1
                    if c == c' ' or c == c'\n' or c == c'\r' or c == c'\t':
                        done = True
                    elif c == c'"':
                        inq = True
                    elif c == c"'":
                        insq = True
                    else:
                        if w != r - 1:
                            buf[w] = c
                        w += 1
        rc = _push_arg(p, tok - p.cmd_start, w - tok)
        if rc == -1:
            return _fail(p, ERR_OOM)
        if rc == -2:
            return _fail(p, ERR_INLINE_ARGS)


cdef int _parse_inline(RespParser *p, char *buf, size_t end) noexcept nogil:
    cdef size_t nl = 0
    cdef size_t line_end
    cdef const char *nul
    cdef int rc = _find_line_end(p, buf, end, c'\n', &nl)
    if rc == 0:
        return PARSE_NEED_MORE
    if rc < 0:
        return _fail(p, ERR_INLINE_BIG)
    line_end = nl
    if line_end > p.pos and buf[line_end - 1] == c'\r':
        line_end -= 1
    # Redis splits the line as a C string: a NUL byte ends it.
    nul = <const char *>memchr(buf + p.pos, 0, line_end - p.pos)
    if nul != NULL:
        line_end = <size_t>(nul - buf)
    rc = _split_inline(p, buf, p.pos, line_end)
    if rc != PARSE_COMMAND:
        return rc
    p.pos = nl + 1
    p.state = PS_START
    if p.argc == 0:
        return _PARSE_CONTINUE          # empty line: skip it
    return PARSE_COMMAND


cdef int _parse_multibulk_len(RespParser *p, const char *buf, size_t end) noexcept nogil:
    cdef size_t cr = 0
    cdef int64_t n = 0
    cdef int rc = _find_line_end(p, buf, end, c'\r', &cr)
    if rc == 0:
        return PARSE_NEED_MORE
    if rc < 0:
        return _fail(p, ERR_MBULK_BIG)
    if cr + 1 >= end:
        return PARSE_NEED_MORE
    if (buf[cr + 1] != c'\n' or not _string2ll(buf + p.pos + 1, cr - p.pos - 1, &n)
            or n > p.max_args):
        return _fail(p, ERR_MBULK_LEN)
    p.pos = cr + 2
    if n <= 0:
        # "*0" and any negative count (Redis's own test sends "*-10") are an
        # empty command: skip it.
        p.state = PS_START
        return _PARSE_CONTINUE
    p.multibulk_left = n
    p.state = PS_BULK_LEN
    p.line_scanned = 1
    return _PARSE_CONTINUE


cdef int _parse_bulk_len(RespParser *p, const char *buf, size_t end) noexcept nogil:
    cdef size_t cr = 0
    cdef int64_t n = 0
    cdef int rc
    if p.pos >= end:
        return PARSE_NEED_MORE
    if buf[p.pos] != c'$':
        return _fail_expected_dollar(p, <unsigned char>buf[p.pos])
    rc = _find_line_end(p, buf, end, c'\r', &cr)
    if rc == 0:
        return PARSE_NEED_MORE
    if rc < 0:
        return _fail(p, ERR_BULK_BIG)
    if cr + 1 >= end:
        return PARSE_NEED_MORE
    if (buf[cr + 1] != c'\n' or not _string2ll(buf + p.pos + 1, cr - p.pos - 1, &n)
            or n < 0 or <uint64_t>n > p.max_bulk_len):
        return _fail(p, ERR_BULK_LEN)
    p.pos = cr + 2
    p.bulk_len = n
    p.state = PS_BULK_DATA
    return _PARSE_CONTINUE


cdef int _parse_bulk_data(RespParser *p, const char *buf, size_t end) noexcept nogil:
    # bulk_len <= max_bulk_len <= INT64_MAX, so this cannot wrap on 64-bit.
    cdef uint64_t need = <uint64_t>p.bulk_len + 2
    cdef int rc
    if <uint64_t>(end - p.pos) < need:
        # Tell the caller the exact size of the command so far + this bulk:
        # a big value can then be received in place into a buffer of that size.
        p.need_total = <size_t>((p.pos - p.cmd_start) + need)
        return PARSE_NEED_MORE
    if buf[p.pos + need - 2] != c'\r' or buf[p.pos + need - 1] != c'\n':
        return _fail(p, ERR_CRLF)
    rc = _push_arg(p, p.pos - p.cmd_start, <uint64_t>p.bulk_len)
    if rc != 0:
        return _fail(p, ERR_OOM)
    p.pos += <size_t>need
    p.bulk_len = -1
    p.multibulk_left -= 1
    if p.multibulk_left == 0:
        p.state = PS_START
        return PARSE_COMMAND
    p.state = PS_BULK_LEN
    p.line_scanned = 1
    return _PARSE_CONTINUE


cdef int parse_command(RespParser *p, char *buf, size_t end) noexcept nogil:
    cdef int rc
    p.need_total = 0
    if end < p.pos:
        return _fail(p, ERR_END)         # caller bug: never read behind `end`
    while True:
        if p.state == PS_START:
            # A new command begins here (parse_command also works without a
            # parser_rebase after PARSE_COMMAND; the rebase just says so).
            p.cmd_start = p.pos
            p.argc = 0
            p.line_scanned = 0
            p.multibulk_left = 0
            p.bulk_len = -1
            if p.pos >= end:
                return PARSE_NEED_MORE
            if buf[p.pos] == c'*':
                p.state = PS_MULTIBULK_LEN
                p.line_scanned = 1
            else:
                p.state = PS_INLINE
        if p.state == PS_INLINE:
            rc = _parse_inline(p, buf, end)
        elif p.state == PS_MULTIBULK_LEN:
            rc = _parse_multibulk_len(p, buf, end)
        elif p.state == PS_BULK_LEN:
            rc = _parse_bulk_len(p, buf, end)
        else:
            rc = _parse_bulk_data(p, buf, end)
        if rc != _PARSE_CONTINUE:
            return rc


# ---------------------------------------------------------------- replies

cdef int out_init(OutBuf *o, size_t cap) noexcept nogil:
    o.len = 0
    o.sent = 0
    if cap < 64:
        cap = 64
    o.data = <char *>malloc(cap)
    o.cap = cap if o.data != NULL else 0
    return 0 if o.data != NULL else -1


cdef void out_free(OutBuf *o) noexcept nogil:
    free(o.data)
    o.data = NULL
    o.len = o.cap = o.sent = 0


cdef int out_reserve(OutBuf *o, size_t n) noexcept nogil:
    cdef size_t need, new_cap
    cdef char *d
    if o.cap - o.len >= n:
        return 0
    if n > SIZE_MAX - o.len:
        return -1
    need = o.len + n
    new_cap = o.cap if o.cap > 0 else 64
    while new_cap < need:
        if new_cap > SIZE_MAX // 2:
            new_cap = need
            break
        new_cap *= 2
    d = <char *>realloc(o.data, new_cap)
    if d == NULL:
        return -1
    o.data = d
    o.cap = new_cap
    return 0


cdef int out_raw(OutBuf *o, const char *s, size_t n) noexcept nogil:
    if out_reserve(o, n) != 0:
        return -1
    if n:
        memcpy(o.data + o.len, s, n)
    o.len += n
    return 0


cdef int _out_line(OutBuf *o, char prefix, const char *s) noexcept nogil:
    # A CR or LF inside a simple string or error would end the line early and
    # let the rest be read as another reply: replace them, as Redis does.
    cdef size_t n = strlen(s)
    cdef size_t i
    cdef char c
    cdef char *d
    if out_reserve(o, n + 3) != 0:
        return -1
    d = o.data + o.len
    d[0] = prefix
    for i in range(n):
        c = s[i]
        d[i + 1] = c' ' if c == c'\r' or c == c'\n' else c
    d[n + 1] = c'\r'
    d[n + 2] = c'\n'
    o.len += n + 3
    return 0


cdef int out_simple(OutBuf *o, const char *s) noexcept nogil:
    return _out_line(o, c'+', s)


cdef int out_error(OutBuf *o, const char *s) noexcept nogil:
    return _out_line(o, c'-', s)


cdef size_t _fmt_i64(char *dst, int64_t v) noexcept nogil:
    """Decimal text of v into dst (>= 20 bytes); returns its length.  Negation
    is done in uint64 so INT64_MIN needs no special case."""
    cdef char tmp[20]
    cdef size_t n = 0, i = 0
    cdef uint64_t u = (0 - <uint64_t>v) if v < 0 else <uint64_t>v
    while True:
        tmp[n] = <char>(c'0' + <int>(u % 10))
        n += 1
        u //= 10
        if u == 0:
            break
    if v < 0:
        dst[0] = c'-'
        i = 1
    while n > 0:
        n -= 1
        dst[i] = tmp[n]
        i += 1
    return i


cdef int _out_header(OutBuf *o, char prefix, int64_t v) noexcept nogil:
    """prefix, decimal v, CRLF: ':' integers, '*' arrays, '%' maps, '$' bulks."""
    cdef char *d
    cdef size_t n
    if out_reserve(o, 24) != 0:
        return -1
    d = o.data + o.len
    d[0] = prefix
    n = 1 + _fmt_i64(d + 1, v)
    d[n] = c'\r'
    d[n + 1] = c'\n'
    o.len += n + 2
    return 0


cdef int out_int(OutBuf *o, int64_t v) noexcept nogil:
    return _out_header(o, c':', v)


cdef int out_bulk(OutBuf *o, const char *s, size_t n) noexcept nogil:
    if n > <uint64_t>INT64_MAX or n > SIZE_MAX - 32:
        return -1
    if out_reserve(o, n + 26) != 0:
        return -1
    _out_header(o, c'$', <int64_t>n)
    if n:
        memcpy(o.data + o.len, s, n)
    o.data[o.len + n] = c'\r'
    o.data[o.len + n + 1] = c'\n'
    o.len += n + 2
    return 0


cdef int out_bulk_header(OutBuf *o, size_t n) noexcept nogil:
    if n > <uint64_t>INT64_MAX:
        return -1
    return _out_header(o, c'$', <int64_t>n)


cdef int out_null(OutBuf *o, int resp3) noexcept nogil:
    if resp3:
        return out_raw(o, b"_\r\n", 3)
    return out_raw(o, b"$-1\r\n", 5)


cdef int out_null_array(OutBuf *o, int resp3) noexcept nogil:
    if resp3:
        return out_raw(o, b"_\r\n", 3)
    return out_raw(o, b"*-1\r\n", 5)


cdef int out_array(OutBuf *o, int64_t n) noexcept nogil:
    return _out_header(o, c'*', n)


cdef int out_map(OutBuf *o, int64_t n, int resp3) noexcept nogil:
    if resp3:
        return _out_header(o, c'%', n)
    if n > INT64_MAX // 2 or n < -(INT64_MAX // 2):
        return -1
    return _out_header(o, c'*', n * 2)


cdef size_t _fmt_double(char *dst, size_t cap, double v) noexcept nogil:
    """Shortest "%.{15,16,17}g" text that reads back as exactly v; inf, -inf
    and nan spelled as RESP3 wants them.  dst must hold >= 32 bytes."""
    cdef int prec, n = 0
    if isnan(v):
        memcpy(dst, b"nan", 3)
        return 3
    if isinf(v):
        if v > 0:
            memcpy(dst, b"inf", 3)
            return 3
        memcpy(dst, b"-inf", 4)
        return 4
    for prec in range(15, 18):
        n = snprintf(dst, cap, "%.*g", prec, v)
        if strtod(dst, NULL) == v:
            break
    return <size_t>n


cdef int out_double_or_bulk(OutBuf *o, double v, int resp3) noexcept nogil:
    cdef char text[32]
    cdef size_t n = _fmt_double(text, sizeof(text), v)
    if resp3:
        if out_reserve(o, n + 3) != 0:
            return -1
        o.data[o.len] = c','
        memcpy(o.data + o.len + 1, text, n)
        o.data[o.len + n + 1] = c'\r'
        o.data[o.len + n + 2] = c'\n'
        o.len += n + 3
        return 0
    return out_bulk(o, text, n)


cdef int out_bool(OutBuf *o, int v, int resp3) noexcept nogil:
    if resp3:
        return out_raw(o, b"#t\r\n" if v else b"#f\r\n", 4)
    return out_raw(o, b":1\r\n" if v else b":0\r\n", 4)


# ---------------------------------------------------------------- Python test shim
# Used by tests/test_resp*.py and tools/fuzz_resp.py; the server uses the C API.

cdef class Parser:
    """Feed bytes, get whole commands.  Owns a growable receive buffer and
    drives parse_command the way the server does, including the move of an
    incomplete command into a fresh buffer (``feed(..., move_tail=True)``)."""

    cdef RespParser p
    cdef char *buf
    cdef size_t len           # bytes received into buf
    cdef size_t cap           # allocated size of buf
    cdef object failed        # sticky protocol error message (str) or None

    def __cinit__(self, uint64_t max_bulk_len=512 * 1024 * 1024,
                  int64_t max_args=1024 * 1024, size_t max_inline=64 * 1024):
        self.buf = NULL
        self.len = self.cap = 0
        self.failed = None
        if parser_init(&self.p, max_bulk_len, max_args, max_inline) != 0:
            raise MemoryError()

    def __dealloc__(self):
        parser_free(&self.p)
        free(self.buf)

    cdef int _ensure(self, size_t cap) except -1:
        cdef char *b
        if cap <= self.cap:
            return 0
        b = <char *>realloc(self.buf, cap)
        if b == NULL:
            raise MemoryError()
        self.buf = b
        self.cap = cap
        return 0

    def feed(self, const unsigned char[:] data, bint move_tail=False, size_t move_to=0):
        """Append `data`, return every complete command as a list of bytes.

        Raises ValueError(message) on a protocol error (the commands completed
        before it are on the exception as ``.commands``); the error is sticky.
        With move_tail, the incomplete command left over is copied to offset
        `move_to` of a new buffer (sized need_total when that is known) and
        parser_moved() is called, as the server does with a partial command.
        """
        cdef size_t n = <size_t>data.shape[0]
        cdef size_t tail, new_cap
        cdef char *nb
        cdef char *a
        cdef int rc, i
        cdef list cmds = []
        cdef list args
        cdef bytes msg
        if self.failed is not None:
            raise ValueError(self.failed)
        if n > SIZE_MAX - self.len:
            raise MemoryError()
        if self.len + n > self.cap:
            new_cap = self.cap * 2 if self.cap else 256
            self._ensure(new_cap if new_cap >= self.len + n else self.len + n)
        if n:
            memcpy(self.buf + self.len, &data[0], n)
        self.len += n
        while True:
            with nogil:
                rc = parse_command(&self.p, self.buf, self.len)
            if rc == PARSE_COMMAND:
                args = []
                for i in range(self.p.argc):
                    a = self.buf + self.p.cmd_start + self.p.arg_off[i]
                    args.append(a[:<Py_ssize_t>self.p.arg_len[i]])
                cmds.append(args)
                parser_rebase(&self.p, self.p.pos)
            elif rc == PARSE_NEED_MORE:
                break
            else:
                msg = self.p.error
                self.failed = msg.decode("latin-1")
                err = ValueError(self.failed)
                err.commands = cmds
                raise err
        if self.p.cmd_start == self.len:
            # Everything consumed: restart at offset 0 (cmd_start already is
            # this position, so this is a pure rebase).
            parser_rebase(&self.p, 0)
            self.len = 0
        elif move_tail:
            tail = self.len - self.p.cmd_start
            new_cap = move_to + (self.p.need_total if self.p.need_total > tail else tail)
            nb = <char *>malloc(new_cap if new_cap else 1)
            if nb == NULL:
                raise MemoryError()
            # Poison the gap: an offset that is not relative to cmd_start
            # reads these bytes and the test sees garbage.
            memset(nb, 0xEE, move_to)
            memcpy(nb + move_to, self.buf + self.p.cmd_start, tail)
            free(self.buf)
            self.buf = nb
            self.cap = new_cap
            self.len = move_to + tail
            parser_moved(&self.p, move_to)
        return cmds

    @property
    def need_total(self):
        """Bytes the current command needs from cmd_start to finish the bulk
        being read (0 = unknown / not inside a bulk)."""
        return self.p.need_total

    @property
    def state(self):
        return <int>self.p.state

    @property
    def pending(self):
        """Bytes of the incomplete command held in the buffer."""
        return self.len - self.p.cmd_start

    @property
    def capacity(self):
        return self.cap

    @property
    def arg_capacity(self):
        return self.p.arg_cap


cdef inline const char *_view_ptr(const unsigned char[:] s) noexcept:
    if s.shape[0] == 0:
        return NULL
    return <const char *>&s[0]


cdef class Encoder:
    """Builds replies with the out_* functions; every method returns self."""

    cdef OutBuf o
    cdef readonly bint resp3

    def __cinit__(self, bint resp3=False):
        self.resp3 = resp3
        if out_init(&self.o, 64) != 0:
            raise MemoryError()

    def __dealloc__(self):
        out_free(&self.o)

    cdef inline _check(self, int rc):
        if rc != 0:
            raise MemoryError()
        return self

    def raw(self, const unsigned char[:] s):
        return self._check(out_raw(&self.o, _view_ptr(s), <size_t>s.shape[0]))

    def simple(self, bytes s):
        return self._check(out_simple(&self.o, s))

    def error(self, bytes s):
        return self._check(out_error(&self.o, s))

    def integer(self, int64_t v):
        return self._check(out_int(&self.o, v))

    def bulk(self, const unsigned char[:] s):
        return self._check(out_bulk(&self.o, _view_ptr(s), <size_t>s.shape[0]))

    def null(self):
        return self._check(out_null(&self.o, self.resp3))

    def null_array(self):
        return self._check(out_null_array(&self.o, self.resp3))

    def array(self, int64_t n):
        return self._check(out_array(&self.o, n))

    def map(self, int64_t n):
        return self._check(out_map(&self.o, n, self.resp3))

    def double(self, double v):
        return self._check(out_double_or_bulk(&self.o, v, self.resp3))

    def boolean(self, bint v):
        return self._check(out_bool(&self.o, v, self.resp3))

    def getvalue(self):
        return self.o.data[:<Py_ssize_t>self.o.len]

    def clear(self):
        self.o.len = 0
        self.o.sent = 0
        return self


def encode_command(args):
    """RESP multibulk request for `args` (an iterable of bytes)."""
    cdef Encoder e = Encoder()
    args = list(args)
    e.array(len(args))
    for a in args:
        e.bulk(a)
    return e.getvalue()
