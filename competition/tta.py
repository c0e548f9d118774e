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


# Input values per predict chunk: activations grow with it (256 RGB images of 128 px through the small CNN took
# 150 MB more than 32 did), so large images go in smaller chunks; small ones and features in chunks of 256.
CHUNK_VALUES = 2**21


def chunk_rows(shape: tuple[int, ...]) -> int:
    """Rows per predict chunk for inputs of `shape` (n, ...): 256, fewer for large images (at least 8)."""
    return int(max(8, min(256, CHUNK_VALUES // max(1, int(np.prod(shape[1:]))))))


def predict_proba(model: Any, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Softmax probabilities (n, n_classes) as float32 for images (or backbone features) (n, ...), `batch_size`
    rows at a time (None: chunk_rows); rows sum to 1. A multi-label model's sigmoid outputs (its last layer's
    activation) are each label's own probability, returned as they are.

    Chunks go through `predict_on_batch`, Keras's compiled predict step without `predict`'s per-call set-up
    (a data adapter, callbacks): the same numbers, and about 55 ms less per call measured on 2 CPU cores, which
    is most of a head epoch's validation on cached features (256 rows: 67 ms with predict, 12 ms this way)."""
    proba = predict_chunks(model, images, batch_size or chunk_rows(images.shape))
    if getattr(getattr(model.layers[-1], "activation", None), "__name__", "") == "sigmoid":
        return proba
    return proba / proba.sum(axis=1, keepdims=True)


def predict_chunks(model: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Any model's outputs for inputs (n, ...), `batch_size` rows per `predict_on_batch` call, as float32
    (n, *model output shape); no rows, no call. A short last chunk of a longer input is padded to `batch_size`
    rows (cut off again), so one compiled shape serves every chunk: no second graph trace (about 0.5 s for a
    MobileNetV2 on CPU)."""
    if len(inputs) == 0:
        return np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
    outputs = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        rows = len(chunk)
        if rows < batch_size and start > 0:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - rows, axis=0)])
        outputs.append(np.asarray(model.predict_on_batch(chunk), dtype=np.float32)[:rows])
    return np.concatenate(outputs)


def predict_tta(model: Any, images: np.ndarray, tta: Sequence[str], batch_size: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(plain, with TTA): the TTA prediction is the mean over the original and each declared transform,
    so the gain of TTA is measured on the same model, not assumed."""
    plain = predict_proba(model, images, batch_size)
    if not tta:
        return plain, plain
    images = np.asarray(images)  # the transforms need an array (a Rows view is copied out here)
    views = [plain] + [predict_proba(model, np.ascontiguousarray(TTA[name](images)), batch_size) for name in tta]
    return plain, np.mean(views, axis=0).astype(np.float32)
