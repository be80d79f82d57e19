"""Command-line entry points: ``pastedb serve``, ``pastedb cluster``, the
everyday commands (``stat``, ``get``, ``set``, ``del``, ``scan``, ``dump``,
``load``) and ``pastedb-check``."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

import pastedb


@click.group()
@click.version_option(pastedb.__version__, prog_name="pastedb")
def main() -> None:
    """pastedb: a durable key-value store on the PASTE design."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback unless told otherwise).")
@click.option("--port", default=6380, show_default=True, type=int)
@click.option("--requirepass", default=None, help="Password clients must AUTH with.")
@click.option("--maxclients", default=10000, show_default=True, type=int)
@click.option("--sync", "sync_mode", type=click.Choice(["yes", "no"]), default="yes",
              show_default=True,
              help="yes: reply to a write only once it is durable.  no: reply at once and "
                   "make it durable in the background (for comparison only: a crash can lose "
                   "acknowledged writes).")
@click.option("--persist", type=click.Choice(["auto", "pmem", "fdatasync", "msync", "none",
                                              "crashsim"]),
              default="auto", show_default=True,
              help="Durability backend (crashsim: tests only, fdatasync with simulated "
                   "barriers; see --crash-images).")
@click.option("--copy", is_flag=True,
              help="Receive into ordinary buffers and copy values into the pool: the copying "
                   "baseline, kept for the ablation benchmark only.")
@click.option("--receive", type=click.Choice(["auto", "splice", "recv"]), default="auto",
              show_default=True,
              help="Zero-copy receive path: splice() socket->pool file (auto on ordinary "
                   "files: keeps fdatasync cheap), or recv() straight into the mapping "
                   "(auto on DAX).")
@click.option("--window", default=65536, show_default=True, type=int,
              help="Receive window (pool extent) per connection, bytes.")
@click.option("--proto-max-bulk-len", default=pastedb.limits()["max_value_len"],
              show_default=True, type=int, help="Largest bulk string accepted.")
@click.option("--client-query-buffer-limit", default=1 << 30, show_default=True, type=int)
@click.option("--crash-images", default=None, hidden=True, type=click.Path(file_okay=False),
              help="Tests only, with --persist crashsim: on each SIGUSR1 write the files a "
                   "power loss at that instant could leave into DIR/<n>, then DIR/<n>.done.")
@click.option("--client-output-buffer-limit", default="0 0 0", show_default=True,
              help="Redis's limit for normal clients: '<hard> <soft> <soft seconds>' (sizes "
                   "as Redis writes them: 64mb, 1gb; 0 disables).  A client whose unsent "
                   "replies reach the hard limit, or stay over the soft one that long, is "
                   "disconnected.")
@click.option("--max-disk", default="0", show_default=True,
              help="A quota on the database's files (pool + index), as Redis writes sizes "
                   "(1gb, 512mb; 0: none), the disk's analogue of maxmemory.  Past it, as on "
                   "a full file system, commands that need new space get -OOM; reads, "
                   "deletes and INFO go on, and writes resume once deletes and reclamation "
                   "make room.")
@click.option("--databases", default=16, show_default=True, type=click.IntRange(1, 256),
              help="Numbered databases, SELECT 0..N-1, as Redis's 'databases' (all in the one "
                   "file: database n is db.database(n) for pastedb.open()).")
