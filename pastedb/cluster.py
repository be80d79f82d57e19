"""A local sharded set-up: N ``pastedb serve`` shards behind twemproxy
(nutcracker), for development, tests and benchmarks.  ``pastedb cluster up`` /
``down`` / ``status`` are the command-line face of this module; docs/SCALING.md
says how to run the same thing in production.

Layout of the cluster directory (everything ``up`` starts is recorded there,
so ``down`` and ``status`` need nothing but the directory)::

    cluster.json            the set-up: proxy port, shard ports, proxy options
    nutcracker.yml          the proxy's configuration (written by up)
    nutcracker.pid / .log   the proxy process
    shard<i>/               shard i's database directory
    shard<i>.pid / .log     shard i's server process

``up`` is idempotent: on a directory that already holds a set-up it starts
whatever is not running (a shard killed with kill -9 comes back on its own
database and port) and leaves the rest alone.

A process is "running" when its pid file names a live, non-zombie process
whose command line is the one we started (a reused pid is not ours).  The
processes run in their own sessions, so they outlive the ``up`` command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pastedb.errors import ClusterError

__all__ = ["ClusterSpec", "ClusterError", "find_nutcracker", "nutcracker_yaml", "up", "down",
           "status", "shard_pid", "NUTCRACKER_DIRS"]

# Debian installs nutcracker into /usr/sbin, which is not on an ordinary user's PATH.
NUTCRACKER_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
POOL_NAME = "pastedb"
BACKENDS = {"pastedb": "pastedb", "redis": "redis-server"}   # backend: its command-line marker
SPEC_FILE = "cluster.json"
START_TIMEOUT = 30.0        # seconds a process has to answer after it is started
STOP_TIMEOUT = 60.0         # seconds a SIGTERMed shard may take to drain and checkpoint
PORT_WAIT = 3.0             # seconds a port may stay taken by a process that just died


@dataclasses.dataclass
class ClusterSpec:
    """What ``up`` starts.  Shard i listens on ``shard_port + i``."""

    shards: int = 3
    port: int = 22121                 # the proxy's port: clients connect here
    shard_port: int = 0               # first shard's port (0: port + 1)
    stats_port: int = 0               # nutcracker's stats port (0: port + 101, i.e. 22222)
    host: str = "127.0.0.1"
    auto_eject: bool = False          # eject a failed shard (its keys move) or not (they wait)
    failure_limit: int = 2            # consecutive failures that eject a shard
    retry_timeout_ms: int = 30000     # an ejected shard is tried again after this long
    timeout_ms: int = 5000            # the proxy's per-request timeout towards a shard
    server_connections: int = 1       # connections from the proxy to each shard
    requirepass: str | None = None    # shards' --requirepass and the proxy's redis_auth
    serve_args: list[str] = dataclasses.field(default_factory=list)  # more `pastedb serve` options
    # "pastedb", or "redis": redis-server with appendfsync always behind the
    # same proxy, the durable peer the benchmark compares against
    backend: str = "pastedb"

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ClusterError("a cluster needs at least one shard")
        if self.backend not in BACKENDS:
            raise ClusterError(f"unknown backend {self.backend!r}; one of {', '.join(BACKENDS)}")
        if not self.shard_port:
            self.shard_port = self.port + 1
        if not self.stats_port:
            self.stats_port = self.port + 101
        ports = [self.port, self.stats_port, *self.shard_ports()]
        if len(set(ports)) != len(ports):
            raise ClusterError(f"the proxy, stats and shard ports overlap: {ports}")
        if max(ports) > 65535 or min(ports) < 1:
            raise ClusterError(f"ports out of range: {ports}")

    def shard_ports(self) -> list[int]:
        return [self.shard_port + i for i in range(self.shards)]


def find_nutcracker(explicit: str | None = None) -> str:
    """The nutcracker executable: ``explicit``, else PATH, else /usr/sbin and
    friends.  ClusterError saying how to get it when there is none."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise ClusterError(f"nutcracker not found at {explicit}")
    path = os.pathsep.join([os.environ.get("PATH", ""), *NUTCRACKER_DIRS])
    found = shutil.which("nutcracker", path=path)
    if found is None:
        raise ClusterError("nutcracker (twemproxy) not found on PATH or in "
                           f"{', '.join(NUTCRACKER_DIRS)}; install it (Debian/Ubuntu: "
                           "apt-get install nutcracker) or pass --nutcracker PATH")
    return found


