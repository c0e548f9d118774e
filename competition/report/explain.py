"""Where a model looked: Grad-CAM heat maps (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017) over the image for the predicted class.

The map is taken at the backbone's output, the last convolutional feature map of every backbone here (the
small CNN's last block, a keras.applications model's last stage), found by the model's structure rather than
by layer names: channel weights are the spatially averaged gradients of the class probability with respect to
that map, the map is their weighted sum through a ReLU, upsampled to the image and scaled to [0, 1]. A run's
map is the mean over its fold models (`explain_run`); in the run report (`wrong_gradcam_section`) an OOF
image's map comes from the one fold model that predicted it without training on it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from competition.errors import CompetitionError, OptionError

if TYPE_CHECKING:
    from competition.report.sections import Section
    from competition.runs import Run

MAX_IMAGES = 64  # images in one grid unless asked for more (explain_run's `limit`, explain --max-images)
WRONG_EXPLAINED = 8  # most confidently wrong OOF images explained in a run's report
WRONG_PNG = "wrong_gradcam.png"


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
                out: str | Path = "explain.png", labels: dict[str, str] | None = None,
                on_note: Callable[[str], None] | None = None, limit: int = MAX_IMAGES) -> Path:
    """A PNG grid: each image, decoded as the run's models see it (its crop and standardisation included),
    with its Grad-CAM map over it (mean over the run's fold models, for the class the run predicts), titled
    id, predicted class and probability, and the true class when `labels` ({id: class}) knows it. The first
    `limit` images are shown (MAX_IMAGES by default; 0: all), in name order: when more were given, `on_note`
    gets one line saying how many are shown and how to show all or choose; it also gets the note on converted
    channel counts (competition.inference.check_inputs). Raises CompetitionError (one line, nothing written) for an ensemble
    run, no images, an unreadable one, a missing fold model or transparent images."""
    from competition.data import decode_images, image_id, unreadable_message
    from competition.files import check_output, is_matplotlib_png
    from competition.inference import check_inputs, fold_models, image_files, output_guards
    from competition.runs import resolve_run
    from competition.runs.folder import read_recipe
    from competition.runs.record import RunRecord
    from competition.runtime import import_tensorflow

    run_dir = resolve_run(run, runs_dir)
    record = RunRecord.read(run_dir)
    if record.is_ensemble:
        raise CompetitionError(f"explain: '{run_dir.name}' is an ensemble; explain one of its member runs")
    check_output(out, protected=output_guards(run_dir, inputs), ours=is_matplotlib_png,
                 what="a PNG written by competition")
    recipe = read_recipe(run_dir)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise OptionError("limit", f"expected a whole number of images, 0 for all, got {limit!r}")
    found = image_files(inputs, record.contest_layout())
    paths = found[:limit] if limit else found
    if len(paths) < len(found) and on_note is not None:
        on_note(limit_note(len(found), len(paths)))
    for note in check_inputs(run_dir, paths):
        if on_note is not None:
            on_note(note)
    images, bad = decode_images(paths, tuple(recipe.data.image_size), recipe.data.channels,
                                options=recipe.data.decode_options())
    if bad:
        raise CompetitionError(unreadable_message(bad))
    import_tensorflow()
    models = fold_models(run_dir, recipe.cv.folds)
    proba = np.mean([np.asarray(m.predict(images, verbose=0)) for m in models], axis=0)
    predicted = proba.argmax(axis=1)
    maps = np.mean([grad_cam(m, images, predicted)[0] for m in models], axis=0)
    classes = record.classes
    ids = [image_id(p) for p in paths]
    return _plot(images, maps, ids, [classes[k] for k in predicted], proba.max(axis=1),
                 [(labels or {}).get(i) for i in ids], Path(out), f"{run_dir.name}: Grad-CAM for the predicted class")


def limit_note(found: int, shown: int) -> str:
    """The line saying that a grid shows fewer images than were given, and how to get all or choose."""
    return (f"explain: {found} images given, the grid shows the first {shown} by name; --max-images {found} (or 0) "
            "shows all of them, or name the image files to explain")


def _plot(images: np.ndarray, maps: np.ndarray, ids: list[str], predicted: list[str], confidence: np.ndarray,
          truth: list[str | None], out: Path, title: str) -> Path:
    """The grid (4 images a row) written atomically to `out` as a PNG; returns `out`."""
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
    fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    with atomic_write(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return out


def wrong_gradcam_section(run: Run, out_dir: Path, n_wrong: int = WRONG_EXPLAINED) -> Section:
    """The run report's section explaining the most confidently wrong OOF
    images (at most min(n_wrong, WRONG_EXPLAINED), highest wrong-class probability first) with Grad-CAM:
    each image decoded as the run's models see it, its map for the class the OOF predicted, from the fold
    model whose validation fold holds it (the model that never trained on it). Written to
    ``out_dir/wrong_gradcam.png``; when it cannot be drawn (an ensemble, no image paths, no wrong
    prediction, images or fold models missing, a recipe that does not load) the section says why and any
    earlier PNG is removed. Never raises for those cases."""
    from competition.report.sections import Section, most_confident_wrong

    section = Section("Most confidently wrong OOF images: where the model looked (Grad-CAM)")
    target = out_dir / WRONG_PNG
    try:
        section.notes.append(_explain_wrong(run, most_confident_wrong(run, len(run.y)), target,
                                            min(n_wrong, WRONG_EXPLAINED)))
        section.image = WRONG_PNG
    except _Skipped as why:
        section.notes.append(str(why))
    if section.image is None:  # a stale grid from an earlier report must not linger beside the new page
        target.unlink(missing_ok=True)
    return section


class _Skipped(Exception):
    """Why the report's Grad-CAM section has no image (a note for the page)."""


def _explain_wrong(run: Run, ranked: np.ndarray, out: Path, n: int) -> str:
    """Plot the first n of `ranked` (wrong OOF rows) that can be explained; returns the section's note.
    Raises _Skipped with the reason when none can."""
    from competition.data import decode_images
    from competition.runs.fold_files import fold_model_path, load_fold_model
    from competition.report.sections import wrong_captions, wrong_label
    from competition.runs.folder import read_recipe

    if run.kind == "ensemble":
        raise _Skipped("Ensemble run: Grad-CAM needs fold models; see its member runs' reports.")
    if run.model_kinds != ["network"]:
        raise _Skipped(f"A {run.model_kinds[0]} run (scikit-learn): Grad-CAM needs a network.")
    if run.paths is None:
        raise _Skipped("The run does not record image paths (no path column in folds.csv): Grad-CAM skipped.")
    if len(ranked) == 0 or n <= 0:
        raise _Skipped("No wrong OOF predictions to explain." if len(ranked) == 0 else "Grad-CAM not requested.")
    try:
        recipe = read_recipe(run.path)
    except CompetitionError as exc:  # missing, damaged, or made by a newer version: the line says which
        raise _Skipped(f"recipe.yaml does not load as a recipe ({' '.join(str(exc).split())[:200]}): "
                       "Grad-CAM skipped.") from None
    models = {k: fold_model_path(run.path, k) for k in np.unique(run.folds[ranked]).tolist()}
    usable = [r for r in ranked if isinstance(run.paths[r], str) and Path(run.paths[r]).is_file()
              and models[int(run.folds[r])].is_file()]
    if not usable:
        raise _Skipped(f"None of the {len(ranked)} wrongly predicted images has both its file and its fold model "
                       f"on disk (e.g. {run.paths[ranked[0]]}, {models[int(run.folds[ranked[0]])]}): "
                       "Grad-CAM skipped.")
    images, bad = decode_images([run.paths[r] for r in usable[: n * 2]], tuple(recipe.data.image_size),
                                recipe.data.channels, cache=False, options=recipe.data.decode_options())
    rows = np.array([r for r in usable[: n * 2] if str(run.paths[r]) not in {b[0] for b in bad}][:n])
    images = images[:n]
    if len(rows) == 0:
        raise _Skipped(f"The wrongly predicted images could not be decoded (e.g. {bad[0][0]}: {bad[0][1]}): "
                       "Grad-CAM skipped.")
    predicted = wrong_label(run, rows)
    maps = np.empty(images.shape[:3], dtype=np.float32)
    try:
        from competition.runtime import import_tensorflow

        import_tensorflow()  # before Keras imports TensorFlow: its start-up log silenced
        for k in np.unique(run.folds[rows]).tolist():
            where = np.flatnonzero(run.folds[rows] == k)
            model = load_fold_model(run.path, k)
            maps[where] = grad_cam(model, images[where], predicted[where])[0]
    except (CompetitionError, OSError, ValueError) as exc:  # a damaged model file: Keras raises ValueError
        raise _Skipped(f"Grad-CAM failed ({' '.join(str(exc).split())[:160]}): skipped.") from None
    truth = [text or "(no label)" for text in run.label_texts(run.y[rows])]
    what = "label most confidently wrong (a false or a missed finding)" if run.multilabel else "predicted (wrong) class"
    _plot(images, maps, [str(run.ids[r]) for r in rows], wrong_captions(run, rows),
          run.oof[rows, predicted], truth, out,
          f"{run.name}: most confidently wrong OOF images, Grad-CAM for the {what.split(' (')[0]}")
    missing = len(ranked) - len(usable)
    return (f"Showing {len(rows)} of {len(ranked)} wrong OOF predictions, most confident first; each map is for the "
            f"{what}, by the fold model that did not train on the image; probabilities are the "
            "run's OOF (with its TTA), maps are on the plain image."
            + (f" {missing} image(s) without their file or fold model on disk were left out." if missing else ""))
