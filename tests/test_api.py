"""The embedded API (pastedb.open / DB / Batch / Cursor), end to end on real files.

Durability itself is the subject of test_crash.py and test_recovery.py; here
most tests use persist="none" to stay fast, and the ones about durability
or group commit use the default backend.
"""

from __future__ import annotations

import array
import faulthandler
import mmap
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pastedb

MAX_KEY = 1024
MAX_VALUE = 512 * 1024 * 1024
BIG_COPY = 65536                 # engine.pyx: values this long are copied without the GIL


@pytest.fixture(autouse=True)
def deadlock_watchdog():
    """Several tests run threads against one handle: a deadlock would hang the
    run forever.  Dump every thread's stack and exit instead."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def open_fast(path, **options):
    """Open without barriers: these tests are about behaviour, not durability."""
    options.setdefault("persist", "none")
    return pastedb.open(path, **options)


def expected_range(keys, start=None, stop=None, prefix=None, reverse=False):
    """The spec's answer for keys()/values()/items(): Python's bytes order is
    exactly memcmp with the shorter prefix first."""
    keys = sorted(keys)
    if prefix is not None:
        out = [k for k in keys if k.startswith(prefix)]
    else:
        out = [k for k in keys
               if (start is None or k >= start) and (stop is None or k < stop)]
    return out[::-1] if reverse else out


def child_env():
    """Environment for a child interpreter that must import this same pastedb."""
    env = dict(os.environ)
    root = str(Path(pastedb.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(script, *args, timeout=60):
    """Run a Python snippet in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], env=child_env(),
                          timeout=timeout, capture_output=True, text=True)


# ------------------------------------------------------------------ open


def test_open_creates_the_directory(tmp_path):
    path = tmp_path / "a" / "b" / "db"
    with pastedb.open(path) as db:
        db[b"k"] = b"v"
    assert path.is_dir()
    with pastedb.open(str(path), create=False) as db:     # str and PathLike both work
        assert db[b"k"] == b"v"


def test_open_missing_with_create_false(tmp_path):
    path = tmp_path / "nope"
    with pytest.raises(FileNotFoundError):
        pastedb.open(path, create=False)
    assert not path.exists()


def test_open_empty_directory_with_create_false(tmp_path):
    with pytest.raises(FileNotFoundError):
        pastedb.open(tmp_path, create=False)
    # and nothing half-made is left that a later open would trip over
    with pastedb.open(tmp_path) as db:
        assert len(db) == 0


def test_open_path_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"not a database")
    with pytest.raises(OSError):
        pastedb.open(path)
    assert path.read_bytes() == b"not a database"


def test_unknown_option_is_a_type_error(db_path):
    with pytest.raises(TypeError, match="bogus"):
        pastedb.open(db_path, bogus=1)
    with pytest.raises(TypeError):
        pastedb.open(db_path, "positional-create")
    # the failed calls left no lock behind
    with pastedb.open(db_path) as db:
        db[b"k"] = b"v"


def test_bad_persist_value(db_path):
    with pytest.raises((ValueError, TypeError)):
        pastedb.open(db_path, persist="paper")


def test_open_returns_a_db(db):
    assert isinstance(db, pastedb.DB)
    assert repr(db).startswith("<pastedb.DB")


# ------------------------------------------------------------------ persist modes


@pytest.mark.parametrize("mode", ["none", "fdatasync", "msync", "pmem"])
def test_persist_modes_round_trip(db_path, mode, monkeypatch):
    if mode == "pmem":
        monkeypatch.setenv("PASTEDB_PMEM_EMULATE", "1")
    rng = random.Random(mode)
    expect = {}
    with pastedb.open(db_path, persist=mode) as db:
        assert db.stats()["persist"] == mode
        for _ in range(60):
            k = b"k%02d" % rng.randrange(30)
            v = rng.randbytes(rng.randrange(200))
            db[k] = v
            expect[k] = v
        for k in list(expect)[:5]:
            assert db.delete(k)
            del expect[k]
        big = rng.randbytes(300_000)                 # an extent of its own
        db[b"big"] = big
        expect[b"big"] = big
        with db.batch() as b:
            for i in range(10):
                b.put(b"batch%d" % i, b"v%d" % i)
                expect[b"batch%d" % i] = b"v%d" % i
        db.sync()
        assert dict(db.items()) == expect
    with pastedb.open(db_path, persist=mode) as db:
        assert db.stats()["persist"] == mode
        assert dict(db.items()) == expect
    # the on-disk format does not depend on the backend
    with pastedb.open(db_path, persist="none") as db:
        assert dict(db.items()) == expect


def test_persist_auto_picks_a_real_backend(db):
    assert db.stats()["persist"] in ("fdatasync", "pmem")


def test_pmem_on_a_file_system_without_dax(db_path, monkeypatch):
    monkeypatch.delenv("PASTEDB_PMEM_EMULATE", raising=False)
    with pastedb.open(db_path / "probe") as probe:
        if probe.stats()["persist"] == "pmem":
            pytest.skip("the temporary directory is on a DAX file system")
    with pytest.raises(pastedb.Error, match="DAX"):
        pastedb.open(db_path, persist="pmem")
    # the refusal left nothing in the way: the lock is free, a normal open works
    with pastedb.open(db_path) as db:
        db[b"k"] = b"v"
    with pastedb.open(db_path) as db:
        assert db[b"k"] == b"v"


# ------------------------------------------------------------------ mapping API


