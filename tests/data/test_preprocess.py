"""The recipe's preprocessing: data.crop (foreground crop before the resize), data.standardize (per-image
standardisation after it), their recipe keys, their part of the decode-cache key, and every decode path that
applies them (training's load_contest, predict's decode_chunks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.data import DecodeOptions, decode_image, decode_images, load_contest
from competition.data.cache import CACHE_VERSION, content_key
from competition.data.decode import foreground_box, standardize_image
from competition.errors import CompetitionError
from competition.inference import decode_chunks
from competition.recipe import Recipe, load_recipe

CROP = DecodeOptions(crop="foreground", margin=0.125)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rectangle(shape: tuple[int, int], rows: slice, cols: slice, value: int = 255) -> np.ndarray:
    array = np.zeros(shape, np.uint8)
    array[rows, cols] = value
    return array


def phantom(top: int, left: int, gain: float = 1.0, offset: float = 0.0,
            shape: tuple[int, int] = (96, 96)) -> np.ndarray:
    """A textured ellipse ("brain") of 40 x 30 px on black, its box's corner at (top, left)."""
    yy, xx = np.mgrid[:40, :30]
    inside = ((yy - 19.5) / 20) ** 2 + ((xx - 14.5) / 15) ** 2 <= 1
    texture = 60 + 3 * yy + 2 * xx + 40 * np.sin(xx / 3.0)
    array = np.zeros(shape, np.float64)
    array[top : top + 40, left : left + 30] = np.where(inside, texture * gain + offset, 0)
    return np.clip(array, 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------- the crop


def test_crop_centres_an_off_centre_rectangle_and_fills_the_frame_minus_the_margin(tmp_path: Path) -> None:
    # a 32 x 32 square in the top right of 128 x 128; margin 4 px a side -> a 40 px box -> 20 px: 2 px of margin
    path = save(tmp_path / "square.png", rectangle((128, 128), slice(10, 42), slice(70, 102)))
    x = decode_image(path, (20, 20), 1, CROP)[..., 0]
    expected = rectangle((20, 20), slice(2, 18), slice(2, 18))
    assert np.array_equal(x, expected)
    plain = decode_image(path, (20, 20), 1)[..., 0]
    assert not np.array_equal(plain, expected)  # without the crop it stays in its corner


def test_crop_grows_the_shorter_side_centred_so_the_aspect_is_kept(tmp_path: Path) -> None:
    # 32 tall x 16 wide: the box (40 x 20 with the margin) is widened to 40 x 40 around its centre
    path = save(tmp_path / "tall.png", rectangle((128, 128), slice(10, 42), slice(80, 96)))
    x = decode_image(path, (20, 20), 1, CROP)[..., 0]
    assert np.array_equal(x, rectangle((20, 20), slice(2, 18), slice(6, 14)))  # 6 px either side: centred


def test_crop_pads_with_black_where_the_box_leaves_the_image_and_follows_the_target_aspect(tmp_path: Path) -> None:
    # 16 x 32 touching the top edge: squared to 32 x 32 by 8 rows above the image (black) and 8 below
    path = save(tmp_path / "edge.png", rectangle((64, 128), slice(0, 16), slice(40, 72), 200))
    options = DecodeOptions(crop="foreground", margin=0.0)
    assert foreground_box(np.asarray(Image.open(path)), 10, 0.0) == (-8, 24, 40, 72)
    x = decode_image(path, (16, 16), 1, options)[..., 0]
    assert np.array_equal(x, rectangle((16, 16), slice(4, 12), slice(0, 16), 200))
    wide = decode_image(path, (16, 32), 3, options)  # the target's own aspect (1:2): nothing to grow
    assert wide.shape == (16, 32, 3) and (wide == 200).all()


def test_crop_box_takes_the_maximum_over_channels_and_ignores_pixels_at_or_below_the_threshold() -> None:
    array = np.zeros((50, 50, 3), np.uint8)
    array[5:9, 5:45] = 10  # at the threshold: background
    array[20:30, 10:40, 2] = 90  # blue only: foreground by its maximum channel
    assert foreground_box(array, 10, 0.0) == (10, 40, 10, 40)
    assert foreground_box(array, 90, 0.0) is None  # nothing above 90: no box


def test_an_image_without_foreground_is_left_uncropped(tmp_path: Path) -> None:
    dark = np.tile(np.arange(0, 10, dtype=np.uint8), (40, 4))  # 0..9, all at or below the threshold 10
    path = save(tmp_path / "dark.png", dark)
    assert np.array_equal(decode_image(path, (20, 20), 1, CROP), decode_image(path, (20, 20), 1))


def test_the_same_object_shifted_decodes_alike_with_the_crop_and_differently_without(tmp_path: Path) -> None:
    first = save(tmp_path / "a.png", phantom(10, 12))
    shifted = save(tmp_path / "b.png", phantom(17, 40))  # 7 px lower (as Alzheimer's test brains), 28 px right
    cropped = decode_images([first, shifted], (24, 24), 1, options=CROP)[0].astype(int)
    plain = decode_images([first, shifted], (24, 24), 1)[0].astype(int)
    assert np.abs(cropped[0] - cropped[1]).max() <= 1
    assert np.abs(plain[0] - plain[1]).mean() > 20


# ---------------------------------------------------------------- the standardisation


def test_standardisation_gives_every_image_the_same_foreground_mean_and_spread(tmp_path: Path) -> None:
    dim = save(tmp_path / "dim.png", phantom(10, 12, gain=0.5, offset=10))
    bright = save(tmp_path / "bright.png", phantom(10, 12, gain=1.6, offset=30))
    options = DecodeOptions(standardize="image")
    plain = decode_images([dim, bright], (24, 24), 1)[0]
    x = decode_images([dim, bright], (24, 24), 1, options=options)[0]
    for raw, image in zip(plain, x):
        foreground = raw > 10
        assert abs(image[foreground].mean() - 128) < 2.5
        assert abs(image[foreground].std() - 40) < 4
        assert (image[~foreground] == 0).all()
    assert abs(plain[0][plain[0] > 10].mean() - plain[1][plain[1] > 10].mean()) > 40  # unlike before
    assert np.abs(x[0].astype(int) - x[1].astype(int)).mean() < 4


def test_standardisation_comes_after_the_crop_and_resize_and_maps_a_flat_foreground_to_128(tmp_path: Path) -> None:
    path = save(tmp_path / "p.png", phantom(10, 12))
    both = DecodeOptions(crop="foreground", standardize="image", margin=0.1)
    cropped = decode_image(path, (24, 24), 1, DecodeOptions(crop="foreground", margin=0.1))
    assert np.array_equal(decode_image(path, (24, 24), 1, both), standardize_image(cropped, 10))
    flat = np.zeros((8, 8, 1), np.uint8)
    flat[2:6, 2:6] = 77
    out = standardize_image(flat, 10)
    assert (out[2:6, 2:6] == 128).all() and out.sum() == 128 * 16
    assert (standardize_image(np.full((8, 8, 3), 5, np.uint8), 10) == 0).all()  # no foreground: all background


# ---------------------------------------------------------------- the cache key


def test_the_cache_key_is_unchanged_with_default_options_and_differs_when_an_option_does(tmp_path: Path) -> None:
    path = save(tmp_path / "p.png", phantom(10, 12))
    files = hashlib.sha1(path.read_bytes()).digest()

    def old_key(window: str = "") -> str:  # the key as computed before the options existed
        return hashlib.sha256(f"{CACHE_VERSION}|16x16x1{window}|".encode() + files).hexdigest()[:32]

    assert content_key([path], (16, 16), 1) == content_key([path], (16, 16), 1, DecodeOptions()) == old_key()
    assert content_key([path], (16, 16), 1, DecodeOptions(window=(0, 4095))) == old_key("|window 0.0,4095.0")
    variants = [DecodeOptions(crop="foreground"), DecodeOptions(crop="foreground", margin=0.1),
                DecodeOptions(crop="foreground", threshold=20), DecodeOptions(standardize="image"),
                DecodeOptions(standardize="image", threshold=20),
                DecodeOptions(crop="foreground", standardize="image")]
    keys = {content_key([path], (16, 16), 1, v) for v in variants}
    assert len(keys) == len(variants) and old_key() not in keys
    # a value no chosen step reads does not split the cache
    assert content_key([path], (16, 16), 1, DecodeOptions(threshold=20, margin=0.3)) == old_key()


def test_the_cache_serves_each_option_its_own_pixels(tmp_path: Path) -> None:
    path = save(tmp_path / "p.png", phantom(30, 50))
    plain = decode_images([path], (16, 16), 1)[0]
    cropped = decode_images([path], (16, 16), 1, options=CROP)[0]  # after the plain entry was cached
    assert not np.array_equal(plain, cropped)
    assert np.array_equal(decode_images([path], (16, 16), 1, options=CROP)[0], cropped)  # read back
    with pytest.raises(ValueError, match="not both"):
        decode_images([path], (16, 16), 1, options=CROP, window=(0, 1))


def test_bad_decode_options_are_refused() -> None:
    for kwargs, key in [({"crop": "center"}, "crop"), ({"standardize": "z"}, "standardize"),
                        ({"threshold": 255}, "threshold"), ({"threshold": 2.5}, "threshold"),
                        ({"margin": 1.5}, "margin")]:
        with pytest.raises(CompetitionError, match=rf"^DecodeOptions\.{key}: expected"):
            DecodeOptions(**kwargs)


# ---------------------------------------------------------------- the recipe keys


def test_default_keys_leave_the_recipe_and_its_hash_as_before() -> None:
    default = Recipe()
    explicit = load_recipe(None, ["data.crop=none", "data.standardize=none", "data.crop_margin=0.05",
                                  "data.foreground_threshold=10"])
    assert set(default.resolved()["data"]) == {"root", "image_size", "channels"}
    assert explicit.hash() == default.hash()
    assert default.data.decode_options() == DecodeOptions()
    cropped = load_recipe(None, ["data.crop=foreground", "data.crop_margin=0.1", "data.standardize=image",
                                 "data.foreground_threshold=20"])
    assert cropped.hash() != default.hash()
    assert cropped.data.decode_options() == DecodeOptions(crop="foreground", standardize="image", threshold=20,
                                                          margin=0.1)
    assert Recipe.model_validate(cropped.resolved()).hash() == cropped.hash()  # the resolved recipe reloads


@pytest.mark.parametrize(("setting", "expected"), [
    ("data.crop=fg", r"^recipe: recipe\.data\.crop: input should be 'none' or 'foreground', got 'fg'$"),
    ("data.standardize=zscore", r"^recipe: recipe\.data\.standardize: .*'image', got 'zscore'$"),
    ("data.foreground_threshold=255", r"^recipe: recipe\.data\.foreground_threshold: .*254, got 255$"),
    ("data.foreground_threshold=dark",
     r"^recipe: recipe\.data\.foreground_threshold: expected an integer, got 'dark'$"),
    ("data.crop_margin=1.5", r"^recipe: recipe\.data\.crop_margin: .*1, got 1\.5$"),
    ("data.crop_margin=-0.1", r"^recipe: recipe\.data\.crop_margin: .*0, got -0\.1$"),
])
def test_bad_values_name_the_key_and_echo_the_value(setting: str, expected: str) -> None:
    with pytest.raises(CompetitionError, match=expected):
        load_recipe(None, ["data.crop=foreground", setting])


def test_a_value_no_chosen_step_reads_is_refused() -> None:
    with pytest.raises(CompetitionError, match=r"^recipe: recipe\.data\.crop_margin: 0\.2 is used only by "
                                               r"data\.crop: foreground.*set data\.crop: foreground$"):
        load_recipe(None, ["data.crop_margin=0.2"])
    with pytest.raises(CompetitionError, match=r"^recipe: recipe\.data\.foreground_threshold: 30 is used only by"):
        load_recipe(None, ["data.foreground_threshold=30"])
    with pytest.raises(CompetitionError, match=r"recipe\.data\.crop_margin: 0\.2 is used only"):
        load_recipe(None, ["data.crop_margin=0.2", "data.standardize=image"])
    assert load_recipe(None, ["data.standardize=image", "data.foreground_threshold=30"]).data.foreground_threshold == 30


# ---------------------------------------------------------------- every decode path of a recipe


def test_training_and_predict_decode_train_test_and_new_images_alike(tmp_path: Path) -> None:
    root = tmp_path / "contest"
    for k, label in enumerate(["a", "b"]):
        save(root / "train" / label / f"{label}.png", phantom(8 + k, 10))
        save(root / "test" / f"t{label}.png", phantom(20 + k, 50))  # the same brains, lower and to the right
    (root / "sample_submission.csv").write_text("id,label\nta,a\ntb,a\n")
    recipe = load_recipe(None, ["data.image_size=24", "data.crop=foreground", "data.standardize=image"])
    _, x, x_test, _ = load_contest(root, (24, 24), 1, options=recipe.data.decode_options())
    assert np.abs(x.astype(int) - x_test.astype(int)).max() <= 1
    _, plain, plain_test, _ = load_contest(root, (24, 24), 1)
    assert np.abs(plain.astype(int) - plain_test.astype(int)).mean() > 20

    new = [root / "test" / "ta.png", root / "test" / "tb.png"]
    chunks = list(decode_chunks(new, recipe))  # what predict_run feeds the fold models
    assert len(chunks) == 1 and np.array_equal(chunks[0], x_test)
    assert np.abs(chunks[0].astype(int) - x.astype(int)).max() <= 1
