"""Power loss on the real embedded write path (persist="crashsim*").

The production code runs unchanged -- pwrite() on the fdatasync and msync
backends, stores plus cache-line flushes on pmem -- and the I/O layer
(core/vfs.pxd) simulates only durability: images taken at random moments,
while writer threads put and batch and the indexer checkpoints, hold the
pool and index files torn together (each pending write whole, torn at a
sector, or lost).  Every write that had returned before the image must be
in it byte for byte, every batch all or nothing.
"""

from __future__ import annotations

import random
import shutil
import threading
import time

import pytest
from powerloss import Ledger, check_image, value_for

import pastedb


def writer(db, ledger: Ledger, wid: int, stop: threading.Event, seed: int) -> None:
    rnd = random.Random(seed)
    singles = [b"w%d-k%02d" % (wid, i) for i in range(12)]
    group = tuple(b"w%d-g%d" % (wid, i) for i in range(4))
    with ledger.lock:
        ledger.groups.append(group)
    version = 0
    while not stop.is_set():
        version += 1
        if rnd.random() < 0.25:
            ledger.issue(group, version)
            with db.batch() as b:
                for k in group:
                    b.put(k, value_for(k, version, rnd.choice([8, 300, 2500])))
            ledger.ack(group, version)
        else:
            k = rnd.choice(singles)
            ledger.issue([k], version)
            db.put(k, value_for(k, version, rnd.choice([0, 40, 700, 5000])))
            ledger.ack([k], version)


def run_images(tmp_path, persist: str, images: int, seed: int) -> int:
    """Writers on `persist`; `images` power-loss images at random moments,
    each checked.  Returns the checkpoints the run went through."""
    rnd = random.Random(seed)
    db = pastedb.open(tmp_path / "db", persist=persist)
    db._checkpoint_policy(every=64)               # checkpoints all through the run
    ledger = Ledger()
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(db, ledger, w, stop, seed * 10 + w))
               for w in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(images):
            time.sleep(rnd.random() * 0.004)
            if rnd.random() < 0.05:
                db.checkpoint()
            acked = ledger.snapshot()             # all of it returned before the image
            img = tmp_path / f"img{n}"
            db._crash_image(img, rnd.randrange(1 << 30))
            check_image(img, acked, ledger)
            shutil.rmtree(img)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        checkpoints = db.stats()["checkpoints"]
        db.close()
    assert not any(t.is_alive() for t in threads)
    assert sum(ledger.acked.values()) > images   # the writers did run between images
    return checkpoints


@pytest.mark.parametrize("persist,default_images", [
    ("crashsim", 150), ("crashsim-msync", 40), ("crashsim-pmem", 40)])
def test_images_at_random_moments_hold_every_returned_write(tmp_path, slow, persist,
                                                            default_images):
    images = default_images * 25 if slow else default_images
    checkpoints = run_images(tmp_path, persist, images, seed=len(persist))
    assert checkpoints >= 2                       # images were torn across checkpoints


def test_image_tears_pool_and_index_together(tmp_path):
    """An image taken in the middle of a checkpoint holds index writes that
    are still pending beside pool writes that are too: both files come from
    the one simulator, and recovery gets the acknowledged state from any
    combination of them."""
    db = pastedb.open(tmp_path / "db", persist="crashsim", sync=False)
    ledger = Ledger()
    try:
        for i in range(3000):
            k = b"k%04d" % (i % 700)
            ledger.issue([k], i + 1)
            db.put(k, value_for(k, i + 1, 100))
        db.sync()
        acked = dict(ledger.issued)               # db.sync() returned: all of it is durable
        # Stop the checkpoint at its index writes: images taken at each of
        # its operations tear pool and index together.
        vfs = db._vfs
        vfs.arm_images(1, str(tmp_path / "ck-"), 7)
        db.checkpoint()
        taken = vfs.images_taken
        vfs.arm_images(0, str(tmp_path / "ck-"))
    finally:
        db.close()
    assert taken >= 4                             # index pages, barrier, meta, barrier, superblock
    index_sizes = set()
    for n in range(taken):
        img = tmp_path / f"ck-{n}"
        index_sizes.add((img / "index").stat().st_size)
        check_image(img, acked, ledger)
    assert len(index_sizes) > 1                   # the index file differs between the images