def test_mapping_protocol(db):
    assert len(db) == 0
    assert b"k" not in db
    with pytest.raises(KeyError) as ei:
        db[b"k"]
    assert ei.value.args == (b"k",)
    db[b"k"] = b"v"
    assert db[b"k"] == b"v"
    assert b"k" in db
    assert len(db) == 1
    db[b"k"] = b"v2"                                  # overwrite
    assert db[b"k"] == b"v2"
    assert len(db) == 1
    del db[b"k"]
    assert b"k" not in db
    assert len(db) == 0
    with pytest.raises(KeyError):
        del db[b"k"]


def test_put_get_delete(db):
    assert db.get(b"a") is None
    assert db.get(b"a", b"dflt") == b"dflt"
    sentinel = object()
    assert db.get(b"a", sentinel) is sentinel
    assert db.put(b"a", b"1") is None
    assert db.get(b"a") == b"1"
    assert db.get(b"a", b"dflt") == b"1"
    assert db.delete(b"a") is True
    assert db.delete(b"a") is False
    assert db.get(b"a") is None


def test_delete_of_absent_key_writes_nothing(db_path):
    with open_fast(db_path) as db:
        db[b"a"] = b"1"
        before = db.stats()["log_next_lsn"]
        assert db.delete(b"zz") is False
        assert db.stats()["log_next_lsn"] == before


def test_bytes_like_keys_and_values(db):
    db.put(bytearray(b"ba"), bytearray(b"bv"))
    db.put(memoryview(b"mk"), memoryview(b"mv"))
    db.put(b"xxslicexx"[2:7], memoryview(b"..value..")[2:7])
    db.put(memoryview(b"__sliced__")[2:8], b"s")
    db.put(array.array("B", b"arr"), array.array("B", b"arrv"))
    for key, value in [(b"ba", b"bv"), (b"mk", b"mv"), (b"slice", b"value"),
                       (b"sliced", b"s"), (b"arr", b"arrv")]:
        for k in (key, bytearray(key), memoryview(key)):
            got = db.get(k)
            assert type(got) is bytes
            assert got == value
            assert type(db[k]) is bytes and db[k] == value
            assert k in db
    assert type(next(iter(db.values()))) is bytes
    assert all(type(k) is bytes and type(v) is bytes for k, v in db.items())
    assert db.delete(bytearray(b"ba"))
    del db[memoryview(b"mk")]
    assert sorted(db) == [b"arr", b"slice", b"sliced"]


def test_values_are_copied_at_put(db):
    buf = bytearray(b"before")
    db[b"k"] = buf
    buf[:] = b"AFTER!"
    assert db[b"k"] == b"before"


def test_wide_item_memoryview(db):
    # A buffer of 4-byte items is stored as its raw bytes.
    a = array.array("i", [1, 2, 3])
    db[b"ints"] = a
    assert db[b"ints"] == a.tobytes()


@pytest.mark.parametrize("bad", ["str", 1, 1.5, None, [1], object(), True])
def test_non_bytes_keys_are_type_errors(db, bad):
    db[b"ok"] = b"v"
    ops = [
        lambda: db.put(bad, b"v"),
        lambda: db.get(bad),
        lambda: db.delete(bad),
        lambda: db[bad],
        lambda: db.__setitem__(bad, b"v"),
        lambda: db.__delitem__(bad),
        lambda: bad in db,
    ]
    if bad is not None:                               # None means "no bound" for ranges
        ops += [lambda: list(db.keys(start=bad)), lambda: list(db.keys(stop=bad)),
                lambda: list(db.items(prefix=bad))]
    for op in ops:
        with pytest.raises(TypeError):
            op()
    with pytest.raises(TypeError):
        with db.batch() as b:
            b.put(bad, b"v")
    with pytest.raises(TypeError):
        with db.batch() as b:
            b.delete(bad)
    assert dict(db.items()) == {b"ok": b"v"}


@pytest.mark.parametrize("bad", ["str", 1, None, [1], object()])
def test_non_bytes_values_are_type_errors(db, bad):
    with pytest.raises(TypeError):
        db.put(b"k", bad)
    with pytest.raises(TypeError):
        db[b"k"] = bad
    with pytest.raises(TypeError):
        with db.batch() as b:
            b.put(b"k", bad)
    assert b"k" not in db
    assert len(db) == 0


def test_non_contiguous_buffer_is_a_type_error(db):
    strided = memoryview(b"abcdefgh")[::2]
    with pytest.raises(TypeError):
        db.put(b"k", strided)
    with pytest.raises(TypeError):
        db.put(strided, b"v")
    assert len(db) == 0


# ------------------------------------------------------------------ limits


def test_limits():
    assert pastedb.limits() == {"max_key_len": MAX_KEY, "max_value_len": MAX_VALUE}


def test_longest_key(db_path):
    key = bytes(range(256)) * 4
    assert len(key) == MAX_KEY
    with pastedb.open(db_path) as db:
        db[key] = b"v"
        # A key starting with 0xFF is stored with a database prefix: 2 bytes less.
        db[b"\xff" * (MAX_KEY - 2)] = b"ff"
        with pytest.raises(ValueError, match="limit is 1022 for a key starting with byte 0xFF"):
            db[b"\xff" * MAX_KEY] = b"ff"
        assert db[key] == b"v"
        assert list(db) == [key, b"\xff" * (MAX_KEY - 2)]
    with pastedb.open(db_path) as db:
        assert db[key] == b"v"
        assert db.delete(key)
    with pastedb.open(db_path) as db:
        assert list(db) == [b"\xff" * (MAX_KEY - 2)]


