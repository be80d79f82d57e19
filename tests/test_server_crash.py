"""kill -9 the real server under concurrent load, restart it, and check that
what it acknowledged -- or let anyone see -- survived, and nothing else did.

Each writer thread owns its keys and remembers the stream of SETs it sent
(in order) and how many of them were acknowledged (replies come in order, so
that is a prefix).  After a crash the recovered values of a thread's keys must
be exactly the state after SOME prefix of its stream that contains every
acknowledged SET, and never ends inside a MULTI/EXEC (all or none).  Values
are self-describing (key, sequence number, length, a pattern derived from
those and a CRC), so a byte out of place is named, not just detected.

An observer thread reads other threads' keys while they are written: a value
it saw must survive too (the server holds every reply, GETs included, until
what was appended before it is durable).

Default: a short run, 10 kills in each receive mode (zero-copy with
splice(), zero-copy with recv() into the mapping, --copy) and 10 under
pipelines and transactions together; ``--slow``: 100 each; ``--crash-runs
N``: N each.  Every kill is checked to have been what ended the server.
"""

from __future__ import annotations

import hashlib
import random
import signal
import threading
import time
import zlib

import pytest
import tally

import pastedb

THREADS = 8
KEYS_PER_THREAD = 24
TXN_KEYS = 5                      # every transaction SETs all of a thread's keys
KILL_DELAY = (0.02, 0.5)          # seconds of load before kill -9
JOIN_TIMEOUT = 30


def crash_iterations(request) -> int:
    n = request.config.getoption("--crash-runs")
    if n is not None:
        return n
    return 100 if request.config.getoption("--slow") else 10


