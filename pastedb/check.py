"""pastedb-check: verify a pastedb database directory and, on request, repair it.

It reads the pool file through a read-only mapping, and everything it knows
of the format -- the superblock slots (format version 2), the 64-byte log
records in 256 KiB chunks, their checksums, the log walk -- comes from the
format module (``pastedb.core.format``, ``cython/pastedb/core/format.pxd``),
the same code the engine uses.  The index file (``btree.pxd``, a copy-on-write B+tree:
key -> reference into the pool) is opened through the compiled B-tree module
(``pastedb.core.btree``, imported only when there is an index to look at); it is
never written except by --repair.  It works on a database the engine refuses
to open.

The keys of a database are the index's entries overlaid with the log records
after the index's applied_lsn (replayed from the log head the superblock
names; a DEL removes a key).

What is verified
  * both superblock slots (magic, version, buffer size, CRC32C) and which one is
    in force (the valid one with the higher seq, as the engine reads them), and
    that its log head does not skip records its index checkpoint (tree_lsn)
    does not cover;
  * the index file: that it exists (unless nothing was ever checkpointed), a
    valid meta page, the B-tree's own check() (every page's checksum and
    layout, key order, fill, free list), that its applied_lsn is not below the
    superblock's tree_lsn (as open() requires);
  * the log chain from the head the superblock names: every record's LSN, type,
    bounds, CRC (key || record[4:64]) and, for a PUT, the value CRC -- records
    the index covers too (open() reads them); LINK records (in a chunk's last
    slot, or earlier when a checkpoint rolled the log to a fresh chunk, a
    chunk inside the file); where the log ends and why: clean (an empty slot
    or a stale LSN), a torn tail (normal after a crash; open() cuts it), or
    damage -- an invalid record that a later verifying record's
    ``durable_hint``, or the index's applied_lsn, says had been acknowledged.
    Evidence is looked for further than open() looks (in later chunks, and in
    records anywhere in the file), so damage that open() would cut silently (a
    broken LINK, a lost superblock slot, a truncated file, a log that ends
    before the index's applied_lsn) is reported too;
  * every live entry only the index names (its log record lies behind the
    log head): the key and value lie in the file, the pool's key bytes equal
    the index's copy, and the value CRC verifies (open() checks none of this);
  * the keys (index plus log), live bytes, the space accounting (file, log,
    referenced, live and unreferenced bytes) and live entries whose key or
    value bytes overlap another live entry's, a log chunk of the chain, or
    each other (doubly-owned bytes).

What ``--repair`` does (with the database's LOCK held, taken as the engine
takes it: a POSIX record lock on DIR/LOCK; a database open elsewhere is left
alone, exit code 2)
  The index is a copy of what the log says, so there are two cases:
  * only the index is bad (missing, damaged, behind the superblock, or naming
    values that fail their CRC) and the log the superblock names is sound: a
    new index is written (built as ``index.new``, checked, fsynced, renamed
    over ``index``) holding the keys -- the old index overlaid with the log
    when it could be used, else the whole log chain replayed from its start
    (in LSN order, last write wins, DELs remove) -- committed with
    applied_lsn = the last LSN of the log, and the superblock's other slot
    records that (same log head);
  * otherwise the log is rebuilt: every record of the chosen chain that
    verifies is replayed, skipping damaged ones: a key whose newest write no
    longer verifies is dropped and reported as LOST (never rolled back to an
    older value, which would be wrong bytes) unless the index holds that
    write or a newer one; a later valid write of the same key supersedes the
    damage.  Then it writes a fresh compacted chain -- a snapshot marker and
    one PUT per surviving key, referencing the bytes where they are -- in new
    chunks at the end of the file, fsyncs, writes the superblock slot that is
    not in force (seq + 1, slot == seq % 2 as the engine expects; tree_lsn =
    the chain's last LSN) and fsyncs again, then writes a new index with the
    same keys (as above).  Live entries whose bytes overlap something else,
    or whose pool key bytes no longer match, are copied to fresh space first.
  Nothing the repair replaces is destroyed: the old log chunks and superblock
  slot stay in the pool, and a replaced index file is kept as
  ``index.before-repair`` (``.1``, ``.2``, ...).  A crash at any point leaves
  either the old state in force or one that open() refuses and a second
  repair completes.  Repair never invents data and lists every key and record
  it dropped.

Finding the chain without a superblock (both slots bad, or the slot in force
contradicted by acknowledged records beyond its chain's end), or without a
usable index: records are self-identifying (LSN + CRC), so the file is scanned
at 2 KiB steps for runs of consecutive-LSN records; chains start at runs no
LINK points to.  The chosen one has the highest durable_hint (the most
recently written, acknowledged state), then the highest end LSN, then the
lowest head LSN (the longest).  A chain whose older-headed rival has valid
records past its head (a repair or checkpoint that crashed before its
superblock landed) is passed over.
Limits: a value that happens to contain a copy of valid pool records could,
in principle, be taken for log records by the scan.  The engine reuses the
log chunks behind its log head once the index holds them: rebuilding the
index from the log then recovers only the keys written since the oldest chunk
still in the file (the log a database started with, LSN 1, or a snapshot
chain a repair wrote, is complete); the keys before it are reported as lost
but cannot be named.

Exit codes: 0 consistent, 1 problems found (or left after a repair), 2 cannot
run (not a pastedb directory, database open elsewhere, the B-tree module does
not load, usage error).

Speed: every checksum is computed in C by the format module (hardware
CRC32C where the CPU has it), the log walk and the file scan too, so a check
runs at about the speed the page cache delivers the file; the summary prints
the MB/s achieved.  Each live value is checksummed once: through the log
record that names it (from the log head on), or else through the index entry.
The index's own check() runs in C.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import json
import mmap
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import click

# The per-entry passes run in C (checkcore.pyx); Entry is its class.
from pastedb.core.checkcore import (
    Entry,
    index_values,
    owned_twice,
    referenced_bytes,
    state_sums,
    tree_entries,
)

# ------------------------------------------------------------------ on-disk format
# All of it from the format module (format.pxd is the single source of truth).
from pastedb.core.format import (
    BTREE_VERSION,
    BTREE_VERSION_V2,
    BUF_SIZE,
    CHUNK_SIZE,
    CHUNK_SLOTS,
    CK_BEYOND_EOF,
    CK_IN_HEADER,
    CK_UNALIGNED,
    F_BATCH,
    HEADER_SIZE,
    INDEX_FILE,
    LOCK_FILE,
    MAP_ALIGN,
    MAX_KEY_LEN,
    POOL_FILE,
    POOL_VERSION,
    REC,
    REC_DEL,
    REC_LINK,
    REC_PUT,
    REC_SIZE,
    RV_BAD_CRC,
    RV_BAD_LINK,
    RV_BAD_TYPE,
    RV_BAD_VCRC,
    RV_EMPTY,
    RV_KEY_BOUNDS,
    RV_KEY_EOF,
    RV_LINK,
    RV_LINK_POS,
    RV_NAMES,
    RV_OK,
    RV_STALE,
    RV_VALUE_BOUNDS,
    SEG_SIZE,
    SUPER_SLOT,
    bit_flip_candidates,
    chunk_verdict,
    encode_chain,
    encode_superblock,
    record_crc_of,
    record_verifies,
    scan_runs,
    superblock_slot,
    walk_chunk,
)

# A log chain a repair writes is a complete snapshot (one PUT per key); its
# first record is a DEL of this key, so that a later rebuild from the log can
# tell it from a chain whose older part is gone.  (Deleting it first is
# harmless: a snapshot names every key, this one too if it exists.)
SNAPSHOT_MARKER = b"\0pastedb-check: this log chain starts with every key (a repair snapshot)"

# LogRecord field indexes (REC.unpack order)
CRC, TYPE, FLAGS, KLEN, VCRC, BLEFT, LSN, KOFF, VOFF, VLEN, HINT, EXPIRE = range(12)

EXIT_OK, EXIT_PROBLEMS, EXIT_CANNOT = 0, 1, 2
# No database writes 2**62 records: an LSN at or above this (say 2**64 - 1, an
# unsigned underflow) in a superblock or an index meta page is damage.
LSN_LIMIT = 1 << 62
# The file scan reports progress after each window of this many bytes.
SCAN_WINDOW = 64 << 20


# ------------------------------------------------------------------ report items


@dataclass
class Finding:
    """A problem (makes the check fail) or a note (information)."""
    file: str
    offset: int | None
    kind: str
    message: str
    # What a repair has to rewrite for it: "log" (a new log chain, and then a
    # new index too) or "index" (the index file alone).  Not in the report.
    scope: str = field(default="log", compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "offset": self.offset, "kind": self.kind,
                "message": self.message}


def key_text(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


def key_dict(key: bytes) -> dict[str, str]:
    return {"key": key_text(key), "key_hex": key.hex()}


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


# ------------------------------------------------------------------ progress


class Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Any = None
        self.label = ""

    def start(self, label: str, total: int) -> None:
        self.finish()
        if self.enabled and total > 0:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr,
                                         show_eta=True, show_percent=True)
            self.bar.__enter__()

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


# ------------------------------------------------------------------ superblock


@dataclass
class SuperSlot:
    index: int
    state: str                        # valid, empty, bad-magic, bad-crc, bad-version, bad-buf-size, short
    seq: int = 0
    head_off: int = 0
    head_size: int = 0
    head_lsn: int = 0
    created_ns: int = 0
    version: int = 0
    tree_lsn: int = 0                 # applied_lsn of the index checkpoint this slot goes with
    tree_live: int = 0                # live key + value bytes in that checkpoint
    alloc_tail: int = 0               # allocator high-water mark when it was cut
    head_error: str | None = None     # the head it names cannot be a log chunk

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"slot": self.index, "state": self.state}
        if self.state in ("valid", "bad-version"):
            d.update(seq=self.seq, log_head_off=self.head_off, log_head_lsn=self.head_lsn,
                     version=self.version)
            if self.state == "valid":
                d.update(tree_lsn=self.tree_lsn, tree_live=self.tree_live,
                         alloc_tail=self.alloc_tail)
            if self.head_error:
                d["head_error"] = self.head_error
        return d


def read_slot(data: bytes, index: int, file_size: int) -> SuperSlot:
    state, f = superblock_slot(data, index)
    if state in ("short", "empty"):
        return SuperSlot(index, state)
    slot = SuperSlot(index, state, int(f["seq"]), int(f["log_head_off"]),
                     int(f["log_head_size"]), int(f["log_head_lsn"]), int(f["created_ns"]),
                     int(f["version"]), int(f["tree_lsn"]), int(f["tree_live"]),
                     int(f["alloc_tail"]))
    if state == "valid":
        slot.head_error = chunk_error(slot.head_off, file_size)
        if slot.head_error is None and slot.head_size != CHUNK_SIZE:
            slot.head_error = f"log head size {slot.head_size} is not {CHUNK_SIZE}"
        if slot.head_error is None and slot.head_lsn < 1:
            slot.head_error = "log head LSN 0"
    return slot


def chunk_error(off: int, file_size: int) -> str | None:
    v = chunk_verdict(off, file_size)
    if v == CK_IN_HEADER:
        return f"log chunk offset {off} lies in the header"
    if v == CK_UNALIGNED:
        return f"log chunk offset {off} is not {BUF_SIZE}-byte aligned"
    if v == CK_BEYOND_EOF:
        return f"log chunk at {off} ends beyond the end of the file ({file_size} bytes)"
    return None


def write_superblock(fd: int, seq: int, head_off: int, head_lsn: int, created_ns: int,
                     tree_lsn: int, tree_live: int, alloc_tail: int) -> int:
    """Write the superblock slot for seq (the format module lays it out and
    picks the slot, as the engine does); returns the slot.  tree_lsn: the
    applied_lsn of the index file this slot goes with (the engine refuses an
    index whose applied_lsn is lower); tree_live: the live key + value bytes
    in that index; alloc_tail: where the allocator may start handing out
    bytes (everything below is kept).  The caller fsyncs."""
    off, data = encode_superblock(seq, head_off, head_lsn, created_ns, tree_lsn, tree_live,
                                  alloc_tail)
    os.pwrite(fd, data, off)
    return off // SUPER_SLOT


# ------------------------------------------------------------------ log chain walk

# Slot states: the names of the format module's verdicts (rec_check tests
# them in this order).
OK = RV_NAMES[RV_OK]
LINK = RV_NAMES[RV_LINK]                  # a valid LINK
ZERO = RV_NAMES[RV_EMPTY]                 # all 64 bytes zero
STALE = RV_NAMES[RV_STALE]                # lsn is not the one this position must carry
BAD_LINK = RV_NAMES[RV_BAD_LINK]          # LINK fields impossible
LINK_POS = RV_NAMES[RV_LINK_POS]          # a record other than a LINK in a chunk's last slot
BAD_TYPE = RV_NAMES[RV_BAD_TYPE]
KEY_BOUNDS = RV_NAMES[RV_KEY_BOUNDS]      # key inside the header, or too long
KEY_EOF = RV_NAMES[RV_KEY_EOF]            # key (partly) beyond the end of the file
BAD_CRC = RV_NAMES[RV_BAD_CRC]            # crc32c(key || record[4:64]) mismatch
VALUE_BOUNDS = RV_NAMES[RV_VALUE_BOUNDS]
BAD_VCRC = RV_NAMES[RV_BAD_VCRC]
CRC_OK = frozenset((OK, LINK, BAD_VCRC, VALUE_BOUNDS))   # record and key verify
# Slots whose structure is sound (what a LINK that went missing cannot be):
# the record's fields are possible, whatever its checksums say.
SOUND = frozenset((OK, BAD_VCRC, VALUE_BOUNDS))

REASONS = {
    STALE: "the LSN is not the next one",
    LINK_POS: "a record other than a LINK in a chunk's last slot",
    BAD_LINK: "an impossible LINK record",
    BAD_TYPE: "an unknown record type",
    KEY_BOUNDS: "the key lies outside the file",
    KEY_EOF: "the key lies beyond the end of the file (was the file cut short?)",
    BAD_CRC: "the record or its key fails its CRC",
    VALUE_BOUNDS: "the value lies beyond the end of the file (was the file cut short?)",
    BAD_VCRC: "the value fails its CRC",
    ZERO: "an empty slot",
}


class Slot:
    __slots__ = ("off", "lsn", "f", "state", "ci")

    def __init__(self, off: int, lsn: int, f: tuple, state: str, ci: int = 0):
        self.off = off                # file offset of the 64-byte slot
        self.lsn = lsn                # the LSN this position must carry
        self.f = f                    # the unpacked LogRecord fields
        self.state = state
        self.ci = ci                  # which chunk of the walk it is in


@dataclass
class Walk:
    head_off: int
    head_lsn: int
    slots: list[Slot] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    relinked: list[tuple[int, int]] = field(default_factory=list)   # (bad LINK slot, chunk found)
    stop: str | None = None           # why the walk could not go on (bad chunk, loop)


@dataclass
class Run:
    """Records found by the scan: consecutive slots with consecutive LSNs,
    starting at a BUF_SIZE-aligned offset, ending after a LINK."""
    off: int
    first_lsn: int
    count: int
    max_hint: int
    link_to: int | None               # the chunk its final LINK names

    @property
    def end(self) -> int:
        return self.off + self.count * REC_SIZE

    @property
    def last_lsn(self) -> int:
        return self.first_lsn + self.count - 1


# ------------------------------------------------------------------ replay


@dataclass
class Replay:
    """The outcome of replaying one chain, tolerantly."""
    walk: Walk
    state: dict[bytes, Entry]
    lost: dict[bytes, tuple[int, int, str]]          # key -> (lsn, offset, why)
    damaged: list[Slot]                              # invalid slots before the end
    superseded: list[tuple[Slot, bytes]]             # damaged values that did not matter
    end_index: int                                   # first slot not replayed
    end_lsn: int
    end_off: int
    end_kind: str                                    # clean, torn, chain-end
    torn_slots: int
    dropped_batch: int
    engine_end_lsn: int                              # where open() stops
    engine_detects: bool                             # open() raises CorruptionError
    counts: dict[str, int]
    max_hint: int
    max_lsn: int
    alloc_end: int
    referenced: list[tuple[int, int]]                # the chain's records' keys and values
    skip_lsn: int = 0                                # records <= this: in the index already
    base: dict[bytes, Entry] | None = None           # the index's entries the replay started from
    gone_before: int = 0                             # the log before this LSN is gone (unknown keys)


@dataclass
class IndexInfo:
    """What the index file holds (btree.pxd: a copy-on-write B+tree key -> Ref)."""
    path: str
    state: str                        # ok, absent (missing, nothing needs it yet), missing,
    #                                   damaged (no valid meta, or check() fails), stale
    applied_lsn: int = 0              # the log position its last commit covers
    entries: int = 0
    txn: int = 0
    file_bytes: int = 0
    items: dict[bytes, Entry] | None = None    # its entries, when it can be used
    check_problems: list[str] = field(default_factory=list)
    verified_values: int = 0          # live values only the index names, checksummed
    max_entry_lsn: int = 0

    @property
    def usable(self) -> bool:
        return self.items is not None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.path, "state": self.state, "applied_lsn": self.applied_lsn,
                "entries": self.entries, "txn": self.txn, "file_bytes": self.file_bytes,
                "verified_values": self.verified_values,
                "check_problems": self.check_problems[:20]}


# ------------------------------------------------------------------ the checker


class CannotRun(Exception):
    """The directory cannot be checked (exit code 2)."""


class Checker:
    """One verification pass over a database directory (the caller holds LOCK)."""

    def __init__(self, directory: str, progress: Progress | None = None):
        self.dir = directory
        self.path = os.path.join(directory, POOL_FILE)
        self.index_path = os.path.join(directory, INDEX_FILE)
        self.progress = progress or Progress(False)
        self.problems: list[Finding] = []
        self.notes: list[Finding] = []
        self.crc_bytes = 0
        self._runs: list[Run] | None = None
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size
        self.mm: Any = mmap.mmap(self.fd, self.size, access=mmap.ACCESS_READ) if self.size else b""

    def close(self) -> None:
        if isinstance(self.mm, mmap.mmap):
            self.mm.close()
        os.close(self.fd)

    # -- findings
    def problem(self, offset: int | None, kind: str, message: str, *, file: str | None = None,
                scope: str = "log") -> None:
        self.problems.append(Finding(file or self.path, offset, kind, message, scope))

    def note(self, offset: int | None, kind: str, message: str, *,
             file: str | None = None) -> None:
        self.notes.append(Finding(file or self.path, offset, kind, message))

    # -- superblock
    def read_superblock(self) -> tuple[list[SuperSlot], SuperSlot | None]:
        head = self.mm[:HEADER_SIZE]
        slots = [read_slot(head, 0, self.size), read_slot(head, 1, self.size)]
        for s in slots:
            if s.state == "bad-version":
                raise CannotRun(f"{self.path}: superblock slot {s.index} is format version "
                                f"{s.version}; this pastedb-check reads version {POOL_VERSION}")
        valid = [s for s in slots if s.state == "valid"]
        in_force = max(valid, key=lambda s: s.seq) if valid else None
        if self.size < HEADER_SIZE:
            self.problem(self.size, "header",
                         f"the pool file is {self.size} bytes, shorter than its "
                         f"{HEADER_SIZE}-byte header")
        for s in slots:
            off = s.index * SUPER_SLOT
            if s.state == "valid":
                if s.seq % 2 != s.index:
                    self.note(off, "superblock",
                              f"superblock slot {s.index} holds seq {s.seq}; the engine writes "
                              f"seq {s.seq} to slot {s.seq % 2}")
                continue
            if s is in_force:
                continue
            what = {"empty": "is empty (all zeros)", "bad-magic": "has no PASTEDB magic",
                    "bad-crc": "fails its CRC", "bad-buf-size": "names a wrong buffer size",
                    "short": "is cut short"}[s.state]
            if in_force is None:
                continue                      # reported below, as one problem
            if s.state == "empty" and in_force.seq == 1:
                self.note(off, "superblock",
                          f"superblock slot {s.index} was never written (the database has not "
                          f"been checkpointed yet)")
                continue
            self.note(off, "superblock",
                      f"superblock slot {s.index} {what}; slot {in_force.index} (seq "
                      f"{in_force.seq}) is in force, so nothing depends on it (an interrupted "
                      f"checkpoint, or a database never checkpointed, leaves this)")
        if in_force is None:
            states = ", ".join(f"slot {s.index} {s.state}" for s in slots)
            self.problem(0, "superblock",
                         f"no superblock slot verifies ({states}); open() refuses the database")
        elif in_force.head_error:
            self.problem(in_force.index * SUPER_SLOT, "superblock",
                         f"superblock slot {in_force.index} (seq {in_force.seq}, in force) names "
                         f"an impossible log head: {in_force.head_error}")
        elif in_force.tree_lsn >= LSN_LIMIT or in_force.head_lsn >= LSN_LIMIT:
            self.problem(in_force.index * SUPER_SLOT, "superblock",
                         f"superblock slot {in_force.index} (seq {in_force.seq}, in force) holds "
                         f"an impossible LSN (log head {in_force.head_lsn}, index checkpoint "
                         f"{in_force.tree_lsn}); open() would skip every record up to it")
        return slots, in_force

    # -- the file scan
    def runs(self) -> list[Run]:
        """Every run of plausible records that starts at a BUF_SIZE-aligned
        offset (computed once, by the format module's scan; no checksums:
        see verify_at)."""
        if self._runs is not None:
            return self._runs
        runs: list[Run] = []
        self.progress.start("scanning the file", self.size)
        pos = HEADER_SIZE
        while pos + REC_SIZE <= self.size:
            found, nxt = scan_runs(self.mm, pos, pos + SCAN_WINDOW)
            runs.extend(Run(off, lsn, count, hint, None if link < 0 else link)
                        for off, lsn, count, hint, link in found)
            self.progress.advance(nxt - pos)
            pos = nxt
        self.progress.finish()
        self._runs = runs
        return runs

    def runs_outside(self, chunks: Sequence[int]) -> list[Run]:
        """The runs that do not start inside any of the given log chunks."""
        starts = sorted(chunks)
        out = []
        for run in self.runs():
            k = bisect.bisect_right(starts, run.off) - 1
            if k >= 0 and run.off < starts[k] + CHUNK_SIZE:
                continue
            out.append(run)
        return out

    def verify_at(self, off: int) -> tuple | None:
        """The record at `off` if its CRC (record and key) verifies."""
        if not record_verifies(self.mm, off):
            return None
        f = REC.unpack_from(self.mm, off)
        self.crc_bytes += REC_SIZE - 4 + (f[KLEN] if f[TYPE] != REC_LINK else 0)
        return f

    def identify_key(self, s: Slot) -> bytes | None:
        """The key of a record that fails its CRC, if one flipped bit -- in
        the record, its stored CRC or its key bytes -- explains the damage
        (only used to name, and drop, the key of a dropped record)."""
        mm, size = self.mm, self.size
        raw = bytearray(mm[s.off:s.off + REC_SIZE])
        f = s.f
        if f[KLEN] <= MAX_KEY_LEN and f[KOFF] >= HEADER_SIZE and f[KOFF] + f[KLEN] <= size:
            key = mm[f[KOFF]:f[KOFF] + f[KLEN]]
            syndrome = record_crc_of(key, raw) ^ f[CRC]
            if syndrome and syndrome & (syndrome - 1) == 0:
                return key                     # only the stored CRC was hit
            hits = bit_flip_candidates(key + bytes(raw[4:]), f[CRC], len(key))
            if len(hits) == 1:
                pos, bit = hits[0]
                fixed = bytearray(key)
                fixed[pos] ^= 1 << bit
                return bytes(fixed)
        found = None
        for bit in range(32, REC_SIZE * 8):    # a flipped bit in the record itself
            raw[bit >> 3] ^= 1 << (bit & 7)
            g = REC.unpack_from(raw)
            if g[LSN] == s.lsn and g[TYPE] in (REC_PUT, REC_DEL) and g[KLEN] <= MAX_KEY_LEN \
                    and g[KOFF] >= HEADER_SIZE and g[KOFF] + g[KLEN] <= size:
                key = mm[g[KOFF]:g[KOFF] + g[KLEN]]
                if record_crc_of(key, raw) == g[CRC]:
                    if found is not None:
                        return None            # ambiguous
                    found = key
            raw[bit >> 3] ^= 1 << (bit & 7)
        return found

    def run_records(self, run: Run) -> Iterable[tuple[int, tuple]]:
        for i in range(run.count):
            off = run.off + i * REC_SIZE
            yield off, REC.unpack_from(self.mm, off)

    # -- walking a chain
    def walk(self, head_off: int, head_lsn: int) -> Walk:
        """Every slot of every chunk of the chain, verified (record, key and
        value checksums) by the format module's tolerant walk, up to the
        chunk's LINK (in its last slot, or earlier: what follows an early
        LINK is not part of the log).  A chunk without a valid LINK is
        bridged when the scan finds a chunk that starts with the LSN after
        one of its slots that is not sound -- that slot was the LINK (the
        replay then decides, from durable_hint, whether that was damage or a
        torn LINK)."""
        w = Walk(head_off, head_lsn)
        mm, size = self.mm, self.size
        chunk, base = head_off, head_lsn
        seen: set[int] = set()
        self.progress.start("verifying the log", size)
        while True:
            err = chunk_error(chunk, size)
            if err:
                w.stop = err
                break
            if any(abs(chunk - c) < CHUNK_SIZE for c in seen):
                w.stop = f"the chain links back to the chunk at {chunk}"
                break
            seen.add(chunk)
            ci = len(w.chunks)
            w.chunks.append(chunk)
            first = len(w.slots)
            verdicts, nxt = walk_chunk(mm, chunk, base)
            names = RV_NAMES
            crc_bytes = 0
            for j, f in enumerate(REC.iter_unpack(mm[chunk:chunk + len(verdicts) * REC_SIZE])):
                v = verdicts[j]
                w.slots.append(Slot(chunk + j * REC_SIZE, base + j, f, names[v], ci))
                if v == RV_OK or v == RV_BAD_VCRC:
                    crc_bytes += REC_SIZE - 4 + f[KLEN] + (f[VLEN] if f[TYPE] == REC_PUT else 0)
                elif v == RV_LINK or v == RV_BAD_CRC or v == RV_VALUE_BOUNDS:
                    crc_bytes += REC_SIZE - 4 + (f[KLEN] if f[TYPE] != REC_LINK else 0)
            self.crc_bytes += crc_bytes
            self.progress.advance(crc_bytes)
            if nxt >= 0:
                chunk, base = nxt, base + len(verdicts)
                continue
            # No valid LINK.  Did the log go on in a chunk the scan can find?
            # It continues with the LSN after the slot that held the LINK,
            # which is then not a sound record (and all after it in this
            # chunk are not part of the log).  Only a run whose first record
            # carries exactly that LSN qualifies.
            mine = w.slots[first:]

            def sound(x: Slot) -> bool:
                return x.state in SOUND or (x.state == BAD_CRC and x.f[TYPE] != REC_LINK)

            end = next((k for k, x in enumerate(mine) if not sound(x)), len(mine))
            lo, hi = base + end + 1, base + CHUNK_SLOTS
            found = None
            for run in self.runs():
                if lo <= run.first_lsn <= hi and run.off not in seen \
                        and chunk_error(run.off, size) is None \
                        and not sound(mine[run.first_lsn - 1 - base]) \
                        and (found is None or run.first_lsn < found.first_lsn):
                    found = run
            if found is None:
                break
            k = found.first_lsn - 1 - base        # where the LINK was
            del w.slots[first + k + 1:]
            w.relinked.append((mine[k].off, found.off))
            chunk, base = found.off, found.first_lsn
        self.progress.finish()
        return w

    def stray_evidence(self, w: Walk, from_lsn: int) -> list[tuple[int, int, int]]:
        """Verifying records outside the chain whose durable_hint is at least
        from_lsn: (lsn, hint, offset).  Such a record says every LSN up to its
        hint had been acknowledged."""
        out = []
        for run in self.runs_outside(w.chunks):
            if run.max_hint < from_lsn or run.last_lsn <= from_lsn:
                continue
            for off, f in self.run_records(run):
                if f[HINT] >= from_lsn and f[LSN] > from_lsn and self.verify_at(off) is not None:
                    out.append((f[LSN], f[HINT], off))
        return out

    def replay(self, w: Walk, base: dict[bytes, Entry] | None = None, skip: int = 0) -> Replay:
        """Replay the chain as open() does, but past damage: an invalid record
        that a later verifying record's durable_hint covers was acknowledged,
        so it is damage (skipped, its key reported) and not the end of the log.

        base: the index file's entries, skip: its applied_lsn.  As open():
        the state starts as the index's entries and only records with
        LSN > skip change it; the records up to skip are still verified (open()
        reads them) and count as acknowledged (the index's commit proves they
        were durable), but damage to one loses nothing (the index holds its
        effect).  An index entry may carry a later LSN than skip (a checkpoint
        applies the newest pending version of a key): a replayed record older
        than the entry does not replace it."""
        mm = self.mm
        slots = w.slots
        n = len(slots)
        engine_end = next((i for i, s in enumerate(slots) if s.state not in (OK, LINK)), n)
        # Suffix maximum of durable_hint over the later slots that carry the
        # LSN of their position -- the engine's rule (format.pyx, walk_acknowledged): a 64-bit LSN
        # in the right slot is evidence enough even if that record's own CRC
        # fails (a cut file takes the key bytes of every later record with it).
        # Only this chain's slots count: a record of another chain with a
        # higher hint shows that this whole chain is stale (see verify()).
        suffix = [0] * (n + 1)
        best = -1
        for i in range(n - 1, -1, -1):
            suffix[i + 1] = best
            s = slots[i]
            if s.state not in (ZERO, STALE) and s.f[HINT] > best:
                best = s.f[HINT]
        suffix[0] = best

        def acknowledged(i: int) -> bool:
            s = slots[i]
            if s.lsn <= skip and s.state != ZERO:
                # The index's commit covers it: it was durable.  (An empty
                # slot ends the log as usual; verify() reports a log that
                # ends before the index's applied_lsn.)
                return True
            if s.state == KEY_EOF or (s.state == VALUE_BOUNDS and s.f[VOFF] + s.f[VLEN] > self.size):
                # The record is there, with its LSN; the bytes it names are not.
                # Data is made durable (and the file grown) before the record
                # that names it: the file was cut short afterwards.
                return True
            return suffix[i + 1] >= s.lsn

        state: dict[bytes, Entry] = dict(base) if base else {}
        lost: dict[bytes, tuple[int, int, str]] = {}
        damaged: list[Slot] = []
        superseded_pending: dict[bytes, Slot] = {}
        superseded: list[tuple[Slot, bytes]] = []
        counts = dict(puts=0, dels=0, links=0, batches=0, records=0, skipped=0)
        batch: list[Slot] = []
        batch_start = 0
        batch_damaged = False
        expect_left = 0
        end = n
        max_lsn = w.head_lsn - 1
        max_hint = 0
        alloc_end = max((c + CHUNK_SIZE for c in w.chunks), default=HEADER_SIZE)
        referenced: list[tuple[int, int]] = []

        def key_of(f: tuple) -> bytes:
            return mm[f[KOFF]:f[KOFF] + f[KLEN]]

        def apply(s: Slot) -> None:
            f = s.f
            counts["puts" if f[TYPE] == REC_PUT else "dels"] += 1
            if f[LSN] <= skip:
                counts["skipped"] += 1         # the index holds its effect
                return
            counts["records"] += 1
            key = key_of(f)
            cur = state.get(key)
            if cur is not None and cur.lsn > f[LSN]:
                return                         # the index holds a newer write (replayed later)
            lost.pop(key, None)
            old = superseded_pending.pop(key, None)
            if old is not None:
                superseded.append((old, key))
            if f[TYPE] == REC_PUT:
                state[key] = Entry(f[LSN], f[KOFF], f[KLEN], f[VOFF], f[VLEN], f[VCRC],
                                   expire_ms=f[EXPIRE])
            else:
                state.pop(key, None)

        def damage(s: Slot) -> None:
            damaged.append(s)
            f = s.f
            if s.lsn <= skip:
                # Open() stops at it all the same, but the index holds what it
                # did (or a later write): nothing is lost.  (If it was a PUT
                # whose value bytes are damaged and the index still names
                # them, verify_index_values reports that key.)
                return
            if s.state in (BAD_VCRC, VALUE_BOUNDS):
                key = key_of(f)               # the record verifies: the key is certain
                cur = state.get(key)
                if cur is not None and cur.lsn > s.lsn:
                    superseded.append((s, key))    # the index holds a newer write
                    return
                state.pop(key, None)
                lost[key] = (f[LSN], f[VOFF], REASONS[s.state])
                superseded_pending[key] = s
                return
            if s.state in (ZERO, BAD_LINK, LINK_POS) or f[TYPE] == REC_LINK:
                return
            # The record does not verify.  Its key's newest write is unreadable:
            # report the key, and do not keep an older value of it (that would
            # be wrong bytes).  Which key?  If flipping one bit makes the record
            # verify, that one; else the key the damaged record names (unverified).
            fixed = self.identify_key(s) if len(damaged) <= 1000 else None
            if fixed is not None:
                key = fixed
                why = (f"its newest record does not verify ({REASONS[s.state]}); the key was "
                       f"identified by the one flipped bit that makes the record verify")
            elif f[KLEN] <= MAX_KEY_LEN and HEADER_SIZE <= f[KOFF] \
                    and f[KOFF] + f[KLEN] <= self.size:
                key = key_of(f)
                why = (f"its newest record does not verify ({REASONS[s.state]}); the key is "
                       f"as that record names it, unverified")
            else:
                return
            cur = state.get(key)
            if cur is not None and cur.lsn >= s.lsn:
                # The index holds this very write (same LSN) or a newer one,
                # with its own copy of the key and the value's CRC (checked
                # by verify_index_values).
                superseded.append((s, key))
                return
            state.pop(key, None)
            lost[key] = (s.lsn, s.off, why)
            superseded_pending[key] = s

        def close_batch() -> None:
            nonlocal batch, batch_damaged
            for b in batch:
                if b.state == OK:
                    apply(b)
                else:
                    damage(b)
            counts["batches"] += 1
            batch, batch_damaged = [], False

        i = 0
        while i < n:
            s = slots[i]
            if s.state == LINK:
                counts["links"] += 1
                i += 1
                continue
            valid = s.state == OK
            if valid:
                f = s.f
                if batch:
                    fits = bool(f[FLAGS] & F_BATCH) and f[BLEFT] + 1 == expect_left
                    if not fits and batch_damaged:
                        close_batch()          # a damaged batch ended early; take what verifies
                    elif not fits:
                        valid = False
            if not valid:
                if acknowledged(i):
                    if batch:
                        batch.append(s)
                        batch_damaged = True
                        expect_left -= 1
                        if expect_left <= 0:
                            close_batch()
                    else:
                        damage(s)
                    i += 1
                    continue
                end = i
                break
            f = s.f
            if f[FLAGS] & F_BATCH:
                if not batch:
                    batch_start = i
                batch.append(s)
                expect_left = f[BLEFT]
                if f[BLEFT] == 0:
                    close_batch()
            else:
                apply(s)
            i += 1
        dropped_batch = 0
        if batch and not batch_damaged:
            # An incomplete batch at the end never happened (as open() does).
            dropped_batch = len(batch)
            end = batch_start
        elif batch:
            close_batch()
        # what lies at and after the end (in its chunk: slots are positional)
        if end < n:
            end_slot = slots[end]
            tail = [s for s in slots[end:end + CHUNK_SLOTS] if s.ci == end_slot.ci]
            torn = sum(1 for s in tail if s.state != ZERO)
            end_lsn, end_off = end_slot.lsn, end_slot.off
            kind = "torn" if (torn or dropped_batch) else "clean"
        else:
            torn = 0
            end_lsn = slots[-1].lsn + 1 if slots else w.head_lsn
            end_off = slots[-1].off + REC_SIZE if slots else w.head_off
            kind = "chain-end"
        for s in slots[:end]:
            if s.state in CRC_OK:
                f = s.f
                max_lsn = max(max_lsn, f[LSN])
                max_hint = max(max_hint, f[HINT])
                if f[TYPE] != REC_LINK:
                    referenced.append((f[KOFF], f[KOFF] + f[KLEN]))
                    alloc_end = max(alloc_end, f[KOFF] + f[KLEN])
                    if f[TYPE] == REC_PUT and s.state != VALUE_BOUNDS:
                        referenced.append((f[VOFF], f[VOFF] + f[VLEN]))
                        alloc_end = max(alloc_end, f[VOFF] + f[VLEN])
        # The live bytes only the index names (summary() counts them as referenced).
        alloc_end = max(alloc_end, min(self.size, state_sums(state)[2]))
        # open() stops at the first invalid record and raises CorruptionError
        # only if a later record in the same chunk verifies with a covering hint.
        engine_detects = False
        if engine_end < end:
            es = slots[engine_end]
            for s in slots[engine_end + 1:engine_end + CHUNK_SLOTS]:
                if s.ci != es.ci:
                    break
                if s.state not in (ZERO, STALE) and s.f[HINT] >= es.lsn:
                    engine_detects = True
                    break
            if not engine_detects and es.state != ZERO \
                    and any(bad == es.off for bad, _ in w.relinked):
                # open() scans for the chunk a non-empty bad LINK slot named
                engine_detects = acknowledged(engine_end)
        e0 = slots[engine_end].lsn if engine_end < n else end_lsn
        return Replay(w, state, lost, damaged, superseded, end, end_lsn, end_off, kind, torn,
                      dropped_batch, e0, engine_detects, counts, max_hint, max_lsn,
                      round_up(alloc_end, BUF_SIZE), referenced, skip, base)

    def analyse(self, w: Walk, base: dict[bytes, Entry] | None = None, skip: int = 0) -> Replay:
        return self.replay(w, base, skip)

    # -- the index file
    def inspect_index(self, in_force: SuperSlot | None) -> IndexInfo:
        """Open the index file read-only in effect (nothing is written), run
        the B-tree's own check() and compare its applied_lsn with the
        superblock's tree_lsn, as open() does.  Its entries are returned only
        when the engine could use it."""
        path = self.index_path
        info = IndexInfo(path, "ok")
        for extra in (path + ".new", path + ".new.new"):
            if os.path.exists(extra):
                self.note(None, "index", f"{extra} is left over from an interrupted index "
                          f"rewrite; nothing reads it", file=extra)
        fix = f"--repair rebuilds it from the log records in {self.path}"
        if not os.path.exists(path):
            if in_force is not None and in_force.tree_lsn == 0:
                self.note(None, "index", f"the index file {path} is missing; the superblock's "
                          f"checkpoint covers no log record, so open() creates an empty one",
                          file=path)
                info.state = "absent"
                info.items = {}
                return info
            info.state = "missing"
            why = (f"the superblock in force says an index checkpoint covers the log up to LSN "
                   f"{in_force.tree_lsn}" if in_force is not None else
                   "and no superblock slot verifies either")
            self.problem(None, "index", f"the index file {path} is missing ({why}); open() "
                         f"refuses the database (CorruptionError); {fix}", file=path,
                         scope="index")
            return info
        info.file_bytes = os.path.getsize(path)
        try:
            from pastedb.core.btree import TreeFile  # compiled; imported only when needed
        except ImportError as e:
            raise CannotRun(f"cannot verify the index file {path}: the pastedb.core.btree "
                            f"extension does not load ({e}); build pastedb first") from None
        try:
            tree = TreeFile(path, create=False, sync=False)
        except PermissionError as e:
            raise CannotRun(f"cannot open the index file {path}: {e}") from None
        except Exception as e:                          # no valid meta page, unknown version, EIO
            info.state = "damaged"
            self.problem(0, "index", f"the index file {path} cannot be used: {e}; open() refuses "
                         f"the database; {fix}", file=path, scope="index")
            return info
        try:
            info.applied_lsn = tree.applied_lsn
            info.entries = tree.count
            info.txn = tree.txn
            if info.applied_lsn >= LSN_LIMIT:
                info.state = "damaged"
                self.problem(None, "index", f"the index file {path} (commit {info.txn}) says it "
                             f"covers the log up to LSN {info.applied_lsn}, which is impossible "
                             f"(open() would skip every log record); {fix}", file=path,
                             scope="index")
                return info
            info.check_problems = list(tree.check())
            if info.check_problems:
                info.state = "damaged"
                for msg in info.check_problems[:10]:
                    self.problem(None, "index", f"the index file {path} (commit {info.txn}) is "
                                 f"damaged: {msg}; reads that reach it fail with "
                                 f"CorruptionError; {fix}", file=path, scope="index")
                if len(info.check_problems) > 10:
                    self.problem(None, "index", f"... and {len(info.check_problems) - 10} more "
                                 f"problems in the index file", file=path, scope="index")
                return info
            entries, info.max_entry_lsn = tree_entries(tree)
        finally:
            tree.close()
        if in_force is not None and info.applied_lsn < in_force.tree_lsn:
            info.state = "stale"
            self.problem(None, "index", f"the index file {path} covers the log up to LSN "
                         f"{info.applied_lsn}, but the superblock in force says its checkpoint "
                         f"covers up to LSN {in_force.tree_lsn}: the index lost a commit; open() "
                         f"refuses the database; {fix}", file=path, scope="index")
            return info
        info.items = entries
        return info

    def verify_index_values(self, rp: Replay, idx: IndexInfo) -> set[bytes]:
        """Check the live entries that only the index names (the log records
        that wrote them lie before the log head): bounds, the key bytes in the
        pool against the index's copy, and the value CRC.  open() checks none
        of this -- get() would return damaged bytes -- so every failure is a
        problem; a key whose value fails is LOST (rebuilding the index without
        it suffices).  A value some log record of the chain already verified
        (same place, length and CRC) is not checksummed twice.  Returns the
        keys whose pool key bytes differ from the index's copy: the value is
        intact, but a log record naming those bytes would not verify, so
        --repair copies key and value to fresh space."""
        seen: dict[tuple[int, int, int], str] = {}
        for s in rp.walk.slots:
            if s.f[TYPE] == REC_PUT and s.state in (OK, BAD_VCRC):
                seen[(s.f[VOFF], s.f[VLEN], s.f[VCRC])] = s.state
        reported = 0

        def lose(key: bytes, e: Entry, kind: str, why: str, where: int) -> None:
            nonlocal reported
            rp.state.pop(key, None)
            rp.lost[key] = (e.lsn, where, why)
            if reported < 20:
                self.problem(where, kind, f"the value of key {key_text(key)!r} (LSN {e.lsn}, "
                             f"{e.vlen} bytes at byte offset {e.voff}), named by the index file: "
                             f"{why}; open() does not verify the values the index names, so "
                             f"reading this key would not fail", scope="index")
            reported += 1

        size = self.size
        events, bad, idx.verified_values, n = index_values(
            rp.state, seen, self.mm, OK, BAD_VCRC, self.progress, "verifying values the index names")
        self.crc_bytes += n
        for why, key, e in events:
            if why == "key-ref":
                lose(key, e, "index-entry", f"an impossible key reference (offset {e.koff}, "
                     f"{e.klen} bytes)", e.koff)
            elif why == "value-ref":
                lose(key, e, "index-entry", "an impossible value reference", e.voff)
            elif why == "truncated":
                lose(key, e, "truncated", f"the value lies beyond the end of the file ({size} "
                     f"bytes; was the file cut short?)", e.voff)
            elif why == "seen-bad":
                # report_chain named the damaged value already
                rp.state.pop(key, None)
                rp.lost[key] = (e.lsn, e.voff, REASONS[BAD_VCRC])
            else:
                lose(key, e, "value-crc", REASONS[BAD_VCRC], e.voff)
        if reported > 20:
            self.problem(None, "value-crc", f"... and {reported - 20} more values named by the "
                         f"index file fail", scope="index")
        bad_keys = set(bad)
        bad_keys &= rp.state.keys()
        for n, key in enumerate(sorted(bad_keys)):
            e = rp.state[key]
            if n < 20:
                self.problem(e.koff, "key-bytes", f"the bytes of key {key_text(key)!r} (LSN {e.lsn}) "
                             f"at byte offset {e.koff} differ from the index file's copy of the "
                             f"key (or lie beyond the end of the file): the value is intact and "
                             f"open() reads the key from the index, but the log record that "
                             f"names those bytes no longer verifies; --repair copies key and "
                             f"value to fresh space")
        if len(bad_keys) > 20:
            self.problem(None, "key-bytes", f"... and {len(bad_keys) - 20} more keys")
        return bad_keys

    # -- candidate chains (when the superblock cannot be trusted)
    def candidates(self, slots: list[SuperSlot]) -> list[tuple[int, int, str]]:
        cands: list[tuple[int, int, str]] = []
        for s in sorted((s for s in slots if s.state == "valid" and not s.head_error),
                        key=lambda s: -s.seq):
            cands.append((s.head_off, s.head_lsn, f"superblock slot {s.index} (seq {s.seq})"))
        runs = self.runs()
        targets = {r.link_to for r in runs if r.link_to is not None}
        by_off = {r.off: r for r in runs}
        scored = []
        for r in runs:
            if r.off in targets or chunk_error(r.off, self.size):
                continue
            # structural score: follow LINKs through the runs
            max_hint, last, seen, cur = r.max_hint, r.last_lsn, {r.off}, r
            while cur.link_to is not None and cur.link_to in by_off and cur.link_to not in seen:
                cur = by_off[cur.link_to]
                seen.add(cur.off)
                max_hint, last = max(max_hint, cur.max_hint), max(last, cur.last_lsn)
            scored.append(((max_hint, last, -r.first_lsn), r))
        scored.sort(key=lambda x: x[0], reverse=True)
        for _, r in scored[:4]:
            if self.verify_at(r.off) is not None and all(c[0] != r.off for c in cands):
                cands.append((r.off, r.first_lsn, f"a log chunk found by scanning, at {r.off}"))
        return cands

    def complete_from_start(self, w: Walk) -> bool:
        """Does the chain hold every key from its first record on?  True for
        the log a database starts with (LSN 1) and for a snapshot chain a
        repair wrote (its first record deletes SNAPSHOT_MARKER)."""
        if w.head_lsn == 1:
            return True
        if not w.slots or w.slots[0].state != OK:
            return False
        f = w.slots[0].f
        return f[TYPE] == REC_DEL and bytes(self.mm[f[KOFF]:f[KOFF] + f[KLEN]]) == SNAPSHOT_MARKER

    def max_lsn_anywhere(self) -> int:
        """The highest LSN of any verifying record in the file (scan)."""
        best = 0
        for run in self.runs():
            for k in range(run.count - 1, -1, -1):
                off = run.off + k * REC_SIZE
                if run.first_lsn + k <= best:
                    break
                if self.verify_at(off) is not None:
                    best = run.first_lsn + k
                    break
        return best


# ------------------------------------------------------------------ verification


@dataclass
class Result:
    """Everything one verification found."""
    checker: Checker
    slots: list[SuperSlot]
    in_force: SuperSlot | None
    replay: Replay | None
    source: str | None                         # which chain the replay is of
    chain_trusted: bool                        # the superblock's chain, not contradicted
    overlaps: list[tuple[bytes, str, int, int, str]]   # (key, what, start, end, other owner)
    index: IndexInfo | None = None
    bad_key_bytes: set[bytes] = field(default_factory=set)   # keys to copy to fresh space
    elapsed: float = 0.0

    @property
    def problems(self) -> list[Finding]:
        return self.checker.problems

    @property
    def notes(self) -> list[Finding]:
        return self.checker.notes

    @property
    def ok(self) -> bool:
        return not self.problems


def choose_chain(ck: Checker, slots: list[SuperSlot], exclude: Replay | None) -> tuple[Replay, str] | None:
    """The best chain the file holds: most recent durable_hint, then the
    highest end LSN, then the longest (lowest head LSN).

    A chain whose head LSN another (older-headed) chain has valid records for
    is an orphan -- a checkpoint that crashed before its superblock landed:
    after a completed checkpoint nothing is appended to the old chain, so the
    old chain reaching past the new one's head means the new one never took
    effect.  Orphans are passed over."""
    evaluated: list[tuple[tuple, Replay, str]] = []
    for head_off, head_lsn, why in ck.candidates(slots):
        if exclude is not None and head_off == exclude.walk.head_off \
                and head_lsn == exclude.walk.head_lsn:
            rp = exclude
        else:
            rp = ck.analyse(ck.walk(head_off, head_lsn))
        if rp.counts["records"] == 0 and not rp.lost:
            continue
        evaluated.append(((rp.max_hint, rp.end_lsn, -head_lsn), rp, why))
    live = [e for e in evaluated
            if not any(o[1].walk.head_lsn < e[1].walk.head_lsn <= o[1].max_lsn
                       for o in evaluated)]
    best = max(live or evaluated, key=lambda e: e[0], default=None)
    return (best[1], best[2]) if best else None


def verify(directory: str, progress: Progress | None = None) -> Result:
    t0 = time.perf_counter()
    ck = Checker(directory, progress)
    slots, in_force = ck.read_superblock()
    idx = ck.inspect_index(in_force)
    tree = idx.items                           # None: the index cannot be used
    applied = idx.applied_lsn if tree is not None else 0
    replay: Replay | None = None
    source: str | None = None
    trusted = False
    if in_force is not None and not in_force.head_error:
        if in_force.head_lsn > in_force.tree_lsn + 1:
            ck.problem(in_force.index * SUPER_SLOT, "superblock",
                       f"superblock slot {in_force.index} (seq {in_force.seq}, in force) names a "
                       f"log head at LSN {in_force.head_lsn} but an index checkpoint only up to "
                       f"LSN {in_force.tree_lsn}: records {in_force.tree_lsn + 1}.."
                       f"{in_force.head_lsn - 1} are in neither")
        # As open(): the index's entries, then the log from the head with
        # LSN > the index's applied_lsn.
        replay = ck.analyse(ck.walk(in_force.head_off, in_force.head_lsn), tree, applied)
        source = f"superblock slot {in_force.index} (seq {in_force.seq})"
        trusted = True
        report_chain(ck, replay)
        if tree is not None and replay.end_lsn <= applied:
            ck.problem(replay.end_off, "log-short",
                       f"the log chain named by {source} ends at LSN {replay.end_lsn}, but the "
                       f"index file covers the log up to LSN {applied}: records "
                       f"{replay.end_lsn}..{applied} are gone from this chain (or a newer "
                       f"superblock slot naming another chain was lost); open() would give "
                       f"those LSNs to new writes, and the next open would skip them as "
                       f"already in the index")
            trusted = False                    # look for the chain that does reach it
        # Acknowledged records beyond the end of this chain, elsewhere in the
        # file: a newer superblock slot or a LINK was lost.
        strays = ck.stray_evidence(replay.walk, replay.end_lsn)
        if strays:
            trusted = False
            lo = min(s[0] for s in strays)
            hi = max(s[0] for s in strays)
            off = min(s[2] for s in strays)
            ck.problem(off, "lost-chain",
                       f"records with LSN {lo}..{hi} at byte offset {off} verify and say LSN "
                       f"{replay.end_lsn} and later had been acknowledged, but the log chain "
                       f"named by {source} ends at LSN {replay.end_lsn}: a newer superblock "
                       f"slot or a LINK record was lost; open() would silently use the older "
                       f"state")
    if not trusted or tree is None:
        # The keys come from the index plus a chain that reaches back to its
        # applied_lsn, or from the log alone: the whole chain, from the
        # start no LINK leads to.  That is complete only when it is the log
        # the database began with (LSN 1) or a snapshot a repair wrote: the
        # engine reuses the chunks behind its log head once the index holds
        # them, and the keys written only there are then gone (log-gone).
        chosen = choose_chain(ck, slots, replay if replay is not None and replay.base is None
                              else None)
        if chosen is not None:
            rp, why = chosen
            if tree is not None and rp.walk.head_lsn <= applied + 1:
                rp = ck.replay(rp.walk, tree, applied)
            elif not ck.complete_from_start(rp.walk):
                s0 = rp.walk.head_lsn
                ck.problem(rp.walk.head_off, "log-gone",
                           f"the keys can only come from the log chain that starts at LSN {s0} "
                           f"(byte offset {rp.walk.head_off}), and the records before it are "
                           f"not in the file (the engine reuses the log chunks behind its log "
                           f"head once the index holds them, or they were damaged): every key "
                           f"last written before LSN {s0} was only in the index, which cannot "
                           f"be used, and is lost; which keys those were cannot be known",
                           scope="index")
                rp.gone_before = s0
            if replay is None or rp is not replay:
                if trusted:
                    ck.note(rp.walk.head_off, "rebuild-source",
                            f"the index cannot be used, so the keys come from the whole log: "
                            f"the chain from byte offset {rp.walk.head_off} (LSN "
                            f"{rp.walk.head_lsn}, {why}) replayed to LSN {rp.end_lsn - 1} holds "
                            f"{len(rp.state)} keys; --repair writes a new index from it")
                    if rp.damaged and in_force is not None:
                        report_chain(ck, rp, quiet_end=True, before_head=in_force.head_lsn)
                else:
                    ck.note(rp.walk.head_off, "rebuild-source",
                            f"the best log chain in the file starts at byte offset "
                            f"{rp.walk.head_off} (LSN {rp.walk.head_lsn}, {why}): "
                            f"{len(rp.state)} keys, LSN up to {rp.end_lsn - 1}; --repair "
                            f"rebuilds from it")
                    if replay is None:
                        report_chain(ck, rp, quiet_end=True)
                replay, source = rp, why
        elif replay is None and tree:
            # No log chain at all, but the index can be used: its entries are
            # what is left (their values are verified like any other).
            replay = ck.replay(Walk(0, applied + 1), tree, applied)
            source = "the index file alone"
            ck.problem(None, "no-log",
                       f"no log chain in the file verifies; the index file's {len(tree)} "
                       f"entries are all that is left; --repair writes a new log and index "
                       f"with those whose values verify")
        elif replay is None:
            ck.problem(None, "no-log",
                       "no log record in the file verifies: there is nothing to rebuild from")
    overlaps: list = []
    bad_keys: set[bytes] = set()
    if replay is not None:
        if replay.base is not None:
            bad_keys = ck.verify_index_values(replay, idx)
        overlaps = check_ownership(ck, replay)
    res = Result(ck, slots, in_force, replay, source, trusted, overlaps, idx, bad_keys)
    res.elapsed = time.perf_counter() - t0
    return res


def report_chain(ck: Checker, rp: Replay, quiet_end: bool = False,
                 before_head: int | None = None) -> None:
    """Findings about one replayed chain.  before_head (an LSN): report only
    the damage before the superblock's log head, which open() never reads (it
    matters only when the index has to be rebuilt from the log)."""
    w = rp.walk
    if before_head is not None:
        lost_lsns = {lsn for lsn, _off, _why in rp.lost.values()}
        for s in rp.damaged:
            if s.lsn >= before_head:
                continue                      # reported with the chain from the head
            where = s.off if s.state not in (BAD_VCRC, VALUE_BOUNDS) else s.f[VOFF]
            what = (f"the log record for LSN {s.lsn} at byte offset {s.off} (before the log "
                    f"head, so open() does not read it): {REASONS.get(s.state, s.state)}")
            if s.lsn in lost_lsns:
                ck.problem(where, "old-log", f"{what}; the index is rebuilt without the key it "
                           f"wrote (LOST)", scope="index")
            else:
                ck.note(where, "old-log", f"{what}; the rebuild does not need it (a LINK "
                        f"bridged by scanning, or a key written again later)")
        return
    if w.stop:
        ck.problem(w.slots[-1].off if w.slots else w.head_off, "link",
                   f"the log chain cannot go on: {w.stop}")
    for bad, found in w.relinked:
        ck.note(bad, "link",
                f"the LINK record at byte offset {bad} does not verify; the chunk that "
                f"continues the log (LSN {REC.unpack_from(ck.mm, found)[LSN]}) was found at "
                f"byte offset {found} by scanning")
    kinds = {BAD_VCRC: "value-crc", VALUE_BOUNDS: "truncated", KEY_EOF: "truncated",
             BAD_CRC: "record-crc",
             ZERO: "record-missing", STALE: "record-lsn", LINK_POS: "link", BAD_LINK: "link"}
    groups: list[list[Slot]] = []
    for s in rp.damaged:
        g = groups[-1] if groups else None
        if g and s.state == g[-1].state and s.lsn == g[-1].lsn + 1 \
                and s.state not in (BAD_VCRC, VALUE_BOUNDS):
            g.append(s)
        else:
            groups.append([s])
    for n, g in enumerate(groups):
        s = g[0]
        f = s.f
        where = s.off
        what = REASONS.get(s.state, s.state)
        if s.state in (BAD_VCRC, VALUE_BOUNDS):
            where = f[VOFF]
            key = ck.mm[f[KOFF]:f[KOFF] + f[KLEN]]
            msg = (f"the value of key {key_text(key)!r} (LSN {s.lsn}, {f[VLEN]} bytes at byte "
                   f"offset {f[VOFF]}, record at {s.off}): {what}")
        elif len(g) > 1:
            msg = (f"the {len(g)} log records for LSN {s.lsn}..{g[-1].lsn} at byte offsets "
                   f"{s.off}..{g[-1].off}: {what}")
        elif any(s.off == c + CHUNK_SIZE - REC_SIZE for c in w.chunks) or f[TYPE] == REC_LINK:
            msg = f"the LINK record (LSN {s.lsn}) at byte offset {s.off}: {what}"
        else:
            msg = f"the log record for LSN {s.lsn} at byte offset {s.off}: {what}"
        if s.state == KEY_EOF or (s.state == VALUE_BOUNDS and f[VOFF] + f[VLEN] > ck.size):
            msg += f"; the file ({ck.size} bytes) was cut short after the record was written"
        elif s.lsn <= rp.skip_lsn:
            msg += (f"; the index file covers it (applied LSN {rp.skip_lsn}), so it had been "
                    f"acknowledged and nothing it wrote is lost")
        else:
            msg += "; a later record says it had been acknowledged"
        if n == 0:
            if rp.engine_detects:
                msg += "; open() refuses the database (CorruptionError)"
            elif s.lsn <= rp.skip_lsn:
                msg += ("; open() would cut the log here without an error and give LSNs the "
                        "index already covers to new writes, which the next open then skips "
                        "(acknowledged writes lost)")
            else:
                msg += ("; open() would cut the log here without an error, losing acknowledged "
                        "records after it")
        ck.problem(where, kinds.get(s.state, "record"), msg)
    for s, key in rp.superseded:
        ck.note(s.f[VOFF] if s.state in (BAD_VCRC, VALUE_BOUNDS) else s.off, "superseded",
                f"the damaged record for LSN {s.lsn} (key {key_text(key)!r}) was superseded by "
                f"a later write of the key: nothing is lost")
    if quiet_end:
        return
    if rp.end_kind == "torn":
        extra = f", an incomplete batch of {rp.dropped_batch} records" if rp.dropped_batch else ""
        ck.note(rp.end_off, "torn-tail",
                f"the log ends at LSN {rp.end_lsn} with a torn tail at byte offset {rp.end_off} "
                f"({rp.torn_slots} non-empty slots after the last valid record{extra}): normal "
                f"after a crash; none of it was acknowledged and open() cuts it")
    elif rp.end_kind == "chain-end" and not w.stop:
        ck.note(rp.end_off, "log-end", f"the log chain ends at byte offset {rp.end_off}")


def check_ownership(ck: Checker, rp: Replay) -> list[tuple[bytes, str, int, int, str]]:
    """Live bytes owned twice: by two entries, or by an entry and a log chunk."""
    out: list[tuple[bytes, str, int, int, str]] = []
    pairs = owned_twice(rp.walk.chunks, rp.state)
    for n, (a, b, lo, hi) in enumerate(pairs):
        # a, the later-written (or the entry, against a chunk), is the one to move
        other = f"the {b[3]} of key {key_text(b[4])!r}" if b[3] in ("key", "value") \
            else f"the {b[3]} at byte offset {b[0]}"
        out.append((a[4], a[3], a[0], a[1], other))
        if n < 20:
            ck.problem(lo, "overlap", f"bytes [{lo}, {hi}) are owned by the {a[3]} of key "
                       f"{key_text(a[4])!r} (LSN {a[2]}) and by {other}")
    if len(pairs) > 20:
        ck.problem(None, "overlap", f"... and {len(pairs) - 20} more overlapping ranges")
    return out


# ------------------------------------------------------------------ repair


@dataclass
class RepairReport:
    performed: bool
    message: str
    kept_keys: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)
    dropped_records: list[dict[str, Any]] = field(default_factory=list)
    torn_records: int = 0
    relocated: int = 0
    new_head_off: int = 0
    new_head_lsn: int = 0
    superblock_slot: int = 0
    superblock_seq: int = 0
    log_rewritten: bool = False
    index_rebuilt: bool = False
    index_applied_lsn: int = 0
    index_backup: str | None = None            # the index file the repair replaced, kept
    # > 0: the log before this LSN was gone and the index unusable: keys last
    # written before it are lost, and cannot be named
    lost_before_lsn: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | (os.O_DIRECTORY if directory else 0)) | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_index(directory: str, entries: list[tuple[bytes, Entry]], applied: int) -> str | None:
    """Write a fresh index file holding `entries` (sorted by key), its last
    commit recording applied_lsn = `applied`, and put it in place atomically:
    it is built as index.new (the B-tree syncs each commit), verified with its
    own check(), fsynced and renamed over `index`, then the directory is
    fsynced.  The file it replaces is kept, as the repair keeps everything it
    supersedes (the old log chunks and superblock slot stay in the pool):
    hard-linked to index.before-repair[.N] first, so the directory never lacks
    an index.  Returns that backup's path (None: there was no index file)."""
    try:
        from pastedb.core.btree import TreeFile
    except ImportError as err:
        raise CannotRun(f"cannot write an index file: the pastedb.core.btree extension does "
                        f"not load ({err}); build pastedb first") from None
    path = os.path.join(directory, INDEX_FILE)
    tmp = path + ".new"
    for leftover in (tmp, tmp + ".new"):
        if os.path.lexists(leftover):
            os.unlink(leftover)
    # The keyspace the keys are in (format.pxd): a version-2 index keeps one
    # keyspace whose keys starting with 0xFF are stored as given, so the new
    # file keeps the old one's version; an unreadable one was this version's.
    version = BTREE_VERSION
    try:
        with TreeFile(path, create=False, sync=False) as old:
            if old.version == BTREE_VERSION_V2:
                version = BTREE_VERSION_V2
    except Exception:                          # missing or damaged: the current version
        pass
    tree = TreeFile(tmp, create=True, sync=True)
    try:
        tree.begin()
        tree.set_version(version)
        for n, (key, e) in enumerate(entries, 1):
            tree.put(key, e.ref())
            if n % 262144 == 0:                # bound the write txn; index.new is not in use
                tree.commit(0)
                tree.begin()
                tree.set_version(version)
        tree.commit(applied)
        problems = tree.check()
        if problems or tree.count != len(entries) or tree.applied_lsn != applied:
            raise RuntimeError(f"the index file just written ({tmp}) does not verify: "
                               f"{problems[:3]}, {tree.count} entries of {len(entries)}")
    finally:
        tree.close()
    fsync_path(tmp)
    backup = None
    if os.path.lexists(path):
        backup = path + ".before-repair"
        n = 1
        while os.path.lexists(backup):
            backup = f"{path}.before-repair.{n}"
            n += 1
        os.link(path, backup)
    os.rename(tmp, path)
    fsync_path(directory, directory=True)
    return backup


