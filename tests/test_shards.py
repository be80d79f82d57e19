"""pastedb shards behind twemproxy (nutcracker), as docs/SCALING.md sets them up.

Everything is real: `pastedb cluster up/down` (the CLI) starts real `pastedb
serve` processes and a real nutcracker; redis-py talks to the proxy with the
client settings SCALING.md gives; shards are killed with SIGKILL.  Tests that
need nutcracker skip when it is neither on PATH nor in /usr/sbin.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pastedb.core.resp import encode_command

from pastedb import cluster as cl

redis = pytest.importorskip("redis")
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

try:
    NUTCRACKER: str | None = cl.find_nutcracker()
except cl.ClusterError:
    NUTCRACKER = None
needs_nutcracker = pytest.mark.skipif(NUTCRACKER is None,
                                      reason="nutcracker (twemproxy) not installed")

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "shard-pw"

# redis-py must not send CLIENT SETINFO on connect (nutcracker forwards no
# CLIENT command and closes the connection) and must speak RESP2 (redis-py 8
# says HELLO 3 by default, which nutcracker does not know).
if "driver_info" in inspect.signature(redis.Redis.__init__).parameters:
    NO_SETINFO: dict = {"driver_info": None}
else:
    NO_SETINFO = {"lib_name": None, "lib_version": None}


def proxy_client(port: int, password: str | None = None, timeout: float = 10.0):
    """A client of the proxy with SCALING.md's settings; it never retries, so
    every error a request gets is seen by the test."""
    return redis.Redis(host="127.0.0.1", port=port, password=password, protocol=2,
                       socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0), **NO_SETINFO)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pastedb", "cluster", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


class Cluster:
    """A set-up made by `pastedb cluster up DIR` on free ports below the
    ephemeral range (so no client connection holds one by chance)."""

    def __init__(self, directory: Path, *options: str):
        self.dir = directory
        for _attempt in range(8):
            base = random.randrange(20000, 30000, 10)
            r = run_cli("up", str(directory), "--port", str(base), *options)
            if r.returncode == 0:
                break
            if "in use" not in r.stderr:
                pytest.fail(f"cluster up failed ({r.returncode}):\n{r.stdout}{r.stderr}"
                            f"{self.logs()}")
            run_cli("down", str(directory))
            for name in ("cluster.json", "nutcracker.yml"):
                (directory / name).unlink(missing_ok=True)
        else:
            pytest.fail(f"no free ports for a cluster:\n{r.stderr}")
        spec = cl.load_spec(directory)
        assert spec is not None
        self._shards: dict[int, redis.Redis] = {}
        self.spec = spec
        self.port = spec.port
        self.password = spec.requirepass

    def client(self, timeout: float = 10.0):
        return proxy_client(self.port, self.password, timeout)

    def shard(self, i: int):
        """A direct client of shard i (INFO, DBSIZE and ownership checks)."""
        if i not in self._shards:
            self._shards[i] = redis.Redis(host="127.0.0.1", port=self.spec.shard_ports()[i],
                                          password=self.password, socket_timeout=10,
                                          retry=Retry(NoBackoff(), 0))
        return self._shards[i]

    def owners(self, keys: list[bytes]) -> list[int]:
        """For each key the one shard that holds it (asserts there is exactly one)."""
        held = []
        for i in range(self.spec.shards):
            pipe = self.shard(i).pipeline(transaction=False)
            for k in keys:
                pipe.exists(k)
            held.append(pipe.execute())
        out = []
        for j, k in enumerate(keys):
            holders = [i for i in range(self.spec.shards) if held[i][j]]
            assert len(holders) == 1, f"{k!r} is on shards {holders}"
            out.append(holders[0])
        return out

    def owner(self, key: bytes) -> int:
        return self.owners([key])[0]

    def kill9(self, i: int) -> None:
        pid = cl.shard_pid(self.dir, i)
        assert pid is not None, f"shard{i} is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while cl.shard_pid(self.dir, i) is not None:
            assert time.monotonic() < deadline, f"shard{i} (pid {pid}) survived SIGKILL"
            time.sleep(0.01)

    def up(self) -> None:
        r = run_cli("up", str(self.dir))
        assert r.returncode == 0, f"{r.stdout}{r.stderr}{self.logs()}"

    def down(self) -> None:
        """Stop everything; every shard must have shut down cleanly."""
        r = run_cli("down", str(self.dir))
        assert r.returncode == 0, f"{r.stdout}{r.stderr}{self.logs()}"
        for i in range(self.spec.shards):
            log = (self.dir / f"shard{i}.log").read_text()
            assert log.rstrip().endswith("pastedb: shut down cleanly"), log[-2000:]

    def logs(self) -> str:
        out = []
        for p in sorted(self.dir.glob("*.log")):
            out.append(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}")
        return "".join(out)


@pytest.fixture
def cluster(tmp_path):
    """Factory: ``cluster(*options)`` runs `pastedb cluster up` on a fresh
    directory.  A test ends with ``c.down()`` (which checks every shard shut
    down cleanly); whatever a failed test left running is stopped here."""
    made: list[Path] = []

    def make(*options: str) -> Cluster:
        made.append(tmp_path / f"c{len(made)}")
        return Cluster(made[-1], *options)

    yield make
    for d in made:
        if (d / cl.SPEC_FILE).exists():
            run_cli("down", str(d))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One 3-shard set-up with a password (the proxy AUTHs to every shard) for
    the tests that only read and write."""
    d = tmp_path_factory.mktemp("cluster")
    try:
        c = Cluster(d, "--shards", "3", "--requirepass", PASSWORD)
        yield c
        c.down()
    finally:
        run_cli("down", str(d))


