"""pastedb.aio: awaitable durable writes on real files.

Many coroutines writing at once share commit groups (the committer thread's
barriers, counted in stats()), a returned write is in every power-loss image,
errors reach the awaiting coroutine, and the iteration, batch and close
calls behave as their synchronous counterparts.  (Event-loop lag is measured
in bench, not asserted here.)"""

from __future__ import annotations

import asyncio
import faulthandler
import random

import pytest
import tally

import pastedb
import pastedb.aio


@pytest.fixture(autouse=True)
def deadlock_watchdog():
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 100))


def test_concurrent_durable_puts_share_commit_groups(db_path):
    async def main():
        async with pastedb.aio.open(db_path) as db:
            g0 = db.stats()["commit_groups"]

            async def writer(i):
                for j in range(5):
                    await db.put(b"k%03d-%d" % (i, j), b"v%d" % j)
            await asyncio.gather(*(writer(i) for i in range(300)))
            groups = db.stats()["commit_groups"] - g0
            # 1,500 durable puts, fewer barriers: how many fewer depends on what a
            # barrier costs (on tmpfs almost nothing), so only sharing is asserted.
            assert 1 <= groups < 1500, groups
            assert await db.len() == 1500
            assert await db.get(b"k007-3") == b"v3"
        with pastedb.open(db_path) as again:
            assert len(again) == 1500
    run(main())


def test_a_returned_write_is_in_every_power_loss_image(tmp_path):
    async def main():
        db = await pastedb.aio.open(tmp_path / "db", persist="crashsim")
        model: dict[bytes, bytes] = {}
        rnd = random.Random(5)
        try:
            for n in range(8):
                async def one(i, n=n):
                    k = b"p%02d" % rnd.randrange(40)
                    v = b"%d-%d" % (n, i)
                    await db.put(k, v)
                    return k, v
                done = await asyncio.gather(*(one(i) for i in range(20)))
                # the order the writes were appended is the order they ran in
                for k, v in done:
                    model[k] = v
                if n % 3 == 0:
                    k = sorted(model)[0]
                    assert await db.delete(k) is True
                    del model[k]
                async with db.batch() as b:
                    b.put(b"batch", b"%d" % n)
                model[b"batch"] = b"%d" % n
                img = tmp_path / f"img{n}"
                db.db._crash_image(img, rnd.randrange(1 << 30))
                tally.image()
                with pastedb.open(img, persist="none") as got:
                    assert dict(got.items()) == model, f"image {n}"
        finally:
            await db.close()
    run(main())


def test_errors_reach_the_coroutine_and_close_is_final(db_path):
    async def main():
        db = await pastedb.aio.open(db_path)
        with pytest.raises(TypeError):
            await db.put("text", b"v")
        with pytest.raises(ValueError):
            await db.put(b"x" * 2000, b"v")
        with pytest.raises(RuntimeError):
            async with db.batch() as b:
                b.put(b"never", b"1")
                raise RuntimeError("abandon the batch")
        assert await db.get(b"never") is None
        await db.put_many({b"a": b"1", b"b": b"2", b"c": b"3"})
        assert await db.get_many([b"a", b"z"]) == [b"1", None]
        await db.delete_many([b"c"])
        assert [k async for k in db] == [b"a", b"b"]
        assert [kv async for kv in db.items(reverse=True, limit=1)] == [(b"b", b"2")]
        assert [v async for v in db.values(prefix=b"a")] == [b"1"]
        await db.checkpoint()
        await db.close()
        await db.close()                                  # idempotent
        with pytest.raises(pastedb.Error):
            await db.put(b"late", b"1")
        with pytest.raises(TypeError):
            await pastedb.aio.open(db_path, sync=True)
    run(main())


def test_a_long_scan_yields_to_other_tasks(db_path):
    async def main():
        async with pastedb.aio.open(db_path) as db:
            await db.put_many((b"s%05d" % i, b"v") for i in range(3000))
            ticks = 0
            stop = asyncio.Event()

            async def ticker():
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0)
            t = asyncio.create_task(ticker())
            n = 0
            async for _ in db.keys():
                n += 1
            stop.set()
            await t
            assert n == 3000 and ticks >= 3000 // 256     # the ticker ran between fetches
    run(main())


def test_expiry_calls(db_path):
    async def main():
        async with pastedb.aio.open(db_path) as db:
            await db.put(b"k", b"v", ttl=3600)
            assert 3500 < await db.ttl(b"k") <= 3600
            assert await db.persist(b"k") is True and await db.ttl(b"k") is None
            assert await db.expire(b"k", 100) is True
            await db.put_many({b"a": b"1"}, ttl=50)
            async with db.batch() as b:
                b.put(b"z", b"9", ttl=10)
            assert 0 < await db.ttl(b"z") <= 10
        with pastedb.open(db_path) as again:
            assert 0 < again.ttl(b"k") <= 100 and 0 < again.ttl(b"a") <= 50
    run(main())


def test_numbered_databases(db_path):
    async def main():
        async with pastedb.aio.open(db_path) as db:
            d3 = db.database(3)
            await asyncio.gather(*(d3.put(b"k%d" % i, b"three") for i in range(50)),
                                 *(db.put(b"k%d" % i, b"zero") for i in range(50)))
            assert await d3.get(b"k7") == b"three" and await db.get(b"k7") == b"zero"
            assert await d3.len() == 50 and await db.len() == 50
            async with d3.batch() as b:
                b.put(b"\xffb", b"in batch", ttl=100)
                b.delete(b"k0")
            assert [k async for k in d3.keys(prefix=b"\xff")] == [b"\xffb"]
            assert 0 < await d3.ttl(b"\xffb") <= 100
            assert await d3.contains(b"k1") and not await d3.contains(b"k0")
            await d3.close()                      # durable; the handle stays open
            assert await db.get(b"k1") == b"zero"
        with pastedb.open(db_path) as again:
            assert len(again.database(3)) == 50 and again.database(3)[b"\xffb"] == b"in batch"
    run(main())