# ---------------------------------------------------------------- values
def make_value(key: bytes, seq: int) -> bytes:
    """The one value `seq` of `key` can have: key|seq|size|pattern|crc32."""
    rng = random.Random(zlib.crc32(key) * 1_000_003 + seq)
    pick = rng.random()
    if pick < 0.3:
        size = rng.randrange(0, 64)
    elif pick < 0.97:
        size = rng.randrange(64, 4096)
    elif pick < 0.997:
        size = rng.randrange(40_000, 300_000)         # crosses receive arenas
    else:
        size = rng.randrange(1 << 20, 6 << 20)        # an arena of its own, pool growth
    head = b"%s|%d|%d|" % (key, seq, size)
    seed = hashlib.blake2b(head, digest_size=32).digest()
    body = (seed * (size // 32 + 1))[:size]
    return head + body + b"|%08x" % zlib.crc32(head + body)


def describe(value: bytes) -> str:
    """What a value claims to be, for failure messages."""
    if value is None:
        return "missing"
    try:
        key, seq, size, _ = value.split(b"|", 3)
        seq = int(seq)
    except ValueError:
        return f"unparseable {len(value)} bytes {value[:60]!r}"
    if make_value(key, seq) == value:
        return f"write #{seq} of {key!r}"
    return f"CORRUPT {len(value)} bytes claiming to be write #{seq} of {key!r} (size {size!r})"


def seq_of(key: bytes, value: bytes | None) -> int | None:
    """The sequence number of `value`, which must be a write made for `key`."""
    if value is None:
        return None
    try:
        vkey, seq, _ = value.split(b"|", 2)
        seq = int(seq)
    except ValueError:
        seq = -1
        vkey = None
    assert vkey == key and make_value(key, seq) == value, \
        f"{key!r} holds bytes no client wrote for it: {describe(value)}"
    return seq


# ---------------------------------------------------------------- writers
class Writer:
    """One connection's stream of SETs and what became of them."""

    def __init__(self, tid: int, mode: str, keys: list[bytes], db: int = 0):
        self.tid = tid
        self.mode = mode                  # "plain" | "pipeline" | "txn"
        self.keys = keys
        self.db = db                      # the database its connection SELECTs
        self.next_seq = 0                 # unique per thread across rounds
        self.state: dict[bytes, int | None] = {k: None for k in keys}  # verified
        self.stream: list[tuple[bytes, int, int]] = []   # (key, seq, unit) this round
        self.acked = 0                    # stream[:acked] were acknowledged
        self.total_acked = 0              # acknowledged over all rounds
        self.error: BaseException | None = None

    def current(self, upto: int) -> dict[bytes, int | None]:
        """The state after stream[:upto]."""
        out = dict(self.state)
        for key, seq, _unit in self.stream[:upto]:
            out[key] = seq
        return out

    def _queue(self, key: bytes, unit: int) -> bytes:
        seq = self.next_seq
        self.next_seq += 1
        self.stream.append((key, seq, unit))           # before it is sent
        return RespEncode.set(key, make_value(key, seq))

    def run(self, conn, killed: threading.Event, rng: random.Random) -> None:
        unit = 0
        try:
            if self.db:
                assert conn.call(b"SELECT", b"%d" % self.db) == b"OK"
            while True:
                payload = []
                if self.mode == "txn":
                    ntxn = rng.randrange(1, 4)
                    for _ in range(ntxn):
                        unit += 1
                        payload.append(RespEncode.command(b"MULTI"))
                        payload += [self._queue(k, unit) for k in self.keys]
                        payload.append(RespEncode.command(b"EXEC"))
                else:
                    n = 1 if self.mode == "plain" else rng.randrange(1, 60)
                    for _ in range(n):
                        unit += 1
                        payload.append(self._queue(rng.choice(self.keys), unit))
                conn.send_raw(b"".join(payload))
                if self.mode == "txn":
                    for _ in range(ntxn):
                        assert conn.read_reply() == b"OK"
                        for _ in self.keys:
                            assert conn.read_reply() == b"QUEUED"
                        assert conn.read_reply() == [b"OK"] * len(self.keys)
                        self.acked += len(self.keys)
                else:
                    for _ in range(n):
                        assert conn.read_reply() == b"OK"
                        self.acked += 1
                if rng.random() < 0.2:                  # read your own (acknowledged) writes
                    key = rng.choice(self.keys)
                    got = conn.call(b"GET", key)
                    want = self.current(self.acked)[key]
                    assert seq_of(key, got) == want, \
                        f"GET {key!r} right after its SET: {describe(got)}, expected #{want}"
        except (ConnectionError, OSError) as e:
            if not killed.is_set():
                self.error = e
        except BaseException as e:
            self.error = e

    def verify(self, recovered: dict[bytes, bytes | None]) -> None:
        """Recovered values must be the state after a prefix of the stream that
        holds every acknowledged SET and ends on a transaction boundary."""
        pos = {seq: i for i, (_k, seq, _u) in enumerate(self.stream)}
        last = -1
        for key in self.keys:
            seq = seq_of(key, recovered[key])
            if seq is None or seq == self.state[key]:
                continue
            assert seq in pos and self.stream[pos[seq]][0] == key, \
                f"{key!r} holds write #{seq}, which was never sent for it this round"
            last = max(last, pos[seq])
        if last < self.acked - 1:
            expected = self.current(self.acked)
            pytest.fail(
                f"thread {self.tid}: acknowledged SETs lost ({self.acked} acknowledged, the "
                f"first {last + 1} survived): "
                + ", ".join(f"{k!r}: acknowledged #{expected[k]}, got {describe(recovered[k])}"
                            for k in self.keys if seq_of(k, recovered[k]) != expected[k]))
        if 0 <= last < len(self.stream) - 1:
            assert self.stream[last][2] != self.stream[last + 1][2], (
                f"thread {self.tid}: a transaction survived in part: "
                f"{[describe(recovered[k]) for k in self.keys]}")
        expected = self.current(last + 1)
        got = {k: seq_of(k, recovered[k]) for k in self.keys}
        assert got == expected, (
            f"thread {self.tid}: recovered state is not a prefix of what was sent "
            f"(last surviving write at {last}, {self.acked} acknowledged): "
            + ", ".join(f"{k!r}: got {describe(recovered[k])}, prefix says #{expected[k]}"
                        for k in self.keys if got[k] != expected[k]))
        self.state = got
        self.stream = []
        self.total_acked += self.acked
        self.acked = 0


class RespEncode:
    @staticmethod
    def command(*args: bytes) -> bytes:
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)

    @staticmethod
    def set(key: bytes, value: bytes) -> bytes:
        return RespEncode.command(b"SET", key, value)


class Observer:
    """Reads everybody's keys during the load: whatever it saw must survive."""

    def __init__(self, keys: list[bytes]):
        self.keys = keys
        self.seen: dict[bytes, int] = {}
        self.error: BaseException | None = None

    def run(self, conn, killed: threading.Event, rng: random.Random) -> None:
        try:
            while True:
                batch = rng.sample(self.keys, 8)
                for key, value in zip(batch, conn.call(b"MGET", *batch), strict=True):
                    seq = seq_of(key, value)
                    if seq is not None and seq > self.seen.get(key, -1):
                        self.seen[key] = seq
        except (ConnectionError, OSError) as e:
            if not killed.is_set():
                self.error = e
        except BaseException as e:
            self.error = e

    def verify(self, recovered: dict[bytes, bytes | None]) -> None:
        for key, seq in self.seen.items():
            got = seq_of(key, recovered[key])
            assert got is not None and got >= seq, (
                f"a GET saw write #{seq} of {key!r}, but after the crash it holds "
                f"{describe(recovered[key])}: a reply revealed a write that was not durable")
        self.seen.clear()


# ---------------------------------------------------------------- the rounds
def read_all(srv, keys: list[bytes], dbs: dict[bytes, int] | None = None
             ) -> dict[bytes, bytes | None]:
    """Every key's value, each read in its database (dbs: key -> database, 0
    when absent); a database holding a key nobody wrote there fails."""
    conn = srv.raw(timeout=60)
    try:
        out = {}
        for db in sorted({0} | set((dbs or {}).values())):
            mine = [k for k in keys if (dbs or {}).get(k, 0) == db]
            assert conn.call(b"SELECT", b"%d" % db) == b"OK"
            stored = set(conn.call(b"KEYS", b"*"))
            stray = stored - set(mine)
            assert not stray, f"keys nobody wrote in database {db}: {sorted(stray)[:10]}"
            for i in range(0, len(mine), 64):
                chunk = mine[i:i + 64]
                out.update(zip(chunk, conn.call(b"MGET", *chunk), strict=True))
        return out
    finally:
        conn.close()


def crash_round(srv, writers: list[Writer], observer: Observer | None,
                rng: random.Random, how: str = "kill"
                ) -> tuple[dict[bytes, bytes | None], int]:
    """One kill -9 under load and the checks after the restart.  Returns the
    recovered values and how many SETs were acknowledged before the kill.
    how="term-kill": SIGTERM, then kill -9 a moment later, in the middle of
    the drain or the checkpoint a clean shutdown runs; how="term": a clean
    SIGTERM under load, which must still exit 0."""
    killed = threading.Event()
    actors = writers + ([observer] if observer else [])
    conns = [srv.raw(timeout=JOIN_TIMEOUT) for _ in actors]
    threads = [threading.Thread(target=a.run, args=(c, killed, random.Random(rng.random())),
                                daemon=True)
               for a, c in zip(actors, conns, strict=True)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(*KILL_DELAY))
    killed.set()
    if how == "term":
        srv.stop()                                       # asserts exit code 0
    else:
        if how == "term-kill":
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0, 0.03))
        running = srv.running
        srv.kill()
        if running and srv.proc.returncode == -signal.SIGKILL:
            tally.kill()
        assert not running or srv.proc.returncode in (-signal.SIGKILL, 0), (
            f"the server died of {srv.proc.returncode}, not of the kill:\n{srv.log()}")
        if how == "kill":
            assert running and srv.proc.returncode == -signal.SIGKILL, (
                f"the server was not running when killed (exit {srv.proc.returncode}):\n"
                f"{srv.log()}")
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive(), "a client thread hung after kill -9"
    for c in conns:
        c.close()
    for a in actors:
        if a.error is not None:
            raise a.error
    srv.start()
    keys = [k for w in writers for k in w.keys]
    recovered = read_all(srv, keys, {k: w.db for w in writers for k in w.keys})
    acked = sum(w.acked for w in writers)
    for w in writers:
        w.verify(recovered)
    if observer is not None:
        observer.verify(recovered)
    return recovered, acked


