"""The synthetic demo contest: layout, counts, determinism, and a real class signal."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from competition.demo import CLASSES, make_demo
from competition.errors import CompetitionError

SEVERITY_ORDER = ["NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo") / "contest", seed=0)


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L"
        return np.asarray(img, dtype=np.float64)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _train_counts(root: Path) -> dict[str, int]:
    return {c: len(list((root / "train" / c).glob("*.png"))) for c in CLASSES}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = _tree_hashes(make_demo(tmp_path / "a", seed=3, scale=0.3))
    b = _tree_hashes(make_demo(tmp_path / "b", seed=3, scale=0.3))
    assert a == b
    assert len(a) > 50
    c = _tree_hashes(make_demo(tmp_path / "c", seed=4, scale=0.3))
    assert a != c


def test_layout_and_counts(demo: Path) -> None:
    assert sorted(p.name for p in (demo / "train").iterdir()) == sorted(CLASSES)
    counts = _train_counts(demo)
    assert 450 <= sum(counts.values()) <= 550
    assert min(counts.values()) >= 10
    tests = sorted((demo / "test").glob("*.png"))
    assert 100 <= len(tests) <= 140
    assert all(re.fullmatch(r"[0-9a-f]{12}", p.stem) for p in tests)
    readme = (demo / "README.md").read_text()
    assert readme.startswith("# ") and f"`test/<id>.png`: {len(tests)} images" in readme  # the count, not one scan's
    assert _load(tests[0]).shape == (64, 64)
    # Nothing left behind next to the contest folder (the temporary build folder was renamed).
    assert [p.name for p in demo.parent.iterdir()] == [demo.name]


def test_train_names_group_by_subject(demo: Path) -> None:
    subjects: dict[str, set[str]] = {}
    for cls in CLASSES:
        for p in (demo / "train" / cls).glob("*.png"):
            assert re.fullmatch(r"subj\d+_slice\d\d", p.stem), p.name
            subjects.setdefault(re.search(r"(subj\d+)", p.name).group(1), set()).add(cls)
    assert all(len(classes) == 1 for classes in subjects.values())  # a subject has one diagnosis
    sizes = pd.Series([len(list(demo.glob(f"train/*/{s}_*.png"))) for s in subjects])
    assert sizes.min() >= 2 and sizes.max() <= 4
    # Enough subjects in the rarest class for 5-fold group CV.
    rare = [s for s, c in subjects.items() if "ModerateDemented" in c]
    assert len(rare) >= 5


def test_imbalance_follows_the_real_set(demo: Path) -> None:
    counts = _train_counts(demo)
    # Real: NonDemented 2560 > VeryMild 1792 > Mild 717 > Moderate 52.
    assert counts["NonDemented"] > counts["VeryMildDemented"] > counts["MildDemented"] > counts["ModerateDemented"]
    solution = pd.read_csv(demo / ".solution.csv")
    test_counts = solution["label"].value_counts()
    assert list(test_counts.index) == ["NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented"]


def test_sample_submission_matches_test_files(demo: Path) -> None:
    sample = pd.read_csv(demo / "sample_submission.csv", dtype=str)
    solution = pd.read_csv(demo / ".solution.csv", dtype=str)
    assert list(sample.columns) == ["id", "label"]
    stems = sorted(p.stem for p in (demo / "test").glob("*.png"))
    assert list(sample["id"]) == stems  # one row per test image, fixed (sorted) order
    assert sample["label"].nunique() == 1 and sample["label"].iloc[0] in CLASSES
    assert list(solution["id"]) == stems
    assert set(solution["label"]) == set(CLASSES)


def test_class_signal_atrophy_darkens_the_centre(demo: Path) -> None:
    """Ventricles widen with atrophy, so the central region gets darker from NonDemented to Moderate."""
    means = []
    for cls in SEVERITY_ORDER:
        imgs = np.stack([_load(p) for p in (demo / "train" / cls).glob("*.png")])
        h = imgs.shape[1]
        means.append(imgs[:, 3 * h // 8 : 5 * h // 8, 3 * h // 8 : 5 * h // 8].mean())
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert means[0] - means[-1] > 20, means


def test_scale_and_size(tmp_path: Path) -> None:
    out = make_demo(tmp_path / "small", seed=1, size=48, scale=0.05)
    counts = _train_counts(out)
    assert min(counts.values()) >= 6
    assert _load(next((out / "test").glob("*.png"))).shape == (48, 48)


def test_refuses_non_empty_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CompetitionError, match="already exists and is not empty") as err:
        make_demo(out, scale=0.05)
    assert "\n" not in str(err.value)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no temporary folder left


def test_empty_out_dir_is_fine_and_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "contest"
    out.mkdir()
    make_demo(out, seed=0, scale=0.05)
    (out / "stale.txt").write_text("old")
    make_demo(out, seed=0, scale=0.05, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert (out / "sample_submission.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contest"]
