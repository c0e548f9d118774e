"""Where a model looked: Grad-CAM heat maps (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017) over the image for the predicted class.

The map is taken at the backbone's output, the last convolutional feature map of every backbone here (the
small CNN's last block, a keras.applications model's last stage), found by the model's structure rather than
by layer names: channel weights are the spatially averaged gradients of the class probability with respect to
that map, the map is their weighted sum through a ReLU, upsampled to the image and scaled to [0, 1]. A run's
map is the mean over its fold models.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError

MAX_IMAGES = 64  # images in one grid


def grad_cam(model: Any, images: np.ndarray, class_index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps float32 (n, h, w) in [0, 1], probabilities float32 (n, n_classes)) for uint8 images
    (n, h, w, c) and a classifier built by competition.model.build_model. `class_index` (n,) picks the class
    explained per image (default: the predicted one)."""
    import tensorflow as tf

    from competition.engine.features import split_head

    extractor, head = split_head(model)
    x = tf.convert_to_tensor(images, dtype=tf.float32)
    features = extractor(x, training=False)
    with tf.GradientTape() as tape:
        tape.watch(features)
        proba = head(features, training=False)
        chosen = tf.argmax(proba, axis=1) if class_index is None else tf.convert_to_tensor(class_index, tf.int64)
        score = tf.gather(proba, chosen, axis=1, batch_dims=1)
    grads = tape.gradient(score, features)
    if len(features.shape) != 4:
        raise CompetitionError(f"explain: the backbone's output has shape {tuple(features.shape)}, not a feature map")
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
    top = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return (cam / np.where(top > 0, top, 1)).astype(np.float32), np.asarray(proba, dtype=np.float32)


def explain_run(run: str | Path, inputs: Sequence[str | Path], runs_dir: str | Path = "runs", *,
                out: str | Path = "explain.png", labels: dict[str, str] | None = None) -> Path:
    """A PNG grid: each image, decoded as the run's models see it (its crop and standardisation included),
    with its Grad-CAM map over it (mean over the run's fold models, for the class the run predicts), titled
    id, predicted class and probability, and the true class when `labels` ({id: class}) knows it. Raises
    CompetitionError for an ensemble run, no images, or an unreadable one."""
    import keras
    import yaml

    import_module("competition.model.layers")  # registers the layer of models saved by earlier versions
    from competition.data import decode_images, image_id, unreadable_message
    from competition.inference import image_files
    from competition.recipe import Recipe
    from competition.runs import resolve_run
    from competition.runs.folder import fold_model_path, read_meta, read_recipe_text
    from competition.runtime import import_tensorflow

    run_dir = resolve_run(run, runs_dir)
    meta = read_meta(run_dir)
    if meta.get("kind") == "ensemble":
        raise CompetitionError(f"explain: '{meta.get('name')}' is an ensemble; explain one of its member runs")
    recipe = Recipe.model_validate(yaml.safe_load(read_recipe_text(run_dir) or "{}"))
    paths = image_files(inputs)[:MAX_IMAGES]
    images, bad = decode_images(paths, tuple(recipe.data.image_size), recipe.data.channels,
                                options=recipe.data.decode_options())
    if bad:
        raise CompetitionError(unreadable_message(bad))
    import_tensorflow()
    models = [keras.saving.load_model(fold_model_path(run_dir, k)) for k in range(recipe.cv.folds)]
    proba = np.mean([np.asarray(m.predict(images, verbose=0)) for m in models], axis=0)
    predicted = proba.argmax(axis=1)
    maps = np.mean([grad_cam(m, images, predicted)[0] for m in models], axis=0)
    classes = list(meta["classes"])
    ids = [image_id(p) for p in paths]
    return _plot(images, maps, ids, [classes[k] for k in predicted], proba.max(axis=1),
                 [(labels or {}).get(i) for i in ids], Path(out), run_dir.name)


def _plot(images: np.ndarray, maps: np.ndarray, ids: list[str], predicted: list[str], confidence: np.ndarray,
          truth: list[str | None], out: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    from competition.files import atomic_write

    cols = min(len(ids), 4)
    rows = math.ceil(len(ids) / cols)
    fig = Figure(figsize=(2.8 * cols, 3.1 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for k, ax in enumerate(axes[: len(ids)]):
        image = images[k][..., 0] if images.shape[-1] == 1 else images[k]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        ax.imshow(maps[k], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        true = f"true: {truth[k]}\n" if truth[k] is not None else ""
        ax.set_title(f"{ids[k][:26]}\n{true}pred: {predicted[k][:22]} ({confidence[k]:.2f})", fontsize=8)
    fig.suptitle(f"{title}: Grad-CAM for the predicted class", fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    with atomic_write(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return out
