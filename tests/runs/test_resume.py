"""Issue 15, kind 3 ("resume reuses a fold only if it would train the same fold again"): five new cases written
from the kind alone, tried through the command line as a new user would (tiny contests of 16 px images, two
folds, one epoch, the local executor).

A rerun of the same command must reuse a finished fold only when the fold would see exactly the same data
(training ids, labels and fold assignment, training and test pixels, test ids); otherwise it trains it again,
says so, and the finished run agrees with the data of now. A train that was killed leaves nothing that blocks
the next one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faultkit import COMPETITION, TINY, cli, tiny_recipe

RECIPE = tiny_recipe("k3")




def image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def noise(rng: np.random.Generator, level: int) -> np.ndarray:
    return np.clip(rng.normal(level, 25, (16, 16)), 0, 255).astype(np.uint8)


def contest(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for k, cls in enumerate(("Alpha", "Beta")):
        for i in range(8):
            image(root / "train" / cls / f"{cls[0].lower()}{i}.png", noise(rng, 60 + 120 * k))
    for i in range(4):
        image(root / "test" / f"t{i}.png", noise(rng, 60 + 120 * (i % 2)))
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},Alpha\n" for i in range(4)))
    return root


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def setup(tmp_path: Path) -> tuple[Path, tuple[object, ...], Path]:
    root = contest(tmp_path / "c")
    (tmp_path / "k3.yaml").write_text(RECIPE)
    runs = tmp_path / "runs"
    command = ("train", tmp_path / "k3.yaml", "--data", root, "--runs", runs, *TINY)
    first = cli(*command, cwd=tmp_path)
    assert first.returncode == 0, first.output[-3000:]
    return root, command, runs / "k3"


def trained_folds(output: str) -> set[int]:
    return {int(k) for k in re.findall(r"fold (\d+): best epoch", output)}


def reused_folds(output: str) -> set[int]:
    return {int(k) for k in re.findall(r"fold (\d+): finished earlier, reused", output)}


@pytest.mark.slow
def test_a_relabelled_training_image_retrains(tmp_path: Path) -> None:
    root, command, run = setup(tmp_path)
    shutil.move(root / "train" / "Alpha" / "a0.png", root / "train" / "Beta" / "a0.png")  # same file, new class
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.output, rerun.output[-3000:]
    assert trained_folds(rerun.output) == {0, 1} and not reused_folds(rerun.output), rerun.output
    assert "training labels" in rerun.output, rerun.output
    assert {r["id"]: r["label"] for r in rows(run / "folds.csv")}["a0"] == "Beta"
    for k in range(2):
        assert json.loads((run / f"fold_{k}" / "done.json").read_text())["data"]


@pytest.mark.slow
def test_new_pixels_under_an_old_training_name_retrain(tmp_path: Path) -> None:
    root, command, run = setup(tmp_path)
    image(root / "train" / "Beta" / "b3.png", np.full((16, 16), 3, np.uint8))  # same id, other picture
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.output, rerun.output[-3000:]
    assert trained_folds(rerun.output) == {0, 1}, rerun.output
    assert re.search(r"fold \d: data changed \(.*training images.*\), trained again", rerun.output), rerun.output


@pytest.mark.slow
def test_a_removed_training_image_retrains_instead_of_crashing(tmp_path: Path) -> None:
    root, command, run = setup(tmp_path)
    (root / "train" / "Alpha" / "a7.png").unlink()
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.output, rerun.output[-3000:]
    assert trained_folds(rerun.output) == {0, 1}, rerun.output
    assert len(rows(run / "folds.csv")) == 15 and "a7" not in {r["id"] for r in rows(run / "folds.csv")}
    assert np.load(run / "oof.npy").shape == (15, 2)
    board = cli("leaderboard", "--runs", run.parent, "--format", "json", cwd=tmp_path)
    assert board.returncode == 0 and json.loads(board.stdout)[0]["per_class"]["Alpha"]["support"] == 7


@pytest.mark.slow
def test_an_unchanged_rerun_reuses_every_fold_and_changes_nothing(tmp_path: Path) -> None:
    root, command, run = setup(tmp_path)
    before = {name: np.load(run / name) for name in ("oof.npy", "test.npy")}
    os.utime(root / "test" / "t0.png")  # touched, not changed: the content is what counts
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert reused_folds(rerun.output) == {0, 1} and not trained_folds(rerun.output), rerun.output
    assert "data changed" not in rerun.output
    for name, array in before.items():
        np.testing.assert_array_equal(np.load(run / name), array)
    process = cli(*command[:-2], "--executor", "process", cwd=tmp_path)  # another executor, same folds
    assert process.returncode == 0 and reused_folds(process.output) == {0, 1}, process.output[-3000:]


@pytest.mark.slow
def test_a_killed_train_does_not_lock_out_the_next_one(tmp_path: Path) -> None:
    root, command, run = setup(tmp_path)
    (root / "test" / "t1.png").unlink()  # a changed contest: the rerun trains both folds again
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},Alpha\n" for i in (0, 2, 3)))
    victim = subprocess.Popen([COMPETITION, *map(str, command)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(run.glob("*.lock")) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    if victim.poll() is None:
        os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.output, rerun.output[-3000:]
    assert "lock" not in rerun.output.lower() and "in use" not in rerun.output, rerun.output
    assert [r["id"] for r in rows(run / "test_ids.csv")] == ["t0", "t2", "t3"]
    assert np.load(run / "test.npy").shape == (3, 2)
