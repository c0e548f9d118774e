"""Training: k fold models per recipe, each kept at its best validation macro F1, OOF and test probabilities kept.

`train_run` is the whole stage: `prepare_run` (index the contest, decode once, split, check the model), then
`train_fold` for each pending fold (in this process, a fresh process or a Ray task: competition.executors),
then `finish_run` (gather the folds' OOF and test probabilities). A fold is `fit_fold`: build, then one
`fit_phase` per recipe phase (the notebook's freeze-then-fine-tune is two phases). A phase that trains only the
head of a frozen backbone without augmentation trains on backbone features computed once per image (per run in
this process, per fold in a fold's own process). Each fold is written atomically with done.json last, so a
rerun skips finished folds and a killed run never leaves a fold that looks complete.
"""

from __future__ import annotations

import gc
import json
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
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
    oof: np.ndarray  # probabilities for the fold's validation rows (with TTA when the recipe declares it)
    test: np.ndarray
    oof_plain: np.ndarray  # the same without TTA
    test_plain: np.ndarray
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
    best: float = float("-inf")

    def epoch(self, epoch: int, total: int, f1: float) -> None:
        self.best = max(self.best, f1)
        if self.bar is not None:
            self.bar.update(self.epoch_task, completed=epoch, total=total,
                            description=f"fold {self.fold + 1} · epoch {epoch}/{total} · "
                                        f"val macro F1 {f1:.3f} (best {self.best:.3f})")


@dataclass
class FoldContext:
    """What every phase of one fold shares."""

    recipe: Recipe
    classes: list[str]
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    seed: int
    deterministic: bool
    progress: Progress
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "history": [], "best_f1": -1.0,
                                                           "best_epoch": 0, "best_weights": None})
    train_rows: np.ndarray | None = None  # rows of the whole training set, for features computed on all of it
    val_rows: np.ndarray | None = None
    features: dict[str, np.ndarray] | None = None  # memo of frozen-backbone features shared across folds


# ---------------------------------------------------------------- keras pieces


def make_optimizer(phase: PhaseConfig) -> Any:
    import keras

    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "adamax": keras.optimizers.Adamax,
               "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return classes[phase.optimizer](learning_rate=phase.learning_rate)


def _batches_class() -> type:
    import keras

    from competition.augment import augment_batch

    class TrainBatches(keras.utils.PyDataset):
        """Shuffled (or class-resampled) batches, augmented on the fly in worker threads. Each batch seeds its
        own augmentation from (seed, epoch, index), so results do not depend on thread scheduling."""

        def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, pipeline: Any, resample: Any,
                     class_weight: dict[int, float] | None, seed: int, workers: int) -> None:
            super().__init__(workers=workers, use_multiprocessing=False)
            self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
            self.pipeline, self.resample, self.rng = pipeline, resample, np.random.default_rng(seed)
            self.local = threading.local()
            self.weights = None
            if class_weight:
                self.weights = np.array([class_weight.get(int(c), 1.0) for c in y], dtype=np.float32)
            self.epoch = -1
            self.on_epoch_end()

        def __len__(self) -> int:
            return int(np.ceil(len(self.order) / self.batch_size))

        def _pipeline(self) -> Any:
            if not hasattr(self.local, "pipeline"):  # one pipeline per thread: transforms hold random state
                import copy

                self.local.pipeline = copy.deepcopy(self.pipeline)
            return self.local.pipeline

        def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
            rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
            images = self.x[rows]
            if self.pipeline is not None:
                pipeline = self._pipeline()
                pipeline.set_random_seed(int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]))
                images = augment_batch(pipeline, images)
            if self.weights is not None:
                return images, self.y[rows], self.weights[rows]
            return images, self.y[rows]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = self.resample(self.rng) if self.resample else self.rng.permutation(len(self.y))

    return TrainBatches


