"""Redis glob patterns in bounded time (see pattern.pxd)."""

cdef enum:
    STAR = 42                 # '*'
    QMARK = 63                # '?'
    LBRACKET = 91             # '['
    RBRACKET = 93             # ']'
    BACKSLASH = 92            # '\'
    CARET = 94                # '^'
    DASH = 45                 # '-'


cdef inline int fold(int c, int nocase) noexcept nogil:
    if nocase and 65 <= c <= 90:
        return c + 32
    return c


cdef size_t token_match(const char *p, size_t plen, size_t i, char ch, int nocase,
                        int *matched) noexcept nogil:
    """Match the one-byte token at p[i] (not a star) against ch.  Sets
    *matched and returns the index just past the token.  Byte comparisons are
    on C chars, as in Redis (so set ranges over bytes >= 0x80 compare signed)."""
    cdef int neg, hit = 0
    cdef int lo, hi, c = fold(ch, nocase)
    cdef char t = p[i]
    if t == QMARK:
        matched[0] = 1
        return i + 1
    if t == LBRACKET:
        i += 1
        neg = i < plen and p[i] == CARET
        if neg:
            i += 1
        while True:
            if i >= plen:
                # Unterminated: Redis steps back onto the last byte, so the set
                # ends there and the token takes the rest of the pattern.
                break
            if p[i] == BACKSLASH and plen - i >= 2:
                i += 1
                if p[i] == ch:
                    hit = 1
            elif p[i] == RBRACKET:
                i += 1
                break
            elif plen - i >= 3 and p[i + 1] == DASH:
                lo = p[i]
                hi = p[i + 2]
                if lo > hi:
                    lo, hi = hi, lo
                lo = fold(lo, nocase)             # after the swap, as Redis
                hi = fold(hi, nocase)
                i += 2
                if lo <= c <= hi:
                    hit = 1
            elif fold(p[i], nocase) == c:
                hit = 1
            i += 1
        matched[0] = (not hit) if neg else hit
        return i
    if t == BACKSLASH and plen - i >= 2:
        i += 1
    matched[0] = fold(p[i], nocase) == c
    return i + 1


cdef int glob_match(const char *p, size_t plen, const char *s, size_t slen,
                    int nocase) noexcept nogil:
    cdef size_t pi = 0, si = 0, nxt
    cdef size_t star_p = 0, star_s = 0
    cdef int have_star = 0, matched
    if slen == 0:
        # As Redis: nothing matches the empty key but the empty pattern (its
        # KEYS and SCAN take a lone "*" to mean every key before matching).
        return plen == 0
    while si < slen:
        if pi < plen and p[pi] == STAR:
            while pi < plen and p[pi] == STAR:
                pi += 1
            if pi == plen:
                return 1                          # a trailing star takes the rest
            have_star = 1
            star_p = pi
            star_s = si
            continue
        if pi < plen:
            nxt = token_match(p, plen, pi, s[si], nocase, &matched)
            if matched:
                pi = nxt
                si += 1
                continue
        if not have_star:
            return 0
        # The tail after the newest star failed here: let that star take one
        # more byte and try the tail again.
        star_s += 1
        si = star_s
        pi = star_p
    while pi < plen and p[pi] == STAR:
        pi += 1
    return pi == plen


def match(pattern, key, bint nocase=False):
    """True when key matches the Redis glob pattern (both bytes-like)."""
    cdef const unsigned char[:] pv = memoryview(pattern).cast("B") if len(pattern) else b"\0"
    cdef const unsigned char[:] kv = memoryview(key).cast("B") if len(key) else b"\0"
    cdef int r
    cdef size_t plen = len(pattern), klen = len(key)
    with nogil:
        r = glob_match(<const char *>&pv[0], plen, <const char *>&kv[0], klen, nocase)
    return bool(r)
