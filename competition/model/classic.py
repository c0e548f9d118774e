"""Models that are not networks: scikit-learn estimators on an image embedding, trained per fold in seconds.

A recipe's `model.kind` names one (a registry, as the backbones): `knn` (KNeighborsClassifier), `logistic`
(LogisticRegression), and the transductive `label_spreading` and `label_propagation` (sklearn.semi_supervised:
Zhou et al. 2004; Zhu & Ghahramani 2002), which spread the training labels over a nearest-neighbour graph of
the training *and* unlabelled images. `model.embedding` says what they see: `pixels` (the decoded images at
`data.image_size`, scaled to [0, 1], flattened), `pca` (their first `components` principal components), or
`backbone` (a pretrained backbone's frozen features: its last feature map averaged over space, standardised).
`model.params` are the estimator's own parameters, checked by scikit-learn when the recipe is loaded.

Honesty: the PCA is fitted on the training and test images without labels. A transductive fold model is fitted
with the labels of its training folds only: its validation images and the test images are unlabelled points of
the same graph, so no validation label reaches its own prediction, and its OOF estimates what it does on the
test, whose images it sees the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from competition.errors import CompetitionError

NETWORK = "network"


@dataclass(frozen=True)
class KindSpec:
    """A model kind by name: how to make its estimator, its defaults, and whether it sees the test images."""

    name: str
    make: Any  # () -> an unfitted scikit-learn estimator class
    defaults: dict[str, Any]
    transductive: bool = False


def _knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier


def _logistic() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression


def _spreading() -> Any:
    from sklearn.semi_supervised import LabelSpreading

    return LabelSpreading


def _propagation() -> Any:
    from sklearn.semi_supervised import LabelPropagation

    return LabelPropagation


MODEL_KINDS: dict[str, KindSpec | None] = {
    NETWORK: None,  # a Keras network: competition.model.backbones, trained by competition.engine
    "knn": KindSpec("knn", _knn, {"n_neighbors": 5, "weights": "distance"}),
    "logistic": KindSpec("logistic", _logistic, {"C": 1.0, "max_iter": 2000}),
    "label_spreading": KindSpec("label_spreading", _spreading,
                                {"kernel": "knn", "n_neighbors": 3, "alpha": 0.2, "max_iter": 100}, True),
    "label_propagation": KindSpec("label_propagation", _propagation,
                                  {"kernel": "knn", "n_neighbors": 3, "max_iter": 1000}, True),
}
EMBEDDINGS = ("pixels", "pca", "backbone")


def spec(kind: str) -> KindSpec:
    """The KindSpec of a non-network kind; CompetitionError for `network` or an unknown name."""
    found = MODEL_KINDS.get(kind)
    if found is None:
        raise CompetitionError(f"recipe.model.kind: {kind!r} is not a scikit-learn model kind")
    return found


def is_transductive(kind: str) -> bool:
    """True for kinds that see the test images (unlabelled) when they are fitted."""
    found = MODEL_KINDS.get(kind)
    return bool(found and found.transductive)


def make_estimator(kind: str, params: dict[str, Any], seed: int = 0) -> Any:
    """An unfitted estimator of `kind` with its defaults, then `params`, set (random_state where it has one).

    Raises CompetitionError naming recipe.model.params.<key> for a parameter the estimator does not have."""
    found = spec(kind)
    estimator = found.make()()
    merged = {**found.defaults, **params}
    if "random_state" in estimator.get_params():
        merged.setdefault("random_state", seed)
    known = estimator.get_params()
    for key in merged:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CompetitionError(f"recipe.model.params.{key}: not a parameter of {type(estimator).__name__}"
                                   f"{hint}; known: {', '.join(sorted(known))}")
    return estimator.set_params(**merged)


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Fit the kind once on 12 random points, so a bad parameter value fails when the recipe is loaded (as
    scikit-learn's own parameter validation words it), not after the images are decoded."""
    estimator = make_estimator(kind, params)
    # scikit-learn takes True as the integer 1 (`n_neighbors: yes` would be one neighbour): a YAML boolean is
    # refused where the parameter's constraints name no boolean
    constraints = getattr(type(estimator), "_parameter_constraints", None) or {}
    for key, value in params.items():
        allowed = constraints.get(key)
        if isinstance(value, bool) and allowed and not any(c is bool or c in ("boolean", "verbose", "no_validation")
                                                           for c in allowed if isinstance(c, str | type)):
            wanted = " or ".join(str(c) for c in allowed if "Hidden" not in type(c).__name__)
            raise CompetitionError(f"recipe.model.params.{key}: expected {wanted}, got {value!r} (YAML reads yes, "
                                   "no, on, off, true and false as booleans, which are not numbers)")
    neighbours = estimator.get_params().get("n_neighbors")
    if isinstance(neighbours, int) and not isinstance(neighbours, bool) and neighbours > 5:
        estimator.set_params(n_neighbors=5)  # its type is checked here; its size against the contest (check_size)
    n = 12
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    y = np.arange(n) % 2
    if spec(kind).transductive:
        y = np.where(np.arange(n) < 8, y, -1)
    try:
        estimator.fit(x, y)
    except (ValueError, TypeError) as exc:  # scikit-learn's InvalidParameterError is both
        message = " ".join(str(exc).split())
        key = next((k for k in params if f"'{k}'" in message), None) or next((k for k in params if k in message),
                                                                             None)
        where = f"recipe.model.params.{key}" if key else "recipe.model.params"
        raise CompetitionError(f"{where}: {message}") from None


