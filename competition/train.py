"""Training: k fold models per recipe, each chosen at its best validation macro F1, OOF and test kept.

`train_run` is the whole stage: index the contest, decode once, split, then for each fold `fit_fold`
(build, then one `fit_phase` per recipe phase) and keep its out-of-fold and test probabilities.
A fold is written atomically with done.json last, so a rerun of the same recipe skips finished folds.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.files import read_npy, write_json, write_npy, write_text
from competition.recipe import PhaseConfig, Recipe


@dataclass
class FoldResult:
    oof: np.ndarray  # probabilities for the fold's validation rows
    test: np.ndarray
    history: pd.DataFrame
    best_epoch: int
    best_macro_f1: float
    model: Any = None


@dataclass
class Progress:
    """Optional rich progress: folds, epochs and a live macro F1."""

    bar: Any = None
    fold_task: Any = None
    epoch_task: Any = None
    fold: int = 0
    best: float = field(default=float("nan"))

    def epoch(self, epoch: int, total: int, f1: float) -> None:
        if self.bar is None:
            return
        self.best = f1 if not self.best == self.best else max(self.best, f1)  # nan-safe max
        self.bar.update(
            self.epoch_task,
            completed=epoch,
            total=total,
            description=f"fold {self.fold + 1} · epoch {epoch}/{total} · val macro F1 {f1:.3f} (best {self.best:.3f})",
        )


# ---------------------------------------------------------------- keras pieces


def make_optimizer(phase: PhaseConfig) -> Any:
    import keras

    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "adamax": keras.optimizers.Adamax,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return classes[phase.optimizer](learning_rate=phase.learning_rate)


def _batches_class() -> type:
    import keras

    from competition.augment import augment_batch

    class TrainBatches(keras.utils.PyDataset):
        """Shuffled (or class-resampled) batches, augmented on the fly in worker threads."""

        def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, pipeline: Any, resample: Any,
                     class_weight: dict[int, float] | None, seed: int, workers: int) -> None:
            super().__init__(workers=workers, use_multiprocessing=False)
            self.x, self.y, self.batch_size = x, y, batch_size
            self.pipeline, self.resample, self.rng = pipeline, resample, np.random.default_rng(seed)
            self.weights = None
            if class_weight:
                self.weights = np.array([class_weight.get(int(c), 1.0) for c in y], dtype=np.float32)
            self.on_epoch_end()

        def __len__(self) -> int:
            return int(np.ceil(len(self.order) / self.batch_size))

        def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
            rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
            images = self.x[rows]
            if self.pipeline is not None:
                images = augment_batch(self.pipeline, images)
            if self.weights is not None:
                return images, self.y[rows], self.weights[rows]
            return images, self.y[rows]

        def on_epoch_end(self) -> None:
            self.order = self.resample(self.rng) if self.resample else self.rng.permutation(len(self.y))

    return TrainBatches


def _monitor_class() -> type:
    import keras

    from competition.metrics import macro_f1
    from competition.predict import predict_proba

    class MacroF1Monitor(keras.callbacks.Callback):
        """Scores each epoch on the fold's validation images by macro F1 (the contest metric), keeps the best
        weights across all phases, and stops a phase after `patience` epochs without improvement."""

        def __init__(self, x_val: np.ndarray, y_val: np.ndarray, patience: int | None, progress: Progress,
                     state: dict[str, Any], phase: int, epochs: int) -> None:
            super().__init__()
            self.x_val, self.y_val, self.patience, self.progress = x_val, y_val, patience, progress
            self.state, self.phase, self.epochs = state, phase, epochs
            self.waited = 0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            proba = predict_proba(self.model, self.x_val)
            f1 = macro_f1(self.y_val, proba)
            val_loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(self.y_val)), self.y_val], 1e-7, 1))))
            self.state["epoch"] += 1
            row = {"phase": self.phase, "epoch": self.state["epoch"], **{k: float(v) for k, v in (logs or {}).items()},
                   "val_loss": val_loss, "val_macro_f1": f1, "seconds": time.perf_counter() - self.started}
            self.state["history"].append(row)
            if f1 > self.state["best_f1"]:
                self.state.update(best_f1=f1, best_epoch=self.state["epoch"], best_weights=self.model.get_weights())
                self.waited = 0
            else:
                self.waited += 1
                if self.patience is not None and self.waited >= self.patience:
                    self.model.stop_training = True
            self.progress.epoch(epoch + 1, self.epochs, f1)

    return MacroF1Monitor


def fit_phase(model: Any, recipe: Recipe, phase_index: int, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
              y_val: np.ndarray, state: dict[str, Any], progress: Progress, seed: int) -> None:
    """One phase: set what trains, compile with the phase's optimizer, fit with the macro-F1 monitor."""
    from competition.augment import build_pipeline
    from competition.backbones import set_trainable
    from competition.balance import make_balance

    phase = recipe.train.phases[phase_index]
    set_trainable(model, phase.trainable)
    model.compile(optimizer=make_optimizer(phase), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    balance = make_balance(recipe.balance.method, y, int(y_val.max(initial=y.max()) + 1))
    pipeline = build_pipeline(recipe.augment, seed=seed)
    monitor = _monitor_class()(x_val, y_val, recipe.train.patience, progress, state, phase_index, phase.epochs)
    if pipeline is None and balance.resample is None:
        # Plain arrays: Keras's fastest path (no Python per batch).
        model.fit(x, y, batch_size=recipe.train.batch_size, epochs=phase.epochs, shuffle=True,
                  class_weight=balance.class_weight, callbacks=[monitor], verbose=0)
    else:
        batches = _batches_class()(x, y, recipe.train.batch_size, pipeline, balance.resample,
                                   balance.class_weight, seed, workers=2)
        model.fit(batches, epochs=phase.epochs, callbacks=[monitor], verbose=0)


def fit_fold(recipe: Recipe, x: np.ndarray, y: np.ndarray, val: np.ndarray, x_test: np.ndarray,
             n_classes: int, fold: int, progress: Progress | None = None) -> FoldResult:
    """Train one fold model through all phases; return it at its best validation macro F1."""
    import keras

    from competition.backbones import build_model
    from competition.predict import predict_proba

    progress = progress or Progress()
    seed = recipe.cv.seed * 1000 + fold
    keras.utils.set_random_seed(seed)
    train_rows = np.setdiff1d(np.arange(len(y)), val)
    model = build_model(recipe.model, x.shape[1:], n_classes)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_f1": -1.0, "best_epoch": 0, "best_weights": None}
    for phase_index in range(len(recipe.train.phases)):
        fit_phase(model, recipe, phase_index, x[train_rows], y[train_rows], x[val], y[val], state, progress, seed)
    model.set_weights(state["best_weights"])
    return FoldResult(
        oof=predict_proba(model, x[val]),
        test=predict_proba(model, x_test),
        history=pd.DataFrame(state["history"]),
        best_epoch=state["best_epoch"],
        best_macro_f1=state["best_f1"],
        model=model,
    )


# ---------------------------------------------------------------- fold files and resume


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold_{fold}"


def fold_is_done(run_dir: Path, fold: int, recipe_hash: str) -> bool:
    done = fold_dir(run_dir, fold) / "done.json"
    if not done.is_file():
        return False
    try:
        info = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    files = ("oof.npy", "test.npy", "history.csv", "model.keras")
    return info.get("recipe_hash") == recipe_hash and all((fold_dir(run_dir, fold) / f).is_file() for f in files)


def save_fold(run_dir: Path, fold: int, result: FoldResult, recipe_hash: str, seconds: float) -> None:
    folder = fold_dir(run_dir, fold)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    write_npy(folder / "oof.npy", result.oof)
    write_npy(folder / "test.npy", result.test)
    write_text(folder / "history.csv", result.history.to_csv(index=False))
    tmp_model = folder / ".model.tmp.keras"
    result.model.save(tmp_model)
    tmp_model.replace(folder / "model.keras")
    write_json(folder / "done.json", {"recipe_hash": recipe_hash, "best_epoch": result.best_epoch,
                                      "best_macro_f1": result.best_macro_f1, "seconds": round(seconds, 2)})


def load_fold(run_dir: Path, fold: int) -> tuple[np.ndarray, np.ndarray]:
    folder = fold_dir(run_dir, fold)
    return read_npy(folder / "oof.npy"), read_npy(folder / "test.npy")


# ---------------------------------------------------------------- the whole stage


def prepare_run_dir(run_dir: Path, recipe_hash: str, overwrite: bool) -> None:
    """Reuse a folder of the same recipe (resume); never mix with another recipe's folds."""
    recipe_file = run_dir / "recipe.yaml"
    if run_dir.exists() and any(run_dir.iterdir()):
        stored = (run_dir / "recipe.hash").read_text().strip() if (run_dir / "recipe.hash").is_file() else None
        if stored != recipe_hash:
            if not overwrite:
                raise CompetitionError(
                    f"{run_dir}: holds a run of a different recipe (hash {stored}, now {recipe_hash}); "
                    "use --name for a new run or --overwrite to replace it"
                )
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    del recipe_file


def train_run(recipe: Recipe, runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
              name: str | None = None, overwrite: bool = False, console: Any = None) -> Path:
    """Train every fold of a recipe; returns the finished run folder (see competition.runs)."""
    from competition.data import index_contest, load_images
    from competition.folds import describe_scheme, make_folds
    from competition.runs import save_run
    from competition.runtime import import_tensorflow

    started = time.perf_counter()
    if data_root is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"root": Path(data_root)})})
    if recipe.data.root is None:
        raise CompetitionError("recipe.data.root: no contest folder; set it in the recipe or pass --data DIR")
    name = name or recipe.name
    if not name or "/" in name or name.startswith("."):
        raise CompetitionError(f"--name: a run name is a plain folder name, got {name!r}")
    recipe_hash = recipe.hash()
    contest = index_contest(recipe.data.root)
    y, classes = contest.y(), contest.classes
    folds = make_folds(y, recipe.cv.folds, recipe.cv.seed, groups=_groups(recipe, contest))

    # Everything that can fail on the user's input fails before the run folder exists.
    size, channels = recipe.data.image_size, recipe.data.channels
    x = load_images(contest.train["path"].tolist(), size, channels)
    x_test = load_images(contest.test["path"].tolist(), size, channels)
    import_tensorflow()
    import keras

    from competition.backbones import build_model

    build_model(recipe.model, x.shape[1:], len(classes))  # weights missing or unloadable: fail now
    keras.backend.clear_session()

    run_dir = Path(runs_dir) / name
    prepare_run_dir(run_dir, recipe_hash, overwrite)
    write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    write_text(run_dir / "recipe.hash", recipe_hash + "\n")

    oof = np.zeros((len(y), len(classes)), dtype=np.float32)
    test = np.zeros((recipe.cv.folds, len(x_test), len(classes)), dtype=np.float32)
    fold_seconds = []
    with _progress(console) as bar:
        progress = Progress(bar=bar)
        if bar is not None:
            progress.fold_task = bar.add_task(f"{name}: folds", total=recipe.cv.folds)
            progress.epoch_task = bar.add_task("epochs", total=None)
        for k in range(recipe.cv.folds):
            val = np.flatnonzero(folds == k)
            progress.fold, progress.best = k, float("nan")
            t0 = time.perf_counter()
            if fold_is_done(run_dir, k, recipe_hash):
                oof[val], test[k] = load_fold(run_dir, k)
                if console is not None:
                    console.print(f"fold {k + 1}: finished earlier, reused")
            else:
                result = fit_fold(recipe, x, y, val, x_test, len(classes), k, progress)
                save_fold(run_dir, k, result, recipe_hash, time.perf_counter() - t0)
                oof[val], test[k] = result.oof, result.test
                keras.backend.clear_session()
                if console is not None:
                    console.print(f"fold {k + 1}: best epoch {result.best_epoch}, val macro F1 "
                                  f"{result.best_macro_f1:.4f} ({time.perf_counter() - t0:.0f} s)")
            fold_seconds.append(round(time.perf_counter() - t0, 2))
            if bar is not None:
                bar.update(progress.fold_task, advance=1)

    return save_run(
        run_dir, name=name, kind="model", classes=classes, ids=contest.train["id"].to_numpy(), y=y, folds=folds,
        oof=oof, test=test.mean(axis=0), test_ids=contest.test["id"].to_numpy(), recipe_hash=recipe_hash,
        scheme=describe_scheme(recipe.cv.folds, recipe.cv.seed, recipe.cv.group_by),
        paths=contest.train["path"].to_numpy(),
        extra={"recipe": recipe.name, "data_root": str(recipe.data.root), "sample_submission": str(contest.sample_path),
               "fold_seconds": fold_seconds, "wall_seconds": round(time.perf_counter() - started, 2)},
    )


def _groups(recipe: Recipe, contest: Any) -> np.ndarray | None:
    if recipe.cv.group_by is None:
        return None
    from competition import folds

    resolve = getattr(folds, "resolve_groups", None)
    if resolve is None:
        raise CompetitionError(f"recipe.cv.group_by: grouping {recipe.cv.group_by!r} is not available")
    return resolve(recipe.cv.group_by, contest.train, threshold=recipe.cv.near_duplicate_threshold)


def _progress(console: Any) -> Any:
    if console is None:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

    return RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