def next_superblock(res: Result) -> tuple[int, int]:
    """(seq, slot) for the next superblock write: never the slot in force."""
    valid = [s for s in res.slots if s.state == "valid"]
    seq = max((s.seq for s in valid), default=1) + 1
    if res.in_force is not None and seq % 2 == res.in_force.index:
        seq += 1
    return seq, seq % 2


def lost_report(report: RepairReport, rp: Replay) -> RepairReport:
    report.lost_before_lsn = rp.gone_before
    for key, (lsn, off, why) in sorted(rp.lost.items()):
        report.lost.append(dict(key_dict(key), lsn=lsn, offset=off, reason=why))
    for s in rp.damaged:
        report.dropped_records.append({"lsn": s.lsn, "offset": s.off,
                                       "reason": REASONS.get(s.state, s.state)})
    return report


def repair_database(res: Result) -> RepairReport:
    """Make the database consistent with what verifies.

    The index file is only a copy of what the log holds (the log is never
    rewritten in place and its chunks before the head are kept), so:
      * when only the index is bad (missing, damaged, behind the superblock,
        or naming values that fail their CRC) and the log chain the superblock
        names is sound: write a new index from the keys (repair_index);
      * otherwise: write a fresh compacted log chain and then a new index
        (repair_log).
    Every key dropped is reported; nothing is invented."""
    if res.replay is None:
        return RepairReport(False, "nothing verifies in the file: no log chain to rebuild "
                                   "from, so nothing was written")
    log_scope = any(p.scope == "log" for p in res.problems)
    sb = res.in_force
    if not log_scope and sb is not None and res.chain_trusted \
            and sb.head_lsn <= res.replay.end_lsn:
        return repair_index(res)
    return repair_log(res)


