"""Class balancing: every mode on numpy labels, and on a tiny imbalanced problem that rare-class recall rises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.balance import make_balance
from competition.errors import CompetitionError
from competition.recipe import BalanceConfig, load_recipe

CLASSES = ["common", "rare"]
Y = np.array([0] * 90 + [1] * 10)


def test_class_weight_balanced_and_given() -> None:
    balanced = make_balance(BalanceConfig(method="class_weight"), Y, CLASSES).class_weight
    assert balanced == pytest.approx({0: 100 / (2 * 90), 1: 100 / (2 * 10)})
    given = make_balance(BalanceConfig(method="class_weight", weights={"common": 1, "rare": 3}), Y, CLASSES)
    assert given.class_weight == {0: 1.0, 1: 3.0}
    with pytest.raises(CompetitionError, match="recipe.balance.weights: 'rarest' is not a class"):
        make_balance(BalanceConfig(method="class_weight", weights={"common": 1, "rarest": 3}), Y, CLASSES)


@pytest.mark.parametrize(("power", "rare_share"), [(0.0, 0.5), (1.0, 0.1), (0.5, 10**0.5 / (90**0.5 + 10**0.5))])
def test_oversample_follows_a_power_of_class_frequency(power: float, rare_share: float) -> None:
    balance = make_balance(BalanceConfig(method="oversample", power=power), Y, CLASSES)
    rng = np.random.default_rng(0)
    first, second = balance.resample(rng), balance.resample(rng)
    assert abs(len(first) - len(Y)) <= 2
    assert np.mean(Y[first] == 1) == pytest.approx(rare_share, abs=0.02)
    assert not np.array_equal(first, second)  # redrawn each epoch


def test_focal_loss_matches_its_formula() -> None:
    balance = make_balance(BalanceConfig(method="focal", gamma=2.0, alpha={"common": 0.25, "rare": 2.0}), Y, CLASSES)
    proba = np.array([[0.9, 0.1], [0.3, 0.7]], dtype=np.float32)
    expected = [-0.25 * (0.1**2) * np.log(0.9), -2.0 * (0.3**2) * np.log(0.7)]
    values = np.asarray(balance.loss.call(np.array([0, 1]), proba))
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    default = make_balance(BalanceConfig(method="focal"), Y, CLASSES).loss
    assert default.alpha == pytest.approx([100 / 180, 100 / 20])


def _imbalanced_contest(root: Path) -> Path:
    """A rare class only slightly brighter on average than a common one, with much overlap: trained without
    balancing, the model (rightly, for accuracy) almost never predicts the rare class."""
    rng = np.random.default_rng(0)
    for name, count, mean in (("common", 160, 110.0), ("rare", 16, 125.0)):
        (root / "train" / name).mkdir(parents=True)
        for i in range(count):
            level = rng.normal(mean, 20)  # the per-image brightness carries the (weak) class signal
            pixels = np.clip(rng.normal(level, 4, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "train" / name / f"{name}{i}.png")
    (root / "test").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "test" / "t0.png")
    (root / "sample_submission.csv").write_text("id,label\nt0,common\n")
    return root


@pytest.mark.slow
def test_balancing_raises_rare_class_recall(tmp_path: Path) -> None:
    from competition.runs import Run
    from competition.training import train_run

    contest = _imbalanced_contest(tmp_path / "contest")
    recall = {}
    for method in ("none", "class_weight", "oversample"):
        recipe = load_recipe(None, [f"name={method}", "data.image_size=8", "model.filters=[4]", "model.head.dense=[]",
                                    "model.head.dropout=0", f"balance.method={method}", "train.phases.0.epochs=20",
                                    "train.phases.0.learning_rate=0.01", "cv.folds=2"])
        run = Run.load(train_run(recipe, tmp_path / "runs", data_root=contest, deterministic=True))
        pred = run.oof.argmax(axis=1)
        recall[method] = float(np.mean(pred[run.y == 1] == 1))
    assert recall["class_weight"] >= recall["none"] + 0.18, recall  # at least 3 more of the 16 rare images
    assert recall["oversample"] >= recall["none"] + 0.18, recall
