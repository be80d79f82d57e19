"""Read-only opens beside the writer, the reader table and online backup,
with real processes: readers in other processes, an embedded writer or
`pastedb serve` under redis-py load, kill -9, fork, and pastedb-check.

The writer runs the computable operation sequence of tests/readers_worker.py
and records in a shared ack file how many operations were acknowledged, so a
reader can check that each value it sees is exactly one some operation wrote
for that key (never torn, never foreign) and no older than what was
acknowledged before its call began.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

import pastedb
from pastedb.core.readers import ReaderTable

sys.path.insert(0, str(Path(__file__).parent))
import readers_worker as w  # noqa: E402

WORKER = [sys.executable, str(Path(__file__).parent / "readers_worker.py")]
NKEYS = 120


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([*WORKER, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(p: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode(errors="replace")
    return json.loads(out.splitlines()[-1])


def files_digest(directory) -> dict[str, str]:
    out = {}
    for name in ("pool", "index"):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def wait_for_ack(ack: w.Ack, n: int, proc: subprocess.Popen | None = None,
                 timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while ack.get() < n:
        assert proc is None or proc.poll() is None, proc.stderr.read().decode(errors="replace")
        assert time.monotonic() < deadline, f"the writer did not reach op {n}"
        time.sleep(0.01)


def check_db(db, upto_lo: int, upto_hi: int) -> int:
    """db equals the model after some op count in [upto_lo, upto_hi]; returns it."""
    got = dict(db.items())
    for upto in range(upto_lo, upto_hi + 1):
        if got == w.model(upto, NKEYS):
            return upto
    for x in range(NKEYS):                 # say which key is wrong
        w.check_value(x, got.get(w.key_of(x, NKEYS)), upto_lo, upto_hi, NKEYS)
    raise AssertionError(f"no single point in [{upto_lo}, {upto_hi}] matches")


# ---------------------------------------------------------------- basics

def test_readonly_handle_refuses_writes(db_path):
    with pastedb.open(db_path) as db:
        db[b"a"] = b"1"
    r = pastedb.open(db_path, readonly=True)
    try:
        assert r.readonly and r[b"a"] == b"1" and len(r) == 1
        for write in (lambda: r.put(b"b", b"2"), lambda: r.delete(b"a"), r.batch, r.sync,
                      r.checkpoint, r.compact, lambda: r.__setitem__(b"b", b"2")):
            with pytest.raises(pastedb.Error, match="read-only"):
                write()
        assert r.get(b"b") is None and r[b"a"] == b"1"
    finally:
        r.close()


def test_readonly_open_of_a_missing_database(tmp_path):
    with pytest.raises(FileNotFoundError):
        pastedb.open(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()


def test_no_writer_reader_never_writes(db_path):
    """With no writer at all a reader reads the log tail too, and leaves the
    pool and index byte for byte as they were."""
    code = (
        "import os, pastedb, sys\n"
        "db = pastedb.open(sys.argv[1])\n"
        "for i in range(300):\n"
        "    db[b'k%03d' % i] = b'v%d' % i\n"
        "db.checkpoint()\n"
        "for i in range(300, 400):\n"
        "    db[b'k%03d' % i] = b'v%d' % i\n"
        "del db[b'k000']\n"
        "os._exit(0)\n")                 # no close: the tail is left to replay
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=True)
    before = files_digest(db_path)
    mtimes = {n: os.stat(os.path.join(db_path, n)).st_mtime_ns for n in ("pool", "index")}
    code = (
        "import pastedb, sys\n"
        "r = pastedb.open(sys.argv[1], readonly=True)\n"
        "assert len(r) == 399 and r.get(b'k000') is None and r[b'k399'] == b'v399'\n"
        "assert sum(1 for _ in r.items()) == 399\n"
        "r.close()\n")
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=True)
    assert files_digest(db_path) == before
    assert mtimes == {n: os.stat(os.path.join(db_path, n)).st_mtime_ns for n in ("pool", "index")}


def test_reader_follows_the_writer_call_by_call(db_path):
    """Each call sees every write acknowledged before it began: the tail, a
    checkpoint (the reader moves to the new tree commit), a compaction."""
    db = pastedb.open(db_path)
    db._checkpoint_policy(interval=3600)
    r = pastedb.open(db_path, readonly=True)
    try:
        for i in range(2000):
            db[b"k%04d" % i] = b"%d" % i
            if i % 97 == 0:
                assert r[b"k%04d" % i] == b"%d" % i
                assert len(r) == i + 1
        db.checkpoint()
        del db[b"k0005"]
        assert b"k0005" not in r and len(r) == 1999
        db.checkpoint()
        db.compact()
        db[b"k0006"] = b"new"
        assert r[b"k0006"] == b"new"
        assert list(r.keys(prefix=b"k000")) == [b"k%04d" % i for i in range(10) if i != 5]
        st = r.stats()
        assert st["readonly"] and st["index_pending"] < 100     # moved onto the new commit
        assert db.stats()["readers"] == 1
    finally:
        r.close()
        db.close()


def test_reader_table_clears_dead_readers(db_path):
    """A reader killed with kill -9 holds nothing: its slot lock died with it."""
    with pastedb.open(db_path) as db:
        db[b"a"] = b"1"
    code = ("import pastedb, sys, time\n"
            "r = pastedb.open(sys.argv[1], readonly=True)\n"
            "print(r[b'a'].decode(), flush=True)\n"
            "time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(db_path)], stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"1\n"
    t = ReaderTable(db_path, False)
    try:
        assert [s[0] for s in t.live_readers()] == [p.pid]
        p.kill()
        p.wait()
        assert t.live_readers() == []
    finally:
        t.close()


def _churn(db, rounds: int, start: int = 0) -> int:
    i = start
    for _ in range(rounds):
        for x in range(NKEYS):
            i += 1
            k = w.key_of(x, NKEYS)
            db.put(k, w.value_of(k, i))
        db.checkpoint()
    return i


def test_live_idle_reader_holds_back_reclamation_dead_one_does_not(db_path):
    """A segment a reader's state can still reach is not freed while the
    reader lives (LMDB's rule for a long read txn); once it is killed the
    writer frees it at the next free pass."""
    db = pastedb.open(db_path)
    db._checkpoint_policy(interval=3600)
    try:
        i = _churn(db, 3)
        code = ("import pastedb, sys, time\n"
                "r = pastedb.open(sys.argv[1], readonly=True)\n"
                "vals = dict(r.items())\n"
                "print(len(vals), flush=True)\n"
                "sys.stdin.readline()\n"
                "for k, v in vals.items():\n"
                "    assert r.get(k) is not None\n"
                "print('ok', flush=True)\n"
                "time.sleep(600)\n")
        p = subprocess.Popen([sys.executable, "-c", code, str(db_path)], stdout=subprocess.PIPE,
                             stdin=subprocess.PIPE)
        assert p.stdout.readline() == b"%d\n" % NKEYS
        freed0 = db.stats()["freed_segments"]
        i = _churn(db, 6, i)
        assert db.stats()["freed_segments"] == freed0      # everything it may read is kept
        p.stdin.write(b"\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"ok\n"              # and it reads fine (moved on)
        p.kill()
        p.wait()
        _churn(db, 2, i)
        assert db.stats()["freed_segments"] > freed0
    finally:
        db.close()


def test_fork_child_opens_its_own_reader(db_path):
    db = pastedb.open(db_path)
    db[b"a"] = b"1"
    r = pastedb.open(db_path, readonly=True)
    pid = os.fork()
    if pid == 0:                                            # the child
        code = 1
        try:
            try:
                r.get(b"a")
            except pastedb.Error:
                r2 = pastedb.open(db_path, readonly=True)
                if r2[b"a"] == b"1":
                    code = 0
                r2.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    db[b"b"] = b"2"
    assert r[b"b"] == b"2"                 # the parent's handle is untouched
    assert [s[0] for s in ReaderTable(db_path, False).live_readers()] == [os.getpid()]
    r.close()
    db.close()


def test_reader_survives_writer_restarts(db_path):
    r = None
    try:
        for gen in range(3):
            with pastedb.open(db_path) as db:
                db[b"gen"] = b"%d" % gen
                db[b"k%d" % gen] = b"x"
                if r is None:
                    r = pastedb.open(db_path, readonly=True)
                assert r[b"gen"] == b"%d" % gen
            assert r[b"gen"] == b"%d" % gen and len(r) == gen + 2
    finally:
        if r is not None:
            r.close()


# ---------------------------------------------------------------- real load

def _make(db_path, tmp_path) -> tuple[str, w.Ack]:
    pastedb.open(db_path).close()
    ackf = str(tmp_path / "ack")
    return ackf, w.Ack(ackf, create=True)


def test_readers_beside_an_embedded_writer(db_path, tmp_path):
    """N reader processes get and iterate while a writer process overwrites,
    deletes, checkpoints (every 50 ms), compacts and frees segments: never a
    torn or foreign value, every acknowledged write visible within one call."""
    ackf, ack = _make(db_path, tmp_path)
    wr = start("writer", db_path, ackf, NKEYS, 6)
    wait_for_ack(ack, 200, wr)
    readers = [start("reader", db_path, ackf, NKEYS, 4) for _ in range(3)]
    stats = [finish(p) for p in readers]
    ws = finish(wr)
    assert all(s["gets"] > 0 and s["scans"] > 0 for s in stats), stats
    assert ws["freed_segments"] > 0 and ws["reused_segments"] > 0, ws   # reclamation ran
    with pastedb.open(db_path) as db:
        check_db(db, ws["ops"], ws["ops"])


def test_readers_beside_a_server_under_load(server, tmp_path):
    srv = server(directory=tmp_path / "srv")
    ackf = str(tmp_path / "ack")
    ack = w.Ack(ackf, create=True)
    wr = start("writer", srv.directory, ackf, NKEYS, 6, "server", srv.port)
    wait_for_ack(ack, 200, wr)
    readers = [start("reader", srv.directory, ackf, NKEYS, 4) for _ in range(3)]
    stats = [finish(p) for p in readers]
    ws = finish(wr)
    assert all(s["gets"] > 0 and s["scans"] > 0 for s in stats), stats
    info = srv.client().info()
    srv.stop()
    with pastedb.open(srv.directory) as db:
        check_db(db, ws["ops"], ws["ops"])
        assert info is not None


def test_kill_readers_and_writer_at_random_moments(db_path, tmp_path, request):
    """kill -9 of readers and of the writer at random moments; afterwards the
    database reopens (writer and readers) with every acknowledged write."""
    runs = request.config.getoption("--crash-runs", default=None) or 3
    rng = random.Random(1234)
    ackf, ack = _make(db_path, tmp_path)
    for run in range(int(runs)):
        wr = start("writer", db_path, ackf, NKEYS, 30)
        wait_for_ack(ack, ack.get() + 50, wr)
        readers = [start("reader", db_path, ackf, NKEYS, 30) for _ in range(2)]
        time.sleep(rng.uniform(0.2, 1.5))
        victims = readers[:1] if run % 2 else readers
        for p in victims:
            p.send_signal(signal.SIGKILL)
        time.sleep(rng.uniform(0.1, 1.0))
        wr.send_signal(signal.SIGKILL)
        wr.wait()
        acked = ack.get()
        for p in readers:
            p.send_signal(signal.SIGKILL)
            p.wait()
            err = p.stderr.read().decode(errors="replace")
            assert "AssertionError" not in err and "Traceback" not in err, err
        r = pastedb.open(db_path, readonly=True)          # with no writer: the tail as it is
        check_db(r, acked, acked + 1)
        r.close()
        with pastedb.open(db_path) as db:
            upto = check_db(db, acked, acked + 1)
        ack.set(upto)                                     # the next run continues from there
        assert subprocess.run(["pastedb-check", str(db_path)], capture_output=True).returncode == 0


# ---------------------------------------------------------------- backup

def test_backup_during_a_write_load_from_another_process(db_path, tmp_path):
    """`pastedb backup` (its own process) while a writer process runs: the
    copy verifies with pastedb-check and equals the model at one point no
    older than what was acknowledged before the backup began."""
    ackf, ack = _make(db_path, tmp_path)
    wr = start("writer", db_path, ackf, NKEYS, 8)
    wait_for_ack(ack, 500, wr)
    for n in range(3):
        dest = tmp_path / f"backup{n}"
        before = ack.get()
        out = subprocess.run([sys.executable, "-m", "pastedb", "backup", str(db_path), str(dest),
                              "--json"], capture_output=True)
        after = ack.get()
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout)
        assert res["path"] == str(dest)
        chk = subprocess.run(["pastedb-check", str(dest)], capture_output=True)
        assert chk.returncode == 0, chk.stdout
        assert set(os.listdir(dest)) <= {"index", "pool", "LOCK"}     # LOCK: pastedb-check's
        with pastedb.open(dest, readonly=True) as copy:
            check_db(copy, before, after + 1)
            assert len(copy) == res["keys"]
    finish(wr)
    assert not [p for p in os.listdir(tmp_path) if ".backup-" in p]     # no temporaries left


def test_backup_of_a_server_under_load(server, tmp_path):
    """`pastedb backup` against the directory a running server holds, while
    redis-py writes: verified, and the model at one acknowledged point."""
    srv = server(directory=tmp_path / "srv")
    ackf = str(tmp_path / "ack")
    ack = w.Ack(ackf, create=True)
    wr = start("writer", srv.directory, ackf, NKEYS, 5, "server", srv.port)
    wait_for_ack(ack, 300, wr)
    before = ack.get()
    out = subprocess.run([sys.executable, "-m", "pastedb", "backup", str(srv.directory),
                          str(tmp_path / "copy")], capture_output=True)
    after = ack.get()
    assert out.returncode == 0, out.stderr
    assert b"backup of" in out.stderr
    finish(wr)
    assert subprocess.run(["pastedb-check", str(tmp_path / "copy")],
                          capture_output=True).returncode == 0
    with pastedb.open(tmp_path / "copy", readonly=True) as copy:
        check_db(copy, before, after + 1)


def test_backup_of_an_embedded_writer_while_a_thread_writes(db_path, tmp_path):
    import threading

    db = pastedb.open(db_path)
    db._checkpoint_policy(every=300, interval=0.05)
    acked = [0]
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            i += 1
            k = w.key_of(i, NKEYS)
            if w.is_delete(i):
                db.delete(k)
            else:
                db.put(k, w.value_of(k, i))
            acked[0] = i

    t = threading.Thread(target=load)
    t.start()
    try:
        while acked[0] < 300:
            time.sleep(0.01)
        before = acked[0]
        res = db.backup(tmp_path / "copy")
        after = acked[0]
    finally:
        stop.set()
        t.join()
    assert subprocess.run(["pastedb-check", str(tmp_path / "copy")],
                          capture_output=True).returncode == 0
    with pastedb.open(tmp_path / "copy") as copy:
        check_db(copy, before, after + 1)
        assert len(copy) == res["keys"]
    with pytest.raises(FileExistsError):
        db.backup(tmp_path / "copy")
    db.close()


def test_backup_is_compacted(db_path, tmp_path):
    with pastedb.open(db_path) as db:
        for _r in range(20):
            for i in range(200):
                db[b"k%d" % i] = os.urandom(4000)
        big = db.stats()["pool_file_bytes"]
        db.backup(tmp_path / "small")
    with pastedb.open(tmp_path / "small", readonly=True) as copy:
        st = copy.stats()
        assert st["keys"] == 200
        assert st["pool_file_bytes"] < big


# ---------------------------------------------------------------- model

mkeys = st.lists(st.sampled_from([b"", b"\x00", b"a", b"b", b"\xff"]), max_size=3).map(b"".join)
mvalues = st.one_of(st.binary(max_size=24), st.binary(max_size=24),
                    st.builds(lambda n, b: b * n, st.sampled_from([70_000, 300_001]),
                              st.binary(min_size=1, max_size=2)))


class ReadersMachine(RuleBasedStateMachine):
    """A writer and read-only handles of the same directory against a dict:
    after every step each reader's next call shows exactly the model."""
    base_dir = None

    def __init__(self):
        super().__init__()
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="readers-", dir=self.base_dir)
        self.model: dict[bytes, bytes] = {}
        self.db = None
        self.readers: list = []

    @initialize()
    def open_all(self):
        self.db = pastedb.open(self.dir, persist="none")
        self.db._checkpoint_policy(interval=3600)
        self.readers = [pastedb.open(self.dir, readonly=True)]

    def teardown(self):
        for r in self.readers:
            r.close()
        if self.db is not None:
            self.db.close()

    @rule(k=mkeys, v=mvalues)
    def put(self, k, v):
        self.db[k] = v
        self.model[k] = v

    @rule(k=mkeys)
    def delete(self, k):
        assert self.db.delete(k) == (k in self.model)
        self.model.pop(k, None)

    @rule(ops=st.lists(st.tuples(mkeys, st.one_of(st.none(), st.binary(max_size=8))), max_size=6))
    def batch(self, ops):
        with self.db.batch() as b:
            for k, v in ops:
                if v is None:
                    b.delete(k)
                    self.model.pop(k, None)
                else:
                    b.put(k, v)
                    self.model[k] = v

    @rule()
    def checkpoint(self):
        self.db.checkpoint()

    @rule()
    def compact(self):
        self.db.compact()

    @rule()
    def reopen_writer(self):
        self.db.close()
        self.db = pastedb.open(self.dir, persist="none")
        self.db._checkpoint_policy(interval=3600)

    @rule()
    def open_reader(self):
        if len(self.readers) < 3:
            self.readers.append(pastedb.open(self.dir, readonly=True))

    @rule(i=st.integers(0, 2))
    def close_reader(self, i):
        if len(self.readers) > 1:
            self.readers.pop(i % len(self.readers)).close()

    @rule(i=st.integers(0, 2), k=mkeys)
    def reader_get(self, i, k):
        r = self.readers[i % len(self.readers)]
        assert r.get(k) == self.model.get(k)
        assert (k in r) == (k in self.model)

    @rule(i=st.integers(0, 2), prefix=st.sampled_from([None, b"", b"a", b"\xff"]),
          reverse=st.booleans())
    def reader_scan(self, i, prefix, reverse):
        r = self.readers[i % len(self.readers)]
        want = sorted(((k, v) for k, v in self.model.items()
                       if prefix is None or k.startswith(prefix)), reverse=reverse)
        assert list(r.items(prefix=prefix, reverse=reverse)) == want
        assert len(r) == len(self.model)


