"""What every executor shares: the note on folds reused from an earlier run, and the test hook."""

from __future__ import annotations

from typing import Any

from competition.console import say

TEST_KILL_ENV = "COMPETITION_TEST_KILL_FOLD"  # test hook: "1" kills fold 1's first attempt, "1:always" every one


def say_reused(prepared: Any, pending: list[int], console: Any, prefix: str = "") -> None:
    """One line per fold that finished in an earlier run of the same recipe and is reused."""
    for k in sorted(set(range(prepared.recipe.cv.folds)) - set(pending)):
        say(console, f"{prefix}fold {k}: finished earlier, reused")