def serve(directory: str, host: str, port: int, requirepass: str | None, maxclients: int,
          sync_mode: str, persist: str, copy: bool, receive: str, window: int, proto_max_bulk_len: int,
          client_query_buffer_limit: int, crash_images: str | None,
          client_output_buffer_limit: str, max_disk: str, databases: int) -> None:
    """Serve the database in DIRECTORY over the Redis protocol."""
    from pastedb.core.server import Server, parse_output_limit, parse_size

    try:
        parse_output_limit(client_output_buffer_limit)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--client-output-buffer-limit") from e
    try:
        max_disk_bytes = parse_size(max_disk)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--max-disk") from e

    logging.basicConfig(level=logging.INFO, format="%(asctime)s pastedb: %(message)s")
    # Block SIGTERM/SIGINT before anything starts: the loop takes them from a
    # signalfd, so no thread (the engine's grower, the flusher) may have them
    # delivered, and one arriving before the loop runs must not kill us.
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
    if crash_images and persist != "crashsim":
        raise click.ClickException("--crash-images needs --persist crashsim")
    import time

    t_open = time.monotonic()
    try:
        db = pastedb.open(directory, persist=persist)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e
    open_ms = (time.monotonic() - t_open) * 1e3
    if max_disk_bytes:
        db.set_max_disk(max_disk_bytes)
    if crash_images:
        _start_crash_imager(db, crash_images)
    try:
        srv = Server(db, host=host, port=port, requirepass=requirepass, maxclients=maxclients,
                     sync=sync_mode == "yes", copy=copy, window=window, receive=receive,
                     max_bulk_len=proto_max_bulk_len, max_query=client_query_buffer_limit,
                     client_output_buffer_limit=client_output_buffer_limit,
                     databases=databases)
    except OSError as e:
        db.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    st = db.stats()
    click.echo(f"pastedb {pastedb.__version__} serving {directory} on {host}:{srv.address[1]} "
               f"(persist={st['persist']}, acks={'after durable' if sync_mode == 'yes' else 'before durable'}, "
               f"receive={srv.receive_path()}, keys={st['keys']}; opened in {open_ms:.0f} ms, "
               f"{st['recovered_records']} log records replayed)", err=True)
    rc = srv.serve_forever()
    db.close()
    click.echo("pastedb: shut down cleanly" if rc == 0 else
               "pastedb: a durability barrier failed; stopped without acknowledging what it "
               "covered", err=True)
    sys.exit(rc)


@main.group()
def cluster() -> None:
    """A local sharded set-up: N `pastedb serve` shards behind twemproxy
    (nutcracker), for development and tests.  See docs/SCALING.md."""


@cluster.command("up")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--shards", type=click.IntRange(1, 64), default=None,
              help="Number of shards  [default: 3]")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="The proxy's port; clients connect here  [default: 22121]")
@click.option("--shard-port", type=click.IntRange(1, 65535), default=None,
              help="Port of shard 0; shard i listens on this + i  [default: PORT + 1]")
@click.option("--stats-port", type=click.IntRange(1, 65535), default=None,
              help="nutcracker's stats port  [default: PORT + 101]")
@click.option("--host", default=None, help="Address everything binds  [default: 127.0.0.1]")
@click.option("--auto-eject/--no-auto-eject", default=None,
              help="Eject a failed shard (its keys move to the others; reads of them miss) or "
                   "not (its keys are unavailable until it returns; nothing is lost)  "
                   "[default: no-auto-eject]")
@click.option("--failure-limit", type=click.IntRange(1), default=None,
              help="Consecutive failures that eject a shard (with --auto-eject)  [default: 2]")
@click.option("--retry-timeout", "retry_timeout_ms", type=click.IntRange(1), default=None,
              help="ms before an ejected shard is tried again  [default: 30000]")
@click.option("--timeout", "timeout_ms", type=click.IntRange(1), default=None,
              help="The proxy's per-request timeout towards a shard, ms  [default: 5000]")
@click.option("--server-connections", type=click.IntRange(1), default=None,
              help="Connections from the proxy to each shard  [default: 1]")
@click.option("--requirepass", default=None,
              help="Password of the shards, sent by the proxy (redis_auth); clients AUTH "
                   "to the proxy with it.")
@click.option("--serve-arg", "serve_args", multiple=True,
              help="One more `pastedb serve` option for every shard (repeatable), "
                   "e.g. --serve-arg=--persist=msync")
@click.option("--backend", type=click.Choice(["pastedb", "redis"]), default=None,
              help="redis: redis-server with appendfsync always as the shards, behind the "
                   "same proxy (for comparison)  [default: pastedb]")
@click.option("--nutcracker", default=None,
              help="The nutcracker executable  [default: PATH, then /usr/sbin]")
def cluster_up(directory: str, nutcracker: str | None, **options: Any) -> None:
    """Start N shards and nutcracker in front of them, recorded in DIRECTORY.
    On an existing set-up, start whatever is not running (e.g. a shard that
    was killed) and change nothing else."""
    import dataclasses

    from pastedb import cluster as cl

    given: dict[str, Any] = {k: (list(v) if k == "serve_args" else v)
                             for k, v in options.items() if v is not None and v != ()}
    try:
        old = cl.load_spec(directory)
        spec = None
        if old is None:
            spec = cl.ClusterSpec(**given)
        elif given:
            spec = cl.ClusterSpec(**{**dataclasses.asdict(old), **given})
        st = cl.up(directory, spec, nutcracker=nutcracker)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e
    _print_status(st)