def check_size(kind: str, params: dict[str, Any], n_train_min: int, n_all: int) -> None:
    """CompetitionError naming recipe.model.params.n_neighbors when it exceeds the images a fold's estimator is
    fitted on: the smallest fold's training images (inductive), or every training and test image (transductive).
    Run before the run folder exists."""
    neighbours = make_estimator(kind, params).get_params().get("n_neighbors")
    if not isinstance(neighbours, int):
        return
    limit, what = ((n_all, "training and test images") if spec(kind).transductive
                   else (n_train_min, "training images of the smallest fold"))
    if neighbours > limit:
        raise CompetitionError(f"recipe.model.params.n_neighbors: {neighbours} is more than the {limit} {what}")


def embed(images: np.ndarray, embedding: Any, seed: int = 0) -> tuple[Any, np.ndarray]:
    """(fitted transformer or None, float32 (n, d) embedding) of uint8 images (n, h, w, c): `pixels` scaled to
    [0, 1] and flattened; `pca`: their first `embedding.components` principal components (sklearn PCA, fitted
    on these images: pass training and test images together, no labels); `backbone`: a pretrained backbone's
    frozen features (FrozenFeatures), standardised on these images. CompetitionError when the backbone's
    weights cannot be had."""
    if embedding.kind == "backbone":
        transformer = FrozenFeatures(embedding.network(), tuple(images.shape[1:]))
        return transformer, transformer.fit_images(images)
    flat = pixels(images)
    if embedding.kind == "pixels":
        return None, flat
    from sklearn.decomposition import PCA

    components = int(min(embedding.components, len(flat), flat.shape[1]))
    pca = PCA(n_components=components, random_state=seed, svd_solver="randomized")
    return pca, pca.fit_transform(flat).astype(np.float32)


@dataclass
class FrozenFeatures:
    """The `backbone` embedding as a fold model keeps it: the backbone's name, alpha and weights (a plain dict) and
    the images' shape, and the StandardScaler fitted on the features of the training and
    test images (no labels). The backbone is built again when new images are embedded, from the same weights
    file; the features go through competition.model.frozen.backbone_features (and its feature store)."""

    network: dict[str, Any]
    image_shape: tuple[int, ...]
    scaler: Any = None

    def features(self, images: np.ndarray) -> np.ndarray:
        from competition.model.frozen import backbone_features

        return backbone_features(self.network, np.asarray(images))

    def fit_images(self, images: np.ndarray) -> np.ndarray:
        """float32 (n, channels): standardised features of uint8 images (n, h, w, c), the scaler fitted on them."""
        from sklearn.preprocessing import StandardScaler

        features = self.features(images)
        self.scaler = StandardScaler().fit(features)
        return self.scaler.transform(features).astype(np.float32)

    def transform_images(self, images: np.ndarray) -> np.ndarray:
        """float32 (n, channels): standardised features of new uint8 images (n, h, w, c) of the fitted shape."""
        if tuple(images.shape[1:]) != tuple(self.image_shape):
            raise CompetitionError(f"frozen features: images of shape {tuple(images.shape[1:])}, the model was fitted "
                                   f"on {tuple(self.image_shape)}")
        return self.scaler.transform(self.features(images)).astype(np.float32)


