"""The leaderboard in a terminal: compact columns that fit 80 cells without cutting a run name, score or interval;
per-class and per-fold figures on request and in md/csv/json; damaged run files named, never fatal; one line per
new run after `train` and `ensemble`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from competition.ensemble import build_ensemble
from competition.report import leaderboard, render, standing
from competition.report.leaderboard import MARKER, short_scheme
from competition.report.tables import compact_columns, fit_columns
from competition.runs import Run, save_run

CLASSES = ["MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented"]
N = 200
GROUPED = "grouped (near_duplicates, threshold 0.004) 5-fold, seed 42"


def _save(runs: Path, name: str, skill: float, *, backbone: str = "mobilenetv2", size: int = 96,
          seconds: float | None = 600.0, leak: float | None = 0.052) -> Path:
    rng = np.random.default_rng(sum(map(ord, name)))
    y = np.arange(N) % 4
    oof = rng.dirichlet(np.ones(4), size=N)
    right = rng.random(N) < skill
    oof[right, y[right]] += 2
    oof /= oof.sum(axis=1, keepdims=True)
    cv = None if leak is None else {"requested": "auto", "scheme": "grouped", "folds": 5, "leak_share": leak,
                                    "test_twin_share": 0.156}
    extra = {"fold_seconds": [seconds / 5] * 5} if seconds is not None else {}
    run_dir = save_run(runs / name, name=name, kind="model", classes=CLASSES,
                       ids=np.array([f"i{k}" for k in range(N)]), y=y, folds=np.arange(N) % 5, oof=oof,
                       test=oof[:10], test_ids=np.array([f"t{k}" for k in range(10)]), scheme=GROUPED, cv=cv,
                       extra=extra)
    (run_dir / "recipe.yaml").write_text(f"name: {name}\ndata: {{image_size: [{size}, {size}]}}\n"
                                         f"model: {{backbone: {backbone}}}\n")
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("board") / "runs"
    _save(runs, "alzheimer-mobilenetv2-finetune", 0.75, seconds=4300)
    _save(runs, "alzheimer-cnn-long", 0.6, backbone="cnn", size=128, seconds=1830)
    _save(runs, "effnet-stratified", 0.9, backbone="efficientnetb0", size=224, seconds=9000, leak=0.936)
    _save(runs, "old-resnet", 0.4, backbone="resnet50v2", size=224, seconds=None, leak=None)
    members = [Run.load(runs / n) for n in ("alzheimer-mobilenetv2-finetune", "alzheimer-cnn-long")]
    build_ensemble(members, "caruana", "ensemble", runs)
    return runs


def _table(rows: list[dict], width: int, **options: bool) -> str:
    console = Console(file=io.StringIO(), width=width, record=True)
    render(rows, "table", console, **options)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal_and_cuts_no_name_score_or_interval(runs: Path, width: int) -> None:
    rows = leaderboard(runs)
    text = _table(rows, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines if not line.startswith((MARKER, "not shown", "ensemble "))) <= width
    for rank, row in enumerate(rows, 1):
        line = next(line for line in lines if line.startswith(f"{rank} "))
        low, high = row["score_ci"]
        assert row["run"] in line and f"{row['macro_f1']:.4f}" in line and f"{low:.3f}–{high:.3f}" in line, line
        assert "…" not in line.split()[1]
    assert "effnet-stratified ⚠" in text  # the leak marker stays at any width
    if width == 80:
        assert "not shown at 80 columns: time, size" in text
        assert "2h30m" not in text and "9000" not in text
    else:
        assert "not shown" not in text
        for cell in ("2h30m", "1h11m", "efficientnetb0", "group 5f", "caruana of 2", "94%/16% ⚠"):
            assert cell in text, cell
    assert "Per-class" not in text and "VeryMildDemented" not in text  # per-class only on request


def test_columns_give_way_least_important_first() -> None:
    rows = [{"run": "r" * 30, "macro_f1": 0.5, "score": 0.5, "score_ci": [0.4, 0.6], "fold_std": 0.01, "scheme_short": "strat 5f",
             "backbone": "efficientnetb0", "image_size": "224", "train_seconds": 60.0}]
    columns = compact_columns(rows)
    assert [c.header for c in columns] == ["#", "run", "macro F1", "95% CI", "fold ±", "scheme", "backbone", "size",
                                           "time"]  # no leak figures in any row: no leak column
    kept, hidden = fit_columns(columns, 200)
    assert hidden == [] and all(width == column.natural for column, width in kept)
    kept, hidden = fit_columns(columns, 84)  # 1+30+6+11+5+8 cells and 6 gaps of 2 leave 11 for the backbone
    assert hidden == ["time", "size"]
    assert dict((c.header, w) for c, w in kept)["backbone"] == 11  # shrunk, not dropped
    assert sum(w for _, w in kept) + 2 * (len(kept) - 1) == 84
    kept, hidden = fit_columns(columns, 30)  # narrower than the essentials: nothing essential goes
    assert [c.header for c, _ in kept] == ["#", "run", "macro F1", "95% CI"]
    assert dict((c.header, w) for c, w in kept)["run"] == 30


def test_short_scheme() -> None:
    assert short_scheme(GROUPED) == "group 5f"
    assert short_scheme("stratified 3-fold, seed 0") == "strat 3f"
    assert short_scheme("stratified 3-fold, seed 0", {"scheme": "grouped", "folds": 3}) == "group 3f"
    assert short_scheme("something else") == "something else"


def test_per_class_and_wide_tables(runs: Path) -> None:
    rows = leaderboard(runs)
    text = _table(rows, 80, per_class=True)
    assert "Per-class F1" in text
    per_class = text[text.index("Per-class F1"):]
    line = next(line for line in per_class.splitlines() if line.startswith("1 "))
    best = rows[0]
    assert all(f"{best['per_class'][c]['f1']:.3f}" in line for c in CLASSES), line
    wide = _table(rows, 250, wide=True)
    assert "F1 NonDemented" in wide and "vs best member" in wide and "weighted F1" in wide


def test_machine_formats_carry_per_fold_scores_and_no_nan(runs: Path) -> None:
    rows = leaderboard(runs)
    md = render(rows, "md", Console(file=io.StringIO())) or ""
    header = md.splitlines()[0]
    assert all(f"f1:fold_{k}" in header for k in range(5)) and "f1:NonDemented" in header
    cells = [c.strip() for line in md.splitlines()[2:] for c in line.strip("|").split("|")]
    assert not {"nan", "NaN", "<NA>", "None"} & set(cells), md
    old = next(line for line in md.splitlines() if line.startswith("| old-resnet |"))
    assert "|  |" in old  # no time, no leak figures: empty cells
    frame = pd.read_csv(io.StringIO(render(rows, "csv", Console(file=io.StringIO())) or ""))
    first = frame.iloc[0]
    assert [round(first[f"f1:fold_{k}"], 4) for k in range(5)] == [round(v, 4) for v in rows[0]["fold_macro_f1"]]
    assert frame.set_index("run").loc["effnet-stratified", "train_seconds"] == 9000
    as_json = json.loads(render(rows, "json", Console(file=io.StringIO())) or "[]")
    assert len(as_json[0]["fold_macro_f1"]) == 5 and as_json[0]["backbone"] == "efficientnetb0"


@pytest.mark.parametrize("damage", ["not JSON", "name a number", "scheme a number", "recipe.yaml garbage"])
def test_one_damaged_run_file_is_named_and_the_others_are_listed(runs: Path, tmp_path: Path, damage: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    meta_file = copy / "alzheimer-cnn-long" / "run.json"
    meta = json.loads(meta_file.read_text())
    if damage == "not JSON":
        meta_file.write_text(meta_file.read_text()[:40])
    elif damage == "recipe.yaml garbage":
        (copy / "alzheimer-cnn-long" / "recipe.yaml").write_text("model: [unclosed\n")
    else:
        meta_file.write_text(json.dumps({**meta, damage.split()[0]: 7}))
    rows = leaderboard(copy)
    text = _table(rows, 80)
    assert "effnet-stratified" in text and "old-resnet" in text and "ensemble" in text
    if damage == "not JSON":
        notes = [line for line in text.splitlines() if "alzheimer-cnn-long" in line]
        assert len(notes) == 1 and str(meta_file) in notes[0] and "damaged" in notes[0], text
        assert render(rows, "json", Console(file=io.StringIO())) is not None
        assert str(meta_file) in capsys.readouterr().err
    else:  # odd values read as text, the run is still scored, under its folder's name (what commands look up)
        name = "alzheimer-cnn-long"
        assert [row["run"] for row in rows].count(name) == 1
        assert any(line.split()[:2] == [str(rank), name] for rank in range(1, 7) for line in text.splitlines()), text


def test_standing_is_one_line_with_score_and_rank(runs: Path) -> None:
    rows = leaderboard(runs)
    lines = standing([runs / "alzheimer-cnn-long", runs / "ensemble"])
    assert len(lines) == 2
    rank = next(i for i, r in enumerate(rows, 1) if r["run"] == "alzheimer-cnn-long")
    row = rows[rank - 1]
    assert lines[0].startswith(f"alzheimer-cnn-long: OOF macro F1 {row['macro_f1']:.4f} (95% CI ")
    assert f"rank {rank} of {len(rows)} in {runs}" in lines[0]
    ensemble = next(r for r in rows if r["run"] == "ensemble")
    assert f"{ensemble['vs_best_member']:+.4f} against its best member {ensemble['best_member']}" in lines[1]
