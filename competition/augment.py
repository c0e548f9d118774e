"""Augmentation: the recipe's `augment` list is an albumentations pipeline, validated by albumentations itself."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np

from competition.errors import CompetitionError


def _shown(value: Any) -> str:
    """A value as an error echoes it: a short repr (a few items, a few levels), never a huge one."""
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    short.maxlist = short.maxtuple = short.maxdict = 6
    short.maxlevel = 3
    text = short.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _transform_class(name: str, where: str) -> type:
    import albumentations as A

    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        import difflib

        known = [n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CompetitionError(f"{where}: unknown albumentations transform {_shown(name)}{hint}")
    return cls


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p for p in inspect.signature(init).parameters if p not in {"self", "args", "kwargs"}}
    return names


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return False


def _bool_as_number(cls: type, params: dict[str, Any]) -> tuple[str, str] | None:
    """(parameter, what it takes) of the first parameter given a YAML boolean (`yes`, `on`, at any depth) that
    the transform does not take as a boolean: albumentations' lax validation would read True as 1 (`p: yes` as
    p=1.0). None when none."""
    schema = getattr(cls, "InitSchema", None)
    fields = getattr(schema, "model_fields", None) or {}
    for name, value in params.items():
        if not _holds_bool(value):
            continue
        field = fields.get(name)
        if field is not None:
            annotation: Any = field.annotation
        else:
            found = [inspect.signature(k.__dict__["__init__"]).parameters.get(name) for k in cls.__mro__
                     if "__init__" in k.__dict__]
            annotation = next((p.annotation for p in found if p is not None), None)
        if annotation is None or annotation is inspect.Parameter.empty:
            continue
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if not any(word in text for word in ("bool", "Any", "object")):
            return name, "a number" if ("float" in text or "int" in text) else f"a value of {text[:60]}"
    return None


def build_transform(step: dict[str, dict[str, Any]], index: int) -> Any:
    """One `{Name: {param: value}}` item as an albumentations transform; errors name the item and param."""
    where = f"recipe.augment[{index}]"
    if not isinstance(step, dict) or len(step) != 1:
        raise CompetitionError(f"{where}: expected one `TransformName: {{params}}` mapping, got {_shown(step)}")
    (name, params), = step.items()
    params = dict(params or {})
    cls = _transform_class(name, where)
    unknown = sorted(set(params) - _accepted(cls))
    if unknown:
        raise CompetitionError(f"{where}.{unknown[0]}: not a parameter of {name}")
    boolean = _bool_as_number(cls, params)
    if boolean is not None:
        param, wanted = boolean
        raise CompetitionError(f"{where}.{param[:60]}: expected {wanted}, got {_shown(params[param])} (YAML reads "
                               "yes, no, on, off, true and false as booleans, which are not numbers)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**params)
    except Exception as exc:  # pydantic's ValidationError (a ValueError) names the parameter; others their cause
        cause = exc.__cause__ or exc
        errors = getattr(cause, "errors", None)
        if callable(errors):
            first = errors()[0]
            fallback = str(first["loc"][0]) if first["loc"] else name
            param = next((str(p) for p in first["loc"] if str(p) in params), fallback)
            got = params.get(param, first.get("input"))
            message = first["msg"].removeprefix("Value error, ")
            if first["type"] in {"float_parsing", "float_type", "int_parsing", "int_type"} or any(
                e["type"] in {"float_parsing", "float_type"} for e in errors()
            ):
                message = "expected a number"
            raise CompetitionError(f"{where}.{param[:60]}: {message}, got {_shown(got)}") from None
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CompetitionError(f"{where}: {name}: {first_line[:200]}") from None


CHECK_DRAWS = 8  # random draws of each transform tried on the check image


def check_pipeline(steps: list[dict[str, dict[str, Any]]], image_size: tuple[int, int] | None = None,
                   channels: int = 1) -> None:
    """Every step builds (albumentations checks its parameters) and, given the recipe's image size and
    channels, runs: the transforms are applied in order, each always (p=1) and CHECK_DRAWS times with different
    seeds, to a test image of that shape, and the pipeline must give back uint8 pixels of the same shape (what
    training needs; a step may change the shape if a later one restores it). Raises CompetitionError naming
    the step (`recipe.augment[i]`), the transform and why."""
    transforms = [build_transform(step, index) for index, step in enumerate(steps)]
    if image_size is None or not transforms:
        return
    shape = (int(image_size[0]), int(image_size[1]), int(channels))
    ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 255 // max(shape[0] + shape[1] - 2, 1)
    image = np.repeat(ramp.astype(np.uint8)[:, :, None], channels, axis=2)
    reshaped = retyped = None  # the last step that changed the shape, the pixel type
    for index, (step, transform) in enumerate(zip(steps, transforms)):
        (name, params), = step.items()
        if "p" in _accepted(type(transform)):
            transform = build_transform({name: {**(params or {}), "p": 1.0}}, index)
        where = f"recipe.augment[{index}]"
        for draw in range(CHECK_DRAWS):
            out = _run_once(transform, image, draw, where, name, shape)
        if out.shape != image.shape:
            reshaped = (where, name, out.shape)
        if out.dtype != image.dtype:
            retyped = (where, name, out.dtype)
        image = out  # the next step sees what this one gives, as in training
    if image.shape != shape and reshaped is not None:
        where, name, got = reshaped
        size = "x".join(map(str, got))
        raise CompetitionError(f"{where}: {name} turns the recipe's {shape[0]}x{shape[1]}x{shape[2]} images into "
                               f"{size}, and no later step gives back data.image_size {shape[0]}x{shape[1]} "
                               f"with data.channels {shape[2]}, the shape training needs")
    if image.dtype != np.uint8 and retyped is not None:
        where, name, dtype = retyped
        raise CompetitionError(f"{where}: {name} gives {dtype} pixels; training needs uint8 pixels (0..255), "
                               "the model scales them itself")


def _run_once(transform: Any, image: np.ndarray, seed: int, where: str, name: str,
              shape: tuple[int, int, int]) -> np.ndarray:
    import albumentations as A

    h, w = image.shape[:2]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = A.Compose([transform], seed=seed)(image=image)["image"]
    except Exception as exc:  # albumentations' own check (a crop larger than the image, a bad channel count, ...)
        text = " ".join(str(exc).split()) or type(exc).__name__
        if "exceeds image dimensions" in text or "smaller than image sizes" in text:
            size = _size_of(transform)
            asked = f" {size[0]}x{size[1]}" if size else ""
            what = "data.image_size" if (h, w) == shape[:2] else "the image it gets from the step before"
            raise CompetitionError(f"{where}: {name}{asked} is larger than {what} {h}x{w}") from None
        text = text if len(text) <= 160 else text[:157] + "..."
        raise CompetitionError(f"{where}: {name} cannot run on the recipe's {shape[0]}x{shape[1]}x{shape[2]} images "
                               f"(data.image_size, data.channels): {text}") from None
    out = np.asarray(out)
    return out[:, :, None] if out.ndim == 2 else out


def _size_of(transform: Any) -> tuple[int, int] | None:
    """The (height, width) a crop transform asks for, when it says."""
    height, width = getattr(transform, "height", None), getattr(transform, "width", None)
    if height is None and width is None:
        size = getattr(transform, "size", None)
        if isinstance(size, (tuple, list)) and len(size) == 2:
            height, width = size
    if height is None or width is None:
        crop = [getattr(transform, k, None) for k in ("x_min", "y_min", "x_max", "y_max")]
        if all(isinstance(v, int) for v in crop):
            return crop[3] - crop[1], crop[2] - crop[0]
        return None
    return int(height), int(width)


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
