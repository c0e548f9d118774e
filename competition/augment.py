"""Augmentation: the recipe's `augment` list is an albumentations pipeline, validated by albumentations itself."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from competition.errors import CompetitionError

if TYPE_CHECKING:
    from competition.recipe import Recipe


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


# ---------------------------------------------------------------- preview

PREVIEW_CELL_IN = 1.5  # inches per grid cell
PREVIEW_TITLE_IN = 0.5  # inches above the grid for the title
PREVIEW_DPI = 100


def preview(recipe: Recipe, out_png: Path, per_class: int = 6, data: Path | None = None, seed: int = 0) -> Path:
    """A PNG grid of what training sees: one row per class, an original training image (decoded at the recipe's
    size and channels) in the first column, then `per_class` augmented draws of it. `data` overrides
    recipe.data.root; `seed` picks the images and seeds the pipeline, so the same call gives the same grid.
    The PNG is (1 + per_class) * PREVIEW_CELL_IN * PREVIEW_DPI px wide and
    (n_classes * PREVIEW_CELL_IN + PREVIEW_TITLE_IN) * PREVIEW_DPI px high."""
    import io

    from matplotlib.figure import Figure

    from competition.data import decode_image, index_contest
    from competition.files import atomic_write

    if not recipe.augment:
        raise CompetitionError("recipe.augment: empty, nothing to preview")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise CompetitionError(f"per_class: expected a positive integer, got {per_class!r}")
    root = data if data is not None else recipe.data.root
    if root is None:
        raise CompetitionError("recipe.data.root: no contest folder; set it in the recipe or pass --data DIR")
    contest = index_contest(root)
    pipeline = build_pipeline(recipe.augment, seed=seed)
    rng = np.random.default_rng(seed)
    size, channels = tuple(recipe.data.image_size), recipe.data.channels

    rows, cols = len(contest.classes), 1 + per_class
    fig = Figure(figsize=(cols * PREVIEW_CELL_IN, rows * PREVIEW_CELL_IN + PREVIEW_TITLE_IN), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, label in enumerate(contest.classes):
        paths = contest.train.loc[contest.train["label"] == label, "path"].to_numpy()
        original = decode_image(paths[rng.integers(len(paths))], size, channels)
        views = [original] + [pipeline(image=original)["image"] for _ in range(per_class)]
        for c, (ax, image) in enumerate(zip(axes[r], views)):
            image = np.asarray(image)
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"draw {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(str(label)[:24], fontsize=8)
    steps = ", ".join(next(iter(step)) for step in recipe.augment)
    fig.suptitle(f"{recipe.name}: {steps}"[:120], fontsize=9)

    out_png = Path(out_png)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PREVIEW_DPI)
    with atomic_write(out_png, "wb") as handle:
        handle.write(buffer.getvalue())
    return out_png
