"""Every run under a runs folder at a glance (`competition runs`), and the removal of unfinished ones
(`competition clean`).

A run's state, from its folder alone (layout: competition.runs.folder):

    running     a process holds its train.lock (a `train` is working on it now)
    finished    run.json is there and the run reads back whole (Run.load)
    damaged     run.json is there, but a file of the run is damaged (`problem` names it): one it reads back, or
                a fold model cut short or missing (headers only: fold_files.fold_model_problem)
    unfinished  neither: a `train` was killed or failed before run.json; rerunning it resumes (finished folds
                are kept), `competition clean` removes it

Folds are numbered from 0, as their folders are (`fold_0/` is "fold 0").
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competition.console import duration_text
from competition.errors import CompetitionError
from competition.runs import fold_files, folder, locking

STATES = ("running", "finished", "damaged", "unfinished")


@dataclass
class RunStatus:
    """One run folder's state. `folds_done` of `n_folds` (None for ensembles); `score` the OOF score by the
    contest metric (`metric`, its table header) of a finished run, or for another the mean best validation score
    of its finished folds (`score_is_folds`);
    `epochs` the fold in progress ("fold 1: epoch 2/5, best 0.512"; "" when none); `updated` seconds since
    the folder last changed; `size` its bytes on disk; `problem` the lock holder (running) or the damage."""

    name: str
    path: Path
    kind: str
    state: str
    folds_done: int | None = None
    n_folds: int | None = None
    score: float | None = None
    score_is_folds: bool = False
    metric: str = "macro F1"
    epochs: str = ""
    updated: float = 0.0
    size: int = 0
    problem: str = ""


def run_status(run_dir: str | Path, score: bool = True) -> RunStatus | None:
    """The state of the run in `run_dir`, or None when the folder holds no run (empty, or other files).
    Without `score`, a finished run is not read back (no score, and damage goes unnoticed: quicker)."""
    run_dir = Path(run_dir)
    holds = folder.holds(run_dir)
    if holds not in ("a model run", "an unfinished model run", "an ensemble"):
        return None
    kind = "ensemble" if holds == "an ensemble" else "model"
    updated, size = _age_and_size(run_dir)
    status = RunStatus(run_dir.name, run_dir, kind, "unfinished", updated=updated, size=size)
    if kind == "model":
        _fold_progress(run_dir, status)
    holder = locking.lock_holder(run_dir)
    if holder is not None and "(this process)" not in holder:
        status.state, status.problem = "running", holder
    elif folder.is_finished(run_dir):
        status.state = "finished"
        if score:
            _finished(run_dir, status)
    return status


def list_status(runs_dir: str | Path = "runs", score: bool = True) -> list[RunStatus]:
    """Every run under `runs_dir` (hidden folders, such as ensembles being built, and folders that hold no run
    left out), by name; `score` as in run_status. CompetitionError when `runs_dir` is not a folder."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise CompetitionError(f"{runs_dir}: runs folder not found")
    found = (run_status(p, score) for p in sorted(runs_dir.iterdir()) if p.is_dir() and not p.name.startswith("."))
    return [status for status in found if status is not None]


def clean(runs_dir: str | Path = "runs", remove: bool = False) -> list[RunStatus]:
    """The unfinished runs under `runs_dir` (never a running, finished or damaged one), removed when
    `remove`. A run that a `train` starts on meanwhile is left alone (its lock is taken before removal)."""
    candidates = [s for s in list_status(runs_dir, score=False) if s.state == "unfinished"]
    if not remove:
        return candidates
    removed = []
    for status in candidates:
        try:
            fold_files.remove_unfinished(status.path)
        except CompetitionError:  # locked or finished since it was listed: not ours to remove
            continue
        removed.append(status)
    return removed


def _finished(run_dir: Path, status: RunStatus) -> None:
    from competition.runs.run import Run

    try:
        run = Run.load(run_dir)
    except CompetitionError as exc:
        status.state, status.problem = "damaged", str(exc)
        return
    if run.kind == "model":
        for k in sorted(set(run.folds.tolist())):
            problem = fold_files.fold_model_problem(run_dir, k) if fold_files.fold_dir(run_dir, k).is_dir() else None
            if problem is not None:
                status.state, status.problem = "damaged", (f"{problem}; submit still works from test.npy, predict, "
                                                           "explain and export need the run trained again")
                status.epochs = ""  # the fold trained whole: its model file was damaged afterwards
                return
    status.state, status.kind = "finished", run.kind
    status.score, status.score_is_folds, status.metric = run.score(), False, run.metric.header
    if run.kind == "model" and status.n_folds:
        status.folds_done = status.n_folds


