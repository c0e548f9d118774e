"""Class balancing by name: how a rare class gets its weight in training.

Each balancer turns the recipe's `balance` section and the fold's training labels into a `Balance`: per-class
loss weights, a resampler drawing each epoch's images, and/or a loss. Any number of classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from competition.errors import CompetitionError


@dataclass
class Balance:
    class_weight: dict[int, float] | None = None
    resample: Callable[[np.random.Generator], np.ndarray] | None = None
    loss: Any = "sparse_categorical_crossentropy"


Balancer = Callable[[Any, np.ndarray, list[str]], Balance]
BALANCERS: dict[str, Balancer] = {}


def register(name: str) -> Callable[[Balancer], Balancer]:
    def wrap(fn: Balancer) -> Balancer:
        BALANCERS[name] = fn
        return fn

    return wrap


def _per_class(given: dict[str, float] | None, y: np.ndarray, classes: list[str], key: str) -> np.ndarray:
    """Given per-class values (every class named), or sklearn's 'balanced' n / (k * count)."""
    if given is not None:
        unknown = sorted(set(given) - set(classes))
        if unknown:
            raise CompetitionError(f"recipe.balance.{key}: {unknown[0]!r} is not a class ({', '.join(classes)})")
        missing = [c for c in classes if c not in given]
        if missing:
            raise CompetitionError(f"recipe.balance.{key}: no value for class {missing[0]!r}")
        return np.array([given[c] for c in classes], dtype=np.float64)
    present = np.unique(y)
    values = np.ones(len(classes))
    values[present] = compute_class_weight("balanced", classes=present, y=y)
    return values


@register("none")
def no_balance(config: Any, y: np.ndarray, classes: list[str]) -> Balance:
    return Balance()


@register("class_weight")
def class_weight(config: Any, y: np.ndarray, classes: list[str]) -> Balance:
    """Loss weight per class: given, or balanced so each class carries the same total loss."""
    weights = _per_class(config.weights, y, classes, "weights")
    return Balance(class_weight={i: float(w) for i, w in enumerate(weights)})


@register("oversample")
def oversample(config: Any, y: np.ndarray, classes: list[str]) -> Balance:
    """Each epoch redraws its images (with replacement) so class shares follow count**power: 0 is balanced,
    1 the natural frequencies; the epoch keeps its usual length."""
    by_class = [np.flatnonzero(y == c) for c in range(len(classes)) if np.any(y == c)]
    counts = np.array([len(m) for m in by_class], dtype=np.float64)
    share = counts**config.power / np.sum(counts**config.power)
    per_class = np.maximum(1, np.round(share * len(y))).astype(int)

    def resample(rng: np.random.Generator) -> np.ndarray:
        picks = np.concatenate([rng.choice(m, n, replace=True) for m, n in zip(by_class, per_class, strict=True)])
        return rng.permutation(picks)

    return Balance(resample=resample)


@register("focal")
def focal(config: Any, y: np.ndarray, classes: list[str]) -> Balance:
    """Focal loss (Lin et al. 2017): -alpha_y (1 - p_y)^gamma log p_y; alpha per class, given or balanced."""
    from competition.model.layers import SparseFocalLoss

    alpha = _per_class(config.alpha, y, classes, "alpha")
    return Balance(loss=SparseFocalLoss(gamma=config.gamma, alpha=[float(a) for a in alpha]))


def make_balance(config: Any, y: np.ndarray, classes: list[str]) -> Balance:
    return BALANCERS[config.method](config, y, classes)
