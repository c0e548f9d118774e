"""Pictures of what training sees: the augmentation preview (a grid of draws per class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from competition.augment import build_pipeline
from competition.data import decode_image, index_contest
from competition.errors import CompetitionError, OptionError
from competition.files import atomic_write
from competition.recipe import Recipe

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

    if not recipe.augment:
        raise CompetitionError("recipe.augment: empty, nothing to preview")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise CompetitionError(f"per_class: expected a positive integer, got {per_class!r}")
    root = data if data is not None else recipe.data.root
    if root is None:
        raise OptionError("data", "no contest folder; set recipe.data.root or give a contest folder")
    contest = index_contest(root)
    pipeline = build_pipeline(recipe.augment, seed=seed)
    rng = np.random.default_rng(seed)
    size, channels = tuple(recipe.data.image_size), recipe.data.channels

    rows, cols = len(contest.classes), 1 + per_class
    fig = Figure(figsize=(cols * PREVIEW_CELL_IN, rows * PREVIEW_CELL_IN + PREVIEW_TITLE_IN), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, label in enumerate(contest.classes):
        paths = contest.train.loc[contest.train["label"] == label, "path"].to_numpy()
        original = decode_image(paths[rng.integers(len(paths))], size, channels, recipe.data.intensity_window)
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
