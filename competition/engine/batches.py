"""Training batches: shuffled or class-resampled, augmented (and mixed) on the fly in worker threads."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from competition.augment import augment_batch
from competition.engine.mixing import Mixer


class Rows:
    """Rows `rows` of an array x (n, ...) without copying them: a fold's training or validation images are
    read from the run's one decoded array, batch by batch (a copy of a fold's training rows of 6,400 RGB
    images at 128 px would be 250 MB more per fold process). Indexing with an int array or a slice reads
    x[rows[index]]; np.asarray(view) copies the rows out."""

    def __init__(self, x: np.ndarray, rows: np.ndarray) -> None:
        self.x, self.rows = x, np.asarray(rows)
        self.shape = (len(self.rows), *x.shape[1:])
        self.dtype = x.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.x[self.rows[index]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.x[self.rows], dtype=dtype)


class TrainBatches(keras.utils.PyDataset):
    """Batches of (uint8 images (b, h, w, c), int labels (b,)[, float32 sample weights (b,)]); x is an array
    or a Rows view (n, ...), images or cached backbone features.

    Each epoch's row order is a permutation of the rows, or `resample(rng)` (balance.oversample). Each batch
    seeds its own augmentation from (seed, epoch, index), so results do not depend on thread scheduling; each
    worker thread has its own copy of the pipeline, since albumentations transforms hold random state.

    With `n_classes`, labels are one-hot float32 (b, n_classes) (soft targets, for label smoothing and mixing);
    with a `mixer` (engine.mixing; needs n_classes) each augmented batch is then mixed, seeded from
    (seed, epoch, index) too, and images are float32 (b, h, w, c) in 0..255, labels rows of mixed one-hots,
    sample weights mixed alike."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, pipeline: Any,
                 resample: Callable[[np.random.Generator], np.ndarray] | None,
                 class_weight: dict[int, float] | None, seed: int, workers: int, *,
                 n_classes: int | None = None, mixer: Mixer | None = None,
                 row_weights: np.ndarray | None = None) -> None:
        super().__init__(workers=workers, use_multiprocessing=False)
        if mixer is not None and n_classes is None:
            raise ValueError("mixing batches needs n_classes (one-hot labels)")
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.pipeline, self.resample, self.rng = pipeline, resample, np.random.default_rng(seed)
        self.n_classes, self.mixer = n_classes, mixer
        self.local = threading.local()
        self.weights = None
        if class_weight:
            self.weights = np.array([class_weight.get(int(c), 1.0) for c in y], dtype=np.float32)
        if row_weights is not None:  # per row (pseudo-labelled images), times the class weight
            self.weights = np.asarray(row_weights, dtype=np.float32) * (1.0 if self.weights is None else self.weights)
        self.epoch = -1
        self.on_epoch_end()

    def __len__(self) -> int:
        return int(np.ceil(len(self.order) / self.batch_size))

    def _pipeline(self) -> Any:
        if not hasattr(self.local, "pipeline"):
            self.local.pipeline = copy.deepcopy(self.pipeline)
        return self.local.pipeline

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        images = self.x[rows]
        if self.pipeline is not None:
            pipeline = self._pipeline()
            pipeline.set_random_seed(int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]))
            images = augment_batch(pipeline, images)
        labels = self.y[rows]
        if labels.ndim == 2:  # multi-label 0/1 targets, for binary cross-entropy
            labels = labels.astype(np.float32)
        weights = None if self.weights is None else self.weights[rows]
        if self.n_classes is not None:
            labels = np.eye(self.n_classes, dtype=np.float32)[labels]
        if self.mixer is not None:
            # Its own stream (spawn key 1), so mixing leaves the augmentation's draws as they were.
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i], spawn_key=(1,)))
            mixed = self.mixer(images, labels, weights, rng)
            images, labels, weights = mixed.images, mixed.labels, mixed.weights
        if weights is not None:
            return images, labels, weights
        return images, labels

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self.resample(self.rng) if self.resample else self.rng.permutation(len(self.y))
