"""The recipe's schema: one pydantic section per part of an experiment (data, model, augment, balance, train,
cv, tta, resources), every field defaulted, every number with its range; `Recipe` is their whole, with the
checks across sections that need no contest. Loading a YAML file and `--set` overrides are
competition.recipe.loading; the checks that need the contest, competition.recipe.checks.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator, model_serializer,
                      model_validator)
from pydantic_core import PydanticCustomError

from competition.errors import CompetitionError
from competition.registry import check_name


# Optimizers by recipe name: the keras.optimizers class each names.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "sgd": "SGD", "rmsprop": "RMSprop"}

MAX_IMAGE_SIZE = 4096  # px per side: larger inputs do not fit a training batch on any accelerator
MAX_UNITS = 16384  # conv filters or dense units in one layer
MAX_RECIPE_BYTES = 1 << 20  # a recipe is a few hundred bytes; a megabyte is not a recipe
MAX_YAML_VALUES = 100_000  # values a recipe's YAML may hold once its aliases are expanded
MAX_YAML_DEPTH = 64  # nesting of YAML collections
MAX_ECHO = 60  # characters of a value an error echoes
MAX_LINE = 400  # characters of one error line


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = MAX_ECHO
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def shown(value: Any) -> str:
    """`value` as an error echoes it: its repr, cut down (a few items, a few levels, MAX_ECHO characters of a
    string), so a huge or deeply shared value never makes a huge message."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a value whose repr fails is named by its type
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 2 * MAX_ECHO else text[: 2 * MAX_ECHO - 3] + "..."



