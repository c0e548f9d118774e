"""Export: one averaged model per run in Keras, SavedModel and TFLite form, checked against the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from competition.errors import CompetitionError
from competition.export import _predict, export_run
from competition.recipe import load_recipe
from competition.training import train_run


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = load_recipe(None, ["name=tiny", "data.image_size=32", "model.filters=[8]", "model.head.dense=[8]",
                                "train.phases.0.epochs=1", "cv.folds=2"])
    return train_run(recipe, tmp_path_factory.mktemp("runs"), data_root=tiny_contest)


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "tflite"])
def test_export_predicts_the_runs_test_probabilities(fmt: str, trained: Path, tiny_contest: Path,
                                                     tmp_path: Path) -> None:
    from competition.data import load_images

    folder, difference = export_run("tiny", trained.parent, fmt=fmt, out=tmp_path / "export")
    info = json.loads((folder / "model.json").read_text())
    assert difference <= 1e-4 and info["classes"] == json.loads((trained / "run.json").read_text())["classes"]
    assert (folder / "README.md").is_file() and info["input"]["channels"] == 1
    ids = (trained / "test_ids.csv").read_text().split()[1:]
    images = load_images([next((tiny_contest / "test").glob(f"{i}.*")) for i in ids[:8]], (32, 32), 1)
    got = _predict(fmt, folder / info["file"], images)
    np.testing.assert_allclose(got, np.load(trained / "test_plain.npy")[:8], atol=1e-4)


def test_export_refuses_an_unknown_format_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(CompetitionError, match="^fmt: unknown format 'onnxx'; known: keras, savedmodel, tflite$"):
        export_run("tiny", trained.parent, fmt="onnxx", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
