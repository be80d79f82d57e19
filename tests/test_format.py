"""The on-disk format module (pastedb.core.format) against real files: its
layouts, its checksum, its superblock owner, its record verdicts, its log walk
and file scan, and its index page checks."""

from __future__ import annotations

import random
import struct

import pytest
from poolfmt import chain_from_head, superblock, unindexed

import pastedb
from pastedb.core import format as fmt


def pool_bytes(db_path) -> bytes:
    return (db_path / fmt.POOL_FILE).read_bytes()


def test_layouts_are_the_c_structs():
    assert fmt.SB.size == 84 and fmt.SB_CRC_COVER == 80
    assert fmt.SB_FIELDS[0] == "magic" and fmt.SB_FIELDS[-1] == "crc"
    assert fmt.REC.size == fmt.REC_SIZE == 64
    assert fmt.REC_FIELDS.index("lsn") == 6
    assert fmt.REC.format == "<IBBHIIQQQQQQ"
    assert fmt.PAGE_HEADER.size == fmt.PAGE_HDR == 32
    assert fmt.META.size == 72
    assert fmt.CHUNK_SIZE == fmt.CHUNK_SLOTS * fmt.REC_SIZE
    assert fmt.HEADER_SIZE == 2 * fmt.SUPER_SLOT
    assert fmt.RV_NAMES[fmt.RV_OK] == "ok" and fmt.SB_STATES[fmt.SB_VALID] == "valid"


def test_crc32c():
    assert fmt.crc32c(b"") == 0
    assert fmt.crc32c(b"123456789") == 0xE3069283         # the CRC-32C check value
    data = random.Random(3).randbytes(300001)
    for cut in (0, 1, 7, 4096, 65536, 300001):
        assert fmt.crc32c(data[cut:], fmt.crc32c(data[:cut])) == fmt.crc32c(data)
    assert fmt.crc32c(memoryview(data)[5:70000]) == fmt.crc32c(data[5:70000])
    assert fmt.crc32c(bytearray(data)) == fmt.crc32c(data)
    assert fmt.crc32c_many([b"a", b"", data]) == [fmt.crc32c(b"a"), 0, fmt.crc32c(data)]
    assert isinstance(fmt.crc32c_is_hardware(), bool)


def test_superblock_encode_is_what_the_engine_writes(db_path):
    with pastedb.open(db_path, persist="none") as db:
        db.put(b"k", b"v")
    data = pool_bytes(db_path)
    sb = superblock(data)
    off, slot = fmt.encode_superblock(sb["seq"], sb["log_head_off"], sb["log_head_lsn"],
                                      sb["created_ns"], sb["tree_lsn"], sb["tree_live"],
                                      sb["alloc_tail"])
    assert off == sb["slot"] * fmt.SUPER_SLOT == (sb["seq"] % 2) * fmt.SUPER_SLOT
    assert slot == data[off:off + fmt.SUPER_SLOT]
    state, fields = fmt.superblock_slot(data, sb["slot"])
    assert state == "valid" and fields["seq"] == sb["seq"]


def test_superblock_slot_verdicts():
    off, slot = fmt.encode_superblock(3, 1 << 20, 5, 7, 4, 100, 2 << 20)
    assert off == fmt.SUPER_SLOT
    header = bytearray(fmt.HEADER_SIZE)
    header[off:] = slot
    assert fmt.superblock_slot(header, 1)[0] == "valid"
    assert fmt.superblock_slot(header, 0)[0] == "empty"
    assert fmt.superblock_slot(header[:off + 40], 1)[0] == "short"
    bad = bytearray(header)
    bad[off + 20] ^= 1
    assert fmt.superblock_slot(bad, 1)[0] == "bad-crc"
    bad = bytearray(header)
    bad[off] ^= 1
    assert fmt.superblock_slot(bad, 1)[0] == "bad-magic"
    # a slot sealed as another version, and one in the version 1 layout
    # (its crc at byte 56): both verify, neither is damage
    other = bytearray(slot)
    struct.pack_into("<I", other, 8, fmt.POOL_VERSION + 1)
    struct.pack_into("<I", other, 80, fmt.crc32c(bytes(other[:80])))
    assert fmt.superblock_slot(bytes(other), 0)[0] == "bad-version"
    v1 = bytearray(slot)
    struct.pack_into("<I", v1, 8, 1)
    v1[56:] = bytes(len(v1) - 56)
    struct.pack_into("<I", v1, 56, fmt.crc32c(bytes(v1[:56])))
    assert fmt.superblock_slot(bytes(v1), 0)[0] == "bad-version"
    v1[20] ^= 1
    assert fmt.superblock_slot(bytes(v1), 0)[0] == "bad-crc"
    wrong = bytearray(slot)
    struct.pack_into("<I", wrong, 12, 4096)
    struct.pack_into("<I", wrong, 80, fmt.crc32c(bytes(wrong[:80])))
    assert fmt.superblock_slot(bytes(wrong), 0)[0] == "bad-buf-size"