def _not_a_bool(kind: str) -> BeforeValidator:
    """A validator run before pydantic's own: a YAML boolean (`yes`, `on`, `true`) is never a number, though
    Python counts True as 1 (pydantic's lax mode would take `epochs: yes` as one epoch)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(f"{kind}_from_bool", "a boolean is not a number")
        return value

    return BeforeValidator(check)


# Numbers of the recipe: ints and floats that refuse booleans (strings of numbers, as `1e-3`, which YAML 1.1
# reads as a string, still convert); booleans that refuse numbers and strings (Strict).
Int = Annotated[int, _not_a_bool("int")]
# A file, folder or column name a recipe declares: text, not empty
Name = Annotated[str, Field(min_length=1, max_length=255)]
LAYOUT_KEYS = ("train_csv", "id_column", "label_column", "group_column", "label_separator", "label_columns",
               "train_images", "test_images", "sample_submission")
Float = Annotated[float, _not_a_bool("float")]
Bool = Annotated[bool, Strict()]


def _registered(value: str, registry: dict[str, Any], what: str) -> str:
    """A name the recipe gives must be in its registry (backbones, balancers, ...)."""
    return check_name(value, registry, what)


def _registry_field(field: str, registry: dict[str, Any] | str, what: str) -> Any:
    """The validator of a field whose value names an entry of `registry`: the dict, or "module:NAME", imported
    when a recipe is first checked (the schema stays light to import). One mechanism and one error for every
    registry a recipe names: unknown <what> 'x'; did you mean 'y'?; known: ..."""
    def check(cls: type, value: str) -> str:
        found = registry
        if isinstance(found, str):
            import importlib

            module, _, name = found.partition(":")
            found = getattr(importlib.import_module(module), name)
        return _registered(value, found, what)

    return field_validator(field)(classmethod(check))


class Section(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` is never a valid number in a recipe
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # Fields added after recipes were first hashed: left out of the dump while they hold their default, so
    # recipes (and run hashes) from before they existed are unchanged.
    later_fields: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_defaults_of_later_fields(self, handler: Any) -> Any:
        dumped = handler(self)
        if isinstance(dumped, dict):
            for key in self.later_fields:
                if key in dumped and dumped[key] == type(self).model_fields[key].default:
                    dumped.pop(key)
        return dumped


class DataConfig(Section):
    root: Path | None = None  # contest folder; `--data` overrides it
    image_size: tuple[Int, Int] = (64, 64)  # (height, width); a single number means square
    channels: Annotated[Literal[1, 3], _not_a_bool("int")] = 1
    # An unreadable training image: "error" stops before training and lists every unreadable file; "skip"
    # trains without them (listed in the run's skipped_images.csv). An unreadable test image is always an error.
    on_bad_image: Literal["error", "skip"] = "error"
    # How the values of grey images of more than 8 bits become 0..255, the same for every image of the contest,
    # train and test: None maps the bit depth's full range (16-bit: 0..65535; DICOM files keep their own window),
    # [low, high] maps low..high, values outside clipped (DICOM: in its rescaled units, instead of the file's
    # window). Part of the decode-cache key (competition.data.decode, competition.data.cache).
    intensity_window: tuple[Float, Float] | None = None
    # Preprocessing that removes acquisition differences, train and test alike, part of the decode-cache key
    # (competition.data.decode.DecodeOptions). crop "foreground": crop the full-resolution image to the box of
    # the pixels above foreground_threshold, each side grown by crop_margin times the box's extent, then to the
    # aspect of image_size, before the resize (as MONAI's CropForeground). standardize "image": after the
    # resize, each image's foreground (above foreground_threshold) to mean 128 and std 40, background to 0.
    crop: Literal["none", "foreground"] = "none"
    crop_margin: Annotated[Float, Field(ge=0, le=1)] = 0.05
    standardize: Literal["none", "image"] = "none"
    foreground_threshold: Annotated[Int, Field(ge=0, le=254)] = 10  # grey level out of 255, for crop and standardize
    # Where the contest keeps its files and what its labels file's columns are called (competition.data.contest.
    # Layout; paths relative to the contest folder). The defaults read train/<Class>/ folders or train.csv
    # (id,label) with train/, test/ and sample_submission.csv. group_column groups the folds by subject.
    train_csv: Name | None = None
    id_column: Name = "id"
    label_column: Name = "label"
    group_column: Name | None = None
    # A multi-label contest (several findings per image, ChestX-ray14's 'Effusion|Nodule'): the character that
    # joins an image's labels in the label column. None: one class per image.
    label_separator: Annotated[str, Field(min_length=1, max_length=3)] | None = None
    # A multi-label contest whose labels file has one 0/1 column per label (CheXpert's), instead of label_column:
    # the columns, two or more. A row of zeros is an image with none of the labels.
    label_columns: list[Name] | None = None
    train_images: Name = "train"
    test_images: Name = "test"
    sample_submission: Name = "sample_submission.csv"
    # What the contest is scored by (competition.metrics.METRICS): every choice the tool makes follows it.
    metric: str = "macro_f1"
    # The class whose probability a one-column sample of numbers wants (a binary contest's target); None: the
    # class the column is named after, else the one that is not a negative name (benign, normal, no, 0), else
    # the second in order (competition.data.contest.positive_class).
    positive_class: Name | None = None
    later_fields = ("on_bad_image", "intensity_window", "crop", "crop_margin", "standardize", "foreground_threshold",
                    "metric", "positive_class", *LAYOUT_KEYS)

    _known_metric = _registry_field("metric", "competition.metrics:METRICS", "metric")

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("image_size")
    @classmethod
    def _min_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"images must be at least 8 px, got {shown(list(value))}")
        if max(value) > MAX_IMAGE_SIZE:
            raise ValueError(f"images must be at most {MAX_IMAGE_SIZE} px a side, got {shown(list(value))}")
        return value

    @field_validator("intensity_window")
    @classmethod
    def _window(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"expected [low, high] with low < high, got {shown(list(value))}")
        return value

    def layout(self) -> Any:
        """competition.data.contest.Layout of this section: where the contest's files are."""
        from competition.data.contest import Layout

        return Layout(**{key: getattr(self, key) for key in LAYOUT_KEYS})

    def decode_options(self) -> Any:
        """competition.data.decode.DecodeOptions of this section: how every image of the recipe is decoded."""
        from competition.data.decode import DecodeOptions

        return DecodeOptions(window=self.intensity_window, crop=self.crop, standardize=self.standardize,
                             threshold=self.foreground_threshold, margin=self.crop_margin)

    @model_validator(mode="after")
    def _used_by_a_step(self) -> DataConfig:
        # A value no chosen step reads would be ignored without a word: refused (defaults are not "given", as
        # in BalanceConfig).
        fields = type(self).model_fields
        if self.crop == "none" and self.crop_margin != fields["crop_margin"].default:
            raise CompetitionError(f"recipe.data.crop_margin: {shown(self.crop_margin)} is used only by data.crop: "
                                   "foreground, and data.crop is 'none'; remove it or set data.crop: foreground")
        if (self.crop == "none" and self.standardize == "none"
                and self.foreground_threshold != fields["foreground_threshold"].default):
            raise CompetitionError(f"recipe.data.foreground_threshold: {shown(self.foreground_threshold)} is used "
                                   "only by data.crop: foreground and data.standardize: image, and both are "
                                   "'none'; remove it or set one of them")
        if self.label_columns is not None:
            if len(self.label_columns) < 2:
                n = len(self.label_columns)
                raise CompetitionError(f"recipe.data.label_columns: {shown(self.label_columns)} lists {n} column"
                                       f"{'' if n == 1 else 's'}; a multi-label contest has two or more (one 0/1 "
                                       "column is a two-class contest: declare it with data.label_column)")
            repeated = next((c for k, c in enumerate(self.label_columns) if c in self.label_columns[:k]), None)
            if repeated is not None:
                raise CompetitionError(f"recipe.data.label_columns: {repeated!r} is listed twice")
            if "label_column" in self.model_fields_set:
                raise CompetitionError(f"recipe.data.label_column: {self.label_column!r} names one label column, and "
                                       "recipe.data.label_columns one 0/1 column per label; declare one of them")
        return self