# ---------------------------------------------------------------- the helper
def test_up_without_nutcracker_is_a_clear_error(tmp_path):
    r = run_cli("up", str(tmp_path / "c"), "--nutcracker", str(tmp_path / "no-such-nutcracker"))
    assert r.returncode == 1
    assert "nutcracker not found" in r.stderr
    assert not list((tmp_path / "c").glob("*.pid")), "nothing may start without the proxy"
    r = run_cli("down", str(tmp_path))
    assert r.returncode == 1 and "holds no cluster" in r.stderr


@needs_nutcracker
def test_nutcracker_is_found_in_usr_sbin_without_path(monkeypatch):
    assert NUTCRACKER is not None
    if os.path.dirname(NUTCRACKER) not in cl.NUTCRACKER_DIRS:
        pytest.skip(f"nutcracker is at {NUTCRACKER}, not in a system directory")
    monkeypatch.setenv("PATH", "")            # Debian's /usr/sbin is not on a user's PATH
    assert cl.find_nutcracker() == NUTCRACKER


@needs_nutcracker
def test_status_and_config(shared):
    r = run_cli("status", str(shared.dir), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads(r.stdout)
    assert [p["name"] for p in st["processes"]] == ["nutcracker", "shard0", "shard1", "shard2"]
    assert all(p["running"] for p in st["processes"])
    for p in st["processes"][1:]:
        assert p["aof_last_write_status"] == "ok" and p["shutting_down"] == "0"
    conf = (shared.dir / "nutcracker.yml").read_text()
    for line in ("distribution: ketama", "hash: murmur", "auto_eject_hosts: false",
                 f'redis_auth: "{PASSWORD}"', "redis: true"):
        assert line in conf
    # different options on an existing set-up are refused, not silently applied
    r = run_cli("up", str(shared.dir), "--shards", "5")
    assert r.returncode == 1 and "different set-up" in r.stderr


# ---------------------------------------------------------------- through the proxy
@needs_nutcracker
def test_commands_and_binary_values_through_the_proxy(shared):
    r = shared.client()
    values = {
        b"bin:all-bytes": bytes(range(256)) * 4,
        b"bin:empty": b"",
        b"bin:resp-lookalike": b"\r\n$3\r\nfoo\r\n*1\r\n-ERR\r\n",
        b"bin:\x00\xff key \r\n": b"\x00" * 100,
        b"bin:large": random.Random(1).randbytes(300 * 1024),
    }
    for k, v in values.items():
        assert r.set(k, v) is True
        assert r.get(k) == v
    assert r.get(b"bin:missing") is None
    assert r.mset({b"m:%d" % i: b"v%d\r\n" % i for i in range(50)}) is True
    keys = [b"m:%d" % i for i in range(50)] + [b"m:missing"] + list(values)
    assert r.mget(keys) == [b"v%d\r\n" % i for i in range(50)] + [None] + list(values.values())
    assert r.exists(b"m:1") == 1 and r.exists(b"m:missing") == 0
    assert r.delete(*[b"m:%d" % i for i in range(0, 50, 2)], b"m:missing") == 25
    assert r.mget([b"m:0", b"m:1"]) == [None, b"v1\r\n"]
    assert r.incr(b"counter") == 1 and r.incrby(b"counter", 41) == 42
    pipe = r.pipeline(transaction=False)           # pipelining passes the proxy; MULTI does not
    for i in range(100):
        pipe.set(b"p:%d" % i, b"%d" % i)
    pipe.mget([b"p:%d" % i for i in range(100)])
    out = pipe.execute()
    assert out[:100] == [True] * 100 and out[100] == [b"%d" % i for i in range(100)]


@needs_nutcracker
def test_keys_spread_over_all_shards_and_hash_tags_keep_keys_together(shared):
    r = shared.client()
    keys = [b"spread:%d" % i for i in range(300)]
    assert r.mset({k: k[::-1] for k in keys}) is True
    owners = shared.owners(keys)                  # exactly one shard holds each key
    for k, i in zip(keys, owners, strict=True):
        assert shared.shard(i).get(k) == k[::-1]
    per_shard = [owners.count(i) for i in range(3)]
    assert all(n >= 50 for n in per_shard), per_shard
    tagged = [b"{user:7}:field%d" % i for i in range(40)]
    assert r.mset({k: b"x" for k in tagged}) is True
    assert len(set(shared.owners(tagged))) == 1, "a hash tag must pin keys to one shard"


@needs_nutcracker
def test_what_does_not_cross_the_proxy(shared):
    """The limits SCALING.md names: the proxy drops the connection of a client
    that sends MULTI or KEYS, multi-key EXISTS stays on one shard, and clients with redis-py's defaults (CLIENT
    SETINFO, and HELLO 3 in redis-py 8) get nothing through."""
    for cmd in (("MULTI",), ("KEYS", "*")):
        r = shared.client()
        with pytest.raises(redis.ConnectionError):
            r.execute_command(*cmd)
    # EXISTS is not split (MGET, MSET, DEL and UNLINK are): it all goes to the
    # first key's shard, so several keys count right only under one hash tag
    r = shared.client()
    assert r.mset({b"{t}a": b"1", b"{t}b": b"2"}) is True
    assert r.exists(b"{t}a", b"{t}b", b"{t}missing") == 2
    default = redis.Redis(host="127.0.0.1", port=shared.port, password=PASSWORD,
                          socket_timeout=10, retry=Retry(NoBackoff(), 0))
    with pytest.raises((redis.ConnectionError, redis.ResponseError)):
        default.set(b"never", b"acknowledged")
    assert shared.client().get(b"never") is None


# ---------------------------------------------------------------- failures
class Writers:
    """Writer threads through the proxy, each on its own connection, writing
    fresh keys with random binary values; an acknowledged write is recorded
    only after the proxy's OK, a failed one with what it tried."""

    def __init__(self, port: int, password: str | None, n: int = 4):
        self.port, self.password = port, password
        self.acked: dict[bytes, bytes] = {}
        self.tried: dict[bytes, bytes] = {}
        self.errors: list[str] = []
        self.ack_times: dict[bytes, float] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(n)]

    def run(self, t: int) -> None:
        rnd = random.Random(t)
        r = proxy_client(self.port, self.password)
        i = 0
        while not self.stop.is_set():
            i += 1
            k = b"w%d:%d" % (t, i)
            v = rnd.randbytes(rnd.randrange(0, 3000))
            try:
                r.set(k, v)
            except (redis.RedisError, OSError) as e:
                with self.lock:
                    self.tried[k] = v
                    self.errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.001)
                continue
            with self.lock:
                self.acked[k] = v
                self.ack_times[k] = time.monotonic()

    def __enter__(self) -> "Writers":
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for th in self.threads:
            th.join(timeout=60)


