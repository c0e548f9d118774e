"""Grad-CAM: a map per image at the backbone's last feature map, for the small CNN and a keras.applications
backbone; the explain grid of a trained run; the run report's section on the most confidently wrong OOF
images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.recipe import load_recipe


@pytest.mark.parametrize(("backbone", "size"), [(["model.backbone=cnn", "model.filters=[8, 16]"], 32),
                                               (["model.backbone=mobilenetv2", "model.alpha=0.35"], 96)])
def test_grad_cam_maps_have_the_image_shape_and_are_not_constant(backbone: list[str], size: int) -> None:
    # (MobileNetV2's last feature map is 1x1 at 32 px, 3x3 at 96: a map needs more than one cell)
    import keras

    from competition.model.backbones import build_model
    from competition.report.explain import grad_cam

    keras.utils.set_random_seed(0)
    model = build_model(load_recipe(None, [*backbone, "model.head.dropout=0"]).model, (size, size, 1), 3)
    rng = np.random.default_rng(0)
    images = np.zeros((3, size, size, 1), np.uint8)
    q = size // 4
    images[:, q:3 * q, q:3 * q] = rng.integers(100, 256, (3, 2 * q, 2 * q, 1))  # a bright square on black
    maps, proba = grad_cam(model, images)
    assert maps.shape == (3, size, size) and proba.shape == (3, 3)
    assert np.all((maps >= 0) & (maps <= 1)) and all(m.std() > 0 for m in maps)
    forced, _ = grad_cam(model, images, np.array([0, 1, 2]))
    assert forced.shape == maps.shape


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from competition.training import train_run

    recipe = load_recipe(None, ["name=tiny", "data.image_size=32", "model.filters=[8]", "model.head.dense=[8]",
                                "train.phases.0.epochs=1", "cv.folds=2"])
    return train_run(recipe, tmp_path_factory.mktemp("runs"), data_root=tiny_contest)


@pytest.mark.slow
def test_explain_writes_a_grid_for_a_trained_run(trained: Path, tiny_contest: Path, tmp_path: Path) -> None:
    from competition.report.explain import explain_run

    notes: list[str] = []
    out = explain_run("tiny", [tiny_contest / "test"], trained.parent, out=tmp_path / "grid.png",
                      on_note=notes.append)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width >= 400
    assert notes == []  # the contest's own grey images: nothing converted


@pytest.mark.slow
def test_the_report_explains_the_most_confidently_wrong_oof_images(trained: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    import competition.report.explain as explain
    from competition.report.explain import WRONG_EXPLAINED, WRONG_PNG, wrong_gradcam_section
    from competition.report.plots import most_confident_wrong, write_report
    from competition.runs import Run

    loaded: list[str] = []  # the fold folder of each model loaded
    explained: dict[str, int] = {}  # images explained by each fold's model
    load, cam = keras.saving.load_model, explain.grad_cam

    def spy_load(path: Path, *args: object, **kwargs: object) -> object:
        loaded.append(Path(path).parent.name)
        return load(path, *args, **kwargs)

    def spy_cam(model: object, images: np.ndarray, index: np.ndarray | None = None) -> object:
        explained[loaded[-1]] = explained.get(loaded[-1], 0) + len(images)
        return cam(model, images, index)

    monkeypatch.setattr(keras.saving, "load_model", spy_load)
    monkeypatch.setattr(explain, "grad_cam", spy_cam)
    page = write_report(trained, out_dir=tmp_path / "report")
    text = page.read_text()
    assert f'src="{WRONG_PNG}"' in text and "by the fold model that did not train on the image" in text
    with Image.open(tmp_path / "report" / WRONG_PNG) as png:
        assert png.format == "PNG" and png.width >= 400
    run = Run.load(trained)
    shown = most_confident_wrong(run, WRONG_EXPLAINED)  # each explained by the model of its validation fold
    assert explained == {f"fold_{k}": int((run.folds[shown] == k).sum()) for k in np.unique(run.folds[shown])}

    for model in trained.glob("fold_*/model.keras"):  # without fold models: a note, and no stale PNG
        model.rename(model.with_suffix(".moved"))
    try:
        section = wrong_gradcam_section(run, tmp_path / "report", n_wrong=WRONG_EXPLAINED)
    finally:
        for moved in trained.glob("fold_*/model.moved"):
            moved.rename(moved.with_suffix(".keras"))
    assert section.image is None and not (tmp_path / "report" / WRONG_PNG).exists()
    assert any("fold model" in note and "Grad-CAM skipped" in note for note in section.notes)
