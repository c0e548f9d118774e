"""Decision tuning: how a run's probabilities become the labels a contest scores, fitted for its metric
(`TUNERS`, by metric name).

- macro F1 (`DecisionTuner`): per-class offsets on the log-probabilities before argmax, since models trained
  with cross-entropy under-predict rare classes and macro F1 weighs every class equally (multi-label: one
  threshold per label, each label's F1 maximised on its own, which maximises their mean).
- quadratic weighted kappa (`GradeThresholds`): cut points on the expected grade, since kappa rewards being
  close on an ordinal scale, which argmax ignores.

Either is fitted on OOF, which makes the in-sample gain optimistic: `nested_cv_gain` says how much survives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from competition.metrics import (EPS, LABEL_THRESHOLD, cross_fit_predict, fast_kappa, fast_macro_f1, is_multilabel,
                                 label_decisions, log_proba, macro_f1)


class DecisionTuner(BaseEstimator):
    """Per-class additive offsets on log-probabilities, fitted by coordinate ascent on macro F1.

    Class 0's offset stays 0 (only differences matter for argmax). Each pass tries every grid value
    for each other class in turn, keeping a change only when it strictly improves macro F1, so ties
    stay at the smaller-change solution.
    """

    SAVED_AS = "offsets"  # decisions.json's key of the fitted values (`decisions`)

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

    @property
    def kind(self) -> str:
        """What is tuned, in words."""
        return "per-label thresholds" if getattr(self, "multilabel_", False) else "per-class offsets"

    def decisions(self) -> dict[str, Any]:
        """What decisions.json keeps of the fitted tuner (competition.runs.decisions): its offsets."""
        return {self.SAVED_AS: [float(o) for o in self.offsets_]}

    def decision_function(self, proba: np.ndarray) -> np.ndarray:
        if getattr(self, "multilabel_", False):
            return _logit(proba) + self.offsets_
        return log_proba(proba) + self.offsets_

    def predict(self, proba: np.ndarray) -> np.ndarray:
        """int class index per row (n,); multi-label: uint8 (n, k) 0/1 decisions."""
        if getattr(self, "multilabel_", False):
            return (self.decision_function(proba) >= 0).astype(np.uint8)
        return self.decision_function(proba).argmax(axis=1)


class GradeThresholds(BaseEstimator):
    """Cut points on the expected grade, fitted for quadratic weighted kappa: an image's grade is the number of
    cut points its expected grade sum_k k * p_k (float, 0 .. n_classes - 1; the classes in order as grades)
    reaches. The decision of APTOS 2019's leading solutions (their "OptimizedRounder", which searched the cut
    points with Nelder-Mead); here a coordinate search, each cut point over `n_steps` values between its
    neighbours, kept only when kappa strictly improves, from the midpoints 0.5, 1.5, ...
    """

    SAVED_AS = "thresholds"
    kind = "grade thresholds"

    def __init__(self, n_steps: int = 41, n_passes: int = 3) -> None:
        self.n_steps = n_steps
        self.n_passes = n_passes

    def fit(self, proba: np.ndarray, y: np.ndarray) -> GradeThresholds:
        """Fit on OOF probabilities (n, k) and int grade indices y (n,). Returns self; `thresholds_` float (k - 1,)
        increasing, `in_sample_score_` their kappa."""
        proba = np.asarray(proba, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        k = proba.shape[1]
        expected = proba @ np.arange(k)
        cuts = np.arange(k - 1) + 0.5
        best = fast_kappa(y, _grades(cuts, expected), k)
        for _ in range(self.n_passes):
            improved = False
            for j in range(k - 1):
                low = cuts[j - 1] if j > 0 else 0.0
                high = cuts[j + 1] if j < k - 2 else k - 1.0
                for value in np.linspace(low, high, self.n_steps)[1:-1]:
                    trial = cuts.copy()
                    trial[j] = value
                    score = fast_kappa(y, _grades(trial, expected), k)
                    if score > best + 1e-12:
                        best, cuts, improved = score, trial, True
            if not improved:
                break
        self.thresholds_, self.n_classes_, self.in_sample_score_ = cuts, k, best
        return self

    @classmethod
    def from_thresholds(cls, thresholds: Any) -> GradeThresholds:
        """A tuner fitted earlier, from its saved `thresholds_` (decisions.json)."""
        tuner = cls()
        tuner.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        tuner.n_classes_ = len(tuner.thresholds_) + 1
        return tuner

    def decisions(self) -> dict[str, Any]:
        """What decisions.json keeps of the fitted tuner: its cut points."""
        return {self.SAVED_AS: [float(t) for t in self.thresholds_]}

    def predict(self, proba: np.ndarray) -> np.ndarray:
        """int64 grade index per row (n,)."""
        return _grades(self.thresholds_, np.asarray(proba, dtype=np.float64) @ np.arange(self.n_classes_))


def _grades(cuts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """int64 grade per expected grade: how many of the increasing `cuts` it reaches."""
    return np.searchsorted(cuts, expected, side="right").astype(np.int64)


# The metrics whose decisions are tuned, each with its tuner; any other metric is scored on argmax (labels) or on
# the probabilities as they are.
TUNERS: dict[str, type[BaseEstimator]] = {"macro_f1": DecisionTuner, "kappa": GradeThresholds}
TUNED_FOR = "macro F1 (per-class offsets) and quadratic weighted kappa (grade thresholds)"


def saved_as(metric: str) -> str | None:
    """The key decisions.json keeps the decisions tuned for `metric` under (TUNERS), None when none are."""
    tuner = TUNERS.get(metric)
    return getattr(tuner, "SAVED_AS", None)


def make_tuner(metric: str) -> Any:
    """An unfitted tuner of the contest metric `metric` (TUNERS), or None when its decisions are not tuned."""
    tuner = TUNERS.get(metric)
    return tuner() if tuner is not None else None


def tuner_from_decisions(decisions: dict[str, Any], *, multilabel: bool = False) -> Any:
    """The fitted tuner saved in a run's decisions.json (as competition.runs.decisions.read_decisions returns
    it): grade thresholds, or per-class offsets (per-label in a multi-label run)."""
    if GradeThresholds.SAVED_AS in decisions:
        return GradeThresholds.from_thresholds(decisions[GradeThresholds.SAVED_AS])
    return DecisionTuner.from_offsets(decisions["offsets"], multilabel=multilabel)


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
    proba: np.ndarray, y: np.ndarray, folds: np.ndarray, tuner: Any = None, metric: str = "macro_f1"
) -> dict[str, Any]:
    """The gain of tuning the decisions for `metric` (macro_f1 or kappa; `tuner` defaults to its TUNERS entry),
    in-sample (fit and score on all OOF: optimistic) and nested (each fold decided by a tuner fitted on the
    other folds, then scored together): "base_score" (argmax; multi-label, each label at 0.5),
    "in_sample_score", "nested_score", "in_sample_gain", "nested_gain", "metric", "decisions" (the tuner
    fitted on all OOF, as decisions.json keeps it) and "kind" (what is tuned, in words)."""
    tuner = tuner if tuner is not None else make_tuner(metric)
    if tuner is None:
        raise ValueError(f"no decision tuning for metric {metric!r}; tuned: {', '.join(TUNERS)}")
    y, folds = np.asarray(y, dtype=np.int64), np.asarray(folds)
    k = proba.shape[1]
    if is_multilabel(y):
        def scored(pred: np.ndarray) -> float:
            return macro_f1(y, pred)
        base = scored(proba)
    else:
        def scored(pred: np.ndarray) -> float:
            return fast_kappa(y, pred, k) if metric == "kappa" else fast_macro_f1(y, pred, k)
        base = scored(proba.argmax(axis=1))
    full = clone(tuner).fit(proba, y)
    in_sample = scored(full.predict(proba))
    nested = scored(cross_fit_predict(tuner, proba, y, folds, method="predict"))
    return {
        "metric": metric,
        "base_score": base,
        "in_sample_score": in_sample,
        "nested_score": nested,
        "in_sample_gain": in_sample - base,
        "nested_gain": nested - base,
        "decisions": full.decisions(),
        "kind": full.kind,
    }
