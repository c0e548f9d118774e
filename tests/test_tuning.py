import time

import numpy as np

from competition.metrics import macro_f1
from competition.tuning import DecisionTuner, nested_cv_gain


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
    assert gain["base_macro_f1"] == macro_f1(y, proba)


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
