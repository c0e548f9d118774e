"""Regularisation a recipe declares: mixup and cutmix per batch, label smoothing, AdamW weight decay, cosine and
one-cycle learning rates, and an exponential moving average (EMA) of the weights used for validation."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from competition.balance import make_balance, soft_loss
from competition.engine import fold
from competition.engine.batches import TrainBatches
from competition.engine.fold import FoldData, fit_fold, fit_phase
from competition.engine.mixing import Mixer, cutmix_box
from competition.engine.optim import learning_rate, patience_start
from competition.errors import CompetitionError
from competition.model.backbones import build_model
from competition.recipe import BalanceConfig, MixConfig, PhaseConfig, load_recipe

TINY = ["data.image_size=16", "model.filters=[4]", "model.head.dense=[]", "model.head.dropout=0", "train.batch_size=16"]
CLASSES = list("abcd")


def _images(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8), np.arange(n) % 4


def _one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(4, dtype=np.float32)[y]


def _recipe_error(overrides: list[str]) -> str:
    with pytest.raises(CompetitionError) as caught:
        load_recipe(None, overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- recipe keys


def test_new_keys_are_checked_and_left_out_of_the_hash_at_their_defaults() -> None:
    assert "recipe.train.mixup.alpha: input should be greater than 0, got 0" in _recipe_error(["train.mixup={alpha: 0}"])
    assert "recipe.train.cutmix.p: input should be less than or equal to 1, got 1.5" in _recipe_error(
        ["train.cutmix.p=1.5"])
    assert "recipe.train.label_smoothing: input should be less than 0.5, got 0.5" in _recipe_error(
        ["train.label_smoothing=0.5"])
    assert "recipe.train.ema: input should be less than 1, got 1" in _recipe_error(["train.ema=1"])
    assert "recipe.train.phases[0].weight_decay: input should be greater than or equal to 0, got -0.1" in (
        _recipe_error(["train.phases.0.weight_decay=-0.1"]))
    assert "recipe.train.phases[0].schedule: input should be 'constant', 'cosine' or 'one_cycle', got 'cosin'" in (
        _recipe_error(["train.phases.0.schedule=cosin"]))
    assert ("recipe.train.reduce_lr: cannot be combined with recipe.train.phases[1].schedule 'one_cycle'"
            in _recipe_error(["train.reduce_lr={}", "train.phases=[{epochs: 2}, {schedule: one_cycle}]"]))
    assert "recipe.train.phases[0].warmup: 0.2 is used only by schedule cosine or one_cycle" in _recipe_error(
        ["train.phases.0.warmup=0.2"])
    assert "recipe.train.mixup.alpa: unknown key (did you mean 'alpha'?)" in _recipe_error(["train.mixup.alpa=1"])

    plain = load_recipe(None, ["name=x"])
    explicit = load_recipe(None, ["name=x", "train.label_smoothing=0", "train.phases.0.schedule=constant"])
    resolved = plain.resolved()["train"]
    assert not {"label_smoothing", "mixup", "cutmix", "ema"} & set(resolved)
    assert not {"weight_decay", "schedule", "warmup"} & set(resolved["phases"][0])
    assert explicit.hash() == plain.hash()
    declared = load_recipe(None, ["name=x", "train.mixup.alpha=0.4", "train.phases.0.optimizer=adamw",
                                  "train.phases.0.weight_decay=0.05", "train.phases.0.schedule=cosine"])
    assert declared.train.mixup == MixConfig(alpha=0.4, p=1.0) and declared.hash() != plain.hash()
    again = type(declared).model_validate(declared.resolved())
    assert again.hash() == declared.hash() and again.train.phases[0].weight_decay == 0.05


# ---------------------------------------------------------------- mixup and cutmix


def test_mixup_blends_images_and_labels_by_one_lambda() -> None:
    x, y = _images(16)
    weights = np.linspace(1, 2, 16, dtype=np.float32)
    mixed = Mixer(mixup=MixConfig(alpha=0.4))(x, _one_hot(y), weights, np.random.default_rng(1))
    assert mixed.method == "mixup" and 0 <= mixed.lam <= 1 and sorted(mixed.partner) == list(range(16))
    assert mixed.images.shape == x.shape and mixed.images.dtype == np.float32
    assert mixed.labels.shape == (16, 4)
    np.testing.assert_allclose(mixed.labels.sum(axis=1), 1, atol=1e-6)
    lam, partner = mixed.lam, mixed.partner
    np.testing.assert_allclose(mixed.images, lam * x + (1 - lam) * x[partner].astype(np.float32), rtol=1e-5)
    np.testing.assert_allclose(mixed.labels, lam * _one_hot(y) + (1 - lam) * _one_hot(y[partner]), atol=1e-6)
    np.testing.assert_allclose(mixed.weights, lam * weights + (1 - lam) * weights[partner], rtol=1e-6)
    lams = [Mixer(mixup=MixConfig(alpha=0.2))(x, _one_hot(y), None, np.random.default_rng(s)).lam for s in range(200)]
    assert min(lams) >= 0 and max(lams) <= 1
    assert np.mean((np.array(lams) < 0.1) | (np.array(lams) > 0.9)) > 0.5  # Beta(0.2, 0.2) piles up at the ends


def test_cutmix_pastes_a_box_whose_area_is_one_minus_lambda() -> None:
    x, y = _images(16)
    for seed in range(20):
        mixed = Mixer(cutmix=MixConfig(alpha=1.0))(x, _one_hot(y), None, np.random.default_rng(seed))
        top, bottom, left, right = mixed.box
        assert 0 <= top <= bottom <= 16 and 0 <= left <= right <= 16
        assert mixed.lam == pytest.approx(1 - (bottom - top) * (right - left) / 256)
        inside = np.zeros((16, 16), bool)
        inside[top:bottom, left:right] = True
        np.testing.assert_array_equal(mixed.images[:, inside], x[mixed.partner][:, inside])
        np.testing.assert_array_equal(mixed.images[:, ~inside], x[:, ~inside])
        own = mixed.labels[np.arange(16), y]
        changed = y != y[mixed.partner]
        np.testing.assert_allclose(own[changed], mixed.lam, atol=1e-6)
        np.testing.assert_allclose(mixed.labels.sum(axis=1), 1, atol=1e-6)
    top, bottom, left, right = cutmix_box((100, 100), 0.75, np.random.default_rng(0))
    assert (bottom - top) * (right - left) <= 2500  # sides sqrt(0.25) of the image's, clipped at the border


def test_mixing_draws_p_and_switches_between_the_two() -> None:
    x, y = _images(8)
    both = Mixer(mixup=MixConfig(alpha=1.0, p=0.5), cutmix=MixConfig(alpha=1.0, p=0.5))
    methods = [both(x, _one_hot(y), None, np.random.default_rng(s)).method for s in range(400)]
    assert 70 < methods.count("mixup") < 130 and 70 < methods.count("cutmix") < 130  # 0.5 x 0.5 each
    unmixed = both(x, _one_hot(y), None, np.random.default_rng(methods.index(None)))
    np.testing.assert_array_equal(unmixed.images, x)
    np.testing.assert_array_equal(unmixed.labels, _one_hot(y))


def test_mixed_batches_are_deterministic_for_their_seed() -> None:
    x, y = _images(32)
    mixer = Mixer(mixup=MixConfig(alpha=1.0), cutmix=MixConfig(alpha=1.0))
    make = lambda seed: TrainBatches(x, y, 8, None, None, {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, seed, workers=1,  # noqa: E731
                                     n_classes=4, mixer=mixer)
    first, second, other = make(5), make(5), make(6)
    images, labels, weights = first[1]
    assert images.shape == (8, 16, 16, 1) and labels.shape == (8, 4) and weights.shape == (8,)
    np.testing.assert_allclose(labels.sum(axis=1), 1, atol=1e-6)
    assert weights.min() >= 1 and weights.max() <= 4
    for a, b in zip(first[1], second[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1][0], other[1][0])
    batch = first[1]
    first.on_epoch_end()  # the next epoch draws anew
    assert not all(np.array_equal(a, b) for a, b in zip(batch, first[1], strict=True))


@pytest.mark.slow
def test_mixing_is_off_in_phases_without_augmentation(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _images()
    calls = []
    real = Mixer.__call__
    monkeypatch.setattr(Mixer, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
    for augment, mixed in ((False, False), (True, True)):
        recipe = load_recipe(None, [*TINY, "train.mixup={alpha: 0.4}",
                                    f"train.phases=[{{epochs: 1, augment: {str(augment).lower()}}}]"])
        model = build_model(recipe.model, (16, 16, 1), 4)
        calls.clear()
        fit_phase(model, FoldData(recipe, CLASSES, x, y, x[:8], y[:8], seed=1), 0)
        assert bool(calls) is mixed
        assert (model.loss == "sparse_categorical_crossentropy") is not mixed  # hard labels: today's sparse loss


# ---------------------------------------------------------------- losses on soft targets


def test_label_smoothing_changes_the_loss_as_keras_does(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _images()
    recipe = load_recipe(None, [*TINY, "train.label_smoothing=0.1", "train.phases.0.epochs=1",
                                "balance.method=class_weight"])
    model = build_model(recipe.model, (16, 16, 1), 4)
    seen = {}
    real_fit = model.fit
    monkeypatch.setattr(model, "fit", lambda *a, **k: seen.update(k, y=a[1]) or real_fit(*a, **k))
    y_skewed = np.array([0] * 30 + [1, 2, 3] * 6)
    fit_phase(model, FoldData(recipe, CLASSES, x, y_skewed, x[:8], y[:8], seed=1), 0)
    np.testing.assert_array_equal(seen["y"], _one_hot(y_skewed))  # one-hot targets, class weights as sample weights
    expected_weights = make_balance(recipe.balance, y_skewed, CLASSES).class_weight
    np.testing.assert_allclose(seen["sample_weight"], [expected_weights[c] for c in y_skewed], rtol=1e-6)

    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1]], dtype=np.float32)
    targets = _one_hot(np.array([0, 1]))
    smoothed = targets * 0.9 + 0.1 / 4
    manual = -(smoothed * np.log(proba)).sum(axis=1).mean()
    assert float(model.loss(targets, proba)) == pytest.approx(manual, rel=1e-5)
    assert float(keras.losses.CategoricalCrossentropy()(targets, proba)) < manual - 0.05


def test_focal_loss_takes_soft_targets_with_its_alpha() -> None:
    y = np.array([0] * 30 + [1] * 10 + [2] * 5 + [3] * 3)
    sparse = make_balance(BalanceConfig(method="focal", gamma=2.0), y, CLASSES).loss
    soft = make_balance(BalanceConfig(method="focal", gamma=2.0), y, CLASSES, soft_labels=True).loss
    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.1, 0.1, 0.2, 0.6]], dtype=np.float32)
    labels = np.array([0, 1, 3])
    np.testing.assert_allclose(np.asarray(soft.call(_one_hot(labels), proba)),
                               np.asarray(sparse.call(labels, proba)), rtol=1e-5)
    mixed = 0.3 * _one_hot(labels) + 0.7 * _one_hot(np.array([2, 2, 0]))
    alpha = np.array(sparse.alpha)
    manual = -(alpha * mixed * (1 - proba) ** 2 * np.log(proba)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(soft.call(mixed, proba)), manual, rtol=1e-5)
    with pytest.raises(ValueError, match="no soft-label form"):
        soft_loss(keras.losses.Hinge())


# ---------------------------------------------------------------- optimizer and learning rate


@pytest.mark.slow
def test_adamw_weight_decay_and_schedule_reach_the_compiled_optimizer() -> None:
    x, y = _images()
    recipe = load_recipe(None, [*TINY, "train.phases=[{epochs: 2, optimizer: adamw, weight_decay: 0.01, "
                                       "schedule: cosine, learning_rate: 0.01}]"])
    model = build_model(recipe.model, (16, 16, 1), 4)
    data = FoldData(recipe, CLASSES, x, y, x[:8], y[:8], seed=1)
    fit_phase(model, data, 0)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == pytest.approx(0.01)
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay" and schedule["config"]["decay_steps"] == 2 * 3  # 3 batches
    rates = [row["learning_rate"] for row in data.state.history]
    assert rates[0] == pytest.approx(0.01) and rates[1] == pytest.approx(0.005, rel=1e-4)  # cosine, half-way
    adam = load_recipe(None, [*TINY, "train.phases.0.epochs=1"])
    model = build_model(adam.model, (16, 16, 1), 4)
    fit_phase(model, FoldData(adam, CLASSES, x, y, x[:8], y[:8], seed=1), 0)
    assert isinstance(model.optimizer, keras.optimizers.Adam) and model.optimizer.weight_decay is None


def _rate(phase: PhaseConfig, steps: int, step: int) -> float:
    return float(np.asarray(learning_rate(phase, steps)(step)))


def test_cosine_and_one_cycle_rates_at_start_peak_and_end() -> None:
    assert learning_rate(PhaseConfig(learning_rate=0.1), 100) == 0.1
    cosine = PhaseConfig(learning_rate=0.1, schedule="cosine")
    assert [_rate(cosine, 100, s) for s in (0, 50, 100)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)
    warm = PhaseConfig(learning_rate=0.1, schedule="cosine", warmup=0.2)
    assert [_rate(warm, 100, s) for s in (0, 10, 20, 60, 100)] == pytest.approx([0, 0.05, 0.1, 0.05, 0], abs=1e-7)
    cycle = PhaseConfig(learning_rate=0.1, schedule="one_cycle")  # warm-up 0.3 of the steps
    rates = [_rate(cycle, 100, s) for s in range(101)]
    assert rates[0] == pytest.approx(0.1 / 25) and rates[30] == pytest.approx(0.1) and max(rates) == rates[30]
    assert rates[15] == pytest.approx((0.1 / 25 + 0.1) / 2, rel=1e-5)  # cosine half-way up
    assert rates[65] == pytest.approx((0.1 + 0.1 / 25 / 1e4) / 2, rel=1e-5)  # and half-way down
    assert rates[100] == pytest.approx(0.1 / 25 / 1e4)
    assert np.all(np.diff(rates[:31]) > 0) and np.all(np.diff(rates[30:]) < 0)
    short = PhaseConfig(learning_rate=0.1, schedule="one_cycle", warmup=0.5)
    assert _rate(short, 10, 5) == pytest.approx(0.1) and not math.isnan(_rate(short, 1, 0))


def test_early_stopping_watches_a_scheduled_phase_only_once_its_rate_has_come_down() -> None:
    assert patience_start(PhaseConfig(epochs=20)) == 0
    assert patience_start(PhaseConfig(epochs=20, schedule="one_cycle")) == 13  # warm-up 0.3, then half the decay
    assert patience_start(PhaseConfig(epochs=10, schedule="cosine")) == 5
    assert patience_start(PhaseConfig(epochs=10, schedule="cosine", warmup=0.2)) == 6
    assert patience_start(PhaseConfig(epochs=1, schedule="one_cycle")) == 0
    # The watched epoch is where the schedule itself is down to about half its peak, and the epoch before is not.
    for phase in (PhaseConfig(epochs=20, schedule="one_cycle", learning_rate=0.1),
                  PhaseConfig(epochs=7, schedule="one_cycle", warmup=0.1, learning_rate=0.1),
                  PhaseConfig(epochs=10, schedule="cosine", warmup=0.2, learning_rate=0.1),
                  PhaseConfig(epochs=9, schedule="cosine", learning_rate=0.1)):
        start, steps_per_epoch = patience_start(phase), 10
        at_start = _rate(phase, phase.epochs * steps_per_epoch, start * steps_per_epoch)
        before = _rate(phase, phase.epochs * steps_per_epoch, (start - 1) * steps_per_epoch)
        assert at_start <= 0.05 * (1 + 1e-4) and before > 0.05, phase


@pytest.mark.parametrize(("schedule", "epochs_trained"), [("constant", 2), ("one_cycle", 6)])
@pytest.mark.slow
def test_patience_on_a_falling_score(monkeypatch: pytest.MonkeyPatch, schedule: str, epochs_trained: int) -> None:
    # Validation macro F1 falls every epoch: a constant rate stops after patience 1 (epochs 1 and 2); one_cycle
    # over 6 epochs watches only from epoch 5 (patience_start 4), so it trains to its end.
    scores = iter(np.linspace(0.9, 0.1, 6))
    monkeypatch.setattr("competition.engine.callbacks.macro_f1", lambda y, proba: float(next(scores)))
    x, y = _images()
    recipe = load_recipe(None, [*TINY, "train.patience=1",
                                f"train.phases=[{{epochs: 6, schedule: {schedule}, learning_rate: 0.01}}]"])
    data = FoldData(recipe, CLASSES, x, y, x[:8], y[:8], seed=1)
    fit_phase(build_model(recipe.model, (16, 16, 1), 4), data, 0)
    assert len(data.state.history) == epochs_trained


# ---------------------------------------------------------------- EMA


@pytest.mark.slow
def test_validation_and_kept_weights_are_the_moving_average(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _images()
    recipe = load_recipe(None, [*TINY, "train.ema=0.8", "train.phases.0.epochs=2",
                                "train.phases.0.learning_rate=0.05"])
    model = build_model(recipe.model, (16, 16, 1), 4)
    trained_after_batch, at_epoch_begin, validated = [], [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            at_epoch_begin.append([v.numpy().copy() for v in model.trainable_variables])

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            trained_after_batch.append([v.numpy().copy() for v in model.trainable_variables])

    real = fold.predict_proba
    monkeypatch.setattr(fold, "predict_proba", lambda m, images: validated.append(
        ([v.numpy().copy() for v in model.trainable_variables], model.get_weights())) or real(m, images))
    data = FoldData(recipe, CLASSES, x, y, x[:8], y[:8], seed=1)
    fit_phase(model, data, 0, callbacks=[Record()], steps_per_execution=1)  # Record reads every step

    assert len(trained_after_batch) == 6 and len(validated) == 2  # 3 batches of 16 per epoch
    average = trained_after_batch[0]  # Keras's EMA starts at the first step's weights
    manual = []
    for step, weights in enumerate(trained_after_batch):
        if step:
            average = [0.8 * a + 0.2 * w for a, w in zip(average, weights, strict=True)]
        if step % 3 == 2:
            manual.append(average)
    for (seen, _), expected, raw in zip(validated, manual, trained_after_batch[2::3], strict=True):
        for got, want, trained in zip(seen, expected, raw, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert any(not np.allclose(got, trained) for got, trained in zip(seen, raw, strict=True))
    # Training goes on from the trained weights, not the average (Keras swaps them by sums: float rounding) ...
    for got, trained in zip(at_epoch_begin[1], trained_after_batch[2], strict=True):
        np.testing.assert_allclose(got, trained, rtol=1e-6, atol=1e-7)
    # ... the kept weights are the validated (averaged) ones, and the phase ends with the average in the model.
    best = validated[data.state.best_epoch - 1][1]
    for kept, want in zip(data.state.best_weights, best, strict=True):
        np.testing.assert_array_equal(kept, want)
    for got, want in zip(model.trainable_variables, manual[-1], strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- all of it


@pytest.mark.slow
def test_a_fold_with_every_lever_on_gives_finite_probabilities() -> None:
    x, y = _images(40, seed=2)
    recipe = load_recipe(None, [
        "data.image_size=16", "model.filters=[4, 8]", "model.head.dense=[8]", "train.batch_size=8",
        "augment=[{HorizontalFlip: {p: 0.5}}]", "balance.method=focal", "train.label_smoothing=0.1",
        "train.mixup={alpha: 0.4}", "train.cutmix={alpha: 1.0, p: 0.8}", "train.ema=0.9",
        "train.phases=[{epochs: 1, optimizer: adamw, weight_decay: 0.01, schedule: one_cycle}, "
        "{epochs: 1, schedule: cosine, warmup: 0.5}]"])
    result = fit_fold(recipe, x, y, np.arange(0, 40, 4), x[:5], CLASSES, 0)
    assert result.oof.shape == (10, 4) and result.test.shape == (5, 4)
    assert np.isfinite(result.oof).all() and np.isfinite(result.test).all()
    np.testing.assert_allclose(result.test.sum(axis=1), 1, atol=1e-5)
    assert len(result.history) == 2 and np.isfinite(result.history["loss"]).all()
    assert result.history["learning_rate"].iloc[1] == 0.0  # the second phase starts its cosine warm-up from 0


@pytest.mark.slow
def test_keep_last_keeps_the_last_epoch_and_epoch_selection_says_what_best_adds(tmp_path) -> None:  # noqa: ANN001
    """train.keep: last picks the epoch without looking at the rows the fold predicts; the run says how much
    picking the best epoch on them can flatter the OOF (issue "Know the test")."""
    import pandas as pd

    from competition.runs.prepare import epoch_selection

    x, y = _images()
    val = np.arange(0, 48, 4)
    for keep in ("best", "last"):
        recipe = load_recipe(None, [*TINY, "train.phases.0.epochs=4", "augment=[]", f"train.keep={keep}"])
        result = fit_fold(recipe, x, y, val, x[:4], CLASSES, fold=0)
        scores = result.history["val_macro_f1"].to_numpy()
        if keep == "last":
            assert result.best_epoch == 4 and result.best_score == pytest.approx(scores[-1])
        else:
            assert result.best_score == pytest.approx(scores.max())
    for k, (best, last) in enumerate(((0.6, 0.5), (0.7, 0.7))):
        (tmp_path / f"fold_{k}").mkdir()
        pd.DataFrame({"epoch": [1, 2], "val_macro_f1": [best, last]}).to_csv(tmp_path / f"fold_{k}" / "history.csv")
    selection = epoch_selection(tmp_path, [{"best_macro_f1": 0.6}, {"best_macro_f1": 0.7}])
    assert selection["optimism"] == pytest.approx(0.05) and "+0.0500" in selection["line"]
