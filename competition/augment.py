"""Augmentation: the recipe's `augment` list is an albumentations pipeline, validated by albumentations itself."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np

from competition.errors import CompetitionError


def _transform_class(name: str, where: str) -> type:
    import albumentations as A

    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        import difflib

        known = [n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CompetitionError(f"{where}: unknown albumentations transform {name!r}{hint}")
    return cls


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p for p in inspect.signature(init).parameters if p not in {"self", "args", "kwargs"}}
    return names


def build_transform(step: dict[str, dict[str, Any]], index: int) -> Any:
    """One `{Name: {param: value}}` item as an albumentations transform; errors name the item and param."""
    where = f"recipe.augment[{index}]"
    if not isinstance(step, dict) or len(step) != 1:
        raise CompetitionError(f"{where}: expected one `TransformName: {{params}}` mapping, got {step!r}")
    (name, params), = step.items()
    params = dict(params or {})
    cls = _transform_class(name, where)
    unknown = sorted(set(params) - _accepted(cls))
    if unknown:
        raise CompetitionError(f"{where}.{unknown[0]}: not a parameter of {name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**params)
    except (ValueError, TypeError) as exc:
        cause = exc.__cause__ or exc
        errors = getattr(cause, "errors", None)
        if callable(errors):
            first = errors()[0]
            param = next((str(p) for p in first["loc"] if str(p) in params), str(first["loc"][0]))
            got = params.get(param, first.get("input"))
            message = first["msg"].removeprefix("Value error, ")
            if first["type"] in {"float_parsing", "float_type", "int_parsing", "int_type"} or any(
                e["type"] in {"float_parsing", "float_type"} for e in errors()
            ):
                message = "expected a number"
            raise CompetitionError(f"{where}.{param}: {message}, got {got!r}") from None
        raise CompetitionError(f"{where}: {name}: {str(exc).splitlines()[0]}") from None


def check_pipeline(steps: list[dict[str, dict[str, Any]]]) -> None:
    for index, step in enumerate(steps):
        build_transform(step, index)


def build_pipeline(steps: list[dict[str, dict[str, Any]]], seed: int | None = None) -> Any | None:
    """The recipe's augmentation as one albumentations Compose, or None when there is none."""
    if not steps:
        return None
    import albumentations as A

    return A.Compose([build_transform(step, i) for i, step in enumerate(steps)], seed=seed)


def augment_batch(pipeline: Any, images: np.ndarray) -> np.ndarray:
    """Apply the pipeline image by image (uint8 in, uint8 out, same shape)."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        result = pipeline(image=image)["image"]
        out[i] = result.reshape(images.shape[1:])
    return out
