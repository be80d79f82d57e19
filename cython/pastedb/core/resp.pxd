# resp.pxd -- RESP2/RESP3 request parsing and reply encoding, nogil.
#
# The parser never copies: it reports each argument as (offset, length)
# relative to the START OF THE CURRENT COMMAND in the caller's receive buffer,
# so the server can move an incomplete command to the start of a fresh pool
# extent and keep parsing where it left off.

from libc.stdint cimport int64_t, uint64_t


cdef enum ParseState:
    PS_START = 0            # at the first byte of a command
    PS_INLINE = 1           # inside an inline (telnet-style) command line
    PS_MULTIBULK_LEN = 2    # reading "*<n>\r\n"
    PS_BULK_LEN = 3         # reading "$<len>\r\n"
    PS_BULK_DATA = 4        # inside bulk payload (+ trailing CRLF)


cdef enum ParseResult:
    PARSE_ERROR = -1        # protocol error; p.error holds a static message
    PARSE_COMMAND = 0       # one whole command parsed: argc/arg_off/arg_len valid
    PARSE_NEED_MORE = 1     # the buffer ends inside a command


cdef struct RespParser:
    ParseState state         # where in the current command we are
    size_t cmd_start         # offset in the buffer where the current command starts
    size_t pos               # parse position in the buffer (absolute offset): start of the
                             # line or payload being read; just past the command on PARSE_COMMAND
    size_t line_scanned      # bytes from pos already searched for the line terminator, so a
                             # resumed call never rescans (PS_INLINE/PS_MULTIBULK_LEN/PS_BULK_LEN)
    int64_t multibulk_left   # bulk strings still expected in this command
    int64_t bulk_len         # length of the bulk being read (PS_BULK_DATA)
    int argc                 # arguments parsed so far in this command
    int arg_cap              # capacity of arg_off / arg_len
    uint64_t *arg_off        # argument offsets, relative to cmd_start
    uint64_t *arg_len        # argument lengths
    # limits (Redis defaults: 512 MiB bulk, 1M args, 64 KiB inline line)
    uint64_t max_bulk_len
    int64_t max_args
    size_t max_inline
    size_t need_total        # when NEED_MORE inside a bulk: total bytes the current
                             # command needs from cmd_start to finish that bulk (0 = unknown)
    const char *error        # message on PARSE_ERROR ("ERR Protocol error: ..."): static,
                             # or errbuf for messages that quote a byte
    char errbuf[48]          # backing store for a formatted error (so error is only valid
                             # while this struct stays where it is)


# 0, or -1 when out of memory.  max_args is clamped to INT_MAX (argc is an int).
cdef int parser_init(RespParser *p, uint64_t max_bulk_len, int64_t max_args, size_t max_inline) noexcept nogil
cdef void parser_free(RespParser *p) noexcept nogil
# Forget the current command and start the next one at buffer offset `at`
# (state PS_START).  Used after PARSE_COMMAND as parser_rebase(p, p.pos), or
# when the caller copied the unparsed bytes [p.pos, end) to offset `at`.
cdef void parser_rebase(RespParser *p, size_t at) noexcept nogil
# The caller MOVED the incomplete current command: bytes [cmd_start, end) now
# live at [new_cmd_start, ...).  Keeps all parse state (state, argc, parsed
# args, bulk_len, multibulk_left) and shifts cmd_start/pos, so the next
# parse_command resumes where it stopped without rescanning.
cdef void parser_moved(RespParser *p, size_t new_cmd_start) noexcept nogil
# Parse from p.pos up to `end`.  Returns a ParseResult (never raises).
# On PARSE_COMMAND, p.pos is just past the command and arg_off/arg_len are
# relative to p.cmd_start.  On PARSE_NEED_MORE, keep the bytes from p.cmd_start
# on (empty commands and empty inline lines are skipped, so cmd_start may have
# advanced) and call again with a larger `end`; p.need_total > 0 says the
# current command needs exactly that many bytes from cmd_start to finish the
# bulk being read.  Out of memory is a PARSE_ERROR with its own message; after
# any PARSE_ERROR the connection is done (reply p.error, then close).
# `buf` is writable: quoted inline arguments are unescaped in place (the
# result is never longer than the quoted text); multibulk bytes are never
# written.  Every out_* below returns 0, or -1 when out of memory (no Python
# exception is set: the server is nogil).
cdef int parse_command(RespParser *p, char *buf, size_t end) noexcept nogil


# ---------------------------------------------------------------- replies
cdef struct OutBuf:
    char *data               # malloc'ed, grows by doubling
    size_t len               # bytes written
    size_t cap               # allocated
    size_t sent              # bytes already handed to send()

cdef int out_init(OutBuf *o, size_t cap) noexcept nogil
cdef void out_free(OutBuf *o) noexcept nogil
cdef int out_reserve(OutBuf *o, size_t n) noexcept nogil
cdef int out_raw(OutBuf *o, const char *s, size_t n) noexcept nogil
# CR and LF inside s become spaces, so a message can never end the line early.
cdef int out_simple(OutBuf *o, const char *s) noexcept nogil          # +s\r\n
cdef int out_error(OutBuf *o, const char *s) noexcept nogil           # -s\r\n
cdef int out_int(OutBuf *o, int64_t v) noexcept nogil                 # :v\r\n
cdef int out_bulk(OutBuf *o, const char *s, size_t n) noexcept nogil  # $n\r\n..\r\n
# $n\r\n alone: the caller sends the n bytes (and the CRLF after them) itself.
cdef int out_bulk_header(OutBuf *o, size_t n) noexcept nogil
cdef int out_null(OutBuf *o, int resp3) noexcept nogil                # $-1 / _
cdef int out_null_array(OutBuf *o, int resp3) noexcept nogil          # *-1 / _
cdef int out_array(OutBuf *o, int64_t n) noexcept nogil               # *n
cdef int out_map(OutBuf *o, int64_t n, int resp3) noexcept nogil      # %n (RESP3) / *2n
# ,<v>\r\n (RESP3) or a bulk string of the same text (RESP2): the shortest of
# %.15g/%.16g/%.17g that reads back as v; "inf", "-inf", "nan".
cdef int out_double_or_bulk(OutBuf *o, double v, int resp3) noexcept nogil
cdef int out_bool(OutBuf *o, int v, int resp3) noexcept nogil         # #t/#f (RESP3) / :1/:0