def pixels(images: np.ndarray) -> np.ndarray:
    """float32 (n, h*w*c) in [0, 1] from uint8 images (n, h, w, c)."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


@dataclass
class FoldFit:
    """A fitted fold of a scikit-learn kind, as the executors report it (the networks' FoldResult has the same
    names): its OOF and test probabilities, its model, its validation score (the contest metric; one "epoch")."""

    oof: np.ndarray
    test: np.ndarray
    model: Any
    best_score: float
    best_epoch: int = 1


@dataclass
class ClassicModel:
    """One fold's fitted model as saved (fold_<k>/model.joblib): the embedding's transformer and the estimator.
    `predict_proba` takes uint8 images (n, h, w, c) and gives float32 (n, n_classes); for a transductive kind it
    classifies new images by their neighbours among the images it was fitted with (scikit-learn's inductive
    rule), which is not how the run's own test probabilities were made."""

    kind: str
    transformer: Any
    estimator: Any
    n_classes: int

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        if self.transformer is None:
            z = pixels(images)
        elif isinstance(self.transformer, FrozenFeatures):
            z = self.transformer.transform_images(images)
        else:
            z = self.transformer.transform(pixels(images))
        return _probabilities(self.estimator, z, self.n_classes)


def _probabilities(estimator: Any, z: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 (n, n_classes) of a fitted inductive estimator: class columns (`columns`), or a multi-label
    one-vs-rest estimator's per-label probabilities as they are (each its own; rows need not sum to 1)."""
    from sklearn.multiclass import OneVsRestClassifier

    if isinstance(estimator, OneVsRestClassifier):
        return np.asarray(estimator.predict_proba(z), dtype=np.float32).reshape(len(z), n_classes)
    return columns(estimator.predict_proba(z), estimator.classes_, n_classes)


def columns(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 (n, n_classes) probabilities from an estimator's (n, len(classes)) columns; a row with no mass
    (an image no label reached) gets the uniform distribution, so it is a guess, not class 0."""
    out = np.zeros((len(proba), n_classes), np.float32)
    out[:, np.asarray(classes, dtype=np.int64)] = np.nan_to_num(np.asarray(proba, dtype=np.float64))
    out = np.clip(out, 0.0, None)
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / n_classes).astype(np.float32)


def fit_fold(kind: str, params: dict[str, Any], transformer: Any, z: np.ndarray, y: np.ndarray, val: np.ndarray,
             z_test: np.ndarray, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, ClassicModel]:
    """(OOF probabilities of the `val` rows, test probabilities, the fold's ClassicModel): fitted on the
    embedded training images z (n, d) with int labels y, except the rows `val`. A transductive kind is fitted
    on z and z_test together with the `val` rows and the test unlabelled (-1) and reads its label distributions;
    an inductive one on the training rows alone."""
    estimator = make_estimator(kind, params, seed)
    if np.ndim(y) == 2:  # multi-label (an (n, k) 0/1 matrix): one binary estimator per label
        from sklearn.multiclass import OneVsRestClassifier

        estimator = OneVsRestClassifier(estimator)
    train_rows = np.setdiff1d(np.arange(len(y)), val)
    if spec(kind).transductive:
        labels = np.full(len(y) + len(z_test), -1, dtype=np.int64)
        labels[train_rows] = y[train_rows]
        estimator.fit(np.vstack([z, z_test]), labels)
        spread = estimator.label_distributions_
        classes = estimator.classes_
        oof, test = columns(spread[val], classes, n_classes), columns(spread[len(y):], classes, n_classes)
    else:
        estimator.fit(z[train_rows], y[train_rows])
        oof = _probabilities(estimator, z[val], n_classes)
        test = _probabilities(estimator, z_test, n_classes) if len(z_test) else np.zeros((0, n_classes), np.float32)
    return oof, test, ClassicModel(kind, transformer, estimator, n_classes)