class HeadConfig(Section):
    pooling: Literal["flatten", "avg", "max"] = "avg"
    dense: list[Annotated[Int, Field(gt=0, le=MAX_UNITS)]] = [128]
    dropout: Annotated[Float, Field(ge=0, lt=1)] = 0.3


class EmbeddingConfig(Section):
    """What a scikit-learn model kind sees (competition.model.classic.embed): the decoded images at
    data.image_size as `pixels`, their first `components` principal components (`pca`), or a pretrained
    backbone's frozen features (`backbone`: its last feature map averaged over space, standardised; the
    backbone, alpha and weights as for a network)."""

    kind: Literal["pixels", "pca", "backbone"] = "pca"
    components: Annotated[Int, Field(ge=1, le=4096)] = 100
    backbone: str = "mobilenetv2"  # kind backbone only, as model.backbone
    alpha: Annotated[Float, Field(gt=0, le=4)] | None = None  # kind backbone only, as model.alpha
    weights: str = "imagenet"  # kind backbone only: "imagenet" or a weights file ("none" is refused)

    @field_validator("backbone")
    @classmethod
    def _pretrained_backbone(cls, value: str) -> str:
        from competition.model.backbones import BACKBONES

        value = _registered(value, BACKBONES, "backbone")
        if not BACKBONES[value].pretrained:
            pretrained = ", ".join(name for name, spec in BACKBONES.items() if spec.pretrained)
            raise ValueError(f"frozen features need a pretrained backbone ({pretrained}), got {value!r}")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> EmbeddingConfig:
        fields = type(self).model_fields
        if self.kind != "backbone":
            for key in ("backbone", "alpha", "weights"):
                if getattr(self, key) != fields[key].get_default():
                    raise CompetitionError(f"recipe.model.embedding.{key}: used only by embedding kind 'backbone', "
                                           f"not by {self.kind!r}; remove it")
        elif self.weights == "none":
            raise CompetitionError("recipe.model.embedding.weights: frozen features of random weights mean nothing; "
                                   "give 'imagenet' or a weights file, got 'none'")
        if self.kind == "backbone" and "components" in self.model_fields_set:
            # (pixels keeps accepting it: its stored recipes hold the default, as before `backbone` existed)
            raise CompetitionError("recipe.model.embedding.components: used only by embedding kind 'pca', not by "
                                   "'backbone'; remove it")
        return self

    @model_serializer(mode="wrap")
    def _omit_backbone_fields(self, handler: Any) -> Any:
        # Left out for pixels and pca, so their recipes (and run hashes) are those of before `backbone` existed.
        dumped = handler(self)
        if isinstance(dumped, dict):
            for key in (("backbone", "alpha", "weights") if dumped.get("kind") != "backbone" else ("components",)):
                dumped.pop(key, None)
        return dumped

    def network(self) -> dict[str, Any]:
        """The backbone that gives the features (kind backbone): {"backbone", "alpha", "weights"}, the model
        section's keys of those names (competition.model.frozen.backbone_features)."""
        return {"backbone": self.backbone, "alpha": self.alpha, "weights": self.weights}


