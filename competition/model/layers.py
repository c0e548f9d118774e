"""Preprocessing as standard Keras layers (so a saved model needs no code of ours to load), and the custom
pieces that have no standard equivalent, registered so saved models load in Keras safe mode (no Lambda
layers): the focal loss, and `Preprocess`, kept only so that models saved before the standard-layer
preprocessing still load."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

_MEAN_RGB = (0.485, 0.456, 0.406)
_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def preprocessing(mode: str, input_shape: tuple[int, ...], *, to_rgb: bool = False) -> keras.Model:
    """A small functional model named "preprocess" of standard Keras layers: float pixels 0-255
    (batch, h, w, c) to what a backbone expects; grayscale repeated to RGB (Concatenate) when `to_rgb`.
    Modes (keras.applications' conventions): "scale01" x/255; "tf" x/127.5 - 1; "torch" x/255 standardised by
    the ImageNet mean and std (Normalization); "caffe" RGB to BGR minus the ImageNet BGR mean (a fixed,
    non-trainable 1x1 Conv2D); "raw" unchanged (EfficientNet and ConvNeXt normalise inside)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Concatenate(axis=-1, name="gray_to_rgb")([inputs, inputs, inputs]) if to_rgb else inputs
    if mode == "scale01":
        x = keras.layers.Rescaling(1 / 255.0, name="scale01")(x)
    elif mode == "tf":
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_tf")(x)
    elif mode == "torch":
        x = keras.layers.Rescaling(1 / 255.0, name="scale01")(x)
        x = keras.layers.Normalization(mean=list(_MEAN_RGB), variance=[s * s for s in _STD_RGB], name="imagenet_std")(x)
    elif mode == "caffe":
        conv = keras.layers.Conv2D(3, 1, trainable=False, name="rgb_to_bgr_centred")
        x = conv(x)
        kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
        for i in range(3):
            kernel[0, 0, i, 2 - i] = 1.0  # output channel 2 - i is input channel i: RGB -> BGR
        conv.set_weights([kernel, -np.asarray(_CAFFE_BGR_MEAN, dtype=np.float32)])
    elif mode != "raw":
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    return keras.Model(inputs, x, name="preprocess")


@keras.saving.register_keras_serializable(package="competition")
class Preprocess(keras.layers.Layer):
    """Pixels 0-255 to what a backbone expects; grayscale repeated to RGB for ImageNet backbones."""

    def __init__(self, mode: str, to_rgb: bool = False, **base: Any) -> None:
        super().__init__(**base)
        self.mode = mode
        self.to_rgb = to_rgb

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "float32")
        if self.to_rgb:
            x = ops.concatenate([x, x, x], axis=-1)
        if self.mode == "scale01":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - ops.convert_to_tensor(_MEAN_RGB)) / ops.convert_to_tensor(_STD_RGB)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_BGR_MEAN)
        return x  # "raw": the backbone normalises inside (EfficientNet, ConvNeXt)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*input_shape[:-1], 3 if self.to_rgb else input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "to_rgb": self.to_rgb}


@keras.saving.register_keras_serializable(package="competition")
class SparseFocalLoss(keras.losses.Loss):
    """Focal loss on integer labels with a per-class alpha: -alpha_y (1 - p_y)^gamma log p_y."""

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None, name: str = "sparse_focal", **base: Any) -> None:
        super().__init__(name=name, **base)
        self.gamma = float(gamma)
        self.alpha = list(alpha) if alpha is not None else None

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        proba = ops.clip(y_pred, 1e-7, 1.0)
        p_true = ops.take_along_axis(proba, ops.expand_dims(y_true, -1), axis=-1)[:, 0]
        loss = -ops.power(1.0 - p_true, self.gamma) * ops.log(p_true)
        if self.alpha is not None:
            loss = loss * ops.take(ops.convert_to_tensor(self.alpha, dtype=loss.dtype), y_true)
        return loss

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}
