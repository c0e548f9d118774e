"""Folds: stratified and grouped splits, group_by resolution and its one-line errors, scheme names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from competition.data import similarity
from competition.errors import CompetitionError
from competition.folds import describe_scheme, make_folds, parse_group_by, resolve_groups


def _one_line_error(exc: pytest.ExceptionInfo[CompetitionError], key: str = "recipe.cv.group_by") -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(key)
    return message


def _grouped_labels(n_groups: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Groups of 1..6 images; every image of a group shares its label (like slices of one brain)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    labels = np.repeat(np.arange(n_groups) % 3, sizes)
    order = rng.permutation(len(groups))
    return labels[order], groups[order]


def test_stratified_folds_balanced_and_seeded() -> None:
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    folds = make_folds(labels, 5, seed=1)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    for c, n in ((0, 30), (1, 20), (2, 10)):
        assert np.all(np.bincount(folds[labels == c], minlength=5) == n // 5)
    assert np.array_equal(folds, make_folds(labels, 5, seed=1))
    assert not np.array_equal(folds, make_folds(labels, 5, seed=2))


def test_string_labels_give_the_same_folds_as_their_codes() -> None:
    labels, groups = _grouped_labels()
    names = np.array(["a", "b", "c"])[labels]
    assert np.array_equal(make_folds(names, 4, 3, groups), make_folds(labels, 4, 3, groups))


def test_grouped_folds_never_split_a_group() -> None:
    labels, groups = _grouped_labels()
    folds = make_folds(labels, 5, seed=7, groups=groups)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    for c in range(3):  # stratified: each class reaches every fold
        assert len(np.unique(folds[labels == c])) == 5
    assert np.array_equal(folds, make_folds(labels, 5, seed=7, groups=groups))


def test_grouped_folds_accept_string_group_ids() -> None:
    labels, groups = _grouped_labels()
    names = np.array([f"patient-{g}" for g in groups])
    folds = make_folds(labels, 3, seed=0, groups=names)
    assert all(len(set(folds[names == g])) == 1 for g in set(names))


def test_fewer_groups_than_folds_is_a_clear_error() -> None:
    labels = np.repeat([0, 1], 10)
    groups = np.repeat([0, 1, 2], [7, 7, 6])
    with pytest.raises(CompetitionError) as exc:
        make_folds(labels, 5, 0, groups)
    assert "3 groups cannot fill 5 folds" in _one_line_error(exc)


def test_class_with_too_few_groups_is_named() -> None:
    labels = np.array(["common"] * 20 + ["rare"] * 6)
    groups = np.r_[np.arange(20), [100, 100, 100, 101, 101, 101]]
    with pytest.raises(CompetitionError) as exc:
        make_folds(labels, 3, 0, groups)
    assert "class 'rare' lies in only 2 groups" in _one_line_error(exc)


def test_too_few_images_per_class() -> None:
    with pytest.raises(CompetitionError) as exc:
        make_folds(np.array([0] * 10 + [1] * 2), 3, 0)
    assert "class '1' has 2" in _one_line_error(exc, "recipe.cv.folds")


def test_group_count_must_match_labels() -> None:
    with pytest.raises(CompetitionError) as exc:
        make_folds(np.repeat([0, 1], 10), 2, 0, np.arange(5))
    _one_line_error(exc)


# ---------------------------------------------------------------- group_by


def _train(names: list[str], **columns: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"id": [n.rsplit(".", 1)[0] for n in names], "path": [f"/data/train/cls/{n}" for n in names],
         "label": ["a"] * len(names)}
    )
    for key, values in columns.items():
        frame[key] = values
    return frame


def test_no_grouping() -> None:
    assert resolve_groups(None, _train(["x.jpg"])) is None
    assert resolve_groups("none", _train(["x.jpg"])) is None


def test_column_grouping() -> None:
    train = _train(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], patient=["p1", "p2", "p1", "p3"])
    groups = resolve_groups("column:patient", train)
    assert groups is not None
    assert groups[0] == groups[2] and len({groups[0], groups[1], groups[3]}) == 3


def test_missing_column_lists_available_ones() -> None:
    train = _train(["a.jpg"], patient=["p1"])
    with pytest.raises(CompetitionError) as exc:
        resolve_groups("column:subject", train)
    message = _one_line_error(exc)
    assert "'subject'" in message and "id, path, label, patient" in message


def test_empty_column_values_are_an_error() -> None:
    train = _train(["a.jpg", "b.jpg"], patient=["p1", None])
    with pytest.raises(CompetitionError) as exc:
        resolve_groups("column:patient", train)
    assert "id 'b'" in _one_line_error(exc)


def test_regex_grouping_uses_first_capture_group_of_the_file_name() -> None:
    train = _train(["sub01_slice3.jpg", "sub01_slice4.jpg", "sub02_slice1.jpg", "sub10_slice1.jpg"])
    groups = resolve_groups(r"regex:^(sub\d+)_", train)
    assert groups is not None and list(groups) == [0, 0, 1, 2]
    whole = resolve_groups(r"regex:sub\d+", train)  # no group: the whole match
    assert whole is not None and list(whole) == [0, 0, 1, 2]


def test_regex_falls_back_to_the_id_without_paths() -> None:
    train = pd.DataFrame({"id": ["p1-a", "p1-b", "p2-a"], "label": ["x", "x", "y"]})
    groups = resolve_groups(r"regex:^(p\d)-", train)
    assert groups is not None and list(groups) == [0, 0, 1]


def test_invalid_regex_names_the_pattern() -> None:
    with pytest.raises(CompetitionError) as exc:
        resolve_groups("regex:sub(\\d+", _train(["sub1.jpg"]))
    assert "invalid regex 'sub(\\d+'" in _one_line_error(exc)


def test_regex_that_misses_a_file_names_it() -> None:
    train = _train(["sub01_a.jpg", "scan_b.jpg", "scan_c.jpg"])
    with pytest.raises(CompetitionError) as exc:
        resolve_groups(r"regex:^(sub\d+)", train)
    message = _one_line_error(exc)
    assert "'scan_b.jpg'" in message and "1 other" in message


def test_unknown_group_by_syntax() -> None:
    with pytest.raises(CompetitionError) as exc:
        resolve_groups("patient", _train(["a.jpg"]))
    assert "column:<name>" in _one_line_error(exc)
    with pytest.raises(CompetitionError) as exc:
        parse_group_by("near_duplicates:big")
    _one_line_error(exc)


def test_near_duplicate_grouping_from_signatures() -> None:
    rng = np.random.default_rng(0)
    base = similarity.signatures(rng.integers(0, 256, (6, 32, 32), dtype=np.uint8))
    sigs = np.vstack([base, base[:2]])  # rows 6, 7 copy rows 0, 1
    train = _train([f"{k}.jpg" for k in range(8)])
    groups = resolve_groups("near_duplicates", train, signatures=sigs)
    assert groups is not None
    assert groups[6] == groups[0] and groups[7] == groups[1] and len(np.unique(groups)) == 6
    noisy = sigs + 1e-3 * rng.normal(size=sigs.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    strict = resolve_groups("near_duplicates:0", train, signatures=noisy)
    assert strict is not None and len(np.unique(strict)) == 8
    with pytest.raises(CompetitionError) as exc:
        resolve_groups("near_duplicates", train, signatures=sigs[:5])
    _one_line_error(exc)


def test_describe_scheme() -> None:
    assert describe_scheme(5, 42, None) == "stratified 5-fold, seed 42"
    assert describe_scheme(5, 42, "near_duplicates") == (
        f"grouped (near_duplicates, threshold {similarity.DEFAULT_THRESHOLD:g}) 5-fold, seed 42"
    )
    assert describe_scheme(3, 1, "near_duplicates", 0.01) == "grouped (near_duplicates, threshold 0.01) 3-fold, seed 1"
    assert describe_scheme(3, 1, "near_duplicates:0.02") == "grouped (near_duplicates, threshold 0.02) 3-fold, seed 1"
    assert describe_scheme(5, 0, "column:patient") == "grouped (column:patient) 5-fold, seed 0"
    assert describe_scheme(5, 0, r"regex:^(\d+)_") == r"grouped (regex:^(\d+)_) 5-fold, seed 0"
