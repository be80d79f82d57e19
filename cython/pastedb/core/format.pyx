"""The on-disk format: structs, constants, CRC32C, encode and verify (layouts: format.pxd).

The Python edge below is what pastedb-check, the tests and the tools use
(typed in pastedb/core/format.pyi): the constants, struct.Struct layouts
built from the C structs' own offsets, and the checks and encoders -- so no
second reading of the format exists anywhere.
"""

import struct as _struct

from libc.stdint cimport UINT64_MAX, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from pastedb.core.status cimport ST_CORRUPT, ST_VERSION


cdef extern from "pastedb_crc.h" nogil:
    void pdb_crc_init()
    uint32_t pdb_crc32c_update(uint32_t crc, const void *buf, size_t n)
    int pdb_crc32c_is_hw()

# Once, at import (under the import lock), before any module can call in.
pdb_crc_init()

cdef const char *POOL_MAGIC_C = b"PASTEDB\0"
cdef const char *TREE_MAGIC_C = b"PDBTREE\0"

# The layouts are part of the file format.
assert sizeof(Superblock) == 84 and sizeof(Superblock) <= SUPER_SLOT
assert sizeof(LogRecord) == REC_SIZE
assert sizeof(PageHeader) == PAGE_HDR
assert sizeof(MetaBody) + PAGE_HDR <= PAGE_SIZE


# ---------------------------------------------------------------- CRC32C

cdef uint32_t crc32c_update(uint32_t state, const void *p, size_t n) noexcept nogil:
    return pdb_crc32c_update(state, p, n)


cdef uint32_t crc32c_buf(const void *p, size_t n) noexcept nogil:
    return crc32c_final(pdb_crc32c_update(CRC_START, p, n))


cdef int crc32c_is_hw() noexcept nogil:
    return pdb_crc32c_is_hw()


# ---------------------------------------------------------------- superblock

cdef inline uint32_t sb_crc(const Superblock *sb) noexcept nogil:
    return crc32c_buf(sb, <size_t>(<const char *>&sb.crc - <const char *>sb))


cdef int sb_check(const char *p, uint64_t avail) noexcept nogil:
    cdef const Superblock *sb = <const Superblock *>p
    cdef uint64_t i, n = avail if avail < SUPER_SLOT else SUPER_SLOT
    cdef uint32_t v1crc
    if avail < sizeof(Superblock):
        return SB_SHORT
    for i in range(n):
        if p[i] != 0:
            break
    else:
        return SB_EMPTY
    if memcmp(sb.magic, POOL_MAGIC_C, 8) != 0:
        return SB_BAD_MAGIC
    if sb.version == 1:
        # Version 1 ended (crc) where version 2's index fields begin.
        memcpy(&v1crc, p + SB_V1_CRC_AT, 4)
        return SB_BAD_VERSION if v1crc == crc32c_buf(p, SB_V1_CRC_AT) else SB_BAD_CRC
    if sb.crc != sb_crc(sb):
        return SB_BAD_CRC
    if sb.version != POOL_VERSION:
        return SB_BAD_VERSION
    if sb.buf_size != BUF_SIZE:
        return SB_BAD_BUF_SIZE
    return SB_VALID


cdef int sb_read(const char *p, uint64_t avail, Superblock *out, int *slot) noexcept nogil:
    cdef const Superblock *a = <const Superblock *>p
    cdef const Superblock *b = <const Superblock *>(p + SUPER_SLOT)
    cdef int va = sb_check(p, avail)
    cdef int vb = sb_check(p + SUPER_SLOT, avail - SUPER_SLOT if avail > SUPER_SLOT else 0)
    cdef int pick
    if va == SB_BAD_VERSION or vb == SB_BAD_VERSION:
        return ST_VERSION
    if va == SB_VALID and (vb != SB_VALID or a.seq > b.seq):
        pick = 0
    elif vb == SB_VALID:
        pick = 1
    else:
        return ST_CORRUPT
    memcpy(out, p + pick * SUPER_SLOT, sizeof(Superblock))
    if slot != NULL:
        slot[0] = pick
    return 0


cdef uint64_t sb_encode(Superblock *sb, char *out) noexcept nogil:
    memcpy(sb.magic, POOL_MAGIC_C, 8)
    sb.version = POOL_VERSION
    sb.buf_size = BUF_SIZE
    sb.crc = sb_crc(sb)
    memset(out, 0, SUPER_SLOT)
    memcpy(out, sb, sizeof(Superblock))
    return (sb.seq % 2) * SUPER_SLOT


# ---------------------------------------------------------------- log records

