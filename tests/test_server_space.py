"""The server's space: receive arenas are reclaimed, the files stay within
the space bound with no help from the user, and a full disk is a state.

* a long overwrite workload through the real server (redis-py, several
  connections, pipelined and not, small to large values, every key rewritten
  tens of times) keeps pool + index within SPACE_RATIO x live +
  SPACE_ALLOWANCE at every sample -- from INFO and from the files on disk --
  without SAVE or compact;
* a full disk -- a size-limited tmpfs mounted by the test (root only, skipped
  otherwise) or the --max-disk quota (always) -- refuses only commands that
  need new space, with -OOM naming the disk; GET, MGET, DBSIZE, INFO, SCAN,
  DEL, UNLINK keep working; deletes make room and writes resume without a
  restart; nothing acknowledged is lost (checked again after a restart);
* the embedded API on a full disk: OSError ENOSPC on the write only; reads,
  len and deletes go on; compact() makes progress; puts resume;
* kill -9 of the server while arenas are reclaimed and reused, under
  concurrent load: every acknowledged SET survives byte for byte.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pastedb
from pastedb.core import engine

MiB = 1 << 20
RATIO = engine.SPACE_RATIO
ALLOWANCE = engine.SPACE_ALLOWANCE


def value_for(key: bytes, gen: int, size: int) -> bytes:
    head = b"%s/%d/%d/" % (key, gen, size)
    body = hashlib.blake2b(head, digest_size=32).digest()
    return head + (body * (size // 32 + 1))[:size]


def info(r) -> dict:
    return r.info("persistence")


def file_bytes(directory: Path) -> int:
    return sum(os.path.getsize(directory / name) for name in ("pool", "index")
               if (directory / name).exists())


def assert_bound(st: dict, on_disk: int, what: str) -> None:
    live = st["live_bytes"]
    bound = RATIO * live + ALLOWANCE
    assert st["file_bytes"] <= bound, (
        f"{what}: INFO says {st['file_bytes']} file bytes for {live} live "
        f"(bound {bound:.0f}): {st}")
    assert on_disk <= bound, f"{what}: {on_disk} bytes on disk for {live} live (bound {bound:.0f})"


# ------------------------------------------------------------ the space bound
def test_long_overwrite_workload_stays_within_the_space_bound(server, slow):
    """4 connections (2 pipelining 40 SETs at a time, 2 one SET at a time)
    rewrite 1,500 keys of mixed sizes (100 B .. 256 KiB) 25 times over (40
    with --slow); INFO and the file sizes are sampled throughout."""
    srv = server()
    nkeys, rounds = 1500, 40 if slow else 25
    rng = random.Random(17)
    sizes = {}
    for i in range(nkeys):
        pick = rng.random()
        sizes[b"k%05d" % i] = (rng.randrange(50, 400) if pick < 0.5 else
                               rng.randrange(1000, 9000) if pick < 0.97 else
                               rng.randrange(64 << 10, 256 << 10))
    keys = sorted(sizes)
    final: dict[bytes, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(tid: int) -> None:
        try:
            r = srv.client()
            mine = keys[tid::4]
            pipelined = tid % 2 == 0
            for gen in range(rounds):
                order = list(mine)
                random.Random(tid * 1000 + gen).shuffle(order)
                if pipelined:
                    for i in range(0, len(order), 40):
                        p = r.pipeline(transaction=False)
                        for k in order[i:i + 40]:
                            p.set(k, value_for(k, gen, sizes[k]))
                        assert all(p.execute())
                else:
                    for k in order:
                        assert r.set(k, value_for(k, gen, sizes[k]))
                with lock:
                    for k in mine:
                        final[k] = gen
        except BaseException as e:                       # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    r = srv.client()
    samples = 0
    worst = 0.0
    while any(t.is_alive() for t in threads):
        st = info(r)
        on_disk = file_bytes(srv.directory)
        assert_bound(st, on_disk, f"sample {samples}")
        if st["live_bytes"]:
            worst = max(worst, st["file_bytes"] / st["live_bytes"])
        samples += 1
        time.sleep(0.25)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    st = info(r)
    assert_bound(st, file_bytes(srv.directory), "at the end")
    live = sum(len(value_for(k, final[k], sizes[k])) + len(k) for k in keys)
    assert st["live_bytes"] == live
    written = rounds * live
    # Without reclamation the pool would hold every value ever received.
    assert st["file_bytes"] < written / 4, st
    assert st["arenas_released"] > 0 and st["reclaimed_segments"] > 0 and \
        st["reused_segments"] > 0, st
    assert samples > 3, "the workload ended before the bound was sampled"
    for k in keys[::7]:
        assert r.get(k) == value_for(k, final[k], sizes[k])
    print(f"\nlive {live} written {written} file {st['file_bytes']} "
          f"ratio {st['file_bytes'] / live:.2f} (worst sample {worst:.2f}) {st}")


def test_an_idle_partial_request_does_not_pin_its_arena(server):
    """A client that sends half a SET and goes quiet: its bytes are moved out
    of the old arena (the only copy), so the arena is reclaimed, and the SET
    completes correctly when the rest arrives."""
    srv = server()
    r = srv.client()
    raw = srv.raw()
    value = b"v" * 3000
    cmd = b"*3\r\n$3\r\nSET\r\n$7\r\npartial\r\n$%d\r\n%s\r\n" % (len(value), value)
    raw.send_raw(cmd[:1500])
    # Enough traffic from others for the arena the partial request lies in
    # to be retired, its values to die and checkpoints to run.
    big = b"x" * 4000
    deadline = time.monotonic() + 60
    moved = 0
    while time.monotonic() < deadline:
        p = r.pipeline(transaction=False)
        for i in range(200):
            p.set(b"fill%d" % (i % 50), big)
        p.execute()
        st = info(r)
        moved = st["partial_requests_moved"]
        if moved and st["arenas_pinned"] <= 2:
            break
    assert moved >= 1, info(r)
    raw.send_raw(cmd[1500:])
    assert raw.read_reply() == b"OK"
    assert r.get(b"partial") == value


# ------------------------------------------------------------ full disk
@pytest.fixture
def small_fs(tmp_path):
    """A 64 MiB tmpfs mounted for the test (root only; skipped otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_until_refused(r, prefix: bytes, size: int, limit: int) -> tuple[dict, str]:
    """SET new keys until one is refused; returns the acknowledged ones and
    the error."""
    import redis

    acked: dict[bytes, bytes] = {}
    for i in range(limit):
        k = b"%s%06d" % (prefix, i)
        v = value_for(k, 0, size)
        try:
            assert r.set(k, v)
        except redis.ResponseError as e:
            # redis-py turns an -OOM reply into OutOfMemoryError (prefix dropped)
            assert isinstance(e, redis.exceptions.OutOfMemoryError), repr(e)
            return acked, str(e)
        acked[k] = v
    pytest.fail(f"{limit} SETs of {size} bytes never filled the disk")


def full_disk_through_the_server(srv, directory: Path) -> None:
    import redis

    r = srv.client()
    acked, err = fill_until_refused(r, b"fill:", 48 << 10, 4000)
    assert "disk is full" in err, err
    assert len(acked) > 100
    st = info(r)
    assert st["disk_full"] == 1 and st["disk_full_refusals"] >= 1, st
    # Reads, INFO, DBSIZE, SCAN keep working; writes keep being refused.
    keys = sorted(acked)
    for k in keys[::17]:
        assert r.get(k) == acked[k]
    assert r.mget(keys[:5]) == [acked[k] for k in keys[:5]]
    assert r.dbsize() == len(acked)
    cursor, found = r.scan(0, count=100)
    assert found and set(found) <= set(acked)
    assert r.ping()
    with pytest.raises(redis.exceptions.OutOfMemoryError, match="disk is full"):
        r.set(b"another", value_for(b"another", 0, 48 << 10))
    # Deletes (DEL and UNLINK) work on the full disk and make room.
    gone = keys[: len(keys) * 2 // 3]
    half = len(gone) // 2
    assert r.delete(*gone[:half]) == half
    assert r.unlink(*gone[half:]) == len(gone) - half
    for k in gone:
        del acked[k]
    # Writes resume without a restart once the space is reclaimed.
    deadline = time.monotonic() + 60
    resumed = None
    while time.monotonic() < deadline:
        k = b"after:%d" % int(time.monotonic() * 1000)
        v = value_for(k, 1, 48 << 10)
        try:
            if r.set(k, v):
                acked[k] = v
                resumed = k
                break
        except redis.exceptions.OutOfMemoryError:
            pass
        time.sleep(0.2)
    assert resumed is not None, f"writes never resumed after the deletes: {info(r)}"
    more, _err = fill_until_refused(r, b"more:", 48 << 10, 4000)
    acked.update(more)
    assert len(more) > 20, "the deletes gave back too little room"
    assert r.dbsize() == len(acked)
    for k, v in acked.items():
        assert r.get(k) == v, k
    # Everything acknowledged survives a restart on the (still full) disk.
    srv.stop()
    srv.start()
    r = srv.client()
    assert r.dbsize() == len(acked)
    for k, v in acked.items():
        assert r.get(k) == v, k
    # Right after a restart the free segments are known only once the
    # first checkpoint has counted them (about a second): until then a
    # delete on a disk this full may be refused too, clearly.
    deadline = time.monotonic() + 20
    while True:
        try:
            assert r.flushdb()
            break
        except redis.exceptions.OutOfMemoryError:
            assert time.monotonic() < deadline, f"FLUSHDB never got room: {info(r)}"
            time.sleep(0.2)
    assert r.dbsize() == 0


def test_full_tmpfs_through_the_server(server, small_fs):
    srv = server(directory=small_fs / "db")
    full_disk_through_the_server(srv, small_fs / "db")


def test_max_disk_quota_through_the_server(server, tmp_path):
    """--max-disk behaves as a full file system of that size."""
    srv = server("--max-disk", "48mb", directory=tmp_path / "quota")
    full_disk_through_the_server(srv, tmp_path / "quota")
    r = srv.client()
    assert info(r)["max_disk"] == 48 * MiB


def full_disk_embedded(directory: Path, quota: int = 0) -> None:
    db = pastedb.open(directory, sync=False)
    if quota:
        db.set_max_disk(quota)
    acked: dict[bytes, bytes] = {}
    err = None
    for i in range(4000):
        k = b"e%06d" % i
        v = value_for(k, 0, 48 << 10)
        try:
            db.put(k, v)
        except OSError as e:
            err = e
            break
        acked[k] = v
    assert err is not None and err.errno == errno.ENOSPC, err
    assert len(acked) > 100
    # Reads and counts work; only the write failed.
    assert len(db) == len(acked)
    for k in list(acked)[::13]:
        assert db.get(k) == acked[k]
    # Deletes work on the full disk; compact() makes progress.
    for k in list(acked)[::2]:
        db.delete(k)
        del acked[k]
    db.compact()
    st = db.stats()
    assert st["live_bytes"] > 0
    n = 0
    for i in range(400):
        k = b"r%06d" % i
        v = value_for(k, 1, 48 << 10)
        try:
            db.put(k, v)
        except OSError as e:
            assert e.errno == errno.ENOSPC
            break
        acked[k] = v
        n += 1
    assert n > 20, f"puts did not resume after delete + compact: {db.stats()}"
    db.close()
    with pastedb.open(directory) as db:
        assert len(db) == len(acked)
        for k, v in acked.items():
            assert db.get(k) == v, k


def test_full_tmpfs_embedded(small_fs):
    full_disk_embedded(small_fs / "db")


def test_max_disk_quota_embedded(tmp_path):
    full_disk_embedded(tmp_path / "db", quota=40 * MiB)



def fill_the_disk(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\1" * 65536)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    try:
        while True:
            os.write(fd, b"\1" * 512)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


OPEN_AND_READ = """
import sys, pastedb
try:
    with pastedb.open(sys.argv[1], persist="none") as db:
        print("opened", len(db))
except OSError as e:
    print("refused", e.errno, e)
"""


def test_opening_on_a_full_disk_is_an_error_or_works_never_a_signal(small_fs):
    # A power-loss image has holes (it is what a crash leaves) and no reader
    # table; a writer maps both files shared and stores into them, and a
    # store into a hole on a full disk is answered with SIGBUS.  Opening
    # must instead give every hole its blocks first, or refuse with ENOSPC.
    image = small_fs / "img"
    image.mkdir()
    db = pastedb.open(small_fs / "db", persist="crashsim", sync=False)
    for i in range(200):
        db.put(b"k%03d" % i, value_for(b"k%03d" % i, 0, 3000))
    db.sync()
    for i in range(40):
        db.put(b"j%03d" % i, value_for(b"j%03d" % i, 0, 3000))
    db._crash_image(image, 5)
    db.close()
    st = os.stat(image / "pool")
    assert st.st_blocks * 512 < st.st_size, "the image was expected to have holes"
    plain = small_fs / "plain"                 # a whole database, reader table removed
    with pastedb.open(plain) as db:
        db.put(b"a", b"1")
    (plain / "READERS").unlink()
    shutil.rmtree(small_fs / "db")
    fill_the_disk(small_fs)
    for d in (image, plain):
        res = subprocess.run([sys.executable, "-c", OPEN_AND_READ, str(d)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (d.name, res.returncode, res.stderr[-600:])
        assert res.stdout.startswith("refused %d " % errno.ENOSPC) or \
            res.stdout.startswith("opened"), res.stdout
    # With room again both open, and the image holds the synced keys.
    (small_fs / "filler").unlink()
    with pastedb.open(image, persist="none") as db:
        for i in range(200):
            assert db.get(b"k%03d" % i) == value_for(b"k%03d" % i, 0, 3000)
    with pastedb.open(plain, persist="none") as db:
        assert db.get(b"a") == b"1"


# ------------------------------------------------------------ kill -9
def test_kill9_while_arenas_are_reclaimed_and_reused(server, request):
    """The crash test's writers (mixed sizes up to 6 MiB, every acknowledged
    SET checked byte for byte after each restart) on one directory, each
    round long enough for arenas to be retired, released and their segments
    reused before the kill -9."""
    from test_server_crash import JOIN_TIMEOUT, Writer, crash_iterations, read_all

    srv = server()
    rng = random.Random(0x5ACE)
    writers = [Writer(t, "pipeline" if t % 2 else "plain",
                      [b"s%d:k%d" % (t, j) for j in range(12)]) for t in range(6)]
    reused_rounds = 0
    for _ in range(crash_iterations(request)):
        killed = threading.Event()
        conns = [srv.raw(timeout=JOIN_TIMEOUT) for _ in writers]
        threads = [threading.Thread(target=w.run, args=(c, killed, random.Random(rng.random())),
                                    daemon=True) for w, c in zip(writers, conns, strict=True)]
        for t in threads:
            t.start()
        r = srv.client()
        deadline = time.monotonic() + rng.uniform(1.0, 3.0)
        reused = 0
        while time.monotonic() < deadline:
            reused = info(r)["reused_segments"]
            time.sleep(0.1)
        killed.set()
        srv.kill()
        for t in threads:
            t.join(JOIN_TIMEOUT)
            assert not t.is_alive(), "a client thread hung after kill -9"
        for c in conns:
            c.close()
        for w in writers:
            if w.error is not None:
                raise w.error
        reused_rounds += reused > 0
        srv.start()
        recovered = read_all(srv, [k for w in writers for k in w.keys])
        for w in writers:
            w.verify(recovered)
    assert reused_rounds > 0, "no round reused a reclaimed segment before its kill"
    assert sum(w.total_acked for w in writers) > 0


# ------------------------------------------------------------ pastedb-check
def test_check_warns_of_an_abnormal_space_ratio(tmp_path):
    """A database killed before any checkpoint could reclaim: pastedb-check
    says OK but warns, in its summary and its JSON, with what the cleaner
    could give back."""
    import json
    import sys

    d = tmp_path / "db"
    code = (
        "import os, pastedb\n"
        f"db = pastedb.open({str(d)!r}, sync=False)\n"
        "db._checkpoint_policy(every=10**9, interval=3600, nbytes=0)\n"
        "for i in range(100):\n"
        "    db.put(b'k', os.urandom(1 << 20))\n"
        "db.put(b'last', b'x')\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "pastedb.check", "--json", str(d)],
                         capture_output=True, text=True)
    rep = json.loads(out.stdout)
    assert rep["ok"], rep
    warn = [w for w in rep["warnings"] if w["kind"] == "space"]
    assert warn and warn[0]["reclaimable_bytes"] > 50 * MiB, rep["warnings"]
    text = subprocess.run([sys.executable, "-m", "pastedb.check", str(d)],
                          capture_output=True, text=True).stdout
    assert "WARNING     [space]" in text and "could be given back" in text, text
