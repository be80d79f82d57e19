"""Redis's string and keyspace commands beyond the everyday ones, WATCH,
INFO, CONFIG SET, DEBUG and the error wording, over a real `pastedb serve`
process with redis-py (RESP2 and RESP3) and, where the exact bytes of a
reply or error matter, the hand-made RESP connection (srv.raw).

Expected replies are Redis 7's (checked against its documentation and its
own test suite's expectations)."""

from __future__ import annotations

import random
import threading

import pytest
import redis
from conftest import RespError

MIB = 1024 * 1024


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request) -> int:
    return request.param


@pytest.fixture
def srv(server):
    return server()


@pytest.fixture
def r(srv, protocol):
    return srv.client(protocol=protocol)


BINARY = b"\r\n\x00$3\r\n*\xff\xfe" + bytes(range(256))


def err(conn, *args) -> str:
    reply = conn.call(*args)
    assert isinstance(reply, RespError), f"{args!r} replied {reply!r}"
    return str(reply)


# ---------------------------------------------------------------- GETSET, APPEND
def test_getset(r):
    assert r.getset("k", "a") is None
    assert r.get("k") == b"a"
    assert r.getset("k", BINARY) == b"a"
    assert r.get("k") == BINARY


def test_append(r):
    assert r.append("k", "foo") == 3
    assert r.append("k", b"\x00bar") == 7
    assert r.get("k") == b"foo\x00bar"
    assert r.append("k", "") == 7
    assert r.append("bin", BINARY) == len(BINARY)
    assert r.append("bin", BINARY) == 2 * len(BINARY)
    assert r.get("bin") == BINARY * 2
    assert r.append("empty", "") == 0
    assert r.exists("empty") == 1                     # APPEND makes the key, as Redis


def test_append_large_values(r):
    chunk = random.Random(1).randbytes(300_000)
    for i in range(4):
        assert r.append("big", chunk) == (i + 1) * len(chunk)
    assert r.get("big") == chunk * 4


# ---------------------------------------------------------------- GETRANGE, SUBSTR
@pytest.mark.parametrize("start, end, expected", [
    (0, -1, b"Hello World"), (0, 3, b"Hell"), (-3, -1, b"rld"), (5, 3, b""),
    (0, 100, b"Hello World"), (-100, 2, b"Hel"), (-1, -5, b""), (-5, -1, b"World"),
    (100, 200, b""), (10, 10, b"d"),
])
def test_getrange(r, start, end, expected):
    r.set("k", "Hello World")
    assert r.getrange("k", start, end) == expected
    assert r.execute_command("SUBSTR", "k", start, end) == expected


def test_getrange_missing_key_and_errors(r, srv):
    assert r.getrange("nope", 0, -1) == b""
    r.set("bin", BINARY)
    assert r.getrange("bin", 2, 5) == BINARY[2:6]
    conn = srv.raw()
    assert err(conn, "GETRANGE", "bin", "x", "1") == "ERR value is not an integer or out of range"
    assert err(conn, "GETRANGE", "bin", "0") == \
        "ERR wrong number of arguments for 'getrange' command"


# ---------------------------------------------------------------- SETRANGE
def test_setrange(r):
    r.set("k", "Hello World")
    assert r.setrange("k", 6, "Redis") == 11
    assert r.get("k") == b"Hello Redis"
    assert r.setrange("k", 11, "!") == 12
    assert r.setrange("new", 3, b"\x00x") == 5
    assert r.get("new") == b"\x00\x00\x00\x00x"
    assert r.setrange("nothing", 5, "") == 0
    assert r.exists("nothing") == 0                   # an empty write makes no key
    assert r.setrange("k", 100, "") == 12
    assert r.get("k") == b"Hello Redis!"


def test_setrange_errors(srv):
    conn = srv.raw()
    assert err(conn, "SETRANGE", "k", "-1", "x") == "ERR offset is out of range"
    assert err(conn, "SETRANGE", "k", "abc", "x") == "ERR value is not an integer or out of range"
    assert err(conn, "SETRANGE", "k", str(600 * MIB), "x") == \
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    assert conn.call("EXISTS", "k") == 0


