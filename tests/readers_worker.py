"""Worker processes for tests/test_readers.py: a writer that runs a fixed,
computable sequence of operations and records how many were acknowledged,
and readers that check every value they see against that sequence.

Operation i (i = 1, 2, ...) acts on key KEY(i % nkeys): a delete when
i % 7 == 3, else a put of VALUE(key, i).  A value names its key and its
operation and is filled with bytes derived from both, so a torn value, a
value of another key or bytes of a reused segment never pass `parse`.
The writer stores i in the ack file (8 bytes, shared mapping) after
operation i returned, i.e. once it was acknowledged.

    python tests/readers_worker.py writer DIR ACK NKEYS SECONDS [server PORT]
    python tests/readers_worker.py reader DIR ACK NKEYS SECONDS
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import sys
import time


def key_of(i: int, nkeys: int) -> bytes:
    return b"key:%05d" % (i % nkeys)


def is_delete(i: int) -> bool:
    return i % 7 == 3


def size_of(i: int) -> int:
    if i % 16 == 5:
        return 270_000                # an extent of its own
    return (64, 2000, 16000, 700)[i % 4]


def value_of(key: bytes, i: int) -> bytes:
    head = b"%s|%d|" % (key, i)
    seed = hashlib.blake2b(head, digest_size=32).digest()
    n = size_of(i)
    return head + (seed * (n // 32 + 1))[:n]


def parse(key: bytes, value: bytes) -> int:
    """The operation that wrote `value` under `key`; AssertionError when the
    bytes are not exactly what that operation wrote for that key."""
    parts = value.split(b"|", 2)
    assert len(parts) == 3 and parts[0] == key, (key, value[:60])
    i = int(parts[1])
    assert value == value_of(key, i), f"torn or foreign value for {key!r} (op {i})"
    return i


def last_op(key_index: int, upto: int, nkeys: int) -> int:
    """The last operation <= upto on key number key_index (0: none)."""
    j = upto - ((upto - key_index) % nkeys)
    return j if j > 0 else 0


def check_value(key_index: int, got: bytes | None, before: int, after: int, nkeys: int) -> None:
    """A read of key number key_index that began after `before` operations
    were acknowledged and ended before `after + 1` was: it must show
    operation last_op(before) or a later one on that key, never one later
    than after + 1 (at most one operation is in flight)."""
    key = key_of(key_index, nkeys)
    floor = last_op(key_index, before, nkeys)
    if got is None:
        # a delete at or after the floor, or nothing written yet
        j = floor
        while j <= after + 1:
            if j == 0 or is_delete(j):
                return
            j += nkeys
        raise AssertionError(f"{key!r} missing; op {floor} (a put) was acknowledged before the read")
    i = parse(key, got)
    assert i % nkeys == key_index and not is_delete(i)
    assert i >= floor, f"{key!r} shows op {i}, but op {floor} was acknowledged before the read"
    assert i <= after + 1, f"{key!r} shows op {i}, which had not begun ({after} acknowledged)"


def model(upto: int, nkeys: int) -> dict[bytes, bytes]:
    """The database after operations 1..upto."""
    out: dict[bytes, bytes] = {}
    for x in range(nkeys):
        j = last_op(x, upto, nkeys)
        if j and not is_delete(j):
            k = key_of(x, nkeys)
            out[k] = value_of(k, j)
    return out


class Ack:
    def __init__(self, path: str, create: bool = False):
        if create:
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)
        self.f = open(path, "r+b")
        self.m = mmap.mmap(self.f.fileno(), 4096)
        # One aligned 8-byte load/store (struct.pack_into zeroes the bytes
        # first: a reader in between would see 0).
        self.word = ctypes.c_uint64.from_buffer(self.m)

    def get(self) -> int:
        return self.word.value

    def set(self, i: int) -> None:
        self.word.value = i


def writer(directory: str, ack_path: str, nkeys: int, seconds: float, mode: str = "embedded",
           port: int = 0) -> None:
    ack = Ack(ack_path)
    i = ack.get()
    end = time.monotonic() + seconds
    if mode == "server":
        import redis
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
        while time.monotonic() < end:
            i += 1
            k = key_of(i, nkeys)
            if is_delete(i):
                r.delete(k)
            else:
                r.set(k, value_of(k, i))
            ack.set(i)
        print(json.dumps({"ops": i}), flush=True)
        return
    import pastedb
    db = pastedb.open(directory)
    db._checkpoint_policy(every=500, interval=0.05)     # checkpoints and free passes often
    n = 0
    while time.monotonic() < end:
        i += 1
        k = key_of(i, nkeys)
        if is_delete(i):
            db.delete(k)
        else:
            db.put(k, value_of(k, i))
        ack.set(i)
        n += 1
        if n % 1500 == 0:
            db.compact()                                 # relocations and cuts of the file end
    st = db.stats()
    db.close()
    print(json.dumps({"ops": i, "freed_segments": st["freed_segments"],
                      "reused_segments": st["reused_segments"],
                      "truncated_bytes": st["truncated_bytes"]}), flush=True)


def reader(directory: str, ack_path: str, nkeys: int, seconds: float) -> None:
    import pastedb
    ack = Ack(ack_path)
    db = pastedb.open(directory, readonly=True)
    end = time.monotonic() + seconds
    gets = scans = 0
    x = os.getpid() % nkeys
    while time.monotonic() < end:
        for _ in range(50):
            x = (x * 31 + 7) % nkeys
            before = ack.get()
            got = db.get(key_of(x, nkeys))
            after = ack.get()
            check_value(x, got, before, after, nkeys)
            gets += 1
        before = ack.get()
        seen = {}
        for k, v in db.items():
            seen[k] = v
        after = ack.get()
        # Iteration goes in batches, each at least as new as the last.
        for x2 in range(nkeys):
            check_value(x2, seen.get(key_of(x2, nkeys)), before, after, nkeys)
        scans += 1
    db.close()
    print(json.dumps({"gets": gets, "scans": scans}), flush=True)


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "writer":
        writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
               *(sys.argv[6:7]), *([int(sys.argv[7])] if len(sys.argv) > 7 else []))
    elif what == "reader":
        reader(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        raise SystemExit(f"unknown worker {what}")