cdef int chunk_check(uint64_t off, uint64_t size) noexcept nogil:
    if off < HEADER_SIZE:
        return CK_IN_HEADER
    if off % BUF_SIZE:
        return CK_UNALIGNED
    if off + CHUNK_SIZE > size or off + CHUNK_SIZE < off:
        return CK_BEYOND_EOF
    return CK_OK


cdef uint32_t key_crc_state(const char *key, uint32_t klen) noexcept nogil:
    return pdb_crc32c_update(CRC_START, key, klen)


cdef uint32_t record_crc(uint32_t key_state, const LogRecord *rec) noexcept nogil:
    return crc32c_final(pdb_crc32c_update(key_state, (<const char *>rec) + 4, REC_SIZE - 4))


cdef int rec_check(const char *base, uint64_t size, const LogRecord *rec, uint64_t expect_lsn,
                   int last_slot, int check_value) noexcept nogil:
    cdef const char *p = <const char *>rec
    cdef int i
    if rec.lsn != expect_lsn:
        for i in range(REC_SIZE):
            if p[i] != 0:
                return RV_STALE
        return RV_EMPTY
    if rec.type == REC_LINK:
        # In the last slot, or earlier: a checkpoint ends a chunk early so
        # that the new log head is a fresh chunk.
        if rec.klen != 0 or rec.vlen != CHUNK_SIZE or chunk_check(rec.voff, size) != CK_OK:
            return RV_BAD_LINK
        return RV_LINK if rec.crc == record_crc(CRC_START, rec) else RV_BAD_CRC
    if last_slot:
        return RV_LINK_POS if rec.type == REC_PUT or rec.type == REC_DEL else RV_BAD_TYPE
    if rec.type != REC_PUT and rec.type != REC_DEL:
        return RV_BAD_TYPE
    if rec.klen > MAX_KEY_LEN or rec.koff < HEADER_SIZE:
        return RV_KEY_BOUNDS
    if span_outside(rec.koff, rec.klen, size):
        return RV_KEY_EOF
    if rec.crc != record_crc(key_crc_state(base + rec.koff, rec.klen), rec):
        return RV_BAD_CRC
    if rec.type == REC_PUT:
        if rec.vlen > MAX_VALUE_LEN or span_outside(rec.voff, rec.vlen, size):
            return RV_VALUE_BOUNDS
        if check_value and crc32c_buf(base + rec.voff, rec.vlen) != rec.vcrc:
            return RV_BAD_VCRC
    return RV_OK


cdef int rec_plausible(const LogRecord *rec, uint64_t size) noexcept nogil:
    if rec.type != REC_PUT and rec.type != REC_DEL and rec.type != REC_LINK:
        return 0
    if rec.lsn < 1 or (rec.expire_ms != 0 and rec.type != REC_PUT):
        return 0
    if rec.flags & ~F_BATCH or (not rec.flags and rec.batch_left) or rec.durable_hint >= rec.lsn:
        return 0
    if rec.type == REC_LINK:
        return rec.klen == 0 and rec.vlen == CHUNK_SIZE and chunk_check(rec.voff, size) == CK_OK
    if rec.klen > MAX_KEY_LEN or span_outside(rec.koff, rec.klen, size):
        return 0
    if rec.type == REC_PUT and rec.vlen > MAX_VALUE_LEN:
        return 0
    return 1


cdef inline const LogRecord *slot_at(const char *base, uint64_t chunk, uint64_t slot) noexcept nogil:
    return <const LogRecord *>(base + chunk + slot * REC_SIZE)


cdef int walk_start(LogWalk *w, const char *base, uint64_t size, uint64_t head_off,
                    uint64_t head_lsn, int policy, int check_value) noexcept nogil:
    w.base = base
    w.size = size
    w.chunk = head_off
    w.slot = 0
    w.lsn = head_lsn
    w.policy = policy
    w.check_value = check_value
    return ST_CORRUPT if chunk_check(head_off, size) != CK_OK else 0


cdef int walk_step(LogWalk *w, const LogRecord **rec) noexcept nogil:
    cdef const LogRecord *r
    cdef int v
    if w.slot >= CHUNK_SLOTS:
        rec[0] = NULL
        return RV_CHUNK_END
    r = slot_at(w.base, w.chunk, w.slot)
    rec[0] = r
    v = rec_check(w.base, w.size, r, w.lsn, w.slot == CHUNK_SLOTS - 1, w.check_value)
    if v == RV_LINK:
        w.chunk = r.voff
        w.slot = 0
        w.lsn += 1
    elif v == RV_OK or w.policy == WALK_TOLERANT:
        w.slot += 1
        w.lsn += 1
    return v


