"""cv.scheme: auto picks the folds whose validation leak resembles the test's; stratified and grouped as asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition import audit
from competition.data import similarity
from competition.errors import CompetitionError
from competition.folds import SCHEME_KEY, check_scheme, choose_scheme, optimistic
from competition.recipe import Recipe, load_recipe

THR = similarity.DEFAULT_THRESHOLD
SIZE = 16  # the signature's own thumbnail size: images stay tiny


def _sibling(base: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """An image at about `distance` (signature distance) from `base`: another scan of a neighbouring brain."""
    noise = rng.normal(0, 1, base.shape)
    sigs = similarity.signatures(np.stack([base, base + noise]))
    d1 = float(similarity.distance(sigs[0], sigs[1]))
    return base + noise * np.sqrt(distance / d1)  # distance grows with the square of the noise


def _contest(
    subjects: dict[str, int], *, slices: int = 4, rare_siblings: int = 0, sibling_distance: float = 0.0043,
    test_copies: int = 0, seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Train: per class `subjects[class]` subjects, each a random image plus `slices - 1` slightly noised copies
    (distance ~2e-4). With rare_siblings, every subject of the last class gets that many siblings (their own
    slices) at ~sibling_distance: near twins at the default threshold, apart below it. Test: two slices of a new
    subject per class, plus `test_copies` noised copies of training slices. Returns (train, uint8 images (n, 16, 16),
    test, its uint8 images)."""
    rng = np.random.default_rng(seed)
    rare = list(subjects)[-1]
    images, labels, patients = [], [], []

    def add_subject(base: np.ndarray, label: str, patient: str) -> None:
        for _ in range(slices):
            images.append(base + rng.normal(0, 0.7, base.shape))
            labels.append(label)
            patients.append(patient)

    for label, count in subjects.items():
        for s in range(count):
            base = rng.uniform(0, 255, (SIZE, SIZE))
            add_subject(base, label, f"{label}-{s}")
            if label == rare:
                for k in range(rare_siblings):
                    add_subject(_sibling(base, sibling_distance, rng), label, f"{label}-{s}-sibling{k}")
    order = rng.permutation(len(images))
    train = pd.DataFrame({"id": [f"tr{k:03d}" for k in range(len(order))], "label": np.asarray(labels)[order],
                          "patient": np.asarray(patients)[order]})
    train_images = _uint8(np.stack(images)[order])
    test_images = [rng.uniform(0, 255, (SIZE, SIZE)) + rng.normal(0, 0.7, (2, SIZE, SIZE)) for _ in subjects]
    test_list = [*np.concatenate(test_images)]
    for k in rng.choice(len(train_images), test_copies, replace=False):
        test_list.append(train_images[k] + rng.normal(0, 0.7, (SIZE, SIZE)))
    test = pd.DataFrame({"id": [f"te{k:03d}" for k in range(len(test_list))]})
    return train, train_images, test, _uint8(np.stack(test_list))


def _uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _choose(train: pd.DataFrame, train_images: np.ndarray, test_images: np.ndarray, **kwargs: object):  # noqa: ANN202
    return choose_scheme(train, None, train_signatures=similarity.signatures(train_images),
                         test_signatures=similarity.signatures(test_images), **kwargs)


def _every_class_in_every_fold(labels: np.ndarray, folds: np.ndarray, n_folds: int) -> bool:
    return all(set(labels[folds == k]) == set(labels) for k in range(n_folds))


def _patients_split(train: pd.DataFrame, folds: np.ndarray) -> int:
    return int((pd.Series(folds).groupby(train["patient"].to_numpy()).nunique() > 1).sum())


# ---------------------------------------------------------------- auto


