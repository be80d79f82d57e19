"""Power-loss checks shared by the embedded and the server tests.

Writers own their keys and write versions 1, 2, 3, ... of each; a value
names its key and version and carries a checksum, so a recovered value is
either exactly the bytes written for that key and version, or detectably
wrong.  Just before a power-loss image is taken, the test copies what has
been acknowledged; the image must then hold, for every key, the acknowledged
version or a later one that was issued (never an earlier one, never missing),
and every group (a batch, a MULTI/EXEC) all or nothing.
"""

from __future__ import annotations

import threading
import zlib

import tally

import pastedb


def value_for(key: bytes, version: int, size: int) -> bytes:
    head = b"%s|%d|" % (key, version)
    body = (head * (size // len(head) + 1))[:max(size, len(head))]
    return body + zlib.crc32(key + body).to_bytes(4, "little")


def version_of(key: bytes, value: bytes) -> int:
    """The version a recovered value holds; AssertionError if it is not
    byte for byte a value written for `key`."""
    body, crc = value[:-4], value[-4:]
    assert zlib.crc32(key + body).to_bytes(4, "little") == crc and body.startswith(key + b"|"), \
        f"bytes under {key!r} were never written for it: {value[:48]!r}"
    version = int(body.split(b"|", 2)[1])
    assert value == value_for(key, version, len(body)) or len(body) < len(key) + 3, \
        f"value under {key!r} is not the one written for version {version}"
    return version


class Ledger:
    """What was issued and acknowledged, per key, and which keys form groups
    (all written together with one version)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[bytes, int] = {}
        self.issued: dict[bytes, int] = {}
        self.groups: list[tuple[bytes, ...]] = []

    def issue(self, keys, version: int) -> None:
        with self.lock:
            for k in keys:
                self.issued[k] = version

    def ack(self, keys, version: int) -> None:
        with self.lock:
            for k in keys:
                if self.acked.get(k, 0) < version:
                    self.acked[k] = version

    def snapshot(self) -> dict[bytes, int]:
        with self.lock:
            return dict(self.acked)


def check_image(directory, acked: dict[bytes, int], ledger: Ledger) -> int:
    """Open the image and check it against what was acknowledged before it
    was taken.  Returns the number of keys it holds."""
    tally.image()
    with pastedb.open(directory, persist="none") as db:
        got = dict(db.items())
    for k, v in got.items():
        version = version_of(k, v)
        assert version <= ledger.issued.get(k, 0), f"{k!r}: version {version} was never issued"
        assert version >= acked.get(k, 0), \
            f"{k!r}: acknowledged version {acked[k]} lost (the image holds {version})"
    missing = [k for k in acked if k not in got]
    assert not missing, f"{len(missing)} acknowledged keys missing, e.g. {missing[:3]!r}"
    for group in ledger.groups:
        versions = {version_of(k, got[k]) if k in got else 0 for k in group}
        assert len(versions) == 1, f"group {group[0]!r}... recovered torn: versions {versions}"
    return len(got)
