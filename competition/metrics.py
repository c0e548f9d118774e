"""Contest metrics on labels and probabilities (scikit-learn does the counting).

`METRICS` is the registry of the scores a contest can be judged by (recipe.data.metric); each `Metric` says its
direction and whether it reads labels or probabilities, and every choice the tool makes (the epoch a fold keeps,
early stopping, the ensemblers, `submit`'s candidate, the leaderboard's order) goes through `Metric.oriented`,
which is larger for better whatever the direction. Macro F1 keeps its fast confusion-matrix paths below
(`fast_macro_f1`, `bootstrap_ci`), as it is the default and the one the decision tuner optimises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import clone
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score,
                             log_loss, precision_recall_fscore_support, roc_auc_score)

EPS = 1e-7  # probabilities are clipped to [EPS, 1] before a log


def log_proba(proba: np.ndarray) -> np.ndarray:
    """float64 log of probabilities clipped to [EPS, 1] (no -inf for a zero)."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0))


def cross_fit_predict(estimator: Any, X: np.ndarray, y: np.ndarray, folds: np.ndarray, *,
                      method: str = "predict_proba", sample_axis: int = 0) -> np.ndarray:
    """Honest out-of-fold output of a fitted method (as sklearn's cross_val_predict, on given folds): the
    rows of each fold are predicted by a clone of `estimator` fitted on the other folds' rows. Rows are
    along `sample_axis` of X (1 for a stack of members' predictions (n_members, n, k)); y and folds have
    one entry per row."""
    y, folds = np.asarray(y), np.asarray(folds)
    out: np.ndarray | None = None
    for f in np.unique(folds):
        held = folds == f
        fitted = clone(estimator).fit(np.compress(~held, X, axis=sample_axis), y[~held])
        part = np.asarray(getattr(fitted, method)(np.compress(held, X, axis=sample_axis)))
        if out is None:
            out = np.zeros((len(y), *part.shape[1:]), dtype=part.dtype)
        out[held] = part
    assert out is not None
    return out


# A multi-label contest's probability of a label becomes the label at this value, unless decisions are tuned
# (competition.tuning.DecisionTuner: one threshold per label).
LABEL_THRESHOLD = 0.5


def is_multilabel(y: np.ndarray) -> bool:
    """True for multi-label targets: a 2-D (n, n_labels) 0/1 indicator matrix (a multi-class y is 1-D)."""
    return np.ndim(y) == 2


def label_decisions(proba_or_pred: np.ndarray) -> np.ndarray:
    """Multi-label decisions: an int (n, n_labels) 0/1 matrix as it is; float probabilities at LABEL_THRESHOLD."""
    given = np.asarray(proba_or_pred)
    if given.dtype.kind == "f":
        return (given >= LABEL_THRESHOLD).astype(np.uint8)
    return given.astype(np.uint8)


def macro_f1(y: np.ndarray, proba_or_pred: np.ndarray) -> float:
    """Macro F1, the contest metric; accepts class indices or a probability matrix. Multi-label (y an (n, L)
    indicator matrix): the mean over labels of each label's F1 (sklearn's average="macro" on indicators), of 0/1
    decisions or of probabilities at LABEL_THRESHOLD."""
    if is_multilabel(y):
        return float(f1_score(np.asarray(y), label_decisions(proba_or_pred), average="macro", zero_division=0))
    pred = proba_or_pred.argmax(axis=1) if np.ndim(proba_or_pred) == 2 else proba_or_pred
    n_classes = proba_or_pred.shape[1] if np.ndim(proba_or_pred) == 2 else int(max(y.max(), pred.max()) + 1)
    return float(f1_score(y, pred, average="macro", labels=np.arange(n_classes), zero_division=0))


