"""The local executor: the pending folds one after another in this process."""

from __future__ import annotations

import time
from typing import Any

from competition.console import Progress, progress_bar, rss_mb, say
from competition.executors.common import say_reused
from competition.runs.prepare import train_fold


def run_local(prepared: Any, *, address: str | None = None, console: Any = None, resources: Any = None,
              callbacks: tuple[Any, ...] = ()) -> None:
    """One fold after another in this process, with a live progress bar; frozen-backbone features are
    computed once and shared by the folds. `callbacks` (Keras callbacks) join every phase's fit."""
    pending = prepared.pending()
    say_reused(prepared, pending, console)
    with progress_bar(console) as bar:
        progress = Progress(bar=bar, console=console, metric=prepared.metric)
        progress.start_folds(prepared.run_dir.name, len(pending), prepared.recipe.cv.folds)
        network = prepared.recipe.model.kind == "network"
        features = None
        if network and pending:  # Keras (and TensorFlow) only for networks
            from competition.engine.features import frozen_features

            features = frozen_features(prepared.recipe, prepared.x, len(prepared.classes))
        for k in pending:
            progress.start_fold(k)
            t0 = time.perf_counter()
            fitted = train_fold(prepared, k, progress, features, callbacks)
            kept = f"best epoch {fitted.best_epoch}, " if network else ""
            say(console, f"fold {k}: {kept}val {prepared.metric.title} {fitted.best_score:.4f} "
                         f"({time.perf_counter() - t0:.0f} s, RSS {rss_mb():.0f} MB)")
            del fitted
            progress.fold_done()