def test_auto_groups_a_contest_whose_test_comes_from_new_subjects() -> None:
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 4})
    choice = _choose(train, images, test_images, n_folds=3, seed=0)
    assert choice.scheme == "grouped" and choice.threshold == THR and choice.group_by == "near_duplicates"
    assert choice.test_twin_share == 0.0
    assert choice.leak_share == 0.0 and choice.candidates["stratified"]["leak_share"] > 0.5
    assert _patients_split(train, choice.folds) == 0  # every subject's slices in one fold
    assert _every_class_in_every_fold(train["label"].to_numpy(), choice.folds, 3)
    assert choice.name == f"grouped (near_duplicates, threshold {THR:g}) 3-fold, seed 0"
    record = choice.record()
    assert record["requested"] == "auto" and record["candidates"]["grouped"]["leak_share"] == 0.0
    assert not optimistic(record) and choice.warning is None


def test_auto_lowers_the_threshold_until_the_rare_class_fills_every_fold() -> None:
    # 2 rare subjects, each with a sibling at ~0.0043: at the default threshold the rare class is 2 groups
    # (fewer than 3 folds); below 0.0043 it is 4.
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 2}, rare_siblings=1)
    sigs = similarity.signatures(images)
    labels = train["label"].to_numpy()
    rare_groups = lambda t: len(np.unique(similarity.near_duplicate_groups(sigs, t)[labels == "rare"]))  # noqa: E731
    assert rare_groups(THR) == 2
    choice = _choose(train, images, test_images, n_folds=3, seed=0)
    assert choice.scheme == "grouped" and choice.threshold is not None and choice.threshold < THR
    assert rare_groups(choice.threshold) >= 3
    assert choice.thresholds[0] == {"threshold": THR, "problem": "class 'rare' lies in 2 groups, fewer than 3 folds"}
    assert choice.thresholds[-1] == {"threshold": choice.threshold, "problem": None}
    assert _every_class_in_every_fold(labels, choice.folds, 3) and _patients_split(train, choice.folds) == 0
    assert f"threshold {choice.threshold:g} is the largest <= {THR:g}" in "\n".join(choice.lines())


def test_auto_stays_stratified_without_twins() -> None:
    train, images, _, test_images = _contest({"a": 12, "b": 10, "c": 8}, slices=1)
    choice = _choose(train, images, test_images, n_folds=5, seed=1)
    assert choice.scheme == "stratified" and choice.group_by is None and choice.threshold is None
    assert choice.leak_share == 0.0 and choice.test_twin_share == 0.0
    assert "no two training images are near twins" in choice.reason
    assert choice.name == "stratified 5-fold, seed 1"


def test_auto_does_not_group_when_the_test_holds_copies_of_training_images() -> None:
    # Twins in train, and most test images are twins of training images: folds that keep every subject in
    # training (stratified, or blocks of each subject) resemble that; holding subjects out does not.
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 4}, test_copies=40)
    choice = _choose(train, images, test_images, n_folds=3, seed=0)
    assert choice.test_twin_share is not None and choice.test_twin_share > 0.8
    assert choice.scheme in ("stratified", "seen_subjects") and "grouped" in choice.candidates
    assert choice.candidates["grouped"]["match"] > choice.candidates[choice.scheme]["match"]
    assert choice.candidates["grouped"]["leak_share"] == 0.0


def test_auto_falls_back_to_stratified_with_a_warning_when_no_grouping_is_feasible() -> None:
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 1}, slices=6)
    choice = _choose(train, images, test_images, n_folds=3, seed=0)
    assert choice.scheme in ("stratified", "seen_subjects") and "grouped" not in choice.distances
    assert choice.warning is not None and "\n" not in choice.warning and "the test holds new subjects" in choice.warning
    assert "class 'rare' lies in 1 group," in choice.warning and "cv.group_by" in choice.warning
    assert len(choice.thresholds) == 10 and all(t["problem"] for t in choice.thresholds)


def test_auto_keeps_an_explicit_group_by() -> None:
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 4})
    choice = _choose(train, images, test_images, n_folds=3, seed=0, group_by="column:patient")
    assert choice.scheme == "grouped" and choice.group_by == "column:patient" and choice.threshold is None
    assert choice.reason.startswith("grouped folds resemble the test most")
    assert " chain blocks of column:patient) 3-fold" in choice.candidates["seen_subjects"]["name"]
    assert _patients_split(train, choice.folds) == 0 and choice.leak_share == 0.0
    assert choice.name == "grouped (column:patient) 3-fold, seed 0"


