"""The Keras model: a backbone from the registry (`backbones`), preprocessing and the loss in custom layers
(`layers`), and the classification head on top."""

from competition.model.backbones import (BACKBONES, BackboneSpec, backbone_of, build_model, pretrained_backbone,
                                         set_trainable)

__all__ = ["BACKBONES", "BackboneSpec", "backbone_of", "build_model", "pretrained_backbone", "set_trainable"]