def test_key_too_long_writes_nothing(db):
    db[b"keep"] = b"v"
    before = db.stats()
    key = b"k" * (MAX_KEY + 1)
    for op in (lambda: db.put(key, b"v"), lambda: db.__setitem__(key, b""),
               lambda: db.put(bytearray(key), b"v")):
        with pytest.raises(ValueError):
            op()
    with pytest.raises(ValueError):
        with db.batch() as b:
            b.put(b"in-batch", b"v")
            b.put(key, b"v")
    after = db.stats()
    assert after["log_next_lsn"] == before["log_next_lsn"]
    assert after["keys"] == 1 and after["live_bytes"] == before["live_bytes"]
    assert dict(db.items()) == {b"keep": b"v"}
    # Lookups of a key that cannot exist just miss.
    assert db.get(key) is None
    assert key not in db
    assert db.delete(key) is False


def test_value_too_long_writes_nothing(db):
    # An anonymous mapping one byte over the limit: address space only, no
    # memory is touched unless something copies it (which must not happen).
    big = mmap.mmap(-1, MAX_VALUE + 1)
    try:
        before = db.stats()
        with pytest.raises(ValueError):
            db.put(b"k", big)
        with pytest.raises(ValueError):
            db[b"k"] = memoryview(big)
        with pytest.raises(ValueError):
            with db.batch() as b:
                b.put(b"other", b"v")
                b.put(b"k", big)
        after = db.stats()
        assert after["log_next_lsn"] == before["log_next_lsn"]
        assert after["file_bytes"] == before["file_bytes"]
        assert len(db) == 0
    finally:
        big.close()


def test_large_values_round_trip(db_path):
    rng = random.Random(8)
    values = {
        b"8MiB": rng.randbytes(8 << 20),
        b"copy-1": rng.randbytes(BIG_COPY - 1),
        b"copy": rng.randbytes(BIG_COPY),
        b"copy+1": rng.randbytes(BIG_COPY + 1),
        b"quarter-extent+1": rng.randbytes((1 << 18) + 1),
        b"extent": rng.randbytes(1 << 20),
        b"small": b"s",
    }
    with pastedb.open(db_path) as db:
        for k, v in values.items():
            db[k] = v
        for k, v in values.items():
            assert db[k] == v
    with pastedb.open(db_path) as db:
        for k, v in values.items():
            assert db[k] == v
        assert dict(db.items()) == values
        assert db.stats()["live_bytes"] == sum(len(k) + len(v) for k, v in values.items())


@pytest.mark.slow
def test_value_at_the_limit(db_path):
    big = mmap.mmap(-1, MAX_VALUE)                  # zero pages: costs no memory to read
    try:
        big[-5:] = b"tail!"
        with pastedb.open(db_path) as db:
            db[b"max"] = big
        with pastedb.open(db_path) as db:
            got = db[b"max"]
            assert len(got) == MAX_VALUE and got[-5:] == b"tail!" and got[:5] == bytes(5)
            del got
    finally:
        big.close()
        shutil.rmtree(db_path, ignore_errors=True)          # half a GiB of pool file


def test_empty_key_and_value(db_path):
    with pastedb.open(db_path) as db:
        db[b"first"] = b"1"
        db[b""] = b"empty key"
        db[b"empty value"] = b""
        assert db[b""] == b"empty key"
        assert db[b"empty value"] == b""
        assert db.get(b"empty value", b"dflt") == b""
        assert b"" in db and b"empty value" in db
        assert list(db) == [b"", b"empty value", b"first"]
        db[b""] = b""
        assert db[b""] == b""
        assert len(db) == 3
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"": b"", b"empty value": b"", b"first": b"1"}
        assert db.delete(b"first")
        assert db.delete(b"")
        assert db.delete(b"") is False
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"empty value": b""}


def test_empty_key_and_value_as_first_write(db_path):
    # Regression: a 0-byte reservation before the session's first data extent
    # was handed offset 0 (the superblock), which replay rejects.
    with pastedb.open(db_path) as db:
        db[b""] = b""
        db[b"a"] = b"1"
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"": b"", b"a": b"1"}
        assert db.delete(b"")                           # the first write of this session
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"a": b"1"}
    with pastedb.open(db_path) as db:
        with db.batch() as b:                           # a batch whose first op is empty
            b.put(b"", b"")
            b.put(b"b", b"2")
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"": b"", b"a": b"1", b"b": b"2"}


# ------------------------------------------------------------------ order and ranges

ORDER_KEYS = sorted({
    b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x01", b"\x7f", b"\x80", b"\x80\x00",
    b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"ab", b"abc", b"abd", b"ac", b"b", b"ba",
    b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff",
    *(bytes([i]) + b"x" for i in range(0, 256, 7)),
})


@pytest.fixture
def ordered_db(db_path):
    rng = random.Random(5)
    keys = list(ORDER_KEYS)
    rng.shuffle(keys)
    with open_fast(db_path) as db:
        for k in keys:
            db[k] = b"v:" + k
        yield db


def test_order_is_memcmp_with_shorter_prefix_first(ordered_db):
    db = ordered_db
    assert list(db) == ORDER_KEYS
    assert list(db.keys()) == ORDER_KEYS
    assert list(db.values()) == [b"v:" + k for k in ORDER_KEYS]
    assert list(db.items()) == [(k, b"v:" + k) for k in ORDER_KEYS]
    assert list(db.keys(reverse=True)) == ORDER_KEYS[::-1]
    # spot checks of the rules themselves
    pos = {k: i for i, k in enumerate(ORDER_KEYS)}
    assert pos[b"a"] < pos[b"a\x00"] < pos[b"ab"] < pos[b"b"]
    assert pos[b"\x7f"] < pos[b"\x80"] < pos[b"\xff"]            # unsigned bytes
    assert pos[b""] == 0 and pos[b"\xff\xff\xff"] == len(ORDER_KEYS) - 1


