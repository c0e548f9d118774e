"""Keras callbacks of a fold's training, each with one job. In the order fit_phase passes them:

`ValidationScore` writes `val_macro_f1`, `val_loss` and the contest metric (`val_<metric>`, recipe.data.metric;
competition.metrics.Metric.monitor) into the epoch's logs, so that stock callbacks after it
(`keras.callbacks.EarlyStopping(monitor=metric.monitor, mode=metric.mode)`, `ReduceLROnPlateau`) and the user's
own callbacks can use them; `DivergenceGuard` stops a NaN loss with a
message naming the learning rate; `EpochLog` appends the epoch to the fold's history (and hands the history so
far to `FoldState.on_epoch`, which writes the fold's history.csv, so a run is watched while it trains);
`KeepBest` snapshots the whole classifier at its best validation score (the contest metric) across all phases; `EpochProgress`
reports to the progress bar or log (console.Progress).
With `train.ema`, `ema_callbacks` gives the first and the last of the list: every callback in between, from
ValidationScore to the user's own, sees the averaged weights at each epoch's end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from competition.errors import CompetitionError
from competition.metrics import DEFAULT_METRIC, EPS, Metric, get_metric, is_multilabel, macro_f1


@dataclass
class FoldState:
    """What the phases of one fold share: the epoch count across phases, the history rows, and the best
    epoch's score, number and weights (a list of numpy arrays of the whole classifier). `on_epoch`, when set,
    is called with the history rows so far at each epoch's end (the run folder writes them to history.csv)."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -np.inf  # the kept epoch's metric, as logged (a loss: its value, not negated)
    best_epoch: int = 0
    best_weights: list[np.ndarray] | None = None
    on_epoch: Callable[[list[dict[str, float]]], None] | None = None
    metric: Metric = field(default_factory=lambda: get_metric(DEFAULT_METRIC))


class ValidationScore(keras.callbacks.Callback):
    """At each epoch end, predict the validation images (`predict_val()`: float (n_val, n_classes)) and put
    `val_macro_f1` and `val_loss` (cross-entropy, probabilities clipped at metrics.EPS) into the logs."""

    def __init__(self, predict_val: Callable[[], np.ndarray], y_val: np.ndarray, metric: Metric | None = None) -> None:
        super().__init__()
        self.predict_val, self.y_val, self.metric = predict_val, y_val, metric or get_metric(DEFAULT_METRIC)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        proba = self.predict_val()
        if logs is not None:
            logs["val_macro_f1"] = macro_f1(self.y_val, proba)
            if is_multilabel(self.y_val):  # the mean binary cross-entropy
                logs["val_loss"] = get_metric("log_loss")(self.y_val, proba)
            else:
                picked = proba[np.arange(len(self.y_val)), self.y_val]
                logs["val_loss"] = float(-np.mean(np.log(np.clip(picked, EPS, 1))))
            if self.metric.monitor not in logs:
                logs[self.metric.monitor] = self.metric(self.y_val, proba)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training with a CompetitionError naming the phase's learning rate when the loss is not finite."""

    def __init__(self, fold: int, phase: int, learning_rate: float) -> None:
        super().__init__()
        self.fold, self.phase, self.learning_rate = fold, phase, learning_rate

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss", 0.0)
        if not np.isfinite(loss):
            raise CompetitionError(
                f"training diverged (loss is {loss}) in fold {self.fold}, phase {self.phase + 1}; lower "
                f"recipe.train.phases[{self.phase}].learning_rate ({self.learning_rate})")


