"""Audit: signatures, planted near-duplicates, leak share, the audit report on a synthetic contest."""

from __future__ import annotations

import itertools
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition import audit
from competition.data import similarity
from competition.folds import make_folds

THR = similarity.DEFAULT_THRESHOLD


def _copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A near-duplicate: other brightness and contrast, a little noise (distance ~0.001, far below THR)."""
    out = image.astype(np.float64) * rng.uniform(0.85, 0.95) + rng.uniform(5, 15) + rng.normal(0, 2, image.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class Planted:
    train_images: np.ndarray
    train: pd.DataFrame
    test_images: np.ndarray
    test: pd.DataFrame
    train_groups: np.ndarray  # planted group per train image
    test_twins: dict[int, int]  # test row -> planted group of its train twins


def _planted(seed: int = 0, size: int = 32) -> Planted:
    """Random-noise bases (unrelated: distance ~1) and perturbed copies of some of them.

    Train: 24 bases; bases 0..5 get 1, 2, 3, 1, 1, 2 extra copies (all of one label). Test: 6 unrelated
    bases plus copies of train bases 7 and 8.
    """
    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 256, size=(32, size, size), dtype=np.uint8)
    extra = {0: 1, 1: 2, 2: 3, 3: 1, 4: 1, 5: 2}
    images, groups = [], []
    for b in range(24):
        images.append(bases[b])
        groups.append(b)
        for _ in range(extra.get(b, 0)):
            images.append(_copy(bases[b], rng))
            groups.append(b)
    order = rng.permutation(len(images))
    train_images = np.stack(images)[order]
    train_groups = np.asarray(groups)[order]
    labels = np.array(["alpha", "beta", "gamma"])[train_groups % 3]
    train = pd.DataFrame({"id": [f"tr{k:03d}" for k in range(len(order))], "label": labels})
    test_images = np.stack([*bases[24:30], _copy(bases[7], rng), _copy(bases[8], rng)])
    test = pd.DataFrame({"id": [f"te{k:02d}" for k in range(len(test_images))]})
    return Planted(train_images, train, test_images, test, train_groups, {6: 7, 7: 8})


def _planted_pairs(groups: np.ndarray) -> set[tuple[int, int]]:
    return {
        (i, j) for i, j in itertools.combinations(range(len(groups)), 2) if groups[i] == groups[j]
    }


# ---------------------------------------------------------------- signatures


def test_signatures_are_unit_vectors_invariant_to_brightness_and_contrast() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 200, size=(5, 40, 24), dtype=np.uint8)  # any size, not a multiple of 16
    sigs = similarity.signatures(images)
    assert sigs.shape == (5, 256) and sigs.dtype == np.float32
    assert np.allclose(np.linalg.norm(sigs, axis=1), 1, atol=1e-5)
    brighter = (images.astype(np.float64) * 1.2 + 10).astype(np.float32)
    assert np.all(similarity.distance(similarity.signatures(brighter), sigs) < 1e-6)
    rgb = np.repeat(images[..., None], 3, axis=3)
    assert np.allclose(similarity.signatures(rgb), sigs, atol=1e-6)
    gray1 = images[..., None]
    assert np.allclose(similarity.signatures(gray1), sigs, atol=1e-6)


def test_unrelated_images_are_far_and_copies_near() -> None:
    p = _planted()
    sigs = similarity.signatures(p.train_images)
    _, nearest = similarity.nearest(sigs)
    copied = np.bincount(p.train_groups)[p.train_groups] > 1
    assert nearest[copied].max() < THR / 2
    assert nearest[~copied].min() > 0.5


# ---------------------------------------------------------------- pairs, groups, leak


def test_near_pairs_find_every_planted_pair_and_no_other() -> None:
    p = _planted()
    sigs = similarity.signatures(p.train_images)
    i, j, d = similarity.near_pairs(sigs, threshold=THR)
    assert set(zip(i.tolist(), j.tolist())) == _planted_pairs(p.train_groups)
    assert np.all(np.diff(d) >= 0) and np.all(d <= THR)
    ti, tj, _ = similarity.near_pairs(similarity.signatures(p.test_images), sigs, threshold=THR)
    expected = {(t, k) for t, g in p.test_twins.items() for k in np.flatnonzero(p.train_groups == g)}
    assert set(zip(ti.tolist(), tj.tolist())) == expected


def test_groups_are_the_planted_groups() -> None:
    p = _planted()
    groups = similarity.near_duplicate_groups(similarity.signatures(p.train_images), THR)
    # same partition: a one-to-one map between found and planted group ids
    assert len(set(zip(groups, p.train_groups))) == len(set(groups)) == len(set(p.train_groups))


def test_groups_chain_through_neighbours() -> None:
    angles = np.array([0.0, 0.08, 0.16, 1.5])  # a~b and b~c are near, a and c are not
    sigs = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    t = 1 - np.cos(0.1)
    assert similarity.distance(sigs[0], sigs[2]) > t
    groups = similarity.near_duplicate_groups(sigs, t)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_blockwise_search_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "BLOCK", 7)
    rng = np.random.default_rng(3)
    sigs = similarity.signatures(rng.integers(0, 256, size=(30, 16, 16), dtype=np.uint8))
    sigs = np.vstack([sigs, sigs[:10] + 0.05 * similarity.signatures(rng.integers(0, 256, size=(10, 16, 16)))])
    sigs /= np.linalg.norm(sigs, axis=1, keepdims=True)
    full = 1 - sigs.astype(np.float64) @ sigs.T.astype(np.float64)
    np.fill_diagonal(full, np.inf)
    t = 0.01
    i, j, _ = similarity.near_pairs(sigs, threshold=t)
    assert set(zip(i.tolist(), j.tolist())) == {(a, b) for a, b in zip(*np.nonzero(full <= t)) if a < b}
    index, dist = similarity.nearest(sigs)
    assert np.array_equal(index, full.argmin(axis=1)) and np.allclose(dist, full.min(axis=1), atol=1e-5)
    folds = np.arange(len(sigs)) % 4
    masked = np.where(folds[:, None] == folds[None, :], np.inf, full)
    assert np.allclose(similarity.nearest_in_other_fold(sigs, folds), masked.min(axis=1), atol=1e-5)


def test_leak_share_is_exact_on_a_hand_built_case() -> None:
    e = np.eye(4)
    near = lambda a, b: (a + 0.01 * b) / np.linalg.norm(a + 0.01 * b)  # noqa: E731  distance 5e-5
    sigs = np.stack([e[0], near(e[0], e[1]), e[1], near(e[1], e[2]), e[2], e[3]]).astype(np.float32)
    # image 0 (fold 0) and its twin 1 (fold 1) leak; twins 2 and 3 share fold 0; 4 and 5 have no twin
    assert similarity.leak_share(sigs, np.array([0, 1, 0, 0, 1, 1]), THR) == pytest.approx(2 / 6)
    assert similarity.leak_share(sigs, np.array([0, 1, 2, 3, 4, 5]), THR) == pytest.approx(4 / 6)
    assert similarity.leak_share(sigs, np.array([0, 0, 1, 1, 2, 2]), THR) == 0.0
    assert similarity.leak_share(sigs[:0], np.array([], dtype=int), THR) == 0.0


def test_grouped_folds_remove_the_planted_leak() -> None:
    p = _planted()
    sigs = similarity.signatures(p.train_images)
    labels = p.train["label"].to_numpy()
    stratified = make_folds(labels, 3, 0)
    grouped = make_folds(labels, 3, 0, similarity.near_duplicate_groups(sigs, THR))
    assert similarity.leak_share(sigs, stratified, THR) > 0
    assert similarity.leak_share(sigs, grouped, THR) == 0.0


# ---------------------------------------------------------------- adversarial validation


def test_adversarial_auc_tells_shifted_test_from_train() -> None:
    rng = np.random.default_rng(4)
    train = rng.normal(size=(200, 6))
    same = audit.adversarial_auc(train, rng.normal(size=(200, 6)))
    shifted = audit.adversarial_auc(train, rng.normal(size=(200, 6)) + [2, 0, 0, 0, 0, 0])
    assert 0.3 < same["auc"] < 0.7
    assert shifted["auc"] > 0.9
    assert shifted["top_features"][0] == {"feature": "feature 0", "auc": pytest.approx(0.92, abs=0.06),
                                          "higher_in": "test"}


# ---------------------------------------------------------------- the audit


def test_audit_arrays_report_on_planted_contest() -> None:
    p = _planted()
    hashes = [f"h{k}" for k in range(len(p.train))]
    hashes[1] = hashes[0]  # an exact duplicate (by file content) inside train
    test_hashes = [f"t{k}" for k in range(len(p.test))]
    test_hashes[0] = hashes[5]  # a test file that is also a train file
    result = audit.audit_arrays(
        p.train, p.test, p.train_images, p.test_images,
        train_hashes=hashes, test_hashes=test_hashes, n_folds=3, seed=0,
    )
    near = result["near_duplicates"]
    assert near["within_train"]["pairs"] == len(_planted_pairs(p.train_groups))
    assert near["within_train"]["cross_label_pairs"] == 0
    assert near["train_test"]["test_with_twin"] == 2
    assert near["train_test"]["test_share_with_twin"] == pytest.approx(2 / 8, abs=1e-4)
    assert near["groups"]["n_groups"] == 24 and near["groups"]["largest"] == 4
    assert result["exact_duplicates"]["within_train"]["extra_copies"] == 1
    assert result["exact_duplicates"]["train_test"]["test_images"] == 1
    assert [row["train"] for row in result["class_counts"]] == [
        int(np.sum(p.train["label"] == c)) for c in ("alpha", "beta", "gamma")
    ]
    leak = result["leak"]["auto"]["candidates"]  # the audit measures the schemes cv.scheme auto chooses from
    assert leak["stratified"]["name"] == "stratified 3-fold, seed 0"
    assert leak["stratified"]["leak_share"] > 0 and leak["grouped"]["leak_share"] == 0.0
    assert leak["grouped"]["name"].startswith("grouped (near_duplicates, threshold")
    assert {"match", "ks_nearest", "ks_chain"} <= set(leak["seen_subjects"])
    assert 0.0 <= result["adversarial"]["auc"] <= 1.0


def test_audit_says_why_grouped_folds_cannot_be_made() -> None:
    p = _planted()
    result = audit.audit_arrays(p.train, p.test, p.train_images, p.test_images, n_folds=9, seed=0)
    grouped = result["leak"]["auto"]["candidates"]["grouped"]
    assert "fewer than 9 folds" in grouped["problem"] and "match" not in grouped


def _write_contest(root: Path, p: Planted) -> tuple[pd.DataFrame, pd.DataFrame]:
    from PIL import Image

    train, test = p.train.copy(), p.test.copy()
    train["path"] = [str(root / "train" / lab / f"{i}.png") for i, lab in zip(train["id"], train["label"])]
    test["path"] = [str(root / "test" / f"{i}.png") for i in test["id"]]
    for frame, images in ((train, p.train_images), (test, p.test_images)):
        for path, image in zip(frame["path"], images):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    return train, test


def test_run_audit_writes_json_and_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image
    from rich.console import Console

    monkeypatch.setattr(audit, "PLOT_PAIRS", 3)  # a smaller figure: faster test
    p = _planted()
    train, test = _write_contest(tmp_path / "contest", p)
    decoded: list[int] = []

    def load_images(paths: list[Path], size: tuple[int, int], channels: int) -> np.ndarray:
        decoded.append(len(paths))
        return np.stack([np.asarray(Image.open(path))[..., None] for path in paths])

    contest = types.SimpleNamespace(train=train, test=test, classes=["alpha", "beta", "gamma"], multilabel=False)
    fake = types.ModuleType("competition.data")
    fake.index_contest = lambda root, layout=None: contest  # type: ignore[attr-defined]
    fake.load_images = load_images  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "competition.data", fake)
    monkeypatch.setattr("competition.data.cache.load_images", load_images)  # what signatures decode with

    out = tmp_path / "audit"
    result = audit.run_audit(tmp_path / "contest", out, n_folds=3, seed=0)
    saved = json.loads((out / "audit.json").read_text())
    assert saved["near_duplicates"]["train_test"]["test_with_twin"] == 2
    assert saved["leak"]["auto"]["candidates"]["grouped"]["leak_share"] == 0.0
    with Image.open(out / "relation.png") as png:  # the test's distances against each scheme's
        assert png.format == "PNG"
    assert saved["exact_duplicates"]["within_train"]["extra_copies"] == 0
    assert result["seconds"] == saved["seconds"]
    with Image.open(out / "closest_pairs.png") as png:
        assert png.format == "PNG" and png.height > png.width

    console = Console(record=True, width=400)
    audit.print_audit(result, console)
    text = console.export_text()
    assert "25.0% of test images have a twin in train" in text and "stratified 3-fold, seed 0" in text

    # the training signatures are cached: near_duplicates grouping decodes nothing
    decoded.clear()
    sigs = similarity.train_signatures(train)
    assert decoded == [] and np.allclose(sigs, similarity.signatures(p.train_images), atol=1e-6)
