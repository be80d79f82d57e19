"""pastedb.dump / pastedb.load and `pastedb dump | pastedb load` (docs/DUMP.md):
round trips of arbitrary bytes, selections, cut and garbled input, the
100k-key round trip through the real CLI processes, and mdb_dump/mdb_load
interop (skipped without lmdb-utils)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pastedb
from pastedb.dump import DumpFormatError

MAX_KEY = pastedb.limits()["max_key_len"]
PASTEDB = [sys.executable, "-m", "pastedb"]


def dumped(db: pastedb.DB, **sel) -> bytes:
    f = io.BytesIO()
    pastedb.dump(db, f, **sel)
    return f.getvalue()


def fill(path: Path, data: dict[bytes, bytes]) -> None:
    with pastedb.open(path) as db, db.batch() as b:
        for k, v in data.items():
            b.put(k, v)


keys = st.binary(min_size=0, max_size=MAX_KEY)
values = st.binary(min_size=0, max_size=3000)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=40))
def test_round_trip_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        fill(Path(d) / "src", data)
        with pastedb.open(Path(d) / "src") as db:
            text = dumped(db)
        with pastedb.open(Path(d) / "dst") as db:
            st_ = pastedb.load(db, io.BytesIO(text), batch_records=7)
            assert st_.records == len(data)
            assert dict(db.items()) == data
            assert dumped(db) == text


def test_round_trip_edges(db_path, tmp_path):
    data = {b"": b"", b"k" * MAX_KEY: b"", b"\x00": b"\n" * 100, b"\n": b" ",
            b"DATA=END": b"HEADER=END", b"big": bytes(range(256)) * 4096}
    fill(db_path, data)
    with pastedb.open(db_path) as db:
        text = dumped(db)
    assert text.count(b"\n") == 6 + 2 * len(data) + 2      # header, records, DATA=END, trailer
    with pastedb.open(tmp_path / "b") as db:
        pastedb.load(db, io.BytesIO(text))
        assert dict(db.items()) == data


def test_load_overwrites_and_keeps_others(db, tmp_path):
    with pastedb.open(tmp_path / "src") as src:
        src[b"a"] = b"new"
        text = dumped(src)
    db[b"a"] = b"old"
    db[b"z"] = b"kept"
    pastedb.load(db, io.BytesIO(text))
    assert dict(db.items()) == {b"a": b"new", b"z": b"kept"}


def test_prefix_and_range(db, tmp_path):
    for k in (b"a1", b"a2", b"b1", b"b2", b"c1"):
        db[k] = k.upper()
    cases = [({"prefix": b"b"}, [b"b1", b"b2"]),
             ({"start": b"a2", "stop": b"c"}, [b"a2", b"b1", b"b2"]),
             ({"start": b"b2"}, [b"b2", b"c1"]),
             ({"prefix": b"zz"}, [])]
    for i, (sel, want) in enumerate(cases):
        with pastedb.open(tmp_path / f"d{i}") as out:
            pastedb.load(out, io.BytesIO(dumped(db, **sel)))
            assert list(out.items()) == [(k, k.upper()) for k in want]


def sample(tmp_path: Path) -> bytes:
    with pastedb.open(tmp_path / "sample") as db:
        for i in range(10):
            db[b"key%d" % i] = b"value%d" % i
        return dumped(db)


def test_every_truncation_is_an_error_and_applies_whole_batches_only(tmp_path):
    text = sample(tmp_path)
    for cut in range(len(text)):
        path = tmp_path / f"cut{cut}"
        with pastedb.open(path) as db:
            with pytest.raises(DumpFormatError, match="truncated|trailer|garbled|not a dump|empty"):
                pastedb.load(db, io.BytesIO(text[:cut]), batch_records=3)
            got = dict(db.items())
        # Only whole batches of 3, in key order, from the start.
        assert len(got) % 3 == 0 or len(got) == 10
        assert got == {b"key%d" % i: b"value%d" % i for i in range(len(got))}
        shutil.rmtree(path)


def test_truncation_reports_what_was_applied(db, tmp_path):
    text = sample(tmp_path)
    cut = text.index(b" " + b"key7".hex().encode())
    with pytest.raises(DumpFormatError) as e:
        pastedb.load(db, io.BytesIO(text[:cut]), batch_records=3)
    assert e.value.stats.records == 6 == len(db)


@pytest.mark.parametrize("old, new, message", [
    (b" 6b657931\n", b" 6b65793\n", "hex"),
    (b" 6b657931\n", b" 6b6579zz\n", "hex"),
    (b" 6b657931\n", b"6b657931\n", "expected a data line"),
    (b" 6b657931\n", b" 6b657932\n", "the trailer says"),
    (b"records:10", b"records:11", "the trailer says"),
    (b" 6b657931\n 76616c756531\n", b"", "the trailer says"),
    (b" 76616c756539\n", b"", "DATA=END after a key"),
    (b"crc32:", b"crc32:0", "the trailer says"),
    (b"HEADER=END\n", b"HEADER=END\npxat=1767225600000\n", "the trailer says"),
    (b"HEADER=END\n", b"HEADER=END\npxat=17672x\n", "an expiry line holds"),
    (b"HEADER=END\n", b"HEADER=END\npxat=1\npxat=2\n", "an expiry line"),
    (b"DATA=END\n", b"pxat=4102444800000\nDATA=END\n", "expiry line"),
    (b"format=bytevalue", b"format=print", "format=print"),
    (b"VERSION=3", b"VERSION=2", "expected VERSION=3"),
    (b"pastedb_dump=1", b"pastedb_dump=2", "newer than this pastedb"),
    (b"type=btree", b"dupsort=1", "duplicate keys"),
    (b"type=btree", b"no equals sign", "not a header line"),
])
def test_garbled_input(db, tmp_path, old, new, message):
    text = sample(tmp_path)
    assert old in text
    with pytest.raises(DumpFormatError, match=message):
        pastedb.load(db, io.BytesIO(text.replace(old, new)))


@pytest.mark.parametrize("text, message", [
    (b"", "empty input"),
    (b"\x00\xff garbage", "not a dump"),
    (b"VERSION=3\nHEADER=END\n 6b\n 76\nDATA=END\npastedb_end=x\n",
     "more data after the end"),
])
def test_not_a_dump(db, text, message):
    with pytest.raises(DumpFormatError, match=message):
        pastedb.load(db, io.BytesIO(text))


def test_data_after_the_trailer(db, tmp_path):
    with pytest.raises(DumpFormatError, match="line 29: more data after the end"):
        pastedb.load(db, io.BytesIO(sample(tmp_path) + b"more\n"))


def test_key_beyond_the_limit(db):
    text = (b"VERSION=3\nformat=bytevalue\nHEADER=END\n "
            + b"6b" * (MAX_KEY + 1) + b"\n 76\nDATA=END\n")
    with pytest.raises(DumpFormatError, match="line 4: key is"):
        pastedb.load(db, io.BytesIO(text))
    assert len(db) == 0


def test_mdb_dump_without_trailer_loads(db):
    # What mdb_dump writes: no pastedb header keyword, no trailer.
    text = (b"VERSION=3\nformat=bytevalue\ntype=btree\nmapsize=1048576\nmaxreaders=126\n"
            b"db_pagesize=4096\nHEADER=END\n 6b\n 76\nDATA=END\n")
    st_ = pastedb.load(db, io.BytesIO(text))
    assert st_.lmdb and dict(db.items()) == {b"k": b"v"}


# -- through the real CLI processes -------------------------------------------

def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PASTEDB, *map(str, args)], capture_output=True, **kw)


def test_cli_round_trip_100k(tmp_path):
    n = 100_000
    src = tmp_path / "src"
    with pastedb.open(src) as db:
        for lo in range(0, n, 10_000):
            with db.batch() as b:
                for i in range(lo, lo + 10_000):
                    b.put(b"key:%08d" % i, b"\x00value\n%d" % (i * 7))
    dump = subprocess.Popen([*PASTEDB, "dump", str(src)], stdout=subprocess.PIPE)
    load = subprocess.run([*PASTEDB, "load", str(tmp_path / "dst")], stdin=dump.stdout,
                          capture_output=True)
    dump.stdout.close()
    assert dump.wait() == 0
    assert load.returncode == 0, load.stderr
    assert b"loaded 100000 records" in load.stderr
    with pastedb.open(src) as a, pastedb.open(tmp_path / "dst") as b:
        assert len(b) == n
        assert list(a.items()) == list(b.items())


def test_cli_truncated_input_exit_1_nothing_created(tmp_path):
    text = sample(tmp_path)
    r = run("load", tmp_path / "new", input=text[: len(text) // 2])
    assert r.returncode == 1
    assert b"Traceback" not in r.stderr
    assert b"truncated input" in r.stderr and b"nothing was applied" in r.stderr
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sample"]      # no temporary left


def test_cli_garbled_input_into_existing_db(tmp_path):
    text = sample(tmp_path).replace(b" 6b657935\n", b" 6b6579xx\n")
    with pastedb.open(tmp_path / "old") as db:
        db[b"x"] = b"y"
    r = run("load", tmp_path / "old", "--batch", "2", input=text)
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    assert b"garbled input" in r.stderr and b"4 records were applied" in r.stderr
    with pastedb.open(tmp_path / "old") as db:
        assert len(db) == 5


def test_cli_dump_selection(tmp_path):
    with pastedb.open(tmp_path / "d") as db:
        for k in (b"a1", b"b1", b"b2", b"c"):
            db[k] = b"v"
    r = run("dump", tmp_path / "d", "--prefix", "b")
    assert r.returncode == 0
    assert r.stdout.count(b"\n 76\n") == 2 and b" 6231\n" in r.stdout and b" 6131\n" not in r.stdout
    r = run("dump", tmp_path / "d", "--hex", "--start", "6231", "--stop", "63")
    assert b"records:2," in r.stdout


def test_cli_dump_of_missing_db(tmp_path):
    r = run("dump", tmp_path / "none")
    assert r.returncode == 1 and b"no database" in r.stderr and b"Traceback" not in r.stderr


# -- LMDB's own tools -----------------------------------------------------------

needs_lmdb_utils = pytest.mark.skipif(
    not (shutil.which("mdb_load") and shutil.which("mdb_dump")),
    reason="lmdb-utils (mdb_dump, mdb_load) not installed")


@needs_lmdb_utils
def test_lmdb_interop_both_ways(tmp_path):
    data = {bytes([i, 255 - i]) * (i % 7 + 1): bytes(range(i)) for i in range(1, 256)}
    data[b"\n"] = b""
    # Beyond mdb_load's default 1 MiB map: the header's mapsize= must size it.
    data.update((b"bulk:%08d" % i, b"v" * 200) for i in range(20_000))
    fill(tmp_path / "p", data)
    ours = run("dump", tmp_path / "p").stdout
    (tmp_path / "m").mkdir()
    r = subprocess.run(["mdb_load", str(tmp_path / "m")], input=ours,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    theirs = subprocess.run(["mdb_dump", str(tmp_path / "m")], capture_output=True,
                            check=True).stdout
    assert b"pastedb_dump" not in theirs
    r = run("load", tmp_path / "back", input=theirs)
    assert r.returncode == 0 and b"from an LMDB dump" in r.stderr
    with pastedb.open(tmp_path / "back") as db:
        assert dict(db.items()) == data
        assert dumped(db) == ours
