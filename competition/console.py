"""What the user watches while a run trains: one-line notes, the live progress bar of folds and epochs, and
memory figures. Library functions take an optional rich Console; None keeps them silent."""

from __future__ import annotations

import resource
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any


def say(console: Any, text: str) -> None:
    """Print one line to `console` (a rich Console), or nothing when it is None."""
    if console is not None:
        console.print(text)


@dataclass
class Progress:
    """Fold and epoch progress: a rich progress bar when `bar` is set, else nothing. Subclasses forward
    epochs elsewhere (a fold's own process sends them to its parent)."""

    bar: Any = None
    fold_task: Any = None
    epoch_task: Any = None
    fold: int = 0
    best: float = float("-inf")

    def epoch(self, epoch: int, total: int, f1: float) -> None:
        """Epoch `epoch` of `total` of the current phase ended with validation macro F1 `f1`."""
        self.best = max(self.best, f1)
        if self.bar is not None:
            self.bar.update(self.epoch_task, completed=epoch, total=total,
                            description=f"fold {self.fold + 1} · epoch {epoch}/{total} · "
                                        f"val macro F1 {f1:.3f} (best {self.best:.3f})")

    def start_folds(self, name: str, n_folds: int) -> None:
        """Add the fold and epoch bars for a run of `n_folds` pending folds."""
        if self.bar is not None:
            self.fold_task = self.bar.add_task(f"{name}: folds", total=n_folds)
            self.epoch_task = self.bar.add_task("epochs", total=None)

    def start_fold(self, fold: int) -> None:
        self.fold, self.best = fold, float("-inf")

    def fold_done(self) -> None:
        if self.bar is not None:
            self.bar.update(self.fold_task, advance=1)


def progress_bar(console: Any) -> AbstractContextManager[Any]:
    """A rich Progress (a context manager) on `console`, or a null context yielding None without one."""
    if console is None:
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
