"""Backbones by name (as in timm) and the classification head on top.

Every model takes uint8-range pixels (h, w, channels) and does its own preprocessing inside, so that the
same arrays feed every backbone and a saved model predicts from raw pixels. Grayscale input feeds ImageNet
backbones as three identical channels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competition.errors import CompetitionError


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone by name, with its pretrained-weights record (as timm's pretrained_cfg): what `doctor`,
    recipe validation and `build_model` all read."""

    name: str
    build: Callable[..., Any]  # (input_shape, config) -> keras.Model from images to feature maps
    preprocess: str  # "scale01" | "tf" | "torch" | "caffe" | "raw" (the model expects 0-255)
    pretrained: bool  # has ImageNet weights in keras.applications
    weights_file: Callable[..., str] | None = None  # Keras cache file name for the no-top ImageNet weights
    # Keras verifies its cache file against this hash (md5, or sha256 when 64 hex digits; keras/src/applications):
    # a file whose hash differs is re-downloaded and, offline, deleted. None: not hash-checked.
    weights_hash: str | None = None
    alphas: tuple[float, ...] | None = None  # width multipliers Keras publishes ImageNet weights for
    min_size: int = 1  # smallest input side in pixels


BACKBONES: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry under spec.name (recipes name it in model.backbone); returns spec."""
    BACKBONES[spec.name] = spec
    return spec


# ---------------------------------------------------------------- the small CNN ("DCNN" of the notebook)


def _small_cnn(input_shape: tuple[int, int, int], config: Any) -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate(config.filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        # momentum 0.9: moving statistics keep up with a fast-changing small net (0.99 made validation erratic)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i + 1}_bn")(x)
        x = layers.Activation("relu", name=f"block{i + 1}_relu")(x)
        x = layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    return keras.Model(inputs, x, name="cnn")


register(BackboneSpec("cnn", _small_cnn, preprocess="scale01", pretrained=False))


# ---------------------------------------------------------------- keras.applications


def _app(constructor: str, **fixed: Any) -> Callable[..., Any]:
    def build(input_shape: tuple[int, int, int], config: Any, weights: str | None) -> Any:
        import keras

        factory = getattr(keras.applications, constructor)
        options = dict(fixed)
        if config.alpha is not None:
            options["alpha"] = config.alpha
        return factory(include_top=False, weights=weights, input_shape=input_shape, **options)

    return build


def _size_name(shape: tuple[int, ...], allowed: tuple[int, ...]) -> int:
    """The size in the file name: Keras uses the 224 weights for non-square or other sizes."""
    return shape[0] if shape[0] == shape[1] and shape[0] in allowed else 224


def _mobilenet_file(config: Any, shape: tuple[int, ...]) -> str:
    alpha = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}.get(config.alpha or 1.0, str(config.alpha))
    return f"mobilenet_{alpha}_{_size_name(shape, (128, 160, 192, 224))}_tf_no_top.h5"


def _mobilenetv2_file(config: Any, shape: tuple[int, ...]) -> str:
    alpha = float(config.alpha or 1.0)
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{_size_name(shape, (96, 128, 160, 192, 224))}_no_top.h5"


for _name, _ctor, _pre, _file, _hash, _alphas in (
    ("vgg16", "VGG16", "caffe", lambda c, r: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "6d6bbae143d832006294945121d1f1fc", None),
    ("resnet50v2", "ResNet50V2", "tf", lambda c, r: "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "fac2f116257151a9d068a22e544a4917", None),
    ("efficientnetb0", "EfficientNetB0", "raw", lambda c, r: "efficientnetb0_notop.h5",
     "50bc09e76180e00e4465e1a485ddc09d", None),
    ("mobilenet", "MobileNet", "tf", _mobilenet_file, None, (0.25, 0.5, 0.75, 1.0)),
    ("mobilenetv2", "MobileNetV2", "tf", _mobilenetv2_file, None, (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
    ("densenet121", "DenseNet121", "torch", lambda c, r: "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "30ee3e1110167f948a6b9946edeeb738", None),
    ("convnext_tiny", "ConvNeXtTiny", "raw", lambda c, r: "convnext_tiny_notop.h5",
     "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1", None),
):
    register(BackboneSpec(_name, _app(_ctor), preprocess=_pre, pretrained=True, weights_file=_file,
                          weights_hash=_hash, alphas=_alphas, min_size=32))


def check_config(config: Any, image_size: tuple[int, int]) -> None:
    """Checks of a recipe's model section that need no file: the input size against the backbone's minimum,
    ImageNet weights for a backbone that has them, at a published width. Run when a recipe is validated, so
    `doctor` and `train` fail at the same place, before any decoding.

    Raises CompetitionError naming the recipe key and value."""
    spec = BACKBONES[config.backbone]
    if min(image_size) < spec.min_size:
        raise CompetitionError(f"recipe.data.image_size: backbone '{spec.name}' needs at least {spec.min_size} px, "
                               f"got {list(image_size)}")
    if config.weights != "imagenet":
        return
    if not spec.pretrained:
        raise CompetitionError(f"recipe.model.weights: backbone '{spec.name}' has no ImageNet weights; use 'none'")
    alpha = config.alpha if config.alpha is not None else 1.0
    if spec.alphas is not None and alpha not in spec.alphas:
        raise CompetitionError(f"recipe.model.alpha: Keras has ImageNet weights for '{spec.name}' only at alpha "
                               f"{', '.join(f'{a:g}' for a in spec.alphas)}, got {alpha:g}")


# ---------------------------------------------------------------- weights


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded weights: $KERAS_HOME/models (default ~/.keras/models)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_weights(config: Any, input_shape: tuple[int, int, int]) -> str | None:
    """What to pass as `weights=`: None, "imagenet" (checked to be obtainable), or a local file path."""
    spec = BACKBONES[config.backbone]
    if config.weights == "none":
        return None
    if config.weights == "imagenet":
        if not spec.pretrained:
            raise CompetitionError(f"recipe.model.weights: backbone '{spec.name}' has no ImageNet weights; use 'none'")
        cached = find_imagenet_file(config, input_shape)
        # A cached file is loaded by path; "imagenet" lets Keras download (and fail offline with our message).
        return str(cached) if cached is not None else "imagenet"
    path = Path(config.weights).expanduser()
    if not path.is_file():
        raise CompetitionError(f"recipe.model.weights: weights file {str(path)!r} not found")
    return str(path)


def imagenet_file(config: Any, input_shape: tuple[int, int, int]) -> Path | None:
    """The file Keras would download for `weights: imagenet`, in the Keras cache."""
    spec = BACKBONES[config.backbone]
    if spec.weights_file is None:
        return None
    return keras_cache_dir() / spec.weights_file(config, input_shape)


def find_imagenet_file(config: Any, input_shape: tuple[int, ...]) -> Path | None:
    """The cached ImageNet file for this backbone and size; for the MobileNets, whose file names carry an
    input size, the 224 file serves every size (no-top convolution weights do not depend on it)."""
    exact = imagenet_file(config, input_shape)
    if exact is None:
        return None
    if exact.is_file():
        return exact
    fallback = imagenet_file(config, (224, 224, 3))
    return fallback if fallback is not None and fallback.is_file() else None


def build_backbone(config: Any, input_shape: tuple[int, int, int]) -> Any:
    spec = BACKBONES[config.backbone]
    weights = resolve_weights(config, input_shape)
    if not spec.pretrained:
        backbone = spec.build(input_shape, config)
        if weights is not None:
            load_weights_file(backbone, Path(weights), config)
        return backbone
    check_config(config, input_shape[:2])
    if weights not in (None, "imagenet"):  # a file: loaded as keras.applications would, quietly, checked
        backbone = spec.build(input_shape, config, None)
        load_weights_file(backbone, Path(weights), config)
        return backbone
    try:
        return spec.build(input_shape, config, weights)
    except Exception as exc:  # Keras raises URL/HTTP/OS/Value errors when the download or the file fails
        if weights == "imagenet" and not imagenet_file(config, input_shape).is_file():
            expected = imagenet_file(config, input_shape)
            raise CompetitionError(
                f"recipe.model.weights: ImageNet weights for '{spec.name}' could not be downloaded; "
                f"place {expected.name} in {expected.parent} (or set weights to a local file)"
            ) from None
        raise CompetitionError(f"recipe.model.weights: cannot load {weights!r} into '{spec.name}': {str(exc).splitlines()[0]}") from None


def weights_to_check(config: Any, input_shape: tuple[int, int, int]) -> Path | None:
    """The weights file a network loads by path and nothing else checks: model.weights given as a file, or
    the cached ImageNet file of a backbone whose file Keras does not hash-check (the MobileNets, whose cache
    names carry a width that a copied file may not have). None for `none`, for ImageNet files Keras
    hash-checks and for files not cached (Keras downloads them). CompetitionError when a given file is missing."""
    spec = BACKBONES[config.backbone]
    if config.weights == "none":
        return None
    if config.weights == "imagenet":
        return find_imagenet_file(config, input_shape) if spec.pretrained and spec.weights_hash is None else None
    path = Path(config.weights).expanduser()
    if not path.is_file():
        raise CompetitionError(f"recipe.model.weights: weights file {str(path)!r} not found")
    return path


def check_weights(config: Any, image_size: tuple[int, int], channels: int) -> Path | None:
    """Load the recipe's weights file (weights_to_check) into its backbone, built without weights at the
    recipe's size, as training will: run by `doctor` and by `train` before the run folder exists. Returns the
    file checked (None: nothing to check); CompetitionError of one line naming the file, the backbone and the
    first weight that does not fit (a MobileNet of another alpha, another backbone, a whole classifier)."""
    spec = BACKBONES[config.backbone]
    shape = (int(image_size[0]), int(image_size[1]), 3 if spec.pretrained else int(channels))
    path = weights_to_check(config, shape)
    if path is None:
        return None
    from competition.runtime import import_tensorflow

    import_tensorflow()
    import keras

    try:
        backbone = spec.build(shape, config, None) if spec.pretrained else spec.build(shape, config)
        load_weights_file(backbone, path, config)
    finally:
        keras.backend.clear_session()
    return path


def load_weights_file(model: Any, path: Path, config: Any) -> None:
    """`model.load_weights(path)` without Keras's warnings (one per variable that did not load); a file that
    does not fit is one CompetitionError naming the file, the backbone and the first weight that differs."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as exc:  # shape mismatch, another model's file, an unreadable file
        spec = BACKBONES[config.backbone]
        if spec.alphas is not None:
            what = f" at alpha {config.alpha if config.alpha is not None else 1.0:g}"
        elif not spec.pretrained:
            what = f" with filters {list(config.filters)}"
        else:
            what = ""
        try:
            detail = _first_misfit(model, path)
        except Exception:  # the file does not even read as weights: Keras's own words say why
            detail = None
        if detail is None:
            raise CompetitionError(f"recipe.model.weights: cannot load {path} into backbone '{spec.name}'{what}: "
                                   f"{_sentence(exc)}") from None
        raise CompetitionError(f"recipe.model.weights: {path} does not fit backbone '{spec.name}'{what}: "
                               f"{detail}") from None


