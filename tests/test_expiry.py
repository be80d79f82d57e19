"""Durable expiry: put(ttl=), expire(), ttl(), persist(), and what survives.

The engine's clock is the wall clock; tests move it with the private hooks
_set_clock (freeze at an absolute ms) and _set_clock_offset (run ahead), so
nothing here sleeps to let a key expire.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pastedb.core.btree import TreeFile

import pastedb
from pastedb import check
from pastedb.core import format as fmt

T0 = 1_900_000_000_000                  # a fixed "now" (ms since the epoch) for frozen clocks


def test_put_with_ttl_and_ttl(db):
    db._set_clock(T0)
    db.put(b"a", b"1", ttl=10)
    db.put(b"b", b"2")
    assert db.ttl(b"a") == 10.0
    assert db.expire_at_ms(b"a") == T0 + 10_000
    assert db.ttl(b"b") is None
    with pytest.raises(KeyError):
        db.ttl(b"nope")
    db.put(b"a", b"3")                  # a plain put clears the expiry, as Redis's SET
    assert db.ttl(b"a") is None


def test_ttl_zero_or_negative_deletes(db):
    db.put(b"a", b"1")
    db.put(b"a", b"2", ttl=0)
    assert b"a" not in db
    db.put(b"b", b"1")
    assert db.expire(b"b", -1) is True
    assert b"b" not in db
    assert db.expire(b"b", 5) is False  # absent


def test_expire_persist_rewrite_without_copying(db):
    db._set_clock(T0)
    db.put(b"k", b"v" * 5000)
    file_bytes = db.stats()["pool_file_bytes"]
    for i in range(200):
        assert db.expire(b"k", 100 + i)
    assert db.ttl(b"k") == 299.0
    assert db.persist(b"k") is True
    assert db.persist(b"k") is False
    assert db.ttl(b"k") is None
    assert db[b"k"] == b"v" * 5000
    # 200 rewrites of a 5000-byte value would be 1 MB of copies; records only.
    assert db.stats()["pool_file_bytes"] == file_bytes


def test_conditions_nx_xx_gt_lt(db):
    db._set_clock(T0)
    db.put(b"k", b"v")
    at = T0 + 50_000
    assert db._set_expiry(b"k", at, 2) is False          # XX: no expiry yet
    assert db._set_expiry(b"k", at, 3) is False          # GT: none counts as infinite
    assert db._set_expiry(b"k", at, 1) is True           # NX
    assert db._set_expiry(b"k", at + 1, 1) is False
    assert db._set_expiry(b"k", at - 1, 3) is False
    assert db._set_expiry(b"k", at + 1, 3) is True
    assert db._set_expiry(b"k", at + 5, 4) is False
    assert db._set_expiry(b"k", at - 5, 4) is True
    assert db.expire_at_ms(b"k") == at - 5


def test_expired_keys_are_invisible_everywhere(db):
    db._set_clock(T0)
    db._set_active_expire(False)
    for i in range(20):
        db.put(b"k%02d" % i, b"v%d" % i, ttl=(i + 1) if i % 2 else None)
    db.checkpoint()                    # half in the tree ...
    for i in range(20, 30):
        db.put(b"k%02d" % i, b"v%d" % i, ttl=1 if i % 2 else None)   # ... half pending
    assert len(db) == 30
    db._set_clock(T0 + 5_500)          # k01 (2 s), k03 (4 s) and the odd pending keys expired
    gone = {b"k01", b"k03"} | {b"k%02d" % i for i in range(21, 30, 2)}
    live = {b"k%02d" % i for i in range(30)} - gone
    assert len(db) == len(live)
    assert set(db.keys()) == live
    assert list(db.keys(reverse=True)) == sorted(live, reverse=True)
    assert set(db.keys(b"k00", b"k06")) == {b"k00", b"k02", b"k04", b"k05"}
    assert dict(db.items(prefix=b"k2")) == {k: b"v%d" % int(k[1:]) for k in live if
                                            k.startswith(b"k2")}
    assert len(list(db.values())) == len(live)
    for k in gone:
        assert k not in db
        assert db.get(k) is None
        with pytest.raises(KeyError):
            db[k]
        with pytest.raises(KeyError):
            db.ttl(k)
        assert db.delete(k) is False
        assert db.expire(k, 10) is False
    st = db.stats()
    assert st["keys"] == len(live)
    assert st["expires"] == sum(1 for k in live if int(k[1:]) % 2 and int(k[1:]) < 20)
    # A write over an expired key makes a fresh key.
    db.put(b"k01", b"again")
    assert db[b"k01"] == b"again" and db.ttl(b"k01") is None


def test_active_expiry_deletes_and_reclaims(db):
    db._set_clock(T0)
    for i in range(500):
        db.put(b"x%04d" % i, b"y" * 100, ttl=1)
    db.put(b"keep", b"v")
    db.checkpoint()
    assert db.stats()["index_keys"] == 501
    db._set_clock(T0 + 2000)
    deadline = time.monotonic() + 30
    while db.stats()["expired_keys"] < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert db.stats()["expired_keys"] == 500
    db.checkpoint()
    st = db.stats()
    assert st["index_keys"] == 1 and st["keys"] == 1 and st["expires"] == 0
    assert list(db.keys()) == [b"keep"]


def test_inactive_expiry_still_hides_and_lazy_deletes(db):
    db._set_clock(T0)
    db._set_active_expire(False)
    db.put(b"a", b"1", ttl=1)
    db._set_clock(T0 + 1000)
    time.sleep(0.1)
    assert db.stats()["expired_keys"] == 0       # nothing deleted it yet
    assert len(db) == 0
    assert db.get(b"a") is None                  # the read asks for its deletion
    deadline = time.monotonic() + 10
    while db.stats()["expired_keys"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert db.stats()["expired_keys"] == 1


def test_batch_put_with_ttl(db):
    db._set_clock(T0)
    db.put(b"old", b"x")
    with db.batch() as b:
        b.put(b"a", b"1", ttl=3)
        b.put(b"b", b"2")
        b.put(b"old", b"3", ttl=0)               # a delete
    assert db.ttl(b"a") == 3.0 and db.ttl(b"b") is None and b"old" not in db


def test_expiry_survives_reopen_checkpoint_and_repair(db_path):
    now = int(time.time() * 1000)
    db = pastedb.open(db_path)
    db.put(b"long", b"1", ttl=3600)
    db.put(b"short", b"2", ttl=3600)
    db.put(b"none", b"3")
    db.checkpoint()
    db.put(b"pending", b"4", ttl=7200)
    db._set_expiry(b"short", now - 1000 + 3_600_000)      # still in the future
    db.close()
    db = pastedb.open(db_path)
    assert 3590 < db.ttl(b"long") <= 3600
    assert 7190 < db.ttl(b"pending") <= 7200
    assert db.expire_at_ms(b"short") == now - 1000 + 3_600_000
    assert db.ttl(b"none") is None
    db._set_active_expire(False)
    db._set_clock_offset(7300)                  # everything with an expiry is due
    assert len(db) == 1
    db.close()
    res = check.verify(str(db_path))
    assert res.ok, res.problems
    db = pastedb.open(db_path)
    assert len(db) == 4                         # the real clock: nothing expired
    assert 3500 < db.ttl(b"long") <= 3600
    db.close()


def _v1_index(path, items, applied):
    """Write an index file of format version 1 (Refs of 40 bytes, no
    expire_ms) holding `items` in one leaf: what pastedb before expiry wrote."""
    leaf = bytearray(fmt.PAGE_SIZE)
    upper = fmt.PAGE_SIZE
    slots = []
    used = 0
    for key, ref in items:
        koff, voff, vlen, lsn, klen, vcrc = ref[:6]
        cell = struct.pack("<H", len(key)) + key + struct.pack("<QQQQII", koff, voff, vlen, lsn,
                                                               klen, vcrc)
        assert len(cell) == 2 + len(key) + fmt.REF_SIZE_V1
        upper -= len(cell)
        leaf[upper:upper + len(cell)] = cell
        slots.append(upper)
        used += len(cell) + 2
    struct.pack_into(f"<{len(slots)}H", leaf, fmt.PAGE_HDR, *slots)
    fmt.PAGE_HEADER.pack_into(leaf, 0, 0, 2, 1, fmt.PT_LEAF, 0, len(slots), upper, used, 0, 0)
    fmt.seal_page(leaf)
    assert fmt.page_verdict(bytes(leaf), 2, 1, fmt.PT_LEAF, fmt.REF_SIZE_V1) == 0
    metas = []
    for slot, txn, root, entries in ((0, 0, 0, 0), (1, 1, 2, len(items))):
        page = bytearray(fmt.PAGE_SIZE)
        fmt.PAGE_HEADER.pack_into(page, 0, 0, slot, txn, fmt.PT_META, 0, 0, fmt.PAGE_SIZE, 0, 0,
                                  0)
        fmt.META.pack_into(page, fmt.PAGE_HDR, fmt.TREE_MAGIC, fmt.BTREE_VERSION_V1,
                           fmt.PAGE_SIZE, txn, 3, entries, applied if txn else 0, 0, root,
                           1 if root else 0, 0, 0)
        fmt.seal_page(page)
        metas.append(bytes(page))
    with open(path, "wb") as f:
        f.write(metas[0] + metas[1] + bytes(leaf))


def test_version_1_index_opens_and_is_converted(db_path):
    db = pastedb.open(db_path)
    for i in range(30):
        db.put(b"key%02d" % i, b"value %d" % i)
    db.close()
    index = db_path / "index"
    with TreeFile(str(index), create=False, sync=False) as t:
        items = t.items()
        applied = t.applied_lsn
    assert all(ref[6] == 0 for _, ref in items)
    _v1_index(str(index), items, applied)
    with TreeFile(str(index), create=False, sync=False) as t:
        assert t.version == fmt.BTREE_VERSION_V1
        assert [k for k, _ in t.items()] == [k for k, _ in items]
        assert t.check() == []
    assert check.verify(str(db_path)).ok                # the checker reads version 1 too
    db = pastedb.open(db_path)
    assert dict(db.items()) == {b"key%02d" % i: b"value %d" % i for i in range(30)}
    assert db.ttl(b"key01") is None
    db.put(b"key01", b"new", ttl=100)
    db.close()
    with TreeFile(str(index), create=False, sync=False) as t:
        assert t.version == fmt.BTREE_VERSION
    assert not os.path.exists(str(index) + ".upgrade")
    db = pastedb.open(db_path)
    assert db[b"key01"] == b"new" and 90 < db.ttl(b"key01") <= 100
    db.close()


def _log_records(pool: bytes):
    """(offset, fields) of every record of the chain in force."""
    _, sb0 = fmt.superblock_slot(pool[:fmt.HEADER_SIZE], 0)
    _, sb1 = fmt.superblock_slot(pool[:fmt.HEADER_SIZE], 1)
    sb = max((s for s in (sb0, sb1) if s), key=lambda s: s["seq"])
    off = sb["log_head_off"]
    out = []
    for i in range(fmt.CHUNK_SLOTS):
        f = dict(zip(fmt.REC_FIELDS, fmt.REC.unpack_from(pool, off + i * fmt.REC_SIZE),
                     strict=True))
        if f["lsn"] == 0:
            break
        out.append((off + i * fmt.REC_SIZE, f))
    return out


def test_checker_catches_a_damaged_expiry(tmp_path):
    db = pastedb.open(tmp_path / "db", persist="crashsim", sync=False)
    db.put(b"plain", b"1")
    db.put(b"volatile", b"2", ttl=600)
    db.sync()
    db.put(b"after", b"3")             # says the volatile record had been made durable
    db.sync()
    img = tmp_path / "img"
    img.mkdir()
    db._crash_image(img, 1, keep=1.0, torn=0.0)
    db.close()
    assert check.verify(str(img)).ok
    pool = bytearray((img / "pool").read_bytes())
    recs = [(off, f) for off, f in _log_records(bytes(pool)) if f["expire_ms"]]
    assert len(recs) == 1
    off, f = recs[0]
    assert fmt.record_verdict(bytes(pool), off, f["lsn"]) == fmt.RV_OK
    at = off + fmt.REC.size - 8                 # expire_ms: the record's last field
    assert struct.unpack_from("<Q", pool, at)[0] == f["expire_ms"]
    pool[at + 2] ^= 0x10                        # a different expiry time, same record
    (img / "pool").write_bytes(bytes(pool))
    assert fmt.record_verdict(bytes(pool), off, f["lsn"]) == fmt.RV_BAD_CRC
    res = check.verify(str(img))
    assert not res.ok
    assert any("crc" in p.message.lower() or "checksum" in p.message.lower()
               for p in res.problems), [p.message for p in res.problems]


# ------------------------------------------------------------------ dump / load

def test_dump_writes_pxat_and_load_honours_it(tmp_path):
    import io
    src = pastedb.open(tmp_path / "src")
    src._set_clock(T0)
    src.put(b"a", b"1", ttl=60)
    src.put(b"b", b"2")
    src.put(b"c", b"3", ttl=0.5)
    out = io.BytesIO()
    assert pastedb.dump(src, out).records == 3
    src.close()
    text = out.getvalue()
    assert b"pxat=%d\n 61\n" % (T0 + 60_000) in text and b"pxat=%d\n 63\n" % (T0 + 500) in text
    assert text.count(b"pxat=") == 2
    dst = pastedb.open(tmp_path / "dst")
    dst._set_clock(T0 + 1000)                    # c's time has passed by the load
    dst.put(b"c", b"old")
    st = pastedb.load(dst, io.BytesIO(text))
    assert st.records == 3
    assert dict(dst.items()) == {b"a": b"1", b"b": b"2"}
    assert dst.expire_at_ms(b"a") == T0 + 60_000 and dst.ttl(b"b") is None
    dst.close()


# ------------------------------------------------------------------ crash images

def _value(key: bytes, n: int) -> bytes:
    body = b"%s|%d|" % (key, n) * 3
    return body + zlib.crc32(key + body).to_bytes(4, "little")


def test_crash_images_expired_never_back_unexpired_never_lost(tmp_path, crash_runs):
    """The writer's clock runs 1000 s behind: a ttl of 500 s is an expiry
    already past on the real clock the recovery reads with ("dead"), a ttl
    of 5000 s one still ahead ("alive").  Every power-loss image must hold
    the durable state plus a prefix of the later operations, with dead keys
    invisible and alive ones present with an expiry."""
    rnd = random.Random(77)
    db = pastedb.open(tmp_path / "db", persist="crashsim", sync=False)
    db._set_clock_offset(-1000)
    db._set_active_expire(False)        # the writer's own DELs would muddy the prefix
    durable: dict = {}
    since: list = []

    def apply(state, op):
        if op[0] == "put":
            state[op[1]] = (op[2], op[3])
        elif op[0] == "del":
            state.pop(op[1], None)
        elif op[1] in state:           # expire / persist of a key that exists
            state[op[1]] = (state[op[1]][0], op[2])

    def visible(state):
        return {k: v for k, (v, cls) in state.items() if cls != "dead"}

    taken = 0
    n = 0
    images = max(60, crash_runs // 3)
    while taken < images:
        key = b"k%02d" % rnd.randrange(16)
        x = rnd.random()
        n += 1
        if x < 0.5:
            cls = rnd.choice([None, "alive", "dead"])
            ttl = {None: None, "alive": 5000, "dead": 500}[cls]
            op = ("put", key, _value(key, n), cls)
            db.put(key, op[2], ttl=ttl)
        elif x < 0.65:
            op = ("del", key)
            if not db.delete(key):
                continue
        elif x < 0.85:
            cls = rnd.choice(["alive", "dead"])
            op = ("exp", key, cls)
            if not db.expire(key, 5000 if cls == "alive" else 500):
                continue
        else:
            op = ("exp", key, None)
            if not db.persist(key):
                continue
        since.append(op)
        if rnd.random() < 0.15:
            db.sync()
            for o in since:
                apply(durable, o)
            since = []
        if rnd.random() < 0.03:
            db.checkpoint()
            for o in since:
                apply(durable, o)
            since = []
        if since and rnd.random() < 0.4:
            d = tmp_path / f"img{taken}"
            d.mkdir()
            db._crash_image(d, taken)
            with pastedb.open(d, persist="none") as r:
                got = dict(r.items())
                ttls = {k: r.ttl(k) for k in got}
            def same(state, got=got, ttls=ttls):
                # visible keys and values, and for each: no expiry, or one
                # the writer set 5000 s ahead of its clock (1000 s behind)
                return visible(state) == got and all(
                    (ttls[k] is None) == (state[k][1] is None) and
                    (ttls[k] is None or 3000 < ttls[k] <= 4000) for k in got)

            state = dict(durable)
            ok = same(state)
            for op in since:
                if ok:
                    break
                apply(state, op)
                ok = same(state)
            assert ok, f"image {taken}: not the durable state plus a prefix"
            shutil.rmtree(d)
            taken += 1
    db.close()


# ------------------------------------------------------------------ kill -9

CHILD = r'''
import os, sys, pastedb
db = pastedb.open(sys.argv[1])
db._set_clock_offset(-1000)
os.write(1, b"READY\n")
i = 0
while True:
    k = b"k%05d" % i
    cls = i % 3
    db.put(k, b"v%d" % i, ttl=(None, 5000, 500)[cls])
    os.write(1, b"ACK %d\n" % i)
    i += 1
'''


def test_kill_9_expired_never_back_unexpired_never_lost(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"READY\n"
    acked = -1
    while acked < 600:
        line = proc.stdout.readline()
        assert line.startswith(b"ACK "), line
        acked = int(line.split()[1])
    proc.kill()
    proc.wait()
    with pastedb.open(path) as db:
        for i in range(acked + 1):
            k = b"k%05d" % i
            if i % 3 == 2:
                assert k not in db                     # expired on the real clock
            else:
                assert db[k] == b"v%d" % i
                t = db.ttl(k)
                assert (t is None) if i % 3 == 0 else (3000 < t <= 4000)


# ------------------------------------------------------------------ model

ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 7), st.one_of(st.none(), st.integers(-1, 30))),
    st.tuples(st.just("del"), st.integers(0, 7)),
    st.tuples(st.just("expire"), st.integers(0, 7), st.integers(-1, 30)),
    st.tuples(st.just("persist"), st.integers(0, 7)),
    st.tuples(st.just("tick"), st.integers(0, 15)),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("batch"), st.integers(0, 7), st.integers(0, 7), st.integers(1, 30)),
), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_model_with_a_controllable_clock(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("m")
    now = T0
    model: dict[bytes, tuple[bytes, int]] = {}        # key -> (value, expire_ms or 0)
    db = pastedb.open(path, persist="none")
    db._set_clock(now)

    def live():
        return {k: v for k, (v, e) in model.items() if e == 0 or e > now}

    try:
        for n, op in enumerate(ops):
            kind = op[0]
            if kind == "put":
                k, ttl = b"k%d" % op[1], op[2]
                v = b"v%d" % n
                db.put(k, v, ttl=ttl)
                if ttl is not None and ttl <= 0:
                    model.pop(k, None)
                else:
                    model[k] = (v, 0 if ttl is None else now + ttl * 1000)
            elif kind == "del":
                k = b"k%d" % op[1]
                assert db.delete(k) == (k in live())
                model.pop(k, None)
            elif kind == "expire":
                k, secs = b"k%d" % op[1], op[2]
                assert db.expire(k, secs) == (k in live())
                if k in live():
                    if secs <= 0:
                        del model[k]
                    else:
                        model[k] = (model[k][0], now + secs * 1000)
            elif kind == "persist":
                k = b"k%d" % op[1]
                had = k in live() and model[k][1] != 0
                assert db.persist(k) == had
                if had:
                    model[k] = (model[k][0], 0)
            elif kind == "tick":
                now += op[1] * 1000
                db._set_clock(now)
            elif kind == "checkpoint":
                db.checkpoint()
            elif kind == "reopen":
                db.close()
                db = pastedb.open(path, persist="none")
                db._set_clock(now)
            else:
                k1, k2, ttl = b"k%d" % op[1], b"k%d" % op[2], op[3]
                with db.batch() as b:
                    b.put(k1, b"b%d" % n, ttl=ttl)
                    b.delete(k2)
                model[k1] = (b"b%d" % n, now + ttl * 1000)
                model.pop(k2, None)
            want = live()
            assert len(db) == len(want)
            assert dict(db.items()) == want
            assert list(db.keys(reverse=True)) == sorted(want, reverse=True)
            for k in (b"k%d" % i for i in range(8)):
                if k in want:
                    e = model[k][1]
                    assert db.expire_at_ms(k) == e
                else:
                    assert k not in db
            assert db.stats()["expires"] == sum(1 for k in want if model[k][1])
    finally:
        db.close()
    shutil.rmtree(path)               # one directory an example: keep the run's disk small


# ------------------------------------------------------------------ space

def test_active_expiry_keeps_files_bounded_under_short_lived_keys(db_path):
    """Sessions: every key is new, lives one (engine) second, and is never
    read or deleted again.  Only active expiry deletes them; the checkpoints
    then release their segments for reuse, so the files stay near the size
    of the keys alive at once, not of everything ever written."""
    db = pastedb.open(db_path, sync=False)
    db._checkpoint_policy(every=4000, interval=0.05)
    now = T0
    db._set_clock(now)
    per_round, size, rounds = 4000, 2000, 30
    written = 0
    sizes = []
    for rnd in range(rounds):
        for i in range(per_round):
            db.put(b"session:%03d:%05d" % (rnd, i), os.urandom(size), ttl=1)
            written += size
        now += 2000
        db._set_clock(now)                     # this round's keys are all due
        deadline = time.monotonic() + 60
        while db.stats()["expired_keys"] < (rnd + 1) * per_round and time.monotonic() < deadline:
            time.sleep(0.01)
        assert db.stats()["expired_keys"] == (rnd + 1) * per_round
        sizes.append(db.stats()["pool_file_bytes"])
    db.checkpoint()
    st = db.stats()
    assert st["keys"] == 0 and st["index_keys"] == 0
    alive_at_once = per_round * (size + 20)
    assert written > 20 * alive_at_once
    # Bounded: the last rounds' file is no bigger than a fixed multiple of
    # what lives at once (plus the fixed slack the pool keeps), far below
    # what was written.
    bound = 3 * alive_at_once + 16 * 2 ** 20      # measured: 16 MiB for 228 MiB written
    assert max(sizes[rounds // 2:]) <= bound, (sizes, bound)
    assert st["freed_segments"] > 0 and st["reused_segments"] > 0
    db.close()


def test_repair_rebuilds_an_index_with_the_expiry_times(db_path):
    import subprocess
    import sys
    db = pastedb.open(db_path)
    db._set_clock(T0)
    db.put(b"a", b"1", ttl=3600)
    db.put(b"b", b"2")
    db.checkpoint()
    db.put(b"c", b"3", ttl=7200)
    db.close()
    os.unlink(db_path / "index")
    r = subprocess.run([sys.executable, "-m", "pastedb.check", str(db_path), "--repair"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    with pastedb.open(db_path) as db:
        db._set_clock(T0)
        assert db.expire_at_ms(b"a") == T0 + 3_600_000
        assert db.expire_at_ms(b"b") == 0
        assert db.expire_at_ms(b"c") == T0 + 7_200_000
    assert check.verify(str(db_path)).ok


def test_read_only_handle_sees_expiry_and_refuses_to_set_it(db_path):
    db = pastedb.open(db_path)
    db.put(b"a", b"1", ttl=3600)
    db.put(b"b", b"2")
    db.checkpoint()
    db.put(b"c", b"3", ttl=7200)
    with pastedb.open(db_path, readonly=True) as ro:
        assert 3500 < ro.ttl(b"a") <= 3600 and ro.ttl(b"b") is None
        assert 7100 < ro.ttl(b"c") <= 7200
        assert len(ro) == 3 and ro.stats()["expires"] == 2
        ro._set_clock_offset(5000)                 # a is due, c is not
        assert len(ro) == 2 and b"a" not in ro and ro.stats()["expires"] == 1
        with pytest.raises(pastedb.Error):
            ro.expire(b"b", 10)
        with pytest.raises(pastedb.Error):
            ro.persist(b"c")
    db.close()
