"""Issue 15, kind 4 ("readers of a run folder trust nothing they did not check"): five new cases written from the
kind alone, tried through the command line as a new user would, on two tiny finished runs (m1, m2) of one
recipe.

A damaged file of one run must be named in one line by `submit`, `ensemble` and `report` (exit 2, nothing
written), while `leaderboard` lists the good runs and marks the damaged one; `ensemble --name` never writes into
a folder that holds something else, and what a killed build leaves behind is never listed as a run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faultkit import TINY, cli, one_line_error, tiny_recipe

RECIPE = tiny_recipe("k4")




@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("k4")
    rng = np.random.default_rng(0)
    root = base / "c"
    for k, cls in enumerate(("Alpha", "Beta")):
        for i in range(8):
            path = root / "train" / cls / f"{cls[0].lower()}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(rng.normal(60 + 120 * k, 25, (16, 16)), 0, 255).astype(np.uint8)).save(path)
    (root / "test").mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16), 60 + 120 * (i % 2), np.uint8)).save(root / "test" / f"t{i}.png")
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},Alpha\n" for i in range(4)))
    (base / "k4.yaml").write_text(RECIPE)
    for name in ("m1", "m2"):
        done = cli("train", base / "k4.yaml", "--data", root, "--runs", base / "runs", "--name", name, *TINY, cwd=base)
        assert done.returncode == 0, done.output[-3000:]
    return base / "runs"


def _drop_last_test_id(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


def _unknown_label(path: Path) -> None:
    text = path.read_text()
    path.write_text(text.replace(",Beta,", ",Gamma,", 1))


def _nan_row(path: Path) -> None:
    oof = np.load(path)
    oof[3] = np.nan
    np.save(path, oof)


def _no_classes(path: Path) -> None:
    meta = json.loads(path.read_text())
    del meta["classes"]
    path.write_text(json.dumps(meta))


DAMAGE = {
    "a test id missing": ("test_ids.csv", _drop_last_test_id),
    "a label no class has": ("folds.csv", _unknown_label),
    "NaN probabilities": ("oof.npy", _nan_row),
    "run.json without classes": ("run.json", _no_classes),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.slow
def test_a_damaged_file_is_named_by_every_reader(damage: str, finished: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs)
    name, damage_it = DAMAGE[damage]
    damage_it(runs / "m2" / name)

    board = cli("leaderboard", "--runs", runs, cwd=tmp_path)
    assert board.returncode == 0 and "Traceback" not in board.output, board.output[-3000:]
    assert "m1" in board.stdout and "m2" in board.output and name in board.output, board.output
    as_json = cli("leaderboard", "--runs", runs, "--format", "json", cwd=tmp_path)
    assert as_json.returncode == 0 and [r["run"] for r in json.loads(as_json.stdout)] == ["m1"], as_json.output
    assert name in as_json.stderr, as_json.stderr

    one_line_error(cli("submit", "m2", "--runs", runs, "--out", tmp_path / "s.csv", cwd=tmp_path), name)
    assert not (tmp_path / "s.csv").exists()
    one_line_error(cli("ensemble", "m1", "m2", "--name", "e", "--method", "mean", "--runs", runs, cwd=tmp_path), name)
    assert not (runs / "e").exists()
    one_line_error(cli("report", "m2", "--runs", runs, "--out", tmp_path / "report", cwd=tmp_path), name)


@pytest.mark.slow
def test_ensemble_never_writes_into_a_folder_of_other_files(finished: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs)
    mine = runs / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("try a bigger model\n")
    one_line_error(cli("ensemble", "m1", "m2", "--name", "notes", "--method", "mean", "--runs", runs, cwd=tmp_path), "notes")
    assert [p.name for p in mine.iterdir()] == ["todo.txt"]

    # What a killed build leaves (a hidden sibling with a complete-looking run) is never listed as a run,
    # and the next build of that name succeeds.
    built = cli("ensemble", "m1", "m2", "--name", "e", "--method", "mean", "--runs", runs, cwd=tmp_path)
    assert built.returncode == 0, built.output[-3000:]
    shutil.copytree(runs / "e", runs / ".e.building-elsewhere-1-abcd")
    board = cli("leaderboard", "--runs", runs, "--format", "json", cwd=tmp_path)
    assert sorted(r["run"] for r in json.loads(board.stdout)) == ["e", "m1", "m2"], board.output
    again = cli("ensemble", "m1", "m2", "--name", "e", "--method", "rank", "--runs", runs, cwd=tmp_path)
    assert again.returncode == 0, again.output[-3000:]
    assert json.loads((runs / "e" / "run.json").read_text())["method"] == "rank"
    assert "method: rank" in (runs / "e" / "recipe.yaml").read_text()