def test_readers_model(tmp_path, slow):
    ReadersMachine.base_dir = str(tmp_path)
    run_state_machine_as_test(ReadersMachine, settings=settings(
        max_examples=300 if slow else 30,
        stateful_step_count=50 if slow else 30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))


def test_readonly_refuses_every_mapping_write(db_path):
    """The MutableMapping writes too (pop, popitem, setdefault, update,
    put_many, delete_many, clear): a clear Error, nothing written."""
    with pastedb.open(db_path) as db:
        db[b"a"] = b"1"
    before = files_digest(db_path)
    with pastedb.open(db_path, readonly=True) as r:
        for write in (lambda: r.pop(b"a"), r.popitem, lambda: r.setdefault(b"z", b"9"),
                      lambda: r.update({b"b": b"2"}), lambda: r.put_many([(b"c", b"3")]),
                      lambda: r.delete_many([b"a"]), r.clear):
            with pytest.raises(pastedb.Error, match="read-only"):
                write()
        assert dict(r.items()) == {b"a": b"1"}
    assert files_digest(db_path) == before


def test_a_readers_view_keeps_its_bytes(db_path):
    """db.view() on a read-only handle: the bytes it shows stay as they were
    while the writer overwrites that key and frees and reuses segments
    (the slot stops moving while a view lives); afterwards they are freed."""
    db = pastedb.open(db_path)
    db._checkpoint_policy(interval=3600)
    try:
        i = _churn(db, 2)
        r = pastedb.open(db_path, readonly=True)
        k = w.key_of(5, NKEYS)
        with r.view(k) as mv:
            want = bytes(mv)
            w.parse(k, want)
            freed0 = db.stats()["freed_segments"]
            i = _churn(db, 4, i)
            assert r.get(k) != want                        # the reader moved on ...
            i = _churn(db, 4, i)
            assert bytes(mv) == want                       # ... the view's bytes did not
            assert db.stats()["freed_segments"] == freed0
        r.get(k)                                           # a call after the view: moves on
        _churn(db, 2, i)
        assert db.stats()["freed_segments"] > freed0
        r.close()
    finally:
        db.close()
