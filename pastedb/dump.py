"""Dump a database to a portable text stream, and load one back.

The format is LMDB's ``mdb_dump`` ``format=bytevalue`` text, so a dump moves
between pastedb and LMDB both ways, with a pastedb header keyword, an
optional absolute expiry time per key, and a trailer (record count and
CRC-32) that lets :func:`load` tell a complete stream from a cut or garbled
one.  The format, its guarantees and the LMDB interplay are documented once,
in docs/DUMP.md.

    with pastedb.open("src") as db, open("db.dump", "wb") as f:
        pastedb.dump(db, f)
    with pastedb.open("dst") as db, open("db.dump", "rb") as f:
        pastedb.load(db, f)
"""

from __future__ import annotations

import binascii
import dataclasses
from collections.abc import Callable
from typing import Any, BinaryIO

from pastedb.core.engine import DB, limits
from pastedb.databases import Database
from pastedb.errors import Error

__all__ = ["dump", "load", "DumpFormatError", "DumpStats", "LoadStats", "FORMAT_VERSION"]

# The pastedb_dump=N header keyword: bump it only for a change an older
# loader would misread.  Expiry (pxat= lines) is already part of version 1.
FORMAT_VERSION = 1
# LMDB's own VERSION= of the text format (mdb_dump writes 3, mdb_load wants 3).
_MDB_VERSION = b"3"
_DATA_END = b"DATA=END\n"
_HEADER_END = b"HEADER=END\n"
_PXAT = b"pxat="
_TRAILER = b"pastedb_end="
# Header keywords of mdb_dump that say nothing pastedb has to honour.
_IGNORED = {b"type", b"mapsize", b"maxreaders", b"db_pagesize", b"mapaddr", b"database"}
# Lines are read in chunks of about this many bytes (one line may be longer:
# a whole value is one line).
_READ_HINT = 1 << 20
_WRITE_CHUNK = 1 << 20

Progress = Callable[[int], None]


class DumpFormatError(Error):
    """The input is not a complete, intact dump (truncated, garbled, or a
    variant pastedb cannot load).  The message names the line."""


@dataclasses.dataclass
class DumpStats:
    """What :func:`dump` wrote."""

    records: int = 0        # key/value pairs
    bytes: int = 0          # bytes of text written, header and trailer included


@dataclasses.dataclass
class LoadStats:
    """What :func:`load` applied."""

    records: int = 0        # key/value pairs put
    batches: int = 0        # batches committed (each one durable, all or nothing)
    bytes: int = 0          # bytes of input read
    lmdb: bool = False      # the stream had no pastedb header: a plain mdb_dump


