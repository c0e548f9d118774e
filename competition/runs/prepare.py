"""A training run from recipe to finished folder: `prepare_run` (validate, index the contest, decode once,
split, check the model, lay out the folder), `train_fold` for each pending fold (in this process, a fresh
process or a Ray task: competition.executors), then `finish_run` (gather the folds' OOF and test
probabilities, run.json last). A worker elsewhere rebuilds the prepared run from its folder with
`load_prepared`."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.console import Progress, peak_rss_mb, rss_mb, say
from competition.errors import CompetitionError, OptionError
from competition.files import check_output
from competition.recipe import Recipe, check_with_contest
from competition.runs import decisions, fold_files, folder, locking
from competition.runs.run import folds_frame, save_run, test_images_problem, test_images_record


# What a fold saw, recorded in its done.json ("data"): a fold is reused only when every part is as now.
DATA_PARTS = {"train_ids": "training ids", "train_labels": "training labels", "folds": "fold assignment",
              "train_images": "training images", "test_ids": "test ids", "test_images": "test images"}


def data_record(contest: Any, folds: np.ndarray, size: tuple[int, int], channels: int) -> dict[str, Any]:
    """The data a fold of this run trains and predicts on, as hashes (DATA_PARTS): training ids, their labels
    and fold assignment, the decoded images' content key (competition.data.cache.content_key: the files'
    bytes, size and channels) for train and for test, and the test ids in test.npy's row order."""
    from competition.data.cache import content_key

    def digest(values: Any) -> str:
        return hashlib.sha256(json.dumps([str(v) for v in values]).encode()).hexdigest()[:16]

    train, test = contest.train, contest.test
    return {"train_ids": digest(train["id"]), "train_labels": digest(train["label"]),
            "folds": digest([f"{i}:{int(k)}" for i, k in zip(train["id"], folds, strict=True)]),
            "train_images": content_key(train["path"].tolist(), size, channels), "test_ids": digest(test["id"]),
            "test_images": content_key(test["path"].tolist(), size, channels),
            "n_train": len(train), "n_test": len(test)}


