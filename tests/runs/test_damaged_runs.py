"""Readers of a run folder trust nothing they did not check, tried through the command line as a new user would,
on two tiny finished runs (m1, m2) of one recipe, trained once for the module.

A damaged file of one run (cut short, emptied, of the wrong shape, or disagreeing with the others) must be named
in one line by `submit`, `ensemble` and `report` (exit 2, nothing written), while `leaderboard` lists the good
runs and marks the damaged one; `ensemble --name` never writes into a folder that holds something else, nor into
an unfinished model run; what a killed build leaves behind is never listed as a run, and an ensemble killed while
it is rebuilt is the old one or the new one, never a mix.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
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


def _cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _three_columns(path: Path) -> None:
    oof = np.load(path)
    wide = np.concatenate([oof, np.full((len(oof), 1), 0.1, oof.dtype)], axis=1)
    np.save(path, wide / wide.sum(axis=1, keepdims=True))


DAMAGE = {
    "folds.csv cut short": ("folds.csv", lambda p: _cut(p, 0.5)),
    "folds.csv empty": ("folds.csv", lambda p: p.write_text("")),
    "run.json cut": ("run.json", lambda p: _cut(p, 0.5)),
    "test.npy cut": ("test.npy", lambda p: _cut(p, 0.8)),
    "oof.npy with 3 columns": ("oof.npy", _three_columns),
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


# Runs the command line, but dies (SIGKILL) the moment anything tries to create or rename a file onto "run.json".
KILL_AT_RUN_JSON = r"""
import builtins, io, os, signal, sys

def _is_run_json(path):
    try:
        return os.path.basename(os.fsdecode(path)) == "run.json"
    except TypeError:
        return False

def _die():
    os.kill(os.getpid(), signal.SIGKILL)

for _name in ("replace", "rename", "link"):
    def _wrapped(src, dst, *args, _real=getattr(os, _name), **kwargs):
        if _is_run_json(dst):
            _die()
        return _real(src, dst, *args, **kwargs)
    setattr(os, _name, _wrapped)

_real_open = builtins.open
def _open(file, mode="r", *args, **kwargs):
    if _is_run_json(file) and any(c in mode for c in "wax+"):
        _die()
    return _real_open(file, mode, *args, **kwargs)
builtins.open = io.open = _open

_real_os_open = os.open
def _os_open(path, flags, *args, **kwargs):
    if _is_run_json(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        _die()
    return _real_os_open(path, flags, *args, **kwargs)
os.open = _os_open

from competition.cli import main
sys.argv = ["competition", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_rebuilding_an_ensemble_killed_before_run_json_leaves_no_mixed_run(finished: Path,
                                                                         tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs)
    for method, name in (("mean", "X"), ("stacking", "S")):
        built = cli("ensemble", "m1", "m2", "--method", method, "--name", name, "--runs", runs, cwd=tmp_path)
        assert built.returncode == 0, built.output[-3000:]
    mean_oof, stacking_oof = np.load(runs / "X" / "oof.npy"), np.load(runs / "S" / "oof.npy")
    assert not np.allclose(mean_oof, stacking_oof)

    killed = subprocess.run([sys.executable, "-c", KILL_AT_RUN_JSON, "ensemble", "m1", "m2", "--method", "stacking",
                             "--name", "X", "--runs", str(runs)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, f"the rebuild was not interrupted: {killed.returncode}\n{killed.stderr}"

    board = cli("leaderboard", "--runs", runs, "--format", "json", cwd=tmp_path)
    assert board.returncode == 0, board.output[-3000:]
    listed = {row["run"] for row in json.loads(board.stdout)}
    if "X" in listed:  # still listed: it must be one whole ensemble, the old one or the new one
        method = json.loads((runs / "X" / "run.json").read_text())["method"]
        oof = np.load(runs / "X" / "oof.npy")
        expected = {"mean": mean_oof, "stacking": stacking_oof}[method]
        assert np.allclose(oof, expected), f"run.json says {method}, but oof.npy is the other method's"
        assert f"method: {method}" in (runs / "X" / "recipe.yaml").read_text()


@pytest.mark.slow
def test_ensemble_refuses_a_folder_holding_an_unfinished_model_run(finished: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs)
    half = runs / "half"  # a model run stopped during its second fold
    shutil.copytree(runs / "m1", half)
    for entry in half.iterdir():
        if entry.name not in {"recipe.yaml", "recipe.hash", "folds.csv", "fold_0"}:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    before = {p.relative_to(half): p.read_bytes() for p in half.rglob("*") if p.is_file()}

    result = cli("ensemble", "m1", "m2", "--method", "mean", "--name", "half", "--runs", runs, cwd=tmp_path)
    one_line_error(result, "half")
    after = {p.relative_to(half): p.read_bytes() for p in half.rglob("*") if p.is_file()}
    assert after == before, "the ensemble was written into the unfinished model run"
