"""Class balancing by name: how a rare class gets its weight in training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.utils.class_weight import compute_class_weight


@dataclass
class Balance:
    """What the trainer needs: per-class loss weights, and/or sample indices drawn anew each epoch."""

    class_weight: dict[int, float] | None = None
    resample: Callable[[np.random.Generator], np.ndarray] | None = None


BALANCERS: dict[str, Callable[[np.ndarray, int], Balance]] = {}


def register(name: str) -> Callable[[Callable[[np.ndarray, int], Balance]], Callable[[np.ndarray, int], Balance]]:
    def wrap(fn: Callable[[np.ndarray, int], Balance]) -> Callable[[np.ndarray, int], Balance]:
        BALANCERS[name] = fn
        return fn

    return wrap


@register("none")
def no_balance(y: np.ndarray, n_classes: int) -> Balance:
    return Balance()


@register("class_weight")
def class_weight(y: np.ndarray, n_classes: int) -> Balance:
    """sklearn's 'balanced' weights: n / (k * count), so each class carries the same total loss."""
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return Balance(class_weight={int(c): float(w) for c, w in zip(present, weights, strict=True)})


@register("oversample")
def oversample(y: np.ndarray, n_classes: int) -> Balance:
    """Each epoch draws the same number of images per class (with replacement), as many as the epoch had."""
    by_class = [np.flatnonzero(y == c) for c in range(n_classes) if np.any(y == c)]
    per_class = int(np.ceil(len(y) / len(by_class)))

    def resample(rng: np.random.Generator) -> np.ndarray:
        picks = np.concatenate([rng.choice(members, per_class, replace=True) for members in by_class])
        return rng.permutation(picks)[: len(y)]

    return Balance(resample=resample)


def make_balance(method: str, y: np.ndarray, n_classes: int) -> Balance:
    return BALANCERS[method](y, n_classes)
