import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from rich.console import Console

from competition.doctor import Check, check_recipes, print_checks

V2_96 = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"


def _recipe(tmp_path: Path, name: str, model: str, root: Path | None, size: int = 32) -> Path:
    data = f"data: {{image_size: {size}, channels: 1{f', root: {root!s}' if root else ''}}}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{data}model: {model}\n")
    return path


def _by_item(checks: list[Check]) -> dict[str, Check]:
    return {c.item: c for c in checks}


def _tiny_h5(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("w", data=np.zeros(3, dtype=np.float32))


def _mobilenet_v2_h5(path: Path, alpha: float, size: int) -> None:
    """A no-top MobileNetV2 weights file (random values) in the layout of Keras's published files (Keras 2
    HDF5: layer_names, each layer's weight_names), the layout doctor loads into the declared backbone."""
    import keras

    model = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha, input_shape=(size, size, 3))
    layers = [layer for layer in model.layers if layer.weights]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        for layer in layers:
            names = []
            for weight in layer.trainable_weights + layer.non_trainable_weights:
                names.append(f"{layer.name}/{weight.name}".encode())
                handle.create_dataset(f"{layer.name}/{layer.name}/{weight.name}", data=np.asarray(weight.numpy()))
            handle[layer.name].attrs["weight_names"] = names


def test_good_cnn_recipe_passes_every_check(tiny_recipe, tiny_contest):
    checks = check_recipes([tiny_recipe], data=tiny_contest)
    assert [c.item for c in checks] == ["recipe", "data", "weights"]
    assert all(c.ok for c in checks), checks
    data = _by_item(checks)["data"].detail
    assert str(tiny_contest) in data and "train images" in data and "test images" in data


@pytest.mark.slow
def test_missing_imagenet_file_names_full_cache_path_then_passes_once_placed(tmp_path, tiny_contest):
    recipe = _recipe(tmp_path, "v2", "{backbone: mobilenetv2, weights: imagenet, alpha: 0.35}", tiny_contest, size=96)
    expected = Path(os.environ["KERAS_HOME"]) / "models" / V2_96
    if expected.exists():
        expected.unlink()
    weights = _by_item(check_recipes([recipe]))["weights"]
    assert not weights.ok
    assert str(expected) in weights.detail and "network" in weights.detail

    _mobilenet_v2_h5(expected, 0.35, 96)  # MobileNet files are not hash-checked: doctor loads them (round 5)
    try:
        checks = check_recipes([recipe])
        assert all(c.ok for c in checks), checks
        assert str(expected) in _by_item(checks)["weights"].detail
    finally:
        expected.unlink()


def test_imagenet_on_a_backbone_without_it_and_bad_alpha_fail(tmp_path, tiny_contest):
    cnn = _recipe(tmp_path, "cnn", "{backbone: cnn, weights: imagenet}", tiny_contest)
    alpha = _recipe(tmp_path, "alpha", "{backbone: mobilenetv2, weights: imagenet, alpha: 0.3}", tiny_contest)
    # checked when the recipe is validated (as train does), so the failing check is the recipe's
    checks = [c for c in check_recipes([cnn, alpha]) if c.item in ("recipe", "weights")]
    assert not checks[0].ok and "no ImageNet weights" in checks[0].detail
    assert not checks[1].ok and "recipe.model.alpha" in checks[1].detail and "0.35" in checks[1].detail


def test_hash_checked_imagenet_file_with_wrong_bytes_fails(tmp_path, tiny_contest):
    recipe = _recipe(tmp_path, "vgg", "{backbone: vgg16, weights: imagenet}", tiny_contest)
    placed = Path(os.environ["KERAS_HOME"]) / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _tiny_h5(placed)
    try:
        weights = _by_item(check_recipes([recipe]))["weights"]
    finally:
        placed.unlink()
    assert not weights.ok and "hash" in weights.detail and str(placed) in weights.detail


def test_local_weights_file_missing_fails_naming_it_and_h5_is_opened(tmp_path, tiny_contest):
    missing = tmp_path / "nowhere" / "w.weights.h5"
    recipe = _recipe(tmp_path, "local", f"{{backbone: cnn, weights: {missing}}}", tiny_contest)
    weights = _by_item(check_recipes([recipe]))["weights"]
    assert not weights.ok and str(missing) in weights.detail

    missing.parent.mkdir()
    missing.write_bytes(b"not hdf5 at all")
    weights = _by_item(check_recipes([recipe]))["weights"]
    assert not weights.ok and str(missing) in weights.detail

    _tiny_h5(missing)  # HDF5, but not the weights of this backbone: loaded into it, refused (round 5)
    weights = _by_item(check_recipes([recipe]))["weights"]
    assert not weights.ok and "does not fit backbone 'cnn'" in weights.detail, weights.detail

    from types import SimpleNamespace

    from competition.model.backbones import BACKBONES

    BACKBONES["cnn"].build((32, 32, 1), SimpleNamespace(filters=[32, 64, 128])).save_weights(str(missing))
    assert _by_item(check_recipes([recipe]))["weights"].ok


def test_missing_data_folder_fails_naming_it(tmp_path):
    gone = tmp_path / "no-such-contest"
    recipe = _recipe(tmp_path, "nodata", "{backbone: cnn}", gone)
    data = _by_item(check_recipes([recipe]))["data"]
    assert not data.ok and str(gone) in data.detail
    # --data overrides the recipe's root; no root at all is a failure too
    bare = _recipe(tmp_path, "bare", "{backbone: cnn}", None)
    assert not _by_item(check_recipes([bare]))["data"].ok
    assert not _by_item(check_recipes([recipe], data=tmp_path / "other"))["data"].ok


def test_invalid_recipe_is_one_failed_line_and_others_still_checked(tmp_path, tiny_recipe, tiny_contest):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {batch_size: big}\n")
    checks = check_recipes([bad, tiny_recipe], data=tiny_contest)
    first = [c for c in checks if c.recipe == str(bad)]
    assert [(c.item, c.ok) for c in first] == [("recipe", False), ("data", True)]
    assert "\n" not in first[0].detail and "recipe.train.batch_size" in first[0].detail
    assert all(c.ok for c in checks if c.recipe == str(tiny_recipe))


def test_print_checks_renders_a_table(tiny_recipe):
    console = Console(record=True, width=200)
    print_checks([Check(str(tiny_recipe), "data", False, "/x/y: contest folder not found [b]"),
                  Check(str(tiny_recipe), "recipe", True, "valid")], console)
    text = console.export_text()
    assert "FAIL" in text and "/x/y: contest folder not found [b]" in text and "1 failed" in text
