"""The server under power loss: `pastedb serve --persist crashsim`.

The real server process runs its production write path (splice() or recv()
of values straight into the pool, the flusher's group commit) over the I/O
layer's crash simulator.  redis-py clients on many connections SET, pipeline
SETs and run MULTI/EXEC groups; at random moments the test copies what has
been acknowledged and sends SIGUSR1, on which the server writes the files a
power loss at that instant could leave (pool and index, every write since
its file's last barrier whole, torn at a sector or lost).  Each image must
hold every SET acknowledged before it byte for byte and every EXEC all or
nothing.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time

import pytest
from powerloss import Ledger, check_image, value_for

redis = pytest.importorskip("redis")

IMAGE_TIMEOUT = 60.0             # seconds the server may take to write one image


def client_loop(srv, ledger: Ledger, wid: int, mode: str, stop: threading.Event,
                errors: list, seed: int) -> None:
    rnd = random.Random(seed)
    try:
        r = srv.client()
        keys = [b"c%d-k%d" % (wid, i) for i in range(8)]
        if mode == "multi":
            with ledger.lock:
                ledger.groups.append(tuple(keys[:4]))
        version = 0
        while not stop.is_set():
            version += 1
            size = rnd.choice([1, 100, 1500, 9000, 9000, 70000]) if rnd.random() < 0.3 else 40
            if mode == "set":
                k = rnd.choice(keys)
                ledger.issue([k], version)
                assert r.set(k, value_for(k, version, size)) is True
                ledger.ack([k], version)
            elif mode == "pipeline":
                ks = rnd.sample(keys, rnd.randrange(2, 6))
                ledger.issue(ks, version)
                p = r.pipeline(transaction=False)
                for k in ks:
                    p.set(k, value_for(k, version, size))
                assert p.execute() == [True] * len(ks)
                ledger.ack(ks, version)
            else:                                     # MULTI ... EXEC over the group
                ks = keys[:4]
                ledger.issue(ks, version)
                p = r.pipeline(transaction=True)
                for k in ks:
                    p.set(k, value_for(k, version, size // 4))
                assert p.execute() == [True] * len(ks)
                ledger.ack(ks, version)
    except Exception as e:                            # reported by the test thread
        errors.append(f"client {wid} ({mode}): {e!r}")


def wait_for(path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.002)
    return False


@pytest.mark.parametrize("receive,extra,default_images", [
    ("splice", (), 25), ("recv", (), 15), ("copy", ("--copy",), 10)])
def test_images_hold_every_acknowledged_set_and_exec(server, tmp_path, slow, receive, extra,
                                                     default_images):
    images = default_images * 50 if slow else default_images
    shots = tmp_path / "shots"
    args = ["--persist", "crashsim", "--crash-images", shots, *extra]
    if receive != "copy":
        args += ["--receive", receive]
    srv = server(*args)
    info = srv.client().info("persistence")
    assert info["receive_mode"] == ("copy" if receive == "copy" else "zero-copy")
    ledger = Ledger()
    stop = threading.Event()
    errors: list = []
    modes = ["set"] * 4 + ["pipeline"] * 4 + ["multi"] * 4
    threads = [threading.Thread(target=client_loop,
                                args=(srv, ledger, w, m, stop, errors, 100 * len(receive) + w))
               for w, m in enumerate(modes)]
    for t in threads:
        t.start()
    rnd = random.Random(len(receive))
    keys_seen = 0
    try:
        for n in range(images):
            time.sleep(rnd.random() * 0.01)
            acked = ledger.snapshot()                 # every reply here arrived before the signal
            os.kill(srv.pid, signal.SIGUSR1)
            assert wait_for(shots / f"{n}.done", IMAGE_TIMEOUT), srv.log()
            assert not errors, errors
            keys_seen = max(keys_seen, check_image(shots / str(n), acked, ledger))
            shutil.rmtree(shots / str(n))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert keys_seen >= 40                            # the clients' writes were in the images
    assert sum(ledger.acked.values()) > images        # and went on between them
    srv.stop()
