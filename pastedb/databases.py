"""Numbered databases of one pastedb file: ``db.database(n)``.

The databases share the file's pool, log and index; each key is stored with
its database in front (the keyspace encoding of ``core/format.pxd``), so a
view is only a translation of keys: every call goes to the handle with the
key in its stored form (a ``StoredKey``, which the handle takes as it is),
and iteration walks the database's own range of the index.  The handle
itself is database 0; ``pastedb serve``'s SELECT n is database n.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from pastedb.core.engine import DB

Buffer = bytes | bytearray | memoryview


class Database(MutableMapping):
    """Database ``n`` of a :class:`pastedb.DB` (what ``db.database(n)``
    returns).  Reads and writes are those of the handle, so durability,
    ``sync`` and read-only handles behave the same; the key limit is two
    bytes less than database 0's (the stored prefix).  pop, popitem and
    setdefault are compositions of get, put and delete (database 0's are
    atomic against other threads; these are not)."""

    __slots__ = ("_db", "_n")

    def __init__(self, db: DB, n: int) -> None:
        db._check_dbno(n)
        self._db = db
        self._n = n

    @property
    def number(self) -> int:
        return self._n

    @property
    def handle(self) -> DB:
        return self._db

    def _k(self, key: Buffer) -> bytes:
        return self._db._db_key(key, self._n)

    # reads
    def get(self, key: Buffer, default: Any = None) -> Any:
        return self._db.get(self._k(key), default)

    def __getitem__(self, key: Buffer) -> bytes:
        value = self._db.get(self._k(key))
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self._k(key) in self._db  # type: ignore[arg-type]

    def get_many(self, keys: Iterable[Buffer]) -> list[bytes | None]:
        return self._db.get_many([self._k(k) for k in keys])

    def ttl(self, key: Buffer) -> float | None:
        try:
            return self._db.ttl(self._k(key))
        except KeyError:
            raise KeyError(key) from None

    def __len__(self) -> int:
        return self._db._len_db(self._n)

    def __iter__(self) -> Iterator[bytes]:
        return self._db._cursor(0, None, None, None, False, None, self._n)

    def __reversed__(self) -> Iterator[bytes]:
        return self._db._cursor(0, None, None, None, True, None, self._n)

    def keys(self, start: Buffer | None = None, stop: Buffer | None = None, *,  # type: ignore[override]
             prefix: Buffer | None = None, reverse: bool = False,
             limit: int | None = None) -> Iterator[bytes]:
        return self._db._cursor(0, start, stop, prefix, reverse, limit, self._n)

    def values(self, start: Buffer | None = None, stop: Buffer | None = None, *,  # type: ignore[override]
               prefix: Buffer | None = None, reverse: bool = False,
               limit: int | None = None) -> Iterator[bytes]:
        return self._db._cursor(1, start, stop, prefix, reverse, limit, self._n)

    def items(self, start: Buffer | None = None, stop: Buffer | None = None, *,  # type: ignore[override]
              prefix: Buffer | None = None, reverse: bool = False,
              limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._db._cursor(2, start, stop, prefix, reverse, limit, self._n)

    # writes
    def put(self, key: Buffer, value: Buffer, *, ttl: float | None = None) -> None:
        self._db.put(self._k(key), value, ttl=ttl)

    def __setitem__(self, key: Buffer, value: Buffer) -> None:
        self._db.put(self._k(key), value)

    def delete(self, key: Buffer) -> bool:
        return self._db.delete(self._k(key))

    def __delitem__(self, key: Buffer) -> None:
        if not self._db.delete(self._k(key)):
            raise KeyError(key)

    def put_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]], *,
                 ttl: float | None = None) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._db.put_many([(self._k(k), v) for k, v in pairs], ttl=ttl)

    def delete_many(self, keys: Iterable[Buffer]) -> None:
        self._db.delete_many([self._k(k) for k in keys])

    def update(self, other: Any = (), **kwargs: Any) -> None:  # type: ignore[override]
        if kwargs:
            raise TypeError("update: keyword arguments are str keys; pastedb keys are bytes")
        self.put_many(other)

    def clear(self) -> None:
        """Remove every key of this database, atomically (the others keep theirs)."""
        self._db._clear_db(self._n)

    def expire(self, key: Buffer, seconds: float) -> bool:
        return self._db.expire(self._k(key), seconds)

    def persist(self, key: Buffer) -> bool:
        return self._db.persist(self._k(key))

    def stats(self) -> dict[str, Any]:
        """The handle's stats (the file's, every database's), with this
        database's own key count as ``database_keys``."""
        st = self._db.stats()
        st["database_keys"] = len(self)
        return st

    def _items_with_expiry(self, start: Buffer | None = None, stop: Buffer | None = None, *,
                           prefix: Buffer | None = None) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, expire_ms) in key order: what pastedb.dump writes."""
        return self._db._cursor(3, start, stop, prefix, False, None, self._n)

    def batch(self) -> _Batch:
        """An all-or-nothing group of puts and deletes of this database."""
        return _Batch(self, self._db.batch())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Database):
            return self._db is other._db and self._n == other._n
        return MutableMapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<pastedb.Database {self._n} of {self._db.path!r}>"


class _Batch:
    """A :class:`pastedb.Batch` whose keys are those of one database."""

    __slots__ = ("_view", "_b")

    def __init__(self, view: Database, batch: Any) -> None:
        self._view = view
        self._b = batch

    def put(self, key: Buffer, value: Buffer, *, ttl: float | None = None) -> None:
        self._b.put(self._view._k(key), value, ttl=ttl)

    def delete(self, key: Buffer) -> None:
        self._b.delete(self._view._k(key))

    def _put_at(self, key: Buffer, value: Buffer, expire_ms: int) -> None:
        self._b._put_at(self._view._k(key), value, expire_ms)

    def _put_pairs(self, keys: list[bytes], values: list[bytes]) -> None:
        self._b._put_pairs([self._view._k(k) for k in keys], values)

    def __len__(self) -> int:
        return len(self._b)

    def commit(self) -> None:
        self._b.commit()

    def discard(self) -> None:
        self._b.discard()

    def __enter__(self) -> _Batch:
        self._b.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._b.__exit__(*exc)
