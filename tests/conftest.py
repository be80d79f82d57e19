"""Shared pytest configuration.

``--slow`` enables the long crash and fuzz runs (tests marked ``slow``; the
marker itself is registered in pyproject.toml).  Without it they are skipped,
so the default run stays short.

``--crash-runs N`` sets how many kill -9 iterations each crash test makes
(default: a short run, or a long one with ``--slow``).

Fixtures: ``db_path`` (a database directory that does not exist yet) and
``db`` (that database opened with the default options, closed afterwards);
``server``, a factory that starts the real ``pastedb serve`` process (see
ServerProcess) and stops it with SIGTERM, asserting exit code 0.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tally

try:
    import pastedb
except ImportError:
    # Running from a checkout without `pip install -e .`: use the in-place build.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import pastedb


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="run slow crash and fuzz tests")
    parser.addoption("--crash-runs", type=int, default=None, metavar="N",
                     help="kill -9 iterations per crash test (default 15, 200 with --slow)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: enable with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """The crash tests' own count of what they did (tests/tally.py)."""
    if tally.counts["kill"] or tally.counts["image"]:
        terminalreporter.write_line(
            f"crash tests: {tally.counts['kill']} kill -9 rounds, "
            f"{tally.counts['image']} power-loss images checked")


@pytest.fixture
def slow(request) -> bool:
    """True when the run asked for the long versions (--slow)."""
    return bool(request.config.getoption("--slow"))


@pytest.fixture
def crash_runs(request) -> int:
    """Iterations for a crash test: --crash-runs N, else 15 (200 with --slow)."""
    n = request.config.getoption("--crash-runs")
    if n is not None:
        return n
    return 200 if request.config.getoption("--slow") else 15


@pytest.fixture
def db_path(tmp_path) -> Path:
    """Where a test's database lives; the directory does not exist yet."""
    return tmp_path / "db"


@pytest.fixture
def db(db_path):
    """The test's database, opened with the default options."""
    handle = pastedb.open(db_path)
    try:
        yield handle
    finally:
        handle.close()


# ---------------------------------------------------------------- server process
# The network tests drive the REAL server: `python -m pastedb serve` in a child
# process, on a free port, stopped with SIGTERM (which must exit 0) or killed
# with SIGKILL by the crash tests.

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 20.0      # seconds until the port must accept connections
SERVER_STOP_TIMEOUT = 30.0       # seconds a SIGTERMed server may take to drain