def test_order_survives_reopen(db_path):
    rng = random.Random(11)
    keys = {rng.randbytes(rng.randrange(0, 12)) for _ in range(500)}
    with open_fast(db_path) as db:
        for k in keys:
            db[k] = b"v" + k[::-1]
    with open_fast(db_path) as db:
        assert list(db) == sorted(keys)
        assert list(db.items(reverse=True)) == [
            (k, b"v" + k[::-1]) for k in sorted(keys, reverse=True)]


BOUNDS = [None, b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"aa", b"ab", b"abc",
          b"abcd", b"b", b"\x80", b"\xff", b"\xff\xff", b"\xff\xff\xff", b"\xff\xff\xff\xff"]


def test_start_stop_ranges(ordered_db):
    db = ordered_db
    for start in BOUNDS:
        for stop in BOUNDS:
            for reverse in (False, True):
                want = expected_range(ORDER_KEYS, start, stop, reverse=reverse)
                assert list(db.keys(start, stop, reverse=reverse)) == want, (start, stop, reverse)
                assert list(db.keys(start=start, stop=stop, reverse=reverse)) == want
                assert list(db.values(start, stop, reverse=reverse)) == [b"v:" + k for k in want]
                assert list(db.items(start, stop, reverse=reverse)) == [
                    (k, b"v:" + k) for k in want]


def test_range_bounds_accept_bytes_like(ordered_db):
    db = ordered_db
    want = expected_range(ORDER_KEYS, b"a", b"b")
    assert list(db.keys(bytearray(b"a"), memoryview(b"b"))) == want
    assert list(db.keys(prefix=bytearray(b"a"))) == expected_range(ORDER_KEYS, prefix=b"a")


@pytest.mark.parametrize("prefix", [b"", b"\x00", b"a", b"a\xff", b"ab", b"abc", b"abcd",
                                    b"b", b"z", b"\x80", b"\xfe", b"\xff", b"\xff\xff",
                                    b"\xff\xff\xff", b"\xff\xff\xff\xff"])
def test_prefix_ranges(ordered_db, prefix):
    db = ordered_db
    for reverse in (False, True):
        want = expected_range(ORDER_KEYS, prefix=prefix, reverse=reverse)
        assert list(db.keys(prefix=prefix, reverse=reverse)) == want
        assert list(db.items(prefix=prefix, reverse=reverse)) == [(k, b"v:" + k) for k in want]
        assert list(db.values(prefix=prefix, reverse=reverse)) == [b"v:" + k for k in want]


def test_prefix_of_all_ff_bytes():
    # The prefix has no successor: the range is open-ended upwards and must
    # still stop at nothing but the end of the keys.
    assert expected_range(ORDER_KEYS, prefix=b"\xff\xff") == [
        b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"]


def test_prefix_with_start_or_stop_is_rejected(ordered_db):
    with pytest.raises((ValueError, TypeError)):
        list(ordered_db.keys(b"a", prefix=b"a"))
    with pytest.raises((ValueError, TypeError)):
        list(ordered_db.items(stop=b"a", prefix=b"a"))


def test_empty_database_iterates_nothing(db):
    assert list(db) == []
    assert list(db.items(reverse=True)) == []
    assert list(db.keys(prefix=b"\xff\xff")) == []
    assert list(db.values(b"a", b"b")) == []


def test_long_iteration(db_path):
    # More keys than one fetch of the cursor, both directions, with bounds.
    keys = [b"%05d" % i for i in range(2000)]
    with open_fast(db_path) as db:
        with db.batch() as b:
            for k in keys:
                b.put(k, k + b"!")
        assert list(db) == keys
        assert list(db.keys(reverse=True)) == keys[::-1]
        assert list(db.keys(b"00300", b"01700")) == keys[300:1700]
        assert list(db.keys(b"00300", b"01700", reverse=True)) == keys[300:1700][::-1]
        assert list(db.keys(prefix=b"01")) == keys[1000:2000]
        assert [v for v in db.values(prefix=b"00")] == [k + b"!" for k in keys[:1000]]


def test_cursor_sees_later_changes_ahead_of_it(db_path):
    with open_fast(db_path) as db:
        for i in range(0, 1000, 2):
            db[b"%04d" % i] = b"x"
        it = db.keys()
        seen = [next(it) for _ in range(10)]
        assert seen == [b"%04d" % i for i in range(0, 20, 2)]
        # change the part the cursor has not reached yet (well past its buffer)
        for i in range(900, 1000, 2):
            del db[b"%04d" % i]
        db[b"0901"] = b"new"
        rest = list(it)
        seen += rest
        assert seen == sorted(set(seen))
        assert b"0901" in seen
        assert not any(b"0902" <= k < b"1000" for k in seen)


def test_iteration_while_another_thread_writes(db_path):
    stable = [b"s%04d" % i for i in range(0, 3000, 3)]
    with open_fast(db_path) as db:
        with db.batch() as b:
            for k in stable:
                b.put(k, b"stable")
        stop = threading.Event()
        errors = []

        def writer():
            rng = random.Random(3)
            try:
                while not stop.is_set():
                    k = b"s%04d" % rng.choice([i for i in range(3000) if i % 3])
                    if rng.random() < 0.5:
                        db[k] = b"volatile"
                    else:
                        db.delete(k)
            except BaseException as e:          # pragma: no cover - reported below
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        try:
            deadline = time.monotonic() + 1.5
            passes = 0
            while time.monotonic() < deadline or passes < 3:
                for reverse in (False, True):
                    seen = list(db.items(reverse=reverse))
                    keys = [k for k, _ in seen]
                    want = sorted(set(keys), reverse=reverse)
                    assert keys == want                                  # strictly ordered
                    got_stable = [k for k, v in seen if v == b"stable"]
                    assert got_stable == (stable[::-1] if reverse else stable)
                    assert all(v in (b"stable", b"volatile") for _, v in seen)
                passes += 1
        finally:
            stop.set()
            t.join()
        assert not errors


# ------------------------------------------------------------------ batches


def test_batch_commits_on_exit(db_path):
    with pastedb.open(db_path) as db:
        db[b"gone"] = b"x"
        with db.batch() as b:
            b.put(b"a", b"1")
            b.put(bytearray(b"b"), memoryview(b"2"))
            b.delete(b"gone")
            b.delete(b"never-existed")
            assert len(b) == 4
            assert b"a" not in db                           # nothing before the exit
            assert db.get(b"gone") == b"x"
        assert dict(db.items()) == {b"a": b"1", b"b": b"2"}
        st = db.stats()
        assert st["log_durable_lsn"] == st["log_next_lsn"] - 1   # durable on exit
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"a": b"1", b"b": b"2"}


