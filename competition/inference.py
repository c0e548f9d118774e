"""A trained run on new images: `predict_run` decodes the images as the run's models saw theirs (`decode_chunks`:
its size, channels, intensity window, crop and standardisation, through the decode cache, in chunks, so memory
stays bounded), averages every fold model's probabilities with the run's TTA, as the run's own test
predictions were made, applies the run's saved decisions (`submit --tune`), and writes id,label[,one
probability column per class]. An ensemble of blend weights (mean, weighted, caruana)
predicts through its members' runs.

Before any model is loaded, every file's header is read (`image_layouts`) and the input is refused in one
line when it cannot be predicted as the run's own images were (`check_inputs`): no images, an unreadable
file, a fold model missing, or an image with transparent pixels for a run trained on none. Channel counts
the decoder converts as it converted the training images (colour to grey by ITU-R 601 luma, grey replicated
to colour, a fully opaque alpha channel ignored) are allowed and reported in one note.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError, OptionError

CHUNK = 512  # images decoded and predicted at a time

# Pillow modes by the channels they decode to (competition.data.decode): grey, and modes with an alpha channel.
GREY_MODES = frozenset({"1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
LAYOUTS = ("grey", "colour", "opaque alpha", "transparent")


@dataclass
class Predictions:
    """ids (n,), probabilities float32 (n, n_classes), labels (n,) after the saved decisions, classes, and
    notes (one line each) on how the inputs were converted to the run's channels."""

    ids: list[str]
    proba: np.ndarray
    labels: list[str]
    classes: list[str]
    notes: list[str] = field(default_factory=list)

    def frame(self, probabilities: bool = False) -> pd.DataFrame:
        """id,label and, with `probabilities`, one column per class."""
        frame = pd.DataFrame({"id": self.ids, "label": self.labels})
        if probabilities:
            for k, name in enumerate(self.classes):
                frame[name] = self.proba[:, k]
        return frame


def image_files(inputs: Sequence[str | Path], layout: Any = None) -> list[Path]:
    """The image files named by `inputs`: files as given; folders' images (sorted, hidden files skipped); a
    contest folder laid out as `layout` (a competition.data.Layout, the run's; None: test/ and
    sample_submission.csv) stands for its test images (competition.data.contest.contest_test_paths). Raises
    CompetitionError when none is found or a path does not exist."""
    from competition.data import is_image
    from competition.data.contest import contest_test_paths

    found: list[Path] = []
    for given in inputs:
        path = Path(given)
        contest = contest_test_paths(path, layout) if path.is_dir() else None
        if contest is not None:
            found += contest
        elif path.is_dir():
            found += [p for p in sorted(path.iterdir()) if not p.name.startswith(".") and is_image(p)]
        elif path.is_file():
            found.append(path)
        else:
            raise CompetitionError(f"{path}: no such image file or folder")
    if not found:
        raise CompetitionError(f"{', '.join(map(str, inputs))}: no images found")
    return found


def check_unique_ids(paths: Sequence[Path], ids: Sequence[str]) -> None:
    """Each id names one image: two files with one id (`a/001.png` and `b/001.png`, or `001.png` and `001.jpg`)
    would be two rows of one id, which no reader of the CSV can tell apart, so they are refused, as is one file
    given twice. Raises CompetitionError naming both files."""
    seen: dict[str, Path] = {}
    for path, image in zip(paths, ids):
        first = seen.setdefault(image, path)
        if first is path:
            continue
        if Path(first).resolve() == Path(path).resolve():
            raise CompetitionError(f"{path}: given twice (also as {first}); each image once, so each id has one row")
        raise CompetitionError(f"id {image!r} is the name of two images, {first} and {path} (an id is the file name "
                               "without its extension, and each row of the predictions must name one image); "
                               "predict them in separate calls (each with its own --out), or rename one")