@cluster.command("down")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
def cluster_down(directory: str) -> None:
    """Stop the proxy, then every shard (SIGTERM: each makes its in-flight
    writes durable, checkpoints and exits).  The databases stay in DIRECTORY."""
    from pastedb import cluster as cl

    try:
        stopped = cl.down(directory)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@cluster.command("status")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def cluster_status(directory: str, as_json: bool) -> None:
    """Each process of the set-up, and each running shard's health from INFO.
    Exit 0 when everything runs, 1 otherwise."""
    import json

    from pastedb import cluster as cl

    try:
        st = cl.status(directory)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _print_status(st)
    sys.exit(0 if all(p["running"] for p in st["processes"]) else 1)


def _print_status(st: dict) -> None:
    spec = st["spec"]
    click.echo(f"{st['directory']}: {spec['shards']} shards behind nutcracker on "
               f"{spec['host']}:{spec['port']} (auto_eject_hosts: "
               f"{'true' if spec['auto_eject'] else 'false'})")
    for p in st["processes"]:
        extra = "  ".join(f"{k}={p[k]}" for k in ("keys", "recovered_records",
                                                  "aof_last_write_status", "shutting_down",
                                                  "stats_port") if k in p)
        click.echo(f"  {p['name']:<11} port {p['port']:<5}  "
                   f"{'running, pid ' + str(p['pid']) if p['running'] else 'NOT RUNNING'}"
                   f"{'  ' + extra if extra else ''}")
def _start_crash_imager(db: pastedb.DB, directory: str) -> None:
    """Tests: a thread that writes a power-loss image per SIGUSR1 (taken
    while the server runs: everything acknowledged before the signal was
    sent must be in it)."""
    import os
    import signal
    import threading

    def run() -> None:
        n = 0
        while True:
            signal.sigwait({signal.SIGUSR1})
            path = os.path.join(directory, str(n))
            db._crash_image(path, n)
            with open(path + ".done", "w"):
                pass
            n += 1

    os.makedirs(directory, exist_ok=True)
    threading.Thread(target=run, name="pastedb-crash-imager", daemon=True).start()


# -- everyday commands ------------------------------------------------------
#
# Commands that only read open read-only (_open_for_reading), so they work
# beside a running writer (`pastedb serve`, an embedded DB) and never write.

def _open_db(directory: str, *, create: bool, readonly: bool = False) -> pastedb.DB:
    try:
        return pastedb.open(directory, create=create, readonly=readonly)
    except pastedb.LockedError as e:
        raise click.ClickException(
            f"{directory} is open for writing in another process (a running `pastedb "
            f"serve`?): {e}; write through it, or stop it first") from e
    except FileNotFoundError as e:
        raise click.ClickException(f"no database in {directory}") from e
    except (pastedb.Error, OSError) as e:
        raise click.ClickException(f"cannot open {directory}: {e}") from e


def _open_for_reading(directory: str) -> pastedb.DB:
    return _open_db(directory, create=False, readonly=True)


def _open_for_writing(directory: str) -> pastedb.DB:
    return _open_db(directory, create=True)


def _arg_bytes(text: str, as_hex: bool, what: str) -> bytes:
    """A key or value given on the command line: as typed (the file system's
    encoding, so any byte survives), or hex with --hex."""
    if not as_hex:
        return os.fsencode(text)
    try:
        return bytes.fromhex(text)
    except ValueError as e:
        raise click.BadParameter(f"not hex: {text!r}", param_hint=what) from e


def _show_bytes(data: bytes, as_hex: bool) -> str:
    """A key or value for a terminal: hex with --hex, else printable ASCII as
    is and every other byte (and backslash) escaped, as mdb_dump -p does."""
    if as_hex:
        return data.hex()
    text = data.decode("latin-1")
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(ch if " " <= ch <= "~" and ch != "\\" else
                   "\\\\" if ch == "\\" else f"\\x{ord(ch):02x}" for ch in text)


