"""Run a writer child until SIGKILL, for the kill -9 tests: one copy of the
spawn / wait-for-READY / kill / collect-output sequence."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_until_killed(code: str, args: list[str], delay: float) -> str:
    """Start `python -c code args...` (code may use {root} for the checkout),
    wait for its READY line, SIGKILL it after `delay` seconds and return
    everything it printed after READY."""
    proc = subprocess.Popen([sys.executable, "-c", code.format(root=str(ROOT))] + args,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"READY\n"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait()
    return out.decode()