def check_embedded_view(srv, recovered: dict[bytes, bytes | None]) -> None:
    """After a clean stop, pastedb.open() sees exactly what the server served."""
    srv.stop()
    db = pastedb.open(srv.directory)
    try:
        assert dict(db.items()) == {k: v for k, v in recovered.items() if v is not None}
    finally:
        db.close()
    srv.start()


@pytest.mark.parametrize("receive", ["splice", "recv", "copy"])
def test_kill9_under_concurrent_sets(server, request, receive):
    """8 connections, one SET at a time each, plus an observer; kill -9 at a
    random moment (now and then just after a SIGTERM; once in a while a clean
    SIGTERM instead), restart, verify; many times over the same directory.
    Each receive path: splice() and recv() into the pool, and --copy."""
    srv = server(*(["--copy"] if receive == "copy" else ["--receive", receive]))
    rng = random.Random(0xC0FFEE)
    writers = [Writer(t, "plain", [b"t%d:k%d" % (t, j) for j in range(KEYS_PER_THREAD)])
               for t in range(THREADS)]
    observer = Observer([k for w in writers for k in w.keys])
    acked = kills = i = 0
    while kills < crash_iterations(request):
        how = ("kill", "kill", "term-kill", "term")[i % 4] if i % 8 < 4 else "kill"
        recovered, n = crash_round(srv, writers, observer, rng, how)
        acked += n
        kills += how != "term"
        i += 1
    assert acked > 0, "no SET was ever acknowledged: the load never ran"
    check_embedded_view(srv, recovered)