def fold_models(run_dir: Path, n_folds: int) -> list[Any]:
    """The run's fold models (Keras), loaded through the checked reader (competition.runs.fold_files.load_fold_model).
    Raises CompetitionError naming the first missing, damaged or newer-version model file (a run whose folds did
    not all finish)."""
    from competition.runs.fold_files import load_fold_model

    check_fold_models(run_dir, n_folds)
    return [load_fold_model(run_dir, k) for k in range(n_folds)]


def check_sklearn_models(run_dir: Path, recipe: Any) -> None:
    """A scikit-learn kind's run predicts new images only when inductive (knn, logistic) and every fold's
    model.joblib is there; CompetitionError of one line otherwise."""
    from competition.model.classic import is_transductive
    from competition.runs.fold_files import sklearn_model_path

    if is_transductive(recipe.model.kind):
        raise CompetitionError(f"run '{run_dir.name}': {recipe.model.kind} is transductive: it labelled the images it "
                               "was fitted with (its test.npy, which submit uses) and does not predict new ones; "
                               "train it again with them as the contest's test images")
    missing = [k for k in range(recipe.cv.folds) if not sklearn_model_path(run_dir, k).is_file()]
    if missing:
        raise CompetitionError(f"{sklearn_model_path(run_dir, missing[0])}: fold model missing; train the run "
                               f"'{run_dir.name}' again")


def check_fold_models(run_dir: Path, n_folds: int) -> None:
    """Raises CompetitionError when a fold model file of the run is missing, naming it and how many are."""
    from competition.runs.fold_files import fold_model_path, sklearn_model_path

    missing = [k for k in range(n_folds) if not fold_model_path(run_dir, k).is_file()]
    if missing and sklearn_model_path(run_dir, missing[0]).is_file():
        raise CompetitionError(f"run '{run_dir.name}' is a scikit-learn model kind (fold_0/model.joblib), not a "
                               "network: explain and export need Keras fold models (predict takes knn and "
                               "logistic runs); its test probabilities are in test.npy, which submit uses")
    if missing:
        some = "no finished fold" if len(missing) == n_folds else f"{n_folds - len(missing)} of {n_folds} folds"
        raise CompetitionError(f"{fold_model_path(run_dir, missing[0])}: fold model missing; run "
                               f"'{run_dir.name}' has {some} (train it again to finish it)")