def test_batch_is_discarded_when_the_block_raises(db_path):
    with pastedb.open(db_path) as db:
        db[b"keep"] = b"old"
        before = db.stats()["log_next_lsn"]
        with pytest.raises(RuntimeError, match="abandon"):
            with db.batch() as b:
                b.put(b"keep", b"new")
                b.put(b"x", b"1")
                b.delete(b"keep")
                raise RuntimeError("abandon the batch")
        assert dict(db.items()) == {b"keep": b"old"}
        assert db.stats()["log_next_lsn"] == before
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"keep": b"old"}


def test_batch_applies_in_order(db):
    db[b"d"] = b"0"
    with db.batch() as b:
        b.put(b"k", b"1")
        b.put(b"k", b"2")
        b.put(b"d", b"1")
        b.delete(b"d")
        b.delete(b"p")
        b.put(b"p", b"again")
    assert dict(db.items()) == {b"k": b"2", b"p": b"again"}


def test_batch_explicit_commit_and_discard(db):
    b = db.batch()
    b.put(b"a", b"1")
    b.commit()
    assert db[b"a"] == b"1"
    with pytest.raises(pastedb.Error):
        b.put(b"b", b"2")                                 # already applied
    with pytest.raises(pastedb.Error):
        b.commit()
    b2 = db.batch()
    b2.put(b"c", b"3")
    b2.discard()
    with pytest.raises(pastedb.Error):
        b2.commit()
    assert b"c" not in db
    with db.batch():
        pass                                              # an empty batch is fine
    assert dict(db.items()) == {b"a": b"1"}


def test_batch_with_one_op_and_large_batches(db_path):
    with pastedb.open(db_path) as db:
        with db.batch() as b:
            b.put(b"solo", b"1")
        # more records than a log chunk holds: the batch spans a chunk link
        with db.batch() as b:
            for i in range(5000):
                b.put(b"n%05d" % i, b"%d" % i)
        with db.batch() as b:
            b.delete(b"solo")
        assert len(db) == 5000
    with pastedb.open(db_path) as db:
        assert len(db) == 5000
        assert b"solo" not in db
        assert db[b"n04999"] == b"4999"


def test_batch_key_limit_inside_a_block_that_goes_on(db):
    with db.batch() as b:
        b.put(b"a", b"1")
        with pytest.raises(ValueError):
            b.put(b"k" * (MAX_KEY + 1), b"v")
        b.put(b"b", b"2")
        assert len(b) == 2
    assert dict(db.items()) == {b"a": b"1", b"b": b"2"}


def test_batches_appear_whole_to_readers(db_path):
    keys = [b"g%02d" % i for i in range(40)]
    with open_fast(db_path) as db:
        with db.batch() as b:
            for k in keys:
                b.put(k, b"0")
        stop = threading.Event()

        def writer():
            gen = 0
            while not stop.is_set():
                gen += 1
                with db.batch() as b:
                    for k in keys:
                        b.put(k, b"%d" % gen)

        t = threading.Thread(target=writer)
        t.start()
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                # Reads in key order: batches apply whole and in order, so a
                # later key can never show an older generation.
                gens = [int(db[k]) for k in keys]
                assert gens == sorted(gens), gens
        finally:
            stop.set()
            t.join()


# ------------------------------------------------------------------ close, reopen, lock


def test_close_is_idempotent_and_use_after_close_raises(db_path):
    db = open_fast(db_path)
    db[b"k"] = b"v"
    cursor = db.keys()
    batch = db.batch()
    batch.put(b"b", b"1")
    db.close()
    db.close()
    assert db.closed
    ops = [
        lambda: db.put(b"k", b"v"), lambda: db.get(b"k"), lambda: db.delete(b"k"),
        lambda: db[b"k"], lambda: db.__setitem__(b"k", b"v"), lambda: db.__delitem__(b"k"),
        lambda: b"k" in db, lambda: len(db), lambda: list(db), lambda: list(db.keys()),
        lambda: list(db.values()), lambda: list(db.items(prefix=b"k")), lambda: db.batch(),
        lambda: db.sync(), lambda: db.checkpoint(), lambda: db.stats(),
        lambda: next(cursor), lambda: batch.commit(),
    ]
    for op in ops:
        with pytest.raises(pastedb.Error):
            op()
    with open_fast(db_path) as db2:
        assert dict(db2.items()) == {b"k": b"v"}


