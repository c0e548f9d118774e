"""Grad-CAM: a map per image at the backbone's last feature map, for the small CNN and a keras.applications
backbone; the explain grid of a trained run."""

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


def test_explain_writes_a_grid_for_a_trained_run(tiny_contest: Path, tmp_path: Path) -> None:
    from competition.report.explain import explain_run
    from competition.training import train_run

    recipe = load_recipe(None, ["name=tiny", "data.image_size=32", "model.filters=[8]", "model.head.dense=[8]",
                                "train.phases.0.epochs=1", "cv.folds=2"])
    run_dir = train_run(recipe, tmp_path / "runs", data_root=tiny_contest)
    out = explain_run("tiny", [tiny_contest / "test"], run_dir.parent, out=tmp_path / "grid.png")
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width >= 400