def _monitor_class() -> type:
    import keras

    from competition.metrics import macro_f1

    class MacroF1Monitor(keras.callbacks.Callback):
        """Scores each epoch on the fold's validation images by macro F1 (the contest metric), snapshots the
        whole classifier at the best epoch across all phases, and stops a phase after `patience` epochs
        without improvement. Puts `val_macro_f1` into the logs for callbacks after it."""

        def __init__(self, predict_val: Callable[[], np.ndarray], context: FoldContext, classifier: Any,
                     phase: int, epochs: int) -> None:
            super().__init__()
            self.predict_val, self.context, self.classifier = predict_val, context, classifier
            self.phase, self.epochs, self.waited = phase, epochs, 0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            proba, y_val, state = self.predict_val(), self.context.y_val, self.context.state
            f1 = macro_f1(y_val, proba)
            val_loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_val)), y_val], 1e-7, 1))))
            if not np.isfinite((logs or {}).get("loss", 0.0)):
                raise CompetitionError(
                    f"training diverged (loss is {logs['loss']}) in fold {self.context.progress.fold + 1}, phase "
                    f"{self.phase + 1}; lower recipe.train.phases[{self.phase}].learning_rate "
                    f"({self.context.recipe.train.phases[self.phase].learning_rate})")
            state["epoch"] += 1
            row = {"phase": self.phase, "epoch": state["epoch"], **{k: float(v) for k, v in (logs or {}).items()},
                   "val_loss": val_loss, "val_macro_f1": f1, "seconds": time.perf_counter() - self.started,
                   "learning_rate": float(np.asarray(self.model.optimizer.learning_rate))}
            state["history"].append(row)
            if logs is not None:
                logs["val_macro_f1"] = f1
            if f1 > state["best_f1"]:
                state.update(best_f1=f1, best_epoch=state["epoch"], best_weights=self.classifier.get_weights())
                self.waited = 0
            else:
                self.waited += 1
                patience = self.context.recipe.train.patience
                if patience is not None and self.waited >= patience:
                    self.model.stop_training = True
            self.context.progress.epoch(epoch + 1, self.epochs, f1)

    return MacroF1Monitor


# ---------------------------------------------------------------- phases and folds


def split_head(model: Any) -> tuple[Any, Any]:
    """(feature extractor: image -> backbone output, head: backbone output -> probabilities), made of the
    classifier's own layers, so training the head model trains the classifier's head."""
    import keras

    from competition.backbones import backbone_of

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


def uses_cached_features(recipe: Recipe, phase: PhaseConfig) -> bool:
    """A frozen backbone without augmentation sees the same image the same way every epoch."""
    return phase.trainable == "head" and not (recipe.augment and phase.augment)


def fit_phase(model: Any, context: FoldContext, phase_index: int) -> None:
    """One phase: set what trains, compile with the phase's optimizer and the balance's loss, fit with the
    macro-F1 monitor (and learning-rate reduction if asked)."""
    import keras

    from competition.augment import build_pipeline
    from competition.backbones import pretrained_backbone, set_trainable
    from competition.balance import make_balance
    from competition.predict import predict_proba

    recipe, phase = context.recipe, context.recipe.train.phases[phase_index]
    set_trainable(model, phase.trainable, keep_batchnorm_frozen=pretrained_backbone(recipe.model))
    balance = make_balance(recipe.balance, context.y, context.classes)
    pipeline = build_pipeline(recipe.augment, seed=context.seed) if phase.augment else None
    trained, x, x_val = model, context.x, context.x_val
    if uses_cached_features(recipe, phase):
        extractor, trained = split_head(model)
        key = f"phase{phase_index}"
        memo = context.features if phase_index == 0 and recipe.model.weights != "none" else None
        if memo is not None and key in memo:
            x, x_val = memo[key][context.train_rows], memo[key][context.val_rows]
        else:
            x, x_val = predict_proba_raw(extractor, context.x), predict_proba_raw(extractor, context.x_val)
    trained.compile(optimizer=make_optimizer(phase), loss=balance.loss, metrics=["accuracy"],
                    jit_compile=recipe.train.jit_compile)
    monitor = _monitor_class()(lambda: predict_proba(trained, x_val), context, model, phase_index, phase.epochs)
    callbacks: list[Any] = [monitor]
    if recipe.train.reduce_lr is not None:
        r = recipe.train.reduce_lr
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_macro_f1", mode="max", factor=r.factor,
                                                           patience=r.patience, min_lr=r.min_lr, verbose=0))
    if pipeline is None and balance.resample is None:
        # Plain arrays: Keras's fastest path (no Python per batch).
        trained.fit(x, context.y, batch_size=recipe.train.batch_size, epochs=phase.epochs, shuffle=True,
                    class_weight=balance.class_weight, callbacks=callbacks, verbose=0)
    else:
        batches = _batches_class()(x, context.y, recipe.train.batch_size, pipeline, balance.resample,
                                   balance.class_weight, context.seed, workers=recipe.train.workers)
        trained.fit(batches, epochs=phase.epochs, callbacks=callbacks, verbose=0)