@dataclass
class PreparedRun:
    """A validated recipe with its data decoded (uint8 x (n, h, w, c), x_test), folds made (int fold per
    training row) and run folder ready: what every fold needs. `data` is what the folds see (data_record);
    `lock` the run folder's lock when this process trains the run (released by `release`)."""

    recipe: Recipe
    recipe_hash: str
    run_dir: Path
    contest: Any
    folds: np.ndarray
    x: np.ndarray | None
    x_test: np.ndarray | None
    deterministic: bool = False
    data: dict[str, Any] | None = None
    lock: Any = None
    cv: dict[str, Any] | None = None  # the folds' choice and leak figures (competition.folds.SchemeChoice.record)
    embedded: tuple[Any, np.ndarray] | None = None  # a scikit-learn kind's (transformer, train and test embedding)
    subjects: np.ndarray | None = None  # subject id per training row (competition.folds.SchemeChoice.subjects)
    teacher: Path | None = None  # the checked run that pseudo-labels the test images (teacher_run)
    test_images: dict[str, Any] | None = None  # the test files' fingerprint (runs.run.test_images_record), for run.json

    @property
    def classes(self) -> list[str]:
        return self.contest.classes

    @property
    def metric(self) -> Any:
        """The contest metric (competition.metrics.Metric of recipe.data.metric)."""
        from competition.metrics import get_metric

        return get_metric(self.recipe.data.metric)

    @property
    def y(self) -> np.ndarray:
        return self.contest.y()

    def fold_problem(self, k: int) -> str | None:
        """Why fold k (0-based) must be trained: "not finished" (no complete fold folder of this recipe) or
        "data changed (test images, ...)" (its done.json saw other data than now); None when it can be reused."""
        if not fold_files.fold_is_done(self.run_dir, k, self.recipe_hash):
            return "not finished"
        if self.data is None:
            return None
        try:
            seen = fold_files.read_fold_info(self.run_dir, k).get("data")
        except (OSError, ValueError, AttributeError, CompetitionError):
            return "not finished"
        if not isinstance(seen, dict):
            return "data changed (what it was trained on is not recorded: an earlier version trained it)"
        changed = [words for key, words in DATA_PARTS.items() if seen.get(key) != self.data.get(key)]
        return f"data changed ({', '.join(changed)})" if changed else None

    def pending(self) -> list[int]:
        """Folds to train (0-based): without a finished fold folder of this recipe, or trained on other data
        than now (training ids, labels, fold assignment, images; test ids, images)."""
        return [k for k in range(self.recipe.cv.folds) if self.fold_problem(k) is not None]

    def free_pixels(self) -> None:
        """Let go of the decoded images (x, x_test) when the folds train elsewhere: fold processes and Ray
        workers read them from the decode cache (on 6,400 RGB images at 128 px, 370 MB less at the command's
        peak; benchmarks/results.md, row 8)."""
        self.x = self.x_test = None
        gc.collect()

    def release(self) -> None:
        """Release the run folder's lock (if this process holds it)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def prepare_run(recipe: Recipe, runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
                name: str | None = None, overwrite: bool = False, deterministic: bool = False,
                console: Any = None) -> PreparedRun:
    """Validate, index, split and decode; everything that can fail on the user's input fails before the run
    folder exists. Then the folder gets the resolved recipe, its hash and the fold of every image.

    Raises CompetitionError (OptionError for `name`, `data_root`) naming the bad value."""
    from competition.data import load_contest, print_class_counts

    recipe, name = _checked_before_decoding(recipe, data_root, name, deterministic)
    run_dir = Path(runs_dir) / name
    # never in the contest folder, never over a folder of the user's, even with overwrite (that replaces runs)
    check_output(run_dir, folder=True, option="runs_dir", protected=[("the contest folder", recipe.data.root)],
                 ours=lambda found: folder.holds(found) != "files that are not a run")
    locking.refuse_if_locked(run_dir)  # another process trains it: refuse at once, before decoding
    size, channels = recipe.data.image_size, recipe.data.channels
    contest, x, x_test, skipped = load_contest(recipe.data.root, size, channels, on_bad=recipe.data.on_bad_image,
                                                 options=recipe.data.decode_options(), layout=recipe.data.layout())
    check_with_contest(recipe, contest, console)  # balance weights per class, folds' checks; the 16-bit mapping
    if console is not None:
        print_class_counts(contest, console)
    choice = _chosen_folds(recipe, contest, console)
    _check_fits(recipe, x.shape[1:], contest, choice.folds, deterministic)
    test_images = test_images_record(contest.test["path"].tolist())
    teacher = teacher_run(run_dir, recipe, choice.folds, contest, test_images)  # same folds and test: before the folder

    recipe_hash = recipe.hash()
    data = data_record(contest, choice.folds, size, channels)
    lock = locking.lock_run(run_dir)  # held until train_run ends (or this process does)
    try:
        _write_run_folder(run_dir, recipe, recipe_hash, overwrite, contest, choice, skipped)
    except BaseException:
        lock.release()
        raise
    prepared = PreparedRun(recipe, recipe_hash, run_dir, contest, choice.folds, x, x_test, deterministic, data, lock,
                           cv=choice.record(), subjects=choice.subjects, teacher=teacher,
                           test_images=test_images)
    for k in range(recipe.cv.folds):
        problem = prepared.fold_problem(k)
        if problem is not None and problem.startswith("data changed"):
            say(console, f"fold {k}: {problem}, trained again")
    return prepared


def _checked_before_decoding(recipe: Recipe, data_root: str | Path | None, name: str | None,
                             deterministic: bool) -> tuple[Recipe, str]:
    """prepare_run's checks that need no image: the contest folder given, the run name, TTA against the image
    size, a backbone's weights file against its architecture. Returns the recipe with `data_root` applied and
    the run's name."""
    from competition.tta import check_tta

    if data_root is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"root": Path(data_root)})})
    if recipe.data.root is None:
        raise OptionError("data_root", "no contest folder; set recipe.data.root or give a contest folder")
    name = name or recipe.name
    problem = folder.run_name_problem(name)
    if problem:
        raise OptionError("name", problem)
    check_tta(recipe.tta, recipe.data.image_size)
    backbone = recipe.loaded_backbone  # the network's, or a `backbone` embedding's
    if backbone is not None and backbone.weights != "none":
        from competition.model.backbones import check_weights
        from competition.model.frozen import embedding_keys

        setup_tensorflow(deterministic)  # threads pinned before TensorFlow starts, as check_model does
        with embedding_keys() if backbone is not recipe.model else nullcontext():
            check_weights(backbone, recipe.data.image_size, recipe.data.channels)  # before decoding: the file fits
    return recipe, name