@needs_nutcracker
def test_kill9_of_a_shard_under_load_loses_no_acknowledged_write(cluster):
    """auto_eject_hosts off: while shard 1 is dead its keys fail (promptly:
    the proxy's connect is refused), the others keep being written; restarted
    on its directory it serves again, and every write the proxy acknowledged,
    before the kill, during it and after, reads back byte for byte."""
    c = cluster("--shards", "3")
    with Writers(c.port, None) as w:
        time.sleep(1.0)
        c.kill9(1)
        t_kill = time.monotonic()
        time.sleep(0.5)
        c.up()                                    # restarts shard 1 only
        t_back = time.monotonic()
        time.sleep(1.0)
    r = c.client()
    keys = list(w.acked)
    assert len(keys) > 200, f"only {len(keys)} writes acknowledged"
    assert w.errors, "killing a shard under load must fail some requests"
    hung = [e for e in w.errors if "Timeout" in e or "timed out" in e]
    assert not hung, f"requests hung instead of failing: {hung[:5]}"
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        got = r.mget(chunk)
        bad = [k for k, g in zip(chunk, got, strict=True) if g != w.acked[k]]
        assert not bad, f"{len(bad)} acknowledged writes lost or changed, e.g. {bad[:3]}"
    # shard 1 really held acknowledged keys from before the kill and after the restart
    s1 = c.shard(1)
    owned = [k for k, i in zip(keys, c.owners(keys), strict=True) if i == 1]
    assert any(w.ack_times[k] < t_kill for k in owned), "shard 1 got no writes before the kill"
    assert any(w.ack_times[k] > t_back for k in owned), "shard 1 got no writes after restart"
    assert all(s1.get(k) == w.acked[k] for k in owned[:300])
    # a write that failed is either absent or exactly what was sent: never garbage
    unacked = [k for k in w.tried if k not in w.acked]
    for k, g in zip(unacked, r.mget(unacked) if unacked else [], strict=True):
        assert g is None or g == w.tried[k]
    print(f"{len(keys)} writes acknowledged ({len(owned)} on the killed shard), "
          f"{len(w.errors)} failed while it was down; e.g. {sorted(set(w.errors))[:3]}")
    c.down()


