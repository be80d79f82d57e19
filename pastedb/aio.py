"""pastedb for asyncio: the same database, its calls awaitable.

    import pastedb.aio

    async with pastedb.aio.open("/var/lib/mydb") as db:
        await db.put(b"k", b"v")          # returns once durable
        v = await db.get(b"k")
        async for key in db.keys(prefix=b"user:"):
            ...

How a durable write waits: ``put`` appends its record at once, on the event
loop's thread (the append does not wait for the disk: the handle underneath
is opened with ``sync=False``), then awaits a future.  One committer thread
per database makes everything appended so far durable with one barrier and
completes every future that was waiting for it, with one wake-up of the loop
per group.  So a thousand coroutines writing at once share commit groups
(``stats()["commit_groups"]`` counts barriers), no call takes a thread of its
own, and the loop never waits for a disk flush.  Reads of the mapped pool
complete at once.  Open, checkpoint and close, which may take long, run on
the committer thread too.

A write that has not been awaited to completion may or may not be durable
after a crash, exactly like a ``sync=True`` put interrupted before it
returned; one that returned is durable.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import pastedb
from pastedb.core.engine import DB, Batch
from pastedb.databases import Database

__all__ = ["open", "AsyncDB", "AsyncDatabase", "AsyncBatch"]


class _Committer:
    """The one thread that runs a database's barriers (and its slow calls)
    for the event loop.  Durable-write waiters coalesce: every request queued
    while a barrier runs is served by the next one."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.cond = threading.Condition()
        self.waiters: list[asyncio.Future[None]] = []     # durable-write futures
        self.jobs: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self.db: DB | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="pastedb-aio-commit", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        with self.cond:
            if self.stopping:
                raise pastedb.Error("the database is closed")
            self.jobs.append((fn, fut))
            self.cond.notify()
        return fut

    def durable(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        with self.cond:
            if self.stopping:
                raise pastedb.Error("the database is closed")
            self.waiters.append(fut)
            if len(self.waiters) == 1:
                self.cond.notify()
        return fut

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.waiters and not self.jobs and not self.stopping:
                    self.cond.wait()
                if not self.waiters and not self.jobs:
                    return                                 # stopping, nothing left
                waiters, self.waiters = self.waiters, []
                jobs, self.jobs = self.jobs, []
            if waiters:
                err: BaseException | None = None
                try:
                    assert self.db is not None
                    self.db.sync()
                except BaseException as e:                  # delivered to every waiter
                    err = e
                self.loop.call_soon_threadsafe(_settle_all, waiters, err)
            for fn, fut in jobs:
                try:
                    result, err = fn(), None
                except BaseException as e:
                    result, err = None, e
                self.loop.call_soon_threadsafe(_settle, fut, result, err)


def _settle(fut: asyncio.Future[Any], result: Any, err: BaseException | None) -> None:
    if fut.cancelled():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(result)


def _settle_all(futs: list[asyncio.Future[None]], err: BaseException | None) -> None:
    for fut in futs:
        _settle(fut, None, err)


class AsyncDB:
    """A database whose writes are awaited until durable.  Made by
    :func:`open`; the synchronous handle underneath is ``.db`` (opened with
    ``sync=False``: its own writes are durable only after a sync)."""

    def __init__(self, db: DB, committer: _Committer):
        self.db: DB | Database = db
        self._h = db                      # the handle (its slow calls, close)
        self._c = committer

    def database(self, n: int) -> AsyncDatabase:
        """Database n of the same files (the server's SELECT n), its calls
        awaitable like these; its writes share this handle's commit groups."""
        return AsyncDatabase(self, n)

    # -- writes: append now, await the commit group
    async def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        self.db.put(key, value, ttl=ttl)
        await self._c.durable()

    async def delete(self, key: bytes) -> bool:
        existed = self.db.delete(key)
        await self._c.durable()
        return existed

    async def put_many(self, items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]], *,
                       ttl: float | None = None) -> None:
        self.db.put_many(items, ttl=ttl)
        await self._c.durable()

    async def expire(self, key: bytes, seconds: float) -> bool:
        done = self.db.expire(key, seconds)
        await self._c.durable()
        return done

    async def persist(self, key: bytes) -> bool:
        done = self.db.persist(key)
        await self._c.durable()
        return done

    async def ttl(self, key: bytes) -> float | None:
        return self.db.ttl(key)

    async def delete_many(self, keys: Iterable[bytes]) -> None:
        self.db.delete_many(keys)
        await self._c.durable()

    async def sync(self) -> None:
        """Every write appended so far through this handle is durable on return."""
        await self._c.durable()

    def batch(self) -> AsyncBatch:
        """``async with db.batch() as b: b.put(...)``: all or nothing, durable
        when the block exits."""
        return AsyncBatch(self, self.db.batch())

    # -- reads: the mapping answers at once
    async def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self.db.get(key, default)

    async def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        return self.db.get_many(keys)

    async def contains(self, key: bytes) -> bool:
        return key in self.db

    async def len(self) -> int:
        return len(self.db)

    def keys(self, start: bytes | None = None, stop: bytes | None = None, *,
             prefix: bytes | None = None, reverse: bool = False,
             limit: int | None = None) -> AsyncIterator[bytes]:
        return _aiter(self.db.keys(start, stop, prefix=prefix, reverse=reverse, limit=limit))

    def values(self, start: bytes | None = None, stop: bytes | None = None, *,
               prefix: bytes | None = None, reverse: bool = False,
               limit: int | None = None) -> AsyncIterator[bytes]:
        return _aiter(self.db.values(start, stop, prefix=prefix, reverse=reverse, limit=limit))

    def items(self, start: bytes | None = None, stop: bytes | None = None, *,
              prefix: bytes | None = None, reverse: bool = False,
              limit: int | None = None) -> AsyncIterator[tuple[bytes, bytes]]:
        return _aiter(self.db.items(start, stop, prefix=prefix, reverse=reverse, limit=limit))

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.keys()

    # -- slow calls: on the committer thread
    async def checkpoint(self) -> None:
        await self._c.submit(self._h.checkpoint)

    async def compact(self) -> Any:
        return await self._c.submit(self._h.compact)

    def stats(self) -> dict[str, Any]:
        return self._h.stats()

    async def close(self) -> None:
        """Make everything durable and close (idempotent)."""
        if self._h.closed:
            return
        try:
            await self._c.durable()
            await self._c.submit(self._h.close)
        finally:
            self._c.stop()

    async def __aenter__(self) -> AsyncDB:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<pastedb.aio.AsyncDB {self._h.path!r}>"