def _sentence(exc: BaseException, limit: int = 240) -> str:
    """An exception's message as one line, cut at a word (marked) when long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _dims(shape: Any) -> str:
    return "x".join(str(int(d)) for d in shape) or "scalar"


def _saved_weights(path: Path) -> tuple[str, list[tuple[str, list[tuple[int, ...]]]]]:
    """("legacy" or "keras3", [(name, shapes)]) of a weights file: a legacy .h5 (keras.applications' files,
    Keras 2 saves) lists its layers with weights in order, each with its arrays' shapes; a Keras 3 file
    (.weights.h5, or the weights inside a .keras archive) lists every array under its path."""
    import io
    import zipfile

    import h5py

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            source: Any = io.BytesIO(archive.read("model.weights.h5"))
    else:
        source = str(path)
    with h5py.File(source, "r") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" in group.attrs:
            layers = []
            for raw in group.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                names = group[name].attrs.get("weight_names", [])
                shapes = [tuple(group[name][w.decode() if isinstance(w, bytes) else str(w)].shape) for w in names]
                if shapes:
                    layers.append((name, shapes))
            return "legacy", layers
        arrays: list[tuple[str, list[tuple[int, ...]]]] = []
        handle.visititems(lambda name, item: arrays.append((name, [tuple(item.shape)]))
                          if isinstance(item, h5py.Dataset) and not name.startswith("optimizer") else None)
        return "keras3", arrays


def _first_misfit(model: Any, path: Path) -> str | None:
    """The first weight of `model` that the file's do not fit, in words; None when the shapes alone do not
    tell (the file then failed for another reason)."""
    from collections import Counter

    kind, saved = _saved_weights(path)
    if kind == "legacy":  # loaded layer by layer, in order, as Keras's legacy loader does
        ours = [(layer.name, [tuple(w.shape) for w in layer.trainable_weights + layer.non_trainable_weights])
                for layer in model.layers if layer.weights]
        for (mine, shapes), (theirs, stored) in zip(ours, saved):
            for k, (want, have) in enumerate(zip(shapes, stored)):
                if tuple(want) != tuple(have):
                    other = f" (its layer {theirs})" if theirs != mine else ""
                    return (f"layer {mine}: weight {k} is {_dims(want)} in the backbone, {_dims(have)} in the file"
                            f"{other}; weights of another backbone or width")
            if len(shapes) != len(stored):
                other = f" (its layer {theirs})" if theirs != mine else ""
                return f"layer {mine}: {len(shapes)} weights in the backbone, {len(stored)} in the file{other}"
        if len(ours) != len(saved):
            return f"the file holds weights for {len(saved)} layers, the backbone has {len(ours)}"
        return None
    have = Counter(shape for _, shapes in saved for shape in shapes)
    want = Counter(tuple(w.shape) for w in model.weights)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if have[shape] < want[shape]:
            return (f"weight {weight.path} is {_dims(shape)} in the backbone, and the file has too few arrays of "
                    f"that shape (the file holds {sum(have.values())} arrays, the backbone {len(model.weights)}); "
                    "weights of another backbone or width")
    if sum(have.values()) != len(model.weights):
        return f"the file holds {sum(have.values())} arrays, the backbone {len(model.weights)}"
    return None


# ---------------------------------------------------------------- the whole model


def build_model(config: Any, input_shape: tuple[int, int, int], n_classes: int, *, multilabel: bool = False) -> Any:
    """Preprocessing + backbone + head (pooling, dense layers, dropout, softmax): a Keras model from uint8-range
    images (batch, h, w, channels) to float32 probabilities (batch, n_classes); `multilabel`: one sigmoid per
    label instead of the softmax (each probability on its own). Made of standard Keras layers only, so a saved
    fold model loads with plain `keras.saving.load_model` without this package."""
    import keras
    from keras import layers

    from competition.model.layers import preprocessing

    spec = BACKBONES[config.backbone]
    channels = input_shape[-1]
    backbone_shape = (input_shape[0], input_shape[1], 3 if spec.pretrained else channels)
    backbone = build_backbone(config, backbone_shape)

    inputs = keras.Input(input_shape, name="image")
    x = preprocessing(spec.preprocess, input_shape, to_rgb=spec.pretrained and channels == 1)(inputs)
    # A pretrained backbone's BatchNorm layers stay in inference mode, also when it is unfrozen for
    # fine-tuning: set_trainable(..., keep_batchnorm_frozen=True) makes them non-trainable, which Keras 3
    # honours (BatchNormalization uses batch statistics only when `training and self.trainable`). The
    # `training=False` of the functional call is not enough: Keras 3 passes the outer training flag on.
    x = backbone(x, training=False) if pretrained_backbone(config) else backbone(x)
    head = config.head
    if head.pooling == "flatten":
        x = layers.Flatten(name="head_flatten")(x)
    elif head.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    else:
        x = layers.GlobalMaxPooling2D(name="head_pool")(x)
    for i, units in enumerate(head.dense):
        if head.dropout:
            x = layers.Dropout(head.dropout, name=f"head_dropout{i}")(x)
        x = layers.Dense(units, activation="relu", name=f"head_dense{i}")(x)
    if head.dropout:
        x = layers.Dropout(head.dropout, name="head_dropout_out")(x)
    outputs = layers.Dense(n_classes, activation="sigmoid" if multilabel else "softmax", dtype="float32",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_classifier")


def pretrained_backbone(config: Any) -> bool:
    """True when the recipe's backbone starts from pretrained weights (ImageNet or a file): its BatchNorm
    statistics are kept, never re-estimated on the contest's small batches."""
    return config.weights != "none"