# ---------------------------------------------------------------- GETBIT / SETBIT / BITCOUNT
def test_bits(r):
    assert r.setbit("k", 7, 1) == 0
    assert r.get("k") == b"\x01" and r.getbit("k", 7) == 1 and r.getbit("k", 6) == 0
    assert r.getbit("k", 100) == 0 and r.getbit("missing", 3) == 0
    assert r.setbit("k", 7, 0) == 1 and r.get("k") == b"\x00"
    assert r.setbit("k", 20, 1) == 0 and r.get("k") == b"\x00\x00\x08"   # grown with zeros
    r.set("e", "x", ex=100)
    assert r.setbit("e", 0, 1) == 0
    assert r.get("e") == b"\xf8" and 0 < r.ttl("e") <= 100                # the expiry kept
    r.set("s", "foobar")                        # Redis's own BITCOUNT examples
    assert r.bitcount("s") == 26 and r.bitcount("s", 0, 0) == 4 and r.bitcount("s", 1, 1) == 6
    assert r.bitcount("s", 5, 30, "BIT") == 17 and r.bitcount("s", -2, -1) == 7
    assert r.bitcount("missing") == 0 and r.bitcount("s", 4, 2) == 0


def test_bit_errors(srv):
    conn = srv.raw()
    assert err(conn, "SETBIT", "k", "-1", "1") == "ERR bit offset is not an integer or out of range"
    assert err(conn, "SETBIT", "k", str(4 << 30), "1") == \
        "ERR bit offset is not an integer or out of range"
    assert err(conn, "SETBIT", "k", "0", "2") == "ERR bit is not an integer or out of range"
    assert err(conn, "GETBIT", "k", "x") == "ERR bit offset is not an integer or out of range"
    assert err(conn, "BITCOUNT", "k", "0") == "ERR syntax error"
    assert err(conn, "BITCOUNT", "k", "0", "1", "WORD") == "ERR syntax error"
    assert conn.call("EXISTS", "k") == 0


# ---------------------------------------------------------------- INCRBYFLOAT
def test_incrbyfloat(r):
    assert float(r.incrbyfloat("f", 10.5)) == 10.5
    assert float(r.incrbyfloat("f", 0.1)) == pytest.approx(10.6)
    assert float(r.incrbyfloat("f", -5)) == pytest.approx(5.6)
    r.set("i", 17179869184)
    assert r.incrbyfloat("i", 1.5) == 17179869185.5
    r.set("e", "5.0e3")
    assert r.incrbyfloat("e", "2.0e2") == 5200.0


def test_incrbyfloat_exact_text(srv):
    conn = srv.raw()
    assert conn.call("INCRBYFLOAT", "f", "10.50") == b"10.5"
    assert conn.call("INCRBYFLOAT", "f", "-10.5") == b"0"
    assert conn.call("INCRBYFLOAT", "f", "3") == b"3"
    assert conn.call("GET", "f") == b"3"
    conn.call("SET", "z", "0.1")
    assert conn.call("INCRBYFLOAT", "z", "-0.1") == b"0"        # no "-0"


def test_incrbyfloat_errors(srv):
    conn = srv.raw()
    conn.call("SET", "s", "abc")
    assert err(conn, "INCRBYFLOAT", "s", "1") == "ERR value is not a valid float"
    assert err(conn, "INCRBYFLOAT", "f", "x") == "ERR value is not a valid float"
    assert err(conn, "INCRBYFLOAT", "f", " 1") == "ERR value is not a valid float"
    assert err(conn, "INCRBYFLOAT", "f", "nan") == "ERR value is not a valid float"
    assert err(conn, "INCRBYFLOAT", "f", "+inf") == "ERR increment would produce NaN or Infinity"
    conn.call("SET", "nul", b"1\x002")
    assert err(conn, "INCRBYFLOAT", "nul", "1") == "ERR value is not a valid float"
    assert conn.call("GET", "s") == b"abc"
    assert conn.call("EXISTS", "f") == 0


