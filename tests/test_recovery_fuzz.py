"""Recovery fuzzing (small budget here; tools/fuzz_recovery.py runs it longer),
and a torn log cut at every byte offset of its last records.

The fuzzer damages the pool file or the index file of databases closed cleanly
or killed.  Two outcomes are engine failures, not the checker's: "engine-gap"
(open() returned exactly the damaged bytes the index names for a key: a read
that did not verify the value) and "engine-crash" (reading the damaged files
killed the process).  Both must still be reported by pastedb-check and fixed
by --repair, and a run that met one fails, naming the seeds."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import pytest

import pastedb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import fuzz_recovery  # noqa: E402
from poolfmt import unindexed  # noqa: E402


@pytest.fixture
def seeds(request):
    return range(1000, 1400) if request.config.getoption("--slow") else range(1000, 1030)


def assert_no_engine_gap(outcomes: dict[int, str], checked: bool = True) -> None:
    gaps = sorted(seed for seed, out in outcomes.items() if ":engine-gap" in out)
    crashes = sorted(seed for seed, out in outcomes.items() if ":engine-crash" in out)
    why = []
    if gaps:
        why.append(f"open() returned damaged bytes the index names (value CRC not verified) "
                   f"for seeds {gaps}")
    if crashes:
        why.append(f"opening and reading the damaged files crashed the process (signal) for "
                   f"seeds {crashes}")
    assert not why, "engine: " + "; ".join(why) + (
        "; pastedb-check reported and repaired each" if checked else "")


def test_random_damage_is_detected_or_harmless_and_repairable(tmp_path, seeds):
    outcomes = {seed: fuzz_recovery.fuzz_once(tmp_path, seed) for seed in seeds}
    assert len(outcomes) == len(seeds)
    kinds = {out.split(":")[1] for out in outcomes.values()}
    assert any(k.startswith("index-") for k in kinds)      # both files were damaged
    assert {out.split(":")[0] for out in outcomes.values()} == {"closed", "killed"}
    assert_no_engine_gap(outcomes)


REC = 64
HEADER = 4096


def test_log_cut_at_every_byte_of_its_last_records(tmp_path):
    # Writes that were never made durable (sync=False, no sync) form the tail.
    # A crash may leave any prefix of the bytes of that tail: zeroing the log
    # from every byte offset inside its last three records must open to
    # exactly the records that are still complete.
    # (Killed before any checkpoint: a clean close would checkpoint the
    # writes into the index, and then they were durable.)
    src = tmp_path / "src"
    keys = [b"key%02d" % i for i in range(12)]
    with unindexed(src, sync=False) as db:
        for i, k in enumerate(keys):
            db.put(k, b"value-%d" % i)
    pool = (src / "pool").read_bytes()
    index = (src / "index").read_bytes()
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
        (d / "index").write_bytes(index)
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
    outcomes = {}
    for _ in range(60):
        seed = 5000 + rnd.randrange(10**6)
        outcomes[seed] = fuzz_recovery.fuzz_once(tmp_path, seed, with_check=False)
    assert_no_engine_gap(outcomes, checked=False)
