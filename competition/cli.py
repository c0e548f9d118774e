"""The `competition` command: thin Typer commands, each parsing options and calling one library function."""

from __future__ import annotations

import errno
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer
from rich.console import Console

from competition.errors import CompetitionError, OptionError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Win image-classification contests: recipes, k-fold OOF training, leaderboards, submissions.")
# A terminal's own width; piped output honours COLUMNS, else 160 (log files are read wider than a terminal).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)
err_console = Console(stderr=True)

# Library parameters by their command-line flags: an OptionError names the flag the user typed.
FLAGS = {"data_root": "--data", "data": "--data", "name": "--name", "executor": "--executor", "address": "--address",
         "fmt": "--format", "method": "--method", "metric": "--metric", "out": "--out", "sample": "--sample",
         "per_class": "--per-class", "runs_dir": "--runs", "limit": "--max-images"}

RunsOption = Annotated[Path, typer.Option("--runs", help="Folder of runs.")]
ImagesArgument = Annotated[list[Path], typer.Argument(help="Image files, folders of images, or a contest folder (its test/).")]
# Where a run's contest folder is now, when it moved since `train` (run folders record it; see competition.runs.run).
MovedDataOption = Annotated[Path | None, typer.Option("--data", help="The run's contest folder, when it moved since training (default: where training found it).")]
# An image list that may be left out: then the run's contest's test images (MovedDataOption says where).
OptionalImages = Annotated[list[Path] | None, typer.Argument(help="Image files, folders of images, or a contest folder (its test/); default: the run's contest's test images.")]

# The choices of options, shown in --help. Typer validates nothing (parser=str): the library checks the value
# against its registry, so an unknown one is the same one-line error, with a "did you mean", from Python and
# from here; tests/test_cli_help.py checks that these lists equal the registries.
ExecutorName = Literal["process", "local", "ray"]
BoardFormat = Literal["table", "md", "csv", "json"]
EnsembleMethod = Literal["mean", "weighted", "rank", "geometric", "caruana", "stacking"]
EnsembleMetric = Literal["macro_f1", "accuracy", "balanced_accuracy", "kappa", "roc_auc", "log_loss"]
ExportFormat = Literal["keras", "savedmodel", "tflite", "onnx"]


