"""Mixup and CutMix of a training batch: pairs of images blended or pasted together, with their labels (and
sample weights) mixed in the same proportion.

Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): x = lam x_i + (1 - lam) x_j.
CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features"): a box of image j pasted into image i, lam the share of image i left. As timm's Mixup in its
"batch" mode: one lam ~ Beta(alpha, alpha) per batch, the batch mixed with a permutation of itself, the CutMix
box centred uniformly, clipped at the border and lam corrected to the area actually pasted; when both are
declared, each batch picks one with probability 0.5 (timm's switch_prob), then mixes with that one's `p`.
Mixing is an augmentation: only phases with `augment: true` mix (`mixes_batches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from competition.recipe import MixConfig, PhaseConfig, Recipe


def mixes_batches(recipe: Recipe, phase: PhaseConfig) -> bool:
    """Whether the phase's training batches are mixed: the recipe declares mixup or cutmix and the phase
    augments."""
    return phase.augment and (recipe.train.mixup is not None or recipe.train.cutmix is not None)


def soft_labels(recipe: Recipe, phase: PhaseConfig) -> bool:
    """Whether the phase trains on one-hot (n, n_classes) targets, which label smoothing and mixing need,
    instead of integer labels."""
    return recipe.train.label_smoothing > 0 or mixes_batches(recipe, phase)


@dataclass
class Mixed:
    """One mixed batch: float32 images (b, h, w, c) in 0..255, float32 labels (b, n_classes) whose rows sum to
    1, float32 sample weights (b,) or None; how it was mixed ("mixup", "cutmix" or None when the batch drew no
    mixing), the share lam of each image's own label, the partner of each image (int (b,), a permutation), and
    the CutMix box (top, bottom, left, right) in pixels, bottom and right exclusive."""

    images: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None
    method: str | None = None
    lam: float = 1.0
    partner: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Mixer:
    """The recipe's `train.mixup` and/or `train.cutmix` (at least one given)."""

    mixup: MixConfig | None = None
    cutmix: MixConfig | None = None

    def __call__(self, images: np.ndarray, labels: np.ndarray, weights: np.ndarray | None,
                 rng: np.random.Generator) -> Mixed:
        """Mix a batch of images (b, h, w, c, any number type), one-hot or soft labels (b, n_classes) and
        optional sample weights (b,), drawing every choice from `rng` (the same rng state gives the same
        batch). Returns Mixed; the inputs are not changed."""
        images = images.astype(np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        if self.mixup is not None and self.cutmix is not None:
            method = "cutmix" if rng.random() < 0.5 else "mixup"
        else:
            method = "mixup" if self.mixup is not None else "cutmix"
        config: Any = self.mixup if method == "mixup" else self.cutmix
        if len(images) < 2 or rng.random() >= config.p:
            return Mixed(images, labels, weights)
        lam = float(rng.beta(config.alpha, config.alpha))
        partner = rng.permutation(len(images))
        box = None
        if method == "mixup":
            images = lam * images + (1.0 - lam) * images[partner]
        else:
            box = cutmix_box(images.shape[1:3], lam, rng)
            top, bottom, left, right = box
            images[:, top:bottom, left:right] = images[partner, top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (images.shape[1] * images.shape[2])
        labels = lam * labels + (1.0 - lam) * labels[partner]
        if weights is not None:
            weights = lam * weights + (1.0 - lam) * weights[partner]
        return Mixed(images, labels.astype(np.float32), None if weights is None else weights.astype(np.float32),
                     method, lam, partner, box)


def cutmix_box(size: tuple[int, int], lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right) of about (1 - lam) of an image of `size` (h, w): sides sqrt(1 - lam)
    times the image's, centred uniformly, clipped at the border (Yun et al. 2019; timm's rand_bbox)."""
    h, w = int(size[0]), int(size[1])
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cy + cut_h // 2, 0, h))
    left, right = int(np.clip(cx - cut_w // 2, 0, w)), int(np.clip(cx + cut_w // 2, 0, w))
    return top, bottom, left, right


def phase_mixer(recipe: Recipe, phase: PhaseConfig) -> Mixer | None:
    """The phase's Mixer, or None when its batches are not mixed (mixes_batches)."""
    if not mixes_batches(recipe, phase):
        return None
    return Mixer(mixup=recipe.train.mixup, cutmix=recipe.train.cutmix)
