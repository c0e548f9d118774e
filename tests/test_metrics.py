import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from competition.metrics import bootstrap_ci, fast_macro_f1, fold_scores, macro_f1


def _noisy_labels(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    return y, pred


def test_fast_macro_f1_matches_sklearn_including_absent_classes():
    y, pred = _noisy_labels(300, 5, 0)
    pred[pred == 4] = 0  # class 4 never predicted
    expected = f1_score(y, pred, average="macro", labels=np.arange(6), zero_division=0)
    assert fast_macro_f1(y, pred, 6) == pytest.approx(expected)


def test_bootstrap_ci_brackets_point_estimate_and_is_reproducible():
    y, pred = _noisy_labels(2000, 4, 1)
    ci = bootstrap_ci(y, pred, n_boot=500, seed=3)
    assert ci["macro_f1"] == pytest.approx(macro_f1(y, pred))
    assert ci["low"] < ci["macro_f1"] < ci["high"]
    assert 0.005 < ci["high"] - ci["low"] < 0.1
    assert bootstrap_ci(y, pred, n_boot=500, seed=3) == ci


def test_bootstrap_ci_matches_naive_row_resampling():
    y, pred = _noisy_labels(400, 3, 2)
    rng = np.random.default_rng(0)
    naive = [fast_macro_f1(y[i], pred[i], 3) for i in rng.integers(0, 400, (2000, 400))]
    ci = bootstrap_ci(y, pred, n_boot=2000, seed=0)
    assert ci["std"] == pytest.approx(np.std(naive), rel=0.15)
    assert ci["low"] == pytest.approx(np.quantile(naive, 0.025), abs=0.01)


def test_bootstrap_ci_is_fast_and_accepts_probabilities():
    y, pred = _noisy_labels(10_000, 4, 4)
    proba = np.eye(4)[pred] * 0.7 + 0.075
    start = time.perf_counter()
    ci = bootstrap_ci(y, proba, n_boot=1000)
    assert time.perf_counter() - start < 0.25
    assert ci["macro_f1"] == pytest.approx(macro_f1(y, proba))


def test_fold_scores_one_per_fold():
    y, pred = _noisy_labels(100, 3, 5)
    folds = np.arange(100) % 4
    proba = np.eye(3)[pred]
    scores = fold_scores(y, proba, folds)
    assert len(scores) == 4
    assert scores[2] == pytest.approx(macro_f1(y[folds == 2], proba[folds == 2]))
