"""Subject-level aggregation: probabilities averaged over near-duplicate groups, cut at fold borders for the OOF,
formed among the test images for the test; the threshold is the largest at which no training group mixes
classes; `competition aggregate` writes an ensemble-like run that the leaderboard and `submit` treat honestly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faultkit import cli

from competition.data import index_contest
from competition.errors import CompetitionError
from competition.runs import Run, save_run
from competition.subjects import SubjectAverage, aggregate, choose_threshold, group_mean, within


def _near(base: np.ndarray, side: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector at signature distance (1 - cosine) `distance` from unit vector `base`, towards `side`."""
    theta = np.arccos(1 - distance)
    return np.cos(theta) * base + np.sin(theta) * side


def test_group_mean_averages_rows_within_each_group() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    got = group_mean(proba, np.array([7, 7, 3, 9]))
    np.testing.assert_allclose(got, [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.2, 0.8]])


def test_groups_are_cut_at_fold_borders() -> None:
    cut = within(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1]))  # group 0 spans folds 0 and 1
    assert cut[0] == cut[1] and len({cut[0], cut[2], cut[3]}) == 3 and cut[3] == cut[4]


def test_the_threshold_is_the_largest_that_keeps_every_group_to_one_class() -> None:
    e = np.eye(8)
    # Subject A (class 0): three slices within 0.001 of each other; subject B (class 1) 0.007 from A: the two
    # merge from a threshold of 0.008 on. Subject C (class 2) is far from both.
    sig = np.stack([e[0], _near(e[0], e[1], 0.001), _near(e[0], e[2], 0.001),
                    _near(e[0], e[3], 0.007), _near(_near(e[0], e[3], 0.007), e[4], 0.0005),
                    e[5], _near(e[5], e[6], 0.001)]).astype(np.float32)
    y = np.array([0, 0, 0, 1, 1, 2, 2])
    choice = choose_threshold(sig, y)
    assert choice.threshold == 0.006
    assert [row["mixed_images"] for row in choice.table][-1] > 0  # 0.008 mixes A and B, and the search stops
    # A contest whose near twins carry different classes links nothing: aggregation is then the identity.
    none = choose_threshold(sig[:2], np.array([0, 1]))
    assert none.threshold is None
    averager = SubjectAverage().fit(sig[:2], np.array([0, 1]))
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_array_equal(averager.transform(proba, sig[:2]), proba)


def _synthetic_run(contest: Path, runs: Path, name: str = "cnn") -> Run:
    """A finished run over the contest's real image files, with made-up probabilities (no training)."""
    index = index_contest(contest)
    train, test = index.train, index.test
    classes = sorted(train["label"].unique())
    y = train["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    rng = np.random.default_rng(0)
    oof = rng.dirichlet(np.ones(len(classes)), len(train))
    return Run.load(save_run(runs / name, name=name, kind="model", classes=classes, ids=train["id"].to_numpy(),
                             y=y, folds=np.arange(len(train)) % 2, oof=oof,
                             test=rng.dirichlet(np.ones(len(classes)), len(test)), test_ids=test["id"].to_numpy(),
                             recipe_hash="h", paths=train["path"].to_numpy(),
                             extra={"sample_submission": str(contest / "sample_submission.csv"),
                                    "data_root": str(contest)}))


def test_aggregate_writes_a_run_averaged_per_subject(tiny_contest: Path, tmp_path: Path) -> None:
    member = _synthetic_run(tiny_contest, tmp_path / "runs")
    out = aggregate("cnn", runs_dir=tmp_path / "runs", threshold=0.01)
    run = Run.load(out)
    assert run.name == "cnn-subjects" and run.kind == "ensemble" and run.meta["method"] == "subject-mean"
    record = run.meta["subjects"]
    assert record["threshold"] == 0.01 and record["oof_groups"] < len(member.y)  # the demo's subjects link
    # Rows of one OOF group share their probabilities and lie in one fold; the member's rows are its mean.
    frame = pd.DataFrame(run.oof).round(12).astype(str).agg("|".join, axis=1)
    shared = frame.duplicated(keep=False)
    assert shared.any()
    for _, rows in frame[shared].groupby(frame[shared]):
        assert len(set(member.folds[rows.index])) == 1
        np.testing.assert_allclose(run.oof[rows.index[0]], member.oof[rows.index].mean(axis=0))
    np.testing.assert_allclose(run.oof.sum(axis=1), 1, atol=1e-9)
    assert run.test.shape == member.test.shape and not np.allclose(run.test, member.test)
    assert json.loads((out / "run.json").read_text())["member_macro_f1"] == {"cnn": pytest.approx(
        record["oof_macro_f1_before"])}


def test_aggregate_refuses_bad_input_with_one_line(tiny_contest: Path, tmp_path: Path) -> None:
    _synthetic_run(tiny_contest, tmp_path / "runs")
    with pytest.raises(CompetitionError, match="same name as the run"):
        aggregate("cnn", name="cnn", runs_dir=tmp_path / "runs")
    with pytest.raises(CompetitionError, match="--threshold: expected a signature distance between 0 and 2, got 5"):
        aggregate("cnn", runs_dir=tmp_path / "runs", threshold=5.0)
    done = cli("aggregate", "cnn", "--runs", tmp_path / "runs", "--data", tmp_path / "gone", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "gone" in done.stderr


def test_oof_groups_never_use_their_own_fold_labels() -> None:
    """Each fold's averaging threshold comes from the other folds' labels: changing a fold's labels leaves
    that fold's groups as they were (issue "Know the test": the threshold was chosen on every label)."""
    from competition.data.similarity import signatures
    from competition.subjects import SubjectAverage

    rng = np.random.default_rng(3)
    bases = rng.uniform(0, 255, (30, 16, 16))
    images = np.clip(np.repeat(bases, 4, axis=0) + rng.normal(0, 1.5, (120, 16, 16)), 0, 255).astype(np.uint8)
    sig = signatures(images)
    y = np.repeat(rng.integers(0, 3, 30), 4)
    folds = np.repeat(np.arange(30) % 4, 4)  # a subject's images in one fold
    groups = SubjectAverage().oof_groups(sig, y, folds)
    other = y.copy()
    other[folds == 0] = (other[folds == 0] + 1) % 3
    again = SubjectAverage().oof_groups(sig, other, folds)
    np.testing.assert_array_equal(groups[folds == 0], again[folds == 0])
    assert len(np.unique(groups)) < len(groups)  # images of one subject in one fold are averaged together
