"""Shared pytest configuration.

``--slow`` enables the long crash and fuzz runs (tests marked ``slow``; the
marker itself is registered in pyproject.toml).  Without it they are skipped,
so the default run stays short.

``--crash-runs N`` sets how many kill -9 iterations each crash test makes
(default: a short run, or a long one with ``--slow``).

Fixtures: ``db_path`` (a database directory that does not exist yet) and
``db`` (that database opened with the default options, closed afterwards).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import pastedb
except ImportError:
    # Running from a checkout without `pip install -e .`: use the in-place build.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import pastedb


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="run slow crash and fuzz tests")
    parser.addoption("--crash-runs", type=int, default=None, metavar="N",
                     help="kill -9 iterations per crash test (default 15, 200 with --slow)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: enable with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def slow(request) -> bool:
    """True when the run asked for the long versions (--slow)."""
    return bool(request.config.getoption("--slow"))


@pytest.fixture
def crash_runs(request) -> int:
    """Iterations for a crash test: --crash-runs N, else 15 (200 with --slow)."""
    n = request.config.getoption("--crash-runs")
    if n is not None:
        return n
    return 200 if request.config.getoption("--slow") else 15


@pytest.fixture
def db_path(tmp_path) -> Path:
    """Where a test's database lives; the directory does not exist yet."""
    return tmp_path / "db"


@pytest.fixture
def db(db_path):
    """The test's database, opened with the default options."""
    handle = pastedb.open(db_path)
    try:
        yield handle
    finally:
        handle.close()
