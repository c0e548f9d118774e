"""The `competition` command: thin Typer commands, each parsing options and calling one library function."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from competition.errors import CompetitionError, OptionError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Win image-classification contests: recipes, k-fold OOF training, leaderboards, submissions.")
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

# Library parameters by their command-line flags: an OptionError names the flag the user typed.
FLAGS = {"data_root": "--data", "data": "--data", "name": "--name", "executor": "--executor", "address": "--address",
         "fmt": "--format", "method": "--method", "metric": "--metric", "out": "--out", "sample": "--sample",
         "per_class": "--per-class", "runs_dir": "--runs"}

RunsOption = Annotated[Path, typer.Option("--runs", help="Folder of runs.")]
ImagesArgument = Annotated[list[Path], typer.Argument(help="Image files, folders of images, or a contest folder (its test/).")]


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder to write the demo contest into.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = 64,
    scale: Annotated[float, typer.Option(help="Number of images relative to the default (~500 train, 120 test).")] = 1.0,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty folder.")] = False,
) -> None:
    """Write a small synthetic 4-class brain-MRI contest (train/, test/, sample_submission.csv)."""
    from competition.data import index_contest, print_class_counts
    from competition.demo import make_demo

    path = make_demo(out, seed=seed, size=size, scale=scale, overwrite=overwrite)
    contest = index_contest(path)
    console.print(f"demo contest written to {path}: {len(contest.train)} train, {len(contest.test)} test images")
    print_class_counts(contest, console)


@app.command()
def train(
    recipes: Annotated[list[Path], typer.Argument(help="Recipe YAML file(s). Several: one after another locally, all their folds at once on Ray.")],
    data: Annotated[Path | None, typer.Option("--data", help="Contest folder (overrides recipe data.root).")] = None,
    runs: RunsOption = Path("runs"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe field: KEY.SUB=VALUE.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the recipe's name; one recipe only).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run of a different recipe.")] = False,
    deterministic: Annotated[bool, typer.Option(help="Seed everything and use deterministic TF ops (same OOF twice).")] = False,
    executor: Annotated[str, typer.Option("--executor", help="Where folds train: process (each fold in a fresh process, memory does not grow), local (this process) or ray (one Ray task per fold).")] = "process",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster for --executor ray: 'auto' or ray://HEAD:10001; default: a local Ray runtime.")] = None,
) -> None:
    """Train one model per fold; keep out-of-fold and test probabilities in runs/<name>/."""
    from competition.training import train_recipes
    from competition.recipe import load_recipe
    from competition.report import leaderboard_for

    loaded = [load_recipe(path, set_ or []) for path in recipes]
    try:
        run_dirs = train_recipes(loaded, runs, data_root=data, name=name, overwrite=overwrite,
                                 deterministic=deterministic, console=console, executor=executor, address=address)
    except KeyboardInterrupt:  # Ctrl-C: every finished fold is on disk whole, the one in progress is dropped
        err_console.print("interrupted: finished folds are kept; rerun the same command to resume", markup=False)
        raise typer.Exit(130) from None
    for run_dir in run_dirs:
        console.print(f"run written to {run_dir}")
    leaderboard_for(run_dirs, console)


@app.command()
def leaderboard(
    runs: RunsOption = Path("runs"),
    fmt: Annotated[str, typer.Option("--format", help="table, md, csv or json.")] = "table",
) -> None:
    """Score every run and ensemble on its out-of-fold predictions, best first."""
    from competition.report import leaderboard as board, render

    text = render(board(runs), fmt, console)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def submit(
    run: Annotated[str, typer.Argument(help="Run or ensemble name (under --runs) or folder.")],
    runs: RunsOption = Path("runs"),
    out: Annotated[Path | None, typer.Option("--out", help="CSV to write (default submissions/<run>.csv).")] = None,
    sample: Annotated[Path | None, typer.Option("--sample", help="sample_submission.csv (default: the run's contest's).")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Per-class decision offsets fitted on OOF for macro F1.")] = False,
) -> None:
    """Write the run's test predictions in exactly the sample submission's format, validated first."""
    from competition.submission import submit_run

    path, tuning = submit_run(run, runs, out=out, sample=sample, tune=tune)
    if tuning is not None:
        verdict = ("applied, and saved in the run for later submit and predict calls" if tuning["applied"] else
                   "not applied: the nested-CV gain is not positive, so the offsets would only fit noise")
        console.print(
            f"decision tuning: OOF macro F1 {tuning['base_macro_f1']:.4f} -> {tuning['in_sample_macro_f1']:.4f} "
            f"in-sample ({tuning['in_sample_gain']:+.4f}), {tuning['nested_gain']:+.4f} under nested CV "
            f"(the honest gain); {verdict}"
        )
    console.print(f"submission written to {path}")


@app.command()
def ensemble(
    members: Annotated[list[str], typer.Argument(help="Runs to combine (names under --runs, or folders).")],
    name: Annotated[str, typer.Option("--name", help="Name of the ensemble run.")],
    method: Annotated[str, typer.Option("--method", help="mean, weighted, rank, geometric, caruana or stacking.")] = "caruana",
    metric: Annotated[str, typer.Option("--metric", help="What fitted methods optimise: macro_f1 or log_loss.")] = "macro_f1",
    runs: RunsOption = Path("runs"),
) -> None:
    """Combine runs that share folds, fitted and scored on their OOF; stored like a run."""
    from competition.ensemble import ensemble_runs
    from competition.report import leaderboard_for

    path = ensemble_runs(members, method=method, name=name, runs_dir=runs, metric=metric)
    console.print(f"ensemble written to {path}")
    leaderboard_for([path], console)


@app.command()
def validate(
    submission: Annotated[Path, typer.Argument(help="Submission CSV to check.")],
    sample: Annotated[Path, typer.Option("--sample", help="The contest's sample_submission.csv.")],
    classes: Annotated[str | None, typer.Option("--classes", help="Allowed labels, comma-separated.")] = None,
) -> None:
    """Check a submission against the sample: columns, ids and their order, labels or probabilities, empty cells."""
    from competition.submission import validate_file

    problems = validate_file(submission, sample, classes.split(",") if classes else None)
    if problems:
        for problem in problems:
            err_console.print(f"{submission}: {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{submission}: valid against {sample}")


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run or ensemble name (under --runs) or folder.")],
    runs: RunsOption = Path("runs"),
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default <run>/report).")] = None,
) -> None:
    """PNG plots and one HTML page: curves per fold, confusion matrix, per-class bars, confident mistakes."""
    from competition.report.plots import write_report
    from competition.runs import resolve_run

    page = write_report(resolve_run(run, runs), out)
    console.print(f"report written to {page}")


@app.command()
def doctor(
    recipes: Annotated[list[Path], typer.Argument(help="Recipe files to check.")],
    data: Annotated[Path | None, typer.Option("--data", help="Contest folder (overrides recipes' data.root).")] = None,
) -> None:
    """Before training: every recipe validates, its data reads, and its weights can be had offline."""
    from competition.doctor import check_recipes, print_checks

    checks = check_recipes(recipes, data)
    print_checks(checks, console)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


@app.command("augment-preview")
def augment_preview(
    recipe: Annotated[Path, typer.Argument(help="Recipe file.")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("augment-preview.png"),
    data: Annotated[Path | None, typer.Option("--data", help="Contest folder (overrides recipe data.root).")] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Augmented draws per class.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """A PNG grid per class: the original training image, then augmented draws of it."""
    from competition.report.previews import preview
    from competition.recipe import load_recipe

    path = preview(load_recipe(recipe), out, per_class=per_class, data=data, seed=seed)
    console.print(f"augmentation preview written to {path}")


@app.command()
def audit(
    data: Annotated[Path, typer.Argument(help="Contest folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for audit.json and closest_pairs.png.")] = Path("audit"),
    folds: Annotated[int, typer.Option(help="Folds of the schemes whose leak share is measured.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of those folds.")] = 42,
    threshold: Annotated[float | None, typer.Option(help="Near-duplicate distance (1 - cosine) threshold.")] = None,
) -> None:
    """Exact and near duplicates, the leak share of fold schemes, class counts, adversarial validation."""
    from competition.audit import print_audit, run_audit

    print_audit(run_audit(data, out, n_folds=folds, seed=seed, threshold=threshold), console)
    console.print(f"audit written to {out / 'audit.json'}")


@app.command()
def predict(
    run: Annotated[str, typer.Argument(help="Run or blend ensemble name (under --runs) or folder.")],
    images: ImagesArgument,
    runs: RunsOption = Path("runs"),
    out: Annotated[Path, typer.Option("--out", help="CSV to write: id,label[,class probabilities].")] = Path("predictions.csv"),
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Add one probability column per class.")] = False,
) -> None:
    """Predict new images with a trained run: every fold model, the run's TTA and its saved decisions."""
    from competition.inference import predict_run

    result = predict_run(run, images, runs, out=out, probabilities=probabilities)
    console.print(f"{len(result.ids)} predictions written to {out}")