def score(y: np.ndarray, proba_or_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Macro F1, accuracy, weighted F1 and per-class precision/recall/F1/support (multi-label: per label, of the
    decisions at LABEL_THRESHOLD; accuracy is the share of images whose whole label set is right)."""
    if is_multilabel(y):
        pred = label_decisions(proba_or_pred)
    else:
        pred = proba_or_pred.argmax(axis=1) if np.ndim(proba_or_pred) == 2 else np.asarray(proba_or_pred)
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    return {
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", labels=labels, zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def confusion_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(k, k) confusion counts, rows = truth, via one bincount (no sklearn overhead inside search loops)."""
    codes = np.asarray(y, dtype=np.int64) * n_classes + np.asarray(pred, dtype=np.int64)
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def macro_f1_from_confusion(counts: np.ndarray) -> np.ndarray:
    """Macro F1 of one (k, k) or many (..., k, k) confusion matrices; absent classes score 0 like sklearn."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1).astype(np.float64)
    denominator = counts.sum(axis=-1) + counts.sum(axis=-2)  # 2tp + fn + fp
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=-1)


def fast_macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Same value as `macro_f1` on class indices, ~100x cheaper: for tuners and ensemble searches."""
    return float(macro_f1_from_confusion(confusion_counts(y, pred, n_classes)))


def fast_kappa(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Quadratic weighted kappa of int class indices (the classes in order as the grades), the value of
    scikit-learn's cohen_kappa_score(weights="quadratic") from one bincount: for threshold searches. 0.0 when
    the expected disagreement is 0 (one grade only)."""
    observed = confusion_counts(y, pred, n_classes).astype(np.float64)
    grades = np.arange(n_classes, dtype=np.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1.0)
    chance = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / chance if chance > 0 else 0.0


def bootstrap_ci(
    y: np.ndarray,
    pred: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_classes: int | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Percentile bootstrap interval for macro F1 (how much a leaderboard gap could be noise).

    Without `groups`: resampling rows with replacement only changes the confusion counts, and those follow
    Multinomial(n, observed cell frequencies) exactly; drawing them directly costs O(n_boot * k^2),
    independent of n. With `groups` (a subject id per row): whole subjects are resampled (the cluster
    bootstrap; slices of one brain are not independent draws), as confusion counts per subject weighted by
    Multinomial(G, 1/G) draws: O(n_boot * G * k^2). Accepts class indices or a probability matrix, like
    `macro_f1`.
    """
    if is_multilabel(y):  # no confusion-count shortcut: rows (or subjects) resampled and rescored
        ci = metric_ci(METRICS["macro_f1"], y, pred, groups=groups, n_boot=n_boot, seed=seed, alpha=alpha)
        return {"macro_f1": ci["value"], "low": ci["low"], "high": ci["high"], "std": ci["std"]}
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred)
    if pred.ndim == 2:
        n_classes = pred.shape[1] if n_classes is None else n_classes
        pred = pred.argmax(axis=1)
    k = int(n_classes if n_classes is not None else max(y.max(), pred.max()) + 1)
    counts = confusion_counts(y, pred, k)
    rng = np.random.default_rng(seed)
    if groups is not None:
        _, g = np.unique(np.asarray(groups), return_inverse=True)
        per_group = np.zeros((int(g.max()) + 1, k * k), np.int64)
        np.add.at(per_group, (g, y * k + pred), 1)
        weights = rng.multinomial(len(per_group), np.full(len(per_group), 1.0 / len(per_group)), size=n_boot)
        draws = (weights @ per_group).reshape(n_boot, k, k)
    else:
        draws = rng.multinomial(len(y), counts.ravel() / len(y), size=n_boot).reshape(n_boot, k, k)
    scores = macro_f1_from_confusion(draws)
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return {
        "macro_f1": float(macro_f1_from_confusion(counts)),
        "low": float(low),
        "high": float(high),
        "std": float(scores.std()),
    }


def fold_scores(y: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> list[float]:
    """Macro F1 of each fold's OOF rows, in fold order: the spread says how stable a score is."""
    y, folds = np.asarray(y), np.asarray(folds)
    if is_multilabel(y):
        return [macro_f1(y[folds == f], np.asarray(proba)[folds == f]) for f in np.unique(folds)]
    pred = proba.argmax(axis=1) if np.ndim(proba) == 2 else np.asarray(proba)
    k = proba.shape[1] if np.ndim(proba) == 2 else int(max(y.max(), pred.max()) + 1)
    return [fast_macro_f1(y[folds == f], pred[folds == f], k) for f in np.unique(folds)]


# ---------------------------------------------------------------- the registry of contest metrics


def _labels(proba_or_pred: np.ndarray) -> np.ndarray:
    return proba_or_pred.argmax(axis=1) if np.ndim(proba_or_pred) == 2 else np.asarray(proba_or_pred)


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC: of the second class's probability with two classes (Kaggle's binary AUC), else one-vs-rest
    macro over the classes present (sklearn's multi_class="ovr"); NaN when y holds one class only. Multi-label:
    the mean over labels of each label's AUC (ChestX-ray14's mean AUC), over the labels both present and absent
    in y."""
    if is_multilabel(y):
        scored = [roc_auc_score(y[:, c], proba[:, c]) for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
        return float(np.mean(scored)) if scored else float("nan")
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    scores = [roc_auc_score(y == c, proba[:, c]) for c in present]
    return float(np.mean(scores))


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Cross-entropy of the true class (rows renormalised); multi-label: the mean binary cross-entropy over
    images and labels."""
    if is_multilabel(y):
        p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    clipped = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0)
    return float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=np.arange(proba.shape[1])))


