"""The engine's speed paths change no number: a whole epoch per compiled call (steps_per_execution) trains the
same weights as one step per call, and predict_proba's chunked predict_on_batch equals Keras's predict."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from competition.engine.fold import FoldData, fit_phase
from competition.model.backbones import build_model
from competition.tta import predict_chunks, predict_proba
from competition.recipe import load_recipe

TINY = ["data.image_size=16", "model.filters=[4]", "model.head.dense=[8]", "model.head.dropout=0.2",
        "train.batch_size=16"]
CLASSES = list("abcd")


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8), np.arange(n) % 4


def _trained(recipe_args: list[str], steps_per_execution: int | None) -> tuple[list[np.ndarray], list[float]]:
    x, y = _images(56)  # 4 batches of 16, the last one short
    recipe = load_recipe(None, [*TINY, "train.phases.0.epochs=2", *recipe_args])
    keras.utils.set_random_seed(7)
    model = build_model(recipe.model, (16, 16, 1), len(CLASSES))
    data = FoldData(recipe, CLASSES, x, y, x[:12], y[:12], seed=7)
    fit_phase(model, data, 0, steps_per_execution=steps_per_execution)
    return model.get_weights(), [row["loss"] for row in data.state.history]


@pytest.mark.parametrize("recipe_args", [
    [],  # plain arrays
    ["balance.method=oversample", "augment=[{HorizontalFlip: {p: 0.5}}]"],  # a PyDataset of augmented batches
], ids=["arrays", "pydataset"])
@pytest.mark.slow
def test_a_whole_epoch_per_call_trains_the_same_weights_as_one_step_per_call(recipe_args: list[str]) -> None:
    per_step, losses_per_step = _trained(recipe_args, 1)
    per_epoch, losses_per_epoch = _trained(recipe_args, None)
    assert losses_per_step == losses_per_epoch
    for a, b in zip(per_step, per_epoch, strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_proba_equals_keras_predict_across_chunks() -> None:
    recipe = load_recipe(None, TINY)
    keras.utils.set_random_seed(3)
    model = build_model(recipe.model, (16, 16, 1), len(CLASSES))
    x, _ = _images(37)
    expected = np.asarray(model.predict(x, batch_size=16, verbose=0), dtype=np.float32)
    got = predict_proba(model, x, batch_size=16)  # chunks of 16, 16 and 5
    assert got.shape == (37, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected / expected.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-7)
    assert predict_proba(model, x[:0]).shape == (0, 4) and predict_chunks(model, x[:0]).shape == (0, 4)