def _fold_progress(run_dir: Path, status: RunStatus) -> None:
    """Folds done, their mean best score, and the epochs of the first fold in progress (from its
    history.csv, written after every epoch)."""
    try:
        recipe = folder.read_recipe_yaml(run_dir)
        n_folds = int(recipe["cv"]["folds"])
        planned = sum(int(phase.get("epochs", 0)) for phase in recipe["train"]["phases"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, CompetitionError):
        return
    recipe_hash = folder.stored_hash(run_dir) or ""
    done = [k for k in range(n_folds) if fold_files.fold_is_done(run_dir, k, recipe_hash)]
    status.n_folds, status.folds_done = n_folds, len(done)
    status.metric = _metric_of(recipe).header
    scores = []
    for k in done:
        try:
            info = fold_files.read_fold_info(run_dir, k)
            scores.append(float(info["best_score"] if "best_score" in info else info["best_macro_f1"]))
        except (OSError, ValueError, KeyError, TypeError, CompetitionError):
            pass
    if scores:
        status.score, status.score_is_folds = sum(scores) / len(scores), True
    for k in (k for k in range(n_folds) if k not in done):
        rows = fold_files.read_partial_history(run_dir, k)
        if rows:
            metric = _metric_of(recipe)
            values = [float(r.get(metric.monitor, float("nan"))) for r in rows]
            best = metric.oriented(max((metric.oriented(v) for v in values), default=float("nan")))
            status.epochs = f"fold {k}: epoch {len(rows)}/{planned}, best {best:.3f}"
            break


def _metric_of(recipe: dict[str, Any]) -> Any:
    """The contest metric a stored recipe (a plain dict) declares; macro F1 when it declares none or an unknown one."""
    from competition.metrics import METRICS, get_metric

    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    name = data.get("metric")
    return METRICS[name] if isinstance(name, str) and name in METRICS else get_metric(None)


def _age_and_size(run_dir: Path) -> tuple[float, int]:
    """(seconds since the newest entry changed, bytes of its files), links not followed."""
    newest, size = 0.0, 0
    for where, dirs, files in os.walk(run_dir):
        for name in [*dirs, *files, "."]:
            try:
                info = os.lstat(os.path.join(where, name))
            except OSError:  # removed while we looked
                continue
            newest = max(newest, info.st_mtime)
            size += info.st_size if name in files else 0
    return max(time.time() - newest, 0.0), size


def size_text(size: int) -> str:
    """Bytes for people: "812 B", "3.4 kB", "12 MB", "1.2 GB" (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def print_status(statuses: list[RunStatus], console: Any) -> None:
    """A table of the runs (run, state, folds done, macro F1, updated ago, size, epoch in progress) on a rich
    console, and a line under it on what the states mean when some run is unfinished or damaged."""
    from rich.table import Table

    if not statuses:
        console.print("no runs")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    progress = any(s.epochs for s in statuses)  # the column only when some fold is in progress
    headers = {s.metric for s in statuses if s.score is not None}
    title = headers.pop() if len(headers) == 1 else "score"  # runs of several metrics: each its own
    for column, justify in (("run", "left"), ("state", "left"), ("folds", "right"), (title, "right"),
                            ("updated", "right"), ("size", "right"), *([("in progress", "left")] if progress else [])):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for s in statuses:
        folds = f"{s.folds_done}/{s.n_folds}" if s.n_folds else "-"
        score = "" if s.score is None else f"{s.score:.4f}" + ("*" if s.score_is_folds else "")
        cells = [s.name, s.state, folds, score, f"{duration_text(s.updated)} ago", size_text(s.size)]
        table.add_row(*cells, *([s.epochs] if progress else []), style="red" if s.state == "damaged" else None)
    console.print(table)
    if any(s.score_is_folds for s in statuses):
        console.print("* the mean best validation score of the finished folds (the run is not finished)")
    for s in statuses:
        if s.state == "damaged":
            console.print(f"{s.name}: {s.problem}", markup=False, highlight=False, soft_wrap=True)
    if any(s.state == "unfinished" for s in statuses):
        console.print("unfinished: rerun its train to resume (finished folds are kept), or `competition clean` "
                      "removes it", markup=False)
