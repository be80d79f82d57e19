"""Numbered databases: db.database(n) in the embedded API, SELECT in the
server, one keyspace encoding in the files both read (core/format.pxd)."""

from __future__ import annotations

import os
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pastedb.core.btree import TreeFile
from sortedcontainers import SortedDict

import pastedb
from pastedb.core import format as fmt


def test_databases_are_separate_keyspaces(db_path):
    with pastedb.open(db_path) as db:
        one, two = db.database(1), db.database(2)
        db[b"k"] = b"zero"
        one[b"k"] = b"one"
        two.put(b"k", b"two", ttl=100)
        db[b"\xffhigh"] = b"ff0"                  # a database-0 key starting with 0xFF
        one[b"\xff"] = b"ff1"
        assert (db[b"k"], one[b"k"], two[b"k"]) == (b"zero", b"one", b"two")
        assert len(db) == 2 and len(one) == 2 and len(two) == 1 and len(db.database(3)) == 0
        assert list(db) == [b"k", b"\xffhigh"]
        assert list(one.items()) == [(b"k", b"one"), (b"\xff", b"ff1")]
        assert list(reversed(one)) == [b"\xff", b"k"]
        assert list(db.keys(prefix=b"\xff")) == [b"\xffhigh"]
        assert list(one.keys(start=b"a", stop=b"\xff")) == [b"k"]
        assert two.ttl(b"k") is not None and db.ttl(b"k") is None
        assert b"k" not in db.database(3)
        with pytest.raises(KeyError):
            db.database(3)[b"k"]
        with one.batch() as b:
            b.put(b"a", b"1")
            b.delete(b"k")
        assert dict(one) == {b"a": b"1", b"\xff": b"ff1"}
        assert db[b"k"] == b"zero"
        one.clear()                               # only database 1
        assert len(one) == 0 and len(db) == 2 and len(two) == 1
        db.clear()                                # only database 0
        assert len(db) == 0 and two[b"k"] == b"two"
        with pytest.raises(ValueError):
            db.database(256)


def test_databases_survive_checkpoint_and_reopen(db_path):
    with pastedb.open(db_path) as db:
        for n in range(5):
            v = db.database(n)
            v.put_many({b"key%d" % i: b"db%d-%d" % (n, i) for i in range(100)})
        db.checkpoint()
        db.database(4).delete(b"key0")
        db[b"\xff\x01"] = b"looks like database 1's prefix"
    with pastedb.open(db_path) as db:
        assert len(db) == 101
        assert db[b"\xff\x01"] == b"looks like database 1's prefix"
        assert [len(db.database(n)) for n in range(1, 6)] == [100, 100, 100, 99, 0]
        assert db.database(3)[b"key7"] == b"db3-7"
        assert db.stats()["keys"] == 500
    with pastedb.open(db_path, readonly=True) as ro:
        assert len(ro.database(4)) == 99 and ro.database(2)[b"key1"] == b"db2-1"


def _stamp_v2(db_path):
    path = os.path.join(db_path, "index")
    with TreeFile(path, create=False, sync=True) as t:
        applied = t.applied_lsn
        t.begin()
        t.set_version(fmt.BTREE_VERSION_V2)
        t.commit(applied)


def test_version_2_index_moves_to_3_on_open(db_path):
    """A database written before numbered databases (index format 2, no key
    starting with 0xFF) gets format 3 at its writer's next open, its keys as
    they were."""
    with pastedb.open(db_path) as db:
        db.put_many({b"a%d" % i: b"v" for i in range(50)})
    _stamp_v2(db_path)
    path = os.path.join(db_path, "index")
    with TreeFile(path, create=False, sync=False) as t:
        assert t.version == fmt.BTREE_VERSION_V2
    with pastedb.open(db_path) as db:
        assert len(db) == 50
        db.database(7)[b"x"] = b"y"
    with TreeFile(path, create=False, sync=False) as t:
        assert t.version == fmt.BTREE_VERSION
    with pastedb.open(db_path) as db:
        assert len(db) == 50 and db.database(7)[b"x"] == b"y"


