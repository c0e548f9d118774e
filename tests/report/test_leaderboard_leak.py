"""The leaderboard's leak figures: a marker and a note for runs whose folds leak far more than the test does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from competition.folds import OPTIMISTIC_MARGIN
from competition.report import leaderboard, render
from competition.report.leaderboard import MARKER
from competition.runs import Run, save_run

CLASSES = ["a", "b", "c"]
N = 60


def _cv(leak: float, test: float, requested: str = "auto") -> dict[str, Any]:
    return {"requested": requested, "scheme": "stratified", "name": "stratified 3-fold, seed 0",
            "leak_share": leak, "test_twin_share": test, "twin_threshold": 0.005}


def _save(runs: Path, name: str, cv: dict[str, Any] | None, *, kind: str = "model", skill: float = 0.7,
          members: list[str] | None = None) -> Path:
    rng = np.random.default_rng(sum(map(ord, name)))
    y = np.arange(N) % 3
    oof = rng.dirichlet(np.ones(3), size=N)
    right = rng.random(N) < skill
    oof[right, y[right]] += 2  # about `skill` of the rows predicted right
    oof /= oof.sum(axis=1, keepdims=True)
    extra = {"members": members} if members else {}
    return save_run(runs / name, name=name, kind=kind, classes=CLASSES, ids=np.array([f"i{k}" for k in range(N)]),
                    y=y, folds=np.arange(N) % 3, oof=oof, test=oof[:10],
                    test_ids=np.array([f"t{k}" for k in range(10)]),
                    scheme="stratified 3-fold, seed 0", cv=cv, extra=extra)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    _save(runs, "leaky", _cv(0.936, 0.156, requested="stratified"), skill=0.9)
    _save(runs, "honest", _cv(0.052, 0.156), skill=0.6)
    _save(runs, "edge", _cv(0.156 + OPTIMISTIC_MARGIN - 0.01, 0.156), skill=0.5)  # within the margin
    _save(runs, "old", None, skill=0.4)
    old = runs / "old" / "run.json"  # as written before cv figures existed: no `cv` key at all
    meta = json.loads(old.read_text())
    assert "cv" not in meta
    _save(runs, "blend", None, kind="ensemble", skill=0.8, members=["leaky", "old"])
    return runs


def test_rows_carry_the_leak_figures_and_flag_only_the_leaky_ones(runs: Path) -> None:
    rows = {row["run"]: row for row in leaderboard(runs)}
    assert rows["leaky"]["optimistic"] is True
    assert rows["leaky"]["leak_share"] == 0.936 and rows["leaky"]["test_twin_share"] == 0.156
    assert rows["honest"]["optimistic"] is False and rows["edge"]["optimistic"] is False
    assert "optimistic" not in rows["old"] and "leak_share" not in rows["old"]
    assert rows["blend"]["optimistic"] is True  # an ensemble's folds are its members'
    assert Run.load(runs / "leaky").cv == _cv(0.936, 0.156, requested="stratified")
    assert Run.load(runs / "old").cv is None


def _lines(text: str) -> dict[str, str]:
    return {name: next(line for line in text.splitlines() if f" {name} " in line or f" {name}{MARKER}" in line)
            for name in ("leaky", "honest", "edge", "old", "blend")}


def test_table_marks_the_leaky_run_and_notes_which_cv_setting_to_use(runs: Path) -> None:
    console = Console(record=True, width=400)
    render(leaderboard(runs), "table", console)
    text = console.export_text()
    lines = _lines(text)  # the compact table: shares in whole percent
    assert MARKER in lines["leaky"] and "94%/16%" in lines["leaky"]
    assert MARKER in lines["blend"]
    assert MARKER not in lines["honest"] and "5%/16%" in lines["honest"]
    assert MARKER not in lines["edge"] and MARKER not in lines["old"]
    wide = Console(record=True, width=400)
    render(leaderboard(runs), "table", wide, wide=True)
    lines = _lines(wide.export_text())  # every figure: shares to a tenth, the cv setting asked for
    assert MARKER in lines["leaky"] and "93.6% / 15.6%" in lines["leaky"]
    assert "(cv.scheme stratified)" in lines["leaky"]
    assert MARKER not in lines["honest"] and "5.2% / 15.6%" in lines["honest"]
    notes = [line for line in text.splitlines() if line.startswith(f"{MARKER} likely optimistic")]
    assert len(notes) == 1
    assert "leaky 94% vs 16%" in notes[0] and "blend" in notes[0] and "honest" not in notes[0]
    assert "cv.scheme: auto" in notes[0]


def test_csv_and_json_keep_one_table_and_warn_on_stderr(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = render(leaderboard(runs), "csv", Console())
    assert text is not None
    header = text.splitlines()[0].split(",")
    assert {"leak_share", "test_twin_share", "optimistic"} <= set(header) and "cv" not in header
    assert "likely optimistic" in capsys.readouterr().err
    rows = json.loads(render(leaderboard(runs), "json", Console()) or "[]")
    assert {row["run"]: row.get("optimistic") for row in rows}["leaky"] is True


def test_no_note_when_no_run_leaks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    _save(runs, "honest", _cv(0.05, 0.15))
    _save(runs, "old", None)
    console = Console(record=True, width=400)
    render(leaderboard(runs), "table", console)
    assert MARKER not in console.export_text()
    render(leaderboard(runs), "md", Console())
    assert "optimistic" not in capsys.readouterr().err
