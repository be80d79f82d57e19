"""Lint and type checks run as ordinary tests (as uvloop does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff():
    r = run("ruff", "check", "pastedb", "tests", "bench", "tools")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_public_api():
    # The typed surface: the Python package and the engine's stubs, plus a
    # snippet that uses the API the way the README does.
    r = run("mypy", "--ignore-missing-imports", "--follow-imports=silent",
            "pastedb/__init__.py", "pastedb/errors.py", "pastedb/core/engine.pyi",
            "tests/typing_example.py")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_package():
    # All of pastedb/ -- pastedb-check included -- against the stubs of the
    # compiled modules (engine.pyi, format.pyi).
    r = run("mypy", "--ignore-missing-imports", "--follow-imports=silent", "pastedb")
    assert r.returncode == 0, r.stdout + r.stderr