@needs_nutcracker
def test_auto_eject_keeps_serving_while_a_shard_is_down(cluster):
    """auto_eject_hosts on: once the dead shard is ejected every request
    succeeds -- its keys move to the other shards, so reads of keys it held
    miss until it returns; restarted, it is tried again after
    server_retry_timeout and its keys are back, none lost."""
    retry_ms = 5000
    c = cluster("--shards", "3", "--auto-eject", "--failure-limit", "1",
                "--retry-timeout", str(retry_ms))
    r = c.client()
    old = {b"old:%d" % i: b"value %d" % i for i in range(150)}
    assert r.mset(old) is True
    on2 = [k for k, i in zip(old, c.owners(list(old)), strict=True) if i == 2]
    elsewhere = [k for k in old if k not in on2]
    assert on2 and elsewhere

    c.kill9(2)
    t_kill = time.monotonic()
    failures = 0
    while True:                                   # until the proxy has ejected shard 2
        try:
            r.set(on2[0], b"written while ejected")
            break
        except redis.RedisError:
            failures += 1
            assert time.monotonic() - t_kill < 10, "the dead shard was never ejected"
            time.sleep(0.05)
    t_ejected = time.monotonic()
    assert r.mget(elsewhere) == [old[k] for k in elsewhere]    # other shards' keys unaffected
    moved = r.mget(on2[1:])
    assert moved == [None] * len(on2[1:]), "keys of an ejected shard read as misses"
    # Serve for a while: every request must succeed until the proxy tries
    # shard 2 again (t_kill + retry_ms at the earliest; that one request may
    # fail, and the loop stops there).
    t_retry = t_kill + retry_ms / 1000
    window_end = min(t_ejected + 2.0, t_retry - 0.5)
    ops = 0
    while time.monotonic() < window_end or ops < 20:
        k = b"new:%d" % ops
        try:
            assert r.set(k, b"v%d" % ops) is True
            assert r.get(k) == b"v%d" % ops
        except redis.RedisError:
            if time.monotonic() < t_retry:
                raise
            break                                 # the proxy's retry of the dead shard
        ops += 1
    assert ops >= 20, f"only {ops} requests served while shard 2 was ejected"

    c.up()                                        # shard 2 returns with all its data
    deadline = time.monotonic() + retry_ms / 1000 + 15
    while r.get(on2[1]) != old[on2[1]]:
        assert time.monotonic() < deadline, "the proxy never took shard 2 back"
        time.sleep(0.1)
    assert r.mget(list(old)) == list(old.values()), "a restarted shard lost nothing"
    # ... and the write made while it was ejected went to another shard: it is hidden now
    assert r.get(on2[0]) == old[on2[0]]
    c.down()


