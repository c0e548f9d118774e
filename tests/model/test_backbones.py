"""Fine-tuning a pretrained backbone: BatchNorm keeps its moving statistics and runs in inference mode (the
README's promise), and the full model reproduces the head-on-cached-features model at a phase boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from competition.recipe import load_recipe

SIZE = 32


def _pretrained_file(tmp_path: Path) -> Path:
    """MobileNetV2 0.35 weights with non-trivial BatchNorm statistics, saved by the test (no download)."""
    import keras

    from competition.model.backbones import backbone_of, build_model

    recipe = load_recipe(None, ["model.backbone=mobilenetv2", "model.alpha=0.35"])
    keras.utils.set_random_seed(5)
    backbone = backbone_of(build_model(recipe.model, (SIZE, SIZE, 1), 4))
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(np.random.default_rng(1).normal(0, 0.5, mean.shape).astype("float32"))
            var.assign(np.random.default_rng(2).uniform(0.5, 2.0, var.shape).astype("float32"))
    path = tmp_path / "mnv2.weights.h5"
    backbone.save_weights(path)
    return path


def _batchnorm_stats(model: object) -> list[np.ndarray]:
    import keras

    from competition.model.backbones import backbone_of

    return [np.array(w) for layer in backbone_of(model).layers if isinstance(layer, keras.layers.BatchNormalization)
            for w in (layer.moving_mean, layer.moving_variance)]


@pytest.fixture
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (48, SIZE, SIZE, 1), dtype=np.uint8), np.arange(48) % 4


@pytest.mark.slow
def test_finetuning_keeps_batchnorm_statistics_and_inference_mode(tmp_path: Path, images: tuple) -> None:
    from competition.model.backbones import build_model
    from competition.engine.fold import FoldData, fit_phase

    x, y = images
    weights = _pretrained_file(tmp_path)
    recipe = load_recipe(None, ["model.backbone=mobilenetv2", "model.alpha=0.35", f"model.weights={weights}",
                                "model.head.dropout=0", "train.batch_size=16",
                                "train.phases=[{epochs: 1, trainable: all, learning_rate: 0.01}]"])
    model = build_model(recipe.model, (SIZE, SIZE, 1), 4)
    before = _batchnorm_stats(model)
    conv_before = [np.array(w) for w in model.trainable_weights]
    fit_phase(model, FoldData(recipe, list("abcd"), x, y, x[:8], y[:8], seed=1), 0)

    for got, expected in zip(_batchnorm_stats(model), before, strict=True):
        np.testing.assert_array_equal(got, expected)  # moving mean and variance untouched by fine-tuning
    assert any(not np.array_equal(np.array(w), b) for w, b in zip(model.trainable_weights, conv_before, strict=False))
    np.testing.assert_allclose(np.asarray(model(x[:8], training=True)), np.asarray(model(x[:8], training=False)),
                               atol=1e-5)  # BatchNorm in inference mode under training=True


@pytest.mark.slow
def test_phase_boundary_full_model_in_training_mode_reproduces_the_cached_feature_head(tmp_path: Path,
                                                                                      images: tuple) -> None:
    from competition.model.backbones import build_model, set_trainable
    from competition.engine.features import extract, split_head

    x, _ = images
    recipe = load_recipe(None, ["model.backbone=mobilenetv2", "model.alpha=0.35",
                                f"model.weights={_pretrained_file(tmp_path)}", "model.head.dropout=0"])
    model = build_model(recipe.model, (SIZE, SIZE, 1), 4)
    extractor, head = split_head(model)
    from_features = np.asarray(head(extract(extractor, x[:16])))  # what the head phase trained on
    set_trainable(model, "all", keep_batchnorm_frozen=True)  # the start of the fine-tuning phase
    full = np.asarray(model(x[:16], training=True))
    assert np.max(np.abs(full - from_features)) <= 1e-4