def _chosen_folds(recipe: Recipe, contest: Any, console: Any) -> Any:
    """The fold scheme (competition.folds.choose_scheme) as the recipe's cv asks; its lines said, its warning
    on stderr. Returns the SchemeChoice."""
    from rich.markup import escape as escape_markup

    from competition.folds import choose_scheme

    choice = choose_scheme(contest.train, contest.test, n_folds=recipe.cv.folds, seed=recipe.cv.seed,
                           scheme=recipe.cv.scheme, group_by=recipe.cv.group_by,
                           threshold=recipe.cv.near_duplicate_threshold,
                           targets=(contest.y(), contest.classes) if contest.multilabel else None)
    for line in choice.lines():
        say(console, escape_markup(line))
    if choice.warning:
        print(f"warning: {choice.warning}", file=sys.stderr)
    return choice


def _check_fits(recipe: Recipe, shape: tuple[int, ...], contest: Any, folds: np.ndarray,
                deterministic: bool) -> None:
    """The model fits the data, before the run folder: a network builds and compiles on this input shape; a
    scikit-learn kind has enough rows in its smallest training fold (e.g. knn's neighbour count)."""
    if recipe.model.kind == "network":
        check_model(recipe, shape, len(contest.classes), deterministic)
        return
    from competition.model.classic import check_size

    check_size(recipe.model.kind, recipe.model.params, int(len(folds) - np.bincount(folds).max()),
               len(contest.train) + len(contest.test))


def _write_run_folder(run_dir: Path, recipe: Recipe, recipe_hash: str, overwrite: bool, contest: Any, choice: Any,
                      skipped: list[Any]) -> None:
    """The run folder made (or kept, for a rerun of the same recipe) with the resolved recipe, its hash, every
    image's fold and subject, and the unreadable training images skipped."""
    from competition.data import write_skipped

    folder.prepare_folder(run_dir, recipe_hash, overwrite)
    folder.write_recipe(run_dir, recipe.to_yaml(), recipe_hash)
    folder.write_folds(run_dir, folds_frame(contest.classes, contest.train["id"].to_numpy(), contest.y(), choice.folds,
                                            contest.train["path"].to_numpy(), root=os.path.abspath(contest.root),
                                            subjects=choice.subjects, separator=contest.separator))
    folder.skipped_file(run_dir).unlink(missing_ok=True)
    if skipped:
        write_skipped(folder.skipped_file(run_dir), skipped)
        print(f"note: skipped {len(skipped)} unreadable training image(s) (data.on_bad_image: skip); "
              f"listed in {folder.skipped_file(run_dir)}", file=sys.stderr)


def setup_tensorflow(deterministic: bool) -> None:
    """TensorFlow imported and set up for this process; deterministic ops and pinned threads when asked."""
    from competition.runtime import import_tensorflow, pin_threads_for_determinism

    if deterministic:
        pin_threads_for_determinism()
    import_tensorflow()
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()


def check_model(recipe: Recipe, input_shape: tuple[int, ...], n_classes: int, deterministic: bool) -> None:
    """Build the model once: missing or unloadable weights fail here, not at fold 1."""
    setup_tensorflow(deterministic)
    import keras

    from competition.model.backbones import build_model

    build_model(recipe.model, input_shape, n_classes)
    keras.backend.clear_session()


