import numpy as np
import pytest
from PIL import Image

from competition.report.previews import PREVIEW_CELL_IN, PREVIEW_DPI, PREVIEW_TITLE_IN, preview, preview_grid
from competition.data import decode_images, index_contest
from competition.errors import CompetitionError
from competition.recipe import load_recipe

AUGMENT = ["augment=[{HorizontalFlip: {p: 0.5}}, {Affine: {rotate: [-15, 15], p: 1.0}}]"]


def test_preview_writes_a_png_grid_one_row_per_class(tiny_recipe, tiny_contest, tmp_path):
    recipe = load_recipe(tiny_recipe, AUGMENT)
    n_classes = len(index_contest(tiny_contest).classes)
    out = preview(recipe, tmp_path / "sub" / "preview.png", per_class=3, data=tiny_contest, seed=1)
    assert out == tmp_path / "sub" / "preview.png"
    with Image.open(out) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(out) as image:
        width, height = image.size
    assert width == round((1 + 3) * PREVIEW_CELL_IN * PREVIEW_DPI)
    assert height == round((n_classes * PREVIEW_CELL_IN + PREVIEW_TITLE_IN) * PREVIEW_DPI)
    assert [p.name for p in out.parent.iterdir()] == ["preview.png"]  # no temporary file left behind

    again = preview(recipe, tmp_path / "again.png", per_class=3, data=tiny_contest, seed=1)
    assert again.read_bytes() == out.read_bytes()  # same seed, same grid


def test_preview_without_augment_steps_is_an_error(tiny_recipe, tiny_contest, tmp_path):
    with pytest.raises(CompetitionError, match=r"^recipe\.augment: empty, nothing to preview$"):
        preview(load_recipe(tiny_recipe), tmp_path / "p.png", data=tiny_contest)
    assert not (tmp_path / "p.png").exists()


PREPROCESS = ["data.crop=foreground", "data.standardize=image", "data.foreground_threshold=30"]


def test_preview_shows_the_decoded_image_beside_what_the_model_sees(tiny_recipe, tiny_contest, tmp_path):
    recipe = load_recipe(tiny_recipe, [*PREPROCESS, "augment=[{HorizontalFlip: {p: 1.0}}]"])
    titles, grid = preview_grid(recipe, per_class=2, data=tiny_contest, seed=1)
    assert titles == ["decoded", "cropped + standardised", "draw 1", "draw 2"]
    contest = index_contest(tiny_contest)
    assert [label for label, _ in grid] == contest.classes
    size, options = tuple(recipe.data.image_size), recipe.data.decode_options()
    for label, (decoded, seen, *draws) in grid:
        paths = contest.train.loc[contest.train["label"] == label, "path"].tolist()
        plain = decode_images(paths, size, 1, cache=False)[0]
        model_input = decode_images(paths, size, 1, options=options, cache=False)[0]
        match = [i for i in range(len(paths)) if np.array_equal(plain[i], decoded)]
        assert match and np.array_equal(model_input[match[0]], seen)  # the same image, with crop + standardise
        assert not np.array_equal(decoded, seen)
        assert all(np.array_equal(draw, seen[:, ::-1]) for draw in draws)  # augmentation draws from the model input

    out = preview(recipe, tmp_path / "p.png", per_class=2, data=tiny_contest, seed=1)
    with Image.open(out) as image:
        assert image.size[0] == round((2 + 2) * PREVIEW_CELL_IN * PREVIEW_DPI)


def test_preview_without_augment_steps_shows_the_preprocessing(tiny_recipe, tiny_contest, tmp_path):
    recipe = load_recipe(tiny_recipe, ["data.crop=foreground", "data.foreground_threshold=30"])
    titles, grid = preview_grid(recipe, data=tiny_contest)
    assert titles == ["decoded", "cropped"] and all(len(views) == 2 for _, views in grid)
    out = preview(recipe, tmp_path / "p.png", data=tiny_contest)
    with Image.open(out) as image:
        assert image.size[0] == round(2 * PREVIEW_CELL_IN * PREVIEW_DPI)
