"""Runs belong to their contest (issue "Any real contest"): a runs folder holding runs of two contests ranks
each contest's runs among themselves, and `submit` and `ensemble` refuse to mix them, in one line naming both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from competition.ensemble import build_ensemble
from competition.errors import CompetitionError
from competition.report.leaderboard import leaderboard, standing
from competition.report.tables import render
from competition.runs import Run, save_run
from competition.submission import choose_run

CLASSES = ["cat", "dog"]


def _run(runs: Path, name: str, contest: str, n: int = 40, quality: float = 2.0, seed: int = 0) -> Path:
    """A finished run of contest `contest` (its own training and test ids, its folder `contest`), no training."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    logits = rng.normal(0, 1, (n, 2)) + quality * np.eye(2)[y]
    oof = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    root = runs.parent / contest
    root.mkdir(exist_ok=True)
    return save_run(runs / name, name=name, kind="model", classes=CLASSES,
                    ids=np.array([f"{contest}-i{k}" for k in range(n)]), y=y, folds=np.arange(n) % 4, oof=oof,
                    test=rng.dirichlet(np.ones(2), 5), test_ids=np.array([f"{contest}-t{k}" for k in range(5)]),
                    recipe_hash=f"h-{name}", extra={"data_root": str(root.resolve())})


@pytest.fixture
def two_contests(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    _run(runs, "knee-a", "knee", quality=3.0)
    _run(runs, "knee-b", "knee", quality=1.0, seed=1)
    _run(runs, "chest-a", "chest", quality=2.0, seed=2)
    return runs


def test_the_contest_identity_comes_from_the_runs_own_files(two_contests: Path) -> None:
    a, b, c = (Run.load(two_contests / n) for n in ("knee-a", "knee-b", "chest-a"))
    assert a.contest == b.contest and a.contest[1] == "knee" and len(a.contest[0]) == 12
    assert c.contest[0] != a.contest[0] and c.contest[1] == "chest"


def test_the_leaderboard_ranks_each_contest_apart(two_contests: Path) -> None:
    rows = leaderboard(two_contests)
    assert {r["contest"] for r in rows} == {"knee", "chest"}
    console = Console(width=160, record=True)
    render(rows, "table", console)
    text = console.export_text()
    knee, chest = text.index("contest knee ("), text.index("contest chest (")
    assert "2 runs, ranked among themselves" in text and "1 run\n" in text
    knee_table = text[knee:chest] if knee < chest else text[knee:]
    assert "knee-a" in knee_table and "chest-a" not in knee_table
    # the line `train` ends with ranks a run among its own contest's runs
    assert any(line.startswith("chest-a:") and "rank 1 of 1" in line for line in standing([two_contests / "chest-a"]))


def test_submit_and_ensemble_refuse_to_mix_contests_in_one_line(two_contests: Path) -> None:
    with pytest.raises(CompetitionError, match=r"^submit: runs of two contests: '(chest|knee)-a' \((chest|knee), "
                                               r"contest [0-9a-f]{12}\) and '(chest|knee)-a' \((chest|knee), contest "
                                               r"[0-9a-f]{12}\); name runs of one contest"):
        choose_run(None, two_contests)  # no names: every run of the folder
    assert choose_run(["knee-a", "knee-b"], two_contests).name == "knee-a"  # one contest: chosen as before
    runs = [Run.load(two_contests / n) for n in ("knee-a", "chest-a")]
    with pytest.raises(CompetitionError, match=r"^ensemble 'mix': runs of two contests: 'knee-a' \(knee"):
        build_ensemble(runs, "mean", "mix", two_contests)
    assert not (two_contests / "mix").exists()