def test_walk_verifies_a_real_log_and_finds_damage(db_path):
    rng = random.Random(5)
    with unindexed(db_path) as db:
        for i in range(300):
            db.put(b"key%04d" % i, rng.randbytes(rng.randrange(1, 3000)))
        db.delete(b"key0007")
    data = bytearray(pool_bytes(db_path))
    sb = superblock(data)
    recs = chain_from_head(bytes(data))
    verdicts, nxt = fmt.walk_chunk(data, sb["log_head_off"], sb["log_head_lsn"])
    assert nxt == -1                              # one chunk holds them all
    assert len(verdicts) == fmt.CHUNK_SLOTS       # no LINK: every slot classified
    names = [fmt.RV_NAMES[v] for v in verdicts[:len(recs) + 1]]
    assert names == [("link" if r["type"] == fmt.REC_LINK else "ok") for r in recs] + ["empty"]
    assert set(verdicts[len(recs):]) == {fmt.RV_EMPTY}
    for r in recs:
        assert fmt.record_verifies(data, r["off"])
        assert fmt.record_verdict(data, r["off"], r["lsn"]) in (fmt.RV_OK, fmt.RV_LINK)
    puts = [r for r in recs if r["type"] == fmt.REC_PUT]
    # damage, one kind at a time, in the order rec_check tests them
    victim = puts[10]
    off, lsn = victim["off"], victim["lsn"]
    assert fmt.record_verdict(data, off, lsn + 1) == fmt.RV_STALE
    assert fmt.record_verdict(data, off, lsn, last_slot=True) == fmt.RV_LINK_POS
    data[victim["voff"]] ^= 0x10
    assert fmt.record_verdict(data, off, lsn) == fmt.RV_BAD_VCRC
    assert fmt.record_verdict(data, off, lsn, check_value=False) == fmt.RV_OK
    assert fmt.verify_values(data, [(victim["voff"], victim["vlen"], victim["vcrc"])]) == [False]
    data[victim["voff"]] ^= 0x10
    assert fmt.verify_values(data, [(victim["voff"], victim["vlen"], victim["vcrc"]),
                                    (len(data) - 4, 8, 0)]) == [True, False]
    data[victim["koff"]] ^= 0x04
    assert fmt.record_verdict(data, off, lsn) == fmt.RV_BAD_CRC
    assert not fmt.record_verifies(data, off)
    # the one flipped key bit is found again from the record's crc
    key = bytes(data[victim["koff"]:victim["koff"] + victim["klen"]])
    msg = key + bytes(data[off + 4:off + 64])
    assert fmt.bit_flip_candidates(msg, victim["crc"], len(key)) == [(0, 2)]
    data[victim["koff"]] ^= 0x04
    key = bytes(data[victim["koff"]:victim["koff"] + victim["klen"]])
    verdicts, _ = fmt.walk_chunk(data, sb["log_head_off"], sb["log_head_lsn"])
    assert verdicts[victim["lsn"] - sb["log_head_lsn"]] == fmt.RV_OK
    data[off + 8] ^= 0x01                         # vcrc field: the record crc fails
    verdicts, _ = fmt.walk_chunk(data, sb["log_head_off"], sb["log_head_lsn"])
    k = lsn - sb["log_head_lsn"]
    assert verdicts[k] == fmt.RV_BAD_CRC and verdicts[k + 1] == fmt.RV_OK   # tolerant: goes on
    rec = bytearray(data[off:off + 64])
    fmt.seal_record(rec, key)
    data[off:off + 64] = rec
    assert fmt.record_verifies(data, off)
    struct.pack_into("<B", data, off + 4, 9)
    assert fmt.record_verdict(data, off, lsn) == fmt.RV_BAD_TYPE
    with pytest.raises(ValueError):
        fmt.walk_chunk(data, 100, 1)


def test_scan_finds_the_chain(db_path):
    with unindexed(db_path) as db:
        for i in range(50):
            db.put(b"k%d" % i, b"v" * i)
    data = pool_bytes(db_path)
    sb = superblock(data)
    runs, nxt = fmt.scan_runs(data, 0, len(data))
    assert nxt >= len(data) - fmt.REC_SIZE
    head = [r for r in runs if r[0] == sb["log_head_off"]]
    assert head and head[0][1] == sb["log_head_lsn"]
    assert head[0][2] == len(chain_from_head(data))
    # in windows, the same runs
    pieces, pos = [], 0
    while pos + fmt.REC_SIZE <= len(data):
        found, pos = fmt.scan_runs(data, pos, pos + (1 << 20))
        pieces.extend(found)
    assert pieces == runs


def test_index_pages(db_path):
    with pastedb.open(db_path, persist="none") as db:
        for i in range(2000):
            db.put(b"key%05d" % i, b"x" * 20)
    data = bytearray((db_path / fmt.INDEX_FILE).read_bytes())
    metas = [dict(zip(fmt.META_FIELDS, fmt.META.unpack_from(data, n * fmt.PAGE_SIZE + fmt.PAGE_HDR),
                      strict=True)) for n in (0, 1)]
    m = max(metas, key=lambda x: x["txn"])
    assert m["magic"] == fmt.TREE_MAGIC and m["root"] >= 2
    root = data[m["root"] * fmt.PAGE_SIZE:(m["root"] + 1) * fmt.PAGE_SIZE]
    hdr = dict(zip(fmt.PAGE_HEADER_FIELDS, fmt.PAGE_HEADER.unpack_from(root), strict=True))
    want = fmt.PT_LEAF if hdr["level"] == 0 else fmt.PT_BRANCH
    assert fmt.page_verdict(root, m["root"], m["txn"], want) == 0
    assert fmt.page_verdict(root, m["root"] + 1, m["txn"], want) != 0     # misdirected
    assert fmt.page_verdict(root, m["root"], hdr["txn"] - 1, want) != 0   # from the future
    page = bytearray(root)
    page[100] ^= 1
    assert fmt.page_verdict(page, m["root"], m["txn"], want) == 1          # PV_CRC
    fmt.seal_page(page)
    assert fmt.crc32c(bytes(page[4:])) == struct.unpack_from("<I", page)[0]