# ---------------------------------------------------------------- stratified and grouped as asked


def test_stratified_is_measured_too() -> None:
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 4})
    choice = _choose(train, images, test_images, n_folds=3, seed=0, scheme="stratified")
    assert choice.scheme == "stratified" and choice.leak_share is not None and choice.leak_share > 0.5
    assert optimistic(choice.record()) and _patients_split(train, choice.folds) > 0


def test_grouped_without_a_feasible_threshold_is_a_one_line_error() -> None:
    train, images, _, test_images = _contest({"a": 6, "b": 6, "rare": 1}, slices=6)
    with pytest.raises(CompetitionError) as exc:
        _choose(train, images, test_images, n_folds=3, seed=0, scheme="grouped")
    message = str(exc.value)
    assert message.startswith(SCHEME_KEY) and "\n" not in message and "class 'rare'" in message


def test_stratified_with_group_by_is_refused() -> None:
    with pytest.raises(CompetitionError) as exc:
        check_scheme("stratified", "column:patient")
    assert str(exc.value).startswith("recipe.cv.group_by: 'column:patient'") and SCHEME_KEY in str(exc.value)
    with pytest.raises(CompetitionError) as exc:
        load_recipe(None, ["cv.scheme=stratified", "cv.group_by=near_duplicates"])
    message = str(exc.value)
    assert "\n" not in message and "recipe.cv.group_by: 'near_duplicates'" in message and SCHEME_KEY in message
    check_scheme("stratified", None)
    check_scheme("grouped", None)


def test_scheme_is_in_the_recipe_hash_even_at_its_default() -> None:
    default = Recipe()
    assert default.cv.scheme == "auto" and default.resolved()["cv"]["scheme"] == "auto"
    hashes = {Recipe.model_validate({"cv": {"scheme": s}}).hash() for s in ("auto", "stratified", "grouped")}
    assert len(hashes) == 3 and default.hash() in hashes
    with pytest.raises(CompetitionError, match=r"recipe.cv.scheme: .*'bogus'"):
        load_recipe(None, ["cv.scheme=bogus"])


def test_signatures_from_image_files(tmp_path: Path) -> None:
    from PIL import Image

    train, images, test, test_images = _contest({"a": 4, "b": 4, "rare": 3})
    for frame, pixels, where in ((train, images, "train"), (test, test_images, "test")):
        (tmp_path / where).mkdir()
        frame["path"] = [str(tmp_path / where / f"{i}.png") for i in frame["id"]]
        for path, image in zip(frame["path"], pixels):
            Image.fromarray(image).save(path)
    choice = choose_scheme(train, test, n_folds=3, seed=0)
    assert choice.scheme == "grouped" and choice.test_twin_share == 0.0 and _patients_split(train, choice.folds) == 0


# ---------------------------------------------------------------- the audit says which cv setting to use


def test_audit_says_which_cv_setting_to_use() -> None:
    from rich.console import Console

    train, images, test, test_images = _contest({"a": 6, "b": 6, "rare": 2}, rare_siblings=1)
    result = audit.audit_arrays(train, test, images, test_images, n_folds=3, seed=0)
    auto = result["leak"]["auto"]
    assert auto["scheme"] == "grouped" and auto["threshold"] < THR
    assert result["cv_advice"].startswith(f"use cv.scheme: auto (the default; it makes {auto['name']} here: match "
                                          f"with the test grouped {auto['candidates']['grouped']['match']:.2f}")
    assert result["verdict"].startswith("The test holds new subjects")
    console = Console(record=True, width=300)
    audit.print_audit(result, console)
    assert f"Validation: {result['cv_advice']}" in console.export_text()


def test_audit_advice_without_twins_keeps_stratified() -> None:
    train, images, test, test_images = _contest({"a": 12, "b": 10, "c": 8}, slices=1)
    result = audit.audit_arrays(train, test, images, test_images, n_folds=5, seed=0)
    assert result["leak"]["auto"]["scheme"] == "stratified"
    assert result["cv_advice"].startswith("use cv.scheme: auto (the default; it makes stratified 5-fold")