def repair_index(res: Result) -> RepairReport:
    """A new index holding the live keys, committed with applied_lsn = the
    last LSN of the log (E), then the superblock's other slot: the same log
    head, tree_lsn = E.  Open() then replays nothing (every record is <= E).

    Why applied_lsn = E, and not 0 with the log head moved back to the oldest
    chunk: that would make every open until the next checkpoint replay (and
    checksum) the whole history, and it would not be safe either -- with
    applied_lsn 0 and a crash between the index rename and the superblock
    write, the old superblock's head (mid-log) would be replayed onto an empty
    index, losing every key written before it, silently.  With applied_lsn = E
    both orders are safe: the old superblock (tree_lsn <= E) goes with the new
    index too, its head's records are all <= E and skipped.

    The keys: the old index's entries overlaid with the log after its
    applied_lsn when the index could be used (minus values that fail their
    CRC), else the whole log chain replayed from its start (verify chose it):
    in LSN order, the last write of a key wins, a DEL removes it."""
    ck, rp, sb = res.checker, res.replay, res.in_force
    assert rp is not None and sb is not None
    entries = sorted(rp.state.items())
    applied = max([rp.end_lsn - 1, sb.tree_lsn] + [e.lsn for _, e in entries])
    live = sum(e.klen + e.vlen for _, e in entries)
    backup = write_index(ck.dir, entries, applied)
    # The superblock: same head, the new checkpoint's numbers.  alloc_tail
    # covers every byte a live entry or the log names (nothing is reused).
    alloc = round_up(max(sb.alloc_tail, rp.alloc_end,
                         max((max(e.koff + e.klen, e.voff + e.vlen) for _, e in entries),
                             default=0)), SEG_SIZE)
    seq, slot = next_superblock(res)
    fd = os.open(ck.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        written = write_superblock(fd, seq, sb.head_off, sb.head_lsn, sb.created_ns, applied,
                                   live, alloc)
        assert written == slot
        os.fsync(fd)
    finally:
        os.close(fd)
    report = RepairReport(True, "rebuilt the index", kept_keys=len(entries),
                          new_head_off=sb.head_off, new_head_lsn=sb.head_lsn,
                          superblock_slot=slot, superblock_seq=seq, index_rebuilt=True,
                          index_applied_lsn=applied, index_backup=backup)
    return lost_report(report, rp)


def repair_log(res: Result) -> RepairReport:
    """Write a fresh compacted chain of the surviving entries, then a
    superblock slot naming it, then a new index holding the same entries.

    Order: (1) chain (and relocated bytes) at the end of the file, fsync;
    (2) the superblock slot not in force: head = the new chain, tree_lsn = P
    (its last LSN), fsync; (3) the new index, applied_lsn = P (write_index:
    atomic rename).  A crash before (2) leaves the old state in force; between
    (2) and (3), open() refuses (the old index's applied_lsn < P, or no index)
    and a second repair writes the index (repair_index).  The other order
    would let the old superblock go with the new index: open() would then
    hand out the bytes of relocated values (beyond the old allocation mark)
    to new writes.

    The new chain is a complete snapshot (one PUT per key), so the log alone
    still holds every key: an index lost later is rebuilt from it.  Its
    records are all <= P, so open() only verifies them.  The old index is
    always replaced: it may hold keys the repair dropped."""
    ck, rp, idx = res.checker, res.replay, res.index
    assert rp is not None
    move = {key for key, _what, _s, _e, _o in res.overlaps} | res.bad_key_bytes
    mm = ck.mm
    survivors = sorted(rp.state.items())
    highest = [rp.max_lsn, ck.max_lsn_anywhere(), rp.end_lsn - 1]
    if idx is not None:
        highest += [idx.applied_lsn, idx.max_entry_lsn]
    highest += [s.tree_lsn for s in res.slots if s.state == "valid"]
    highest += [e.lsn for _, e in survivors]
    start_lsn = max(x for x in highest if x < LSN_LIMIT) + 1
    # Fresh space starts after everything the file holds, at a segment
    # boundary (the engine reclaims space in whole segments and carves log
    # chunks four to a segment).
    base = round_up(max(ck.size, HEADER_SIZE), SEG_SIZE)
    fd = os.open(ck.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if ck.size < HEADER_SIZE:
            os.pwrite(fd, bytes(HEADER_SIZE - ck.size), ck.size)
        cursor = base
        marker_off = cursor                    # the snapshot marker's key bytes
        os.pwrite(fd, SNAPSHOT_MARKER, cursor)
        cursor += (len(SNAPSHOT_MARKER) + 7) & ~7
        entries: list[tuple[bytes, Entry]] = []
        for key, e in survivors:
            if key in move:
                data = key + mm[e.voff:e.voff + e.vlen]
                os.pwrite(fd, data, cursor)
                e = Entry(e.lsn, cursor, e.klen, cursor + e.klen, e.vlen, e.vcrc,
                          expire_ms=e.expire_ms)
                cursor += (len(data) + 7) & ~7
            entries.append((key, e))
        head = round_up(cursor, SEG_SIZE)
        hint = start_lsn - 1
        # The chain (format lays it out: a LINK in every chunk's last slot):
        # the snapshot marker, then one PUT per key.
        records = [(REC_DEL, SNAPSHOT_MARKER, marker_off, 0, 0, 0, 0)]
        records += [(REC_PUT, key, e.koff, e.voff, e.vlen, e.vcrc, e.expire_ms)
                    for key, e in entries]
        chunks, lsns, end = encode_chain(head, start_lsn, hint, records)
        tree_entries = [(key, Entry(lsn, e.koff, e.klen, e.voff, e.vlen, e.vcrc,
                                    expire_ms=e.expire_ms))
                        for (key, e), lsn in zip(entries, lsns[1:], strict=True)]
        last_lsn = lsns[-1]                    # P: the chain's last record (the marker if no key)
        for c, data in chunks:
            os.pwrite(fd, data, c)
        padded = round_up(end, MAP_ALIGN)
        if padded > end:                       # zeros, as Pool.ensure grows the file
            os.pwrite(fd, bytes(padded - end), end)
        os.fsync(fd)
        seq, sb_slot = next_superblock(res)
        created = res.in_force.created_ns if res.in_force else time.time_ns()
        live = sum(e.klen + e.vlen for _, e in entries)
        # alloc_tail = the chain's end: every byte before it (old log chunks
        # included) stays as it is; new data goes after the chain.
        written = write_superblock(fd, seq, head, start_lsn, created, last_lsn, live,
                                   round_up(end, SEG_SIZE))
        assert written == sb_slot
        os.fsync(fd)
    finally:
        os.close(fd)
    backup = write_index(ck.dir, tree_entries, last_lsn)
    report = RepairReport(True, "rebuilt the log and the index", kept_keys=len(entries),
                          relocated=len(move & rp.state.keys()), new_head_off=head,
                          new_head_lsn=start_lsn, superblock_slot=sb_slot, superblock_seq=seq,
                          torn_records=rp.torn_slots + rp.dropped_batch, log_rewritten=True,
                          index_rebuilt=True, index_applied_lsn=last_lsn, index_backup=backup)
    return lost_report(report, rp)


# ------------------------------------------------------------------ output


def summary(res: Result) -> dict[str, Any]:
    ck = res.checker
    rp = res.replay
    d: dict[str, Any] = {
        "ok": res.ok,
        "directory": ck.dir,
        "pool": ck.path,
        "file_bytes": ck.size,
        "keys": len(rp.state) if rp else 0,
        "keys_lost": len(rp.lost) if rp else 0,
        # > 0: the log before this LSN is gone and the index is unusable: the
        # keys last written before it are lost too, and cannot be named
        "keys_lost_before_lsn": rp.gone_before if rp else 0,
        "problems": [p.as_dict() for p in res.problems],
        "notes": [n.as_dict() for n in res.notes],
        "warnings": [],
        "superblock": {"in_force": res.in_force.index if res.in_force else None,
                       "slots": [s.as_dict() for s in res.slots]},
        "log_source": res.source,
    }
    idx = res.index
    if idx is not None:
        d["index"] = idx.as_dict()
        d["index_file_bytes"] = idx.file_bytes
        d["keys_from_index"] = state_sums(rp.state)[0] if rp else 0
    if rp:
        w = rp.walk
        invalid = len(rp.damaged)
        live = state_sums(rp.state)[1]
        referenced = referenced_bytes(rp.referenced, rp.state)
        log_bytes = len(w.chunks) * CHUNK_SIZE
        d["log"] = {
            "head_off": w.head_off, "head_lsn": w.head_lsn, "chunks": len(w.chunks),
            "records": rp.counts["records"] + rp.counts["skipped"] + rp.counts["links"] + invalid,
            "valid_records": rp.counts["records"] + rp.counts["skipped"] + rp.counts["links"],
            "replayed_records": rp.counts["records"],
            "skipped_records": rp.counts["skipped"], "skip_lsn": rp.skip_lsn,
            "invalid_records": invalid,
            "puts": rp.counts["puts"], "dels": rp.counts["dels"], "links": rp.counts["links"],
            "batches": rp.counts["batches"],
            "end_lsn": rp.end_lsn, "end_offset": rp.end_off, "end": rp.end_kind,
            "torn_slots": rp.torn_slots, "dropped_batch": rp.dropped_batch,
            "open_stops_at_lsn": rp.engine_end_lsn,
        }
        d.update(live_bytes=live, referenced_bytes=referenced, log_bytes=log_bytes,
                 allocated_end=rp.alloc_end, free_bytes=max(0, ck.size - rp.alloc_end),
                 unreferenced_bytes=max(0, rp.alloc_end - HEADER_SIZE - log_bytes - referenced),
                 space_ratio=(ck.size / live) if live else None, overlaps=len(res.overlaps))
        d["lost"] = [dict(key_dict(k), lsn=v[0], offset=v[1], reason=v[2])
                     for k, v in sorted(rp.lost.items())]
        space_warning(d, ck.size + d.get("index_file_bytes", 0), live, log_bytes)
    d["checksummed_bytes"] = ck.crc_bytes
    d["elapsed_s"] = round(res.elapsed, 3)
    return d


def space_warning(d: dict[str, Any], files: int, live: int, log_bytes: int) -> None:
    """Warn when the files are past the engine's space bound (SPACE_RATIO x
    live + SPACE_ALLOWANCE): what the cleaner and compact() could give back is
    everything but the live bytes, the log and the superblock."""
    from pastedb.core.engine import SPACE_ALLOWANCE, SPACE_RATIO

    bound = SPACE_RATIO * live + SPACE_ALLOWANCE
    if files <= bound:
        return
    reclaimable = max(0, files - live - log_bytes - HEADER_SIZE - d.get("index_file_bytes", 0))
    d["warnings"].append({
        "kind": "space", "file_bytes": files, "live_bytes": live,
        "space_ratio": files / live if live else None, "bound_bytes": int(bound),
        "reclaimable_bytes": reclaimable,
        "message": (f"the files hold {files:,} bytes for {live:,} live "
                    f"(ratio {files / live:.1f}) " if live else
                    f"the files hold {files:,} bytes and no live data ")
                   + f"-- past the bound of {int(bound):,}; about {reclaimable:,} bytes could "
                   f"be given back by the cleaner (open the database, or run compact())"})


def print_human(d: dict[str, Any], echo: Callable[[str], None]) -> None:
    echo(f"pastedb-check {d['directory']}")
    echo(f"  pool        {d['pool']}: {d['file_bytes']:,} bytes ({human_bytes(d['file_bytes'])})")
    sb = d["superblock"]
    states = ", ".join(f"slot {s['slot']} {s['state']}" + (f" seq {s['seq']}" if 'seq' in s else "")
                       for s in sb["slots"])
    echo(f"  superblock  {'slot %d in force' % sb['in_force'] if sb['in_force'] is not None else 'NONE valid'} ({states})")
    ix = d.get("index")
    if ix:
        extra = f", {len(ix['check_problems'])} check problem(s)" if ix["check_problems"] else ""
        echo(f"  index file  {ix['file']}: {ix['state']}"
             + (f", {ix['entries']:,} entries, applied LSN {ix['applied_lsn']}, commit {ix['txn']}, "
                f"{human_bytes(ix['file_bytes'])}; {ix['verified_values']:,} values checksummed"
                if ix["state"] not in ("missing", "absent") else "") + extra)
    log = d.get("log")
    if log:
        echo(f"  log         {log['records']:,} records ({log['valid_records']:,} valid, "
             f"{log['invalid_records']:,} invalid; {log['puts']:,} put, {log['dels']:,} del, "
             f"{log['links']:,} link, {log['batches']:,} batches) in {log['chunks']} chunk(s) "
             f"from byte offset {log['head_off']}, LSN {log['head_lsn']}..{log['end_lsn'] - 1}")
        echo(f"              ends {log['end']} at byte offset {log['end_offset']} (LSN {log['end_lsn']})"
             + (f", {log['torn_slots']} torn slot(s)" if log["torn_slots"] else "")
             + (f"; {log['skipped_records']:,} record(s) up to LSN {log['skip_lsn']} are in the "
                f"index already" if log["skipped_records"] else ""))
        ratio = f", space ratio {d['space_ratio']:.2f}" if d.get("space_ratio") else ""
        echo(f"  keys        {d['keys']:,} keys ({d.get('keys_from_index', 0):,} as the index "
             f"file has them, the rest from the log), {d['live_bytes']:,} live bytes"
             + (f", {d['keys_lost']} LOST" if d["keys_lost"] else ""))
        echo(f"  space       file {human_bytes(d['file_bytes'])}, log {human_bytes(d['log_bytes'])}, "
             f"referenced {human_bytes(d['referenced_bytes'])}, live {human_bytes(d['live_bytes'])}, "
             f"unreferenced {human_bytes(d['unreferenced_bytes'])}, free after "
             f"{d['allocated_end']:,} {human_bytes(d['free_bytes'])}{ratio}")
    for n in d["notes"]:
        echo(f"  note        [{n['kind']}] {n['file']} @ {n['offset']}: {n['message']}")
    for w in d.get("warnings", []):
        echo(f"  WARNING     [{w['kind']}] {w['message']}")
    for p in d["problems"]:
        echo(f"  PROBLEM     [{p['kind']}] {p['file']} @ {p['offset']}: {p['message']}")
    for k in d.get("lost", []):
        echo(f"  LOST        key {k['key']!r} (LSN {k['lsn']}, byte offset {k['offset']}): {k['reason']}")
    if d.get("keys_lost_before_lsn"):
        echo(f"  LOST        every key last written before LSN {d['keys_lost_before_lsn']} "
             f"(only the index had them; which ones cannot be known)")
    mb = d["checksummed_bytes"] / 1e6
    rate = mb / d["elapsed_s"] if d["elapsed_s"] > 0 else 0.0
    echo(f"  result      {'OK' if d['ok'] else '%d problem(s)' % len(d['problems'])} "
         f"({mb:.1f} MB checksummed in {d['elapsed_s']:.2f} s, {rate:.0f} MB/s)")


# ------------------------------------------------------------------ command line


def lock_directory(directory: str) -> int:
    """Take the database's LOCK the way the engine does (a POSIX record lock,
    engine.pyx DB._lock); raises CannotRun when another process holds it.
    Within one process POSIX locks do not exclude each other, and closing any
    descriptor of the file drops them, so a handle this process has open (the
    engine's registry) is refused before the file is touched."""
    lock_path = os.path.join(directory, LOCK_FILE)
    engine = sys.modules.get("pastedb.core.engine")
    held = getattr(engine, "_held_locks", None) if engine is not None else None
    if held:
        try:
            st = os.stat(lock_path)
            if (st.st_dev, st.st_ino) in held:
                raise CannotRun(f"the database {directory} is open in this process; close it "
                                f"first")
        except FileNotFoundError:
            pass
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise CannotRun(f"the database {directory} is open in another process (its LOCK "
                            f"is held); close it first") from None
        raise
    return fd


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(file_okay=True, dir_okay=True))
@click.option("--repair", is_flag=True,
              help="Rebuild the index (and, when it is damaged, the log) from what verifies; "
                   "report every key dropped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems (and no progress bar).")
def main(directory: str, repair: bool, as_json: bool, quiet: bool) -> None:
    """Verify the pastedb database in DIRECTORY (exit 0 consistent, 1 problems, 2 cannot run)."""
    def fail(msg: str) -> None:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": msg, "keys": 0, "problems": []}))
        click.echo(f"pastedb-check: error: {msg}", err=True)
        sys.exit(EXIT_CANNOT)

    if not os.path.isdir(directory):
        fail(f"{directory} is not a directory" if os.path.exists(directory)
             else f"{directory} does not exist")
    pool = os.path.join(directory, POOL_FILE)
    if not os.path.isfile(pool):
        extra = " (only pool.new, left by a crash while the database was created: it never held data)" \
            if os.path.exists(pool + ".new") else ""
        fail(f"{directory} is not a pastedb database: it has no pool file{extra}")
    try:
        lock_fd = lock_directory(directory)
    except CannotRun as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot lock {directory}: {e}")
    progress = Progress(sys.stderr.isatty() and not quiet)
    try:
        try:
            res = verify(directory, progress)
        except CannotRun as e:
            fail(str(e))
        except OSError as e:
            fail(f"cannot read {pool}: {e}")
        out = summary(res)
        code = EXIT_OK if res.ok else EXIT_PROBLEMS
        if repair:
            if res.ok:
                out["repair"] = RepairReport(False, "nothing to repair").as_dict()
            else:
                rep = repair_database(res)
                res.checker.close()
                after = verify(directory, progress)
                out = summary(after)
                out["before"] = {"problems": summary(res)["problems"]}
                out["repair"] = rep.as_dict()
                code = EXIT_OK if after.ok and rep.performed else EXIT_PROBLEMS
                after.checker.close()
                res = after
        else:
            res.checker.close()
    finally:
        progress.finish()
        os.close(lock_fd)
    if as_json:
        click.echo(json.dumps(out, indent=None, sort_keys=False))
    elif quiet:
        for p in out["problems"]:
            click.echo(f"{p['file']} @ {p['offset']}: [{p['kind']}] {p['message']}")
        if "repair" in out and out["repair"]["performed"]:
            for k in out["repair"]["lost"]:
                click.echo(f"LOST key {k['key']!r} (LSN {k['lsn']})")
            if out["repair"]["lost_before_lsn"]:
                click.echo(f"LOST every key last written before LSN "
                           f"{out['repair']['lost_before_lsn']}")
    else:
        if "before" in out:
            click.echo("before repair:")
            for p in out["before"]["problems"]:
                click.echo(f"  PROBLEM     [{p['kind']}] {p['file']} @ {p['offset']}: {p['message']}")
        if "repair" in out:
            r = out["repair"]
            if r["performed"]:
                what = (f"wrote a new log of {r['kept_keys']:,} keys at byte offset "
                        f"{r['new_head_off']} (LSN {r['new_head_lsn']}) and a new index"
                        if r["log_rewritten"] else
                        f"wrote a new index of {r['kept_keys']:,} keys (the log is unchanged)")
                click.echo(f"repair: {what} (applied LSN {r['index_applied_lsn']}), superblock "
                           f"slot {r['superblock_slot']} seq {r['superblock_seq']}; "
                           f"{len(r['lost'])} key(s) lost, {len(r['dropped_records'])} damaged "
                           f"record(s) dropped, {r['torn_records']} torn-tail record(s) dropped, "
                           f"{r['relocated']} entr(ies) copied to fresh space")
                if r["index_backup"]:
                    click.echo(f"  the replaced index file is kept as {r['index_backup']}")
                for k in r["lost"]:
                    click.echo(f"  LOST        key {k['key']!r} (LSN {k['lsn']}): {k['reason']}")
                if r["lost_before_lsn"]:
                    click.echo(f"  LOST        every key last written before LSN "
                               f"{r['lost_before_lsn']} (the log before it is gone and the "
                               f"index was unusable; which keys cannot be known)")
                for x in r["dropped_records"]:
                    click.echo(f"  dropped     record LSN {x['lsn']} at byte offset {x['offset']}: "
                               f"{x['reason']}")
            else:
                click.echo(f"repair: {r['message']}")
        print_human(out, click.echo)
    sys.exit(code)


if __name__ == "__main__":
    main()
