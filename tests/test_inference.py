"""A trained run on new images: `predict` equals the run's own test predictions, uses saved decisions, reads
folders and contest folders, refuses bad input in one line; fold models load in a Python without this package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from competition.errors import CompetitionError
from competition.inference import predict_run
from competition.recipe import load_recipe
from competition.training import train_run

BASE = ["name=tiny", "data.image_size=32", "model.filters=[8, 16]", "model.head.dense=[16]",
        "train.phases.0.epochs=2", "cv.folds=2", "cv.seed=1", "tta=[hflip]"]


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(load_recipe(None, BASE), tmp_path_factory.mktemp("runs"), data_root=tiny_contest)


def test_predicting_the_contest_folder_equals_the_run_test_predictions(trained: Path, tiny_contest: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    result = predict_run("tiny", [tiny_contest], trained.parent, out=out, probabilities=True)
    ids = pd.read_csv(trained / "test_ids.csv", dtype=str)["id"].tolist()
    assert result.ids == ids
    np.testing.assert_allclose(result.proba, np.load(trained / "test.npy"), atol=1e-6)  # with the run's TTA
    written = pd.read_csv(out, dtype={"id": str})
    classes = json.loads((trained / "run.json").read_text())["classes"]
    assert list(written.columns) == ["id", "label", *classes] and written["id"].tolist() == ids
    assert written["label"].tolist() == [classes[k] for k in np.load(trained / "test.npy").argmax(axis=1)]


def test_saved_decisions_pick_the_labels(trained: Path, tiny_contest: Path, tmp_path: Path) -> None:
    from competition.runs.folder import write_decisions

    classes = json.loads((trained / "run.json").read_text())["classes"]
    offsets = [50.0] + [0.0] * (len(classes) - 1)  # so large that the first class always wins
    write_decisions(trained, {"offsets": offsets})
    try:
        result = predict_run("tiny", [tiny_contest / "test"], trained.parent)
    finally:
        (trained / "decisions.json").unlink()
    assert set(result.labels) == {classes[0]}


def test_bad_input_is_one_line_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    out = tmp_path / "p.csv"
    with pytest.raises(CompetitionError, match="no images found"):
        predict_run("tiny", [empty], trained.parent, out=out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    with pytest.raises(CompetitionError, match=r"1 unreadable image: .*x\.png"):
        predict_run("tiny", [broken], trained.parent, out=out)
    with pytest.raises(CompetitionError, match="run 'ghost'"):
        predict_run("ghost", [broken], trained.parent, out=out)
    assert not out.exists()


def test_a_new_folder_of_images_gets_one_row_each(trained: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"scan{i:03d}.png")
    result = predict_run("tiny", [folder], trained.parent)
    assert result.ids == [f"scan{i:03d}" for i in range(7)] and result.proba.shape[0] == 7


@pytest.mark.parametrize("balance", ["recipe default", "focal"])  # the focal loss is ours: not in the saved model
def test_a_fold_model_loads_and_predicts_without_this_package(balance: str, trained: Path, tiny_contest: Path,
                                                              tmp_path: Path) -> None:
    from competition.data import load_images

    if balance == "focal":
        recipe = load_recipe(None, [*BASE, "balance.method=focal", "train.phases.0.epochs=1", "tta=[]"])
        trained = train_run(recipe, tmp_path / "runs", data_root=tiny_contest)

    images = load_images(sorted((tiny_contest / "test").iterdir())[:4], (32, 32), 1)
    np.save(tmp_path / "x.npy", images)
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(trained / 'fold_0' / 'model.keras')!r})\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))\n"
        "print('competition' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    import keras

    own = keras.saving.load_model(trained / "fold_0" / "model.keras").predict(images, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), own, atol=1e-6)


def test_a_blend_ensemble_predicts_through_its_members(trained: Path, tiny_contest: Path) -> None:
    from competition.ensemble import ensemble_runs

    runs_dir = trained.parent
    other = load_recipe(None, [*BASE, "name=wide", "model.filters=[12, 24]", "tta=[]"])
    train_run(other, runs_dir, data_root=tiny_contest)
    ensemble = ensemble_runs(["tiny", "wide"], method="mean", name="both", runs_dir=runs_dir)
    result = predict_run("both", [tiny_contest], runs_dir)
    np.testing.assert_allclose(result.proba, np.load(ensemble / "test.npy"), atol=1e-5)