@pytest.mark.parametrize("expired", [False, True])
def test_version_2_index_with_0xff_keys_keeps_one_keyspace(db_path, expired):
    """Stamped version 2, the stored key FF 03 'x' is what an older pastedb
    wrote for the user key b"\xff\x03x" of its one keyspace: the open keeps
    one keyspace (also when that key has expired but is still in the files),
    and the key reads back as it was written."""
    with pastedb.open(db_path) as db:
        db._set_active_expire(False)
        db[b"plain"] = b"p"
        db.database(3).put(b"x", b"raw ff key", ttl=0.05 if expired else None)
        if expired:
            time.sleep(0.2)
    _stamp_v2(db_path)
    with pastedb.open(db_path) as db:
        assert len(db) == (1 if expired else 2)
        assert db.get(b"\xff\x03x") == (None if expired else b"raw ff key")
        with pytest.raises(pastedb.Error, match="one keyspace"):
            db.database(3)
        db[b"\xffnew"] = b"stored as given"
    with pastedb.open(db_path) as db, TreeFile(os.path.join(db_path, "index"), create=False,
                                              sync=False) as t:
        assert t.version == fmt.BTREE_VERSION_V2
        assert db[b"\xffnew"] == b"stored as given"


def test_reader_follows_the_move_to_version_3(db_path):
    with pastedb.open(db_path) as db:
        db[b"a"] = b"1"
    _stamp_v2(db_path)
    with pastedb.open(db_path, readonly=True) as ro:
        with pytest.raises(pastedb.Error, match="one keyspace"):
            ro.database(5)
        with pastedb.open(db_path) as db:              # the writer moves the index to 3
            db.database(5)[b"k"] = b"five"
            db.checkpoint()
            assert ro.database(5)[b"k"] == b"five" and list(ro) == [b"a"]


def test_select_in_the_server(server):
    srv = server()
    r0 = redis.Redis(port=srv.port)
    r9 = redis.Redis(port=srv.port, db=9)
    r0.set("a", "zero")
    r0.set(b"\xffz", "ff")
    r9.set("a", "nine")
    r9.set("b", "B", ex=100)
    r9.mset({"c": "1", "d": "2"})
    assert r0.get("a") == b"zero" and r9.get("a") == b"nine"
    assert r0.dbsize() == 2 and r9.dbsize() == 4
    assert sorted(r0.keys()) == [b"a", b"\xffz"]
    assert sorted(r9.keys("*")) == [b"a", b"b", b"c", b"d"]
    assert sorted(r9.scan_iter(count=1)) == [b"a", b"b", b"c", b"d"]
    assert r9.randomkey() in (b"a", b"b", b"c", b"d")
    ks = r0.info("keyspace")
    assert ks["db0"]["keys"] == 2 and ks["db9"] == {"keys": 4, "expires": 1, "avg_ttl": 0}
    assert r0.config_get("databases") == {"databases": "16"}
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r0.execute_command("SELECT", "16")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r0.execute_command("SELECT", "x")
    # SELECT inside a transaction applies to the commands after it (and,
    # as in Redis, stays selected on that connection).
    rt = redis.Redis(port=srv.port)
    with rt.pipeline(transaction=True) as p:
        p.set("t", "in0").select(5).set("t", "in5").dbsize()
        assert p.execute() == [True, True, True, 1]
    assert rt.get("t") == b"in5"
    assert r0.get("t") == b"in0" and redis.Redis(port=srv.port, db=5).get("t") == b"in5"
    r9.flushdb()
    assert r9.dbsize() == 0 and r0.dbsize() == 3 and r0.get(b"\xffz") == b"ff"
    r0.flushall()
    assert r0.dbsize() == 0 and redis.Redis(port=srv.port, db=5).dbsize() == 0