# ---------------------------------------------------------------- MSETNX
def test_msetnx(r, srv):
    assert r.msetnx({"a": "1", "b": BINARY}) is True
    assert r.msetnx({"b": "x", "c": "3"}) is False
    assert r.mget("a", "b", "c") == [b"1", BINARY, None]
    conn = srv.raw()
    assert err(conn, "MSETNX", "a", "1", "b") == \
        "ERR wrong number of arguments for 'msetnx' command"


# ---------------------------------------------------------------- LCS
def test_lcs(r, srv):
    r.set("k1", "ohmytext")
    r.set("k2", "mynewtext")
    assert r.execute_command("LCS", "k1", "k2") == b"mytext"
    assert r.execute_command("LCS", "k1", "k2", "LEN") == 6
    conn = srv.raw()
    assert conn.call("LCS", "k1", "k2", "IDX") == [
        b"matches", [[[4, 7], [5, 8]], [[2, 3], [0, 1]]], b"len", 6]
    assert conn.call("LCS", "k1", "k2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN") == [
        b"matches", [[[4, 7], [5, 8], 4]], b"len", 6]
    assert conn.call("LCS", "k1", "nope") == b""
    assert conn.call("LCS", "nope", "nope2", "LEN") == 0
    assert err(conn, "LCS", "k1", "k2", "LEN", "IDX") == \
        "ERR If you want both the length and indexes, please just use IDX."
    assert err(conn, "LCS", "k1", "k2", "FOO") == "ERR syntax error"
    assert err(conn, "LCS", "k1", "k2", "MINMATCHLEN", "x") == \
        "ERR value is not an integer or out of range"


def test_lcs_resp3_idx_is_a_map(srv):
    conn = srv.raw()
    conn.call("HELLO", "3")
    conn.call("SET", "a", "abcde")
    conn.call("SET", "b", "xbcdx")
    assert conn.call("LCS", "a", "b", "IDX") == {b"matches": [[[1, 3], [1, 3]]], b"len": 3}


def lcs_len(a: bytes, b: bytes) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_lcs_binary_against_a_model(r):
    rng = random.Random(7)
    for _ in range(20):
        a = bytes(rng.choice(b"ab\x00\r\n") for _ in range(rng.randrange(0, 60)))
        b = bytes(rng.choice(b"ab\x00\r\n") for _ in range(rng.randrange(0, 60)))
        r.mset({"a": a, "b": b})
        common = r.execute_command("LCS", "a", "b")
        assert len(common) == lcs_len(a, b) == r.execute_command("LCS", "a", "b", "LEN")
        it = iter(a)
        assert all(ch in it for ch in common)         # a subsequence of a
        it = iter(b)
        assert all(ch in it for ch in common)         # and of b


def test_lcs_too_large_is_refused_and_the_server_goes_on(srv):
    conn = srv.raw()
    conn.call("SET", "a", b"x" * 5000)
    conn.call("SET", "b", b"y" * 5000)
    assert "not supported by pastedb" in err(conn, "LCS", "a", "b")
    assert conn.call("PING") == b"PONG"


# ---------------------------------------------------------------- STRLEN, TYPE, EXISTS, TOUCH
def test_strlen_type_exists_touch_unlink(r):
    r.set("a", BINARY)
    r.set("b", "")
    assert r.strlen("a") == len(BINARY) and r.strlen("b") == 0 and r.strlen("c") == 0
    assert r.type("a") in (b"string", "string") and r.type("c") in (b"none", "none")
    assert r.exists("a", "b", "c", "a") == 3
    assert r.touch("a", "b", "c") == 2
    assert r.unlink("a", "c") == 1
    assert r.exists("a") == 0