def train_fold(prepared: PreparedRun, k: int, progress: Progress | None = None,
               features: dict[str, np.ndarray] | None = None, callbacks: tuple[Any, ...] = ()) -> Any:
    """Train and save fold k of a prepared run (fold files written atomically, done.json last; history.csv
    after every epoch, so the fold can be watched); returns the engine's FoldResult."""
    if prepared.recipe.model.kind != "network":
        return _fit_classic_fold(prepared, k)
    import keras

    from competition.engine.fold import fit_fold
    from competition.runtime import thread_settings

    t0 = time.perf_counter()
    val = np.flatnonzero(prepared.folds == k)
    fold_files.start_fold(prepared.run_dir, k)
    fitted = fit_fold(prepared.recipe, prepared.x, prepared.y, val, prepared.x_test, prepared.classes, k, progress,
                      features=features, callbacks=callbacks,
                      on_epoch=lambda rows: fold_files.write_history(prepared.run_dir, k, rows),
                      pseudo=pseudo_labels(prepared, k))
    fold_files.save_fold(prepared.run_dir, k, arrays={name: getattr(fitted, name) for name in folder.ARRAYS},
                     history=fitted.history, model=fitted.model,
                     info={"recipe_hash": prepared.recipe_hash, "data": prepared.data, "best_epoch": fitted.best_epoch,
                           "best_score": fitted.best_score, "metric": prepared.metric.name,
                           "seconds": round(time.perf_counter() - t0, 2),
                           "rss_mb": round(rss_mb(), 1), "threads": thread_settings(),
                           "peak_rss_mb": round(peak_rss_mb(), 1)})
    keras.backend.clear_session()
    gc.collect()
    return fitted


def teacher_run(run_dir: Path, recipe: Recipe, folds: np.ndarray, contest: Any,
                test_images: dict[str, Any] | None = None) -> Path | None:
    """The run whose fold models label the test images for pseudo-labelling (recipe.train.pseudo_label.run),
    checked: a finished model run beside this one, trained on the same training ids and folds and the same test
    ids, and, when both fingerprints are known (`test_images`: runs.run.test_images_record), the same test
    images. None without pseudo-labelling. CompetitionError of one line naming the key otherwise."""
    config = recipe.train.pseudo_label
    if config is None:
        return None
    run_dir = Path(run_dir).parent / config.run
    key = "recipe.train.pseudo_label.run"
    if not folder.is_finished(run_dir):
        raise CompetitionError(f"{key}: {config.run!r}: no finished run at {run_dir}")
    meta = folder.read_meta(run_dir)
    if meta.get("kind") != "model":
        raise CompetitionError(f"{key}: {config.run!r} is an ensemble; name a model run (its fold models label)")
    theirs = folder.read_folds(run_dir)
    if (theirs["id"].tolist() != contest.train["id"].astype(str).tolist()
            or theirs["fold"].tolist() != [int(f) for f in folds]):
        raise CompetitionError(f"{key}: {config.run!r} was trained on other images or folds than this run; "
                               "pseudo-labels must come from the same folds (train both with the same cv)")
    if folder.read_test_ids(run_dir).tolist() != contest.test["id"].astype(str).tolist():
        raise CompetitionError(f"{key}: {config.run!r} predicted other test images than this contest's")
    if test_images is not None and test_images_problem(meta, test_images) is not None:
        raise CompetitionError(f"{key}: {config.run!r} predicted the test images as they were before they changed "
                               f"({test_images_problem(meta, test_images)}); train {config.run!r} again first")
    return run_dir