@contextlib.contextmanager
def _progress(label: str, length: int | None) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr while long work runs (only on a terminal)."""
    if not sys.stderr.isatty():
        yield None
        return
    bar: Any = click.progressbar(length=length, label=label, file=sys.stderr,
                                 show_pos=length is None)
    with bar:
        yield bar.update


def _keys_given(prefix: str | None, start: str | None, stop: str | None,
                as_hex: bool) -> dict[str, bytes | None]:
    return {name: None if v is None else _arg_bytes(v, as_hex, "--" + name)
            for name, v in (("prefix", prefix), ("start", start), ("stop", stop))}


_range_options = [
    click.option("--prefix", default=None, help="Only keys that begin with this."),
    click.option("--start", default=None, help="Only keys >= this."),
    click.option("--stop", default=None, help="Only keys < this."),
]


def _with_range(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_range_options):
        f = opt(f)
    return f


_dir_argument = click.argument("directory", type=click.Path(file_okay=False))
_hex_option = click.option("--hex", "as_hex", is_flag=True,
                           help="Keys and values are given and shown as hex.")


@main.command()
@_dir_argument
@click.option("--json", "as_json", is_flag=True, help="Print the stats as JSON.")
def stat(directory: str, as_json: bool) -> None:
    """The database's counters and sizes (DB.stats())."""
    import json

    with _open_for_reading(directory) as db:
        st = db.stats()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    width = max(map(len, st))
    for k, v in st.items():
        if isinstance(v, float):
            v = f"{v:.3f}"
        elif isinstance(v, int) and not isinstance(v, bool) and k.endswith("bytes"):
            v = f"{v} ({_human(v)})"
        click.echo(f"{k:<{width}}  {v}")


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    raise AssertionError("unreachable")


_database_option = click.option(
    "--database", "-n", "dbno", type=click.IntRange(0, 255), default=0, show_default=True,
    help="The numbered database (SELECT n of pastedb serve, db.database(n)).")


def _in_db(handle: Any, dbno: int) -> Any:
    """The handle (database 0) or its numbered database dbno."""
    if not dbno:
        return handle
    try:
        return handle.database(dbno)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e


@main.command()
@_dir_argument
@click.argument("key")
@_hex_option
@click.option("--raw", is_flag=True, help="Write the value's bytes exactly, no newline.")
@_database_option
def get(directory: str, key: str, as_hex: bool, raw: bool, dbno: int) -> None:
    """Print the value of KEY (exit 1 when it is absent)."""
    with _open_for_reading(directory) as db:
        value = _in_db(db, dbno).get(_arg_bytes(key, as_hex, "KEY"))
    if value is None:
        raise click.ClickException(f"no key {key!r}")
    if raw:
        sys.stdout.buffer.write(value)
    elif as_hex:
        click.echo(value.hex())
    else:
        sys.stdout.buffer.write(value + b"\n")
    sys.stdout.flush()


@main.command("set")
@_dir_argument
@click.argument("key")
@click.argument("value")
@_hex_option
@_database_option
def set_(directory: str, key: str, value: str, as_hex: bool, dbno: int) -> None:
    """Set KEY to VALUE (durable when the command returns)."""
    k, v = _arg_bytes(key, as_hex, "KEY"), _arg_bytes(value, as_hex, "VALUE")
    with _open_for_writing(directory) as db:
        try:
            _in_db(db, dbno).put(k, v)
        except (ValueError, pastedb.Error) as e:
            raise click.ClickException(str(e)) from e


@main.command("del")
@_dir_argument
@click.argument("key")
@_hex_option
@_database_option
def del_(directory: str, key: str, as_hex: bool, dbno: int) -> None:
    """Delete KEY (exit 1 when it was absent)."""
    with _open_db(directory, create=False) as db:
        existed = _in_db(db, dbno).delete(_arg_bytes(key, as_hex, "KEY"))
    if not existed:
        raise click.ClickException(f"no key {key!r}")


