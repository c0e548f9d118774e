"""Training, the whole stage: a recipe (or several) to finished run folders.

`train_run` is prepare (competition.runs.prepare: validate, index, decode once, split, lay out the folder),
run the pending folds with an executor (competition.executors: this process, one process per fold, or Ray),
then finish (gather OOF and test probabilities, run.json last). A fold itself is competition.engine.fold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from competition.errors import CompetitionError, OptionError
from competition.executors import executor_named, run_folds
from competition.executors.process import start_fold_server
from competition.recipe import Recipe
from competition.runs.prepare import finish_run, prepare_run


def train_run(recipe: Recipe, runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
              name: str | None = None, overwrite: bool = False, deterministic: bool = False,
              console: Any = None, executor: str = "local", address: str | None = None,
              callbacks: Sequence[Any] = ()) -> Path:
    """Train every fold of a recipe with the named executor ("local", "process" or "ray", on the cluster at
    `address` or a local runtime); returns the finished run folder (layout: competition.runs.folder). Folds
    finished by an earlier run of the same recipe are reused. `callbacks` (Keras callbacks; local executor
    only) join every phase's fit.

    Raises CompetitionError (OptionError for a bad argument) naming the bad input, before the run folder
    exists when the input is at fault."""
    executor_named(executor, address)  # a wrong name fails before the run folder exists
    if recipe.model.kind != "network":  # seconds a fold, and one embedding for all: never worth a process
        executor, address = "local", None
    started = time.perf_counter()
    if executor == "process":
        start_fold_server()  # it imports TensorFlow while this process prepares the run
    prepared = prepare_run(recipe, runs_dir, data_root=data_root, name=name, overwrite=overwrite,
                           deterministic=deterministic, console=console)
    try:  # the run folder is locked by this process until it is finished (or this fails)
        run_folds(prepared, executor, address=address, console=console, callbacks=tuple(callbacks))
        return finish_run(prepared, started, console)
    finally:
        prepared.release()


def train(recipe: Recipe, runs_dir: str | Path = "runs", *, quiet: bool = False, **options: Any) -> Path:
    """`competition.train` from Python: train_run (the same `options`) with its progress printed as `train`
    prints it (the folds' scheme and why, each fold's score, the run's line on the leaderboard), in a notebook
    as in a terminal, unless `quiet` or a `console` is given; returns the finished run folder."""
    if options.get("console") is None and not quiet:
        from competition.report import leaderboard_for
        from rich.console import Console

        options["console"] = Console()
        run_dir = train_run(recipe, runs_dir, **options)
        leaderboard_for([run_dir], options["console"])
        return run_dir
    return train_run(recipe, runs_dir, **options)


def train_recipes(recipes: list[Recipe], runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
                  name: str | None = None, overwrite: bool = False, deterministic: bool = False,
                  console: Any = None, executor: str = "local", address: str | None = None) -> list[Path]:
    """Train several recipes; returns their finished run folders. Locally one recipe after another (each as
    `train_run`); on Ray every recipe is prepared first (all validated before any training), then all their
    pending folds are submitted together, so a cluster with more GPUs than one recipe has folds stays busy.
    A recipe whose folds all finished is finished (run.json) even when another recipe's fold failed."""
    executor_named(executor, address)
    if name is not None and len(recipes) > 1:
        raise OptionError("name", "only with one recipe (several recipes each use their own name)")
    names = [name or r.name for r in recipes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CompetitionError(f"recipes share the run name {', '.join(twice)}; give each recipe its own name")
    if executor != "ray" or all(r.model.kind != "network" for r in recipes):
        return [train_run(r, runs_dir, data_root=data_root, name=name, overwrite=overwrite, deterministic=deterministic,
                          console=console, executor=executor, address=address) for r in recipes]
    from competition.executors.ray import connect_ray, failed_line, submit_ray

    started = time.perf_counter()
    connect_ray(address)  # an unreachable cluster fails before any run folder is written
    prepared_runs = []
    try:  # each run folder is locked by this process until its runs are finished (or this fails)
        for recipe in (r for r in recipes if r.model.kind == "network"):
            prepared = prepare_run(recipe, runs_dir, data_root=data_root, name=name, overwrite=overwrite,
                                   console=console, deterministic=deterministic)
            prepared.free_pixels()
            prepared_runs.append(prepared)
        # scikit-learn kinds: seconds each, in this process, once every network recipe is validated
        classic = [train_run(r, runs_dir, data_root=data_root, name=name, overwrite=overwrite, console=console)
                   for r in recipes if r.model.kind != "network"]
        failed = submit_ray(prepared_runs, address=address, console=console)
        finished = classic + [finish_run(p, started, console) for i, p in enumerate(prepared_runs) if i not in failed]
    finally:
        for prepared in prepared_runs:
            prepared.release()
    if failed:
        if len(prepared_runs) == 1:
            raise CompetitionError(failed_line(failed[0]))
        lines = [f"{prepared_runs[i].run_dir.name}: {failed_line(f)}" for i, f in sorted(failed.items())]
        done = f" ({', '.join(p.name for p in finished)} finished)" if finished else ""
        raise CompetitionError("; ".join(line.removesuffix("; rerun the same command to train only those")
                                         for line in lines) + f"{done}; rerun the same command to train only those")
    return finished