cdef int walk_acknowledged(const LogWalk *w, int *torn) noexcept nogil:
    cdef const char *p = <const char *>slot_at(w.base, w.chunk, w.slot)
    cdef const LogRecord *later
    cdef uint64_t j, k, lsn = w.lsn
    torn[0] = 0
    for j in range(REC_SIZE):
        if p[j] != 0:
            torn[0] = 1
            break
    # The header of a later record at its exact position is evidence enough
    # (its crc may fail too: a cut file or lost data page takes the key bytes
    # of every later record with it).  A 64-bit lsn in the right slot with
    # durable_hint >= lsn says record `lsn` had been made durable.
    for j in range(w.slot + 1, CHUNK_SLOTS):
        later = slot_at(w.base, w.chunk, j)
        if later.lsn == lsn + (j - w.slot) and later.durable_hint >= lsn:
            return 1
    if w.slot == CHUNK_SLOTS - 1 and torn[0]:
        # A LINK slot that holds something but does not verify: the chunk it
        # named may still be there.  Look for a chunk whose first record
        # continues the sequence and says the LINK was durable.
        j = HEADER_SIZE
        while j + CHUNK_SIZE <= w.size:
            later = <const LogRecord *>(w.base + j)
            if later.lsn == lsn + 1:
                for k in range(CHUNK_SLOTS):
                    later = slot_at(w.base, j, k)
                    if later.lsn == lsn + 1 + k and later.durable_hint >= lsn:
                        return 1
            j += BUF_SIZE
    return 0


# ---------------------------------------------------------------- index pages

cdef void page_seal(char *p) noexcept nogil:
    page_hdr(p).crc = crc32c_buf(p + 4, PAGE_SIZE - 4)


cdef int page_verify(const char *p, uint32_t pgno, uint64_t max_txn, int want,
                     uint32_t ref_size) noexcept nogil:
    cdef const PageHeader *h = page_hdr(p)
    cdef int leaf, i, n
    cdef uint32_t off, kl, sz, used, pkl = 0
    cdef const char *pk = NULL
    if h.crc != crc32c_buf(p + 4, PAGE_SIZE - 4):
        return PV_CRC
    if h.pgno != pgno:
        return PV_PGNO
    if h.type != want:
        return PV_TYPE
    if h.txn > max_txn or h.txn == 0:
        return PV_TXN
    if want == PT_FREE:
        return PV_OK if h.count <= FREE_PER_PAGE else PV_LAYOUT
    leaf = want == PT_LEAF
    if (h.level == 0) != leaf or h.level >= MAX_DEPTH:
        return PV_LEVEL
    n = h.count
    if n == 0:
        return PV_EMPTY
    if PAGE_HDR + 2 * n > h.upper or h.upper > PAGE_SIZE:
        return PV_LAYOUT
    used = 2 * <uint32_t>n
    for i in range(n):
        off = slot_off(p, i)
        if off < h.upper or off + 2 > PAGE_SIZE:
            return PV_LAYOUT
        kl = ld16(p + off)
        if kl > MAX_KEY_LEN:
            return PV_LAYOUT
        sz = 2 + kl + (ref_size if leaf else 4)
        if off + sz > PAGE_SIZE:
            return PV_LAYOUT
        used += sz
        if pk != NULL and key_cmp(pk, pkl, p + off + 2, kl) >= 0:
            return PV_ORDER
        pk = p + off + 2
        pkl = kl
    if used != h.used or used > PAGE_CAP:
        return PV_LAYOUT
    return PV_OK


cdef int meta_read(const char *p, uint32_t slot, MetaBody *out) noexcept nogil:
    cdef const PageHeader *h = page_hdr(p)
    cdef const MetaBody *m = <const MetaBody *>(p + PAGE_HDR)
    if h.crc != crc32c_buf(p + 4, PAGE_SIZE - 4):
        return 0
    if h.type != PT_META or h.pgno != slot or memcmp(m.magic, TREE_MAGIC_C, 8) != 0:
        return 0
    if (m.version != BTREE_VERSION and m.version != BTREE_VERSION_V2
            and m.version != BTREE_VERSION_V1) or m.page_size != PAGE_SIZE:
        return ST_VERSION
    if m.txn != h.txn or m.page_count < META_PAGES or m.page_count > META_MAX_PAGES:
        return 0
    if m.root != 0 and (m.root < META_PAGES or m.root >= m.page_count):
        return 0
    if m.free_head != 0 and (m.free_head < META_PAGES or m.free_head >= m.page_count):
        return 0
    if (m.root == 0) != (m.depth == 0) or m.depth > MAX_DEPTH:
        return 0
    out[0] = m[0]
    return 1


