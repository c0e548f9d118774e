"""What the user watches while a run trains: one-line notes, the live progress bar of folds and epochs on a
terminal (one line per epoch, with an ETA, in a log or a pipe), durations in words, and memory figures.
Library functions take an optional rich Console; None keeps them silent."""

from __future__ import annotations

import resource
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any


def say(console: Any, text: str) -> None:
    """Print one line to `console` (a rich Console), or nothing when it is None."""
    if console is not None:
        console.print(text)


@dataclass
class Progress:
    """Fold and epoch progress of one run. With a live rich bar (`bar`, on a terminal) the bar shows it; without
    one, `console` (a log or a pipe) gets one line per epoch::

        demo: fold 1 (2 of 5)  epoch 3/26  loss 0.912  val macro F1 0.512  best 0.530  ETA 12 min

    Folds are numbered from 0 as their folders are (`fold_1/` is "fold 1"), then their place among the run's
    folds. The ETA (time until the run's last pending fold ends) is the seconds per epoch measured so far
    (since the first fold started, start-up included) times the planned epochs left: this fold's, and every
    phase's epochs of each pending fold after it (early stopping can end sooner). Subclasses forward epochs
    elsewhere (a fold's own process sends them to its parent)."""

    bar: Any = None
    console: Any = None
    fold_task: Any = None
    epoch_task: Any = None
    fold: int = 0
    best: float = float("-inf")
    name: str = ""
    n_folds: int = 0
    folds_after: int = 0  # pending folds after the current one
    started: float | None = None  # time.perf_counter() when the first fold started
    epochs_seen: int = 0  # epochs finished since then
    metric: Any = None  # the contest metric (competition.metrics.Metric) the epochs report; None: macro F1

    def epoch(self, epoch: int, total: int, f1: float, loss: float = float("nan")) -> None:
        """Epoch `epoch` of the fold's `total` planned epochs (counted across phases, from 1) ended with
        training loss `loss` and validation score `f1` (the contest metric: macro F1 unless `metric` says)."""
        title = self.metric.title if self.metric is not None else "macro F1"
        oriented = self.metric.oriented if self.metric is not None else float  # larger is better, a loss negated
        if self.best == float("-inf") or oriented(f1) > oriented(self.best):
            self.best = f1
        self.epochs_seen += 1
        eta = self.eta(epoch, total)
        where = f"fold {self.fold} ({self.fold + 1} of {self.n_folds})" if self.n_folds else f"fold {self.fold}"
        if self.bar is not None:
            self.bar.update(self.epoch_task, completed=epoch, total=total,
                            description=f"{where} · epoch {epoch}/{total} · val {title} {f1:.3f} "
                                        f"(best {self.best:.3f}) · ETA {duration_text(eta)}")
        elif self.console is not None:
            self.console.print(f"{self.name + ': ' if self.name else ''}{where}  epoch {epoch}/{total}  "
                               f"loss {loss:.3f}  val {title} {f1:.3f}  best {self.best:.3f}  "
                               f"ETA {duration_text(eta)}", markup=False, highlight=False, soft_wrap=True)

    def eta(self, epoch: int, total: int) -> float | None:
        """Seconds until the run's last pending fold ends, or None before the first epoch (see the class)."""
        if self.started is None or self.epochs_seen == 0:
            return None
        per_epoch = (time.perf_counter() - self.started) / self.epochs_seen
        return per_epoch * (max(total - epoch, 0) + self.folds_after * total)

    def start_folds(self, name: str, n_pending: int, n_folds: int = 0) -> None:
        """A run `name` of `n_folds` folds, `n_pending` of them to train now: add the fold and epoch bars."""
        self.name, self.n_folds, self.folds_after = name, n_folds, n_pending
        if self.bar is not None:
            self.fold_task = self.bar.add_task(f"{name}: folds", total=n_pending)
            self.epoch_task = self.bar.add_task("epochs", total=None)

    def start_fold(self, fold: int) -> None:
        """Fold `fold` (0-based, its folder's number) starts."""
        self.fold, self.best = fold, float("-inf")
        self.folds_after = max(self.folds_after - 1, 0)
        if self.started is None:
            self.started = time.perf_counter()

    def fold_done(self) -> None:
        if self.bar is not None:
            self.bar.update(self.fold_task, advance=1)


def duration_text(seconds: float | None) -> str:
    """A duration for people: "45 s", "12 min", "2 h 05 min", "3 d 4 h"; "?" when unknown (None, NaN)."""
    if seconds is None or seconds != seconds:
        return "?"
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d {hours} h"


def progress_bar(console: Any) -> AbstractContextManager[Any]:
    """A live rich Progress (a context manager) on `console` when it is a terminal; a null context yielding
    None otherwise (no console, or a log or a pipe, which get Progress's per-epoch lines instead)."""
    if console is None or not getattr(console, "is_terminal", False):
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux; NaN elsewhere), to show memory does not grow
    from fold to fold."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
