"""Contest indexing and decode-once caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.data import cache
from competition.data import index_contest, load_images
from competition.errors import CompetitionError


def make_contest(root: Path, classes: dict[str, int], n_test: int = 2, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (20, 30) if mode == "L" else (20, 30, 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / "train" / name / f"{name}{i}.png")
    (root / "test").mkdir(parents=True, exist_ok=True)
    for i in range(n_test):
        Image.fromarray(rng.integers(0, 255, (25, 25), dtype=np.uint8)).save(root / "test" / f"t{i}.jpg")
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},a\n" for i in range(n_test)))
    return root


def test_index_folder_layout(tmp_path: Path) -> None:
    contest = index_contest(make_contest(tmp_path, {"b": 2, "a": 3}))
    assert contest.classes == ["a", "b"]
    assert list(contest.train.columns[:3]) == ["id", "path", "label"]
    assert sorted(contest.train["label"]) == ["a", "a", "a", "b", "b"]
    assert contest.y().tolist() == [0, 0, 0, 1, 1]
    assert contest.test["id"].tolist() == ["t0", "t1"]


def test_index_train_csv_layout(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "train").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(root / "train" / f"img{i}.png")
    (root / "train.csv").write_text("id,label,patient\nimg0,x,p1\nimg1,y,p1\nimg2,x,p2\nimg3,y,p2\n")
    make_contest(root, {}, n_test=1)
    contest = index_contest(root)
    assert contest.classes == ["x", "y"] and contest.train["patient"].tolist() == ["p1", "p1", "p2", "p2"]
    assert Path(contest.train["path"][2]).name == "img2.png"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: None, "contest folder not found"),
        (lambda root: make_contest(root, {"a": 2, "b": 0}), "class folder holds no images"),
        (lambda root: make_contest(root, {"a": 3}), "only one class"),
        (lambda root: make_contest(root, {"a": 2, "b": 2}, n_test=0), "test folder holds no images"),
    ],
)
def test_bad_contests_name_the_path(tmp_path: Path, setup, expected: str) -> None:
    root = tmp_path / "contest"
    setup(root)
    with pytest.raises(CompetitionError, match=expected) as caught:
        index_contest(root)
    assert str(root) in str(caught.value)


def test_images_are_resized_to_size_and_channels(tmp_path: Path) -> None:
    contest = index_contest(make_contest(tmp_path, {"a": 2, "b": 2}, mode="RGB"))
    gray = load_images(contest.train["path"].tolist(), (16, 12), 1)
    rgb = load_images(contest.train["path"].tolist(), (16, 12), 3)
    assert gray.shape == (4, 16, 12, 1) and rgb.shape == (4, 16, 12, 3) and gray.dtype == np.uint8


def test_decoded_once_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contest = index_contest(make_contest(tmp_path, {"a": 2, "b": 2}))
    paths = contest.train["path"].tolist()
    first = load_images(paths, (8, 8), 1)

    def no_decoding(*args: object, **options: object) -> np.ndarray:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cache, "decode_image", no_decoding)
    np.testing.assert_array_equal(load_images(paths, (8, 8), 1), first)
    with pytest.raises(AssertionError, match="decoded again"):
        load_images(paths, (9, 9), 1)  # another size is another cache entry


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    contest = index_contest(make_contest(tmp_path, {"a": 2, "b": 2}))
    bad = Path(contest.train["path"][0])
    bad.write_bytes(b"not an image")
    with pytest.raises(CompetitionError, match="1 unreadable image: .*cannot identify image file") as caught:
        load_images(contest.train["path"].tolist(), (8, 8), 1)
    assert str(bad) in str(caught.value)
