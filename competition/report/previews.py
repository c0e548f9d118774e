"""Pictures of what training sees: the augmentation preview (a grid of draws per class, after the recipe's crop
and standardisation; where those found the foreground is outlined on the image as decoded)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from competition.augment import build_pipeline
from competition.data import Contest, decode_image, index_contest
from competition.data.decode import foreground_outline
from competition.errors import CompetitionError, OptionError
from competition.files import atomic_write, check_output, is_matplotlib_png
from competition.recipe import Recipe

PREVIEW_CELL_IN = 1.5  # inches per grid cell
PREVIEW_TITLE_IN = 0.5  # inches above the grid for the title
PREVIEW_DPI = 100


def preview_grid(recipe: Recipe, per_class: int = 6, data: Path | None = None, seed: int = 0
                 ) -> tuple[list[str], list[tuple[str, list[np.ndarray]]]]:
    """What `preview` draws: the column titles and, per class, (class, images) with one uint8 image
    (h, w, channels) per column. The columns: the image as decoded without data.crop and data.standardize
    ("decoded", only when the recipe crops or standardises), the image as the model sees it (with them),
    then `per_class` augmented draws of that (none without augment steps). `data` overrides
    recipe.data.root; `seed` picks the images and seeds the pipeline. Raises CompetitionError when there is
    nothing to preview (no augment steps, no crop, no standardisation) or for a bad `per_class`, OptionError
    without a contest folder."""
    options = recipe.data.decode_options()
    done = ["cropped"] * (options.crop != "none") + ["standardised"] * (options.standardize != "none")
    if not recipe.augment and not done:
        raise CompetitionError("recipe.augment: empty, nothing to preview")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise CompetitionError(f"per_class: expected a positive integer, got {per_class!r}")
    root = data if data is not None else recipe.data.root
    if root is None:
        raise OptionError("data", "no contest folder; set recipe.data.root or give a contest folder")
    contest = index_contest(root, recipe.data.layout())
    pipeline = build_pipeline(recipe.augment, seed=seed)
    draws = per_class if pipeline is not None else 0
    size, channels = tuple(recipe.data.image_size), recipe.data.channels
    plain = replace(options, crop="none", standardize="none")  # the same intensity window, no other step
    titles = ["decoded", " + ".join(done)] if done else ["original"]
    titles += [f"draw {k + 1}" for k in range(draws)]
    rows = []
    for label, path in _picked(contest, seed):
        seen = decode_image(path, size, channels, options)
        views = [decode_image(path, size, channels, plain)] if done else []
        views += [seen] + [np.asarray(pipeline(image=seen)["image"]).reshape(seen.shape) for _ in range(draws)]
        rows.append((str(label), views))
    return titles, rows


def _picked(contest: Contest, seed: int) -> list[tuple[str, str]]:
    """(class, the path of the training image the preview shows for it), one per class."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in contest.classes:
        paths = contest.train.loc[contest.train["label"] == label, "path"].to_numpy()
        picked.append((label, paths[rng.integers(len(paths))]))
    return picked


def foreground_outlines(recipe: Recipe, data: Path | None = None, seed: int = 0
                        ) -> list[tuple[np.ndarray, tuple[float, float, float, float] | None]]:
    """Per row of `preview_grid` (same recipe, data and seed), where data.crop foreground and data.standardize
    image find the foreground of its image (competition.data.decode.foreground_outline): the foreground
    mask at the recipe's size, and the crop box in those coordinates (None without data.crop). Empty when
    the recipe does neither."""
    options = recipe.data.decode_options()
    if options.crop == "none" and options.standardize == "none":
        return []
    contest = index_contest(data if data is not None else recipe.data.root, recipe.data.layout())
    return [foreground_outline(path, tuple(recipe.data.image_size), options) for _, path in _picked(contest, seed)]


def preview(recipe: Recipe, out_png: Path, per_class: int = 6, data: Path | None = None, seed: int = 0) -> Path:
    """A PNG grid of what training sees (`preview_grid`): one row per class, a training image as the model
    sees it (decoded at the recipe's size and channels, with its data.crop and data.standardize), then
    `per_class` augmented draws of it; when the recipe crops or standardises, the image as decoded without
    those steps comes first ("decoded", with the foreground they found outlined in red and the crop box
    in yellow: `foreground_outlines`), so the grid shows what they did. `data` overrides recipe.data.root;
    the same `seed` gives the same grid. The PNG is n_columns * PREVIEW_CELL_IN * PREVIEW_DPI px wide
    (n_columns = 1 + per_class, + 1 for the decoded column; without augment steps 1 or 2) and
    (n_classes * PREVIEW_CELL_IN + PREVIEW_TITLE_IN) * PREVIEW_DPI px high. Raises CompetitionError
    (OptionError for `data`) naming the bad value."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    check_output(out_png, protected=[("the contest folder", data if data is not None else recipe.data.root)],
                 ours=is_matplotlib_png, what="a PNG written by competition")
    titles, grid = preview_grid(recipe, per_class, data, seed)
    outlines = foreground_outlines(recipe, data, seed)

    rows, cols = len(grid), len(titles)
    fig = Figure(figsize=(cols * PREVIEW_CELL_IN, rows * PREVIEW_CELL_IN + PREVIEW_TITLE_IN), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (label, views) in enumerate(grid):
        for c, (ax, image) in enumerate(zip(axes[r], views)):
            if image.shape[-1] == 1:
                image = image[..., 0]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0 and outlines:  # where the crop and the standardisation found the foreground
                mask, box = outlines[r]
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors="red", linewidths=0.8)
                if box is not None:
                    top, bottom, left, right = box
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                           edgecolor="yellow", linewidth=0.8, linestyle="--"))
                ax.set_xlim(-0.5, image.shape[1] - 0.5)
                ax.set_ylim(image.shape[0] - 0.5, -0.5)
            if r == 0:
                title = titles[c]
                if c == 0 and outlines:
                    title += "\nred: foreground" + (", yellow: crop" if recipe.data.crop != "none" else "")
                ax.set_title(title, fontsize=8 if title == titles[c] else 7)
            if c == 0:
                ax.set_ylabel(label[:24], fontsize=8)
    steps = [f"crop {recipe.data.crop}"] * (recipe.data.crop != "none")
    steps += [f"standardize {recipe.data.standardize}"] * (recipe.data.standardize != "none")
    steps += [next(iter(step)) for step in recipe.augment]
    fig.suptitle(f"{recipe.name}: {', '.join(steps)}"[:120], fontsize=9)

    out_png = Path(out_png)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PREVIEW_DPI)
    with atomic_write(out_png, "wb") as handle:
        handle.write(buffer.getvalue())
    return out_png