# ---------------------------------------------------------------- RENAME, RENAMENX, COPY
def test_rename(r, srv):
    r.set("a", BINARY)
    assert r.rename("a", "b") is True
    assert r.get("a") is None and r.get("b") == BINARY
    r.set("c", "other")
    assert r.rename("b", "c") is True                 # overwrites
    assert r.get("c") == BINARY and r.exists("b") == 0
    assert r.rename("c", "c") is True                 # same name: nothing changes
    assert r.get("c") == BINARY
    conn = srv.raw()
    assert err(conn, "RENAME", "nope", "x") == "ERR no such key"
    assert err(conn, "RENAMENX", "nope", "x") == "ERR no such key"


def test_renamenx(r):
    r.mset({"a": "1", "b": "2"})
    assert r.renamenx("a", "b") is False
    assert r.mget("a", "b") == [b"1", b"2"]
    assert r.renamenx("a", "c") is True
    assert r.mget("a", "c") == [None, b"1"]


def test_copy(r, srv):
    r.set("src", BINARY)
    assert r.copy("src", "dst") is True
    assert r.get("dst") == BINARY and r.get("src") == BINARY
    r.set("src", "new")
    assert r.copy("src", "dst") is False               # no REPLACE
    assert r.get("dst") == BINARY
    assert r.copy("src", "dst", replace=True) is True
    assert r.get("dst") == b"new"
    assert r.copy("nope", "dst2") is False
    assert r.copy("src", "d0", destination_db=0) is True
    conn = srv.raw()
    assert err(conn, "COPY", "src", "src") == "ERR source and destination objects are the same"
    assert err(conn, "COPY", "src", "x", "DB", "16") == "ERR DB index is out of range"
    assert r.copy("src", "src", destination_db=1) is True      # another database: allowed
    assert r.copy("src", "src", destination_db=1) is False     # there now
    assert err(conn, "COPY", "src", "x", "DB", "z") == "ERR value is not an integer or out of range"
    assert err(conn, "COPY", "src", "x", "FOO") == "ERR syntax error"


def test_rename_survives_kill_9(server):
    srv = server()
    c = srv.client()
    c.set("a", "v1")
    c.rename("a", "b")
    c.append("b", "+more")
    c.setrange("b", 0, "V")
    c.incrbyfloat("f", 1.5)
    srv.kill()
    srv.restart()
    c = srv.client()
    assert c.get("a") is None
    assert c.get("b") == b"V1+more"
    assert c.get("f") == b"1.5"


# ---------------------------------------------------------------- RANDOMKEY
def test_randomkey(r):
    assert r.randomkey() is None
    r.set("only", "1")
    assert r.randomkey() == b"only"
    keys = {b"foo", b"bar", b"baz", b"\x00bin", b"zzz"}
    r.mset({k: b"v" for k in keys})
    seen = {r.randomkey() for _ in range(300)}
    assert seen <= keys | {b"only"}
    assert len(seen) >= 3                               # not always the same key


@pytest.mark.parametrize("keys", [[b"foo", b"bar"], [b"a", b"b", b"c"],
                                  [b"key:%d" % i for i in range(30)]])
def test_randomkey_reaches_every_key(r, keys):
    r.mset({k: b"v" for k in keys})
    seen = {r.randomkey() for _ in range(200 * len(keys))}
    assert seen == set(keys)


def test_randomkey_inside_a_transaction_sees_its_deletes(r):
    r.set("a", "1")
    p = r.pipeline(transaction=True)
    p.delete("a")
    p.randomkey()
    assert p.execute() == [1, None]


# ---------------------------------------------------------------- SCAN
def test_scan_type_and_match(r):
    r.mset({f"key:{i}": i for i in range(50)})
    r.set("other", "x")
    keys = set(r.scan_iter(match="key:*", count=7))
    assert keys == {f"key:{i}".encode() for i in range(50)}
    assert set(r.scan_iter(_type="string", count=5)) == keys | {b"other"}
    assert set(r.scan_iter(_type="hash")) == set()