def test_context_manager(db_path):
    with pastedb.open(db_path) as db:
        assert not db.closed
        db[b"k"] = b"v"
    assert db.closed
    with pytest.raises(pastedb.Error):
        db[b"k"]
    with pytest.raises(RuntimeError):
        with pastedb.open(db_path) as db:
            db[b"k2"] = b"v2"
            raise RuntimeError
    assert db.closed
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"k": b"v", b"k2": b"v2"}


def test_reopen_keeps_everything(db_path):
    rng = random.Random(2)
    expect = {}
    for session in range(4):
        with pastedb.open(db_path, persist="none" if session % 2 else "fdatasync") as db:
            assert dict(db.items()) == expect
            for _ in range(100):
                k = b"k%d" % rng.randrange(40)
                if rng.random() < 0.25:
                    assert db.delete(k) == (k in expect)
                    expect.pop(k, None)
                else:
                    v = rng.randbytes(rng.randrange(50))
                    db[k] = v
                    expect[k] = v
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        assert len(db) == len(expect)


def test_second_handle_in_the_same_process_is_locked(db_path):
    with pastedb.open(db_path) as db:
        db[b"k"] = b"v"
        t0 = time.monotonic()
        with pytest.raises(pastedb.LockedError):
            pastedb.open(db_path)
        with pytest.raises(pastedb.LockedError):
            pastedb.open(db_path, create=False, sync=False, persist="none")
        assert time.monotonic() - t0 < 1.0                      # at once, no waiting
        assert issubclass(pastedb.LockedError, pastedb.Error)
        # the failed opens did not disturb the open handle
        db[b"k2"] = b"v2"
        assert db[b"k"] == b"v"
    with pastedb.open(db_path) as db:                          # released by close()
        assert dict(db.items()) == {b"k": b"v", b"k2": b"v2"}
    with pastedb.open(db_path) as db:
        pass


LOCK_PROBE = """
import sys, time, pastedb
t0 = time.monotonic()
try:
    pastedb.open(sys.argv[1]).close()
except pastedb.LockedError:
    print("locked", time.monotonic() - t0)
    sys.exit(3)
print("opened")
"""

LOCK_HOLDER = """
import sys, pastedb
db = pastedb.open(sys.argv[1])
db[b"from-child"] = b"yes"
print("open", flush=True)
sys.stdin.readline()
db.close()
"""


def test_locked_by_another_process(db_path):
    with pastedb.open(db_path) as db:
        db[b"k"] = b"v"
        r = run_child(LOCK_PROBE, db_path)
        assert r.returncode == 3, r.stdout + r.stderr
        assert float(r.stdout.split()[1]) < 1.0
    r = run_child(LOCK_PROBE, db_path)
    assert r.returncode == 0 and r.stdout.strip() == "opened", r.stderr


def test_lock_held_by_another_process_then_released(db_path):
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db_path)], env=child_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        t0 = time.monotonic()
        with pytest.raises(pastedb.LockedError):
            pastedb.open(db_path)
        assert time.monotonic() - t0 < 1.0
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pastedb.open(db_path) as db:
        assert db[b"from-child"] == b"yes"


def test_lock_released_when_the_holder_is_killed(db_path):
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db_path)], env=child_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pastedb.open(db_path) as db:
        assert db[b"from-child"] == b"yes"


# ------------------------------------------------------------------ fork


def test_db_inherited_across_fork_refuses_to_work(db_path):
    db = pastedb.open(db_path, persist="none")
    db[b"k"] = b"parent"
    checks = [
        lambda: db.get(b"k"), lambda: db[b"k"], lambda: db.put(b"k", b"child"),
        lambda: db.__setitem__(b"c", b"child"), lambda: db.delete(b"k"),
        lambda: b"k" in db, lambda: len(db), lambda: list(db), lambda: list(db.items()),
        lambda: db.batch(), lambda: db.sync(), lambda: db.checkpoint(), lambda: db.stats(),
        lambda: pastedb.open(db_path),                 # the parent holds the lock
    ]
    pid = os.fork()
    if pid == 0:                                        # pragma: no cover - child
        code = 0
        try:
            for i, check in enumerate(checks):
                try:
                    check()
                except pastedb.Error:
                    continue
                except BaseException:
                    code = 100 + i
                    break
                code = 1 + i
                break
            try:
                db.close()
            except pastedb.Error:
                pass
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, (f"child: check {code - 1} did not raise" if code < 100 else
                       f"child: check {code - 100} raised something other than pastedb.Error")
    # The parent's handle is intact and still holds the lock.
    try:
        assert db[b"k"] == b"parent"
        db[b"after"] = b"fork"
        with pytest.raises(pastedb.LockedError):
            pastedb.open(db_path)
    finally:
        db.close()
    with open_fast(db_path) as db:
        assert dict(db.items()) == {b"k": b"parent", b"after": b"fork"}


def test_forked_child_does_not_keep_the_lock(db_path):
    db = pastedb.open(db_path, persist="none")
    db[b"k"] = b"v"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # pragma: no cover - child
        try:
            os.close(w)
            os.read(r, 1)                               # live until the parent is done
        finally:
            os._exit(0)
    os.close(r)
    try:
        db.close()
        with pastedb.open(db_path, persist="none") as again:
            assert again[b"k"] == b"v"
    finally:
        os.close(w)
        os.waitpid(pid, 0)


# ------------------------------------------------------------------ sync=False