def _version(value: bool) -> None:
    if value:
        from competition import __version__

        console.print(f"competition {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Win image-classification contests: recipes, k-fold OOF training, leaderboards, submissions."""


class DemoLayoutName(str, Enum):
    """A demo contest's shape (competition.demo.LAYOUTS)."""

    folders = "folders"
    aptos = "aptos"
    isic = "isic"
    chestxray = "chestxray"
    chexpert = "chexpert"


class Relation(str, Enum):
    """How a demo contest's test relates to its training set (competition.demo.RELATIONS)."""

    new_subjects = "new_subjects"
    seen_subjects = "seen_subjects"


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder to write the demo contest into.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = 64,
    scale: Annotated[float, typer.Option(help="Number of images relative to the default (~500 train, 120 test).")] = 1.0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier demo contest there (never a folder of other files).")] = False,
    relation: Annotated[Relation, typer.Option(help="What the test holds: slices of new subjects, or the next "
                                                    "slice of training subjects.")] = Relation.new_subjects,
    layout: Annotated[DemoLayoutName, typer.Option(help="The contest's shape: class folders (macro F1), APTOS-like "
                                                        "(train.csv id_code,diagnosis, 5 grades, kappa), ISIC-like "
                                                        "(patients, binary, probabilities, ROC AUC), ChestX-ray14-"
                                                        "like (findings joined by '|', multi-label, mean AUC) or "
                                                        "CheXpert-like (one 0/1 column per finding).")] = DemoLayoutName.folders,
) -> None:
    """Write a small synthetic brain-MRI-like contest (train/, test/, sample_submission.csv, or another layout)."""
    from competition.data import index_contest, print_class_counts
    from competition.demo import make_demo
    from competition.demo import LAYOUTS

    path = make_demo(out, seed=seed, size=size, scale=scale, overwrite=overwrite, relation=relation.value,
                     layout=layout.value)
    spec = LAYOUTS[layout.value]
    if layout.value != "folders":
        keys = ", ".join(f"{k}: {'[' + ', '.join(v) + ']' if isinstance(v, list) else v}"
                         for k, v in spec.recipe_data().items())
        article = "an" if layout.value[0] in "aeiou" else "a"
        console.print(f"{article} {layout.value.upper()}-like contest: a recipe declares its layout and metric, as "
                      f"recipes/demo-{layout.value}.yaml does (data: {keys})", markup=False, highlight=False)
    contest = index_contest(path, spec.contest_layout())
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
    executor: Annotated[ExecutorName, typer.Option("--executor", parser=str, help="Where folds train: process (each fold in a fresh process, memory does not grow), local (this process) or ray (one Ray task per fold).")] = "process",
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
    fmt: Annotated[BoardFormat, typer.Option("--format", parser=str, help="Output format.")] = "table",
    per_class: Annotated[bool, typer.Option("--per-class", help="Add a table of per-class F1 (table format).")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every figure in one table, per-class F1 included, whatever the terminal's width.")] = False,
) -> None:
    """Score every run and ensemble on its out-of-fold predictions, best first."""
    from competition.report import show_leaderboard

    text = show_leaderboard(runs, fmt, console, per_class=per_class, wide=wide)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def submit(
    ctx: typer.Context,
    run: Annotated[list[str] | None, typer.Argument(help="Candidate runs or ensembles (names under --runs, or folders): the one with the best honest OOF score by the contest metric (recipe.data.metric) is submitted; default: every finished run.")] = None,
    runs: RunsOption = Path("runs"),
    out: Annotated[Path | None, typer.Option("--out", help="CSV to write (default submissions/<run>.csv).")] = None,
    sample: Annotated[Path | None, typer.Option("--sample", help="sample_submission.csv (default: the run's contest's).")] = None,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Fit the decisions on the OOF for the contest metric: per-class offsets for macro F1 (per-label thresholds for multi-label), grade thresholds for quadratic weighted kappa; applied only with a positive nested-CV gain. --no-tune: plain argmax, decisions saved by an earlier --tune not applied; neither: saved decisions applied.")] = False,
    data: MovedDataOption = None,
    message: Annotated[str, typer.Option("--message", "-m", help="A note for the submission log (log.csv beside the file).")] = "",
) -> None:
    """Write the best candidate's test predictions in exactly the sample submission's format, validated first,
    and log them; an ensemble is chosen only when it beats its members under nested CV."""
    from competition.submission import submit as submit_best

    # neither flag given: None, the run's saved decisions apply; --no-tune typed: False, none apply
    source = ctx.get_parameter_source("tune")
    given = source is not None and source.name == "COMMANDLINE"
    for line in submit_best(run, runs, out=out, sample=sample, tune=tune if given else None, message=message,
                            data=data).lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def ensemble(
    members: Annotated[list[str], typer.Argument(help="Runs to combine (names under --runs, or folders).")],
    name: Annotated[str, typer.Option("--name", help="Name of the ensemble run.")],
    method: Annotated[EnsembleMethod, typer.Option("--method", parser=str, help="How the members' probabilities are combined.")] = "caruana",
    metric: Annotated[EnsembleMetric | None, typer.Option("--metric", parser=str, help="What fitted methods optimise (default: the members' contest metric, recipe.data.metric).")] = None,
    runs: RunsOption = Path("runs"),
) -> None:
    """Combine runs that share folds, fitted and scored on their OOF; stored like a run."""
    from competition.ensemble import ensemble_runs
    from competition.report import leaderboard_for

    path = ensemble_runs(members, method=method, name=name, runs_dir=runs, metric=metric)
    console.print(f"ensemble written to {path}")
    leaderboard_for([path], console)


