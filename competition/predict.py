"""Predictions: class probabilities on in-memory uint8 images, optionally averaged over test-time transforms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Test-time transforms on (n, h, w, c) arrays; rotations and transpose need square images.
TTA: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hflip": lambda x: x[:, :, ::-1],
    "vflip": lambda x: x[:, ::-1],
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: x.transpose(0, 2, 1, 3),
}


def check_tta(names: Sequence[str], image_size: tuple[int, int]) -> None:
    """Raises CompetitionError when a declared transform cannot apply to images of `image_size` (h, w):
    rotations by 90/270 degrees and transpose need square images."""
    from competition.errors import CompetitionError

    square_only = {"rot90", "rot270", "transpose"} & set(names)
    if square_only and image_size[0] != image_size[1]:
        raise CompetitionError(f"recipe.tta: {sorted(square_only)[0]} needs square images, data.image_size is {list(image_size)}")


def predict_proba(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (n, n_classes) as float32; rows sum to 1."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    proba = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)
    return proba / proba.sum(axis=1, keepdims=True)


def predict_tta(model: Any, images: np.ndarray, tta: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(plain, with TTA): the TTA prediction is the mean over the original and each declared transform,
    so the gain of TTA is measured on the same model, not assumed."""
    plain = predict_proba(model, images, batch_size)
    if not tta:
        return plain, plain
    views = [plain] + [predict_proba(model, np.ascontiguousarray(TTA[name](images)), batch_size) for name in tta]
    return plain, np.mean(views, axis=0).astype(np.float32)
