"""A phase's optimizer: the recipe's optimizer by name, its weight decay, its learning-rate schedule over the
phase's steps, and the exponential moving average (EMA) of the weights that Keras's optimizers keep."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from competition.recipe import OPTIMIZERS, PhaseConfig

# The share of a phase's steps that warm up when the recipe gives no `warmup`, by schedule.
DEFAULT_WARMUP = {"cosine": 0.0, "one_cycle": 0.3}
ONE_CYCLE_DIV = 25.0  # one_cycle starts at learning_rate / 25 (PyTorch's OneCycleLR and fastai's default)
ONE_CYCLE_FINAL_DIV = 1e4  # and ends at learning_rate / 25 / 1e4


@keras.saving.register_keras_serializable(package="competition")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle learning rate (Smith & Topin 2019, "Super-convergence"), as PyTorch's OneCycleLR with
    anneal_strategy="cos": cosine from `peak / div` up to `peak` over steps 0..`warmup_steps`, then cosine down
    to `peak / div / final_div` at step `total_steps` (held there after). Steps count optimizer updates.

    Raises ValueError when total_steps < 1 or warmup_steps is not in 0..total_steps."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, div: float = ONE_CYCLE_DIV,
                 final_div: float = ONE_CYCLE_FINAL_DIV) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"one cycle of {total_steps} steps cannot warm up over {warmup_steps}")
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.div, self.final_div = float(div), float(final_div)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        start, end = self.peak / self.div, self.peak / self.div / self.final_div

        def cosine(first: float, last: float, fraction: Any) -> Any:  # first at fraction 0, last at 1
            return last + (first - last) * 0.5 * (1.0 + ops.cos(math.pi * ops.clip(fraction, 0.0, 1.0)))

        down = cosine(self.peak, end, (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1))
        if self.warmup_steps == 0:
            return down
        return ops.where(step < self.warmup_steps, cosine(start, self.peak, step / self.warmup_steps), down)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "div": self.div, "final_div": self.final_div}


def warmup_share(phase: PhaseConfig) -> float:
    """The share of a scheduled ("cosine", "one_cycle") phase's steps that warm up: its `warmup`, else the
    schedule's default (DEFAULT_WARMUP)."""
    return phase.warmup if phase.warmup is not None else DEFAULT_WARMUP[phase.schedule]


def learning_rate(phase: PhaseConfig, steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The phase's learning rate over its `steps` optimizer updates (epochs x batches per epoch): the float
    `phase.learning_rate` (schedule "constant"), keras's CosineDecay to 0 after a linear warm-up from 0 over
    `warmup` of the steps ("cosine"), or OneCycle ("one_cycle"). An early-stopped phase ends before the end of
    its schedule."""
    if phase.schedule == "constant":
        return phase.learning_rate
    steps = max(int(steps), 1)
    share = warmup_share(phase)
    warm = min(int(round(share * steps)), steps - 1)
    if phase.schedule == "one_cycle":
        return OneCycle(phase.learning_rate, steps, warm)
    if warm == 0:
        return keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps=steps)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - warm, warmup_target=phase.learning_rate,
                                                  warmup_steps=warm)


def patience_start(phase: PhaseConfig) -> int:
    """The first epoch (0-based) of the phase that early stopping watches: 0 for a constant learning rate; for
    "cosine" and "one_cycle", the first epoch that starts at or after the midpoint of the decay (after the
    warm-up), where the rate is about half its peak. While the rate is high, validation macro F1 is expected to
    fall, and stopping then ends the fold before the schedule anneals: on Alzheimer, one_cycle over 20 epochs
    with patience 8 stopped folds after their 11th or 12th epoch, keeping their 3rd or 4th
    (docs/alzheimer-ablation.md). With patience p, a phase of E epochs can stop early only when
    patience_start + p < E."""
    if phase.schedule == "constant":
        return 0
    share = warmup_share(phase)
    return min(math.ceil(round(phase.epochs * (share + (1 - share) / 2), 6)), phase.epochs - 1)


def make_optimizer(name: str, learning_rate: Any, *, weight_decay: float | None = None,
                   ema: float | None = None) -> Any:
    """A Keras optimizer by its recipe name (recipe.OPTIMIZERS), with a float learning rate or a schedule.
    `weight_decay` (None: the optimizer's default) is Keras's decoupled decay, scaled by the learning rate;
    `ema` (a momentum in (0, 1), None: off) makes the optimizer keep an exponential moving average of the
    trainable weights (use_ema), which engine.callbacks.ema_callbacks swaps in for validation."""
    options: dict[str, Any] = {"learning_rate": learning_rate}
    if weight_decay is not None:
        options["weight_decay"] = weight_decay
    if ema is not None:
        options.update(use_ema=True, ema_momentum=ema)
    return getattr(keras.optimizers, OPTIMIZERS[name])(**options)


def phase_optimizer(phase: PhaseConfig, steps: int, ema: float | None) -> Any:
    """The optimizer of one recipe phase of `steps` optimizer updates, with the recipe's `train.ema`."""
    return make_optimizer(phase.optimizer, learning_rate(phase, steps), weight_decay=phase.weight_decay, ema=ema)