def predict_proba_raw(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Any model's outputs (features here), batched, as float32."""
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def fit_fold(recipe: Recipe, x: np.ndarray, y: np.ndarray, val: np.ndarray, x_test: np.ndarray,
             classes: list[str], fold: int, progress: Progress | None = None, *, deterministic: bool = False,
             features: dict[str, np.ndarray] | None = None) -> FoldResult:
    """Train one fold model through all phases; return it at its best validation macro F1."""
    import keras

    from competition.backbones import build_model
    from competition.predict import predict_tta

    seed = recipe.cv.seed * 1000 + fold
    keras.utils.set_random_seed(seed)
    set_precision(recipe)
    train_rows = np.setdiff1d(np.arange(len(y)), val)
    context = FoldContext(recipe, classes, x[train_rows], y[train_rows], x[val], y[val], seed, deterministic,
                          progress or Progress(), train_rows=train_rows, val_rows=val, features=features)
    model = build_model(recipe.model, x.shape[1:], len(classes))
    for phase_index in range(len(recipe.train.phases)):
        fit_phase(model, context, phase_index)
    model.set_weights(context.state["best_weights"])
    oof_plain, oof = predict_tta(model, x[val], recipe.tta)
    test_plain, test = predict_tta(model, x_test, recipe.tta)
    return FoldResult(oof=oof, test=test, oof_plain=oof_plain, test_plain=test_plain,
                      history=pd.DataFrame(context.state["history"]), best_epoch=context.state["best_epoch"],
                      best_macro_f1=context.state["best_f1"], model=model)


def set_precision(recipe: Recipe) -> None:
    """Mixed float16 compute when the recipe asks (the classifier's last Dense stays float32), else float32;
    set for every model built, since the policy is global to the process."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if recipe.train.mixed_precision else "float32")


def frozen_features(recipe: Recipe, x: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Features of every training image through the initial pretrained backbone, computed once per run when
    the first phase trains only the head without augmentation: every fold starts from the same backbone."""
    import keras

    from competition.backbones import build_model

    if recipe.model.weights == "none" or not uses_cached_features(recipe, recipe.train.phases[0]):
        return {}
    set_precision(recipe)
    extractor, _ = split_head(build_model(recipe.model, x.shape[1:], n_classes))
    features = {"phase0": predict_proba_raw(extractor, x)}
    keras.backend.clear_session()
    return features


# ---------------------------------------------------------------- fold files and resume

FOLD_FILES = ("oof.npy", "test.npy", "oof_plain.npy", "test_plain.npy", "history.csv", "model.keras")


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold_{fold}"


def fold_is_done(run_dir: Path, fold: int, recipe_hash: str) -> bool:
    """Complete only with done.json (written last) of this recipe's hash and every file present."""
    done = fold_dir(run_dir, fold) / "done.json"
    try:
        info = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("recipe_hash") == recipe_hash and all((fold_dir(run_dir, fold) / f).is_file() for f in FOLD_FILES)


def _rss_mb() -> float:
    """Current resident memory of this process (Linux), to show memory does not grow from fold to fold."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def save_fold(run_dir: Path, fold: int, result: FoldResult, recipe_hash: str, seconds: float) -> None:
    from competition.runtime import thread_settings

    folder = fold_dir(run_dir, fold)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    for name in ("oof", "test", "oof_plain", "test_plain"):
        write_npy(folder / f"{name}.npy", getattr(result, name))
    write_text(folder / "history.csv", result.history.to_csv(index=False))
    tmp_model = folder / ".model.tmp.keras"
    result.model.save(tmp_model)
    tmp_model.replace(folder / "model.keras")
    write_json(folder / "done.json", {"recipe_hash": recipe_hash, "best_epoch": result.best_epoch,
                                      "best_macro_f1": result.best_macro_f1, "seconds": round(seconds, 2),
                                      "rss_mb": round(_rss_mb(), 1), "threads": thread_settings(),
                                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})


def load_fold(run_dir: Path, fold: int) -> dict[str, np.ndarray]:
    folder = fold_dir(run_dir, fold)
    return {name: read_npy(folder / f"{name}.npy") for name in ("oof", "test", "oof_plain", "test_plain")}


def prepare_run_dir(run_dir: Path, recipe_hash: str, overwrite: bool) -> None:
    """Reuse a folder of the same recipe (resume); never mix with another recipe's folds."""
    if run_dir.exists() and any(run_dir.iterdir()):
        stored = (run_dir / "recipe.hash").read_text().strip() if (run_dir / "recipe.hash").is_file() else None
        if stored != recipe_hash:
            if not overwrite:
                raise CompetitionError(
                    f"{run_dir}: holds a run of a different recipe (hash {stored}, now {recipe_hash}); "
                    "use --name for a new run or --overwrite to replace it")
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- the whole stage


@dataclass
class PreparedRun:
    """A validated recipe with its data decoded, folds made and run folder ready: what every fold needs."""

    recipe: Recipe
    recipe_hash: str
    run_dir: Path
    contest: Any
    folds: np.ndarray
    x: np.ndarray
    x_test: np.ndarray
    deterministic: bool = False

    @property
    def classes(self) -> list[str]:
        return self.contest.classes

    @property
    def y(self) -> np.ndarray:
        return self.contest.y()

    def pending(self) -> list[int]:
        return [k for k in range(self.recipe.cv.folds) if not fold_is_done(self.run_dir, k, self.recipe_hash)]


def prepare_run(recipe: Recipe, runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
                name: str | None = None, overwrite: bool = False, deterministic: bool = False,
                console: Any = None) -> PreparedRun:
    """Validate, index, split and decode; everything that can fail on the user's input fails before the run
    folder exists. Then the folder gets the resolved recipe, its hash and the fold of every image."""
    from competition.data import load_contest, print_class_counts, write_skipped
    from competition.folds import make_folds
    from competition.predict import check_tta

    if data_root is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"root": Path(data_root)})})
    if recipe.data.root is None:
        raise CompetitionError("recipe.data.root: no contest folder; set it in the recipe or pass --data DIR")
    name = name or recipe.name
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise CompetitionError(f"--name: a run name is a plain folder name, got {name!r}")
    check_tta(recipe.tta, recipe.data.image_size)
    size, channels = recipe.data.image_size, recipe.data.channels
    contest, x, x_test, skipped = load_contest(recipe.data.root, size, channels, on_bad=recipe.data.on_bad_image)
    if console is not None:
        print_class_counts(contest, console)
    labels = contest.train["label"].to_numpy()
    folds = make_folds(labels, recipe.cv.folds, recipe.cv.seed, groups=_groups(recipe, contest))
    _check_model(recipe, x.shape[1:], len(contest.classes), deterministic)

    recipe_hash = recipe.hash()
    run_dir = Path(runs_dir) / name
    prepare_run_dir(run_dir, recipe_hash, overwrite)
    write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    write_text(run_dir / "recipe.hash", recipe_hash + "\n")
    write_text(run_dir / "fold_assignment.csv", pd.DataFrame({"id": contest.train["id"], "fold": folds}).to_csv(index=False))
    (run_dir / "skipped_images.csv").unlink(missing_ok=True)
    if skipped:
        write_skipped(run_dir / "skipped_images.csv", skipped)
        print(f"note: skipped {len(skipped)} unreadable training image(s) (data.on_bad_image: skip); "
              f"listed in {run_dir / 'skipped_images.csv'}", file=sys.stderr)
    return PreparedRun(recipe, recipe_hash, run_dir, contest, folds, x, x_test, deterministic)