cdef void meta_build(char *p, uint32_t slot, MetaBody *m) noexcept nogil:
    cdef PageHeader *h = page_hdr(p)
    memcpy(m.magic, TREE_MAGIC_C, 8)
    if m.version == 0:
        m.version = BTREE_VERSION
    m.page_size = PAGE_SIZE
    memset(p, 0, PAGE_SIZE)
    memcpy(p + PAGE_HDR, m, sizeof(MetaBody))
    h.pgno = slot
    h.txn = m.txn
    h.type = PT_META
    h.upper = PAGE_SIZE
    page_seal(p)


# ================================================================ Python edge

# The constants, as Python ints.
_CONSTANTS = dict(
    BUF_SIZE=BUF_SIZE, SUPER_SLOT=SUPER_SLOT, HEADER_SIZE=HEADER_SIZE, POOL_VERSION=POOL_VERSION,
    SEG_SIZE=SEG_SIZE, MAP_ALIGN=MAP_ALIGN, REC_SIZE=REC_SIZE, CHUNK_SIZE=CHUNK_SIZE, CHUNK_SLOTS=CHUNK_SLOTS,
    REC_PUT=REC_PUT, REC_DEL=REC_DEL, REC_LINK=REC_LINK, F_BATCH=F_BATCH,
    MAX_KEY_LEN=MAX_KEY_LEN, MAX_VALUE_LEN=MAX_VALUE_LEN, PAGE_SIZE=PAGE_SIZE, PAGE_HDR=PAGE_HDR,
    REF_SIZE=REF_SIZE, REF_SIZE_V1=REF_SIZE_V1, BTREE_VERSION_V1=BTREE_VERSION_V1,
    BTREE_VERSION_V2=BTREE_VERSION_V2, KEY_ESC=KEY_ESC, MAX_DATABASES=MAX_DATABASES, PT_META=PT_META, PT_LEAF=PT_LEAF, PT_BRANCH=PT_BRANCH, PT_FREE=PT_FREE,
    BTREE_VERSION=BTREE_VERSION,
    SB_VALID=SB_VALID, SB_EMPTY=SB_EMPTY, SB_SHORT=SB_SHORT, SB_BAD_MAGIC=SB_BAD_MAGIC,
    SB_BAD_CRC=SB_BAD_CRC, SB_BAD_VERSION=SB_BAD_VERSION, SB_BAD_BUF_SIZE=SB_BAD_BUF_SIZE,
    CK_OK=CK_OK, CK_IN_HEADER=CK_IN_HEADER, CK_UNALIGNED=CK_UNALIGNED, CK_BEYOND_EOF=CK_BEYOND_EOF,
    RV_OK=RV_OK, RV_LINK=RV_LINK, RV_EMPTY=RV_EMPTY, RV_STALE=RV_STALE, RV_BAD_LINK=RV_BAD_LINK,
    RV_LINK_POS=RV_LINK_POS, RV_BAD_TYPE=RV_BAD_TYPE, RV_KEY_BOUNDS=RV_KEY_BOUNDS,
    RV_KEY_EOF=RV_KEY_EOF, RV_BAD_CRC=RV_BAD_CRC, RV_VALUE_BOUNDS=RV_VALUE_BOUNDS,
    RV_BAD_VCRC=RV_BAD_VCRC,
)
globals().update(_CONSTANTS)
POOL_MAGIC = POOL_MAGIC_C[:8]
TREE_MAGIC = TREE_MAGIC_C[:8]
POOL_FILE = "pool"
INDEX_FILE = "index"
LOCK_FILE = "LOCK"

# Names of the verdicts (pastedb-check reports them).
SB_STATES = ("valid", "empty", "short", "bad-magic", "bad-crc", "bad-version", "bad-buf-size")
RV_NAMES = ("ok", "link", "empty", "stale-lsn", "bad-link", "link-position", "bad-type",
            "key-bounds", "key-beyond-eof", "bad-crc", "value-beyond-eof", "bad-value-crc")


# ---------------------------------------------------------------- layouts
# struct.Struct objects built from the C structs' own field offsets and sizes,
# so the Python view cannot drift from the C one.

cdef Superblock _sb
cdef LogRecord _rec
cdef PageHeader _ph
cdef MetaBody _mb


cdef inline size_t _at(const void *field, const void *base) noexcept:
    return <size_t>(<const char *>field - <const char *>base)


def _layout(fields, size_t total):
    fmt = "<"
    pos = 0
    names = []
    for name, off, size, kind in fields:
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += f"{size}s" if kind == "s" else {1: "B", 2: "H", 4: "I", 8: "Q"}[size]
        pos = off + size
        names.append(name)
    if pos < total:
        fmt += f"{total - pos}x"
    st = _struct.Struct(fmt)
    assert st.size == total
    return st, tuple(names)