def test_sync_false_writes_are_durable_after_sync(db_path):
    with pastedb.open(db_path, sync=False) as db:
        st = db.stats()
        assert st["sync"] is False
        for i in range(50):
            db[b"k%d" % i] = b"v%d" % i
        del db[b"k0"]
        assert db[b"k1"] == b"v1" and len(db) == 49
        st = db.stats()
        assert st["log_durable_lsn"] < st["log_next_lsn"] - 1        # not yet
        db.sync()
        st = db.stats()
        assert st["log_durable_lsn"] == st["log_next_lsn"] - 1
    with pastedb.open(db_path) as db:
        assert len(db) == 49 and db[b"k49"] == b"v49"


def test_sync_on_a_sync_db_is_harmless(db):
    db.sync()
    db[b"k"] = b"v"
    db.sync()
    db.sync()
    assert db[b"k"] == b"v"


# ------------------------------------------------------------------ stats and checkpoint


def test_stats(db_path):
    with pastedb.open(db_path) as db:
        st = db.stats()
        for key in ("keys", "live_bytes", "file_bytes", "space_ratio", "persist",
                    "commit_groups", "recovered_records", "log_next_lsn", "log_durable_lsn"):
            assert key in st, key
        assert st["keys"] == 0 and st["live_bytes"] == 0
        db[b"abc"] = b"12345"
        db[b"x"] = b""
        st = db.stats()
        assert st["keys"] == 2 == len(db)
        assert st["live_bytes"] == 3 + 5 + 1
        db[b"abc"] = b"1"                                 # overwrite shrinks
        assert db.stats()["live_bytes"] == 3 + 1 + 1
        del db[b"x"]
        st = db.stats()
        assert st["keys"] == 1 and st["live_bytes"] == 4
        assert st["file_bytes"] == os.path.getsize(db_path / "pool") + os.path.getsize(db_path / "index")
        assert st["space_ratio"] == pytest.approx(st["file_bytes"] / st["live_bytes"])
        assert st["persist"] in ("fdatasync", "pmem")
        assert st["commit_groups"] >= 1
        assert st["recovered_records"] == 0
    with pastedb.open(db_path) as db:
        st = db.stats()
        assert st["keys"] == 1 and st["live_bytes"] == 4
        # close() checkpointed: the reopen read the index, replayed nothing
        assert st["recovered_records"] == 0
        assert st["index_pending"] == 0 and st["index_keys"] == 1


def test_fresh_database_in_auto_mode_wastes_no_space(tmp_path):
    with pastedb.open(tmp_path / "explicit", persist="fdatasync") as db:
        db[b"k"] = b"v"
        explicit = db.stats()["file_bytes"]
    with pastedb.open(tmp_path / "auto") as db:
        db[b"k"] = b"v"
        st = db.stats()
    if st["persist"] == "pmem":
        pytest.skip("the temporary directory is on a DAX file system")
    assert st["file_bytes"] == explicit


def test_checkpoint_then_reopen(db_path):
    rng = random.Random(4)
    expect = {}
    with open_fast(db_path) as db:
        for _ in range(3000):
            k = b"k%03d" % rng.randrange(300)
            if rng.random() < 0.2:
                db.delete(k)
                expect.pop(k, None)
            else:
                v = rng.randbytes(rng.randrange(64))
                db[k] = v
                expect[k] = v
        db.checkpoint()
        assert dict(db.items()) == expect
    with open_fast(db_path) as db:
        assert dict(db.items()) == expect
        # the checkpoint (and close) left nothing to replay
        assert db.stats()["recovered_records"] == 0
        # writes after a checkpoint, and a second checkpoint, keep working
        db[b"after"] = b"1"
        expect[b"after"] = b"1"
        db.checkpoint()
        db[b"after2"] = b"2"
        expect[b"after2"] = b"2"
        del db[b"after"]
        del expect[b"after"]
    with open_fast(db_path) as db:
        assert dict(db.items()) == expect
        # close() checkpointed the PUT and the DEL since the last checkpoint
        assert db.stats()["recovered_records"] == 0
        db.checkpoint()
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == expect
        # the checkpoint (and close) left nothing to replay
        assert db.stats()["recovered_records"] == 0


def test_checkpoint_of_an_empty_database(db_path):
    with pastedb.open(db_path) as db:
        db.checkpoint()
        db[b"k"] = b"v"
        del db[b"k"]
        db.checkpoint()
    with pastedb.open(db_path) as db:
        assert len(db) == 0
        assert db.stats()["recovered_records"] == 0


def test_checkpoint_while_writers_run(db_path):
    with open_fast(db_path) as db:
        stop = threading.Event()
        written = {}

        def writer(t):
            i = 0
            while not stop.is_set():
                k = b"t%d-%d" % (t, i % 50)
                db[k] = b"%d" % i
                written[k] = b"%d" % i
                i += 1

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(10):
                db.checkpoint()
                time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert dict(db.items()) == written
    with open_fast(db_path) as db:
        assert dict(db.items()) == written


# ------------------------------------------------------------------ threads


def test_threads_durable_puts_group_commit(db_path):
    nthreads, per_thread = 8, 200
    errors = []
    with pastedb.open(db_path) as db:
        start = threading.Barrier(nthreads)

        def worker(t):
            try:
                start.wait()
                for i in range(per_thread):
                    db.put(b"t%d-%03d" % (t, i), b"value %d %d" % (t, i))
            except BaseException as e:          # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        st = db.stats()
        assert st["keys"] == nthreads * per_thread
        assert 1 <= st["commit_groups"] < nthreads * per_thread
    with pastedb.open(db_path) as db:
        assert len(db) == nthreads * per_thread
        for t in range(nthreads):
            for i in range(per_thread):
                assert db[b"t%d-%03d" % (t, i)] == b"value %d %d" % (t, i)