def _setup_tensorflow(deterministic: bool) -> None:
    from competition.runtime import import_tensorflow, pin_threads_for_determinism

    if deterministic:
        pin_threads_for_determinism()
    import_tensorflow()
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _check_model(recipe: Recipe, input_shape: tuple[int, ...], n_classes: int, deterministic: bool) -> None:
    """Build the model once: missing or unloadable weights fail here, not at fold 1."""
    _setup_tensorflow(deterministic)
    import keras

    from competition.backbones import build_model

    build_model(recipe.model, input_shape, n_classes)
    keras.backend.clear_session()


def train_fold(prepared: PreparedRun, k: int, progress: Progress | None = None,
               features: dict[str, np.ndarray] | None = None) -> FoldResult:
    """Train and save fold k of a prepared run (fold files written atomically, done.json last)."""
    import keras

    t0 = time.perf_counter()
    val = np.flatnonzero(prepared.folds == k)
    fitted = fit_fold(prepared.recipe, prepared.x, prepared.y, val, prepared.x_test, prepared.classes, k, progress,
                      deterministic=prepared.deterministic, features=features)
    save_fold(prepared.run_dir, k, fitted, prepared.recipe_hash, time.perf_counter() - t0)
    keras.backend.clear_session()
    gc.collect()
    return fitted