def _header(db: DB | Database) -> bytes:
    # mapsize= is for mdb_load alone (it sizes its map from it, else 1 MiB,
    # too small for most dumps): room for the whole database in LMDB's pages
    # with its per-entry overhead.  Only address space: LMDB's file grows as
    # it is written.
    st = db.stats()
    mapsize = max(64 << 20, 4 * (st["live_bytes"] + 64 * st["keys"]))
    mapsize = -(-mapsize // (1 << 20)) << 20
    return (b"VERSION=" + _MDB_VERSION + b"\nformat=bytevalue\ntype=btree\n"
            b"mapsize=%d\npastedb_dump=%d\n" % (mapsize, FORMAT_VERSION) + _HEADER_END)


def dump(db: DB | Database, out: BinaryIO, *, prefix: bytes | None = None, start: bytes | None = None,
         stop: bytes | None = None, progress: Progress | None = None) -> DumpStats:
    """Write the keys of ``db`` (all, or those with ``prefix`` and/or in
    ``[start, stop)``, as :meth:`DB.items` selects them) to the binary file
    ``out`` in key order.  ``progress`` is called with the number of records
    written since its last call.  Returns what was written; does not close
    ``out``."""
    stats = DumpStats()
    crc = 0
    chunk: list[bytes] = []
    size = 0
    done = 0
    head = _header(db)
    out.write(head)
    stats.bytes += len(head)
    hexlify = binascii.hexlify
    for key, value, pxat in db._items_with_expiry(start, stop, prefix=prefix):
        # A key with an expiry time gets a b"pxat=%d\n" line (ms since the
        # epoch) before its key line.
        line = b" " + hexlify(key) + b"\n " + hexlify(value) + b"\n"
        if pxat:
            line = b"pxat=%d\n" % pxat + line
        chunk.append(line)
        size += len(line)
        stats.records += 1
        if size >= _WRITE_CHUNK:
            block = b"".join(chunk)
            crc = binascii.crc32(block, crc)
            out.write(block)
            stats.bytes += size
            chunk.clear()
            size = 0
            if progress is not None:
                progress(stats.records - done)
                done = stats.records
    block = b"".join(chunk)
    crc = binascii.crc32(block, crc)
    tail = block + _DATA_END + _TRAILER + b"records:%d,crc32:%08x\n" % (stats.records, crc)
    out.write(tail)
    stats.bytes += len(tail)
    out.flush()
    if progress is not None and stats.records > done:
        progress(stats.records - done)
    return stats


class _Reader:
    """Lines of the input with their numbers, read in bulk."""

    def __init__(self, inp: BinaryIO, progress: Progress | None):
        self.inp = inp
        self.progress = progress
        self.lineno = 0         # number of the last line handed out
        self.bytes = 0

    def line(self) -> bytes:
        line = self.inp.readline()
        self.lineno += 1
        self.bytes += len(line)
        if self.progress is not None:
            self.progress(len(line))
        return line

    def lines(self) -> list[bytes]:
        lines = self.inp.readlines(_READ_HINT)
        n = sum(map(len, lines))
        self.bytes += n
        if self.progress is not None and n:
            self.progress(n)
        return lines

    def error(self, what: str, lineno: int | None = None) -> DumpFormatError:
        return DumpFormatError(f"line {self.lineno if lineno is None else lineno}: {what}")


def _read_header(r: _Reader) -> bool:
    """Check the header; True when it is pastedb's (then a trailer must follow)."""
    first = r.line()
    if not first:
        raise r.error("empty input: not a dump (expected VERSION=3)")
    if first != b"VERSION=" + _MDB_VERSION + b"\n":
        raise r.error(f"not a dump: expected VERSION=3, got {_show(first)}")
    ours = False
    while True:
        line = r.line()
        if line == _HEADER_END:
            return ours
        if not line.endswith(b"\n"):
            raise r.error("truncated input: the header ends before HEADER=END")
        name, eq, value = line[:-1].partition(b"=")
        if not eq:
            raise r.error(f"not a header line: {_show(line)}")
        if name == b"format":
            if value != b"bytevalue":
                raise r.error(f"format={value.decode(errors='replace')} is not supported: "
                              f"only format=bytevalue (mdb_dump without -p)")
        elif name == b"pastedb_dump":
            if not value.isdigit():
                raise r.error(f"pastedb_dump={_show(value)} is not a version number")
            if int(value) > FORMAT_VERSION:
                raise r.error(f"the dump is format version {int(value)}, newer than this "
                              f"pastedb reads ({FORMAT_VERSION}): load it with a newer pastedb")
            ours = True
        elif name in (b"duplicates", b"dupsort"):
            if value not in (b"0", b""):
                raise r.error("the dump is of an LMDB database with duplicate keys "
                              "(dupsort): pastedb keeps one value per key")
        elif name not in _IGNORED:
            # As mdb_load does: an unknown keyword is information, not data.
            pass


def load(db: DB | Database, inp: BinaryIO, *, batch_records: int = 50_000, batch_bytes: int = 64 << 20,
         progress: Progress | None = None) -> LoadStats:
    """Put every record of the dump read from binary file ``inp`` into ``db``
    (a key already there takes the dump's value; other keys stay).

    Records are applied in batches of at most ``batch_records`` records or
    ``batch_bytes`` bytes of keys and values (the last record may pass it),
    each committed all or nothing and durable before the next begins, so
    memory stays bounded whatever the input size.  On bad input --
    truncated, garbled, a key or value beyond the engine's limits -- it
    raises :class:`DumpFormatError` naming the line; the batches committed
    before stay applied, the one in progress is discarded, and the
    exception's ``stats`` attribute says how many records were applied.
    The trailer's record count and CRC-32 are checked at the end: a garbled
    record that still parses is reported then, after the batches were
    applied.  ``progress`` is called with the number of input bytes read."""
    r = _Reader(inp, progress)
    stats = LoadStats()
    try:
        ours = _read_header(r)
        stats.lmdb = not ours
        _load_data(db, r, stats, ours, batch_records, batch_bytes)
    except DumpFormatError as e:
        e.stats = stats     # type: ignore[attr-defined]
        raise
    finally:
        stats.bytes = r.bytes
    return stats


def _load_data(db: DB | Database, r: _Reader, stats: LoadStats, ours: bool, batch_records: int,
               batch_bytes: int) -> None:
    lim = limits()
    max_key, max_value = lim["max_key_len"], lim["max_value_len"]
    prefixed = isinstance(db, Database) and db.number != 0
    unhexlify = binascii.unhexlify
    crc32 = binascii.crc32
    crc = 0
    count = 0               # records read (applied or staged)
    key: bytes | None = None
    pxat: int | None = None       # the expiry line before the key being read
    b: Any = db.batch()
    pk: list[bytes] = []          # puts read, not yet staged into b (staged in bulk)
    pv: list[bytes] = []
    staged = 0
    staged_bytes = 0
    try:
        while True:
            lines = r.lines()
            if not lines:
                if key is not None:
                    raise r.error("truncated input: a key without its value")
                raise r.error("truncated input: no DATA=END")
            first = r.lineno + 1
            for i, line in enumerate(lines):
                if line[:1] != b" ":
                    if line == _DATA_END and key is None and pxat is None:
                        r.lineno = first + i
                        if staged:
                            b._put_pairs(pk, pv)
                            pk, pv = [], []
                            b.commit()
                            staged = 0
                            stats.batches += 1
                        stats.records = count
                        _read_end(r, ours, lines[i + 1:], count, crc)
                        return
                    if line.startswith(_PXAT) and key is None and pxat is None:
                        r.lineno = first + i
                        if not line.endswith(b"\n"):
                            raise r.error("truncated input: the last line is cut short")
                        digits = line[len(_PXAT):-1]
                        if not digits.isdigit() or len(digits) > 19 or int(digits) == 0:
                            raise r.error(f"garbled input: an expiry line holds {_show(line)} "
                                          f"(pxat= and milliseconds since the epoch)")
                        pxat = int(digits)
                        crc = crc32(line, crc)
                        continue
                    r.lineno = first + i
                    if line.startswith(_PXAT):
                        raise r.error("garbled input: an expiry line (pxat=) where a value or "
                                      "another record's key belongs")
                    if line == _DATA_END and pxat is not None:
                        raise r.error("truncated input: DATA=END after an expiry line (pxat=) "
                                      "without its record")
                    if line == _DATA_END:
                        raise r.error("truncated input: DATA=END after a key without its value")
                    if not line.endswith(b"\n"):
                        raise r.error("truncated input: the last line is cut short")
                    raise r.error(f"garbled input: expected a data line (a space, then hex), "
                                  f"got {_show(line)}")
                if line[-1:] != b"\n":
                    r.lineno = first + i
                    raise r.error("truncated input: the last line is cut short")
                crc = crc32(line, crc)
                try:
                    data = unhexlify(line[1:-1])
                except ValueError:
                    r.lineno = first + i
                    raise r.error("garbled input: not an even number of hex digits") from None
                if key is None:
                    # Stored with a 2-byte database prefix (core/format.pxd): a key of
                    # a numbered database, or one starting with byte 0xFF.
                    lim_key = max_key - 2 if prefixed or data[:1] == b"\xff" else max_key
                    if len(data) > lim_key:
                        r.lineno = first + i
                        raise r.error(f"key is {len(data)} bytes; the limit is {lim_key}"
                                      + (" (a key of a numbered database or starting with "
                                         "byte 0xFF)" if lim_key < max_key else ""))
                    key = data
                    continue
                if len(data) > max_value:
                    r.lineno = first + i
                    raise r.error(f"value is {len(data)} bytes; the limit is {max_value}")
                if pxat is None:
                    pk.append(key)
                    pv.append(data)
                else:
                    b._put_pairs(pk, pv)          # record order is staging order
                    pk, pv = [], []
                    b._put_at(key, data, pxat)   # already past: the key is deleted
                    pxat = None
                count += 1
                staged += 1
                staged_bytes += len(key) + len(data)
                key = None
                if staged >= batch_records or staged_bytes >= batch_bytes:
                    b._put_pairs(pk, pv)
                    pk, pv = [], []
                    b.commit()
                    stats.batches += 1
                    stats.records = count
                    b = db.batch()
                    staged = 0
                    staged_bytes = 0
            r.lineno = first + len(lines) - 1
    finally:
        # The batch in progress on an error (or the one after the last commit):
        # drop what it staged; committed batches stay.
        if staged:
            b.discard()

def _read_end(r: _Reader, ours: bool, rest: list[bytes], count: int, crc: int) -> None:
    """After DATA=END: pastedb's trailer (when the header was ours), then the end."""
    rest = rest + r.lines()
    while True:
        more = r.lines()
        if not more:
            break
        rest += more
    base = r.lineno
    if ours:
        if not rest:
            raise r.error("truncated input: no pastedb_end= trailer after DATA=END", base + 1)
        want = _TRAILER + b"records:%d,crc32:%08x\n" % (count, crc)
        got = rest[0]
        if got != want:
            if not got.startswith(_TRAILER) or not got.endswith(b"\n"):
                raise r.error(f"truncated or garbled trailer: {_show(got)}", base + 1)
            raise r.error(f"garbled input: the trailer says {_show(got[len(_TRAILER):])}, "
                          f"the data read was records:{count},crc32:{crc:08x}", base + 1)
        rest = rest[1:]
    if rest:
        raise r.error("more data after the end of the dump (mdb_dump -a of several "
                      "databases? pastedb has one keyspace: dump one with mdb_dump -s)",
                      base + 1 + int(ours))


def _show(line: bytes) -> str:
    text = line.rstrip(b"\n")[:60].decode("ascii", errors="backslashreplace")
    return repr(text) + ("..." if len(line) > 61 else "")
