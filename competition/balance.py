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
    """Per-class loss weights, a resampler of each epoch's rows, and the Keras loss: on integer labels (b,),
    or on one-hot or soft targets (b, n_classes) when made with soft labels (make_balance)."""

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


# The balance fields that give a value per class, by name: each must name exactly the contest's classes.
PER_CLASS = ("weights", "alpha")


def check_classes(config: Any, classes: list[str]) -> None:
    """The per-class values a recipe gives (`balance.weights`, `balance.alpha`) name every class of the contest
    and no other; checked before a run folder exists (competition.recipe.check_with_contest).

    Raises CompetitionError naming the key and the class, with the closest class name for a typo."""
    for key in PER_CLASS:
        given = getattr(config, key, None)
        if given is not None:
            _check_given(given, classes, key)


def _check_given(given: dict[str, float], classes: list[str], key: str) -> None:
    from competition.registry import unknown_name

    for name in given:
        problem = unknown_name(name, classes, "class")
        if problem:  # "unknown class 'x'; did you mean 'y'?; known: ..."
            hint = problem.removeprefix(f"unknown class {name!r}").partition("; known: ")[0]
            listed = ", ".join(classes[:10]) + (f", and {len(classes) - 10} more" if len(classes) > 10 else "")
            hint += f"; classes: {listed}"
            raise CompetitionError(f"recipe.balance.{key}: {name[:60]!r} is not a class{hint}")
    missing = [c for c in classes if c not in given]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CompetitionError(f"recipe.balance.{key}: no value for class {missing[0]!r}{more}; "
                               "give one for every class")


def _per_class(given: dict[str, float] | None, y: np.ndarray, classes: list[str], key: str) -> np.ndarray:
    """Given per-class values (every class named), or sklearn's 'balanced' n / (k * count)."""
    if given is not None:
        _check_given(given, classes, key)
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


def make_balance(config: Any, y: np.ndarray, classes: list[str], *, soft_labels: bool = False,
                 label_smoothing: float = 0.0) -> Balance:
    """The recipe's `balance` section for training labels `y` (int (n,)). With `soft_labels` the loss takes
    one-hot or soft targets (b, n_classes) (what mixup, cutmix and label smoothing need; soft_loss); without,
    integer labels, as before those existed. Multi-label `y` (a 0/1 (n, k) matrix; the recipe's checks allow no
    balancing then): Keras's binary cross-entropy on the 0/1 targets, each smoothed by `label_smoothing`."""
    if np.ndim(y) == 2:
        import keras

        return Balance(loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing))
    balance = BALANCERS[config.method](config, y, classes)
    if soft_labels:
        balance.loss = soft_loss(balance.loss, label_smoothing)
    elif label_smoothing:
        raise ValueError("label smoothing needs soft_labels=True (one-hot targets)")
    return balance


def soft_loss(loss: Any, label_smoothing: float = 0.0) -> Any:
    """The categorical counterpart of a balancer's loss on integer labels, for one-hot or soft targets
    (b, n_classes), each target smoothed to t (1 - label_smoothing) + label_smoothing / n_classes (Szegedy et
    al. 2016): Keras's CategoricalCrossentropy for the plain cross-entropy, Keras's
    CategoricalFocalCrossentropy with the same gamma and per-class alpha (sum_k -alpha_k t_k (1 - p_k)^gamma
    log p_k, which is the focal loss on one-hot targets) for SparseFocalLoss. Class weights stay sample
    weights. Raises ValueError for a loss it does not know."""
    import keras

    from competition.model.layers import SparseFocalLoss

    if isinstance(loss, str) and loss == "sparse_categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    if isinstance(loss, SparseFocalLoss):
        return keras.losses.CategoricalFocalCrossentropy(alpha=loss.alpha if loss.alpha is not None else 1.0,
                                                         gamma=loss.gamma, label_smoothing=label_smoothing)
    raise ValueError(f"no soft-label form of the loss {loss!r}")