def _layout(path: Path) -> tuple[str, str | None] | None:
    """(base, alpha) from the file's header: base "grey" or "colour", alpha None, "opaque alpha" or
    "transparent" (an alpha channel is read whole to see whether any pixel is transparent); None when Pillow
    cannot open the file (a DICOM file, or an unreadable one: the decoder says which)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in GREY_MODES:
                return "grey", None
            if mode == "P" and "transparency" in image.info:
                image, mode = image.convert("RGBA"), "RGBA"
            base = "grey" if mode in {"LA", "La"} else "colour"
            if mode not in ALPHA_MODES:
                return base, None
            alpha = image.convert("RGBA") if mode == "PA" else image
            return base, "opaque alpha" if alpha.getchannel("A").getextrema()[0] == 255 else "transparent"
    except Exception:  # any failure is the decoder's to report, with its reason
        return None


def image_layouts(paths: Sequence[Path]) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """({layout: files} for LAYOUTS, (path, reason) of the unreadable files) from each file's header: every
    file is under "grey" or "colour" (what it decodes to before the run's channels), and also under
    "opaque alpha" or "transparent" when it has an alpha channel. About 40 us a 16x16 PNG: no pixels are
    decoded but an alpha channel's. A file Pillow cannot open is decoded (competition.data.decode_image) to
    tell a DICOM file (left out of the layouts) from an unreadable one."""
    from competition.data import UnreadableImage, decode_image

    layouts: dict[str, list[Path]] = {name: [] for name in LAYOUTS}
    bad: list[tuple[str, str]] = []
    for path in paths:
        layout = _layout(path)
        if layout is None:
            try:
                decode_image(path, (8, 8), 1)
            except UnreadableImage as exc:
                bad.append((str(path), exc.reason))
            continue
        for name in layout:
            if name is not None:
                layouts[name].append(path)
    return layouts, bad


def _trained_on_transparent(run_dir: Path) -> bool:
    """Whether a training image of the run (folds.csv's paths, where they still exist) has transparent
    pixels, which training composited on black. Reads headers until the first such image."""
    from competition.runs.run import training_images

    paths = [Path(p) for p in training_images(run_dir) or []]
    return any(path.is_file() and (_layout(path) or ("", None))[1] == "transparent" for path in paths)


def channel_note(layouts: dict[str, list[Path]], run_dir: Path, channels: int) -> str | None:
    """One note line on how images of another channel count are converted for a run reading `channels`
    (1 or 3), as its training images were, or None when nothing is converted. Raises CompetitionError for
    images with transparent pixels (an alpha channel: 2-channel grey+alpha, 4-channel RGBA, a palette with
    a transparent colour) unless the run's training images had them too: compositing them on black, as the
    decoder does, makes a picture the run never saw."""
    transparent = layouts.get("transparent", [])
    wanted = "grey" if channels == 1 else "colour"
    if transparent and not _trained_on_transparent(run_dir):
        more = f" and {len(transparent) - 1} more" if len(transparent) > 1 else ""
        raise CompetitionError(
            f"{transparent[0]}{more}: image with transparent pixels (an alpha channel, {len(transparent)} "
            f"file{'s' if len(transparent) > 1 else ''}); run '{run_dir.name}' reads {channels}-channel {wanted} "
            "images and was trained on none with transparency; flatten them onto a background first "
            "(e.g. Pillow's Image.alpha_composite)")
    other = layouts.get("colour" if channels == 1 else "grey", [])
    opaque = layouts.get("opaque alpha", [])
    parts = []
    if other and channels == 1:
        parts.append(f"{_count(other, 'colour image')} converted to grey (ITU-R 601 luma)")
    elif other:
        parts.append(f"{_count(other, 'grey image')} replicated to 3 channels")
    if opaque:
        parts.append(f"{_count(opaque, 'fully opaque alpha channel')} ignored")
    if transparent:
        parts.append(f"{_count(transparent, 'image')} with transparency composited on black")
    if not parts:
        return None
    return (f"note: {'; '.join(parts)} for run '{run_dir.name}' ({channels}-channel {wanted}), as its training "
            "images were")


def _count(items: Sequence[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def model_runs(run_dir: Path) -> list[Path]:
    """The model runs whose fold models predict for `run_dir`: itself, or an ensemble's members (theirs)."""
    from competition.runs import resolve_run
    from competition.runs.folder import read_members
    from competition.runs.record import RunRecord

    record = RunRecord.read(run_dir)
    if not record.is_ensemble:
        return [run_dir]
    members = [resolve_run(name, run_dir.parent) for name in read_members(run_dir, record.raw)]
    return [model for member in members for model in model_runs(member)]


def check_inputs(run_dir: Path, paths: Sequence[Path]) -> list[str]:
    """Refuse input the run cannot predict as it predicted its own images, before any model is loaded:
    raises CompetitionError (one line) for an unreadable file (by its header), a missing fold model, or
    transparent images (channel_note). Returns the notes on converted channel counts, one per distinct
    conversion."""
    from competition.data import unreadable_message
    from competition.runs.folder import read_recipe

    layouts, bad = image_layouts(paths)
    if bad:
        raise CompetitionError(unreadable_message(bad))
    notes: list[str] = []
    for model_run in model_runs(run_dir):
        recipe = read_recipe(model_run)
        if recipe.model.kind != "network":
            check_sklearn_models(model_run, recipe)
        else:
            check_fold_models(model_run, recipe.cv.folds)
        note = channel_note(layouts, model_run, recipe.data.channels)
        if note and note not in notes:
            notes.append(note)
    return notes


def decode_chunks(paths: Sequence[str | Path], recipe: Any) -> Iterator[np.ndarray]:
    """The image files as the recipe's models see them, CHUNK at a time: uint8 (n <= CHUNK, h, w, channels),
    decoded at the recipe's size and channels with its decode options (intensity window, crop,
    standardisation: competition.data.decode.DecodeOptions), through the decode cache, as the run's training
    and test images were. Raises CompetitionError listing the unreadable files of a chunk."""
    from competition.data import decode_images, unreadable_message

    size, channels, options = tuple(recipe.data.image_size), recipe.data.channels, recipe.data.decode_options()
    for start in range(0, len(paths), CHUNK):
        images, bad = decode_images(paths[start : start + CHUNK], size, channels, options=options)
        if bad:
            raise CompetitionError(unreadable_message(bad))
        yield images


def run_probabilities(run_dir: Path, paths: list[Path]) -> np.ndarray:
    """float32 (n, n_classes): the run's prediction for each image file (mean over folds, with its TTA), or
    for an ensemble of blend weights, the weighted sum of its members' predictions."""
    from competition.tta import predict_tta
    from competition.runs import resolve_run
    from competition.runs.folder import read_members, read_recipe, read_weights
    from competition.runs.record import RunRecord
    from competition.runtime import import_tensorflow

    record = RunRecord.read(run_dir)
    if record.is_ensemble and record.method == "subject-mean":
        return subject_mean(run_dir, record, paths)
    if record.is_ensemble:
        weights = read_weights(run_dir, record.raw)
        if weights is None:
            raise CompetitionError(f"ensemble '{run_dir.name}': method {record.method!r} has no blend weights; "
                                   "predict supports model runs and mean, weighted and caruana ensembles")
        members = [resolve_run(name, run_dir.parent) for name in read_members(run_dir, record.raw)]
        return np.sum([w * run_probabilities(m, paths) for w, m in zip(weights, members, strict=True) if w],
                      axis=0).astype(np.float32)
    recipe = read_recipe(run_dir)
    if recipe.model.kind != "network":  # an inductive scikit-learn kind (check_inputs refused the others)
        from competition.runs.fold_files import load_sklearn_model

        fitted = [load_sklearn_model(run_dir, k) for k in range(recipe.cv.folds)]
        return np.concatenate([np.mean([m.predict_proba(images) for m in fitted], axis=0)
                               for images in decode_chunks(paths, recipe)]).astype(np.float32)
    import_tensorflow()
    models = fold_models(run_dir, recipe.cv.folds)
    parts = []
    for images in decode_chunks(paths, recipe):
        parts.append(np.mean([predict_tta(model, images, recipe.tta)[1] for model in models], axis=0))
    return np.concatenate(parts).astype(np.float32)


def subject_mean(run_dir: Path, record: Any, paths: list[Path]) -> np.ndarray:
    """A subject-averaged run's prediction (competition.subjects): its member's probabilities averaged over the
    near-duplicate groups among the given images, at the run's recorded threshold, as `aggregate` averaged the
    contest's test images (so predicting them gives its test.npy)."""
    from competition.data.similarity import cached_groups, image_signatures
    from competition.runs import resolve_run
    from competition.runs.folder import read_members
    from competition.subjects import group_mean

    proba = run_probabilities(resolve_run(read_members(run_dir, record.raw)[0], run_dir.parent), paths)
    threshold = record.subjects.get("threshold")
    if not isinstance(threshold, int | float):
        return proba
    return group_mean(proba, cached_groups(image_signatures(paths), float(threshold))).astype(np.float32)


def output_guards(run_dir: Path, inputs: Sequence[str | Path]) -> list[tuple[str, str | Path | None]]:
    """What an output of `predict` or `explain` must never land on or in (competition.files.check_output): the
    run's contest folder, the run folder and every image file or folder given."""
    from competition.runs.folder import read_meta
    from competition.runs.run import contest_root

    return [("the run's contest folder", contest_root(read_meta(run_dir))), ("the run folder", run_dir),
            *(("an input of this command", path) for path in inputs)]


def array_images(images: np.ndarray, folder: Path) -> list[Path]:
    """Write a numpy array of images as PNG files named by row index (0.png, 1.png, ...) into `folder`, so that
    they are decoded exactly as image files are. `images`: uint8 or uint16 (n, h, w) grayscale, or (n, h, w, c)
    with c 1, 3 (RGB) or 4 (RGBA; uint8 only). Raises OptionError (`inputs`) for another shape or dtype."""
    from PIL import Image

    array = np.asarray(images)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (3, 4)) or not len(array):
        raise OptionError("inputs", f"an array of images is (n, h, w) or (n, h, w, c) with c 1, 3 or 4 and n > 0, "
                                    f"got shape {array.shape}")
    if array.dtype not in (np.uint8, np.uint16) or (array.dtype == np.uint16 and array.ndim == 4):
        raise OptionError("inputs", f"expected uint8 pixels (or uint16 grayscale), got {array.dtype}: scale to "
                                    "0-255 and cast with .astype(np.uint8)")
    paths = []
    for i, image in enumerate(array):
        paths.append(folder / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def predict_run(run: str | Path, inputs: Sequence[str | Path] | np.ndarray, runs_dir: str | Path = "runs", *,
                out: str | Path | None = None, probabilities: bool = False) -> Predictions:
    """Predict image files (or a numpy array of images, see `array_images`: ids are the row indices "0", "1",
    ...) with a finished run (or blend ensemble) named `run` under runs_dir (or a run folder); the run's saved
    decisions (from `submit --tune`) pick the labels. With `out`, the CSV is written atomically. Raises
    CompetitionError naming the run, path or image at fault (check_inputs: no images, an unreadable one, a
    missing fold model, transparent images); nothing is written then. Memory is bounded: CHUNK images are
    decoded and predicted at a time (benchmarks/predict_memory.py measures it)."""
    if isinstance(inputs, np.ndarray):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="competition-predict-") as folder:
            return predict_run(run, array_images(inputs, Path(folder)), runs_dir, out=out,
                               probabilities=probabilities)
    from competition.data import image_id
    from competition.files import check_output, csv_header, write_text
    from competition.runs import resolve_run
    from competition.runs.decisions import read_decisions
    from competition.runs.record import RunRecord
    from competition.runs.run import member_problem

    run_dir = resolve_run(run, runs_dir)
    record = RunRecord.read(run_dir)
    classes = list(record.classes)
    stale = member_problem(run_dir)  # an ensemble predicts through its members: as they were when it was built
    if stale is not None:
        raise CompetitionError(stale)
    if out is not None:
        check_output(out, protected=output_guards(run_dir, inputs), what="a predictions CSV (id,label,...)",
                     ours=lambda p: (csv_header(p) or [])[:2] == ["id", "label"])
    layout = record.contest_layout()
    paths = image_files(inputs, layout)
    ids = [image_id(p) for p in paths]
    check_unique_ids(paths, ids)
    notes = check_inputs(run_dir, paths)
    proba = run_probabilities(run_dir, paths)
    decisions = read_decisions(run_dir)
    from competition.tuning import tuner_from_decisions  # scikit-learn: seconds to import, so after the checks

    multilabel = layout.label_separator is not None
    tuner = None if decisions is None else tuner_from_decisions(decisions, multilabel=multilabel)
    if multilabel:  # each label at its (tuned) threshold
        from competition.data.contest import label_texts
        from competition.tuning import label_sets

        chosen = label_sets(proba, tuner, at_least_one=not layout.allows_no_label)
        labels = list(label_texts(chosen, classes, layout.label_separator))
    else:  # the decisions submit --tune saved (offsets, grade thresholds), else argmax
        labels = [classes[k] for k in (tuner.predict(proba) if tuner is not None else proba.argmax(axis=1))]
    result = Predictions(ids, proba, labels, classes, notes)
    if out is not None:
        write_text(Path(out), result.frame(probabilities).to_csv(index=False))
    return result