SB, SB_FIELDS = _layout([
    ("magic", _at(&_sb.magic, &_sb), sizeof(_sb.magic), "s"),
    ("version", _at(&_sb.version, &_sb), sizeof(_sb.version), "u"),
    ("buf_size", _at(&_sb.buf_size, &_sb), sizeof(_sb.buf_size), "u"),
    ("seq", _at(&_sb.seq, &_sb), sizeof(_sb.seq), "u"),
    ("log_head_off", _at(&_sb.log_head_off, &_sb), sizeof(_sb.log_head_off), "u"),
    ("log_head_size", _at(&_sb.log_head_size, &_sb), sizeof(_sb.log_head_size), "u"),
    ("log_head_lsn", _at(&_sb.log_head_lsn, &_sb), sizeof(_sb.log_head_lsn), "u"),
    ("created_ns", _at(&_sb.created_ns, &_sb), sizeof(_sb.created_ns), "u"),
    ("tree_lsn", _at(&_sb.tree_lsn, &_sb), sizeof(_sb.tree_lsn), "u"),
    ("tree_live", _at(&_sb.tree_live, &_sb), sizeof(_sb.tree_live), "u"),
    ("alloc_tail", _at(&_sb.alloc_tail, &_sb), sizeof(_sb.alloc_tail), "u"),
    ("crc", _at(&_sb.crc, &_sb), sizeof(_sb.crc), "u"),
], sizeof(Superblock))
SB_CRC_COVER = _at(&_sb.crc, &_sb)

REC, REC_FIELDS = _layout([
    ("crc", _at(&_rec.crc, &_rec), sizeof(_rec.crc), "u"),
    ("type", _at(&_rec.type, &_rec), sizeof(_rec.type), "u"),
    ("flags", _at(&_rec.flags, &_rec), sizeof(_rec.flags), "u"),
    ("klen", _at(&_rec.klen, &_rec), sizeof(_rec.klen), "u"),
    ("vcrc", _at(&_rec.vcrc, &_rec), sizeof(_rec.vcrc), "u"),
    ("batch_left", _at(&_rec.batch_left, &_rec), sizeof(_rec.batch_left), "u"),
    ("lsn", _at(&_rec.lsn, &_rec), sizeof(_rec.lsn), "u"),
    ("koff", _at(&_rec.koff, &_rec), sizeof(_rec.koff), "u"),
    ("voff", _at(&_rec.voff, &_rec), sizeof(_rec.voff), "u"),
    ("vlen", _at(&_rec.vlen, &_rec), sizeof(_rec.vlen), "u"),
    ("durable_hint", _at(&_rec.durable_hint, &_rec), sizeof(_rec.durable_hint), "u"),
    ("expire_ms", _at(&_rec.expire_ms, &_rec), sizeof(_rec.expire_ms), "u"),
], sizeof(LogRecord))

PAGE_HEADER, PAGE_HEADER_FIELDS = _layout([
    ("crc", _at(&_ph.crc, &_ph), sizeof(_ph.crc), "u"),
    ("pgno", _at(&_ph.pgno, &_ph), sizeof(_ph.pgno), "u"),
    ("txn", _at(&_ph.txn, &_ph), sizeof(_ph.txn), "u"),
    ("type", _at(&_ph.type, &_ph), sizeof(_ph.type), "u"),
    ("level", _at(&_ph.level, &_ph), sizeof(_ph.level), "u"),
    ("count", _at(&_ph.count, &_ph), sizeof(_ph.count), "u"),
    ("upper", _at(&_ph.upper, &_ph), sizeof(_ph.upper), "u"),
    ("used", _at(&_ph.used, &_ph), sizeof(_ph.used), "u"),
    ("link", _at(&_ph.link, &_ph), sizeof(_ph.link), "u"),
    ("reserved", _at(&_ph.reserved, &_ph), sizeof(_ph.reserved), "u"),
], sizeof(PageHeader))

META, META_FIELDS = _layout([
    ("magic", _at(&_mb.magic, &_mb), sizeof(_mb.magic), "s"),
    ("version", _at(&_mb.version, &_mb), sizeof(_mb.version), "u"),
    ("page_size", _at(&_mb.page_size, &_mb), sizeof(_mb.page_size), "u"),
    ("txn", _at(&_mb.txn, &_mb), sizeof(_mb.txn), "u"),
    ("page_count", _at(&_mb.page_count, &_mb), sizeof(_mb.page_count), "u"),
    ("entries", _at(&_mb.entries, &_mb), sizeof(_mb.entries), "u"),
    ("applied_lsn", _at(&_mb.applied_lsn, &_mb), sizeof(_mb.applied_lsn), "u"),
    ("free_entries", _at(&_mb.free_entries, &_mb), sizeof(_mb.free_entries), "u"),
    ("root", _at(&_mb.root, &_mb), sizeof(_mb.root), "u"),
    ("depth", _at(&_mb.depth, &_mb), sizeof(_mb.depth), "u"),
    ("free_head", _at(&_mb.free_head, &_mb), sizeof(_mb.free_head), "u"),
    ("reserved", _at(&_mb.reserved, &_mb), sizeof(_mb.reserved), "u"),
], sizeof(MetaBody))


