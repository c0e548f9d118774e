"""A trained run on new images: `predict_run` decodes the images as the run's models saw theirs (`decode_chunks`:
its size, channels, intensity window, crop and standardisation, through the decode cache, in chunks, so memory
stays bounded), averages every fold model's probabilities with the run's TTA, as the run's own test
predictions were made, applies the run's saved decisions (`submit --tune`), and writes id,label[,one
probability column per class]. An ensemble of blend weights (mean, weighted, caruana)
predicts through its members' runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError

CHUNK = 512  # images decoded and predicted at a time


@dataclass
class Predictions:
    """ids (n,), probabilities float32 (n, n_classes), labels (n,) after the saved decisions, classes."""

    ids: list[str]
    proba: np.ndarray
    labels: list[str]
    classes: list[str]

    def frame(self, probabilities: bool = False) -> pd.DataFrame:
        """id,label and, with `probabilities`, one column per class."""
        frame = pd.DataFrame({"id": self.ids, "label": self.labels})
        if probabilities:
            for k, name in enumerate(self.classes):
                frame[name] = self.proba[:, k]
        return frame


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named by `inputs`: files as given; folders' images (sorted, hidden files skipped); a
    contest folder (with test/) stands for its test images. Raises CompetitionError when none is found or a
    path does not exist."""
    from competition.data import is_image

    found: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir() and (path / "test").is_dir() and (path / "sample_submission.csv").is_file():
            path = path / "test"
        if path.is_dir():
            found += [p for p in sorted(path.iterdir()) if not p.name.startswith(".") and is_image(p)]
        elif path.is_file():
            found.append(path)
        else:
            raise CompetitionError(f"{path}: no such image file or folder")
    if not found:
        raise CompetitionError(f"{', '.join(map(str, inputs))}: no images found")
    return found


def _fold_models(run_dir: Path, n_folds: int) -> list[Any]:
    import keras

    import_module("competition.model.layers")  # registers the layer of models saved by earlier versions
    from competition.runs.folder import fold_model_path

    models = []
    for k in range(n_folds):
        path = fold_model_path(run_dir, k)
        if not path.is_file():
            raise CompetitionError(f"{path}: fold model missing; the run has no finished fold {k + 1}")
        try:
            models.append(keras.saving.load_model(path))
        except Exception as exc:  # a damaged or foreign file: Keras raises many kinds
            raise CompetitionError(f"{path}: cannot load the fold model ({str(exc).splitlines()[0][:200]})") from None
    return models


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
    import yaml

    from competition.predict import predict_tta
    from competition.recipe import Recipe
    from competition.runs import resolve_run
    from competition.runs.folder import read_meta, read_recipe_text
    from competition.runtime import import_tensorflow

    meta = read_meta(run_dir)
    if meta.get("kind") == "ensemble":
        weights = meta.get("weights")
        if weights is None:
            raise CompetitionError(f"ensemble '{meta.get('name')}': method {meta.get('method')!r} has no blend "
                                   "weights; predict supports model runs and mean, weighted and caruana ensembles")
        members = [resolve_run(m["name"] if isinstance(m, dict) else m, run_dir.parent) for m in meta["members"]]
        return np.sum([w * run_probabilities(m, paths) for w, m in zip(weights, members, strict=True) if w],
                      axis=0).astype(np.float32)
    recipe = Recipe.model_validate(yaml.safe_load(read_recipe_text(run_dir) or "{}"))
    import_tensorflow()
    models = _fold_models(run_dir, recipe.cv.folds)
    parts = []
    for images in decode_chunks(paths, recipe):
        parts.append(np.mean([predict_tta(model, images, recipe.tta)[1] for model in models], axis=0))
    return np.concatenate(parts).astype(np.float32)


def predict_run(run: str | Path, inputs: Sequence[str | Path], runs_dir: str | Path = "runs", *,
                out: str | Path | None = None, probabilities: bool = False) -> Predictions:
    """Predict image files with a finished run (or blend ensemble) named `run` under runs_dir (or a run
    folder); the run's saved decisions (from `submit --tune`) pick the labels. With `out`, the CSV is written
    atomically. Raises CompetitionError naming the run, path or image at fault; nothing is written then."""
    from competition.data import image_id
    from competition.files import write_text
    from competition.metrics import log_proba
    from competition.runs import resolve_run
    from competition.runs.folder import read_decisions, read_meta

    run_dir = resolve_run(run, runs_dir)
    classes = list(read_meta(run_dir)["classes"])
    paths = image_files(inputs)
    ids = [image_id(p) for p in paths]
    proba = run_probabilities(run_dir, paths)
    decisions = read_decisions(run_dir)
    scores = log_proba(proba)
    if decisions is not None:
        scores = scores + np.asarray(decisions["offsets"], dtype=np.float64)
    labels = [classes[k] for k in scores.argmax(axis=1)]
    result = Predictions(ids, proba, labels, classes)
    if out is not None:
        write_text(Path(out), result.frame(probabilities).to_csv(index=False))
    return result
