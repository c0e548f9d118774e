"""Custom Keras layers, registered so saved models load in Keras safe mode (no Lambda layers)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_MEAN_RGB = (0.485, 0.456, 0.406)
_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


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