def test_scan_errors(srv):
    conn = srv.raw()
    assert err(conn, "SCAN", "x") == "ERR invalid cursor"
    assert err(conn, "SCAN", "0", "COUNT", "0") == "ERR syntax error"
    assert err(conn, "SCAN", "0", "COUNT", "x") == "ERR value is not an integer or out of range"
    assert err(conn, "SCAN", "0", "FOO", "bar") == "ERR syntax error"
    assert err(conn, "SCAN", "0", "MATCH") == "ERR syntax error"
    assert conn.call("SCAN", "0") == [b"0", []]


# ---------------------------------------------------------------- OBJECT, DEBUG
def test_object(r, srv):
    r.set("i", "12345")
    r.set("e", "short")
    r.set("raw", "x" * 45)
    assert r.object("encoding", "i") in (b"int", "int")
    assert r.object("encoding", "e") in (b"embstr", "embstr")
    assert r.object("encoding", "raw") in (b"raw", "raw")
    assert r.object("encoding", "nope") is None
    assert r.object("refcount", "e") == 1
    conn = srv.raw()
    assert "LFU" in err(conn, "OBJECT", "FREQ", "e")
    assert "access times" in err(conn, "OBJECT", "IDLETIME", "e")
    assert "Try OBJECT HELP" in err(conn, "OBJECT", "FOO", "e")
    assert isinstance(conn.call("OBJECT", "HELP"), list)


def test_debug(srv):
    conn = srv.raw()
    conn.call("SET", "k", "v")
    assert conn.call("DEBUG", "SLEEP", "0") == b"OK"
    assert conn.call("DEBUG", "SLEEP", "0.05") == b"OK"
    assert conn.call("DEBUG", "RELOAD") == b"OK"
    assert conn.call("GET", "k") == b"v"
    assert b"encoding:embstr" in conn.call("DEBUG", "OBJECT", "k")
    assert "not supported by pastedb" in err(conn, "DEBUG", "JMAP")


def test_debug_reload_keeps_everything_across_a_restart(server):
    srv = server()
    c = srv.client()
    c.mset({f"k{i}": i for i in range(100)})
    c.delete("k5")
    assert c.execute_command("DEBUG", "RELOAD") in (b"OK", "OK", True)
    c.set("after", "1")
    srv.kill()
    srv.restart()
    c = srv.client()
    assert c.dbsize() == 100
    assert c.get("k5") is None and c.get("k99") == b"99" and c.get("after") == b"1"


# ---------------------------------------------------------------- WATCH
def test_watch_unmodified_key_exec_runs(r):
    r.set("x", "1")
    with r.pipeline() as p:
        p.watch("x")
        p.multi()
        p.set("x", "2")
        assert p.execute() == [True]
    assert r.get("x") == b"2"


@pytest.mark.parametrize("write", [
    lambda o: o.set("x", "other"), lambda o: o.delete("x"), lambda o: o.append("x", "+"),
    lambda o: o.incr("n"), lambda o: o.rename("y", "x"), lambda o: o.flushall(),
    lambda o: o.setrange("x", 0, "z"), lambda o: o.incrbyfloat("n", 1),
    lambda o: o.copy("y", "x", replace=True), lambda o: o.getdel("x"),
])
def test_watch_key_modified_by_another_client_aborts_exec(srv, protocol, write):
    a = srv.client(protocol=protocol)
    b = srv.client(protocol=protocol)
    a.mset({"x": "1", "y": "2", "n": "5"})
    with a.pipeline() as p:
        p.watch("x", "n")
        write(b)
        p.multi()
        p.set("x", "mine")
        with pytest.raises(redis.WatchError):
            p.execute()
    assert a.get("x") != b"mine"