class AsyncDatabase(AsyncDB):
    """Database n of an :class:`AsyncDB` (``adb.database(n)``): the same
    awaitable calls on that database's keys (``.db`` is its
    :class:`pastedb.Database`).  checkpoint, compact and stats are the
    handle's; closing is the handle's too (``close()`` here only makes this
    database's writes durable)."""

    def __init__(self, adb: AsyncDB, n: int):
        super().__init__(adb._h, adb._c)
        self.db = adb._h.database(n)
        self.number = n

    def database(self, n: int) -> AsyncDatabase:
        return AsyncDatabase(self, n)

    async def close(self) -> None:
        await self._c.durable()

    def __repr__(self) -> str:
        return f"<pastedb.aio.AsyncDatabase {self.number} of {self._h.path!r}>"


class AsyncBatch:
    """An all-or-nothing group (``async with db.batch() as b``); ``put`` and
    ``delete`` stage at once, the block's exit appends and awaits durability."""

    def __init__(self, adb: AsyncDB, batch: Batch | Any):
        self._adb = adb
        self._b = batch

    def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        self._b.put(key, value, ttl=ttl)

    def delete(self, key: bytes) -> None:
        self._b.delete(key)

    def __len__(self) -> int:
        return len(self._b)

    async def commit(self) -> None:
        self._b.commit()
        await self._adb._c.durable()

    def discard(self) -> None:
        self._b.discard()

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.commit()
        else:
            self.discard()


async def _aiter(cursor: Iterable[Any]) -> AsyncIterator[Any]:
    # The cursor fetches 256 entries per hold of the index lock; give the
    # loop a turn between fetches so a long scan never starves other tasks.
    n = 0
    for item in cursor:
        yield item
        n += 1
        if n % 256 == 0:
            await asyncio.sleep(0)


class _Opening:
    """What :func:`open` returns: ``await`` it for the database, or use it
    in ``async with`` directly."""

    def __init__(self, path: str | os.PathLike[str], options: dict[str, Any]):
        self._path = path
        self._options = options
        self._db: AsyncDB | None = None

    async def _open(self) -> AsyncDB:
        if "sync" in self._options:
            raise TypeError("pastedb.aio.open(): every write is awaited until durable; "
                            "there is no sync= option")
        committer = _Committer(asyncio.get_running_loop())
        try:
            db = await committer.submit(
                lambda: pastedb.open(self._path, sync=False, **self._options))
        except BaseException:
            committer.stop()
            raise
        committer.db = db
        self._db = AsyncDB(db, committer)
        return self._db

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._open().__await__()

    async def __aenter__(self) -> AsyncDB:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()


def open(path: str | os.PathLike[str], **options: Any) -> _Opening:
    """Open (or create) the database in directory ``path`` for asyncio:
    ``db = await pastedb.aio.open(path)`` or ``async with pastedb.aio.open(path)
    as db``.  Options as :func:`pastedb.open` (no ``sync``: writes are always
    awaited until durable).  Opening (recovery) runs off the event loop."""
    return _Opening(path, options)