# ---------------------------------------------------------------- checksums

cdef char _nothing[REC_SIZE]          # what an empty buffer points at


cdef inline const char *_ptr(const unsigned char[::1] b) noexcept:
    if b.shape[0] == 0:
        return _nothing
    return <const char *>&b[0]


def crc32c_is_hardware():
    """True when CRC32C runs on the CPU's crc32 instruction (SSE4.2)."""
    return bool(crc32c_is_hw())


def crc32c(data, uint32_t crc=0):
    """CRC32C of `data` (any contiguous buffer); pass a previous result as
    `crc` to continue it.  The GIL is released for large buffers."""
    cdef const unsigned char[::1] b = data
    cdef const char *p = _ptr(b)
    cdef size_t n = <size_t>b.shape[0]
    cdef uint32_t st = crc ^ CRC_START
    if n >= 65536:
        with nogil:
            st = pdb_crc32c_update(st, p, n)
    else:
        st = pdb_crc32c_update(st, p, n)
    return crc32c_final(st)


def crc32c_many(items):
    """CRC32C of each item."""
    return [crc32c(x) for x in items]


def record_crc_of(key, rec):
    """crc32c_buf(key || rec[4:64]): the crc a log record must carry."""
    cdef const unsigned char[::1] k = key
    cdef const unsigned char[::1] r = rec
    if r.shape[0] < REC_SIZE:
        raise ValueError(f"a log record is {REC_SIZE} bytes")
    return record_crc(key_crc_state(_ptr(k), <uint32_t>k.shape[0]), <const LogRecord *>_ptr(r))


def seal_record(bytearray rec not None, key):
    """Set the crc field of the log record in `rec` (64 bytes) for `key`."""
    cdef uint32_t c = record_crc_of(key, rec)
    memcpy(<char *>rec, &c, 4)


def bit_flip_candidates(msg, uint32_t want, Py_ssize_t region):
    """(byte, bit) of every single-bit flip within msg[:region] after which
    crc32c_buf(msg) == want -- how the checker names the key of a record whose
    key bytes took one flipped bit."""
    cdef bytearray m = bytearray(msg)
    cdef char *p = <char *>m
    cdef Py_ssize_t n = len(m), pos
    cdef int bit
    cdef uint32_t pre = CRC_START, st
    out = []
    if region > n:
        region = n
    for pos in range(region):
        for bit in range(8):
            p[pos] ^= <char>(1 << bit)
            st = pdb_crc32c_update(pre, p + pos, <size_t>(n - pos))
            p[pos] ^= <char>(1 << bit)
            if crc32c_final(st) == want:
                out.append((pos, bit))
        pre = pdb_crc32c_update(pre, p + pos, 1)
    return out


# ---------------------------------------------------------------- superblock

def superblock_slot(header, int index):
    """(state, fields) of superblock slot `index` (0 or 1) of a pool file
    whose first bytes are `header`: state one of SB_STATES, fields the slot
    unpacked with SB (empty when the file ends inside it)."""
    cdef const unsigned char[::1] b = header
    cdef Py_ssize_t at = index * SUPER_SLOT
    cdef Py_ssize_t avail = b.shape[0] - at
    if index not in (0, 1):
        raise ValueError("a superblock slot is 0 or 1")
    if avail < 0:
        avail = 0
    state = SB_STATES[sb_check(_ptr(b) + at if avail else _nothing, <uint64_t>avail)]
    fields = {} if avail < SB.size else dict(zip(SB_FIELDS, SB.unpack_from(header, at),
                                                 strict=True))
    return state, fields


def encode_superblock(uint64_t seq, uint64_t log_head_off, uint64_t log_head_lsn,
                      uint64_t created_ns, uint64_t tree_lsn, uint64_t tree_live,
                      uint64_t alloc_tail):
    """(file offset, SUPER_SLOT bytes) of the superblock slot for these
    values, sealed as the engine writes it."""
    cdef Superblock sb
    cdef char out[SUPER_SLOT]
    memset(&sb, 0, sizeof(Superblock))
    sb.seq = seq
    sb.log_head_off = log_head_off
    sb.log_head_size = CHUNK_SIZE
    sb.log_head_lsn = log_head_lsn
    sb.created_ns = created_ns
    sb.tree_lsn = tree_lsn
    sb.tree_live = tree_live
    sb.alloc_tail = alloc_tail
    cdef uint64_t off = sb_encode(&sb, out)
    return off, out[:SUPER_SLOT]