@main.command()
@_dir_argument
@_with_range
@click.option("--reverse", is_flag=True, help="Descending key order.")
@click.option("--limit", type=click.IntRange(0), default=None, help="At most this many keys.")
@click.option("--values", is_flag=True, help="Print KEY<TAB>VALUE, not only the key.")
@_hex_option
@_database_option
def scan(directory: str, prefix: str | None, start: str | None, stop: str | None,
         reverse: bool, limit: int | None, values: bool, as_hex: bool, dbno: int) -> None:
    """Print the keys in order, one a line (non-printable bytes escaped as
    \\xNN; --hex for hex)."""
    import itertools

    sel = _keys_given(prefix, start, stop, as_hex)
    with _open_for_reading(directory) as db:
        items = _in_db(db, dbno).items(sel["start"], sel["stop"], prefix=sel["prefix"],
                                       reverse=reverse)
        for k, v in itertools.islice(items, limit):
            click.echo(f"{_show_bytes(k, as_hex)}\t{_show_bytes(v, as_hex)}" if values
                       else _show_bytes(k, as_hex))


@main.command()
@_dir_argument
@_with_range
@_hex_option
@_database_option
def dump(directory: str, prefix: str | None, start: str | None, stop: str | None,
         as_hex: bool, dbno: int) -> None:
    """Write the database (or the keys selected) to stdout as text (docs/DUMP.md):
    LMDB's mdb_dump format, readable by `pastedb load` and mdb_load.  One
    numbered database per dump (--database)."""
    from pastedb.dump import dump as dump_db

    sel = _keys_given(prefix, start, stop, as_hex)
    with _open_for_reading(directory) as handle:
        db = _in_db(handle, dbno)
        whole = not any(sel.values())
        with _progress("dump", len(db) if whole else None) as update:
            try:
                dump_db(db, sys.stdout.buffer, progress=update, **sel)
            except BrokenPipeError:
                sys.stderr.close()      # the reader went away: no traceback, exit 1
                sys.exit(1)


@main.command()
@_dir_argument
@click.option("--batch", "batch_records", type=click.IntRange(1), default=50_000,
              show_default=True, help="Records per batch (each batch is one durable commit).")
@_database_option
def load(directory: str, batch_records: int, dbno: int) -> None:
    """Put the records of a dump read from stdout into the database in
    DIRECTORY (docs/DUMP.md).  Into a new DIRECTORY: all or nothing (built
    under a temporary name, renamed when complete).  Into an existing
    database: batches; on bad input the batches before it stay applied."""
    from pastedb.dump import DumpFormatError
    from pastedb.dump import load as load_db

    if sys.stdin.isatty():
        raise click.UsageError("load reads a dump from stdin: pastedb load DIR < FILE")
    fresh = not os.path.exists(directory) or (os.path.isdir(directory)
                                             and not os.listdir(directory))
    target = directory
    if fresh:
        parent = os.path.dirname(os.path.abspath(directory))
        target = os.path.join(parent, f".{os.path.basename(os.path.abspath(directory))}"
                                      f".loading-{os.getpid()}")
    try:
        size = os.fstat(sys.stdin.fileno()).st_size
    except (OSError, ValueError):
        size = 0
    try:
        with _open_for_writing(target) as handle, _progress("load", size or None) as update:
            db = _in_db(handle, dbno)
            st = load_db(db, sys.stdin.buffer, batch_records=batch_records, progress=update)
        if fresh:
            if os.path.isdir(directory):
                os.rmdir(directory)
            os.rename(target, directory)
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except DumpFormatError as e:
        applied = "nothing was applied" if fresh else \
            f"{e.stats.records} records were applied before it"  # type: ignore[attr-defined]
        raise click.ClickException(f"{e}; {applied}") from e
    except (ValueError, pastedb.Error, OSError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        if fresh and os.path.exists(target):
            shutil.rmtree(target)
    click.echo(f"loaded {st.records} records in {st.batches} batches"
               f"{' from an LMDB dump' if st.lmdb else ''}", err=True)


@main.command()
@_dir_argument
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backup(directory: str, dest: str, as_json: bool) -> None:
    """Copy the database in DIRECTORY to the new directory DEST while it is in
    use (a server or another process may be writing): a compacted copy of one
    point in time -- every write acknowledged before the command started --
    written under a temporary name, verified as pastedb-check does, renamed
    to DEST and synced."""
    import json

    with _open_for_reading(directory) as db:
        try:
            res = db.backup(dest)
        except (FileExistsError, FileNotFoundError, ValueError, pastedb.Error, OSError) as e:
            raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo(f"backup of {directory} in {res['path']}: {res['keys']} keys, "
                   f"{_human(res['bytes'])} (log position {res['lsn']}, "
                   f"{res['seconds']:.2f} s)", err=True)


if __name__ == "__main__":
    main()