@app.command()
def aggregate(
    run: Annotated[str, typer.Argument(help="Run or ensemble whose predictions are averaged per subject (name under --runs, or folder).")],
    name: Annotated[str | None, typer.Option("--name", help="Name of the new run (default RUN-subjects).")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Near-duplicate distance that links two images of one subject (default: the largest at which no training group mixes classes).")] = None,
    runs: RunsOption = Path("runs"),
    data: MovedDataOption = None,
) -> None:
    """Average each image's probabilities over its subject's images (near-duplicate groups: within a fold for
    the OOF, among the test images for the test); stored like an ensemble of one run."""
    from competition.report import leaderboard_for
    from competition.subjects import aggregate as aggregate_run

    path = aggregate_run(run, name=name, runs_dir=runs, threshold=threshold, data=data)
    console.print(f"subject-averaged run written to {path}")
    leaderboard_for([path], console)


@app.command()
def validate(
    submission: Annotated[Path, typer.Argument(help="Submission CSV to check.")],
    sample: Annotated[Path | None, typer.Option("--sample", help="The contest's sample_submission.csv (default with --run: the run's contest's sample).")] = None,
    classes: Annotated[str | None, typer.Option("--classes", help="Allowed labels, comma-separated (default: the training classes of the contest the sample is in).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Also check the labels against this run's classes (name under --runs, or folder).")] = None,
    runs: RunsOption = Path("runs"),
    label_separator: Annotated[str | None, typer.Option("--label-separator", help="A multi-label contest without --run: its labels are joined by this text (each checked), its probability columns need not sum to 1.")] = None,
) -> None:
    """Check a submission against the sample: columns, ids and their order, labels or probabilities, empty cells."""
    from competition.submission import check_file

    problems, checked, sample = check_file(submission, sample, classes=classes.split(",") if classes else None,
                                           run=run, runs_dir=runs, separator=label_separator)
    if problems:
        for problem in problems:
            err_console.print(f"{submission}: {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{submission}: valid against {sample} ({checked})", markup=False, highlight=False, soft_wrap=True)


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run or ensemble name (under --runs) or folder.")],
    runs: RunsOption = Path("runs"),
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default <run>/report).")] = None,
    data: MovedDataOption = None,
) -> None:
    """PNG plots and one HTML page: curves per fold, confusion matrix, per-class bars, confident mistakes."""
    from competition.report.plots import write_report
    from competition.runs import resolve_run

    page = write_report(resolve_run(run, runs), out, data=data)
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
    out: Annotated[Path, typer.Option("--out", help="Folder for audit.json, relation.png and closest_pairs.png.")] = Path("audit"),
    folds: Annotated[int | None, typer.Option(help="Folds of the schemes measured against the test.", show_default="the recipe's cv.folds, else 5")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of those folds.", show_default="the recipe's cv.seed, else 42")] = None,
    threshold: Annotated[float | None, typer.Option(help="Near-duplicate distance (1 - cosine) threshold.", show_default="the recipe's, else 0.005")] = None,
    recipe: Annotated[Path | None, typer.Option("--recipe", help="A recipe: its data section declares the contest's layout (train_csv, id_column, ...), its cv section the folds, seed and subjects (group_by, data.group_column).")] = None,
) -> None:
    """How the test relates to train (a verdict), each fold scheme against it, duplicates, adversarial validation."""
    from competition.audit import print_audit, run_audit
    from competition.recipe import load_recipe

    print_audit(run_audit(data, out, n_folds=folds, seed=seed, threshold=threshold,
                          recipe=load_recipe(recipe) if recipe is not None else None), console)
    console.print(f"audit written to {out / 'audit.json'}")


@app.command()
def predict(
    run: Annotated[str, typer.Argument(help="Run or blend ensemble name (under --runs) or folder.")],
    images: OptionalImages = None,
    runs: RunsOption = Path("runs"),
    out: Annotated[Path, typer.Option("--out", help="CSV to write: id,label[,class probabilities].")] = Path("predictions.csv"),
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Add one probability column per class.")] = False,
    data: MovedDataOption = None,
) -> None:
    """Predict new images with a trained run: every fold model, the run's TTA and its saved decisions."""
    from competition.inference import predict_run
    from competition.runs import resolve_run
    from competition.runs.run import contest_folder

    images = images or [contest_folder(resolve_run(run, runs), data)]  # its test images, by its layout
    result = predict_run(run, images, runs, out=out, probabilities=probabilities)
    for note in result.notes:
        console.print(note, markup=False, highlight=False)
    console.print(f"{len(result.ids)} predictions written to {out}")


