"""The network server (core/server.pyx), end to end: a real `pastedb serve`
process on a free port, driven by redis-py (RESP2 and RESP3), by redis-cli,
and by raw sockets speaking -- or mangling -- RESP by hand.  Raw sockets
(srv.connect) only where a test sends malformed bytes; the hand-made RESP
connection (srv.raw, see conftest.RespConn) only where a test checks a reply
redis-py does not show as sent: Redis's exact error codes and strings,
replies its callbacks rewrite, RESP3 wire types.

Durability under kill -9 is the subject of test_server_crash.py; here the
server is only ever stopped cleanly (SIGTERM, SIGINT or SHUTDOWN, exit 0).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

import pastedb

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MIB = 1024 * 1024


# ---------------------------------------------------------------- fixtures
@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request) -> int:
    return request.param


@pytest.fixture
def srv(server):
    """One server with the default options."""
    return server()


@pytest.fixture
def r(srv, protocol):
    """A redis-py client of `srv`, once per protocol."""
    return srv.client(protocol=protocol)


def binary_value(n: int, seed: int) -> bytes:
    """n bytes starting with, and rich in, what RESP cares about: CR, LF, NUL."""
    return (b"\r\n\x00$3\r\n*" + random.Random(seed).randbytes(n))[:n]


def encode_command(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_until_error_or_close(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server answers to junk: the bytes up to the end of the first
    error line, or everything sent before it closed the connection.  Fails if
    the server neither answers with an error nor closes within `timeout`."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            break
        if not chunk:
            return data                                   # closed
        data += chunk
        if data.startswith(b"-") and b"\r\n" in data:
            return data
    pytest.fail(f"server neither replied with an error nor closed; got {data[:200]!r}")


def assert_serving(srv) -> None:
    """A fresh connection gets PONG."""
    r = srv.client(single_connection_client=True, register=False)
    try:
        assert r.ping() is True                           # the reply was PONG
    finally:
        r.close()


# ---------------------------------------------------------------- basics
def test_ping_echo(r, srv):
    assert r.ping() is True
    assert r.echo(b"hello\r\nworld\x00") == b"hello\r\nworld\x00"
    # By hand: redis-py's PING callback turns any reply into a bool, and it
    # strips the "ERR" code from errors.
    conn = srv.raw()
    assert conn.call("PING") == b"PONG"
    assert conn.call("PING", "msg") == b"msg"
    assert conn.call("ECHO", "") == b""
    assert conn.call("ping", "a", "b").startswith("ERR wrong number of arguments")
    conn.close()


def test_set_get_del_exists_strlen_type_dbsize(r):
    assert r.dbsize() == 0
    assert r.get("k") is None
    assert r.set("k", "value") is True
    assert r.get("k") == b"value"
    assert r.exists("k") == 1
    assert r.exists("k", "k", "missing") == 2
    assert r.strlen("k") == 5
    assert r.strlen("missing") == 0
    assert r.type("k") == b"string"
    assert r.type("missing") == b"none"
    assert r.set("k", "other") is True                    # overwrite
    assert r.get("k") == b"other"
    r.set("k2", "x")
    assert r.dbsize() == 2
    assert r.delete("k", "k2", "missing") == 2
    assert r.delete("k") == 0
    assert r.get("k") is None
    assert r.exists("k") == 0
    assert r.dbsize() == 0
    assert r.unlink("nothing") == 0


def test_set_nx_xx_get(r):
    assert r.set("k", "1", xx=True) is None               # XX on a missing key: not set
    assert r.get("k") is None
    assert r.set("k", "1", nx=True) is True
    assert r.set("k", "2", nx=True) is None               # NX on an existing key: not set
    assert r.get("k") == b"1"
    assert r.set("k", "3", xx=True) is True
    assert r.get("k") == b"3"
    assert r.set("k", "4", get=True) == b"3"               # GET returns the old value
    assert r.get("k") == b"4"
    assert r.set("new", "v", get=True) is None
    assert r.get("new") == b"v"
    assert r.set("k", "5", nx=True, get=True) == b"4"      # not set, old value returned
    assert r.get("k") == b"4"
    assert r.set("absent", "5", xx=True, get=True) is None
    assert r.exists("absent") == 0
    with pytest.raises(redis.ResponseError, match="syntax"):
        r.execute_command("SET", "k", "v", "NX", "XX")
    assert r.get("k") == b"4"


def test_setnx(r):
    assert r.setnx("k", "a") is True
    assert r.setnx("k", "b") is False
    assert r.get("k") == b"a"


def test_getdel(r):
    r.set("k", "v")
    assert r.getdel("k") == b"v"
    assert r.get("k") is None
    assert r.getdel("k") is None
    assert r.dbsize() == 0


def test_mset_mget(r):
    assert r.mset({"a": "1", "b": b"\x00\r\n", "c": ""}) is True
    assert r.mget("a", "b", "missing", "c") == [b"1", b"\x00\r\n", None, b""]
    assert r.mset({"a": "2"}) is True
    assert r.mget(["a"]) == [b"2"]
    with pytest.raises(redis.ResponseError, match="(?i)wrong number of arguments"):
        r.execute_command("MSET", "a", "1", "b")
    assert r.get("b") == b"\x00\r\n"                      # the bad MSET wrote nothing


def test_incr_decr(r):
    assert r.incr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decr("n") == 10
    assert r.decrby("n", 15) == -5
    assert r.incrby("n", -5) == -10
    assert r.get("n") == b"-10"
    assert r.decr("fresh") == -1
    r.set("n", "0")
    assert r.incr("n") == 1


@pytest.mark.parametrize("value", [b"abc", b"1.5", b" 1", b"1 ", b"+1", b"01", b"",
                                   b"9223372036854775808", b"1\x00"])
def test_incr_of_non_integer_value_is_an_error(r, value):
    r.set("n", value)
    for op in (lambda: r.incr("n"), lambda: r.decr("n"), lambda: r.incrby("n", 2),
               lambda: r.decrby("n", 2)):
        with pytest.raises(redis.ResponseError, match="not an integer"):
            op()
    assert r.get("n") == value                            # unchanged


def test_incrby_with_non_integer_argument_is_an_error(r):
    r.set("n", "5")
    for bad in ("x", "1.0", "", "99999999999999999999"):
        with pytest.raises(redis.ResponseError, match="not an integer"):
            r.execute_command("INCRBY", "n", bad)
        with pytest.raises(redis.ResponseError, match="not an integer"):
            r.execute_command("DECRBY", "n", bad)
    assert r.get("n") == b"5"


def test_incr_overflow_is_an_error(r):
    r.set("n", str(INT64_MAX))
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.incr("n")
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.incrby("n", 1)
    assert r.get("n") == str(INT64_MAX).encode()
    assert r.decr("n") == INT64_MAX - 1
    r.set("n", str(INT64_MIN))
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.decr("n")
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.incrby("n", -1)
    assert r.get("n") == str(INT64_MIN).encode()
    r.set("z", "0")
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.decrby("z", INT64_MIN)                          # -INT64_MIN is not an int64
    assert r.incrby("z", INT64_MIN) == INT64_MIN
    assert r.get("z") == str(INT64_MIN).encode()


def test_keys_glob_patterns(r):
    names = [b"hello", b"hallo", b"hxllo", b"hllo", b"heeeello", b"a*b", b"a?b", b"axb",
             b"user:1", b"user:2", b"user:10", b"bin\x00\r\nkey"]
    for k in names:
        r.set(k, b"v")

    def keys(pattern):
        return sorted(r.keys(pattern))

    assert keys("*") == sorted(names)
    assert keys("h?llo") == [b"hallo", b"hello", b"hxllo"]
    assert keys("h*llo") == [b"hallo", b"heeeello", b"hello", b"hllo", b"hxllo"]
    assert keys("h[ae]llo") == [b"hallo", b"hello"]
    assert keys("h[^e]llo") == [b"hallo", b"hxllo"]
    assert keys("h[a-b]llo") == [b"hallo"]
    assert keys("user:?") == [b"user:1", b"user:2"]
    assert keys("user:*") == [b"user:1", b"user:10", b"user:2"]
    assert keys(r"a\*b") == [b"a*b"]
    assert keys(r"a\?b") == [b"a?b"]
    assert keys("a?b") == [b"a*b", b"a?b", b"axb"]
    assert keys(b"bin\x00*") == [b"bin\x00\r\nkey"]
    assert keys("nomatch*") == []


@pytest.mark.parametrize("count", [None, 1, 7, 100, 10000])
def test_scan_returns_every_key_exactly_once(r, count):
    keys = {f"key:{i:05d}".encode() for i in range(600)} | {f"other:{i}".encode()
                                                             for i in range(150)}
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.set(k, b"v")
    pipe.execute()
    seen = list(r.scan_iter(count=count))
    assert len(seen) == len(set(seen))
    assert set(seen) == keys
    seen = list(r.scan_iter(match="key:*", count=count))
    assert len(seen) == len(set(seen))
    assert set(seen) == {k for k in keys if k.startswith(b"key:")}
    seen = list(r.scan_iter(match="other:1?", count=count))
    assert sorted(seen) == sorted(f"other:{i}".encode() for i in range(10, 20))


def test_scan_cursor_protocol(r):
    for i in range(25):
        r.set(f"k{i:02d}", "v")
    cursor, batch = r.scan(0, count=10)
    assert cursor != 0 and len(batch) == 10
    everything = list(batch)
    while cursor != 0:
        cursor, batch = r.scan(cursor, count=10)
        everything += batch
    assert sorted(everything) == sorted(f"k{i:02d}".encode() for i in range(25))
    cursor, batch = r.scan(0, count=1000)
    assert cursor == 0 and sorted(batch) == sorted(everything)
    with pytest.raises(redis.ResponseError):
        r.execute_command("SCAN", "notanumber")
    assert list(r.scan_iter(_type="hash")) == []         # walked, nothing returned
    assert r.dbsize() == 25


def test_flushdb(r):
    r.mset({f"k{i}": "v" for i in range(50)})
    assert r.dbsize() == 50
    assert r.flushdb() is True
    assert r.dbsize() == 0
    assert r.keys("*") == []
    assert r.get("k1") is None
    r.set("after", "1")
    assert r.keys("*") == [b"after"]
    assert r.flushall() is True
    assert r.dbsize() == 0


# ---------------------------------------------------------------- transactions
def test_transaction_reads_its_own_writes(r):
    r.set("old", "x")
    pipe = r.pipeline(transaction=True)
    pipe.set("a", "1")
    pipe.get("a")
    pipe.incr("a")
    pipe.incrby("a", 5)
    pipe.get("a")
    pipe.exists("a", "old", "missing")
    pipe.strlen("a")
    pipe.mget("a", "old", "missing")
    pipe.set("b", "2", get=True)
    pipe.set("b", "3", get=True)
    pipe.setnx("b", "4")
    pipe.getdel("old")
    pipe.get("old")
    pipe.delete("b")
    pipe.type("b")
    pipe.type("a")
    assert pipe.execute() == [True, b"1", 2, 7, b"7", 2, 1, [b"7", b"x", None], None, b"2",
                              False, b"x", None, 1, b"none", b"string"]
    assert r.get("a") == b"7"
    assert r.get("b") is None
    assert r.get("old") is None


def test_transaction_discard(srv, protocol):
    # By hand: MULTI/QUEUED/DISCARD on one connection and Redis's exact errors.
    conn = srv.raw()
    if protocol == 3:
        assert isinstance(conn.call("HELLO", "3"), dict)
    conn.call("SET", "k", "before")
    assert conn.call("MULTI") == b"OK"
    assert conn.call("SET", "k", "inside") == b"QUEUED"
    assert conn.call("SET", "other", "x") == b"QUEUED"
    assert conn.call("DISCARD") == b"OK"
    assert conn.call("GET", "k") == b"before"
    assert conn.call("EXISTS", "other") == 0
    assert conn.call("EXEC").startswith("ERR EXEC without MULTI")
    assert conn.call("DISCARD").startswith("ERR DISCARD without MULTI")
    assert conn.call("MULTI") == b"OK"
    assert conn.call("MULTI").startswith("ERR MULTI calls can not be nested")
    assert conn.call("DISCARD") == b"OK"
    conn.close()


def test_transaction_execabort_after_bad_queued_command(r, srv):
    pipe = r.pipeline(transaction=True)
    pipe.set("x", "1")
    pipe.execute_command("NOSUCHCOMMAND", "arg")
    pipe.set("y", "2")
    with pytest.raises(redis.ResponseError) as e:
        pipe.execute()
    assert "NOSUCHCOMMAND" in str(e.value) or "EXECABORT" in str(e.value)
    assert r.exists("x", "y") == 0
    # The same by hand, and with a wrong-arity command: EXEC says EXECABORT
    # (the exact error codes, which redis-py strips).
    conn = srv.raw()
    assert conn.call("MULTI") == b"OK"
    assert conn.call("SET", "x", "1") == b"QUEUED"
    assert conn.call("GET").startswith("ERR wrong number of arguments")
    assert conn.call("EXEC").startswith("EXECABORT")
    assert conn.call("EXISTS", "x") == 0
    assert conn.call("PING") == b"PONG"                    # no longer in MULTI
    conn.close()
    assert r.ping()


def test_transaction_runtime_error_does_not_abort_the_rest(r):
    r.set("text", "abc")
    pipe = r.pipeline(transaction=True)
    pipe.set("a", "1")
    pipe.incr("text")                                     # fails when it runs
    pipe.set("c", "3", ex=0)                              # invalid expire time: fails too
    pipe.set("d", "4")
    result = pipe.execute(raise_on_error=False)
    assert result[0] is True and result[3] is True
    assert isinstance(result[1], redis.ResponseError)
    assert isinstance(result[2], redis.ResponseError)
    assert r.mget("a", "text", "c", "d") == [b"1", b"abc", None, b"4"]


def test_transaction_dbsize_and_keys_see_own_writes(srv):
    r = srv.client()
    r.set("old", "x")
    pipe = r.pipeline(transaction=True)
    pipe.set("new", "1")
    pipe.dbsize()
    pipe.keys("*")
    pipe.delete("old")
    pipe.dbsize()
    pipe.keys("*")
    result = pipe.execute()
    result[2].sort()
    assert result == [True, 2, [b"new", b"old"], 1, 1, [b"new"]], \
        "commands inside MULTI must see the writes queued before them"


def test_transaction_flushdb_removes_keys_set_earlier_in_it(srv):
    r = srv.client()
    r.set("old", "x")
    pipe = r.pipeline(transaction=True)
    pipe.set("new", "1")
    pipe.flushdb()
    pipe.set("after", "2")
    assert pipe.execute() == [True, True, True]
    assert sorted(r.keys("*")) == [b"after"]
    assert r.get("new") is None


def test_pipeline_of_1000_commands(r):
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"k{i}", f"value-{i}" * (i % 7))
    assert pipe.execute() == [True] * 1000
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.get(f"k{i}")
    assert pipe.execute() == [(f"value-{i}" * (i % 7)).encode() for i in range(1000)]
    pipe = r.pipeline(transaction=False)
    for _ in range(1000):
        pipe.incr("counter")
    assert pipe.execute() == list(range(1, 1001))
    assert r.dbsize() == 1001


def test_pipeline_of_mixed_sizes_crossing_receive_windows(srv):
    """Values from 0 B to 300 KB, pipelined, so that SETs straddle the 64 KiB
    receive windows in every way; every value must read back exact."""
    r = srv.client()
    rng = random.Random(7)
    expected = {}
    for _round in range(3):
        pipe = r.pipeline(transaction=False)
        for _ in range(300):
            n = rng.choice([0, 1, 2, 100, 4095, 4096, 65535, 65536, 65537,
                            rng.randrange(200_000), rng.randrange(300_000)])
            key = f"k{rng.randrange(400)}".encode()
            value = rng.randbytes(n)
            expected[key] = value
            pipe.set(key, value)
        pipe.execute()
        for key, value in expected.items():
            assert r.get(key) == value, key
    srv.restart()
    r = srv.client()
    for key, value in expected.items():
        assert r.get(key) == value, key


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("size", [MIB, 20 * MIB], ids=["1MiB", "20MiB"])
def test_large_binary_values(r, size):
    value = binary_value(size, seed=size)
    assert b"\r\n" in value and b"\x00" in value
    assert r.set("big", value) is True
    assert r.strlen("big") == size
    assert r.get("big") == value
    r.set("small", "after")                               # the connection is still in sync
    assert r.get("small") == b"after"
    assert r.mget("big", "small") == [value, b"after"]


def test_binary_and_empty_values_and_keys(r):
    values = {
        b"crlf": b"\r\n",
        b"nul": b"\x00",
        b"mixed": b"a\r\nb\x00c\r\n\r\n$5\r\n*1\r\n",
        b"high": bytes(range(256)) * 4,
        b"empty": b"",
        b"key\r\nwith\x00junk": b"v",
        b"": b"empty key",
    }
    for k, v in values.items():
        assert r.set(k, v) is True
    for k, v in values.items():
        assert r.get(k) == v
        assert r.strlen(k) == len(v)
        assert r.exists(k) == 1
    assert r.get(b"empty") == b""                          # empty, not missing
    assert r.type(b"empty") == b"string"


def test_key_length_limit(r):
    limit = pastedb.limits()["max_key_len"]
    assert r.set(b"k" * limit, b"v") is True
    assert r.get(b"k" * limit) == b"v"
    with pytest.raises(redis.ResponseError, match="key too long"):
        r.set(b"k" * (limit + 1), b"v")
    assert r.get(b"k" * (limit + 1)) is None
    assert r.ping()


# ---------------------------------------------------------------- errors
def test_unknown_command_is_an_error_and_the_connection_survives(r):
    with pytest.raises(redis.ResponseError, match="unknown command 'FROBNICATE'"):
        r.execute_command("FROBNICATE", "a", "b")
    with pytest.raises(redis.ResponseError, match="unsupported command 'hset'"):
        r.execute_command("hset", "h", "f", "v")
    assert r.ping() is True
    r.set("k", "v")
    assert r.get("k") == b"v"


def test_wrong_arity_is_an_error(r):
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'set'"):
        r.execute_command("SET", "k")
    assert r.ping()


def test_set_with_a_bad_option_writes_nothing(r):
    # (SET's expiry options: tests/test_server_expiry.py)
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "FOREVER")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "PX")
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set' command"):
        r.execute_command("SET", "k", "v", "EX", "0")
    assert r.get("k") is None                             # nothing was written
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"


def test_select(r):
    assert r.select(0) is True
    assert r.select(15) is True                 # --databases 16 (tests/test_databases.py)
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.select(16)
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.execute_command("SELECT", "00")
    assert r.select(0) is True and r.ping()


# ---------------------------------------------------------------- connection
def test_client_setname_getname_id(srv, protocol):
    r = srv.client(protocol=protocol, single_connection_client=True)
    assert r.client_getname() is None
    assert r.client_setname("tester") is True
    assert r.client_getname() in (b"tester", "tester")
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    assert r.client_id() == cid                           # same connection, same id
    other = srv.client(protocol=protocol, single_connection_client=True)
    assert other.client_id() != cid
    assert other.client_getname() is None
    with pytest.raises(redis.ResponseError):
        r.client_setname("has space")


def test_hello3_map(srv):
    # By hand: the RESP3 and RESP2 wire encodings of a null reply.
    conn = srv.raw()
    cid = conn.call("CLIENT", "ID")
    reply = conn.call("HELLO", "3")
    assert isinstance(reply, dict), reply
    assert reply[b"server"] == b"redis"
    assert reply[b"proto"] == 3
    assert reply[b"id"] == cid
    assert reply[b"mode"] == b"standalone"
    assert reply[b"role"] == b"master"
    assert reply[b"modules"] == []
    assert tuple(int(x) for x in reply[b"version"].split(b".")) >= (6, 0, 0)
    conn.send_raw(RESP_GET_MISSING)
    assert conn.sock.recv(100) == b"_\r\n"                # RESP3 null
    reply = conn.call("HELLO", "2")
    assert isinstance(reply, list) and reply[reply.index(b"proto") + 1] == 2
    conn.send_raw(RESP_GET_MISSING)
    assert conn.sock.recv(100) == b"$-1\r\n"              # RESP2 null
    assert conn.call("HELLO", "4").startswith("NOPROTO")
    conn.close()
    r = srv.client(protocol=3, single_connection_client=True)
    reply = r.execute_command("HELLO", "3")
    assert reply[b"proto"] == 3 and reply[b"id"] == r.client_id()


RESP_GET_MISSING = b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n"


def test_config_get(r):
    assert r.config_get("save") in ({b"save": b""}, {"save": ""})
    assert r.config_get("appendonly") in ({b"appendonly": b"yes"}, {"appendonly": "yes"})
    assert r.config_get("appendfsync") in ({b"appendfsync": b"always"},
                                           {"appendfsync": "always"})
    both = r.config_get("append*")
    assert len(both) == 2
    assert r.config_get("nosuchthing") == {}
    assert r.config_set("save", "") is True              # the value it has
    with pytest.raises(redis.ResponseError, match="not supported by pastedb"):
        r.config_set("save", "900 1")


def test_info(r, srv):
    r.mset({"a": "1", "b": "2", "c": "3"})
    info = r.info()
    assert info["aof_enabled"] == 1
    assert info["loading"] == 0
    assert info["db0"]["keys"] == 3
    assert info["tcp_port"] == srv.port
    assert info["process_id"] == srv.pid
    assert info["connected_clients"] >= 1
    persistence = r.info("persistence")
    assert persistence["aof_enabled"] == 1 and persistence["ack_after_durable"] == 1
    assert "db0" not in persistence
    assert r.info("keyspace") == {"db0": {"keys": 3, "expires": 0, "avg_ttl": 0}}
    conn = srv.raw()                                      # the exact text, as sent
    raw = conn.call("INFO", "keyspace")
    assert raw == b"# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"
    raw = conn.call("INFO")
    for line in (b"# Server", b"# Clients", b"# Persistence", b"# Stats", b"# Keyspace",
                 b"aof_enabled:1", b"db0:keys=3,expires=0,avg_ttl=0"):
        assert line + b"\r\n" in raw
    conn.close()
    r.flushdb()
    assert "db0" not in r.info("keyspace")


def test_info_breakdown_accounts_for_the_loop_and_the_flusher(srv):
    # Where the time goes (INFO breakdown), counted from CONFIG RESETSTAT:
    # one client (the loop runs each barrier itself) and then eight at once
    # (the flusher runs them); every durable SET is counted, and the loop's
    # phases add up to no more than the time elapsed.
    import threading

    r = srv.client()
    r.config_resetstat()
    b = r.info("breakdown")
    assert b["breakdown_writes"] == 0 and b["breakdown_commands"] <= 2
    for i in range(50):
        r.set(f"one{i}", "v" * 100)

    def writer(n):
        c = srv.client()
        for i in range(100):
            c.set(f"w{n}-{i}", "v" * 1000)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b = r.info("breakdown")
    assert b["breakdown_writes"] == 850
    assert b["breakdown_commands"] >= 850
    assert b["loop_barriers"] >= 1 and b["loop_barrier_us"] > 0
    assert b["loop_barriers"] + b["flusher_barriers"] <= 850
    for phase in ("loop_wait_us", "loop_recv_us", "loop_exec_us", "loop_send_us"):
        assert b[phase] > 0, phase
    assert b["loop_append_us"] <= b["loop_exec_us"]
    named = sum(b[k] for k in ("loop_wait_us", "loop_recv_us", "loop_exec_us", "loop_send_us",
                               "loop_barrier_us"))
    assert named <= b["breakdown_us"] + 1000 and b["loop_other_us"] >= 0
    if b["flusher_barriers"]:
        assert b["flusher_barrier_us"] > 0
        assert b["flusher_barriers"] <= b["flusher_group_conns"]
    assert b["wakes"] <= b["flusher_barriers"]
    assert "breakdown_us" in r.info("all") and "breakdown_us" not in r.info()
    r.config_resetstat()
    assert r.info("breakdown")["breakdown_writes"] == 0


def test_time(r):
    before = time.time()
    seconds, micros = r.time()
    after = time.time()
    assert 0 <= micros < 1_000_000
    assert before - 1 <= seconds + micros / 1e6 <= after + 1


def test_command_count_and_info(srv):
    # RESP2: redis-py's RESP3 parser of COMMAND INFO wants Redis 7's ten fields
    # per command (ACL categories, tips, key specs, subcommands); we send six.
    r = srv.client()
    n = r.command_count()
    assert isinstance(n, int) and n >= 30
    info = r.execute_command("COMMAND", "INFO", "get", "set")
    arity = {name: entry["arity"] for name, entry in info.items()}
    assert arity == {"get": 2, "set": -3}


# ---------------------------------------------------------------- AUTH
def test_auth(server):
    # By hand: NOAUTH and WRONGPASS are different codes, one exception class in redis-py.
    srv = server("--requirepass", "s3cret")
    conn = srv.raw()
    for cmd in (("GET", "k"), ("SET", "k", "v"), ("DBSIZE",), ("KEYS", "*")):
        assert conn.call(*cmd).startswith("NOAUTH"), cmd
    assert conn.call("AUTH", "wrong").startswith("WRONGPASS")
    assert conn.call("AUTH", "nobody", "s3cret").startswith("WRONGPASS")
    assert conn.call("GET", "k").startswith("NOAUTH")
    assert conn.call("AUTH", "s3cret") == b"OK"
    assert conn.call("SET", "k", "v") == b"OK"
    assert conn.call("GET", "k") == b"v"
    conn.close()
    conn = srv.raw()
    assert conn.call("AUTH", "default", "s3cret") == b"OK"
    assert conn.call("GET", "k") == b"v"
    assert conn.call("RESET") == b"RESET"                  # RESET forgets AUTH
    assert conn.call("GET", "k").startswith("NOAUTH")
    conn.close()
    conn = srv.raw()
    assert conn.call("HELLO", "3").startswith("NOAUTH")
    assert conn.call("HELLO", "3", "AUTH", "default", "wrong").startswith("WRONGPASS")
    assert isinstance(conn.call("HELLO", "3", "AUTH", "default", "s3cret"), dict)
    assert conn.call("GET", "k") == b"v"
    conn.close()


def test_hello_auth_checks_the_username(server):
    srv = server("--requirepass", "s3cret")
    conn = srv.raw()                                      # by hand: WRONGPASS vs NOAUTH
    assert conn.call("HELLO", "3", "AUTH", "nobody", "s3cret").startswith("WRONGPASS")
    assert conn.call("GET", "k").startswith("NOAUTH")
    conn.close()


def test_auth_without_a_password_configured(srv):
    conn = srv.raw()                                      # by hand: the "ERR" code
    assert conn.call("AUTH", "anything").startswith("ERR")
    assert conn.call("PING") == b"PONG"
    conn.close()


def test_auth_with_redis_py_password(server, protocol):
    srv = server("--requirepass", "s3cret")
    r = srv.client(protocol=protocol, password="s3cret")
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    bad = srv.client(protocol=protocol, password="wrong")
    with pytest.raises(redis.AuthenticationError):
        bad.get("k")
    anonymous = srv.client(protocol=2)
    with pytest.raises(redis.AuthenticationError, match="(?i)auth"):
        anonymous.get("k")


# ---------------------------------------------------------------- maxclients
def test_maxclients(server):
    srv = server("--maxclients", "2")
    first = srv.client(single_connection_client=True)
    assert first.ping() is True
    # The readiness probe's connection may not be closed by the server yet.
    deadline = time.monotonic() + 10
    while first.info("clients")["connected_clients"] != 1:
        assert time.monotonic() < deadline, "the probe connection was never closed"
        time.sleep(0.02)
    second = srv.client(single_connection_client=True)
    assert second.ping() is True
    third = srv.connect()                                 # raw: the exact refusal, or a close
    answer = read_until_error_or_close(third)
    assert answer == b"" or answer.startswith(b"-ERR max number of clients reached")
    third.close()
    with pytest.raises((redis.ConnectionError, redis.ResponseError)):
        srv.client(protocol=2).ping()
    assert first.ping() is True                           # the two keep working
    assert second.ping() is True
    assert "rejected_connections" in first.info("stats")
    second.close()
    deadline = time.monotonic() + 10                      # a slot frees up again
    while True:
        try:
            conn = srv.client(single_connection_client=True, register=False)
        except redis.ConnectionError:
            pass
        else:
            try:
                if conn.ping() is True:
                    break
            except redis.ConnectionError:
                pass
            finally:
                conn.close()
        assert time.monotonic() < deadline, "the closed connection's slot never came back"
        time.sleep(0.05)
    first.close()


# ---------------------------------------------------------------- restart
def test_restart_keeps_data_and_the_embedded_api_sees_it(server):
    srv = server()
    r = srv.client()
    data = {f"key{i}".encode(): binary_value(i * 37, seed=i) for i in range(200)}
    data[b"big"] = binary_value(3 * MIB, seed=99)
    data[b"empty"] = b""
    r.mset(data)
    r.set("deleted", "x")
    r.delete("deleted")
    r.incrby("counter", 41)
    data[b"counter"] = b"41"
    srv.stop()                                            # asserts exit code 0

    srv.start()
    r = srv.client(protocol=3)
    assert r.dbsize() == len(data)
    for k, v in data.items():
        assert r.get(k) == v, k
    assert r.get("deleted") is None
    assert r.incr("counter") == 42
    data[b"counter"] = b"42"
    srv.stop()

    db = pastedb.open(srv.directory)
    try:
        assert dict(db.items()) == data
        db.put(b"from-api", b"embedded \x00\r\n")
        db.delete(b"key1")
    finally:
        db.close()
    del data[b"key1"]
    data[b"from-api"] = b"embedded \x00\r\n"

    srv.start()
    r = srv.client()
    assert r.get("from-api") == b"embedded \x00\r\n"
    assert r.get("key1") is None
    assert sorted(r.keys("*")) == sorted(data)
    for k, v in data.items():
        assert r.get(k) == v, k


def test_second_server_on_the_same_directory_is_refused(server):
    srv = server()
    proc = subprocess.run(
        [sys.executable, "-m", "pastedb", "serve", str(srv.directory), "--port", "0"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, timeout=30)
    assert proc.returncode != 0, proc.stderr
    assert srv.client().ping()


def test_sigterm_as_soon_as_the_port_accepts_exits_0(tmp_path):
    """A supervisor that sees the port open may stop the server at once."""
    for attempt in range(20):              # the window is narrow; 20 tries hit it
        port = free_tcp_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pastedb", "serve", str(tmp_path / f"db{attempt}"),
             "--port", str(port)],
            cwd=Path(__file__).resolve().parent.parent, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the server never listened"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        stderr = proc.stderr.read().decode()
        assert rc == 0, f"attempt {attempt}: exit code {rc} after SIGTERM:\n{stderr}"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shutdown_drains_and_exits_0(server, sig):
    srv = server()
    r = srv.client()
    r.set("k", "v")
    srv.stop(sig)                                         # asserts exit code 0
    assert "shut down cleanly" in srv.log()
    srv.start()
    assert srv.client().get("k") == b"v"


def test_shutdown_command(server):
    srv = server()
    assert srv.client().set("k", "v") is True
    conn = srv.raw()                                      # by hand: whatever bytes come back
    conn.send("SHUTDOWN")
    try:
        leftover = conn.sock.recv(100)
    except ConnectionResetError:
        leftover = b""
    assert leftover == b"" or leftover.startswith((b"+OK", b"-"))
    assert srv.proc.wait(timeout=30) == 0
    srv.start()
    assert srv.client().get("k") == b"v"


# ---------------------------------------------------------------- modes
def test_copy_mode(server):
    srv = server("--copy")
    r = srv.client()
    assert r.info("persistence")["receive_mode"] == "copy"
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    assert r.set("empty", b"") is True and r.get("empty") == b""
    odd = b"a\r\nb\x00c"
    assert r.set("odd", odd) is True and r.get("odd") == odd
    for size in (MIB, 20 * MIB):
        value = binary_value(size, seed=size + 1)
        assert r.set("big", value) is True
        assert r.get("big") == value
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"p{i}", b"%d" % i * (i % 50))
    assert pipe.execute() == [True] * 1000
    srv.restart()
    r = srv.client(protocol=3)
    assert r.get("k") == b"v" and r.get("odd") == odd and r.get("empty") == b""
    assert r.get("big") == binary_value(20 * MIB, seed=20 * MIB + 1)
    assert r.get("p999") == b"999" * 49


def test_sync_no(server):
    srv = server("--sync", "no")
    r = srv.client()
    assert r.config_get("appendfsync") in ({b"appendfsync": b"no"}, {"appendfsync": "no"})
    assert r.info("persistence")["ack_after_durable"] == 0
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"k{i}", f"v{i}")
    assert pipe.execute() == [True] * 500
    assert r.get("k499") == b"v499"
    assert r.incr("n") == 1
    srv.restart()                                          # a clean stop keeps everything
    r = srv.client()
    assert r.get("k499") == b"v499" and r.get("n") == b"1"
    assert r.dbsize() == 501


# ---------------------------------------------------------------- junk
JUNK = {
    "bad-multibulk-count": b"*abc\r\n",
    "negative-bulk-length": b"*1\r\n$-5\r\n",
    "inline-dollar-minus-5": b"$-5\r\n",
    "bulk-length-10e12": b"*1\r\n$1000000000000\r\n",
    "multibulk-count-10e12": b"*1000000000000\r\n",
    "no-crlf-after-bulk": b"*2\r\n$3\r\nGET\r\n$1\r\nkXY",
    "not-a-bulk-header": b"*2\r\n$3\r\nGET\r\n:1\r\n",
    "unbalanced-quotes": b'SET "k v\r\n',
    "inline-100KB-no-newline": b"A" * 100_000,
    "cr-without-lf": b"*1\r\n$4\rPING\r\n",
    "random-binary-1": random.Random(1).randbytes(4096) + b"\r\n",
    "random-binary-2": random.Random(2).randbytes(65536) + b"\r\n",
    "random-binary-3": b"*" + random.Random(3).randbytes(1000) + b"\r\n",
    "random-binary-4": b"*2\r\n$" + random.Random(4).randbytes(1000) + b"\r\n",
}


@pytest.mark.parametrize("name", list(JUNK))
def test_junk_gets_an_error_or_a_closed_connection(srv, name):
    bystander = srv.client(single_connection_client=True)   # connected before the junk
    assert bystander.set("k", "v") is True
    sock = srv.connect()
    sock.sendall(JUNK[name])
    answer = read_until_error_or_close(sock)
    assert answer == b"" or answer.startswith(b"-"), answer[:200]
    sock.close()
    assert_serving(srv)
    assert bystander.get("k") == b"v"
    bystander.close()


def test_junk_after_valid_commands_keeps_what_came_before(srv):
    sock = srv.connect()
    sock.sendall(encode_command("SET", "a", "1") + b"*abc\r\n" + encode_command("SET", "b", "2"))
    answer = b""
    sock.settimeout(10)
    while b"-" not in answer:
        chunk = sock.recv(100)
        if not chunk:
            break
        answer += chunk
    assert answer.startswith(b"+OK\r\n-ERR Protocol error")
    sock.close()
    r = srv.client()
    assert r.get("a") == b"1"
    assert r.get("b") is None                             # nothing after the junk ran


def test_client_vanishing_mid_value_writes_nothing(srv):
    for cut in (0, 1, 50, 99, 100, 101):
        sock = srv.connect()
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100\r\n" + b"x" * cut)
        sock.close()
        assert_serving(srv)
        assert srv.client().get("half") is None


def test_huge_bulk_header_is_refused_without_allocating_it(srv):
    baseline = srv.rss_kib()
    sock = srv.connect()
    sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$629145600\r\n")    # 600 MiB
    answer = read_until_error_or_close(sock)
    assert answer == b"" or answer.startswith(b"-"), answer
    rss = srv.rss_kib()
    assert rss < baseline + 64 * 1024, f"RSS grew from {baseline} KiB to {rss} KiB"
    assert rss < 300 * 1024
    sock.close()
    assert_serving(srv)
    assert srv.client().get("k") is None


def test_many_connections_and_interleaved_partial_commands(srv):
    """Requests dribbled in byte by byte from many clients at once."""
    socks = [srv.connect() for _ in range(20)]
    requests = [encode_command("SET", f"k{i}", f"value {i}" * i) for i in range(20)]
    for pos in range(max(len(q) for q in requests)):
        for sock, req in zip(socks, requests, strict=True):
            if pos < len(req):
                sock.sendall(req[pos:pos + 1])
    for sock in socks:
        sock.settimeout(10)
        assert sock.recv(100) == b"+OK\r\n"
        sock.close()
    r = srv.client()
    assert r.mget([f"k{i}" for i in range(20)]) == [(f"value {i}" * i).encode()
                                                     for i in range(20)]


def test_proto_max_bulk_len(server):
    srv = server("--proto-max-bulk-len", "1000")
    r = srv.client()
    assert r.set("k", b"x" * 1000) is True
    with pytest.raises((redis.ResponseError, redis.ConnectionError)):
        r.set("k", b"y" * 1001)
    assert srv.client().get("k") == b"x" * 1000
    assert_serving(srv)


def test_client_query_buffer_limit(server):
    srv = server("--client-query-buffer-limit", str(MIB))
    r = srv.client()
    assert r.set("k", b"x" * (MIB // 2)) is True
    sock = srv.connect()
    sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (2 * MIB))
    try:
        sock.sendall(b"y" * (2 * MIB))                   # the server may close first
    except OSError:
        pass
    answer = read_until_error_or_close(sock)
    assert answer == b"" or answer.startswith(b"-ERR"), answer
    sock.close()
    assert srv.client().get("k") == b"x" * (MIB // 2)


def test_half_gigabyte_bulk_header_within_the_limit(srv):
    """A 500 MiB bulk header is legal (the limit is 512 MiB): the server may
    reserve pool space for it, but not memory, and must reuse that space
    once the client gives up."""
    r = srv.client()
    baseline = srv.rss_kib()
    sizes = []
    for _ in range(3):
        sock = srv.connect()
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$524288000\r\n" + b"x" * 1000)
        assert r.ping()
        assert srv.rss_kib() < baseline + 64 * 1024
        sock.close()
        assert_serving(srv)
        sizes.append(r.info("persistence")["file_bytes"])
    assert sizes[2] == sizes[1], f"pool file keeps growing: {sizes}"
    assert r.get("k") is None


def test_unauthenticated_client_cannot_make_the_pool_grow(server):
    srv = server("--requirepass", "s3cret")
    r = srv.client(password="s3cret")
    before = r.info("persistence")["file_bytes"]
    sock = srv.connect()
    sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$524288000\r\n")
    time.sleep(0.1)
    sock.sendall(b"x" * 1000)                            # the value starts arriving
    time.sleep(0.1)
    sock.close()
    assert r.ping()
    after = r.info("persistence")["file_bytes"]
    assert after < before + 64 * MIB, f"pool file grew from {before} to {after} bytes"


def test_sigterm_with_a_client_that_does_not_read(server):
    """Shutdown drains replies, but only for a while: a client that stops
    reading must not keep the server up (it gives up after about 5 s)."""
    srv = server()
    r = srv.client()
    r.set("big", b"x" * MIB)
    sock = srv.connect()
    sock.sendall(encode_command("GET", "big") * 64)       # far more than socket buffers hold
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        sock.close()                                      # lets the server finish either way
    srv.proc.wait(timeout=30)
    assert rc == 0, "the server was still running 15 s after SIGTERM"
    srv.start()
    assert srv.client().get("big") == b"x" * MIB


# ---------------------------------------------------------------- redis-cli
@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not on PATH")
def test_redis_cli(srv):
    def cli(*args):
        proc = subprocess.run(["redis-cli", "-p", str(srv.port), *args],
                              capture_output=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.decode().strip()

    assert cli("set", "a", "b") == "OK"
    assert cli("get", "a") == "b"
    assert cli("ping") == "PONG"
    assert cli("dbsize") == "1"
    assert cli("-3", "get", "missing") == ""
    assert "ERR unknown command" in cli("frobnicate")


def test_save_inside_multi_is_refused_and_aborts_the_transaction(srv):
    # SAVE would commit the transaction's earlier writes on their own.
    r = srv.client()
    pipe = r.pipeline(transaction=True)
    pipe.set("tx-a", "1")
    pipe.save()
    with pytest.raises(redis.exceptions.ResponseError):
        pipe.execute()
    assert r.get("tx-a") is None
    assert r.ping()


@pytest.mark.parametrize("path, info", [("splice", "splice"), ("recv", "recv-mapping")])
def test_zero_copy_receive_paths(server, path, info):
    # Both zero-copy receive paths: splice() socket->pool file, and recv()
    # straight into the mapping.  Values of every size, across many windows,
    # and a restart.
    srv = server("--receive", path)
    r = srv.client()
    assert r.info("stats")["receive_path"] == info
    expect = {}
    pipe = r.pipeline(transaction=False)
    for i, size in enumerate([0, 1, 100, 1023, 4096, 70000, 300000, 2 * MIB] * 4):
        k = f"v{i}"
        expect[k] = binary_value(size, seed=i)
        pipe.set(k, expect[k])
    assert all(pipe.execute())
    srv.restart()
    r = srv.client()
    for k, v in expect.items():
        assert r.get(k) == v