def load_prepared(run_dir: str | Path, *, deterministic: bool = False) -> PreparedRun:
    """A prepared run rebuilt from its folder (for a worker on another process or machine): the recipe and
    fold assignment come from the folder, the pixels from the decode cache."""
    import yaml

    from competition.data import load_contest

    run_dir = Path(run_dir)
    recipe = Recipe.model_validate(yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")))
    size, channels = recipe.data.image_size, recipe.data.channels
    contest, x, x_test, _ = load_contest(recipe.data.root, size, channels, on_bad=recipe.data.on_bad_image)
    assignment = pd.read_csv(run_dir / "fold_assignment.csv", dtype={"id": str})
    if assignment["id"].tolist() != contest.train["id"].tolist():
        raise CompetitionError(f"{run_dir}: fold assignment does not match the images in {recipe.data.root}")
    _setup_tensorflow(deterministic)  # the model was checked when the run was prepared
    stored_hash = (run_dir / "recipe.hash").read_text().strip()
    return PreparedRun(recipe, stored_hash, run_dir, contest, assignment["fold"].to_numpy(), x, x_test, deterministic)


def finish_run(prepared: PreparedRun, started: float, console: Any = None) -> Path:
    """Gather every fold's files into the run's OOF and test probabilities; run.json last."""
    from competition.folds import describe_scheme
    from competition.metrics import macro_f1
    from competition.runs import save_run

    recipe, folds, y = prepared.recipe, prepared.folds, prepared.y
    missing = prepared.pending()
    if missing:
        raise CompetitionError(f"{prepared.run_dir}: fold(s) {', '.join(str(k + 1) for k in missing)} did not finish; "
                               "rerun the same command to train only those")
    shape = (len(y), len(prepared.classes))
    out = {"oof": np.zeros(shape, np.float32), "oof_plain": np.zeros(shape, np.float32)}
    tests = {"test": [], "test_plain": []}
    for k in range(recipe.cv.folds):
        files = load_fold(prepared.run_dir, k)
        val = folds == k
        out["oof"][val], out["oof_plain"][val] = files["oof"], files["oof_plain"]
        tests["test"].append(files["test"])
        tests["test_plain"].append(files["test_plain"])
    write_npy(prepared.run_dir / "oof_plain.npy", out["oof_plain"])
    write_npy(prepared.run_dir / "test_plain.npy", np.mean(tests["test_plain"], axis=0))
    tta = {"transforms": list(recipe.tta), "oof_macro_f1_plain": macro_f1(y, out["oof_plain"]),
           "oof_macro_f1_tta": macro_f1(y, out["oof"])}
    if recipe.tta:
        _say(console, f"TTA {recipe.tta}: OOF macro F1 {tta['oof_macro_f1_plain']:.4f} without, "
                      f"{tta['oof_macro_f1_tta']:.4f} with")
    done = [json.loads((fold_dir(prepared.run_dir, k) / "done.json").read_text()) for k in range(recipe.cv.folds)]
    return save_run(
        prepared.run_dir, name=prepared.run_dir.name, kind="model", classes=prepared.classes,
        ids=prepared.contest.train["id"].to_numpy(), y=y, folds=folds, oof=out["oof"],
        test=np.mean(tests["test"], axis=0), test_ids=prepared.contest.test["id"].to_numpy(),
        recipe_hash=prepared.recipe_hash,
        scheme=describe_scheme(recipe.cv.folds, recipe.cv.seed, recipe.cv.group_by, recipe.cv.near_duplicate_threshold),
        paths=prepared.contest.train["path"].to_numpy(),
        extra={"recipe": recipe.name, "data_root": str(recipe.data.root),
               "sample_submission": str(prepared.contest.sample_path),
               "fold_seconds": [d.get("seconds") for d in done], "fold_rss_mb": [d.get("rss_mb") for d in done],
               "wall_seconds": round(time.perf_counter() - started, 2), "deterministic": prepared.deterministic,
               "fold_threads": [d.get("threads") for d in done],
               "tta": tta},
    )


def train_run(recipe: Recipe, runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
              name: str | None = None, overwrite: bool = False, deterministic: bool = False,
              console: Any = None, executor: str = "local", address: str | None = None) -> Path:
    """Train every fold of a recipe, in this process (executor "local") or as Ray tasks (executor "ray", on
    the cluster at `address` or a local runtime); returns the finished run folder (see competition.runs).
    Folds finished by an earlier run of the same recipe are reused."""
    from competition.executors import executor_named, run_folds

    executor_named(executor, address)  # a wrong name fails before the run folder exists
    started = time.perf_counter()
    prepared = prepare_run(recipe, runs_dir, data_root=data_root, name=name, overwrite=overwrite,
                           deterministic=deterministic, console=console)
    run_folds(prepared, executor, address=address, console=console)
    return finish_run(prepared, started, console)


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


def _groups(recipe: Recipe, contest: Any) -> np.ndarray | None:
    from competition.folds import resolve_groups

    return resolve_groups(recipe.cv.group_by, contest.train, threshold=recipe.cv.near_duplicate_threshold)


def _progress(console: Any) -> Any:
    if console is None:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
