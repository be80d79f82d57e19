"""Recovery fuzzing (small budget here; tools/fuzz_recovery.py runs it longer),
and a torn log cut at every byte offset of its last records."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import pytest

import pastedb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import fuzz_recovery  # noqa: E402


@pytest.fixture
def seeds(request):
    return range(1000, 1400) if request.config.getoption("--slow") else range(1000, 1030)


def test_random_damage_is_detected_or_harmless_and_repairable(tmp_path, seeds):
    outcomes = [fuzz_recovery.fuzz_once(tmp_path, seed) for seed in seeds]
    assert len(outcomes) == len(seeds)


REC = 64
HEADER = 4096


def test_log_cut_at_every_byte_of_its_last_records(tmp_path):
    # Writes that were never made durable (sync=False, no sync) form the tail.
    # A crash may leave any prefix of the bytes of that tail: zeroing the log
    # from every byte offset inside its last three records must open to
    # exactly the records that are still complete.
    src = tmp_path / "src"
    keys = [b"key%02d" % i for i in range(12)]
    with pastedb.open(src, persist="none", sync=False) as db:
        for i, k in enumerate(keys):
            db.put(k, b"value-%d" % i)
    pool = (src / "pool").read_bytes()
    # A fresh database: the first log chunk follows the 4096-byte header;
    # record i (lsn i + 1) is slot i.
    for i in range(len(keys)):
        assert struct.unpack_from("<Q", pool, HEADER + i * REC + 16)[0] == i + 1
    start = HEADER + (len(keys) - 3) * REC
    end = HEADER + len(keys) * REC
    for cut in range(start, end):
        damaged = bytearray(pool)
        damaged[cut:end] = bytes(end - cut)
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "pool").write_bytes(bytes(damaged))
        # Records the cut left byte-identical (zeroing a record's zero tail
        # changes nothing) are complete; the first changed one ends the log.
        complete = 0
        while complete < len(keys) and damaged[HEADER + complete * REC:
                                               HEADER + (complete + 1) * REC] == \
                pool[HEADER + complete * REC:HEADER + (complete + 1) * REC]:
            complete += 1
        with pastedb.open(d, persist="none") as db:
            got = dict(db.items())
        assert got == {k: b"value-%d" % i for i, k in enumerate(keys[:complete])}, cut
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


def test_random_damage_without_check_never_returns_wrong_bytes(tmp_path):
    rnd = random.Random(7)
    for _ in range(60):
        fuzz_recovery.fuzz_once(tmp_path, 5000 + rnd.randrange(10**6), with_check=False)
