"""competition: win image-classification contests from Python as from the command line.

The public API, for a notebook or a script (each name is loaded on first use, so `import competition` does not
import TensorFlow)::

    import competition

    recipe = competition.load_recipe("recipes/demo.yaml", ["cv.folds=3"])
    run_dir = competition.train(recipe, "runs", data_root="demo-data", executor="local")  # prints progress
    competition.leaderboard("runs")                      # a pandas DataFrame, best first
    run = competition.Run.load(run_dir)                  # OOF and test probabilities as numpy arrays
    done = competition.submit([run_dir.name], "runs", tune=True)   # as `competition submit`: the best candidate
    competition.predict(run_dir.name, images, "runs")    # image files, or a numpy array (n, h, w[, c])

Each command of the command line is one function here with the same name and choices.

Errors the user can fix are CompetitionError (OptionError names a bad argument), one line each.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from competition.errors import CompetitionError, OptionError

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "Recipe": ("competition.recipe", "Recipe"),
    "load_recipe": ("competition.recipe", "load_recipe"),
    "load_contest": ("competition.data", "load_contest"),
    "index_contest": ("competition.data", "index_contest"),
    "train": ("competition.training", "train"),  # train_run, printing progress as the command does
    "train_many": ("competition.training", "train_recipes"),
    "Run": ("competition.runs", "Run"),
    "list_runs": ("competition.runs", "list_runs"),
    # one function per command, as the command line calls it (competition/cli.py)
    "aggregate": ("competition.subjects", "aggregate"),
    "submit": ("competition.submission", "submit"),  # the candidate choice; returns Submitted
    "validate": ("competition.submission", "check_file"),
    "predict": ("competition.inference", "predict_run"),  # image files or a numpy array of images
    "explain": ("competition.report.explain", "explain_run"),
    "export_run": ("competition.export", "export_run"),
    "check_recipes": ("competition.doctor", "check_recipes"),  # `doctor`
    "leaderboard": ("competition.report.leaderboard", "leaderboard_frame"),
    "write_report": ("competition.report.plots", "write_report"),
    "make_demo": ("competition.demo", "make_demo"),
    # `ensemble`, `audit`: the names of their modules, so called as here
    "ensemble_runs": ("competition.ensemble", "ensemble_runs"),
    "validate_submission": ("competition.submission", "validate_file"),
    "run_audit": ("competition.audit", "run_audit"),
}

__all__ = ["CompetitionError", "OptionError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'competition' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API, for tab completion in a notebook (the names load on first use)."""
    return sorted({*globals(), *__all__})