def test_server_and_embedded_agree_on_databases(server, tmp_path):
    d = tmp_path / "shared"
    srv = server(directory=d)
    r3 = redis.Redis(port=srv.port, db=3)
    r3.set("from-server", "3")
    redis.Redis(port=srv.port).set("zero", "0")
    assert srv.stop() == 0
    with pastedb.open(d) as db:
        assert db.database(3)[b"from-server"] == b"3" and db[b"zero"] == b"0"
        assert b"from-server" not in db
        db.database(3)[b"from-embedded"] = b"e"
    srv = server(directory=d)
    assert redis.Redis(port=srv.port, db=3).get("from-embedded") == b"e"
    assert redis.Redis(port=srv.port, db=3).dbsize() == 2


def test_watch_is_per_database(server):
    srv = server()
    a = redis.Redis(port=srv.port, db=1)
    b = redis.Redis(port=srv.port, db=2)
    with a.pipeline() as p:
        p.watch("k")
        b.set("k", "other database")              # not the watched key
        p.multi()
        p.set("k", "mine")
        assert p.execute() == [True]
    with a.pipeline() as p:
        p.watch("k")
        redis.Redis(port=srv.port, db=1).set("k", "changed")
        p.multi()
        p.set("k", "late")
        with pytest.raises(redis.WatchError):
            p.execute()
    assert a.get("k") == b"changed" and b.get("k") == b"other database"


def test_move_swapdb_copy_between_databases(server):
    srv = server()
    r0, r1, r2 = (redis.Redis(port=srv.port, db=n) for n in (0, 1, 2))
    r0.set("a", "zero", ex=100)
    assert r0.move("a", 1) is True
    assert r0.exists("a") == 0 and r1.get("a") == b"zero" and 0 < r1.ttl("a") <= 100
    assert r0.move("missing", 1) is False
    r0.set("a", "again")
    assert r0.move("a", 1) is False                # present there: nothing moves
    assert r0.get("a") == b"again"
    with pytest.raises(redis.ResponseError, match="source and destination objects are the same"):
        r0.move("a", 0)
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r0.move("a", 16)
    r2.set("c", "2")
    r2.set(b"\xffx", "F")
    assert r1.swapdb(1, 2) is True
    assert sorted(r1.keys()) == [b"c", b"\xffx"] and sorted(r2.keys()) == [b"a"]
    assert 0 < r2.ttl("a") <= 100 and r1.ttl("c") == -1
    assert r0.swapdb(0, 0) is True and r0.get("a") == b"again"
    assert r0.copy("a", "a", destination_db=3) is True
    assert redis.Redis(port=srv.port, db=3).get("a") == b"again"
    with pytest.raises(redis.ResponseError, match="source and destination objects are the same"):
        r0.copy("a", "a")
    # SWAPDB inside MULTI sees the transaction's own writes.
    with r1.pipeline(transaction=True) as p:
        p.set("new", "n").swapdb(1, 4).dbsize()
        assert p.execute() == [True, True, 0]
    assert sorted(redis.Redis(port=srv.port, db=4).keys()) == [b"c", b"new", b"\xffx"]
    # And everything stays where it was moved across a restart.
    assert srv.stop() == 0
    srv.start()
    r4 = redis.Redis(port=srv.port, db=4)
    assert r4.get("new") == b"n" and r4.get(b"\xffx") == b"F"
    assert redis.Redis(port=srv.port, db=2).get("a") == b"zero"


def test_backup_and_snapshot_keep_every_database(db_path, tmp_path):
    with pastedb.open(db_path) as db:
        db[b"zero"] = b"0"
        db[b"\xffz"] = b"ff"
        db.database(9).put(b"nine", b"9", ttl=1000)
        with db.snapshot() as snap:
            db.database(9)[b"later"] = b"not in the snapshot"
            assert list(snap) == [b"zero", b"\xffz"]
            assert snap.database(9)[b"nine"] == b"9" and len(snap.database(9)) == 1
        db.backup(tmp_path / "copy")
    with pastedb.open(tmp_path / "copy") as copy:
        assert dict(copy) == {b"zero": b"0", b"\xffz": b"ff"}
        assert dict(copy.database(9)) == {b"nine": b"9", b"later": b"not in the snapshot"}
        assert 0 < copy.database(9).ttl(b"nine") <= 1000