class ModelConfig(Section):
    # "network" (a Keras backbone and head, trained by competition.engine) or a scikit-learn kind on an
    # embedding (competition.model.classic.MODEL_KINDS: knn, logistic, label_spreading, label_propagation)
    kind: str = "network"
    backbone: str = "cnn"
    weights: str = "none"  # "none", "imagenet", or a path to a weights file
    alpha: Annotated[Float, Field(gt=0, le=4)] | None = None  # width multiplier for MobileNets
    filters: list[Annotated[Int, Field(gt=0, le=MAX_UNITS)]] = [32, 64, 128]  # the small CNN's conv blocks
    head: HeadConfig = HeadConfig()
    embedding: EmbeddingConfig | None = None  # scikit-learn kinds only; default pca of 100 components
    params: dict[str, Any] = Field(default_factory=dict, max_length=50)  # the estimator's own parameters

    _known_backbone = _registry_field("backbone", "competition.model.backbones:BACKBONES", "backbone")
    _known_kind = _registry_field("kind", "competition.model.classic:MODEL_KINDS", "model kind")

    @model_validator(mode="after")
    def _kind_fields(self) -> ModelConfig:
        # The network's fields mean nothing to a scikit-learn kind and the other way round: refused when given
        # (defaults are not "given", so a resolved recipe validates again).
        if self.kind == "network":
            for key in ("embedding", "params"):
                if getattr(self, key):
                    raise CompetitionError(f"recipe.model.{key}: used only by a scikit-learn model.kind (knn, "
                                           "logistic, label_spreading, label_propagation), not by 'network'")
            return self
        fields = type(self).model_fields
        for key in ("backbone", "weights", "alpha", "filters", "head"):
            if getattr(self, key) != fields[key].get_default(call_default_factory=True):
                raise CompetitionError(f"recipe.model.{key}: used only by model.kind 'network', not by "
                                       f"{self.kind!r}; remove it")
        if self.embedding is None:
            object.__setattr__(self, "embedding", EmbeddingConfig())
        from competition.model.classic import check_params

        check_params(self.kind, self.params)
        return self

    @model_serializer(mode="wrap")
    def _omit_defaults_of_later_fields(self, handler: Any) -> Any:
        # Left out for networks, so recipes (and run hashes) from before model kinds existed are unchanged.
        dumped = handler(self)
        if isinstance(dumped, dict) and dumped.get("kind") == "network":
            for key in ("kind", "embedding", "params"):
                dumped.pop(key, None)
        return dumped


class BalanceConfig(Section):
    method: str = "none"  # see competition.balance.BALANCERS
    # class_weight: given per class (else balanced); every class named, checked against the contest by
    # check_with_contest
    weights: dict[str, Annotated[Float, Field(gt=0, le=1e6)]] | None = None
    power: Annotated[Float, Field(ge=0, le=1)] = 0.0  # oversample: class share ~ count**power (0 = balanced)
    gamma: Annotated[Float, Field(ge=0, le=10)] = 2.0  # focal: down-weights easy examples
    alpha: dict[str, Annotated[Float, Field(gt=0, le=1e6)]] | None = None  # focal: per-class factor (else balanced)

    _known_balancer = _registry_field("method", "competition.balance:BALANCERS", "balance method")

    @model_validator(mode="after")
    def _used_by_the_method(self) -> BalanceConfig:
        # A field another method reads would be ignored without a word: refused (defaults are not "given", so a
        # resolved recipe, which lists them all, validates again).
        used_by = {"weights": "class_weight", "alpha": "focal", "gamma": "focal", "power": "oversample"}
        for key, method in used_by.items():
            value = getattr(self, key)
            if method != self.method and value is not None and value != type(self).model_fields[key].default:
                raise CompetitionError(f"recipe.balance.{key}: used only by method {method!r}, "
                                       f"not by {self.method!r}; remove it or set balance.method: {method}")
        return self