def test_watch_exec_nil_on_the_wire(srv):
    a, b = srv.raw(), srv.raw()
    a.call("SET", "x", "1")
    assert a.call("WATCH", "x", "y") == b"OK"
    b.call("SET", "y", "changed")
    assert a.call("MULTI") == b"OK"
    assert a.call("SET", "x", "2") == b"QUEUED"
    assert a.call("EXEC") is None
    assert a.call("GET", "x") == b"1"
    # after a failed EXEC nothing is watched any more
    assert a.call("MULTI") == b"OK"
    a.call("PING")
    assert a.call("EXEC") == [b"PONG"]


def test_watch_no_effect_writes_do_not_abort(srv):
    a, b = srv.raw(), srv.raw()
    a.call("DEL", "x")
    a.call("WATCH", "x")
    b.call("DEL", "x")                                  # nothing deleted
    b.call("SET", "x", "v", "XX")                       # nothing written
    b.call("FLUSHALL")                                  # x was not there
    a.call("MULTI")
    a.call("PING")
    assert a.call("EXEC") == [b"PONG"]


def test_unwatch_discard_and_reset(srv):
    a, b = srv.raw(), srv.raw()
    a.call("WATCH", "x")
    b.call("SET", "x", "1")
    assert a.call("UNWATCH") == b"OK"
    a.call("MULTI")
    a.call("PING")
    assert a.call("EXEC") == [b"PONG"]
    a.call("WATCH", "x")
    b.call("SET", "x", "2")
    a.call("MULTI")
    assert a.call("DISCARD") == b"OK"                 # clears the watch and its dirty flag
    a.call("MULTI")
    a.call("PING")
    assert a.call("EXEC") == [b"PONG"]
    a.call("WATCH", "x")
    b.call("SET", "x", "3")
    assert a.call("RESET") == b"RESET"
    a.call("MULTI")
    a.call("PING")
    assert a.call("EXEC") == [b"PONG"]


def test_watch_inside_multi_is_an_error(srv):
    a = srv.raw()
    a.call("MULTI")
    assert err(a, "WATCH", "x") == "ERR WATCH inside MULTI is not allowed"
    assert a.call("EXEC") == []                         # the transaction goes on


def test_watch_own_write_before_multi_aborts(srv):
    a = srv.raw()
    a.call("WATCH", "x")
    a.call("SET", "x", "1")
    a.call("MULTI")
    a.call("PING")
    assert a.call("EXEC") is None


def test_watch_with_concurrent_clients_is_a_correct_counter(srv):
    """Optimistic increments: every thread retries on WatchError; the final
    count is exact only if EXEC never ran over a concurrent change."""
    srv.client().set("counter", 0)
    threads, per = 4, 50
    retries = [0] * threads

    def work(n):
        c = srv.client()
        for _ in range(per):
            while True:
                with c.pipeline() as p:
                    try:
                        p.watch("counter")
                        v = int(p.get("counter"))
                        p.multi()
                        p.set("counter", v + 1)
                        p.execute()
                        break
                    except redis.WatchError:
                        retries[n] += 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert int(srv.client().get("counter")) == threads * per


def test_watching_clients_that_vanish_are_forgotten(srv):
    conns = [srv.raw() for _ in range(20)]
    for i, c in enumerate(conns):
        c.call("WATCH", *[f"k{j}" for j in range(i, i + 50)])
    for c in conns[::2]:
        c.close()
    other = srv.raw()
    for j in range(80):
        other.call("SET", f"k{j}", "v")                 # the closed ones' entries are gone
    info = other.call("INFO", "clients")
    assert b"watching_clients:10\r\n" in info
    for c in conns[1::2]:
        c.call("MULTI")
        assert c.call("EXEC") is None


