import time

import numpy as np

import pytest
from sklearn.metrics import cohen_kappa_score

from competition.metrics import fast_kappa, macro_f1
from competition.tuning import DecisionTuner, GradeThresholds, nested_cv_gain, tuner_from_decisions


def _imbalanced(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 classes, priors 70/20/7/3; probabilities from noisy logits biased toward the majority."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.70, 0.20, 0.07, 0.03])
    logits = rng.normal(0, 1.0, (n, 4)) + 1.6 * np.eye(4)[y] + np.log([0.70, 0.20, 0.07, 0.03]) * 1.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    folds = rng.permutation(n) % 5
    return proba, y, folds


def test_tuner_raises_oof_macro_f1_on_imbalanced_problem():
    proba, y, _ = _imbalanced(3000, 0)
    tuner = DecisionTuner().fit(proba, y)
    assert tuner.offsets_[0] == 0.0
    assert macro_f1(y, tuner.predict(proba)) > macro_f1(y, proba) + 0.02
    assert tuner.offsets_[3] > 0  # the rarest class is pushed up


def test_nested_gain_positive_but_below_in_sample_gain():
    proba, y, folds = _imbalanced(1500, 1)
    gain = nested_cv_gain(proba, y, folds)
    assert gain["in_sample_gain"] > gain["nested_gain"] > 0
    assert gain["base_score"] == macro_f1(y, proba) and gain["metric"] == "macro_f1"


def test_tuner_on_calibrated_balanced_noise_gains_nothing_nested():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 600)
    proba = rng.dirichlet(np.ones(3), 600)  # no signal at all
    gain = nested_cv_gain(proba, y, rng.permutation(600) % 5)
    assert gain["in_sample_gain"] >= 0
    assert gain["nested_gain"] < gain["in_sample_gain"]


def test_tuner_is_fast():
    proba, y, _ = _imbalanced(5000, 3)
    start = time.perf_counter()
    DecisionTuner().fit(proba, y)
    assert time.perf_counter() - start < 0.5


def _graded(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5 ordinal grades (APTOS-like priors), probabilities of a model that blurs neighbouring grades and leans
    to the majority grade 0: argmax under-calls the middle grades, which quadratic weighted kappa punishes."""
    rng = np.random.default_rng(seed)
    y = rng.choice(5, size=n, p=[0.49, 0.10, 0.27, 0.05, 0.09])
    latent = y + rng.normal(0, 0.7, n)
    logits = -0.5 * (latent[:, None] - np.arange(5)[None, :]) ** 2 / 0.9 + np.log([0.6, 0.1, 0.2, 0.04, 0.06])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return proba, y, rng.permutation(n) % 5


def test_fast_kappa_is_scikit_learns() -> None:
    rng = np.random.default_rng(4)
    for k in (2, 3, 5):
        y, pred = rng.integers(0, k, 300), rng.integers(0, k, 300)
        pred[:150] = y[:150]
        assert fast_kappa(y, pred, k) == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"), abs=1e-12)
    assert fast_kappa(np.zeros(5, int), np.zeros(5, int), 3) == 0.0  # one grade only: no disagreement to expect


def test_grade_thresholds_raise_kappa_and_survive_nested_cv() -> None:
    proba, y, folds = _graded(2000, 0)
    tuner = GradeThresholds().fit(proba, y)
    assert np.all(np.diff(tuner.thresholds_) > 0) and len(tuner.thresholds_) == 4
    base = cohen_kappa_score(y, proba.argmax(axis=1), weights="quadratic")
    assert tuner.in_sample_score_ == pytest.approx(cohen_kappa_score(y, tuner.predict(proba), weights="quadratic"))
    assert tuner.in_sample_score_ > base + 0.01
    gain = nested_cv_gain(proba, y, folds, metric="kappa")
    assert gain["base_score"] == pytest.approx(base) and gain["in_sample_gain"] >= gain["nested_gain"] > 0
    again = tuner_from_decisions(gain["decisions"])  # as decisions.json keeps it
    assert (again.predict(proba) == GradeThresholds().fit(proba, y).predict(proba)).all()


def test_grade_thresholds_on_noise_gain_nothing_nested() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 4, 500)
    proba = rng.dirichlet(np.ones(4), 500)  # no signal at all
    gain = nested_cv_gain(proba, y, rng.permutation(500) % 5, metric="kappa")
    assert gain["nested_gain"] < gain["in_sample_gain"]
    with pytest.raises(ValueError, match="no decision tuning for metric 'roc_auc'"):
        nested_cv_gain(proba, y, rng.permutation(500) % 5, metric="roc_auc")
