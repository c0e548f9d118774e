"""Training on tiny images: fold files, OOF and test probabilities, resume, recipe isolation, weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from competition.errors import CompetitionError
from competition.recipe import load_recipe
from competition.runs import Run
from competition.training import train_run


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    runs = tmp_path_factory.mktemp("runs")
    recipe_file = runs / "tiny.yaml"
    from conftest import TINY_RECIPE  # tests/ is on the path (a site-packages `tests` package may shadow the name)

    recipe_file.write_text(TINY_RECIPE)
    return train_run(load_recipe(recipe_file), runs, data_root=tiny_contest), recipe_file


@pytest.mark.slow
def test_run_folder_holds_oof_and_test_probabilities(trained: tuple[Path, Path], tiny_contest: Path) -> None:
    run = Run.load(trained[0])
    n_test = len(list((tiny_contest / "test").iterdir()))
    assert run.oof.shape == (len(run.y), 4) and run.test.shape == (n_test, 4)
    np.testing.assert_allclose(run.oof.sum(axis=1), 1, atol=1e-5)
    assert sorted(np.unique(run.folds)) == [0, 1]
    for k in (0, 1):
        folder = trained[0] / f"fold_{k}"
        assert {"model.keras", "history.csv", "oof.npy", "test.npy", "done.json"} <= {p.name for p in folder.iterdir()}
        done = json.loads((folder / "done.json").read_text())
        # The kept epoch is the best validation macro F1 of the history, not the last one.
        history = (folder / "history.csv").read_text().splitlines()
        assert history[0].startswith("phase,epoch") and len(history) == 3
        f1s = [float(line.split(",")[history[0].split(",").index("val_macro_f1")]) for line in history[1:]]
        assert done["best_score"] == pytest.approx(max(f1s)) and done["metric"] == "macro_f1"
    assert (trained[0] / "recipe.yaml").is_file() and run.scheme == "stratified 2-fold, seed 1"


@pytest.mark.slow
def test_rerun_reuses_finished_folds(trained: tuple[Path, Path], tiny_contest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = Run.load(trained[0]).oof.copy()

    import keras

    class MustNotTrain(keras.callbacks.Callback):
        def on_train_begin(self, logs: object = None) -> None:
            raise AssertionError("a finished fold was trained again")

    train_run(load_recipe(trained[1]), trained[0].parent, data_root=tiny_contest, callbacks=[MustNotTrain()])
    np.testing.assert_array_equal(Run.load(trained[0]).oof, before)


def test_a_changed_recipe_never_mixes_with_old_folds(trained: tuple[Path, Path], tiny_contest: Path) -> None:
    changed = load_recipe(trained[1], ["cv.seed=2"])
    with pytest.raises(CompetitionError, match="holds a run of a different recipe"):
        train_run(changed, trained[0].parent, data_root=tiny_contest)


def test_missing_weights_file_fails_before_the_run_folder(tiny_contest: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, ["name=w", "data.image_size=32", "model.weights=/nope/w.weights.h5"])
    with pytest.raises(CompetitionError, match="recipe.model.weights: weights file '/nope/w.weights.h5' not found"):
        train_run(recipe, tmp_path / "runs", data_root=tiny_contest)
    assert not (tmp_path / "runs" / "w").exists()


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    import keras

    from competition.model.backbones import backbone_of, build_model

    recipe = load_recipe(None, ["model.filters=[4]", "model.head.dense=[]"])
    source = build_model(recipe.model, (16, 16, 1), 3)
    weights_file = tmp_path / "cnn.weights.h5"
    backbone_of(source).save_weights(weights_file)
    keras.utils.set_random_seed(99)
    loaded = build_model(load_recipe(None, ["model.filters=[4]", "model.head.dense=[]", f"model.weights={weights_file}"]).model, (16, 16, 1), 3)
    for a, b in zip(backbone_of(source).get_weights(), backbone_of(loaded).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_imagenet_offline_names_the_file_to_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from competition.model.backbones import build_model

    def offline(*args: object, **options: object) -> None:
        raise OSError("no network")  # what keras.utils.get_file raises without a connection

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    recipe = load_recipe(None, ["model.backbone=mobilenetv2", "model.alpha=0.35", "model.weights=imagenet"])
    with pytest.raises(CompetitionError) as caught:
        build_model(recipe.model, (96, 96, 1), 4)
    message = str(caught.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in message
    assert str(tmp_path.parent) in message or "keras-home" in message
