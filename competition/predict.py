"""Predictions: class probabilities of a model on in-memory uint8 images."""

from __future__ import annotations

from typing import Any

import numpy as np


def predict_proba(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (n, n_classes) as float32; rows sum to 1."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    proba = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)
    return proba / proba.sum(axis=1, keepdims=True)
