"""What the crash tests of a run did: every kill -9 round whose child was
seen to die of that SIGKILL, and every power-loss image opened and checked,
is counted here, and the terminal summary (conftest.py) prints the totals.
So the README's figures are counted from a run, not worked out from budgets."""

from __future__ import annotations

counts = {"kill": 0, "image": 0}


def kill(n: int = 1) -> None:
    """A kill -9 round: the child died of our SIGKILL and was checked after."""
    counts["kill"] += n


def image(n: int = 1) -> None:
    """A power-loss image: written by the crash simulator, opened and checked."""
    counts["image"] += n