def test_dump_and_load_one_numbered_database(tmp_path):
    import subprocess
    import sys

    src, dst = tmp_path / "src", tmp_path / "dst"
    with pastedb.open(src) as db:
        db[b"zero"] = b"0"
        db.database(5).put_many({b"a": b"1", b"\xffb": b"2"})
        db.database(5).put(b"t", b"3", ttl=1000)
    cli = [sys.executable, "-m", "pastedb"]
    out = subprocess.run([*cli, "dump", "--database", "5", str(src)], capture_output=True,
                         check=True).stdout
    subprocess.run([*cli, "load", "-n", "7", str(dst)], input=out, capture_output=True,
                   check=True)
    with pastedb.open(dst) as db:
        assert len(db) == 0
        assert dict(db.database(7)) == {b"a": b"1", b"t": b"3", b"\xffb": b"2"}
        assert 0 < db.database(7).ttl(b"t") <= 1000
    # The everyday commands take --database too.
    subprocess.run([*cli, "set", "-n", "7", str(dst), "cli", "seven"], check=True)
    got = subprocess.run([*cli, "get", "--database", "7", str(dst), "cli"], capture_output=True,
                         check=True).stdout
    assert got == b"seven\n"
    assert subprocess.run([*cli, "get", str(dst), "cli"], capture_output=True).returncode == 1
    listed = subprocess.run([*cli, "scan", "-n", "7", str(dst)], capture_output=True,
                            check=True).stdout.split()
    assert listed == [b"a", b"cli", b"t", b"\\xffb"]
    subprocess.run([*cli, "del", "-n", "7", str(dst), "cli"], check=True)
    with pastedb.open(dst) as db:
        assert b"cli" not in db.database(7)


_keys = st.lists(st.sampled_from([b"", b"\x00", b"\x01", b"a", b"\xff"]), max_size=3).map(b"".join)
_ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 3), _keys, st.binary(max_size=8)),
    st.tuples(st.just("del"), st.integers(0, 3), _keys),
    st.tuples(st.just("clear"), st.integers(0, 3)),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("reopen"))), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_databases_against_a_model(tmp_path_factory, ops):
    """Databases 0..3 against one SortedDict each: every key (0xFF-leading
    ones and ones that look like another database's prefix included) lands
    in its own database, in order, and stays there across checkpoints and
    reopens."""
    path = tmp_path_factory.mktemp("dbs") / "db"
    model = [SortedDict() for _ in range(4)]
    db = pastedb.open(path)
    try:
        for op in ops:
            if op[0] == "put":
                _, n, k, v = op
                (db if n == 0 else db.database(n))[k] = v
                model[n][k] = v
            elif op[0] == "del":
                _, n, k = op
                assert (db if n == 0 else db.database(n)).delete(k) == (k in model[n])
                model[n].pop(k, None)
            elif op[0] == "clear":
                (db if op[1] == 0 else db.database(op[1])).clear()
                model[op[1]].clear()
            elif op[0] == "checkpoint":
                db.checkpoint()
            else:
                db.close()
                db = pastedb.open(path)
            for n in range(4):
                view = db if n == 0 else db.database(n)
                assert list(view.items()) == list(model[n].items())
                assert len(view) == len(model[n])
            assert list(reversed(db.database(1))) == list(reversed(model[1]))
            assert list(db.keys(prefix=b"\xff")) == [k for k in model[0] if k.startswith(b"\xff")]
        assert db.stats()["keys"] == sum(len(m) for m in model)
    finally:
        db.close()