@app.command()
def explain(
    run: Annotated[str, typer.Argument(help="Run name (under --runs) or folder.")],
    images: OptionalImages = None,
    runs: RunsOption = Path("runs"),
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("explain.png"),
    data: MovedDataOption = None,
    max_images: Annotated[int, typer.Option("--max-images", help="Images in the grid, the first by name (0: all).")] = 64,
) -> None:
    """Grad-CAM heat maps: where the run's fold models looked for the class they predict (the first 64 images by
    name unless --max-images says otherwise; a line says when some were left out)."""
    from competition.report.explain import explain_run
    from competition.runs import resolve_run
    from competition.runs.run import contest_folder

    images = images or [contest_folder(resolve_run(run, runs), data)]  # its test images, by its layout
    written = explain_run(run, images, runs, out=out, limit=max_images,
                          on_note=lambda note: console.print(note, markup=False, highlight=False))
    console.print(f"Grad-CAM grid written to {written}")


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run name (under --runs) or folder.")],
    runs: RunsOption = Path("runs"),
    fmt: Annotated[ExportFormat, typer.Option("--format", parser=str, help="Model file format.")] = "keras",
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write (default exports/<run>-<format>).")] = None,
    data: MovedDataOption = None,
) -> None:
    """One deployable model (the mean of the fold models) with its classes, input size and a README."""
    from competition.export import export_run

    folder, difference = export_run(run, runs, fmt=fmt, out=out, data=data)
    console.print(f"{fmt} export written to {folder} (largest difference from the run: {difference:.1e})")


@app.command("runs")
def runs_(runs: RunsOption = Path("runs")) -> None:
    """Every run with its state (running, finished, damaged, unfinished), folds done, score, age and size."""
    from competition.runs.status import list_status, print_status

    print_status(list_status(runs), console)


@app.command()
def clean(
    runs: RunsOption = Path("runs"),
    yes: Annotated[bool, typer.Option("--yes", help="Remove them; without it, only list what would be removed.")] = False,
) -> None:
    """Remove unfinished runs (killed or failed trains); never a running, finished or damaged one."""
    from competition.runs.status import clean as clean_runs, size_text

    found = clean_runs(runs, remove=yes)
    for status in found:
        folds = f", {status.folds_done}/{status.n_folds} folds done" if status.n_folds else ""
        console.print(f"{'removed' if yes else 'would remove'} {status.path} ({size_text(status.size)}{folds})",
                      markup=False, highlight=False)
    total = size_text(sum(status.size for status in found))
    if not found:
        console.print(f"no unfinished runs in {runs}", markup=False, highlight=False)
    elif not yes:
        console.print(f"{len(found)} unfinished run(s), {total}; pass --yes to remove them")


# One example per command, shown at the end of its --help.
EXAMPLES = {
    "demo": "competition demo demo-data",
    "train": "competition train recipes/demo.yaml --data demo-data --set train.phases.0.epochs=3",
    "leaderboard": "competition leaderboard --format md",
    "submit": "competition submit demo --tune --out submissions/demo.csv",
    "ensemble": "competition ensemble demo demo-wide --name blend --method caruana",
    "aggregate": "competition aggregate blend --name blend-subjects",
    "validate": "competition validate submissions/demo.csv --sample demo-data/sample_submission.csv",
    "report": "competition report demo --data /new/place/demo-data",
    "doctor": "competition doctor recipes/demo.yaml --data demo-data",
    "augment-preview": "competition augment-preview recipes/demo.yaml --out preview.png",
    "audit": "competition audit demo-data --out audit",
    "predict": "competition predict demo new-scans/ --out predictions.csv --probabilities",
    "explain": "competition explain demo demo-data/test --out explain.png",
    "export": "competition export demo --format tflite",
    "runs": "competition runs --runs runs",
    "clean": "competition clean --yes",
}


def _add_examples() -> None:
    """Each command's example as the epilog of its help (tests/test_cli_help.py: every command has one)."""
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        if name in EXAMPLES:
            command.epilog = f"Example: {EXAMPLES[name]}"


_add_examples()  # every command is defined above


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


def _one_line_warnings() -> None:
    """Warnings about one image file (competition.data.decode.ImageWarning, their message naming the file) as
    one line on stderr, 'warning: <path>: ...', not Python's two lines naming the library's source."""
    import warnings

    shown = warnings.showwarning
    if getattr(shown, "one_line", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        decode = sys.modules.get("competition.data.decode")  # imported by whatever warned about an image
        if decode is not None and isinstance(category, type) and issubclass(category, decode.ImageWarning):
            err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show.one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    _one_line_warnings()
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