def nutcracker_yaml(spec: ClusterSpec, name: str = POOL_NAME) -> str:
    """The proxy's configuration for ``spec``: one pool, ketama over the shard
    names (not their addresses, so a shard may move without moving keys),
    murmur (fnv1a_64 spreads similar keys unevenly: SCALING.md), hash tags in braces."""
    lines = [
        f"{name}:",
        f"  listen: {spec.host}:{spec.port}",
        "  redis: true",
        "  hash: murmur",
        "  hash_tag: \"{}\"",
        "  distribution: ketama",
        f"  auto_eject_hosts: {'true' if spec.auto_eject else 'false'}",
        f"  server_failure_limit: {spec.failure_limit}",
        f"  server_retry_timeout: {spec.retry_timeout_ms}",
        f"  timeout: {spec.timeout_ms}",
        f"  server_connections: {spec.server_connections}",
        "  preconnect: true",
    ]
    if spec.requirepass:
        lines.append(f"  redis_auth: {json.dumps(spec.requirepass)}")
    lines.append("  servers:")
    lines += [f"    - {spec.host}:{p}:1 shard{i}" for i, p in enumerate(spec.shard_ports())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- processes
def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, marker: str) -> bool:
    """``pid`` is a running (not zombie) process whose command line holds ``marker``."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _request(host: str, port: int, password: str | None, command: bytes,
             timeout: float = 2.0) -> bytes | None:
    """Send (AUTH and) one argument-less command; its reply: a status or error
    line as it came, or a bulk string's payload.  None: no connection, or no
    whole reply within ``timeout``."""
    from pastedb.core.resp import encode_command

    cmds = ([[b"AUTH", password.encode()]] if password else []) + [[command]]
    reply = None
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"".join(encode_command(c) for c in cmds))
            f = s.makefile("rb")
            for _ in cmds:                        # the last reply is the command's
                line = f.readline()
                if not line.endswith(b"\r\n"):
                    return None
                reply = line[:-2]
                if reply.startswith(b"$"):
                    n = int(reply[1:])
                    reply = b"" if n < 0 else f.read(n + 2)[:-2]
    except (OSError, ValueError):
        return None
    return reply


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class _Proc:
    """One process of the set-up: its pid file, log, command line and the
    request that proves it serves."""

    def __init__(self, directory: Path, name: str, marker: str, port: int):
        self.name = name
        self.marker = marker
        self.port = port
        self.pidfile = directory / f"{name}.pid"
        self.logfile = directory / f"{name}.log"

    @property
    def pid(self) -> int | None:
        return _read_pid(self.pidfile)

    def running(self) -> bool:
        return _alive(self.pid, self.marker)

    def start(self, argv: list[str], host: str, password: str | None,
              env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen[bytes]:
        # A process killed a moment ago may still hold its port: a killed
        # multi-threaded process shows as a zombie before its last thread
        # has exited and closed its sockets.  Give that a few seconds.
        deadline = time.monotonic() + PORT_WAIT
        while not _port_free(host, self.port):
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name}: port {self.port} on {host} is in use")
            time.sleep(0.02)
        with open(self.logfile, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=env, cwd=cwd, start_new_session=True)
        self.pidfile.write_text(f"{proc.pid}\n")
        self.password = password
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], host: str,
                   timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise ClusterError(f"{self.name} exited with {proc.returncode} while starting:\n"
                                   f"{_log_tail(self.logfile)}")
            if _request(host, self.port, self.password, b"PING") == b"+PONG":
                return
            time.sleep(0.02)
        raise ClusterError(f"{self.name} did not answer on port {self.port} within {timeout:.0f}s "
                           f"(pid {proc.pid}, still running; log {self.logfile})")

    def signal(self, sig: int) -> None:
        pid = self.pid
        if _alive(pid, self.marker):
            assert pid is not None
            os.kill(pid, sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM and wait until gone.  False: it was not running."""
        pid = self.pid
        if not _alive(pid, self.marker):
            self.pidfile.unlink(missing_ok=True)
            return False
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, self.marker):
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name} (pid {pid}) still running {timeout:.0f}s after "
                                   f"SIGTERM; see {self.logfile}")
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)
        return True


def _shard_procs(directory: Path, spec: ClusterSpec) -> list[_Proc]:
    return [_Proc(directory, f"shard{i}", BACKENDS[spec.backend], p)
            for i, p in enumerate(spec.shard_ports())]


def _shard_argv(spec: ClusterSpec, data: Path, port: int) -> list[str]:
    if spec.backend == "redis":
        data.mkdir(exist_ok=True)
        argv = [shutil.which("redis-server") or "redis-server", "--bind", spec.host,
                "--port", str(port), "--dir", str(data), "--save", "", "--daemonize", "no",
                "--appendonly", "yes", "--appendfsync", "always", *spec.serve_args]
    else:
        argv = [sys.executable, "-m", "pastedb", "serve", str(data), "--host", spec.host,
                "--port", str(port), *spec.serve_args]
    if spec.requirepass:
        argv += ["--requirepass", spec.requirepass]
    return argv


def _proxy_proc(directory: Path, spec: ClusterSpec) -> _Proc:
    return _Proc(directory, "nutcracker", "nutcracker", spec.port)


