"""Executors: where the pending folds of a prepared run are trained, by name (a registry, as in timm).

"local" trains them one after another in this process (frozen-backbone features computed once and shared;
Keras callbacks can be passed); "process" (the command line's default) trains each fold in a fresh process,
so memory does not grow from fold to fold; "ray" submits one Ray task per pending fold to a local Ray runtime
or a cluster. Whatever executor trained a fold, competition.runs.prepare.finish_run gathers the folds, and a
rerun trains only the folds without done.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from competition.errors import OptionError
from competition.executors.local import run_local
from competition.executors.process import run_process
from competition.executors.ray import run_ray
from competition.registry import unknown_name

EXECUTORS: dict[str, Callable[..., None]] = {"local": run_local, "process": run_process, "ray": run_ray}


def executor_named(name: str, address: str | None = None) -> Callable[..., None]:
    """The executor called `name`; OptionError for a wrong name, or an address for a non-Ray executor."""
    problem = unknown_name(name, EXECUTORS, "executor")
    if problem:
        raise OptionError("executor", problem)
    if address is not None and name != "ray":
        raise OptionError("address", "a Ray cluster address needs the ray executor")
    return EXECUTORS[name]


def run_folds(prepared: Any, executor: str = "local", *, address: str | None = None, console: Any = None,
              resources: Any = None, callbacks: tuple[Any, ...] = ()) -> None:
    """Train every pending fold of `prepared` (a competition.runs.prepare.PreparedRun) with the named
    executor. `resources` overrides the recipe's `resources` section (Ray only); `callbacks` (Keras
    callbacks, local executor only) join every phase's fit."""
    run = executor_named(executor, address)
    run(prepared, address=address, console=console, resources=resources or prepared.recipe.resources,
        callbacks=tuple(callbacks))


__all__ = ["EXECUTORS", "executor_named", "run_folds"]
