"""Decision tuning: shift per-class thresholds so argmax trades accuracy for macro F1 (multi-label: one
threshold per label, each label's F1 maximised on its own, which maximises their mean).

Models trained with cross-entropy under-predict rare classes; macro F1 weighs every class equally,
so adding a per-class offset to the log-probabilities before argmax usually pays. The offsets are
fitted on OOF, which makes the in-sample gain optimistic: `nested_cv_gain` says how much survives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from competition.metrics import (EPS, LABEL_THRESHOLD, cross_fit_predict, fast_macro_f1, is_multilabel,
                                 label_decisions, log_proba, macro_f1)


class DecisionTuner(BaseEstimator):
    """Per-class additive offsets on log-probabilities, fitted by coordinate ascent on macro F1.

    Class 0's offset stays 0 (only differences matter for argmax). Each pass tries every grid value
    for each other class in turn, keeping a change only when it strictly improves macro F1, so ties
    stay at the smaller-change solution.
    """

    def __init__(self, low: float = -3.0, high: float = 3.0, n_steps: int = 61, n_passes: int = 3) -> None:
        self.low = low
        self.high = high
        self.n_steps = n_steps
        self.n_passes = n_passes

    def fit(self, proba: np.ndarray, y: np.ndarray) -> DecisionTuner:
        """Fit on OOF probabilities (n, k) and int class indices y (n,); or, multi-label, a 0/1 (n, k) matrix y:
        per label an offset g on the logit, the label decided when logit(p) + g >= 0 (a threshold
        sigmoid(-g) on p), chosen for that label's F1 (ties: the smallest change). Returns self."""
        self.multilabel_ = is_multilabel(y)
        if self.multilabel_:
            return self._fit_thresholds(proba, np.asarray(y))
        logp = log_proba(proba)
        y = np.asarray(y, dtype=np.int64)
        n, k = logp.shape
        grid = np.union1d(np.round(np.linspace(self.low, self.high, self.n_steps), 10), [0.0])
        offsets = np.zeros(k)
        best = fast_macro_f1(y, (logp + offsets).argmax(axis=1), k)
        for _ in range(self.n_passes):
            improved = False
            for c in range(1, k):
                # Class c wins a row iff its shifted score beats the best other shifted score.
                others = np.delete(logp + offsets, c, axis=1)
                other_best, other_arg = others.max(axis=1), others.argmax(axis=1)
                other_arg = other_arg + (other_arg >= c)  # back to full class indices
                for g in grid:
                    score = logp[:, c] + g
                    wins = (score > other_best) | ((score == other_best) & (c < other_arg))  # argmax ties
                    pred = np.where(wins, c, other_arg)
                    value = fast_macro_f1(y, pred, k)
                    if value > best + 1e-12:
                        best, offsets[c], improved = value, g, True
            if not improved:
                break
        self.offsets_ = offsets
        self.n_classes_ = k
        self.in_sample_macro_f1_ = best
        return self

    @classmethod
    def from_offsets(cls, offsets: Any, *, multilabel: bool = False) -> DecisionTuner:
        """A tuner fitted earlier, from its saved `offsets_` (decisions.json: one per class, or per label when
        `multilabel`)."""
        tuner = cls()
        tuner.offsets_, tuner.multilabel_ = np.asarray(offsets, dtype=np.float64), multilabel
        tuner.n_classes_ = len(tuner.offsets_)
        return tuner

    def _fit_thresholds(self, proba: np.ndarray, y: np.ndarray) -> DecisionTuner:
        from sklearn.metrics import f1_score

        logit = _logit(proba)
        grid = np.union1d(np.round(np.linspace(self.low, self.high, self.n_steps), 10), [0.0])
        grid = grid[np.argsort(np.abs(grid), kind="stable")]  # smallest change first: ties keep it
        offsets = np.zeros(y.shape[1])
        for c in range(y.shape[1]):
            scores = [f1_score(y[:, c], (logit[:, c] + g >= 0).astype(np.uint8), zero_division=0) for g in grid]
            offsets[c] = grid[int(np.argmax(scores))]
        self.offsets_, self.n_classes_ = offsets, y.shape[1]
        self.in_sample_macro_f1_ = macro_f1(y, self.predict(proba))
        return self

    def decision_function(self, proba: np.ndarray) -> np.ndarray:
        if getattr(self, "multilabel_", False):
            return _logit(proba) + self.offsets_
        return log_proba(proba) + self.offsets_

    def predict(self, proba: np.ndarray) -> np.ndarray:
        """int class index per row (n,); multi-label: uint8 (n, k) 0/1 decisions."""
        if getattr(self, "multilabel_", False):
            return (self.decision_function(proba) >= 0).astype(np.uint8)
        return self.decision_function(proba).argmax(axis=1)


def _logit(proba: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def label_sets(proba: np.ndarray, tuner: DecisionTuner | None = None, *, at_least_one: bool = True) -> np.ndarray:
    """A multi-label run's decisions, uint8 (n, k), from probabilities (n, k): each label whose probability
    reaches its threshold (the tuner's per-label thresholds, else metrics.LABEL_THRESHOLD). With `at_least_one`
    (labels joined in one column, where 'No Finding' is a label of its own) a row that reaches none gets its
    most likely label (by the same decision scores); without (a contest of 0/1 label columns, where a row of
    zeros is an image without findings) it keeps none."""
    proba = np.asarray(proba, dtype=np.float64)
    scores = tuner.decision_function(proba) if tuner is not None else proba - LABEL_THRESHOLD
    pred = tuner.predict(proba) if tuner is not None else label_decisions(proba)
    if not at_least_one:
        return pred
    empty = ~pred.any(axis=1)
    pred[np.flatnonzero(empty), scores[empty].argmax(axis=1)] = 1
    return pred


def nested_cv_gain(
    proba: np.ndarray, y: np.ndarray, folds: np.ndarray, tuner: DecisionTuner | None = None
) -> dict[str, Any]:
    """Macro F1 gain of tuning, in-sample (optimistic) and nested (fit on other folds, score held-out)."""
    tuner = tuner if tuner is not None else DecisionTuner()
    y, folds = np.asarray(y, dtype=np.int64), np.asarray(folds)
    k = proba.shape[1]
    if is_multilabel(y):
        def f1(pred: np.ndarray) -> float:
            return macro_f1(y, pred)
        base = f1(proba)
    else:
        def f1(pred: np.ndarray) -> float:
            return fast_macro_f1(y, pred, k)
        base = f1(proba.argmax(axis=1))
    full = clone(tuner).fit(proba, y)
    in_sample = f1(full.predict(proba))
    nested_pred = cross_fit_predict(tuner, proba, y, folds, method="predict")
    nested = f1(nested_pred)
    return {
        "base_macro_f1": base,
        "in_sample_macro_f1": in_sample,
        "nested_macro_f1": nested,
        "in_sample_gain": in_sample - base,
        "nested_gain": nested - base,
        "offsets": [float(o) for o in full.offsets_],
    }
