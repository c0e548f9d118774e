"""One fold model: build it, train it phase by phase, keep it at its best validation macro F1.

`fit_fold` is build + one `fit_phase` per recipe phase + predict (fastai's fine_tune is the two-phase case:
freeze, fit, unfreeze, fit). A phase sets what trains, compiles with the phase's optimizer (engine.optim: weight
decay, learning-rate schedule, EMA) and the balance's loss, and fits with the callbacks of
competition.engine.callbacks plus any the caller passes, on batches mixed when the recipe asks (engine.mixing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd

from competition.augment import build_pipeline
from competition.balance import make_balance
from competition.console import Progress
from competition.engine.batches import Rows, TrainBatches
from competition.engine.callbacks import (DivergenceGuard, EpochLog, EpochProgress, FoldState, KeepBest,
                                          ValidationScore, early_stopping, ema_callbacks)
from competition.engine.features import extract, frozen_features, set_precision, split_head, uses_cached_features
from competition.engine.mixing import phase_mixer, soft_labels
from competition.engine.optim import patience_start, phase_optimizer
from competition.metrics import get_metric, is_multilabel
from competition.model.backbones import build_model, pretrained_backbone, set_trainable
from competition.tta import predict_proba, predict_tta
from competition.recipe import Recipe


@dataclass
class FoldResult:
    """A trained fold: float32 probabilities for its validation rows and the test images, with TTA when the
    recipe declares it (oof, test) and without (oof_plain, test_plain); its history; the kept epoch."""

    oof: np.ndarray
    test: np.ndarray
    oof_plain: np.ndarray
    test_plain: np.ndarray
    history: pd.DataFrame
    best_epoch: int
    best_score: float  # the contest metric (recipe.data.metric) of the kept epoch on the fold's validation rows
    model: Any = None


@dataclass
class FoldData:
    """What every phase of one fold trains and validates on (uint8 images, int labels)."""

    recipe: Recipe
    classes: list[str]
    x: np.ndarray | Rows  # training images (or a view of their rows in the run's array)
    y: np.ndarray
    x_val: np.ndarray | Rows
    y_val: np.ndarray
    seed: int
    fold: int = 0
    train_rows: np.ndarray | None = None  # rows of the whole training set, to pick shared cached features
    val_rows: np.ndarray | None = None
    features: dict[str, np.ndarray] | None = None  # frozen-backbone features of the whole training set
    state: FoldState = field(default_factory=FoldState)
    row_weights: np.ndarray | None = None  # float32 per training row (pseudo-labelled test images weigh less)


def fit_phase(model: Any, data: FoldData, phase_index: int, progress: Progress | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = (), *, steps_per_execution: int | None = None) -> None:
    """Train `model` through one recipe phase; `data.state` keeps the best weights across phases.

    `steps_per_execution`: training steps per call into the compiled train step; None, a whole epoch. Keras runs
    batch-level callback hooks once per call, so a caller whose `callbacks` act per batch passes 1.

    Without label smoothing, mixup or cutmix in the phase, integer labels and the balance's sparse loss;
    with any of them, one-hot targets and the loss's categorical form, class weights as sample weights."""
    recipe, phase = data.recipe, data.recipe.train.phases[phase_index]
    set_trainable(model, phase.trainable, keep_batchnorm_frozen=pretrained_backbone(recipe.model))
    multilabel = is_multilabel(data.y)
    # Multi-label targets are 0/1 floats already (one sigmoid per label, binary cross-entropy: make_balance);
    # mixing is refused for them by the recipe's checks.
    soft = soft_labels(recipe, phase) and not multilabel
    balance = make_balance(recipe.balance, data.y, data.classes, soft_labels=soft,
                           label_smoothing=recipe.train.label_smoothing)
    pipeline = build_pipeline(recipe.augment, seed=data.seed) if phase.augment else None
    mixer = phase_mixer(recipe, phase)
    trained, x, x_val = _phase_inputs(model, data, phase_index)
    batch_size, n_classes = phase.batch_size or recipe.train.batch_size, len(data.classes)
    batches = None
    if pipeline is not None or balance.resample is not None or mixer is not None or data.row_weights is not None:
        # Batches gathered from the rows as they are needed (no copy of the training set), resampled,
        # augmented and mixed in worker threads.
        batches = TrainBatches(x, data.y, batch_size, pipeline, balance.resample, balance.class_weight, data.seed,
                               workers=recipe.train.workers, n_classes=n_classes if soft else None, mixer=mixer,
                               row_weights=data.row_weights)
    steps_per_epoch = len(batches) if batches is not None else -(-len(x) // batch_size)
    # A whole epoch per call into the compiled train step (steps_per_execution): the same updates, bit for bit,
    # without Keras's per-step Python overhead, which dominates a small model on CPU (a head on cached
    # features: 0.53 -> 0.34 s per epoch measured; benchmarks/results.md). Every callback here acts per epoch.
    trained.compile(optimizer=phase_optimizer(phase, phase.epochs * steps_per_epoch, recipe.train.ema),
                    loss=balance.loss, metrics=["binary_accuracy" if multilabel else "accuracy"],
                    jit_compile=recipe.train.jit_compile,
                    steps_per_execution=steps_per_execution or steps_per_epoch)
    steps = _phase_callbacks(model, trained, x_val, data, phase_index, progress, callbacks)
    if batches is not None:
        trained.fit(batches, epochs=phase.epochs, callbacks=steps, verbose=0)
        return
    # Nothing changes an image between epochs: Keras's own array path, one copy of the rows (as a tensor), and
    # no Python per batch: a head epoch on cached features took 0.11 s this way and 0.23 s through batches.
    x = np.asarray(x)
    if soft:
        weights = None
        if balance.class_weight:
            weights = np.array([balance.class_weight.get(int(c), 1.0) for c in data.y], dtype=np.float32)
        trained.fit(x, np.eye(n_classes, dtype=np.float32)[data.y], sample_weight=weights, batch_size=batch_size,
                    epochs=phase.epochs, shuffle=True, callbacks=steps, verbose=0)
    else:
        targets = data.y.astype(np.float32) if multilabel else data.y
        trained.fit(x, targets, batch_size=batch_size, epochs=phase.epochs, shuffle=True,
                    class_weight=balance.class_weight, callbacks=steps, verbose=0)


def _phase_inputs(model: Any, data: FoldData, phase_index: int) -> tuple[Any, Any, Any]:
    """What a phase trains and on what: (trained model, training inputs, validation inputs). A phase on cached
    features trains the head alone on the frozen backbone's features (the run's shared ones for phase 0 of a
    pretrained backbone, else computed here); any other phase, the whole model on the images."""
    recipe, phase = data.recipe, data.recipe.train.phases[phase_index]
    if not uses_cached_features(recipe, phase):
        return model, data.x, data.x_val
    extractor, head = split_head(model)
    shared = data.features if phase_index == 0 and recipe.model.weights != "none" else None
    if shared and "phase0" in shared:
        return head, Rows(shared["phase0"], data.train_rows), Rows(shared["phase0"], data.val_rows)
    return head, extract(extractor, data.x), extract(extractor, data.x_val)


def _phase_callbacks(model: Any, trained: Any, x_val: Any, data: FoldData, phase_index: int,
                     progress: Progress | None, callbacks: Sequence[keras.callbacks.Callback]) -> list[Any]:
    """A phase's callbacks, in order: the validation score, the divergence guard, the epoch log, the kept
    weights, early stopping and the learning-rate plateau when the recipe asks, the progress line, the caller's;
    with an EMA, its swap in and out around them all (every callback in between sees the averaged weights)."""
    recipe, phase = data.recipe, data.recipe.train.phases[phase_index]
    state = data.state
    steps: list[Any] = [ValidationScore(lambda: predict_proba(trained, x_val), data.y_val, state.metric),
                        DivergenceGuard(data.fold, phase_index, phase.learning_rate),
                        EpochLog(state, phase_index), KeepBest(state, model, recipe.train.keep)]
    if recipe.train.patience is not None:
        steps.append(early_stopping(recipe.train.patience, state, patience_start(phase)))
    if recipe.train.reduce_lr is not None:
        r = recipe.train.reduce_lr
        steps.append(keras.callbacks.ReduceLROnPlateau(monitor=state.metric.monitor, mode=state.metric.mode,
                                                       factor=r.factor,
                                                       patience=r.patience, min_lr=r.min_lr, verbose=0))
    steps += [EpochProgress(progress or Progress(), state, sum(p.epochs for p in recipe.train.phases)), *callbacks]
    if recipe.train.ema is not None:
        ema_first, ema_last = ema_callbacks()
        steps = [ema_first, *steps, ema_last]
    return steps


def fit_fold(recipe: Recipe, x: np.ndarray, y: np.ndarray, val: np.ndarray, x_test: np.ndarray,
             classes: list[str], fold: int, progress: Progress | None = None, *,
             features: dict[str, np.ndarray] | None = None,
             callbacks: Sequence[keras.callbacks.Callback] = (),
             on_epoch: Callable[[list[dict[str, float]]], None] | None = None,
             pseudo: tuple[np.ndarray, np.ndarray, float] | None = None) -> FoldResult:
    """Train fold `fold` (validation rows `val` of uint8 images x (n, h, w, c), int labels y) through all
    phases; return it at its best validation macro F1 with its OOF and test (x_test) probabilities.
    `features` are the frozen-backbone features of all of x (engine.features.frozen_features; read from the
    feature store when not given).
    `callbacks` are added to every phase's fit (after the engine's own); `on_epoch` is called with the
    fold's history rows so far at every epoch's end (callbacks.FoldState). `pseudo` (test rows, int labels,
    weight) adds those test images to the fold's training images, each weighing `weight` in the loss
    (competition.runs.prepare.pseudo_labels chooses them fold-honestly)."""
    if features is None:  # a fold in its own process or on Ray: frozen features from the feature store
        features = frozen_features(recipe, x, len(classes))
    seed = recipe.cv.seed * 1000 + fold
    keras.utils.set_random_seed(seed)
    set_precision(recipe)
    train_rows = np.setdiff1d(np.arange(len(y)), val)
    train_x, train_y, row_weights = Rows(x, train_rows), y[train_rows], None
    if pseudo is not None and len(pseudo[0]):
        rows, labels, weight = pseudo
        train_x = np.concatenate([np.asarray(train_x), np.asarray(x_test)[rows]])
        train_y = np.concatenate([train_y, np.asarray(labels, dtype=train_y.dtype)])
        row_weights = np.r_[np.ones(len(train_rows)), np.full(len(rows), weight)].astype(np.float32)
        features = {}  # the shared features are of the training images only
    data = FoldData(recipe, classes, train_x, train_y, Rows(x, val), y[val], seed, fold,
                    train_rows=train_rows, val_rows=val, features=features, row_weights=row_weights,
                    state=FoldState(on_epoch=on_epoch, metric=get_metric(recipe.data.metric)))
    model = build_model(recipe.model, x.shape[1:], len(classes), multilabel=is_multilabel(y))
    for phase_index in range(len(recipe.train.phases)):
        fit_phase(model, data, phase_index, progress, callbacks)
    model.set_weights(data.state.best_weights)
    # The same layers as an uncompiled model: saved without the training loss (the focal loss is ours), so a
    # fold model loads with plain keras.saving.load_model in a Python without this package.
    model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    oof_plain, oof = predict_tta(model, Rows(x, val), recipe.tta)
    test_plain, test = predict_tta(model, x_test, recipe.tta)
    return FoldResult(oof=oof, test=test, oof_plain=oof_plain, test_plain=test_plain,
                      history=pd.DataFrame(data.state.history), best_epoch=data.state.best_epoch,
                      best_score=data.state.best_score, model=model)
