"""Command-line entry points: ``pastedb serve``, ``pastedb cluster`` and ``pastedb-check``."""

from __future__ import annotations

import logging
import sys
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
def serve(directory: str, host: str, port: int, requirepass: str | None, maxclients: int,
          sync_mode: str, persist: str, copy: bool, receive: str, window: int, proto_max_bulk_len: int,
          client_query_buffer_limit: int, crash_images: str | None,
          client_output_buffer_limit: str) -> None:
    """Serve the database in DIRECTORY over the Redis protocol."""
    from pastedb.core.server import Server, parse_output_limit

    try:
        parse_output_limit(client_output_buffer_limit)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--client-output-buffer-limit") from e

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
    if crash_images:
        _start_crash_imager(db, crash_images)
    try:
        srv = Server(db, host=host, port=port, requirepass=requirepass, maxclients=maxclients,
                     sync=sync_mode == "yes", copy=copy, window=window, receive=receive,
                     max_bulk_len=proto_max_bulk_len, max_query=client_query_buffer_limit,
                     client_output_buffer_limit=client_output_buffer_limit)
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


if __name__ == "__main__":
    main()
