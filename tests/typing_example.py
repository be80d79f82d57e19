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
        db.put_many({b"a": b"1", b"b": b"2"})
        db.update([(b"c", b"3")])
        got: list[bytes | None] = db.get_many([b"a", b"zz"])
        assert got[1] is None
        popped: bytes = db.pop(b"a")
        maybe: bytes | None = db.pop(b"a", None)
        assert popped and maybe is None
        first: list[bytes] = list(db.keys(limit=1))
        db.delete_many(first)
        with db.view(b"b") as mv:
            assert mv[:1] == b"2"
        return list(db.items(prefix=b"user:"))