def free_port() -> int:
    """A TCP port nobody listens on right now (the server may still lose a race
    for it; ServerProcess.start retries then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One `pastedb serve DIR` child process, restartable on the same DIR.

    ``args`` are extra command-line options (``"--requirepass", "pw"``).  Every
    (re)start picks a new free port; ``port``/``pid`` describe the current one.
    stderr of every start goes to ``log_path``, quoted in failures.
    """

    def __init__(self, directory: Path, args, log_path: Path):
        self.directory = Path(directory)
        self.args = [str(a) for a in args]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.clients: list = []

    # -- life cycle
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "ServerProcess":
        assert not self.running, "server already running"
        for _attempt in range(5):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(f"--- start on port {self.port}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "pastedb", "serve", str(self.directory),
                     "--port", str(self.port), *self.args],
                    cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if self._wait_ready():
                return self
            if "cannot listen" not in self.log():     # a real failure, not a port race
                break
        pytest.fail(f"server did not start (exit code {self.proc.returncode}):\n{self.log()}")

    def _wait_ready(self) -> bool:
        import redis

        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            # A reply, not just an accepted connection: the kernel accepts as
            # soon as the socket listens, before the event loop runs and
            # before SIGTERM is handled.  Any reply counts (with --requirepass
            # PING gets NOAUTH).
            try:
                with self.client(socket_timeout=5, socket_connect_timeout=5,
                                 single_connection_client=True, register=False) as r:
                    r.ping()
                    # Ours, not another test session's server on a port ours
                    # failed to bind (it then exits with "cannot listen").
                    pid = r.info("server").get("process_id")
                if pid is not None and int(pid) != self.proc.pid:
                    time.sleep(0.01)
                    continue
                return True
            except (redis.AuthenticationError, redis.ResponseError):
                return True
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.01)
        self.proc.kill()
        self.proc.wait()
        return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop with SIGTERM (or SIGINT) and assert a clean exit (code 0)."""
        self.close_clients()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server ignored signal {sig} for {SERVER_STOP_TIMEOUT}s:\n{self.log()}")
        assert rc == 0, f"server exited with {rc} after signal {sig}:\n{self.log()}"
        return rc

    def kill(self) -> None:
        """kill -9: no chance to flush, close or say goodbye."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.close_clients()

    def restart(self) -> "ServerProcess":
        if self.running:
            self.stop()
        return self.start()

    # -- helpers
    def client(self, protocol: int = 2, register: bool = True, **kwargs):
        """A redis-py client for this server (closed before the server stops,
        unless ``register`` is false).  It never retries: a dropped connection
        or refused AUTH must surface.  With ``single_connection_client=True``
        it connects at once and keeps that one connection."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs.setdefault("socket_timeout", 60)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        r = redis.Redis(host="127.0.0.1", port=self.port, protocol=protocol, **kwargs)
        if register:
            self.clients.append(r)
        return r

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw TCP connection for mangling RESP by hand (malformed input)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def raw(self, timeout: float = 10.0) -> "RespConn":
        """A connection speaking RESP by hand: exact bytes, pipelining at will.
        Only for what redis-py cannot show (see RespConn); else use client()."""
        return RespConn(self.connect(timeout))

    def close_clients(self) -> None:
        for r in self.clients:
            try:
                r.close()
            except Exception:
                pass
        self.clients.clear()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def rss_kib(self) -> int:
        """Resident set size of the server process (VmRSS), KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS line")


class RespError(str):
    """An error reply, as RespConn.read_reply returns it (not raised)."""


class RespConn:
    """A minimal RESP2/RESP3 client over a socket: ``send(*args)`` writes one
    command (or many, before any reply is read), ``read_reply()`` returns the
    next reply -- bytes, int, None, list, dict, RespError -- and raises
    ConnectionError when the server closes the connection.

    Everything else talks to the server through redis-py (ServerProcess.client).
    This one stays for what a real client hides on purpose: the exact reply --
    Redis's error codes and strings (redis-py turns "-ERR ..." / "-NOAUTH ..." /
    "-WRONGPASS ..." into exception classes and strips the code), replies its
    callbacks rewrite (PING's argument, QUEUED inside MULTI by hand), the
    wire types of RESP3 -- and bytes sent exactly as given (send_raw: the
    crash tests' pipelines of hand-built commands)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    @staticmethod
    def encode(*args) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send(self, *args) -> None:
        self.sock.sendall(self.encode(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, *args):
        self.send(*args)
        return self.read_reply()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        assert self.buf[n:n + 2] == b"\r\n", "bulk reply not followed by CRLF"
        del self.buf[:n + 2]
        return data

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+",):
            return rest
        if kind == b"-":
            return RespError(rest.decode("latin-1"))
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"=", b"!"):
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        if kind == b"%":
            return {self.read_reply(): self.read_reply() for _ in range(int(rest))}
        if kind == b"_":
            return None
        if kind == b",":
            return float(rest)
        if kind == b"#":
            return rest == b"t"
        raise AssertionError(f"unexpected reply line {line!r}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(tmp_path):
    """Factory: ``server(*cli_args, directory=None)`` starts a real pastedb
    server process and returns its ServerProcess once the port accepts
    connections and answers a PING.  At teardown every server still running
    gets SIGTERM and must exit 0 (a test that kill -9s a server and does not
    restart it is exempt)."""
    started: list[ServerProcess] = []

    def start(*args, directory=None) -> ServerProcess:
        n = len(started)
        srv = ServerProcess(directory if directory is not None else tmp_path / f"server{n}",
                            args, tmp_path / f"server{n}.log")
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        if srv.running:
            srv.stop()