# ---------------------------------------------------------------- INFO, CONFIG
def test_info_sections(srv):
    conn = srv.raw()
    default = conn.call("INFO").decode()
    for head in ("# Server", "# Clients", "# Memory", "# Persistence", "# Stats",
                 "# Replication", "# CPU", "# Keyspace"):
        assert head + "\r\n" in default
    assert "used_cpu_user:" in default and "used_memory:" in default
    assert "master_repl_offset:0" in default
    assert "rejected_calls" not in default
    every = conn.call("INFO", "everything").decode()
    assert "# Commandstats" in every and "cmdstat_info:calls=" in every
    cpu = conn.call("INFO", "CPU").decode()
    assert cpu.startswith("# CPU\r\n") and "used_memory" not in cpu
    both = conn.call("INFO", "cpu", "all").decode()
    assert both.count("used_cpu_user_children") == 1
    assert conn.call("INFO", "nosuchsection") == b""
    err(conn, "GET")
    stats = conn.call("INFO", "commandstats").decode()
    assert "cmdstat_get:calls=0,rejected_calls=1" in stats


def test_info_keyspace_line(r, srv):
    r.mset({"a": "1", "b": "2"})
    assert r.info("keyspace") == {"db0": {"keys": 2, "expires": 0, "avg_ttl": 0}}