def _pastedb_env() -> tuple[dict[str, str], str]:
    """Shards import the same pastedb as this process."""
    import pastedb

    root = os.path.dirname(os.path.dirname(os.path.abspath(pastedb.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env, root


# ---------------------------------------------------------------- the set-up
def load_spec(directory: str | os.PathLike[str]) -> ClusterSpec | None:
    path = Path(directory) / SPEC_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ClusterError(f"cannot read {path}: {e}") from e
    return ClusterSpec(**data)


def up(directory: str | os.PathLike[str], spec: ClusterSpec | None = None, *,
       nutcracker: str | None = None) -> dict[str, Any]:
    """Start the set-up in ``directory`` (creating it with ``spec``), or start
    whatever of an existing one is not running.  Returns status(directory).

    The shards start first and must answer before the proxy starts, so the
    proxy's first connections find them serving."""
    d = Path(directory).resolve()     # the shards run elsewhere: no relative paths
    old = load_spec(d)
    if old is not None and spec is not None and spec != old:
        raise ClusterError(f"{d} already holds a different set-up ({old.shards} shards, proxy "
                           f"port {old.port}); run `pastedb cluster down {d}` and remove it, or "
                           f"call up without options")
    spec = old or spec or ClusterSpec()
    exe = find_nutcracker(nutcracker)
    d.mkdir(parents=True, exist_ok=True)
    if old is None:
        (d / SPEC_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=2) + "\n")
    (d / "nutcracker.yml").write_text(nutcracker_yaml(spec))

    env, root = _pastedb_env()
    started = []
    for i, sh in enumerate(_shard_procs(d, spec)):
        if sh.running():
            continue
        argv = _shard_argv(spec, d / f"shard{i}", sh.port)
        started.append((sh, sh.start(argv, spec.host, spec.requirepass, env=env, cwd=root)))
    for sh, proc in started:
        sh.wait_ready(proc, spec.host)

    proxy = _proxy_proc(d, spec)
    if not proxy.running():
        check = subprocess.run([exe, "-t", "-c", str(d / "nutcracker.yml")],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise ClusterError(f"nutcracker rejected {d / 'nutcracker.yml'}: "
                               f"{(check.stderr or check.stdout).strip()}")
        argv = [exe, "-c", str(d / "nutcracker.yml"), "-s", str(spec.stats_port),
                "-a", spec.host, "-o", str(proxy.logfile), "-p", str(proxy.pidfile)]
        # nutcracker answers PING itself (it is not forwarded), so this proves
        # the proxy listens; the shards were proven above.
        proxy.wait_ready(proxy.start(argv, spec.host, spec.requirepass), spec.host)
    return status(d)


def down(directory: str | os.PathLike[str], timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop the proxy, then every shard (SIGTERM: each finishes its in-flight
    commit groups, checkpoints and exits).  Returns the names it stopped."""
    d = Path(directory)
    spec = load_spec(d)
    if spec is None:
        raise ClusterError(f"{d} holds no cluster ({SPEC_FILE} missing)")
    stopped = []
    if _proxy_proc(d, spec).stop(timeout):
        stopped.append("nutcracker")
    running = [sh for sh in _shard_procs(d, spec) if sh.running()]
    for sh in running:                 # signal all first: they drain in parallel
        sh.signal(signal.SIGTERM)
    for sh in running:
        sh.stop(timeout)
        stopped.append(sh.name)
    return stopped


def shard_pid(directory: str | os.PathLike[str], i: int) -> int | None:
    """The pid of shard i when it is running (for tests that kill -9 it)."""
    d = Path(directory)
    spec = load_spec(d)
    if spec is None or not 0 <= i < spec.shards:
        return None
    sh = _shard_procs(d, spec)[i]
    return sh.pid if sh.running() else None


def _info(host: str, port: int, password: str | None) -> dict[str, str]:
    """A shard's INFO fields, read straight from the shard (INFO does not pass
    the proxy)."""
    text = _request(host, port, password, b"INFO", timeout=5.0) or b""
    out: dict[str, str] = {}
    for line in text.decode(errors="replace").splitlines():
        k, sep, v = line.partition(":")
        if sep and not k.startswith("#"):
            out[k] = v
    return out


def status(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Every process of the set-up: name, port, pid, running; for a running
    shard also its health fields from INFO."""
    d = Path(directory)
    spec = load_spec(d)
    if spec is None:
        raise ClusterError(f"{d} holds no cluster ({SPEC_FILE} missing)")
    procs = []
    proxy = _proxy_proc(d, spec)
    procs.append({"name": "nutcracker", "port": spec.port, "pid": proxy.pid,
                  "running": proxy.running(), "stats_port": spec.stats_port})
    for sh in _shard_procs(d, spec):
        row: dict[str, Any] = {"name": sh.name, "port": sh.port, "pid": sh.pid,
                               "running": sh.running()}
        if row["running"]:
            info = _info(spec.host, sh.port, spec.requirepass)
            if info:
                row["keys"] = "0"           # INFO's keyspace section is empty then
            for k in ("keys", "loading", "shutting_down", "aof_last_write_status",
                      "recovered_records", "uptime_in_seconds"):
                if k in info:
                    row[k] = info[k]
            if "db0" in info:
                row["keys"] = info["db0"].split(",")[0].partition("=")[2]
        procs.append(row)
    return {"directory": str(d), "spec": dataclasses.asdict(spec), "processes": procs}
