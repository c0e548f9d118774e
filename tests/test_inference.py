"""A trained run on new images: `predict` equals the run's own test predictions, uses saved decisions, reads
folders and contest folders, refuses bad input in one line (no images, an unreadable one, no finished folds,
transparent images) and says how it converts other channel counts; fold models load in a Python without this
package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from competition.errors import CompetitionError
from competition.inference import channel_note, image_layouts, predict_run
from competition.recipe import load_recipe
from competition.training import train_run

BASE = ["name=tiny", "data.image_size=32", "model.filters=[8, 16]", "model.head.dense=[16]",
        "train.phases.0.epochs=2", "cv.folds=2", "cv.seed=1", "tta=[hflip]"]


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(load_recipe(None, BASE), tmp_path_factory.mktemp("runs"), data_root=tiny_contest)


@pytest.mark.slow
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


@pytest.mark.slow
def test_saved_decisions_pick_the_labels(trained: Path, tiny_contest: Path, tmp_path: Path) -> None:
    from competition.runs.decisions import write_decisions

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
@pytest.mark.slow
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


@pytest.mark.slow
def test_a_blend_ensemble_predicts_through_its_members(trained: Path, tiny_contest: Path) -> None:
    from competition.ensemble import ensemble_runs

    runs_dir = trained.parent
    other = load_recipe(None, [*BASE, "name=wide", "model.filters=[12, 24]", "tta=[]"])
    train_run(other, runs_dir, data_root=tiny_contest)
    ensemble = ensemble_runs(["tiny", "wide"], method="mean", name="both", runs_dir=runs_dir)
    result = predict_run("both", [tiny_contest], runs_dir)
    np.testing.assert_allclose(result.proba, np.load(ensemble / "test.npy"), atol=1e-5)


def _save(folder: Path, name: str, array: np.ndarray, mode: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(folder / name)
    return folder / name


def test_other_channel_counts_are_converted_with_a_note_and_transparency_is_refused(trained: Path,
                                                                                     tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    colour = tmp_path / "colour"
    for i in range(3):
        _save(colour, f"c{i}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB")
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # fully opaque: the same picture as RGB
    opaque = _save(colour, "opaque.png", rgba, "RGBA")
    result = predict_run("tiny", [colour], trained.parent)
    assert result.notes == ["note: 4 colour images converted to grey (ITU-R 601 luma); 1 fully opaque alpha channel "
                            "ignored for run 'tiny' (1-channel grey), as its training images were"]
    with Image.open(opaque) as image:  # dropping an opaque alpha channel changes nothing
        same = predict_run("tiny", [_save(tmp_path / "rgb", "opaque.png", np.asarray(image)[..., :3], "RGB")],
                           trained.parent)
    np.testing.assert_allclose(same.proba[0], result.proba[result.ids.index("opaque")], atol=1e-6)

    out = tmp_path / "p.csv"
    for mode, channels in (("RGBA", 4), ("LA", 2)):
        array = rng.integers(0, 256, (20, 24, channels), dtype=np.uint8)
        array[:5, ..., -1] = 0  # transparent rows: what lies under them is a guess
        folder = tmp_path / mode
        _save(folder, "see-through.png", array, mode)
        with pytest.raises(CompetitionError, match=r"see-through\.png: image with transparent pixels .*run 'tiny' "
                                                   r"reads 1-channel grey images and was trained on none"):
            predict_run("tiny", [colour, folder], trained.parent, out=out)
    assert not out.exists()


def test_transparency_is_allowed_for_a_run_trained_on_it(tmp_path: Path) -> None:
    from competition.runs import save_run

    rng = np.random.default_rng(2)
    see_through = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    see_through[0, 0, 3] = 10
    opaque = see_through.copy()
    opaque[..., 3] = 255
    new = [_save(tmp_path / "new", "n.png", see_through, "RGBA")]
    layouts, bad = image_layouts(new)
    assert bad == [] and layouts["colour"] == new and layouts["transparent"] == new
    runs = {}
    for name, train_image in (("clear", see_through), ("solid", opaque)):
        path = _save(tmp_path / name, "t.png", train_image, "RGBA")
        runs[name] = tmp_path / "runs" / name
        save_run(runs[name], name=name, kind="model", classes=["a", "b"], ids=np.array(["t", "u"]),
                 y=np.array([0, 1]), folds=np.array([0, 1]), oof=np.full((2, 2), 0.5), test=np.full((1, 2), 0.5),
                 test_ids=np.array(["x"]), paths=np.array([str(path), str(path)]))
    assert channel_note(layouts, runs["clear"], 3) == ("note: 1 image with transparency composited on black for run "
                                                       "'clear' (3-channel colour), as its training images were")
    with pytest.raises(CompetitionError, match="n.png: image with transparent pixels .*run 'solid' reads 3-channel"):
        channel_note(layouts, runs["solid"], 3)


def test_a_run_without_finished_folds_is_one_line(trained: Path, tmp_path: Path) -> None:
    from competition.report.explain import explain_run

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "half")
    (runs / "half" / "fold_1" / "model.keras").unlink()
    shutil.copytree(trained, runs / "none")
    for model in (runs / "none").glob("fold_*/model.keras"):
        model.unlink()
    images = [_save(tmp_path / "x", "x.png", np.zeros((9, 9), np.uint8), "L")]
    out = tmp_path / "p.csv"
    with pytest.raises(CompetitionError, match=r"fold_1.model\.keras: fold model missing; run 'half' has 1 of 2 folds"):
        predict_run("half", images, runs, out=out)
    with pytest.raises(CompetitionError, match=r"fold_0.model\.keras: fold model missing; run 'none' has no finished"):
        explain_run("none", images, runs, out=tmp_path / "e.png")
    (runs / "none" / "run.json").unlink()  # what an interrupted training leaves
    with pytest.raises(CompetitionError, match="run 'none': no finished run"):
        predict_run("none", images, runs, out=out)
    assert not out.exists() and not (tmp_path / "e.png").exists()


def test_bad_input_from_the_command_line_is_one_line_exit_2_nothing_written(trained: Path, tmp_path: Path) -> None:
    from faultkit import cli, one_line_error

    empty = tmp_path / "empty"
    empty.mkdir()
    broken = _save(tmp_path / "broken", "b.png", np.zeros((4, 4), np.uint8), "L")
    broken.write_bytes(broken.read_bytes()[:20])  # cut short inside the header
    see_through = np.zeros((9, 9, 2), np.uint8)
    la = _save(tmp_path / "la", "la.png", see_through, "LA")
    cases = {"no images found": [empty], "1 unreadable image: ": [broken], "image with transparent pixels": [la]}
    for expected, images in cases.items():
        result = cli("predict", "tiny", *images, "--runs", trained.parent, "--out", tmp_path / "p.csv", cwd=tmp_path)
        one_line_error(result, expected)
        assert not (tmp_path / "p.csv").exists()
