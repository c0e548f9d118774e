"""Issue 15, kind 2 ("a recipe is fully checked before anything is decoded or written, and `doctor` agrees with
`train`"): five new cases written from the kind alone, tried through the command line as a new user would.

Each bad recipe must give: `train` one line naming the recipe key (and value), exit 2, no traceback, no run
folder, nothing decoded where the check needs no pixels; `doctor` FAIL on the same problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faultkit import TINY, Result, cli, one_line_error, tiny_recipe

RECIPE = tiny_recipe("k2")




def doctor_fails(result: Result, *expected: str) -> None:
    assert "Traceback" not in result.output, result.output[-3000:]
    assert result.returncode == 1 and "FAIL" in result.output, result.output[-3000:]
    flat = " ".join(result.output.replace("│", " ").split())
    for part in expected:
        assert part in flat or part in result.output, result.output[-3000:]


def make_contest(root: Path, classes: tuple[str, ...] = ("Alpha", "Beta"), per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        for i in range(per_class):
            grey = np.clip(rng.normal(60 + 120 * k, 25, (16, 16)), 0, 255).astype(np.uint8)
            (root / "train" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(grey).save(root / "train" / cls / f"{cls[0].lower()}{i}.png")
    (root / "test").mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(root / "test" / f"t{i}.png")
    (root / "sample_submission.csv").write_text("id,label\nt0,Alpha\nt1,Alpha\n")
    return root


def train(tmp_path: Path, recipe_text: str, *sets: str) -> tuple[Result, Path, Path]:
    """`train` on a fresh contest with a fresh decode cache: (result, runs folder, cache folder)."""
    root = make_contest(tmp_path / "c")
    path = tmp_path / "k2.yaml"
    path.write_text(recipe_text)
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    result = cli("train", path, "--data", root, "--runs", runs, *TINY, *sets, cwd=tmp_path,
                 env={"COMPETITION_CACHE_DIR": str(cache)})
    return result, runs, cache


def decoded(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


# 1. An augment step that runs but changes the image's shape (a resize to another size) breaks every batch.
@pytest.mark.slow
def test_augment_step_changing_the_image_size_is_named(tmp_path: Path) -> None:
    text = RECIPE + "augment:\n  - HorizontalFlip: {p: 0.5}\n  - Resize: {height: 32, width: 32}\n"
    result, runs, cache = train(tmp_path, text)
    line = one_line_error(result, "recipe.augment[1]", "Resize", "32x32", "16x16")
    assert not runs.exists() and decoded(cache) == [], line
    doctor_fails(cli("doctor", tmp_path / "k2.yaml", "--data", tmp_path / "c", cwd=tmp_path), "Resize")
    preview = cli("augment-preview", tmp_path / "k2.yaml", "--data", tmp_path / "c", "--out", tmp_path / "p.png",
                  cwd=tmp_path)
    one_line_error(preview, "recipe.augment[1]", "Resize")
    assert not (tmp_path / "p.png").exists()


# 2. A group_by regex that is not a regular expression needs no pixels to be found wrong.
@pytest.mark.slow
def test_invalid_group_by_regex_is_reported_before_decoding(tmp_path: Path) -> None:
    result, runs, cache = train(tmp_path, RECIPE, "--set", "cv.group_by=regex:([a-z]+")
    one_line_error(result, "recipe.cv.group_by", "regex")
    assert not runs.exists()
    assert decoded(cache) == [], "images were decoded before the recipe error"


# 3. Test-time rotations on non-square images: train refused it, doctor said ok.
@pytest.mark.slow
def test_doctor_agrees_with_train_on_tta_for_non_square_images(tmp_path: Path) -> None:
    text = RECIPE.replace("image_size: 16", "image_size: [16, 24]") + "tta: [hflip, rot90]\n"
    result, runs, cache = train(tmp_path, text, "--set", "data.image_size=[16, 24]")
    one_line_error(result, "recipe.tta", "rot90")
    assert not runs.exists() and decoded(cache) == []
    doctor_fails(cli("doctor", tmp_path / "k2.yaml", "--data", tmp_path / "c", cwd=tmp_path), "rot90")


# 4. More folds than images in a class: doctor (with the data) says so, as train does, before any run folder.
@pytest.mark.slow
def test_doctor_agrees_with_train_on_too_many_folds(tmp_path: Path) -> None:
    text = RECIPE.replace("folds: 2", "folds: 8")
    result, runs, _ = train(tmp_path, text, "--set", "cv.folds=8")
    line = one_line_error(result, "recipe.cv.folds", "8")
    assert not runs.exists(), line
    doctor = cli("doctor", tmp_path / "k2.yaml", "--data", tmp_path / "c", cwd=tmp_path)
    doctor_fails(doctor, "recipe.cv.folds")


# 5. Focal loss alpha per class, with a class written in the wrong case and a three-class contest.
def test_focal_alpha_with_a_misspelt_class_names_it_with_a_suggestion(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c", classes=("Alpha", "Beta", "Gamma"))
    path = tmp_path / "k2.yaml"
    path.write_text(RECIPE + "balance: {method: focal, alpha: {Alpha: 1, beta: 2, Gamma: 1}}\n")
    runs = tmp_path / "runs"
    line = one_line_error(cli("train", path, "--data", root, "--runs", runs, *TINY, cwd=tmp_path),
                          "recipe.balance.alpha", "'beta'", "'Beta'")
    assert not runs.exists(), line
    doctor_fails(cli("doctor", path, "--data", root, cwd=tmp_path), "beta")
    # a class left out is named too, before any run folder
    path.write_text(RECIPE + "balance: {method: focal, alpha: {Alpha: 1, Beta: 2}}\n")
    one_line_error(cli("train", path, "--data", root, "--runs", runs, *TINY, cwd=tmp_path), "'Gamma'")
    assert not runs.exists()


# More of the same kind, each a one-line error naming the key before anything is written.
@pytest.mark.parametrize(("text", "sets", "expected"), [
    (RECIPE.replace("batch_size: 8", "batch_size: 8, batch_size: 16"), [], ["'batch_size'", "twice", "line 4"]),
    (RECIPE, ["--set", "train.phases.0.learning_rate=.inf"], ["recipe.train.phases[0].learning_rate", "finite"]),
    (RECIPE, ["--set", "train.batch_size=100000000000"], ["recipe.train.batch_size"]),
    (RECIPE + "balance: {method: oversample, weights: {Alpha: 1, Beta: 2}}\n", [],
     ["recipe.balance.weights", "class_weight"]),
    (RECIPE, ["--set", "data.intensity_window=[4000, 100]"], ["recipe.data.intensity_window", "low < high"]),
])
@pytest.mark.slow
def test_more_bad_values_are_one_line_before_the_run_folder(text: str, sets: list[str], expected: list[str],
                                                            tmp_path: Path) -> None:
    result, runs, cache = train(tmp_path, text, *sets)
    one_line_error(result, *expected)
    assert not runs.exists() and decoded(cache) == []