# ---------------------------------------------------------------- log records

def chunk_verdict(uint64_t off, uint64_t size):
    """CK_* verdict: can a log chunk start at `off` in a file of `size` bytes?"""
    return chunk_check(off, size)


def record_verdict(buf, uint64_t off, uint64_t expect_lsn, bint last_slot=False,
                   bint check_value=True):
    """RV_* verdict of the record at `off` of the pool file mapped as `buf`."""
    cdef const unsigned char[::1] b = buf
    cdef uint64_t size = <uint64_t>b.shape[0]
    if off + REC_SIZE > size:
        raise ValueError(f"no record at {off}: the file is {size} bytes")
    return rec_check(_ptr(b), size, <const LogRecord *>(_ptr(b) + off), expect_lsn, last_slot,
                     check_value)


def record_plausible(buf, uint64_t off):
    """Could the 64 bytes at `off` be a log record at all?"""
    cdef const unsigned char[::1] b = buf
    cdef uint64_t size = <uint64_t>b.shape[0]
    if off + REC_SIZE > size:
        return False
    return bool(rec_plausible(<const LogRecord *>(_ptr(b) + off), size))


def record_verifies(buf, uint64_t off):
    """The record at `off` is plausible and its crc (record and key) verifies."""
    cdef const unsigned char[::1] b = buf
    cdef const char *base = _ptr(b)
    cdef uint64_t size = <uint64_t>b.shape[0]
    cdef const LogRecord *r
    if off + REC_SIZE > size:
        return False
    r = <const LogRecord *>(base + off)
    if not rec_plausible(r, size):
        return False
    if r.type == REC_LINK:
        return r.crc == record_crc(CRC_START, r)
    return r.crc == record_crc(key_crc_state(base + r.koff, r.klen), r)


def walk_chunk(buf, uint64_t chunk, uint64_t base_lsn, bint check_value=True):
    """The tolerant walk over one log chunk of the pool file mapped as `buf`,
    whose first slot must carry base_lsn: (verdicts, next_chunk) -- the RV_*
    verdict of every slot up to and including the first valid LINK (all
    CHUNK_SLOTS slots when there is none), and the chunk that LINK names, or
    -1.  Raises ValueError when `chunk` cannot be a chunk of this file."""
    cdef const unsigned char[::1] b = buf
    cdef LogWalk w
    cdef const LogRecord *r
    cdef uint8_t verdicts[CHUNK_SLOTS]
    cdef int n = 0, v
    cdef int64_t nxt = -1
    if walk_start(&w, _ptr(b), <uint64_t>b.shape[0], chunk, base_lsn, WALK_TOLERANT,
                  check_value) != 0:
        raise ValueError(f"no log chunk can start at {chunk}")
    with nogil:
        while True:
            v = walk_step(&w, &r)
            if v == RV_CHUNK_END:
                break
            verdicts[n] = <uint8_t>v
            n += 1
            if v == RV_LINK:
                nxt = <int64_t>w.chunk
                break
    return (<char *>verdicts)[:n], nxt


def encode_chain(uint64_t head, uint64_t first_lsn, uint64_t hint, list records):
    """Lay out a fresh log chain (what a repair writes): its chunks are
    contiguous from `head`, every chunk's last slot a LINK to the next.
    records: (type, key, koff, voff, vlen, vcrc[, expire_ms]) for PUT and DEL
    records, in log order, the key bytes as they lie at koff; every record gets
    durable_hint `hint` and is sealed.  Returns (chunks, lsns, end): the
    chunks as (file offset, CHUNK_SIZE bytes), each record's LSN, and the
    offset after the last chunk."""
    cdef uint64_t chunk = head, slot = 0, lsn = first_lsn
    cdef LogRecord *r
    cdef bytearray buf = bytearray(CHUNK_SIZE)
    cdef char *p = buf
    cdef const unsigned char[::1] k
    chunks = []
    lsns = []
    if chunk_check(head, UINT64_MAX) != CK_OK:
        raise ValueError(f"no log chunk can start at {head}")
    cdef uint64_t expire_ms
    for item in records:
        rtype, key, koff, voff, vlen, vcrc = item[:6]
        expire_ms = item[6] if len(item) > 6 else 0
        if rtype != REC_PUT and rtype != REC_DEL:
            raise ValueError(f"record type {rtype}: a chain holds PUT and DEL records")
        k = key
        if k.shape[0] > MAX_KEY_LEN:
            raise ValueError(f"a key of {k.shape[0]} bytes")
        if slot == CHUNK_SLOTS - 1:
            r = <LogRecord *>(p + slot * REC_SIZE)
            memset(r, 0, REC_SIZE)
            r.type = REC_LINK
            r.lsn = lsn
            r.voff = chunk + CHUNK_SIZE
            r.vlen = CHUNK_SIZE
            r.durable_hint = hint
            r.crc = record_crc(CRC_START, r)
            chunks.append((chunk, bytes(buf)))
            buf = bytearray(CHUNK_SIZE)
            p = buf
            chunk += CHUNK_SIZE
            slot = 0
            lsn += 1
        r = <LogRecord *>(p + slot * REC_SIZE)
        memset(r, 0, REC_SIZE)
        r.type = <uint8_t>rtype
        r.klen = <uint16_t>k.shape[0]
        r.lsn = lsn
        r.koff = koff
        if rtype == REC_PUT:
            r.voff = voff
            r.vlen = vlen
            r.vcrc = vcrc
            r.expire_ms = expire_ms
        r.durable_hint = hint
        r.crc = record_crc(key_crc_state(_ptr(k), <uint32_t>k.shape[0]), r)
        lsns.append(lsn)
        slot += 1
        lsn += 1
    chunks.append((chunk, bytes(buf)))
    return chunks, lsns, chunk + CHUNK_SIZE


