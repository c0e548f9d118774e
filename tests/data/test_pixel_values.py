"""Issue 15, kind 6 ("pixel values mean the same thing in every image"), the 16-bit part: five new cases written
from the kind alone. Grey images of more than 8 bits are mapped to 0..255 one way for the whole contest (the bit
depth's full range, or the recipe's data.intensity_window), never by each image's own minimum and maximum, and
`train` says which mapping it used.

The pixel cases decode through competition.data (what `train` runs); the note cases drive the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.data import decode_images

_SCRIPT = Path(sys.executable).parent / "competition"
COMPETITION = str(_SCRIPT) if _SCRIPT.is_file() else "competition"
TINY = ["--set", "cv.folds=2", "--set", "train.phases.0.epochs=1", "--set", "data.image_size=16",
        "--set", "model.filters=[4]", "--set", "model.head.dense=[4]", "--executor", "local"]
RECIPE = """\
name: k6
data: {image_size: 16, channels: 1}
model: {backbone: cnn, filters: [4], head: {dense: [4]}}
train: {batch_size: 8, phases: [{epochs: 1}]}
cv: {folds: 2, seed: 1}
"""


def texture(seed: int, level: float, spread: float = 3000, top: float = 65535) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, spread, (16, 16)), 0, top)


def save16(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.round().astype(np.uint16)).save(path)
    return path


def save8(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.round().astype(np.uint8)).save(path)
    return path


def decode(paths: list[Path], **options: object) -> np.ndarray:
    images, bad = decode_images(paths, (16, 16), 1, **options)
    assert bad == []
    return images.astype(int)


# 1. One picture kept as an 8-bit PNG and as a 16-bit PNG (values x 257) is the same picture to the model.
def test_the_same_picture_in_8_and_16_bits_decodes_alike(tmp_path: Path) -> None:
    picture = texture(1, 90, spread=20, top=255)
    eight = save8(tmp_path / "a8.png", picture)
    sixteen = save16(tmp_path / "a16.png", picture.round() * 257)
    x = decode([eight, sixteen])
    assert np.abs(x[0] - x[1]).max() <= 1


# 2. A flat 16-bit image (no contrast inside it) keeps its level: dim and bright flat images stay apart.
def test_flat_16_bit_images_keep_their_level(tmp_path: Path) -> None:
    dim = save16(tmp_path / "dim.png", np.full((16, 16), 10000.0))
    bright = save16(tmp_path / "bright.png", np.full((16, 16), 50000.0))
    x = decode([dim, bright])
    assert np.all(x[0] == round(10000 / 257)) and np.all(x[1] == round(50000 / 257))


# 3. Train and test are decoded as separate lists, PNG and TIFF alike: a value means one grey everywhere.
def test_one_value_is_one_grey_across_lists_and_formats(tmp_path: Path) -> None:
    dim, bright = texture(2, 12000), texture(3, 40000)
    train = [save16(tmp_path / "train" / "dim.png", dim), save16(tmp_path / "train" / "bright.tif", bright)]
    test = [save16(tmp_path / "test" / "dim.tif", dim)]  # the test list holds only the dim picture
    x_train, x_test = decode(train), decode(test)
    assert np.array_equal(x_train[0], x_test[0])
    assert x_train[1].mean() - x_train[0].mean() > 90  # (40000 - 12000) / 257 = 109 grey levels apart


# 4. `train` says how it mapped 16-bit images, also when the pixels come from the decode cache.
@pytest.mark.slow
def test_train_says_the_16_bit_mapping_also_from_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for cls, level in (("dim", 15000), ("bright", 45000)):
        for i in range(4):
            save16(root / "train" / cls / f"{cls}{i}.png", texture(i, level))
    for i in range(2):
        save16(root / "test" / f"t{i}.png", texture(10 + i, 30000))
    (root / "sample_submission.csv").write_text("id,label\nt0,dim\nt1,dim\n")
    (tmp_path / "k6.yaml").write_text(RECIPE)
    env = {**os.environ, "COMPETITION_CACHE_DIR": str(tmp_path / "cache")}
    for attempt in ("decoded", "cached"):
        done = subprocess.run([COMPETITION, "train", "k6.yaml", "--data", "c", "--runs", f"runs-{attempt}", *TINY],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        output = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 0, output[-3000:]
        said = "10 16-bit grey images" in output and "mapped to 0..255 from 0..65535" in output
        assert said, (attempt, output[-3000:])


# 5. 12-bit scans in 16-bit files use little of the full range: the note says where the values lie and which
#    window would use every grey level; that window, declared, maps the same values the same way in every image.
@pytest.mark.slow
def test_a_declared_window_maps_every_image_alike_and_is_suggested(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for cls, level in (("dim", 1000), ("bright", 3000)):
        for i in range(4):
            save16(root / "train" / cls / f"{cls}{i}.png", texture(i, level, spread=300, top=4095))
    for i in range(2):
        save16(root / "test" / f"t{i}.png", texture(10 + i, 2000, spread=300, top=4095))
    (root / "sample_submission.csv").write_text("id,label\nt0,dim\nt1,dim\n")
    (tmp_path / "k6.yaml").write_text(RECIPE)
    done = subprocess.run([COMPETITION, "train", "k6.yaml", "--data", "c", "--runs", "runs", *TINY], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COMPETITION_CACHE_DIR": str(tmp_path / "cache")})
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output[-3000:]
    assert "data.intensity_window" in output, output[-3000:]

    paths = sorted((root / "train").rglob("*.png"))
    windowed = decode(paths, window=(0, 4095))
    full = decode(paths)
    values = np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in paths])[..., None]
    assert np.abs(windowed - np.round(values / 4095 * 255)).max() <= 1  # one line for every image
    assert windowed.std() > 8 * full.std()  # 4095 / 65535: the window spreads the values 16 times wider


# More of the kind: float images (0.0..1.0) and DICOM under a declared window.
def test_float_tiff_maps_zero_to_one_like_the_same_8_bit_picture(tmp_path: Path) -> None:
    picture = texture(4, 120, spread=30, top=255).round()
    float_path = tmp_path / "f.tif"
    Image.fromarray((picture / 255).astype(np.float32)).save(float_path)
    x = decode([save8(tmp_path / "e.png", picture), float_path])
    assert np.abs(x[0] - x[1]).max() <= 1


def test_a_declared_window_applies_to_dicom_too(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from corpus import dicom

    raw = np.tile(np.linspace(0, 4000, 16).astype(np.uint16), (16, 1))  # no window of its own: min-max
    path = dicom(tmp_path / "ct.dcm", raw)
    x = decode([path], window=(0, 8000))
    assert x[0, 0, 0, 0] == 0 and abs(x[0, 0, -1, 0] - 128) <= 1  # 4000 of 0..8000 is mid-grey


def test_the_recipe_window_reaches_training_and_prediction(tmp_path: Path) -> None:
    """data.intensity_window is used by the run's decoding, train and test alike."""
    from competition.recipe import load_recipe
    from competition.runs.prepare import prepare_run

    root = tmp_path / "contest"
    for label, level in (("dim", 500), ("bright", 3000)):
        for i in range(6):
            save16(root / "train" / label / f"{label}{i}.png", np.full((16, 16), level + i, np.uint16))
    for i in range(2):
        save16(root / "test" / f"t{i}.png", np.full((16, 16), 500, np.uint16))
    (root / "sample_submission.csv").write_text("id,label\nt0,dim\nt1,dim\n")
    recipe = load_recipe(None, ["name=w", "data.image_size=16", "data.intensity_window=[0, 1000]", "cv.folds=2"])
    prepared = prepare_run(recipe, tmp_path / "runs", data_root=root)
    bright = prepared.contest.train["label"].to_numpy() == "bright"
    assert prepared.x[bright].min() == 255  # 3000 is above the window: white
    assert 120 <= prepared.x[~bright].max() <= 135 and 120 <= prepared.x_test.max() <= 135  # 500 of 1000: mid grey