class PhaseConfig(Section):
    epochs: Annotated[Int, Field(ge=1, le=100_000)] = 10
    optimizer: str = "adam"  # a name in OPTIMIZERS
    learning_rate: Annotated[Float, Field(gt=0, le=10)] = 1e-3
    trainable: str = "all"  # "all", "head" (backbone frozen) or a backbone layer name from which on to train
    augment: Bool = True  # apply the recipe's augment list (and train.mixup, train.cutmix) in this phase
    # Decoupled weight decay (each step: w -= weight_decay * learning rate * w, as AdamW); None: the optimizer's
    # own default (adamw 0.004, the others none).
    weight_decay: Annotated[Float, Field(ge=0, le=1)] | None = None
    # The learning rate over the phase's steps (competition.engine.optim): constant; cosine (decay to 0,
    # after a linear warm-up from 0 over `warmup` of the steps, default none); one_cycle (cosine warm-up from
    # learning_rate / 25 over `warmup` of the steps, default 0.3, then cosine decay; Smith & Topin 2019).
    schedule: Literal["constant", "cosine", "one_cycle"] = "constant"
    warmup: Annotated[Float, Field(ge=0, lt=1)] | None = None  # share of the phase's steps; cosine, one_cycle
    # This phase's batch size; None: train.batch_size. A head on cached features trains faster in larger batches
    # (fewer optimizer updates of its large first Dense layer; benchmarks/results.md).
    batch_size: Annotated[Int, Field(ge=1, le=65536)] | None = None
    later_fields = ("weight_decay", "schedule", "warmup", "batch_size")

    _known_optimizer = _registry_field("optimizer", OPTIMIZERS, "optimizer")


class MixConfig(Section):
    """Mixing two training images and their labels, per batch (competition.engine.mixing): mixup (Zhang et al.
    2018) or CutMix (Yun et al. 2019)."""

    alpha: Annotated[Float, Field(gt=0, le=100)] = 1.0  # the mixing weight is drawn from Beta(alpha, alpha)
    p: Annotated[Float, Field(gt=0, le=1)] = 1.0  # share of the batches mixed


class ReduceLRConfig(Section):
    factor: Annotated[Float, Field(gt=0, lt=1)] = 0.5
    patience: Annotated[Int, Field(ge=1, le=100_000)] = 2
    min_lr: Annotated[Float, Field(ge=0, le=10)] = 1e-6


class PseudoLabelConfig(Section):
    """Pseudo-labelling, fold-honest (competition.runs.prepare.pseudo_labels): fold k of this run also trains on the
    test images that fold k of the earlier run `run` (same folds, same test images) predicted with probability at
    least `threshold`, labelled with that prediction, each weighing `weight` in the loss. A fold never learns from
    a model that saw its own validation labels."""

    run: str  # an earlier finished run in the same runs folder, trained on the same folds
    threshold: Annotated[Float, Field(gt=0, le=1)] = 0.9
    weight: Annotated[Float, Field(gt=0, le=1)] = 1.0


