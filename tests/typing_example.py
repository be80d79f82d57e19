"""Checked by mypy in test_sourcecode.py: the README's usage must type-check."""

from __future__ import annotations

import pastedb


def example(path: str) -> list[tuple[bytes, bytes]]:
    with pastedb.open(path, sync=False) as db:
        db[b"user:1"] = b"alice"
        db.put(b"user:2", bytearray(b"bob"))
        value: bytes | None = db.get(b"user:3")
        assert value is None
        with db.batch() as b:
            b.put(b"user:3", b"carol")
            b.delete(b"user:1")
        n: int = len(db)
        assert n >= 0
        return list(db.items(prefix=b"user:"))
