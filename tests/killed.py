"""Run a writer child until SIGKILL, for the kill -9 tests: one copy of the
spawn / wait-for-READY / kill / collect-output sequence.

A child with background work (a compaction or checkpoint loop in a thread)
reports it: ``B <n>`` after each completed round, ``BERR <exception>`` and
exit code 3 when the loop dies (a daemon thread would otherwise die
silently, and "kill during compaction" pass with no compaction running).
BACKGROUND is the code such a child runs its loop with."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import tally

ROOT = Path(__file__).resolve().parent.parent

BACKGROUND = r'''
def background(work):
    """Run work() in a loop in a thread, reporting each round; returns once
    the first round is done (so every kill lands with the loop running)."""
    import os, threading
    first = threading.Event()
    def loop():
        n = 0
        try:
            while True:
                work()
                n += 1
                os.write(1, b"B %d\n" % n)
                first.set()
        except BaseException as e:
            os.write(1, b"BERR %r\n" % (e,))
            os._exit(3)
    threading.Thread(target=loop, daemon=True).start()
    if not first.wait(60):
        os.write(1, b"BERR first round did not finish\n")
        os._exit(3)
'''


def run_until_killed(code: str, args: list[str], delay: float) -> str:
    """Start `python -c code args...` (code may use {root} for the checkout
    and {background} for BACKGROUND), wait for its READY line, SIGKILL it
    after `delay` seconds and return everything it printed after READY.
    Asserts that the child died of that SIGKILL (not of anything before)."""
    proc = subprocess.Popen([sys.executable, "-c",
                             code.format(root=str(ROOT), background=BACKGROUND)] + args,
                            stdout=subprocess.PIPE)
    before = b""
    try:
        line = proc.stdout.readline()
        while line.startswith(b"B "):                 # background rounds before READY
            before += line
            line = proc.stdout.readline()
        assert line == b"READY\n", f"the child did not start: {before + line!r}"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
    out = before + proc.stdout.read()
    rc = proc.wait()
    text = out.decode()
    assert "BERR" not in text, f"the child's background loop died: {text[text.index('BERR'):][:300]}"
    assert rc == -signal.SIGKILL, f"the child exited with {rc} before it was killed"
    tally.kill()
    return text


def background_rounds(out: str) -> int:
    """Rounds of background work the child finished before the kill."""
    return sum(1 for line in out.splitlines() if line.startswith("B "))