class TrainConfig(Section):
    batch_size: Annotated[Int, Field(ge=1, le=65536)] = 32
    phases: list[PhaseConfig] = Field(default_factory=lambda: [PhaseConfig()], min_length=1, max_length=100)
    # early stop after this many epochs without a better F1
    patience: Annotated[Int, Field(ge=1, le=100_000)] | None = None
    reduce_lr: ReduceLRConfig | None = None  # lower the learning rate when validation macro F1 stalls
    workers: Annotated[Int, Field(ge=1, le=256)] = 2  # threads preparing augmented batches
    mixed_precision: Bool = False  # float16 compute, float32 weights and outputs (a GPU speed-up; slow on CPU)
    jit_compile: Bool | Literal["auto"] = "auto"  # XLA; "auto" is Keras's choice (on with a GPU, off on CPU)
    # Regularisation (competition.engine): targets y (1 - s) + s / n_classes (Szegedy et al. 2016)
    label_smoothing: Annotated[Float, Field(ge=0, lt=0.5)] = 0.0
    mixup: MixConfig | None = None  # per batch, in phases with augment: true
    cutmix: MixConfig | None = None  # per batch, in phases with augment: true; with mixup, each batch picks one
    # Momentum of an exponential moving average of the weights, used for validation, the kept epoch and so
    # for prediction (Keras's optimizer EMA, restarted at each phase from the weights the phase starts with).
    ema: Annotated[Float, Field(gt=0, lt=1)] | None = None
    # Which epoch a fold keeps: "best" validation macro F1 (picked on the rows that become its OOF, which can
    # flatter the OOF: `train` prints by how much) or "last" (picked without them).
    keep: Literal["best", "last"] = "best"
    pseudo_label: PseudoLabelConfig | None = None
    later_fields = ("label_smoothing", "mixup", "cutmix", "ema", "keep", "pseudo_label")

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _jit_choice(cls, value: Any) -> Any:
        # Named here: as a union, pydantic would only say that a boolean was expected.
        if isinstance(value, bool) or (isinstance(value, str) and value == "auto"):
            return value
        raise ValueError(f"expected true, false or 'auto', got {shown(value)}")

    @model_validator(mode="after")
    def _keep_last_looks_at_nothing(self) -> TrainConfig:
        # Early stopping and reduce_lr watch the validation rows, so "last" would again be chosen on them.
        if self.keep == "last":
            for key in ("patience", "reduce_lr"):
                if getattr(self, key) is not None:
                    raise CompetitionError(f"recipe.train.keep: 'last' keeps an epoch chosen without the validation "
                                           f"rows, but recipe.train.{key} watches them; remove one of them")
        return self

    @model_validator(mode="after")
    def _one_learning_rate_rule(self) -> TrainConfig:
        # A phase's learning rate follows its schedule or reduce_lr, not both; a warm-up needs a schedule.
        for index, phase in enumerate(self.phases):
            if phase.schedule != "constant" and self.reduce_lr is not None:
                raise CompetitionError(f"recipe.train.reduce_lr: cannot be combined with recipe.train.phases[{index}]"
                                       f".schedule {phase.schedule!r}; remove one of them")
            if phase.warmup is not None and phase.schedule == "constant":
                raise CompetitionError(f"recipe.train.phases[{index}].warmup: {shown(phase.warmup)} is used only by "
                                       "schedule cosine or one_cycle, and the phase's schedule is 'constant'; "
                                       "remove it or set a schedule")
        return self