def backbone_of(model: Any) -> Any:
    """The backbone sub-model inside a classifier built by build_model (the nested model that is not the
    preprocessing)."""
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "preprocess")


def set_trainable(model: Any, trainable: str, *, keep_batchnorm_frozen: bool = False) -> None:
    """What trains in the next phase: `all`, `head` (backbone frozen), or the name of a backbone layer from
    which on layers train. With `keep_batchnorm_frozen` (pretrained backbones), every BatchNormalization layer
    of the backbone stays non-trainable, so it keeps its moving statistics and runs in inference mode even
    under `training=True` (Keras 3 semantics; the Keras transfer-learning guide's advice for fine-tuning).

    Raises CompetitionError when `trainable` names no layer of the backbone."""
    import keras

    backbone = backbone_of(model)
    if trainable in ("all", "head"):
        backbone.trainable = trainable == "all"
    else:
        names = [layer.name for layer in backbone.layers]
        if trainable not in names:
            raise CompetitionError(f"recipe.train.phases.trainable: no layer {trainable!r} in backbone '{backbone.name}'")
        backbone.trainable = True
        start = names.index(trainable)
        for i, layer in enumerate(backbone.layers):
            layer.trainable = i >= start
    if keep_batchnorm_frozen:
        for layer in _all_layers(backbone):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def _all_layers(model: Any) -> list[Any]:
    """Every layer of a model, those of nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found