@dataclass(frozen=True)
class Metric:
    """A contest metric. `needs` "labels": scored on the argmax class (a probability matrix is turned into one);
    "probabilities": on float (n, k) probabilities (class indices are one-hot). `greater_is_better` False for a
    loss. `monitor`: the Keras log key a fold's training watches (competition.engine.callbacks)."""

    name: str
    title: str
    needs: Literal["labels", "probabilities"]
    greater_is_better: bool
    function: Callable[[np.ndarray, np.ndarray], float]
    short: str = ""  # a table header's name ("QW kappa"); the title when empty
    # A ranking metric (ROC AUC) scores a run's OOF fold by fold, then averages (`of_oof`): each fold's model ranks
    # its own rows on a scale of its own, and pooling five scales understates how well one model (the test is
    # ranked by the folds' mean) ranks: measured on the ISIC-like demo (make submit, recipes/demo-isic.yaml),
    # pooled OOF AUC 0.797, per-fold mean 0.933, test 0.906.
    per_fold: bool = False
    multilabel: bool = True  # defined for multi-label contests (on each label's 0/1 decisions or probabilities)

    def __call__(self, y: np.ndarray, proba_or_pred: np.ndarray, n_classes: int | None = None) -> float:
        """The metric of int class indices `y` (n,) against probabilities (n, k) or class indices (n,); for a
        multi-label contest, of a uint8 indicator matrix `y` (n, k) against probabilities or 0/1 decisions (n, k)."""
        given = np.asarray(proba_or_pred)
        if is_multilabel(y):
            y = np.asarray(y, dtype=np.int64)
            if self.needs == "labels":
                return float(self.function(y, label_decisions(given)))
            return float(self.function(y, given.astype(np.float64)))
        y = np.asarray(y, dtype=np.int64)
        if self.name == "macro_f1":  # every class of the matrix counts, absent ones as 0 (as everywhere before)
            return macro_f1(y, given)
        if self.needs == "labels":
            return float(self.function(y, _labels(given)))
        if given.ndim == 1:
            k = n_classes or int(max(y.max(initial=0), given.max(initial=0)) + 1)
            given = np.eye(k)[given.astype(np.int64)]
        return float(self.function(y, given))

    def of_oof(self, y: np.ndarray, proba: np.ndarray, folds: np.ndarray | None = None) -> float:
        """A run's score from its OOF probabilities (n, k) and int fold per row: pooled over every row, or for a
        `per_fold` metric the mean over the folds of each fold's score (NaN folds, one class only, left out)."""
        if not self.per_fold or folds is None:
            return self(y, proba)
        y, folds = np.asarray(y), np.asarray(folds)
        k = np.shape(proba)[-1]
        scores = [self(y[folds == f], proba[folds == f], n_classes=k) for f in np.unique(folds)]
        finite = [s for s in scores if np.isfinite(s)]
        return float(np.mean(finite)) if finite else float("nan")

    def oriented(self, value: float) -> float:
        """`value` made larger-is-better (a loss negated): what every choice compares."""
        return value if self.greater_is_better else -value

    @property
    def monitor(self) -> str:
        """The Keras log key of this metric on a fold's validation rows (ValidationScore writes it)."""
        return "val_loss" if self.name == "log_loss" else f"val_{self.name}"

    @property
    def header(self) -> str:
        return self.short or self.title

    @property
    def mode(self) -> str:
        return "max" if self.greater_is_better else "min"


