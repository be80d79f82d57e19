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
def serve(directory: str, host: str, port: int, requirepass: str | None, maxclients: int,
          sync_mode: str, persist: str, copy: bool, receive: str, window: int, proto_max_bulk_len: int,
          client_query_buffer_limit: int, crash_images: str | None) -> None:
    """Serve the database in DIRECTORY over the Redis protocol."""
    from pastedb.core.server import Server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s pastedb: %(message)s")
    # Block SIGTERM/SIGINT before anything starts: the loop takes them from a
    # signalfd, so no thread (the engine's grower, the flusher) may have them
    # delivered, and one arriving before the loop runs must not kill us.
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
    if crash_images and persist != "crashsim":
        raise click.ClickException("--crash-images needs --persist crashsim")
    try:
        db = pastedb.open(directory, persist=persist)
    except pastedb.Error as e:
        raise click.ClickException(str(e)) from e
    if crash_images:
        _start_crash_imager(db, crash_images)
    try:
        srv = Server(db, host=host, port=port, requirepass=requirepass, maxclients=maxclients,
                     sync=sync_mode == "yes", copy=copy, window=window, receive=receive,
                     max_bulk_len=proto_max_bulk_len, max_query=client_query_buffer_limit)
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