@app.command()
def explain(
    run: Annotated[str, typer.Argument(help="Run name (under --runs) or folder.")],
    images: ImagesArgument,
    runs: RunsOption = Path("runs"),
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("explain.png"),
) -> None:
    """Grad-CAM heat maps: where the run's fold models looked for the class they predict (64 images at most)."""
    from competition.report.explain import explain_run

    console.print(f"Grad-CAM grid written to {explain_run(run, images, runs, out=out)}")


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run name (under --runs) or folder.")],
    runs: RunsOption = Path("runs"),
    fmt: Annotated[str, typer.Option("--format", help="keras, savedmodel or tflite.")] = "keras",
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write (default exports/<run>-<format>).")] = None,
) -> None:
    """One deployable model (the mean of the fold models) with its classes, input size and a README."""
    from competition.export import export_run

    folder, difference = export_run(run, runs, fmt=fmt, out=out)
    console.print(f"{fmt} export written to {folder} (largest difference from the run: {difference:.1e})")


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _culprit(exc: BaseException) -> str | None:
    """The file an OSError is about: its own filename, else one named by the errors it came from (a library
    that wraps the OSError of a write, such as a model save, keeps it as the cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.filename:
            return str(current.filename)
        current = current.__cause__ or current.__context__
    return None


def _which_folder(path: str) -> str:
    """' (the decode cache; COMPETITION_CACHE_DIR moves it)' when `path` is in the cache, else ''."""
    import os

    from competition.data.cache import cache_dir

    try:
        inside = os.path.commonpath([os.path.abspath(path), os.path.abspath(cache_dir())]) == os.path.abspath(cache_dir())
    except ValueError:
        inside = False
    return " (the decode cache; COMPETITION_CACHE_DIR moves it)" if inside else ""


def _os_error_message(exc: OSError) -> tuple[str, int]:
    where = _culprit(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"{where}{_which_folder(where)}" if where else "a file (which one the system did not say)"
        return (f"disk full while writing {what}; outputs are written whole or not at all, so rerun after "
                "freeing space (finished folds are kept)", 28)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return (f"{where}: {reason}" if where else reason), 2


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        app(args=argv, standalone_mode=True)
    except OptionError as exc:
        _fail(f"{FLAGS.get(exc.option, exc.option)}: {exc.message}", 2)
    except CompetitionError as exc:
        _fail(" ".join(str(exc).split("\n")), 2)
    except OSError as exc:  # the machine, not the code: disk full, permissions, a vanished file
        _fail(*_os_error_message(exc))
    except Exception as exc:  # a library wrapping a disk-full OSError (a model save): still name the file
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            _fail(*_os_error_message(cause))
        raise


if __name__ == "__main__":
    main()
