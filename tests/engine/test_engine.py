"""Training engine: TTA measured both ways, cached frozen features, determinism (resume after SIGKILL:
tests/test_bad_input_and_kills.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from competition.recipe import load_recipe
from competition.runs import Run
from competition.training import train_run

BASE = ["data.image_size=32", "model.filters=[8, 16]", "model.head.dense=[16]", "train.phases.0.epochs=2", "cv.folds=3"]


@pytest.mark.slow
def test_tta_predictions_are_kept_with_and_without(tiny_contest: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, ["name=tta", *BASE, "cv.folds=2", "tta=[hflip, vflip]"])
    run_dir = train_run(recipe, tmp_path, data_root=tiny_contest)
    plain, with_tta = np.load(run_dir / "fold_0" / "oof_plain.npy"), np.load(run_dir / "fold_0" / "oof.npy")
    assert plain.shape == with_tta.shape and not np.allclose(plain, with_tta)
    np.testing.assert_allclose(with_tta.sum(axis=1), 1, atol=1e-5)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["tta"]["transforms"] == ["hflip", "vflip"]
    assert 0 <= meta["tta"]["oof_macro_f1_plain"] <= 1 and 0 <= meta["tta"]["oof_macro_f1_tta"] <= 1


@pytest.mark.slow
def test_head_phase_trains_on_features_computed_once(tiny_contest: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from competition.model.backbones import backbone_of, build_model

    # A "pretrained" backbone: weights saved by the test, loaded from a local file.
    weights = tmp_path / "backbone.weights.h5"
    source = load_recipe(None, ["model.filters=[8, 16]"])
    backbone_of(build_model(source.model, (32, 32, 1), 4)).save_weights(weights)
    head = [f"model.weights={weights}", "train.phases.0.trainable=head", "cv.folds=2"]
    recipe = load_recipe(None, ["name=frozen", *BASE, *head])

    import keras

    from competition.engine import features, fold

    calls = []
    real = features.extract
    counting = lambda m, x, *a: calls.append(len(x)) or real(m, x, *a)  # noqa: E731
    monkeypatch.setattr(features, "extract", counting)  # frozen_features (once per run)
    monkeypatch.setattr(fold, "extract", counting)  # fit_phase (per fold, when not shared)
    run_dir = train_run(recipe, tmp_path / "runs", data_root=tiny_contest)

    n_train = sum(1 for _ in (tiny_contest / "train").rglob("*.png"))
    assert calls == [n_train]  # every training image through the backbone once, for both folds
    saved = [keras.saving.load_model(run_dir / f"fold_{k}" / "model.keras") for k in range(2)]
    for model in saved:  # the frozen backbone kept the file's weights; the head trained
        for got, expected in zip(backbone_of(model).get_weights(), _file_weights(weights, source), strict=True):
            np.testing.assert_array_equal(got, expected)

    # The feature store: another head on the same backbone and pixels computes no features, in this process
    # or with each fold in its own process.
    from competition.data import cache_dir

    stored = sorted((cache_dir() / "features").glob("*.npy"))
    other_head = load_recipe(None, ["name=frozen2", *BASE, *head, "model.head.dense=[32]"])
    train_run(other_head, tmp_path / "runs", data_root=tiny_contest)
    assert calls == [n_train]
    third = load_recipe(None, ["name=frozen3", *BASE, *head, "model.head.pooling=max"])
    written = {path: path.stat().st_mtime_ns for path in stored}
    train_run(third, tmp_path / "runs", data_root=tiny_contest, executor="process")
    after = {path: path.stat().st_mtime_ns for path in sorted((cache_dir() / "features").glob("*.npy"))}
    assert after == written and written  # read by every fold's process, never computed or written again


def _file_weights(path: Path, recipe: object) -> list[np.ndarray]:
    from competition.model.backbones import backbone_of, build_model

    model = build_model(recipe.model, (32, 32, 1), 4)  # type: ignore[attr-defined]
    backbone_of(model).load_weights(path)
    return backbone_of(model).get_weights()


@pytest.mark.slow
def test_deterministic_runs_give_identical_oof(tiny_contest: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, ["name=det", *BASE, "cv.folds=2", "augment=[{HorizontalFlip: {p: 0.5}}]"])
    first = Run.load(train_run(recipe, tmp_path / "a", data_root=tiny_contest, deterministic=True))
    second = Run.load(train_run(recipe, tmp_path / "b", data_root=tiny_contest, deterministic=True))
    np.testing.assert_array_equal(first.oof, second.oof)
    np.testing.assert_array_equal(first.test, second.test)
