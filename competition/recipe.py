"""Recipes: one YAML file declares a whole experiment; validated strictly, every field defaulted.

Errors name the key and echo the value (``recipe.train.batch_size: expected an integer, got 'big'``), and an
unknown key is rejected with a suggestion, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator)

from competition.errors import CompetitionError
from competition.registry import check_name


# Optimizers by recipe name: the keras.optimizers class each names.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "sgd": "SGD", "rmsprop": "RMSprop"}


def _registered(value: str, registry: dict[str, Any], what: str) -> str:
    """A name the recipe gives must be in its registry (backbones, balancers, ...)."""
    return check_name(value, registry, what)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    root: Path | None = None  # contest folder; `--data` overrides it
    image_size: tuple[int, int] = (64, 64)  # (height, width); a single number means square
    channels: Literal[1, 3] = 1
    # An unreadable training image: "error" stops before training and lists every unreadable file; "skip"
    # trains without them (listed in the run's skipped_images.csv). An unreadable test image is always an error.
    on_bad_image: Literal["error", "skip"] = "error"

    @model_serializer(mode="wrap")
    def _omit_default_on_bad_image(self, handler: Any) -> Any:
        # Left out while it is the default, so recipes (and run hashes) from before the field existed are unchanged.
        dumped = handler(self)
        if isinstance(dumped, dict) and dumped.get("on_bad_image") == "error":
            dumped.pop("on_bad_image")
        return dumped

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("image_size")
    @classmethod
    def _min_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"images must be at least 8 px, got {list(value)}")
        return value


class HeadConfig(Section):
    pooling: Literal["flatten", "avg", "max"] = "avg"
    dense: list[Annotated[int, Field(gt=0)]] = [128]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.3


class ModelConfig(Section):
    backbone: str = "cnn"
    weights: str = "none"  # "none", "imagenet", or a path to a weights file
    alpha: float | None = None  # width multiplier for MobileNets
    filters: list[Annotated[int, Field(gt=0)]] = [32, 64, 128]  # the small CNN's conv blocks
    head: HeadConfig = HeadConfig()

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        from competition.model.backbones import BACKBONES

        return _registered(value, BACKBONES, "backbone")


class BalanceConfig(Section):
    method: str = "none"  # see competition.balance.BALANCERS
    weights: dict[str, Annotated[float, Field(gt=0)]] | None = None  # class_weight: given per class (else balanced)
    power: Annotated[float, Field(ge=0, le=1)] = 0.0  # oversample: class share ~ count**power (0 = balanced)
    gamma: Annotated[float, Field(ge=0)] = 2.0  # focal: down-weights easy examples
    alpha: dict[str, Annotated[float, Field(gt=0)]] | None = None  # focal: per-class factor (else balanced)

    @field_validator("method")
    @classmethod
    def _known_balancer(cls, value: str) -> str:
        from competition.balance import BALANCERS

        return _registered(value, BALANCERS, "balance method")


class PhaseConfig(Section):
    epochs: Annotated[int, Field(ge=1)] = 10
    optimizer: str = "adam"  # a name in OPTIMIZERS
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    trainable: str = "all"  # "all", "head" (backbone frozen) or a backbone layer name from which on to train
    augment: bool = True  # apply the recipe's augment list in this phase

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _registered(value, OPTIMIZERS, "optimizer")


class ReduceLRConfig(Section):
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.5
    patience: Annotated[int, Field(ge=1)] = 2
    min_lr: Annotated[float, Field(ge=0)] = 1e-6


class TrainConfig(Section):
    batch_size: Annotated[int, Field(ge=1)] = 32
    phases: list[PhaseConfig] = Field(default_factory=lambda: [PhaseConfig()], min_length=1)
    patience: Annotated[int, Field(ge=1)] | None = None  # early stop after this many epochs without a better F1
    reduce_lr: ReduceLRConfig | None = None  # lower the learning rate when validation macro F1 stalls
    workers: Annotated[int, Field(ge=1)] = 2  # threads preparing augmented batches
    mixed_precision: bool = False  # float16 compute, float32 weights and outputs (a GPU speed-up; slow on CPU)
    jit_compile: bool | Literal["auto"] = "auto"  # XLA; "auto" is Keras's choice (on with a GPU, off on CPU)


class CVConfig(Section):
    folds: Annotated[int, Field(ge=2)] = 5
    seed: int = 42
    group_by: str | None = None  # None, "column:<name>", "regex:<pattern>" or "near_duplicates"
    near_duplicate_threshold: Annotated[float, Field(gt=0)] | None = None

    @field_validator("group_by")
    @classmethod
    def _known_group_by(cls, value: str | None) -> str | None:
        # Checked here, so a typo fails in `doctor` and before `train` decodes any image.
        from competition.folds import KEY, parse_group_by

        try:
            parse_group_by(value)
        except CompetitionError as exc:
            raise ValueError(str(exc).removeprefix(f"{KEY}: ")) from None
        return value


class ResourcesConfig(Section):
    """What one fold asks of a Ray cluster (`--executor ray`); ignored by the local executor."""

    cpus_per_fold: Annotated[float, Field(gt=0)] = 1
    gpus_per_fold: Annotated[float, Field(ge=0)] = 0  # 0.5: two folds share a GPU


class Recipe(Section):
    name: str = "run"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: list[dict[str, dict[str, Any]]] = []  # albumentations transforms: [{Name: {param: value}}]
    balance: BalanceConfig = BalanceConfig()
    train: TrainConfig = TrainConfig()
    cv: CVConfig = CVConfig()
    tta: list[Literal["hflip", "vflip", "rot90", "rot180", "rot270", "transpose"]] = []  # test-time transforms
    resources: ResourcesConfig = ResourcesConfig()  # where folds run, not what is trained: not in hash()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        from competition.runs.folder import run_name_problem

        problem = run_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_augment(self) -> Recipe:
        from competition.augment import check_pipeline
        from competition.model.backbones import check_config

        check_pipeline(self.augment)
        check_config(self.model, self.data.image_size)
        return self

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


# ---------------------------------------------------------------- loading and errors


def _location(loc: tuple[Any, ...]) -> str:
    out = "recipe"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-after", "function-before"} or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}"
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at the parent of `loc`, for 'did you mean' suggestions."""
    model: Any = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return []
    return list(getattr(model, "model_fields", {}))


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "tuple_type": "expected a list",
}


