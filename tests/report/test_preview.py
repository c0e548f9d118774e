import pytest
from PIL import Image

from competition.report.previews import PREVIEW_CELL_IN, PREVIEW_DPI, PREVIEW_TITLE_IN, preview
from competition.data import index_contest
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