class EpochLog(keras.callbacks.Callback):
    """Appends one row per epoch to `state.history`: phase, epoch (counted across phases), the logs, seconds
    and the learning rate of the epoch's first step; then calls `state.on_epoch` with all the rows."""

    def __init__(self, state: FoldState, phase: int) -> None:
        super().__init__()
        self.state, self.phase, self.started, self.learning_rate = state, phase, time.perf_counter(), np.nan

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()
        # The rate of the epoch's first step (a schedule moves it within the epoch; ReduceLROnPlateau between)
        self.learning_rate = float(np.asarray(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.state.epoch += 1
        monitor = self.state.metric.monitor
        trained = {k: float(v) for k, v in logs.items() if k not in ("val_loss", "val_macro_f1", monitor)}
        scored = {monitor: logs.get(monitor, np.nan)} if monitor not in ("val_loss", "val_macro_f1") else {}
        self.state.history.append({
            "phase": self.phase, "epoch": self.state.epoch, **trained, "val_loss": logs.get("val_loss", np.nan),
            "val_macro_f1": logs.get("val_macro_f1", np.nan), **scored, "seconds": time.perf_counter() - self.started,
            "learning_rate": self.learning_rate})
        if self.state.on_epoch is not None:
            self.state.on_epoch(self.state.history)


class KeepBest(keras.callbacks.Callback):
    """Snapshots `classifier`'s weights into `state` whenever the validation score (state.metric) beats the best so
    far in the fold (all phases; the classifier may differ from the model being fitted: a head on cached features
    trains the classifier's own head layers). keep "last" (recipe train.keep) snapshots every epoch instead:
    the fold keeps its last epoch, chosen without looking at the rows it predicts."""

    def __init__(self, state: FoldState, classifier: Any, keep: str = "best") -> None:
        super().__init__()
        self.state, self.classifier, self.keep = state, classifier, keep

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metric = self.state.metric
        value = (logs or {}).get(metric.monitor)
        if value is None or not np.isfinite(value):  # an AUC of a one-class validation set: not a score
            if self.state.best_weights is not None and self.keep != "last":
                return
            value = -np.inf if metric.greater_is_better else np.inf
        if (self.state.best_weights is None or self.keep == "last"
                or metric.oriented(value) > metric.oriented(self.state.best_score)):
            self.state.best_score, self.state.best_epoch = float(value), self.state.epoch
            self.state.best_weights = self.classifier.get_weights()


class EpochProgress(keras.callbacks.Callback):
    """Reports each epoch to a console.Progress: its number in the fold (`state.epoch`, counted across phases
    from 1, so EpochLog must come first) of the fold's `epochs` (every phase's), its training loss and its
    validation score (the contest metric)."""

    def __init__(self, progress: Any, state: FoldState, epochs: int) -> None:
        super().__init__()
        self.progress, self.state, self.epochs = progress, state, epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.progress.epoch(self.state.epoch, self.epochs, float(logs.get(self.state.metric.monitor, np.nan)),
                            float(logs.get("loss", np.nan)))


class _EMAWeightsOut(keras.callbacks.Callback):
    """The last callback of an EMA phase: puts the trained weights back after the others saw the averaged
    ones (what keras.callbacks.SwapEMAWeights(swap_on_epoch=True) does at the next epoch's start)."""

    def __init__(self, swap: keras.callbacks.SwapEMAWeights) -> None:
        super().__init__()
        self.swap = swap

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.swap.on_epoch_begin(epoch, logs)


def ema_callbacks() -> tuple[keras.callbacks.Callback, keras.callbacks.Callback]:
    """(first, last) callbacks of a phase whose optimizer keeps an EMA of the weights (use_ema): the first,
    keras.callbacks.SwapEMAWeights(swap_on_epoch=True), swaps the averaged weights into the model at each
    epoch's end, so ValidationScore scores them and KeepBest keeps them; the last swaps the trained weights
    back, so training goes on from them. When fit returns, Keras's optimizer leaves the averaged weights in
    the model (finalize_variable_values), so the next phase starts from them. Only trainable weights are
    averaged (BatchNorm moving statistics are not)."""
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    return swap, _EMAWeightsOut(swap)


def early_stopping(patience: int, state: FoldState, start_from_epoch: int = 0) -> keras.callbacks.EarlyStopping:
    """Stock EarlyStopping on the validation score (state.metric, in its direction). In a later phase the fold's best so far is the baseline,
    so an epoch counts as progress only when it beats every earlier phase too. Epochs of the phase before
    `start_from_epoch` (0-based) are not watched (competition.engine.optim.patience_start: a scheduled phase
    is watched only once its learning rate has come down)."""
    metric = state.metric
    return keras.callbacks.EarlyStopping(monitor=metric.monitor, mode=metric.mode, patience=patience,
                                         baseline=state.best_score if state.epoch else None,
                                         start_from_epoch=start_from_epoch, verbose=0)