def format_error(error: ValidationError, source: str = "") -> str:
    """The first validation problem as one line: `recipe.key: what was expected, got value`."""
    first = error.errors()[0]
    where = _location(first["loc"])
    prefix = f"{source}: " if source else ""
    kind = first["type"]
    if kind == "extra_forbidden":
        key = str(first["loc"][-1])
        close = difflib.get_close_matches(key, _fields_at(first["loc"]), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{prefix}{where}: unknown key{hint}"
    got = first.get("input")
    if kind in _EXPECTED:
        return f"{prefix}{where}: {_EXPECTED[kind]}, got {got!r}"
    message = first["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"{prefix}{where}: {message}"
    return f"{prefix}{where}: {message[:1].lower() + message[1:]}, got {got!r}"


def parse_value(text: str) -> Any:
    """A --set value is YAML: `3` is an int, `1e-3` a float, `[1, 2]` a list, `none` stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply `key.sub=value` (list items by index: `train.phases.0.epochs=3`) to the raw recipe dict."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise CompetitionError(f"--set {assignment!r}: expected KEY=VALUE, e.g. train.batch_size=64")
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise CompetitionError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = parse_value(value)
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = parse_value(value)
            else:
                if node.get(part) is None:
                    node[part] = _default_container(parts[: i + 1])
                node = node[part]
        else:
            raise CompetitionError(f"--set {key}: '{'.'.join(parts[:i])}' is not a section")


def _default_container(path: list[str]) -> Any:
    """The default value of a section, so `--set train.phases.0.epochs=2` works on a recipe without phases."""
    value: Any = Recipe().resolved()
    for part in path:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError):
            return {}
    return value


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; every problem becomes a one-line CompetitionError."""
    raw: dict[str, Any] = {}
    source = str(path) if path is not None else "recipe"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CompetitionError(f"{path}: recipe file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise CompetitionError(f"{path}: not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise CompetitionError(f"{path}: a recipe is a mapping of sections, got {type(loaded).__name__}")
        raw = loaded
        raw.setdefault("name", path.stem)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise CompetitionError(format_error(exc, source)) from None
    except CompetitionError as exc:  # raised by checks that validate against other libraries
        raise CompetitionError(f"{source}: {exc}") from None