def test_config_set(srv):
    conn = srv.raw()
    assert conn.call("CONFIG", "SET", "maxclients", "50") == b"OK"
    assert conn.call("CONFIG", "GET", "maxclients") == [b"maxclients", b"50"]
    assert conn.call("CONFIG", "SET", "client-output-buffer-limit", "normal 10mb 5mb 60") == b"OK"
    assert conn.call("CONFIG", "GET", "client-output-buffer-limit") == [
        b"client-output-buffer-limit", b"normal 10485760 5242880 60"]
    assert conn.call("CONFIG", "SET", "save", "", "appendonly", "yes") == b"OK"
    assert "not supported by pastedb" in err(conn, "CONFIG", "SET", "appendonly", "no")
    assert "not supported by pastedb" in err(conn, "CONFIG", "SET", "maxmemory", "1")
    assert err(conn, "CONFIG", "SET", "nosuch", "1") == \
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    assert err(conn, "CONFIG", "SET", "maxclients", "x").startswith(
        "ERR CONFIG SET failed (possibly related to argument 'maxclients')")
    assert err(conn, "CONFIG", "SET", "maxmemory", "bla").startswith(
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory')")
    assert err(conn, "CONFIG", "SET", "maxclients") == \
        "ERR wrong number of arguments for 'config|set' command"


def test_config_set_proto_max_bulk_len_applies_to_open_connections(srv):
    conn = srv.raw()
    assert conn.call("CONFIG", "SET", "proto-max-bulk-len", "2048") == b"OK"
    conn.send("SET", "k", b"x" * 4096)
    reply = conn.read_reply()
    assert isinstance(reply, RespError) and "invalid bulk length" in str(reply)
    fresh = srv.raw()
    assert fresh.call("SET", "k", b"x" * 2000) == b"OK"


# ---------------------------------------------------------------- error wording
def test_unknown_command_wording(srv):
    conn = srv.raw()
    assert err(conn, "FOO", "a", "b c") == \
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b c' "
    assert err(conn, "FOO") == "ERR unknown command 'FOO', with args beginning with: "
    long = err(conn, "FOO", "x" * 200, "y")
    assert long == "ERR unknown command 'FOO', with args beginning with: '" + "x" * 128 + "' "
    assert err(conn, "FOO", "a\r\nb") == \
        "ERR unknown command 'FOO', with args beginning with: 'a  b' "


@pytest.mark.parametrize("cmd, family", [
    ("HSET", "hashes"), ("LPUSH", "lists"), ("SADD", "sets"), ("ZADD", "sorted sets"),
    ("XADD", "streams"), ("EVAL", "scripting"), ("FUNCTION", "scripting"),
    ("SUBSCRIBE", "pub/sub"), ("PUBLISH", "pub/sub"), ("REPLICAOF", "replication"),
    ("SYNC", "replication"),
])
def test_unsupported_families_say_so(srv, cmd, family):
    conn = srv.raw()
    e = err(conn, cmd, "a", "b")
    assert e.startswith(f"ERR unsupported command '{cmd}': pastedb does not serve {family}")
    assert conn.call("PING") == b"PONG"


def test_queued_errors_abort_with_execabort(srv):
    conn = srv.raw()
    conn.call("MULTI")
    assert conn.call("APPEND", "k") != b"QUEUED"
    assert conn.call("SET", "k", "v") == b"QUEUED"
    assert err(conn, "EXEC") == "EXECABORT Transaction discarded because of previous errors."
    assert conn.call("EXISTS", "k") == 0


def test_new_commands_inside_a_transaction_see_its_writes(r):
    p = r.pipeline(transaction=True)
    p.set("a", "x")
    p.append("a", "y")
    p.setrange("a", 2, "z")
    p.getrange("a", 0, -1)
    p.rename("a", "b")
    p.copy("b", "c")
    p.incrbyfloat("f", 2.5)
    p.msetnx({"b": "no"})
    p.mget("a", "b", "c", "f")
    assert p.execute() == [True, 2, 3, b"xyz", True, True, 2.5, False,
                           [None, b"xyz", b"xyz", b"2.5"]]


# ---------------------------------------------------------------- command fuzz
COMMANDS = ["GET", "SET", "GETSET", "APPEND", "GETRANGE", "SUBSTR", "SETRANGE", "INCRBYFLOAT",
            "MSETNX", "LCS", "STRLEN", "RENAME", "RENAMENX", "COPY", "RANDOMKEY", "TOUCH",
            "EXISTS", "UNLINK", "TYPE", "SCAN", "OBJECT", "WATCH", "UNWATCH", "MULTI", "EXEC",
            "DISCARD", "INFO", "DEBUG", "CONFIG", "INCR", "DEL", "MSET", "MGET", "GETDEL"]
ARGS = [b"k", b"k2", b"0", b"-1", b"1", b"99999999999999999999", b"-0.5", b"inf", b"nan",
        b"", b"\x00\r\n", b"IDX", b"LEN", b"MINMATCHLEN", b"WITHMATCHLEN", b"REPLACE", b"DB",
        b"TYPE", b"string", b"MATCH", b"*", b"COUNT", b"ENCODING", b"GET", b"SET", b"x" * 300]


def test_random_commands_always_get_a_reply(srv):
    """Every command of the set with random arguments, pipelined on one
    connection: each gets exactly one reply and the server stays up."""
    rng = random.Random(11)
    conn = srv.raw(timeout=30)
    for _ in range(40):
        batch = []
        for _ in range(50):
            cmd = rng.choice(COMMANDS)
            if cmd == "DEBUG":
                args = [b"OBJECT", rng.choice(ARGS)]       # no SLEEP with a random length
            elif cmd == "CONFIG":
                args = [b"GET", rng.choice(ARGS)]
            else:
                args = [rng.choice(ARGS) for _ in range(rng.randrange(0, 6))]
            batch.append([cmd, *args])
        conn.send_raw(b"".join(conn.encode(*c) for c in batch))
        for _ in batch:
            conn.read_reply()
    conn.call("DISCARD")
    assert conn.call("PING") == b"PONG"
    assert srv.running


def test_debug_protocol(srv):
    conn = srv.raw()
    assert conn.call("DEBUG", "PROTOCOL", "attrib") == b"Some real reply following the attribute"
    assert conn.call("DEBUG", "PROTOCOL", "true") == 1
    assert conn.call("DEBUG", "PROTOCOL", "bignum") == b"1234567999999999999999999999999999999"
    assert "RESP2 is not supported" in err(conn, "DEBUG", "PROTOCOL", "push")
    conn.call("HELLO", "3")
    assert conn.call("DEBUG", "PROTOCOL", "true") is True
    assert conn.call("DEBUG", "PROTOCOL", "map") == {0: False, 1: True, 2: False}
    assert conn.call("DEBUG", "PROTOCOL", "double") == 3.14159265359
    assert conn.call("DEBUG", "PROTOCOL", "verbatim") == b"txt:This is a verbatim\nstring"
    assert "Wrong protocol type" in err(conn, "DEBUG", "PROTOCOL", "nope")
