import json

import numpy as np
import pytest
import yaml

from competition.ensemble import (
    ENSEMBLERS,
    CaruanaEnsembler,
    GeometricEnsembler,
    MeanEnsembler,
    RankEnsembler,
    StackingEnsembler,
    WeightedEnsembler,
    build_ensemble,
    cross_val_oof,
    ensemble_score,
    make_ensembler,
)
from competition.errors import CompetitionError
from competition.metrics import macro_f1
from competition.runs import Run, save_run

CLASSES = ["a", "b", "c"]


def _members(m: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """m members of varying quality on one labelled set, plus 5 folds."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    P = []
    for j in range(m):
        logits = rng.normal(0, 1.0, (n, k)) + (0.3 + 0.4 * j) * np.eye(k)[y]
        P.append(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    return np.stack(P), y, rng.permutation(n) % 5


def test_registry_names():
    assert {"mean", "weighted", "rank", "geometric", "caruana", "stacking"} <= set(ENSEMBLERS)
    assert make_ensembler("caruana", "log_loss").metric == "log_loss"
    with pytest.raises(CompetitionError, match="unknown 'median'; known: .*caruana"):
        make_ensembler("median")
    with pytest.raises(CompetitionError, match="unknown 'auc'"):
        make_ensembler("mean", "auc")


def test_mean_rank_geometric_hand_computed():
    P = np.array(
        [
            [[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]],
            [[0.9, 0.1], [0.3, 0.7], [0.1, 0.9]],
        ]
    )
    y = np.array([0, 1, 1])
    np.testing.assert_allclose(MeanEnsembler().fit(P, y).predict_proba(P), [[0.75, 0.25], [0.25, 0.75], [0.3, 0.7]])
    # Ranks over rows /3: member 0 class 0: [3,1,2]/3, class 1: [1,3,2]/3; member 1 class 0: [3,2,1]/3, class 1: [1,2,3]/3.
    # Mean: class 0 [3, 1.5, 1.5]/3, class 1 [1, 2.5, 2.5]/3 -> rows normalised by 4/3.
    np.testing.assert_allclose(RankEnsembler().fit(P, y).predict_proba(P), [[0.75, 0.25], [0.375, 0.625], [0.375, 0.625]])
    g = np.array([[np.sqrt(0.54), np.sqrt(0.04)], [np.sqrt(0.06), np.sqrt(0.56)], [np.sqrt(0.05), np.sqrt(0.45)]])
    np.testing.assert_allclose(GeometricEnsembler().fit(P, y).predict_proba(P), g / g.sum(axis=1, keepdims=True))


def test_geometric_clips_zeros():
    P = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    out = GeometricEnsembler(eps=1e-4).predict_proba(P)
    assert np.all(np.isfinite(out)) and out[0, 1] > 0
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


@pytest.mark.parametrize("metric", ["macro_f1", "log_loss"])
@pytest.mark.parametrize("seed", range(6))
def test_caruana_never_below_best_member_in_sample(metric, seed):
    P, y, _ = _members(4, 150, 3, seed)
    score = ensemble_score(metric)
    model = CaruanaEnsembler(metric=metric, n_iter=20).fit(P, y)
    best_member = max(score(y, p) for p in P)
    assert score(y, model.predict_proba(P)) >= best_member
    assert model.weights_.sum() == pytest.approx(1.0) and (model.weights_ >= 0).all()
    np.testing.assert_allclose(model.weights_, model.counts_ / model.counts_.sum())


def test_weighted_never_below_mean_and_weights_on_simplex():
    P, y, _ = _members(3, 200, 3, 7)
    for metric in ("macro_f1", "log_loss"):
        score = ensemble_score(metric)
        model = WeightedEnsembler(metric=metric).fit(P, y)
        assert (model.weights_ >= 0).all() and model.weights_.sum() == pytest.approx(1.0)
        assert score(y, model.predict_proba(P)) >= score(y, P.mean(axis=0)) - 1e-12
    assert WeightedEnsembler(metric="log_loss").fit(P, y).weights_.argmax() == 2  # best member weighs most


def test_stacking_oof_is_honest():
    P, y, folds = _members(3, 200, 3, 11)
    model = StackingEnsembler().fit(P, y)
    in_sample = model.predict_proba(P)
    honest = cross_val_oof(model, P, y, folds)
    assert in_sample.shape == honest.shape == (200, 3)
    np.testing.assert_allclose(honest.sum(axis=1), 1.0)
    assert not np.allclose(in_sample, honest, atol=1e-3)
    # Each fold's honest rows equal a model that never saw them.
    held = folds == 0
    alone = StackingEnsembler().fit(P[:, ~held], y[~held]).predict_proba(P[:, held])
    np.testing.assert_allclose(honest[held], alone)


def _save(tmp_path, name, P_oof, P_test, y, folds, recipe_hash="h"):
    return save_run(
        tmp_path / name,
        name=name,
        kind="model",
        classes=CLASSES,
        ids=np.array([f"tr{i}" for i in range(len(y))]),
        y=y,
        folds=folds,
        oof=P_oof,
        test=P_test,
        test_ids=np.array([f"te{i}" for i in range(P_test.shape[0])]),
        recipe_hash=recipe_hash,
        scheme="s",
    )


@pytest.fixture
def runs(tmp_path):
    P, y, folds = _members(3, 120, 3, 5)
    T, _, _ = _members(3, 30, 3, 6)
    return [Run.load(_save(tmp_path, f"m{j}", P[j], T[j], y, folds)) for j in range(3)]


@pytest.mark.parametrize("method", ["mean", "caruana", "stacking"])
def test_build_ensemble_round_trip(tmp_path, runs, method):
    path = build_ensemble(runs, method, "ens", tmp_path)
    ens = Run.load(path)
    assert ens.kind == "ensemble" and ens.name == "ens" and ens.classes == CLASSES
    np.testing.assert_array_equal(ens.y, runs[0].y)
    np.testing.assert_array_equal(ens.folds, runs[0].folds)
    np.testing.assert_array_equal(ens.test_ids, runs[0].test_ids)
    assert ens.oof.shape == (120, 3) and ens.test.shape == (30, 3)
    meta = json.loads((path / "run.json").read_text())
    assert meta["members"] == ["m0", "m1", "m2"] and meta["method"] == method
    assert meta["oof_is"] == ("unfitted" if method == "mean" else "nested-cv")
    assert meta["oof_macro_f1"] == pytest.approx(macro_f1(ens.y, ens.oof), abs=1e-6)
    recipe = yaml.safe_load((path / "recipe.yaml").read_text())
    assert recipe["method"] == method and [m["name"] for m in recipe["members"]] == ["m0", "m1", "m2"]
    if method == "mean":
        np.testing.assert_allclose(ens.test, np.mean([r.test for r in runs], axis=0), atol=1e-6)
        assert meta["weights"] == pytest.approx([1 / 3] * 3)
    if method == "stacking":
        assert meta["weights"] is None
        assert meta["in_sample_macro_f1"] != meta["oof_macro_f1"]


def test_build_ensemble_refuses_different_folds(tmp_path, runs):
    other = Run.load(
        _save(tmp_path, "shifted", runs[0].oof, runs[0].test, runs[0].y, (runs[0].folds + 1) % 5)
    )
    with pytest.raises(CompetitionError, match="same folds"):
        build_ensemble([runs[0], other], "mean", "ens", tmp_path)
    assert not (tmp_path / "ens").exists()


@pytest.mark.parametrize("bad", ["../out", "a/b", "/tmp/x", "..", "", "."])
def test_build_ensemble_refuses_unsafe_names(tmp_path, runs, bad):
    with pytest.raises(CompetitionError, match="ensemble name"):
        build_ensemble(runs, "mean", bad, tmp_path / "runs")
    assert not (tmp_path / "out").exists()


def test_build_ensemble_refuses_unknown_method_and_single_run(tmp_path, runs):
    with pytest.raises(CompetitionError, match="known: caruana, geometric, mean, rank, stacking, weighted"):
        build_ensemble(runs, "vote", "ens", tmp_path)
    with pytest.raises(CompetitionError, match="at least 2 runs, got 1"):
        build_ensemble(runs[:1], "mean", "ens", tmp_path)
    with pytest.raises(CompetitionError, match="already holds a model run"):
        build_ensemble(runs[:2], "mean", "m2", tmp_path)


def test_caruana_does_not_depend_on_the_order_members_are_named() -> None:
    """Two members with the same macro F1 (same argmax everywhere) but different confidence: the tie goes to the
    lower log loss, whichever is listed first (issue "Never touch what the user gave", kind: ambiguous answers)."""
    from competition.ensemble import CaruanaEnsembler

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    sharp = np.full((200, 3), 0.05)
    sharp[np.arange(200), y] = 0.9
    sharp[:40] = np.roll(sharp[:40], 1, axis=1)  # some mistakes, the same in both
    dull = 0.5 * sharp + 0.5 / 3  # same argmax, less confident: higher log loss on the right rows
    for order in ((sharp, dull), (dull, sharp)):
        fitted = CaruanaEnsembler(n_iter=5).fit(np.stack(order), y)
        favourite = int(np.argmax(fitted.weights_))
        assert order[favourite] is sharp