def test_kill9_under_pipelines_and_transactions(server, request):
    """Half the connections pipeline up to 60 SETs at a time, half send
    pipelined MULTI/EXEC transactions that SET all their keys: after the
    crash each transaction is there entirely or not at all."""
    srv = server()
    rng = random.Random(0xBADC0DE)
    writers = []
    for t in range(THREADS):
        if t % 2:
            writers.append(Writer(t, "txn", [b"x%d:k%d" % (t, j) for j in range(TXN_KEYS)]))
        else:
            writers.append(Writer(t, "pipeline", [b"p%d:k%d" % (t, j)
                                                  for j in range(KEYS_PER_THREAD)]))
    for _ in range(crash_iterations(request)):
        recovered, n = crash_round(srv, writers, None, rng)
    for w in writers:                                    # every kind of load ran
        assert w.total_acked > 0, f"thread {w.tid} ({w.mode}) never had a SET acknowledged"
    check_embedded_view(srv, recovered)


def test_kill9_across_numbered_databases(server, request):
    """Writers SELECT databases 0, 1, 7 and 15 (plain SETs, pipelines and
    MULTI/EXEC, keys starting with 0xFF among them): after each kill -9 every
    acknowledged SET is back in its own database and no database holds a
    key written in another; then pastedb.open() sees the same databases."""
    srv = server()
    rng = random.Random(0xDB5)
    modes = ("plain", "pipeline", "txn", "plain")
    writers = []
    for t in range(THREADS):
        db = (0, 1, 7, 15)[t % 4]
        prefix = b"\xff" if t % 3 == 0 else b""
        n = TXN_KEYS if modes[t % 4] == "txn" else KEYS_PER_THREAD
        writers.append(Writer(t, modes[t % 4], [prefix + b"d%d:%d:k%d" % (db, t, j)
                                               for j in range(n)], db=db))
    acked = 0
    for _ in range(max(3, crash_iterations(request) // 2)):
        recovered, n = crash_round(srv, writers, None, rng)
        acked += n
    assert acked > 0, "no SET was ever acknowledged: the load never ran"
    srv.stop()
    with pastedb.open(srv.directory) as db:
        for w in writers:
            view = db if w.db == 0 else db.database(w.db)
            for k in w.keys:
                assert view.get(k) == recovered[k], (w.db, k)
    srv.start()
