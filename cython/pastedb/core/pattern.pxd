# pattern.pxd -- Redis glob patterns (KEYS, SCAN MATCH, CONFIG GET), nogil.
#
# The semantics are Redis's stringmatchlen: `*` any run of bytes, `?` one
# byte, `[abc]` / `[^abc]` / `[a-z]` (ends in either order) a set of bytes,
# `\x` the byte x, inside and outside sets; an unterminated `[` takes the rest
# of the pattern as its set; the empty key matches only the empty pattern
# (callers treat a lone "*" as "every key", as Redis's KEYS and SCAN do).  nocase folds ASCII letters (CONFIG GET has it,
# KEYS and SCAN do not).
#
# The cost is bounded for ANY pattern and key: O(len(pattern) * len(key))
# byte steps, with no recursion (Redis's recursive matcher was exponential
# in the number of stars before the fix for CVE-2022-36021).  Every token but
# `*` consumes exactly one byte, so when the tail after a star fails, only
# the NEWEST star needs to take one more byte: an earlier star taking more
# could only start the tail later, which the newest star already tries.


# 1 when `s` matches the pattern `p`, else 0.  Never fails.
cdef int glob_match(const char *p, size_t plen, const char *s, size_t slen,
                    int nocase) noexcept nogil