class CVConfig(Section):
    folds: Annotated[Int, Field(ge=2, le=1000)] = 5
    seed: Annotated[Int, Field(ge=0, le=2**32 - 1)] = 42  # numpy's and scikit-learn's seed range
    # auto: the candidate whose validation images relate to their training images as the test relates to train;
    # stratified; grouped (new subjects: group_by, else near-duplicate groups); seen_subjects (other images of the
    # training subjects: chain blocks of each subject). competition.folds.choose_scheme. Serialised even at its
    # default, so a run trained on stratified folds never resumes under grouped ones.
    scheme: Literal["auto", "stratified", "grouped", "seen_subjects"] = "auto"
    group_by: str | None = None  # None, "column:<name>", "regex:<pattern>" or "near_duplicates"
    # a distance 1 - cosine similarity, so at most 2
    near_duplicate_threshold: Annotated[Float, Field(gt=0, le=2)] | None = None

    @field_validator("group_by")
    @classmethod
    def _known_group_by(cls, value: str | None) -> str | None:
        # Checked here, so a typo fails in `doctor` and before `train` decodes any image.
        from competition.folds import KEY, parse_group_by

        try:
            kind, arg = parse_group_by(value)
        except CompetitionError as exc:
            raise ValueError(str(exc).removeprefix(f"{KEY}: ")) from None
        if kind == "regex":
            import re

            try:
                re.compile(arg)
            except re.error as exc:
                raise ValueError(f"invalid regex {shown(arg)}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _groups_need_a_grouped_scheme(self) -> CVConfig:
        if self.scheme == "stratified" and self.group_by is not None:
            from competition.folds import parse_group_by

            if parse_group_by(self.group_by)[0] != "none":
                raise CompetitionError(f"recipe.cv.group_by: {shown(self.group_by)} groups the folds, but "
                                       "recipe.cv.scheme is 'stratified'; remove one (cv.scheme: grouped or auto "
                                       "folds by the group_by)")
        return self


class ResourcesConfig(Section):
    """What one fold asks of a Ray cluster (`--executor ray`); ignored by the local executor."""

    cpus_per_fold: Annotated[Float, Field(gt=0, le=1024)] = 1
    gpus_per_fold: Annotated[Float, Field(ge=0, le=64)] = 0  # 0.5: two folds share a GPU


class Recipe(Section):
    name: str = "run"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    # albumentations transforms: [{Name: {param: value}}]
    augment: list[dict[str, dict[str, Any]]] = Field(default=[], max_length=100)
    balance: BalanceConfig = BalanceConfig()
    train: TrainConfig = TrainConfig()
    cv: CVConfig = CVConfig()
    tta: list[Literal["hflip", "vflip", "rot90", "rot180", "rot270", "transpose"]] = []  # test-time transforms
    resources: ResourcesConfig = ResourcesConfig()  # where folds run, not what is trained: not in hash()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        from competition.files import run_name_problem

        problem = run_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _group_column_groups_the_folds(self) -> Recipe:
        # A declared subject column is what the folds group by, unless the recipe groups otherwise (group_by: none
        # for no groups; cv.scheme: stratified).
        column = self.data.group_column
        if column is not None and self.cv.group_by is None and self.cv.scheme != "stratified":
            self.cv.group_by = f"column:{column}"
        return self

    @model_validator(mode="after")
    def _check_augment(self) -> Recipe:
        # Checks across sections, run on every validation so `doctor` and `train` fail alike, before decoding.
        from competition.augment import check_pipeline
        from competition.model.backbones import check_config
        from competition.tta import check_tta

        check_pipeline(self.augment, self.data.image_size, self.data.channels)
        if self.model.kind != "network":  # a scikit-learn kind is fitted on the images as decoded
            # what only a network reads, given anyway, would be ignored without a word: refused
            given = [key for key in ("augment", "tta") if getattr(self, key)]
            for section, default in (("train", TrainConfig()), ("balance", BalanceConfig())):
                ours, plain = getattr(self, section).model_dump(), default.model_dump()
                given += [f"{section}.{key}" for key in type(default).model_fields
                          if key != "workers" and ours.get(key) != plain.get(key)]
            if given:
                raise CompetitionError(f"recipe.{given[0]}: used only by model.kind 'network', not by "
                                       f"{self.model.kind!r}; remove it")
            if self.model.embedding.kind == "backbone":
                from competition.model.frozen import embedding_keys

                with embedding_keys():
                    check_config(self.loaded_backbone, self.data.image_size)
            return self
        check_config(self.model, self.data.image_size)
        check_tta(self.tta, self.data.image_size)
        return self

    @property
    def loaded_backbone(self) -> ModelConfig | None:
        """The model section whose backbone weights are loaded: the network's, or the frozen-feature backbone of
        a scikit-learn kind's `backbone` embedding (its errors name recipe.model.embedding.*, see embedding_keys);
        None when no pretrained weights are read."""
        if self.model.kind == "network":
            return self.model
        if self.model.embedding.kind != "backbone":
            return None
        return ModelConfig(**self.model.embedding.network(), head=HeadConfig(pooling="avg", dense=[], dropout=0.0))

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Identity of what is trained; runs with another hash never share fold results."""
        resolved = self.resolved()
        resolved.pop("resources")  # the same recipe trained on other hardware is the same run
        canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


