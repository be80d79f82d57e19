"""Lint and type checks run as ordinary tests (as uvloop does)."""

from __future__ import annotations

import ast
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


def test_mypy_bench():
    # The benchmarks, typed through: a suite's run context is a typed Run,
    # and the suites and parts bench/__main__.py lists are checked against
    # the Suite and Part interfaces of bench/common.py.
    r = run("mypy", "--ignore-missing-imports", "--follow-imports=silent", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def bench_imports(path: Path) -> set[str]:
    """The bench modules a file imports anywhere (deferred imports too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "bench":
                out |= {a.name for a in node.names}
            elif node.module.startswith("bench."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bench.")}
    return out


def test_bench_imports_form_a_one_way_chain():
    # common <- render <- every suite <- __main__: a suite never imports another.
    allowed = {"common": set(), "render": {"common"}, "__init__": set()}
    for path in sorted((ROOT / "bench").glob("*.py")):
        name = path.stem
        if name == "__main__":
            continue
        got = bench_imports(path)
        assert got <= allowed.get(name, {"common", "render"}), (name, got)


def test_mypy_package():
    # All of pastedb/ -- pastedb-check included -- against the stubs of the
    # compiled modules (engine.pyi, format.pyi).
    r = run("mypy", "--ignore-missing-imports", "--follow-imports=silent", "pastedb")
    assert r.returncode == 0, r.stdout + r.stderr
