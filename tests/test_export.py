"""Export: one averaged model per run in Keras, SavedModel, TFLite and ONNX form, checked against the run, with
the decode steps its inputs need; ONNX without its optional extra, or a run without its fold models, is one
line and writes nothing."""

from __future__ import annotations

import json
import shutil
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from competition.errors import CompetitionError
from competition.export import _predict, _preprocessing, export_run
from competition.recipe import load_recipe
from competition.training import train_run


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = load_recipe(None, ["name=tiny", "data.image_size=32", "model.filters=[8]", "model.head.dense=[8]",
                                "train.phases.0.epochs=1", "cv.folds=2"])
    return train_run(recipe, tmp_path_factory.mktemp("runs"), data_root=tiny_contest)


ONNX_MISSING = [name for name in ("tf2onnx", "onnxruntime") if find_spec(name) is None]
ONNX = pytest.param("onnx", marks=pytest.mark.skipif(
    bool(ONNX_MISSING), reason=f"the onnx extra is not installed ({', '.join(ONNX_MISSING)}): pip install -e '.[onnx]'"))


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "tflite", ONNX])
@pytest.mark.slow
def test_export_predicts_the_runs_test_probabilities(fmt: str, trained: Path, tiny_contest: Path,
                                                     tmp_path: Path) -> None:
    from competition.data import load_images

    folder, difference = export_run("tiny", trained.parent, fmt=fmt, out=tmp_path / "export")
    info = json.loads((folder / "model.json").read_text())
    assert difference <= 1e-4 and info["classes"] == json.loads((trained / "run.json").read_text())["classes"]
    readme = (folder / "README.md").read_text()
    assert info["input"]["channels"] == 1 and info["file"] in readme and "resize to 32x32" in readme
    ids = (trained / "test_ids.csv").read_text().split()[1:]
    images = load_images([next((tiny_contest / "test").glob(f"{i}.*")) for i in ids[:8]], (32, 32), 1)
    got = _predict(fmt, folder / info["file"], images)
    np.testing.assert_allclose(got, np.load(trained / "test_plain.npy")[:8], atol=1e-4)


@pytest.mark.slow
def test_export_refuses_an_unknown_format_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(CompetitionError, match="^fmt: unknown format 'onnxx'; did you mean 'onnx'"):
        export_run("tiny", trained.parent, fmt="onnxx", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_onnx_without_its_extra_names_the_extra_in_one_line(trained: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from competition.cli import main

    real = importlib.util.find_spec
    missing = {"tf2onnx", "onnxruntime"}  # as where the extra is not installed, whatever this machine has
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(["export", "tiny", "--runs", str(trained.parent), "--format", "onnx", "--out", str(tmp_path / "x")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: --format: onnx needs the optional tf2onnx and onnxruntime (not installed): ")
    assert 'pip install -e ".[onnx]"' in lines[0]
    assert not (tmp_path / "x").exists()


def test_export_of_a_run_missing_a_fold_model_is_one_line(trained: Path, tmp_path: Path) -> None:
    shutil.copytree(trained, tmp_path / "runs" / "half")
    (tmp_path / "runs" / "half" / "fold_0" / "model.keras").unlink()
    with pytest.raises(CompetitionError, match=r"fold_0.model\.keras: fold model missing; run 'half' has 1 of 2"):
        export_run("half", tmp_path / "runs", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_model_json_and_readme_state_the_decode_steps() -> None:
    recipe = load_recipe(None, ["data.image_size=[24, 32]", "data.channels=3", "data.crop=foreground",
                                "data.crop_margin=0.1", "data.standardize=image", "data.foreground_threshold=20",
                                "data.intensity_window=[0, 4095]"])
    steps = _preprocessing(recipe)
    text = " | ".join(steps["decode"])
    for part in ("map 0..4095 linearly to 0..255", "above 20 (of 255), each side grown by 0.1", "colour: RGB",
                 "resize to 24x32", "128 + 40 * (value - mean) / std"):
        assert part in text, part
    assert text.index("crop to") < text.index("resize") < text.index("per image")
    assert steps["recipe_data"] == {"image_size": [24, 32], "channels": 3, "intensity_window": [0.0, 4095.0],
                                    "crop": "foreground", "crop_margin": 0.1, "standardize": "image",
                                    "foreground_threshold": 20}
    plain = " | ".join(_preprocessing(load_recipe(None, []))["decode"])
    assert "crop" not in plain and "per image" not in plain and "ITU-R 601 luma" in plain