def pseudo_labels(prepared: PreparedRun, k: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(test rows, int labels, weight) for fold k: the test images that fold k of the teacher run predicted with
    probability >= threshold, labelled so. Fold k's teacher never saw fold k's validation labels (same folds),
    so the student's OOF stays out-of-fold. None without pseudo-labelling."""
    config = prepared.recipe.train.pseudo_label
    if config is None:
        return None
    proba = fold_files.load_fold(prepared.teacher, k, len(prepared.classes))["test"]
    rows = np.flatnonzero(proba.max(axis=1) >= config.threshold)
    return rows, proba[rows].argmax(axis=1), float(config.weight)


def _fit_classic_fold(prepared: PreparedRun, k: int) -> Any:
    """Fold k of a scikit-learn model kind (competition.model.classic): the embedding of every training and test
    image is made once per run (kept on `prepared`), the fold's estimator fitted in seconds and saved as the
    network folds are (one history row: the fold's validation macro F1 and contest metric)."""
    from competition.metrics import macro_f1
    from competition.model.classic import FoldFit, embed, fit_fold

    t0 = time.perf_counter()
    recipe, y = prepared.recipe, prepared.y
    if prepared.embedded is None:
        images = np.concatenate([prepared.x, prepared.x_test]) if len(prepared.x_test) else prepared.x
        prepared.embedded = embed(images, recipe.model.embedding, recipe.cv.seed)
    transformer, z_all = prepared.embedded
    val = np.flatnonzero(prepared.folds == k)
    fold_files.start_fold(prepared.run_dir, k)
    try:
        oof, test, model = fit_fold(recipe.model.kind, recipe.model.params, transformer, z_all[: len(y)], y, val,
                                    z_all[len(y):], len(prepared.classes), (recipe.cv.seed * 1000 + k) % 2**32)
    except (ValueError, TypeError) as exc:  # a parameter that fits 12 points but not this fold (n_neighbors)
        raise CompetitionError(f"recipe.model.params: fold {k}: {' '.join(str(exc).split())}") from None
    metric = prepared.metric
    score = metric(y[val], oof)
    seconds = round(time.perf_counter() - t0, 2)
    history = pd.DataFrame([{"phase": 0, "epoch": 1, "val_macro_f1": macro_f1(y[val], oof), metric.monitor: score,
                             "seconds": seconds}])
    fold_files.save_fold(prepared.run_dir, k, arrays={"oof": oof, "test": test, "oof_plain": oof, "test_plain": test},
                     history=history, model=model,
                     info={"recipe_hash": prepared.recipe_hash, "data": prepared.data, "best_epoch": 1,
                           "best_score": score, "metric": metric.name, "seconds": seconds,
                           "rss_mb": round(rss_mb(), 1),
                           "peak_rss_mb": round(peak_rss_mb(), 1)})
    return FoldFit(oof, test, model, score)


def epoch_selection(run_dir: Path, done: list[dict[str, Any]], metric: Any = None) -> dict[str, Any] | None:
    """How much keeping each fold's best epoch (chosen on the rows it then predicts) can flatter the OOF: the
    folds' mean validation score (the contest `metric`, competition.metrics.Metric; None: macro F1) at their
    kept epoch against at their last epoch, from history.csv and done.json. {"kept", "last", "optimism" (how
    much better kept is than last, in the metric's direction: an upper bound on the selection's own gain),
    "line"}; None when a fold's history is missing."""
    from competition.metrics import get_metric

    metric = metric or get_metric(None)
    histories = fold_files.read_histories(run_dir)
    if len(histories) != len(done) or any(metric.monitor not in h for h in histories.values()):
        return None
    kept = [float(d.get("best_score", d.get("best_macro_f1", np.nan))) for d in done]
    last = [float(h[metric.monitor].iloc[-1]) for _, h in sorted(histories.items())]
    if not np.all(np.isfinite(kept + last)):
        return None
    gap = float(metric.oriented(np.mean(kept)) - metric.oriented(np.mean(last)))
    return {"kept": round(float(np.mean(kept)), 4), "last": round(float(np.mean(last)), 4), "optimism": round(gap, 4),
            "line": f"kept epochs: folds' val {metric.title} {np.mean(kept):.4f} at the kept epoch, "
                    f"{np.mean(last):.4f} at the last; picking the epoch on the rows it predicts can flatter the OOF "
                    f"by up to {gap:+.4f}"}


def load_prepared(run_dir: str | Path, *, deterministic: bool = False) -> PreparedRun:
    """A prepared run rebuilt from its folder (for a worker on another process or machine): the recipe and
    fold assignment come from the folder, the pixels from the decode cache."""
    from competition.data import load_contest

    run_dir = Path(run_dir)
    recipe = folder.read_recipe(run_dir)
    size, channels = recipe.data.image_size, recipe.data.channels
    contest, x, x_test, _ = load_contest(recipe.data.root, size, channels, on_bad=recipe.data.on_bad_image,
                                                 options=recipe.data.decode_options(), layout=recipe.data.layout())
    assignment = folder.read_folds(run_dir)
    if assignment["id"].tolist() != contest.train["id"].tolist():
        raise CompetitionError(f"{run_dir}: fold assignment does not match the images in {recipe.data.root}")
    folds = assignment["fold"].to_numpy(dtype=np.int64)
    setup_tensorflow(deterministic)  # the model was checked when the run was prepared
    return PreparedRun(recipe, folder.stored_hash(run_dir) or "", run_dir, contest, folds, x, x_test, deterministic,
                       data_record(contest, folds, size, channels),
                       subjects=assignment["subject"].to_numpy() if "subject" in assignment else None,
                       teacher=teacher_run(run_dir, recipe, folds, contest))


def finish_run(prepared: PreparedRun, started: float, console: Any = None) -> Path:
    """Gather every fold's files into the run's OOF and test probabilities; run.json last.

    Raises CompetitionError naming the folds that did not finish."""
    from competition.folds import describe_scheme
    from competition.metrics import macro_f1

    recipe, folds, y = prepared.recipe, prepared.folds, prepared.y
    missing = prepared.pending()
    if missing:
        raise CompetitionError(f"{prepared.run_dir}: fold(s) {', '.join(str(k) for k in missing)} did not finish; "
                               "rerun the same command to train only those")
    shape = (len(y), len(prepared.classes))
    out = {"oof": np.zeros(shape, np.float32), "oof_plain": np.zeros(shape, np.float32)}
    tests: dict[str, list[np.ndarray]] = {"test": [], "test_plain": []}
    for k in range(recipe.cv.folds):
        files = fold_files.load_fold(prepared.run_dir, k, len(prepared.classes))
        val = folds == k
        out["oof"][val], out["oof_plain"][val] = files["oof"], files["oof_plain"]
        tests["test"].append(files["test"])
        tests["test_plain"].append(files["test_plain"])
    tta = {"transforms": list(recipe.tta), "oof_macro_f1_plain": macro_f1(y, out["oof_plain"]),
           "oof_macro_f1_tta": macro_f1(y, out["oof"])}
    if recipe.tta:
        say(console, f"TTA {recipe.tta}: OOF macro F1 {tta['oof_macro_f1_plain']:.4f} without, "
                     f"{tta['oof_macro_f1_tta']:.4f} with")
    done = [fold_files.read_fold_info(prepared.run_dir, k) for k in range(recipe.cv.folds)]
    selection = epoch_selection(prepared.run_dir, done, prepared.metric) if recipe.model.kind == "network" else None
    if selection is not None:
        say(console, selection["line"])
    written = save_run(
        prepared.run_dir, name=prepared.run_dir.name, kind="model", classes=prepared.classes,
        ids=prepared.contest.train["id"].to_numpy(), y=y, folds=folds, oof=out["oof"],
        test=np.mean(tests["test"], axis=0), test_ids=prepared.contest.test["id"].to_numpy(),
        oof_plain=out["oof_plain"], test_plain=np.mean(tests["test_plain"], axis=0),
        recipe_hash=prepared.recipe_hash,
        scheme=prepared.cv["name"] if prepared.cv else describe_scheme(
            recipe.cv.folds, recipe.cv.seed, recipe.cv.group_by, recipe.cv.near_duplicate_threshold),
        cv=prepared.cv,
        paths=prepared.contest.train["path"].to_numpy(),
        subjects=prepared.subjects,
        extra={"recipe": recipe.name, "data_root": os.path.abspath(prepared.contest.root),
               "sample_submission": str(prepared.contest.sample_path),
               "fold_seconds": [d.get("seconds") for d in done], "fold_rss_mb": [d.get("rss_mb") for d in done],
               "wall_seconds": round(time.perf_counter() - started, 2), "deterministic": prepared.deterministic,
               "fold_threads": [d.get("threads") for d in done], "tta": tta, "model_kinds": [recipe.model.kind],
               "epoch_selection": selection,
               **({"layout": recipe.data.layout().declared()} if recipe.data.layout().declared() else {}),
               **({"contest_metric": recipe.data.metric} if recipe.data.metric != "macro_f1" else {}),
               **({"positive_class": recipe.data.positive_class} if recipe.data.positive_class else {}),
               **({"test_images": prepared.test_images} if prepared.test_images is not None else {})},
    )
    if decisions.remove_stale_decisions(prepared.run_dir):
        say(console, f"decisions.json removed: tuned on the OOF of an earlier training of this run; run `competition "
                     f"submit {prepared.run_dir.name} --tune` to tune again")
    return written
