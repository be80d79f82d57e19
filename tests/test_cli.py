"""The everyday commands as real processes: stat, get, set, del, scan (dump
and load are in test_dump.py), their --help, exit codes and errors, and a
database held by a running server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pastedb

PASTEDB = [sys.executable, "-m", "pastedb"]


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PASTEDB, *map(str, args)], capture_output=True, **kw)


def ok(*args, **kw) -> bytes:
    r = run(*args, **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fails(*args, message: bytes, **kw) -> None:
    r = run(*args, **kw)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr


def test_set_get_del(db_path):
    ok("set", db_path, "k", "hello")
    assert ok("get", db_path, "k") == b"hello\n"
    assert ok("get", db_path, "k", "--raw") == b"hello"
    ok("set", db_path, "--hex", "00ff", "0a00")
    assert ok("get", db_path, "--hex", "00ff") == b"0a00\n"
    assert ok("get", db_path, "--hex", "00ff", "--raw") == b"\n\x00"
    ok("del", db_path, "k")
    fails("get", db_path, "k", message=b"no key 'k'")
    fails("del", db_path, "k", message=b"no key 'k'")
    with pastedb.open(db_path) as db:
        assert dict(db.items()) == {b"\x00\xff": b"\n\x00"}


def test_set_durable_and_visible_to_the_engine(db_path):
    ok("set", db_path, "caf\u00e9", "v")
    with pastedb.open(db_path) as db:
        assert db["caf\u00e9".encode()] == b"v"


def test_bad_input(db_path):
    ok("set", db_path, "k", "v")
    r = run("get", db_path, "--hex", "zz")
    assert r.returncode == 2 and b"not hex" in r.stderr and b"Traceback" not in r.stderr
    fails("set", db_path, "k" * (pastedb.limits()["max_key_len"] + 1), "v",
          message=b"the limit is")
    fails("get", db_path.parent / "missing", "k", message=b"no database")
    assert not (db_path.parent / "missing").exists()


def test_scan(db_path):
    with pastedb.open(db_path) as db:
        for k in (b"a1", b"a2", b"b1", b"b2", b"c1"):
            db[k] = k.upper()
        db[b"z\n\\\x00"] = b"bin"
    assert ok("scan", db_path).splitlines() == [b"a1", b"a2", b"b1", b"b2", b"c1",
                                               b"z\\x0a\\\\\\x00"]
    assert ok("scan", db_path, "--prefix", "b", "--values") == b"b1\tB1\nb2\tB2\n"
    assert ok("scan", db_path, "--start", "a2", "--stop", "c1").split() == [b"a2", b"b1", b"b2"]
    assert ok("scan", db_path, "--reverse", "--limit", "2", "--hex").split() == \
        [b"z\n\\\x00".hex().encode(), b"c1".hex().encode()]
    assert ok("scan", db_path, "--limit", "0") == b""
    assert ok("scan", db_path, "--hex", "--prefix", "7a", "--values") == \
        b"7a0a5c00\t" + b"bin".hex().encode() + b"\n"


def test_stat(db_path):
    with pastedb.open(db_path) as db:
        db[b"k"] = b"v" * 100
    st = json.loads(ok("stat", db_path, "--json"))
    assert st["keys"] == 1 and st["live_bytes"] >= 100
    text = ok("stat", db_path).decode()
    assert any(line.split()[:2] == ["keys", "1"] for line in text.splitlines())
    assert "file_bytes" in text and "MiB" in text


@pytest.mark.parametrize("command", ["stat", "get", "set", "del", "scan", "dump", "load", "backup"])
def test_help(command):
    out = ok(command, "--help")
    assert b"Usage:" in out and b"DIRECTORY" in out


def test_beside_a_running_server(server, tmp_path):
    """Reads open read-only and work beside the server (they see what it
    acknowledged); writes are refused with a clear message and change nothing."""
    srv = server(directory=tmp_path / "live")
    c = srv.client()
    c.set("k", "v")
    assert ok("get", tmp_path / "live", "k") == b"v\n"
    assert ok("scan", tmp_path / "live", "--values") == b"k\tv\n"
    st = json.loads(ok("stat", tmp_path / "live", "--json"))
    assert st["keys"] == 1 and st["readonly"] is True
    assert b"\n 6b\n 76\n" in ok("dump", tmp_path / "live")          # k -> v, hex
    c.set("k", "w")                        # acknowledged: the next read sees it
    assert ok("get", tmp_path / "live", "k") == b"w\n"
    for args in (("set", "k", "x"), ("del", "k")):
        fails(args[0], tmp_path / "live", *args[1:], message=b"open for writing in another process")
    fails("load", tmp_path / "live", input=b"", message=b"open for writing in another process")
    assert c.get("k") == b"w"
