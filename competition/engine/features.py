"""Frozen-backbone features: a head phase on a frozen backbone without augmentation sees each image the same
way every epoch, so the backbone runs once per image and the head trains on its outputs."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from competition.engine.mixing import mixes_batches
from competition.files import read_cached_npy
from competition.model.backbones import backbone_of, build_model
from competition.model.frozen import extract, store_path
from competition.recipe import PhaseConfig, Recipe


def uses_cached_features(recipe: Recipe, phase: PhaseConfig) -> bool:
    """A frozen backbone without augmentation (an augment list, mixup or cutmix) sees the same image the same
    way every epoch."""
    return phase.trainable == "head" and not ((recipe.augment and phase.augment) or mixes_batches(recipe, phase))


def split_head(model: Any) -> tuple[Any, Any]:
    """(feature extractor: image -> backbone output, head: backbone output -> probabilities), made of the
    classifier's own layers, so training the head model trains the classifier's head."""
    cut = model.layers.index(backbone_of(model))
    image = keras.Input(model.input_shape[1:])
    x = image
    for layer in model.layers[1 : cut + 1]:  # preprocessing and backbone
        x = layer(x)
    extractor = keras.Model(image, x)
    features = keras.Input(x.shape[1:])
    x = features
    for layer in model.layers[cut + 1 :]:  # pooling, dense, dropout, softmax: a plain chain
        x = layer(x)
    return extractor, keras.Model(features, x)


def set_precision(recipe: Recipe) -> None:
    """Mixed float16 compute when the recipe asks (the classifier's last Dense stays float32), else float32;
    set for every model built, since the policy is global to the process."""
    keras.mixed_precision.set_global_policy("mixed_float16" if recipe.train.mixed_precision else "float32")


def frozen_features(recipe: Recipe, x: np.ndarray, n_classes: int, *, store: bool = True) -> dict[str, np.ndarray]:
    """{"phase0": float32 (n, *feature shape)}: every training image (uint8 x (n, h, w, c)) through the initial
    pretrained backbone, when the first phase trains only the head without augmentation (every fold starts
    from the same backbone); {} otherwise.

    The feature store: features are kept in the cache folder (competition.data.cache_dir()/features), keyed
    by the pixels' bytes, the backbone, its options, the weights file's bytes and the compute precision, so
    every fold (in any process or on any Ray node sharing the cache), every later run and every recipe with
    another head reuse them: the backbone runs once per contest."""
    if recipe.model.weights == "none" or not uses_cached_features(recipe, recipe.train.phases[0]):
        return {}
    path = store_path(recipe.model, x, recipe.train.mixed_precision) if store else None
    cached = read_cached_npy(path) if path is not None else None
    if cached is not None and len(cached) == len(x):  # a damaged entry is a miss: computed again and replaced
        return {"phase0": cached}
    set_precision(recipe)
    extractor, _ = split_head(build_model(recipe.model, x.shape[1:], n_classes))
    features = {"phase0": extract(extractor, x)}
    keras.backend.clear_session()
    if path is not None:
        from competition.files import write_npy

        write_npy(path, features["phase0"])
    return features