def scan_runs(buf, uint64_t start, uint64_t stop):
    """Runs of plausible records with consecutive LSNs that start at a
    BUF_SIZE-aligned offset in [start, stop) (a run ends after a LINK):
    ([(off, first_lsn, count, max_hint, link_to or -1)], where the next
    scan resumes).  No checksums (record_verifies)."""
    cdef const unsigned char[::1] b = buf
    cdef const char *base = _ptr(b)
    cdef uint64_t size = <uint64_t>b.shape[0]
    cdef uint64_t pos = start, q, count, max_hint
    cdef int64_t link_to
    cdef const LogRecord *f
    cdef const LogRecord *g
    runs = []
    if pos < HEADER_SIZE:
        pos = HEADER_SIZE
    while pos < stop and pos + REC_SIZE <= size:
        f = <const LogRecord *>(base + pos)
        if not rec_plausible(f, size):
            pos += BUF_SIZE
            continue
        count = 1
        max_hint = f.durable_hint
        link_to = -1
        q = pos + REC_SIZE
        if f.type == REC_LINK:
            link_to = <int64_t>f.voff
        else:
            while q + REC_SIZE <= size:
                g = <const LogRecord *>(base + q)
                if g.lsn != f.lsn + count or not rec_plausible(g, size):
                    break
                count += 1
                if g.durable_hint > max_hint:
                    max_hint = g.durable_hint
                q += REC_SIZE
                if g.type == REC_LINK:
                    link_to = <int64_t>g.voff
                    break
        runs.append((pos, f.lsn, count, max_hint, link_to))
        pos = (q + BUF_SIZE - 1) // BUF_SIZE * BUF_SIZE
    return runs, pos


def verify_values(buf, list spans):
    """For each (voff, vlen, vcrc) of `spans`: whether the value bytes lie in
    the file and match their crc (one C pass, the GIL released per value of
    64 KiB or more)."""
    cdef const unsigned char[::1] b = buf
    cdef const char *base = _ptr(b)
    cdef uint64_t size = <uint64_t>b.shape[0], voff, vlen
    cdef uint32_t vcrc
    cdef int ok
    out = []
    for voff, vlen, vcrc in spans:
        if vlen >= 65536:
            with nogil:
                ok = value_verifies(base, size, voff, vlen, vcrc)
        else:
            ok = value_verifies(base, size, voff, vlen, vcrc)
        out.append(ok != 0)
    return out


# ---------------------------------------------------------------- index pages

def page_verdict(page, uint32_t pgno, uint64_t max_txn, int want, uint32_t ref_size=REF_SIZE):
    """PV_* verdict of an index page (PAGE_SIZE bytes) of a tree whose leaf
    Refs are ref_size bytes (REF_SIZE; REF_SIZE_V1 for a version-1 tree)."""
    cdef const unsigned char[::1] b = page
    if b.shape[0] < PAGE_SIZE:
        raise ValueError(f"an index page is {PAGE_SIZE} bytes")
    return page_verify(_ptr(b), pgno, max_txn, want, ref_size)


def seal_page(bytearray page not None):
    """Set the crc of an index page (PAGE_SIZE bytes) after changing it."""
    if len(page) < PAGE_SIZE:
        raise ValueError(f"an index page is {PAGE_SIZE} bytes")
    page_seal(<char *>page)
