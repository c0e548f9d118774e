"""Runs: the run folder (`folder`, the only owner of its layout), a finished run read back (`run`), a
training run prepared, trained fold by fold and finished (`prepare`), and every run's state (`status`)."""

from competition.runs.run import Run, check_same_folds, folds_frame, list_runs, load_runs, resolve_run, save_run

__all__ = ["Run", "check_same_folds", "folds_frame", "list_runs", "load_runs", "resolve_run", "save_run"]
