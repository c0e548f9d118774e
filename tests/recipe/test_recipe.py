"""Recipes: strict validation with one-line errors that name the key and echo the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from competition.errors import CompetitionError
from competition.recipe import Recipe, load_recipe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(CompetitionError) as caught:
        load_recipe(write(tmp_path, text), overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_field_has_a_default() -> None:
    recipe = Recipe()
    assert recipe.cv.folds == 5 and recipe.train.phases[0].epochs == 10 and recipe.model.backbone == "cnn"


def test_shipped_recipes_validate() -> None:
    for path in sorted(Path(__file__).parents[2].glob("recipes/*.yaml")):
        assert load_recipe(path).name == path.stem


def test_make_submit_trains_the_demos_recipes_on_the_demo_and_one_of_each_family_elsewhere(tmp_path: Path) -> None:
    import re
    import subprocess

    root = Path(__file__).parents[2]  # make is the README's set-up: a machine without it cannot run the suite

    def trained(*args: str) -> list[str]:
        done = subprocess.run(["make", "-n", "-C", str(root), "submit", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return re.findall(r"competition train (\S+)", done.stdout)

    assert trained() == ["recipes/demo.yaml", "recipes/demo-wide.yaml", "recipes/baseline-knn.yaml",
                         "recipes/baseline-spreading.yaml"]
    elsewhere = trained(f"DATA={tmp_path}", f"RUNS={tmp_path / 'runs'}")
    assert elsewhere == ["recipes/finetune-mobilenetv2.yaml", "recipes/baseline-features.yaml",
                         "recipes/baseline-knn.yaml", "recipes/baseline-spreading.yaml"]
    kinds = {load_recipe(root / r).model.kind for r in elsewhere}
    assert len(kinds) == 4  # a network, logistic on features, knn, label spreading: the CV chooses among them
    assert trained(f"DATA={tmp_path}", "RECIPE=recipes/demo.yaml") == ["recipes/demo.yaml"]


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    assert error_of(tmp_path, "train: {epoch: 3}") == f"{tmp_path / 'r.yaml'}: recipe.train.epoch: unknown key"
    assert "recipe.model.backbon: unknown key (did you mean 'backbone'?)" in error_of(tmp_path, "model: {backbon: cnn}")


def test_bad_values_are_echoed(tmp_path: Path) -> None:
    assert "recipe.train.batch_size: expected an integer, got 'big'" in error_of(tmp_path, "train: {batch_size: big}")
    assert "recipe.train.phases[0].learning_rate" in error_of(tmp_path, "train: {phases: [{learning_rate: -1}]}")
    assert "unknown backbone 'resnet9000'" in error_of(tmp_path, "model: {backbone: resnet9000}")
    assert "recipe.cv.folds" in error_of(tmp_path, "cv: {folds: 1}")


def test_augment_is_validated_by_albumentations(tmp_path: Path) -> None:
    text = "augment:\n  - HorizontalFlip: {p: 0.5}\n  - Rotate: {limit: 10}\n  - Rotate: {limit: ten}\n"
    assert error_of(tmp_path, text).endswith("recipe.augment[2].limit: expected a number, got 'ten'")
    assert "unknown albumentations transform 'Rotat' (did you mean 'Rotate'?)" in error_of(
        tmp_path, "augment: [{Rotat: {limit: 3}}]"
    )
    assert "recipe.augment[0].limt: not a parameter of Rotate" in error_of(tmp_path, "augment: [{Rotate: {limt: 3}}]")
    ok = load_recipe(write(tmp_path, "augment: [{Affine: {rotate: [-10, 10], p: 0.7}}]"))
    assert ok.augment[0]["Affine"]["p"] == 0.7


def test_overrides_are_validated_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\n")
    recipe = load_recipe(path, ["train.phases.0.epochs=3", "data.image_size=48", "model.head.dense=[8, 4]"])
    assert recipe.train.phases[0].epochs == 3
    assert recipe.data.image_size == (48, 48)
    assert recipe.model.head.dense == [8, 4]
    assert "recipe.train.batch_size: expected an integer, got 'many'" in error_of(tmp_path, "name: x", ["train.batch_size=many"])
    assert "expected KEY=VALUE" in error_of(tmp_path, "name: x", ["train.batch_size"])
    assert "recipe.cv.fold: unknown key (did you mean 'folds'?)" in error_of(tmp_path, "name: x", ["cv.fold=3"])


def test_hash_identifies_what_is_trained(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\n")
    assert load_recipe(path).hash() == load_recipe(path).hash()
    assert load_recipe(path).hash() != load_recipe(path, ["cv.seed=7"]).hash()
    # A phase's batch_size is part of what is trained when given, and absent (old hashes kept) when not.
    head = load_recipe(path, ["train.phases.0.batch_size=128"])
    assert head.train.phases[0].batch_size == 128 and head.hash() != load_recipe(path).hash()
    assert "batch_size" not in load_recipe(path).resolved()["train"]["phases"][0]
    assert "recipe.train.phases[0].batch_size: " in error_of(tmp_path, "name: x", ["train.phases.0.batch_size=0"])


def test_malformed_files(tmp_path: Path) -> None:
    assert "not valid YAML" in error_of(tmp_path, "train: [unclosed")
    assert "a recipe is a mapping" in error_of(tmp_path, "- a\n- b\n")
    assert "recipe file not found" in str(pytest.raises(CompetitionError, load_recipe, tmp_path / "nope.yaml").value)
    assert "a run name is a plain folder name" in error_of(tmp_path, "name: ../escape")
