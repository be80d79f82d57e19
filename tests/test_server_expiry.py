"""Expiry over the Redis protocol: a real `pastedb serve` process, real clients.

Exact replies and error strings are Redis 7.0's.  Times far in the future or
already past make the results independent of the machine's speed; the few
checks that a short expiry passes wait for it with a deadline.
"""

from __future__ import annotations

import time

import pytest

redis = pytest.importorskip("redis")

FAR = 4102444800                        # 2100-01-01 in seconds


@pytest.fixture
def srv(server):
    return server()


@pytest.fixture
def r(srv):
    return srv.client()


def eventually(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_set_expiry_options_and_ttl_family(r):
    assert r.set("ex", "v", ex=100) is True
    assert 99 <= r.ttl("ex") <= 100
    assert 99000 < r.pttl("ex") <= 100000
    assert r.set("px", "v", px=100000)
    assert 99000 < r.pttl("px") <= 100000
    assert r.set("exat", "v", exat=FAR)
    assert r.expiretime("exat") == FAR and r.pexpiretime("exat") == FAR * 1000
    assert r.set("pxat", "v", pxat=FAR * 1000 + 123)
    assert r.pexpiretime("pxat") == FAR * 1000 + 123
    assert r.expiretime("pxat") == FAR                  # rounded, as Redis
    assert r.ttl("nope") == -2 and r.pttl("nope") == -2 and r.expiretime("nope") == -2
    r.set("plain", "v")
    assert r.ttl("plain") == -1 and r.pexpiretime("plain") == -1
    # A plain SET clears the expiry; KEEPTTL keeps it.
    r.set("ex", "w", keepttl=True)
    assert r.get("ex") == b"w" and r.ttl("ex") > 0
    r.set("ex", "x")
    assert r.ttl("ex") == -1
    # SET ... GET with an expiry, NX/XX with an expiry.
    assert r.set("ex", "y", ex=50, get=True) == b"x"
    assert 49 <= r.ttl("ex") <= 50
    assert r.set("ex", "z", px=1000, nx=True) is None
    assert r.set("new", "z", px=100000, xx=True) is None
    assert r.exists("new") == 0
    info = r.info("keyspace")["db0"]
    assert info["keys"] == 5 and info["expires"] == 4


def test_set_past_time_and_errors_exact(srv):
    c = srv.raw()
    assert c.call("SET", "k", "v", "PXAT", "1") == b"OK"      # already past: gone at once
    assert c.call("EXISTS", "k") == 0
    for args in (("EX", "0"), ("PX", "-5"), ("EXAT", "0"), ("EX", str(2 ** 62))):
        assert c.call("SET", "k", "v", *args) == "ERR invalid expire time in 'set' command"
    assert c.call("SET", "k", "v", "EX", "abc") == "ERR value is not an integer or out of range"
    assert c.call("SET", "k", "v", "EX") == "ERR syntax error"
    assert c.call("SET", "k", "v", "EX", "10", "PX", "10") == "ERR syntax error"
    assert c.call("SET", "k", "v", "KEEPTTL", "EX", "10") == "ERR syntax error"
    assert c.call("SET", "k", "v", "NX", "XX") == "ERR syntax error"
    assert c.call("SET", "k", "v", "PERSIST") == "ERR syntax error"
    assert c.call("SETEX", "k", "0", "v") == "ERR invalid expire time in 'setex' command"
    assert c.call("PSETEX", "k", "-1", "v") == "ERR invalid expire time in 'psetex' command"
    assert c.call("SETEX", "k", "x", "v") == "ERR value is not an integer or out of range"
    assert c.call("SETEX", "k", "100", "v") == b"OK"
    assert 99 <= c.call("TTL", "k") <= 100
    assert c.call("PSETEX", "k", "100000", "w") == b"OK"
    assert c.call("GET", "k") == b"w"
    assert c.call("GETEX", "k", "EX", "0") == "ERR invalid expire time in 'getex' command"
    assert c.call("GETEX", "k", "EX", "1", "PX", "1") == "ERR syntax error"
    assert c.call("GETEX", "k", "NX") == "ERR syntax error"
    assert c.call("GETEX", "missing", "EX", "0") is None
    c.close()


def test_expire_family_conditions_and_errors(srv):
    c = srv.raw()
    c.call("SET", "k", "v")
    assert c.call("EXPIRE", "k", "100", "XX") == 0
    assert c.call("EXPIRE", "k", "100", "GT") == 0       # no expiry counts as infinite
    assert c.call("EXPIRE", "k", "100", "NX") == 1
    assert c.call("EXPIRE", "k", "200", "NX") == 0
    assert c.call("EXPIRE", "k", "50", "GT") == 0
    assert c.call("EXPIRE", "k", "200", "GT") == 1
    assert c.call("EXPIRE", "k", "300", "LT") == 0
    assert c.call("EXPIRE", "k", "150", "XX", "LT") == 1
    assert 149 <= c.call("TTL", "k") <= 150
    assert c.call("PEXPIRE", "k", "500000") == 1
    assert 499000 < c.call("PTTL", "k") <= 500000
    assert c.call("EXPIREAT", "k", str(FAR)) == 1
    assert c.call("EXPIRETIME", "k") == FAR
    assert c.call("PEXPIREAT", "k", str(FAR * 1000 + 7)) == 1
    assert c.call("PEXPIRETIME", "k") == FAR * 1000 + 7
    assert c.call("PERSIST", "k") == 1
    assert c.call("PERSIST", "k") == 0
    assert c.call("TTL", "k") == -1
    assert c.call("EXPIRE", "missing", "10") == 0
    assert c.call("PERSIST", "missing") == 0
    assert c.call("EXPIRE", "k", "10", "NX", "XX") == \
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    assert c.call("EXPIRE", "k", "10", "GT", "LT") == \
        "ERR GT and LT options at the same time are not compatible"
    assert c.call("EXPIRE", "k", "10", "AB") == "ERR Unsupported option AB"
    assert c.call("EXPIRE", "k", "ten") == "ERR value is not an integer or out of range"
    assert c.call("EXPIRE", "k", str(2 ** 62)) == "ERR invalid expire time in 'expire' command"
    assert c.call("PEXPIRE", "k", str(2 ** 63 - 1)) == \
        "ERR invalid expire time in 'pexpire' command"
    # A time in the past deletes the key (and counts as done).
    assert c.call("EXPIRE", "k", "-1") == 1
    assert c.call("EXISTS", "k") == 0
    c.call("SET", "k", "v")
    assert c.call("PEXPIREAT", "k", "1") == 1 and c.call("GET", "k") is None
    c.close()


def test_getex_persist_and_incr_keeps_ttl(r):
    r.set("k", "v")
    assert r.getex("k", ex=100) == b"v" and 99 <= r.ttl("k") <= 100
    assert r.getex("k", persist=True) == b"v" and r.ttl("k") == -1
    assert r.getex("k", pxat=FAR * 1000) == b"v" and r.pexpiretime("k") == FAR * 1000
    assert r.getex("k") == b"v" and r.pexpiretime("k") == FAR * 1000
    assert r.getex("k", exat=1) == b"v"                  # past: deleted after the reply
    assert r.exists("k") == 0
    r.set("n", "10", ex=100)
    assert r.incr("n") == 11 and r.incrby("n", 5) == 16
    assert 99 <= r.ttl("n") <= 100                        # INCR keeps the expiry, as Redis


def test_short_expiry_passes_and_debug_set_active_expire(r):
    r.set("a", "1", px=30)
    r.set("b", "2")
    assert eventually(lambda: r.get("a") is None)
    assert r.dbsize() == 1 and r.keys("*") == [b"b"]
    assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0") == b"OK"
    r.set("c", "3", px=30)
    assert eventually(lambda: r.exists("c") == 0)        # invisible without the expirer
    assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1") == b"OK"
    with pytest.raises(redis.ResponseError, match="not supported by pastedb"):
        r.execute_command("DEBUG", "RELOAD-ANYTHING")


def test_expiry_in_a_transaction_sees_its_own_writes(r):
    p = r.pipeline(transaction=True)
    p.set("t", "v")
    p.expire("t", 100)
    p.ttl("t")
    p.persist("t")
    p.ttl("t")
    p.pexpire("t", 50000)
    res = p.execute()
    assert res[:2] == [True, True] and 99 <= res[2] <= 100 and res[3:5] == [True, -1]
    assert res[5] is True and 49000 < r.pttl("t") <= 50000


@pytest.mark.parametrize("active", [1, 0])
def test_exec_fails_when_a_watched_key_expires(r, active):
    """Redis 7.0: a key alive at WATCH that expires before EXEC makes EXEC
    fail, whether the expirer deleted it or it only became invisible; a key
    already expired at WATCH, or one that does not expire in time, does not."""
    assert r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", str(active)) == b"OK"
    r.set("w", "1", px=150)
    r.set("gone", "1", px=1)
    r.set("far", "1", ex=1000)
    assert eventually(lambda: r.exists("gone") == 0)
    p = r.pipeline(transaction=True)
    p.watch("w")
    assert eventually(lambda: r.exists("w") == 0)
    p.multi()
    p.set("out", "x")
    with pytest.raises(redis.WatchError):
        p.execute()
    assert r.get("out") is None
    for key in ("gone", "far"):
        p = r.pipeline(transaction=True)
        p.watch(key)
        time.sleep(0.05)
        p.multi()
        p.set("out", key)
        assert p.execute() == [True]
        assert r.get("out") == key.encode()


def test_expiry_survives_kill_9(srv):
    r = srv.client()
    r.set("a", "1", exat=FAR)
    r.set("b", "2", ex=3600)
    r.set("gone", "3", pxat=int(time.time() * 1000) + 50)
    r.set("c", "4")
    r.expire("c", 7200)
    r.persist("a")
    srv.kill()
    srv.restart()
    r = srv.client()
    assert r.ttl("a") == -1
    assert 3500 < r.ttl("b") <= 3600
    assert 7100 < r.ttl("c") <= 7200
    assert eventually(lambda: r.get("gone") is None)
    assert sorted(r.keys("*")) == [b"a", b"b", b"c"]


# ------------------------------------------------------------------ Django

@pytest.mark.parametrize("dbno", [0, 3])
def test_django_redis_cache(srv, dbno):
    django = pytest.importorskip("django")
    from django.conf import settings
    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache.backends.redis import RedisCache

    cache = RedisCache(f"redis://127.0.0.1:{srv.port}/{dbno}", {"TIMEOUT": 300})
    other = srv.client(db=1 - min(dbno, 1))       # a database the cache does not use
    other.set("bystander", "stays")
    try:
        cache.set("greeting", "hello", timeout=60)
        assert cache.get("greeting") == "hello"
        r = srv.client(db=dbno)
        keys = r.keys("*")
        assert len(keys) == 1 and 59 <= r.ttl(keys[0]) <= 60
        assert cache.add("greeting", "other") is False
        assert cache.add("fresh", {"a": [1, 2]}, timeout=None) is True
        assert cache.get("fresh") == {"a": [1, 2]}
        cache.set_many({"x": 1, "y": 2, "z": 3}, timeout=120)
        assert cache.get_many(["x", "y", "z", "nope"]) == {"x": 1, "y": 2, "z": 3}
        assert cache.incr("x") == 2 and cache.incr("x", 10) == 12
        assert cache.get("x") == 12
        assert cache.touch("y", 1000) is True
        assert cache.touch("missing", 10) is False
        ttls = {k: r.ttl(k) for k in r.keys("*")}
        assert min(ttls.values()) == -1                  # "fresh": timeout=None
        assert any(990 <= t <= 1000 for t in ttls.values())
        cache.set("short", "s", timeout=0)               # Django: timeout 0 expires at once
        assert cache.get("short") is None
        cache.delete_many(["x", "y"])
        assert cache.get_many(["x", "y", "z"]) == {"z": 3}
        assert cache.delete("z") is True and cache.delete("z") is False
        assert cache.get("missing", "default") == "default"
        cache.set("soon", "v", timeout=0.05)
        assert eventually(lambda: cache.get("soon") is None)
        cache.clear()                                    # FLUSHDB: its database only
        assert r.dbsize() == 0 and other.get("bystander") == b"stays"
    finally:
        cache.close()


def test_read_modify_write_commands_keep_the_expiry_as_redis(r):
    r.set("s", "ab", exat=FAR)
    assert r.append("s", "c") == 3 and r.expiretime("s") == FAR
    assert r.setrange("s", 1, "X") == 3 and r.expiretime("s") == FAR
    r.set("f", "1.5", exat=FAR)
    assert float(r.incrbyfloat("f", 1)) == 2.5 and r.expiretime("f") == FAR
    assert r.rename("f", "g") is True and r.expiretime("g") == FAR
    assert r.copy("g", "h") is True and r.expiretime("h") == FAR
    assert r.getset("h", "new") == b"2.5" and r.ttl("h") == -1   # GETSET clears it
