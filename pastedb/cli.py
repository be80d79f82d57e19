"""Command-line entry points: ``pastedb serve`` and ``pastedb-check``."""

from __future__ import annotations

import logging
import sys

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
@click.option("--persist", type=click.Choice(["auto", "pmem", "fdatasync", "msync", "none"]),
              default="auto", show_default=True, help="Durability backend.")
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
@click.option("--client-output-buffer-limit", default="0 0 0", show_default=True,
              help="Redis's limit for normal clients: '<hard> <soft> <soft seconds>' (sizes "
                   "as Redis writes them: 64mb, 1gb; 0 disables).  A client whose unsent "
                   "replies reach the hard limit, or stay over the soft one that long, is "
                   "disconnected.")
def serve(directory: str, host: str, port: int, requirepass: str | None, maxclients: int,
          sync_mode: str, persist: str, copy: bool, receive: str, window: int, proto_max_bulk_len: int,
          client_query_buffer_limit: int, client_output_buffer_limit: str) -> None:
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

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        db = pastedb.open(directory, persist=persist)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e
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
               f"receive={srv.receive_path()}, keys={st['keys']})", err=True)
    rc = srv.serve_forever()
    db.close()
    click.echo("pastedb: shut down cleanly" if rc == 0 else
               "pastedb: a durability barrier failed; stopped without acknowledging what it "
               "covered", err=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