def test_a_draining_server_refuses_new_connections_and_says_so_in_info(server):
    """SIGTERM: the server finishes what it has (here: replies a client does not
    read, so the drain lasts), refuses new connections at once (a proxy fails
    over promptly instead of waiting on a backlog nobody accepts from), and an
    open connection sees shutting_down:1 in INFO."""
    srv = server()
    r = srv.client()
    r.set("big", b"x" * (1 << 20))
    watcher = srv.raw()
    assert b"shutting_down:0" in watcher.call("INFO", "persistence")
    stuck = srv.connect()
    stuck.sendall(encode_command([b"GET", b"big"]) * 64)  # far more than socket buffers hold
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        deadline = time.monotonic() + 4
        while b"shutting_down:1" not in watcher.call("INFO", "persistence"):
            assert time.monotonic() < deadline, "INFO never said shutting_down:1"
            time.sleep(0.02)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
    finally:
        stuck.close()
        watcher.close()
    assert srv.proc.wait(timeout=30) == 0
    srv.start()
    assert srv.client().get("big") == b"x" * (1 << 20)



@needs_nutcracker
@pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("redis-benchmark")),
                    reason="redis-server / redis-benchmark not installed")
def test_bench_shards_smoke(tmp_path):
    """`python -m bench shards --smoke` runs both engines behind the proxy and
    writes its report (nothing here judges speed)."""
    out = tmp_path / "shards.json"
    for _attempt in range(5):
        port = random.randrange(20000, 30000, 10)
        r = subprocess.run([sys.executable, "-m", "bench", "shards", "--smoke", "--json", str(out),
                            "--dir", str(tmp_path), "--proxy-port", str(port)], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=300)
        if "in use" not in r.stderr:
            break
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    ids = {w["id"] for w in doc["workloads"]}
    assert ids == {f"shards_{n}_{op}" for n in (1, 2) for op in ("set", "get")}
    for w in doc["workloads"]:
        for engine in ("pastedb", "redis"):
            assert w["repetitions"][engine] and w["repetitions"][engine][0]["rps"] > 0
    assert set(doc["restart_after_kill9"]) == {"pastedb", "redis"}
    assert "share" in doc["caveat"] and "req/s at N shards" in r.stdout