def _register(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


METRICS = _register(
    Metric("macro_f1", "macro F1", "labels", True, lambda y, p: macro_f1(y, p)),
    Metric("accuracy", "accuracy", "labels", True, lambda y, p: float(accuracy_score(y, p))),
    Metric("balanced_accuracy", "balanced accuracy", "labels", True,
           lambda y, p: float(balanced_accuracy_score(y, p)), short="bal. accuracy", multilabel=False),
    # Quadratic weighted kappa (APTOS): the classes, in sorted order, are the grades.
    Metric("kappa", "quadratic weighted kappa", "labels", True,
           lambda y, p: float(cohen_kappa_score(y, p, weights="quadratic")) if len(np.unique(np.r_[y, p])) > 1
           else 0.0, short="QW kappa", multilabel=False),
    Metric("roc_auc", "ROC AUC", "probabilities", True, _roc_auc, per_fold=True),
    Metric("log_loss", "log loss", "probabilities", False, _log_loss),
)
DEFAULT_METRIC = "macro_f1"


def get_metric(name: str | None) -> Metric:
    """The registered metric `name` (None: macro F1); CompetitionError naming recipe.data.metric, with a did-you-
    mean, for an unknown one."""
    from competition.errors import CompetitionError
    from competition.registry import unknown_name

    problem = unknown_name(name or DEFAULT_METRIC, METRICS, "metric")
    if problem:
        raise CompetitionError(f"recipe.data.metric: {problem}")
    return METRICS[name or DEFAULT_METRIC]


def metric_ci(metric: Metric, y: np.ndarray, proba: np.ndarray, groups: np.ndarray | None = None,
              n_boot: int = 400, seed: int = 0, alpha: float = 0.05, folds: np.ndarray | None = None,
              ) -> dict[str, float]:
    """Percentile bootstrap interval of any metric of a run's OOF (Metric.of_oof, with `folds` for a per-fold
    metric): {"value", "low", "high", "std"}. Macro F1 goes through the exact multinomial shortcut of
    `bootstrap_ci`; the others resample rows, or whole subjects with `groups` (the cluster bootstrap), and rescore
    (draws that score NaN, one class only for an AUC, are dropped)."""
    if metric.name == "macro_f1" and not is_multilabel(y):
        ci = bootstrap_ci(y, proba, groups=groups, seed=seed, alpha=alpha)
        return {"value": ci["macro_f1"], "low": ci["low"], "high": ci["high"], "std": ci["std"]}
    y = np.asarray(y, dtype=np.int64)
    folds = np.asarray(folds) if folds is not None and metric.per_fold else None
    value = metric.of_oof(y, proba, folds)
    rng = np.random.default_rng(seed)
    if groups is not None:
        _, g = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(g == i) for i in range(int(g.max()) + 1)]
    draws = []
    for _ in range(n_boot):
        if groups is not None:
            rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        else:
            rows = rng.integers(0, len(y), len(y))
        if folds is not None:
            draws.append(metric.of_oof(y[rows], proba[rows], folds[rows]))
        else:
            draws.append(metric(y[rows], proba[rows], n_classes=np.shape(proba)[-1] if np.ndim(proba) == 2 else None))
    scores = np.asarray(draws, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return {"value": value, "low": float("nan"), "high": float("nan"), "std": float("nan")}
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return {"value": value, "low": float(low), "high": float(high), "std": float(scores.std())}


def fold_metric(metric: Metric, y: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> list[float]:
    """The metric of each fold's OOF rows, in fold order."""
    if metric.name == "macro_f1" and not is_multilabel(y):
        return fold_scores(y, proba, folds)
    y, folds = np.asarray(y), np.asarray(folds)
    return [metric(y[folds == f], proba[folds == f], n_classes=np.shape(proba)[-1]) for f in np.unique(folds)]