def test_threads_mixed_operations(db_path):
    # Writers own disjoint keys, so each one's final state is known; readers,
    # iterators and a checkpointer run alongside.
    nwriters = 4
    finals = [dict() for _ in range(nwriters)]
    errors = []
    stop = threading.Event()
    with open_fast(db_path) as db:

        def writer(t):
            rng = random.Random(t)
            model = finals[t]
            try:
                for _ in range(400):
                    k = b"w%d-%02d" % (t, rng.randrange(30))
                    r = rng.random()
                    if r < 0.2:
                        assert db.delete(k) == (k in model)
                        model.pop(k, None)
                    elif r < 0.3:
                        ops = []
                        with db.batch() as b:
                            for _ in range(rng.randrange(1, 6)):
                                kk = b"w%d-%02d" % (t, rng.randrange(30))
                                vv = rng.randbytes(rng.randrange(100))
                                b.put(kk, vv)
                                ops.append((kk, vv))
                        model.update(ops)
                    else:
                        v = rng.randbytes(rng.choice([0, 10, 100, BIG_COPY + 10]))
                        db[k] = v
                        model[k] = v
                    assert db.get(k) == model.get(k)
            except BaseException as e:          # pragma: no cover - reported below
                errors.append(e)

        def reader():
            try:
                while not stop.is_set():
                    keys = list(db.keys(prefix=b"w"))
                    assert keys == sorted(set(keys))
                    len(db)
                    db.stats()
            except BaseException as e:          # pragma: no cover
                errors.append(e)

        def checkpointer():
            try:
                while not stop.is_set():
                    db.checkpoint()
                    time.sleep(0.02)
            except BaseException as e:          # pragma: no cover
                errors.append(e)

        writers = [threading.Thread(target=writer, args=(t,)) for t in range(nwriters)]
        others = [threading.Thread(target=reader), threading.Thread(target=checkpointer)]
        for t in writers + others:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in others:
            t.join()
        assert not errors, errors
        expect = {k: v for m in finals for k, v in m.items()}
        assert dict(db.items()) == expect
    with open_fast(db_path) as db:
        assert dict(db.items()) == expect


@pytest.mark.parametrize("sync", [True, False])
def test_close_while_threads_operate(db_path, sync):
    # close() from one thread while others put, get, scan, batch and delete:
    # every call either completes or raises pastedb.Error -- no other
    # exception, no crash -- and the database reopens with what was written.
    db = open_fast(db_path, sync=sync)
    db[b"big"] = b"x" * 100_000
    outcomes = []

    def work(t):
        i = 0
        while True:
            try:
                op = i % 5
                if op == 0:
                    db.put(b"k%d" % (i % 50), b"v" * (i % 300))
                elif op == 1:
                    assert db.get(b"big") == b"x" * 100_000
                elif op == 2:
                    list(db.items(prefix=b"k"))
                elif op == 3:
                    with db.batch() as b:
                        b.put(b"b%d" % t, b"1")
                        b.delete(b"k1")
                else:
                    db.delete(b"k%d" % (i % 50))
            except pastedb.Error:
                outcomes.append("closed")
                return
            except BaseException as e:          # pragma: no cover - reported below
                outcomes.append(e)
                return
            i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    db.close()
    for t in threads:
        t.join()
    assert outcomes == ["closed"] * 4
    with open_fast(db_path) as db:
        assert db[b"big"] == b"x" * 100_000


def put_while_mutating(db, key, buf, seconds):
    """put(key, buf) in a loop while another thread rewrites buf."""
    patterns = [bytes([i]) * len(buf) for i in range(4)]
    stop = time.monotonic() + seconds

    def mutate():
        i = 0
        while time.monotonic() < stop:
            buf[:] = patterns[i % 4]
            i += 1

    t = threading.Thread(target=mutate)
    t.start()
    try:
        while time.monotonic() < stop:
            db.put(key, buf)
    finally:
        t.join()


def test_value_mutated_during_put_does_not_break_the_database(db_path):
    # What a racing writer stores is its own business; it must not cost the
    # database anything else.
    for _ in range(3):
        shutil.rmtree(db_path, ignore_errors=True)
        with open_fast(db_path, sync=False) as db:
            db[b"before"] = b"1"
            put_while_mutating(db, b"racy", bytearray(1 << 20), 0.3)
            db[b"after"] = b"2"
        with pastedb.open(db_path, create=False) as db:
            assert db.get(b"before") == b"1"
            assert db.get(b"after") == b"2"
            assert len(db[b"racy"]) == 1 << 20


SYNC_FALSE_READER_WRITER = """
import sys, threading, time, pastedb
db = pastedb.open(sys.argv[1], sync=False, persist="none")
db.put(b"big", b"x" * (256 << 10))
stop = time.monotonic() + 0.5
def reader():
    while time.monotonic() < stop:
        assert len(db.get(b"big")) == 256 << 10
def writer():
    n = 0
    while time.monotonic() < stop:
        db.put(b"k%d" % (n % 100), b"v")
        n += 1
ts = [threading.Thread(target=reader), threading.Thread(target=writer)]
[t.start() for t in ts]
[t.join() for t in ts]
db.close()
print("done")
"""


def test_sync_false_writer_and_large_value_reader_threads(db_path):
    # Regression: sync=False puts waited for the index write lock holding the
    # GIL while a get of a >= 64 KiB value held the read lock and waited for
    # the GIL.  In a child process: a deadlock must fail the test, not hang the run.
    try:
        r = run_child(SYNC_FALSE_READER_WRITER, db_path, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("sync=False writer + large-value reader threads deadlocked")
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
