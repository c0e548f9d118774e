"""Leaderboard: every run and ensemble scored on its out-of-fold predictions, as a table, Markdown, CSV or JSON.

Each row also shows how leaky its folds are: the share of validation images with a near twin in their training
folds (`leak_share`) beside the share of test images with a near twin in train (`test_twin_share`), both from
run.json's `cv` (competition.folds.SchemeChoice). A row whose leak share is more than
competition.folds.OPTIMISTIC_MARGIN (0.2, absolute) above the test's is `optimistic`: it carries a marker and a
note under the table says its estimate is likely too high and which cv setting to train with. Runs trained
before these figures were recorded show none and get no marker; an ensemble shows its members' (same folds).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError, OptionError
from competition.folds import OPTIMISTIC_MARGIN, optimistic
from competition.metrics import bootstrap_ci, fold_scores, score
from competition.runs import Run
from competition.runs.run import load_runs

FORMATS = ("table", "md", "csv", "json")
MARKER = "⚠"  # beside a run whose folds leak far more than the test does


def run_row(run: Run) -> dict[str, Any]:
    """Everything the leaderboard shows for one run (the JSON row; the other formats flatten it)."""
    scores = score(run.y, run.oof, run.classes)
    row: dict[str, Any] = {
        "run": run.name,
        "kind": run.kind,
        "scheme": run.scheme,
        "macro_f1": scores["macro_f1"],
        "accuracy": scores["accuracy"],
        "weighted_f1": scores["weighted_f1"],
        "per_class": scores["per_class"],
    }
    interval = bootstrap_ci(run.y, run.oof)
    row["macro_f1_ci"] = [interval["low"], interval["high"]]
    per_fold = fold_scores(run.y, run.oof, run.folds)
    row["fold_macro_f1"] = per_fold
    row["fold_std"] = float(np.std(per_fold))
    _add_leak(row, run.cv)
    return row


def _add_leak(row: dict[str, Any], cv: dict[str, Any] | None) -> None:
    """The fold record's leak figures on the row (nothing for runs that did not record them)."""
    if not isinstance(cv, dict):
        return
    row["cv"] = cv
    for key in ("leak_share", "test_twin_share"):
        if isinstance(cv.get(key), int | float):
            row[key] = float(cv[key])
    row["optimistic"] = optimistic(cv)


def leaderboard(runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """One row per run and ensemble, best OOF macro F1 first; then one row per damaged run, unscored:
    {"run": name, "damaged": the one-line problem naming the bad file} (`damaged_rows` picks them out)."""
    runs, damaged = load_runs(runs_dir)
    if not runs and not damaged:
        raise CompetitionError(f"{runs_dir}: no finished runs")
    rows = [run_row(r) for r in runs]
    scores = {row["run"]: row["macro_f1"] for row in rows}
    for row, run in zip(rows, runs, strict=True):
        members = [m for m in run.meta.get("members", []) if m in scores]
        if run.kind == "ensemble" and members:
            best = max(members, key=scores.__getitem__)
            row["best_member"], row["vs_best_member"] = best, row["macro_f1"] - scores[best]
        if run.kind == "ensemble" and "cv" not in row:  # members share its folds (check_same_folds)
            by_name = {r.name: r for r in runs}
            recorded = [by_name[m].cv for m in run.meta.get("members", []) if m in by_name and by_name[m].cv]
            _add_leak(row, recorded[0] if recorded else None)
    return (sorted(rows, key=lambda r: r["macro_f1"], reverse=True)
            + [{"run": name, "damaged": problem} for name, problem in damaged])


def damaged_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the scored rows, the damaged runs' rows) of a leaderboard."""
    return [r for r in rows if "damaged" not in r], [r for r in rows if "damaged" in r]


def damaged_note(row: dict[str, Any]) -> str:
    return f"run {row['run']} left out: {row['damaged']}"


def optimistic_note(rows: list[dict[str, Any]]) -> str | None:
    """One line naming the rows whose folds leak far more than the test does, or None when there are none."""
    flagged = [r for r in rows if r.get("optimistic")]
    if not flagged:
        return None
    figures = ", ".join(f"{r['run']} {r['leak_share']:.0%} vs {r['test_twin_share']:.0%}" for r in flagged)
    return (f"{MARKER} likely optimistic: more validation images have a near twin in their training folds than test "
            f"images have in train (by over {OPTIMISTIC_MARGIN * 100:g} points: {figures}); retrain with "
            "cv.scheme: auto (the default; or grouped) for an estimate that holds on the test")


def leaderboard_frame(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """The leaderboard as a DataFrame, best first: one row per finished run or ensemble with its OOF macro
    F1 (and 95% bootstrap interval ci_low, ci_high), accuracy, fold scheme, per-class F1 (`f1:<class>`) and,
    where run.json recorded them, leak_share, test_twin_share (floats in [0, 1]) and optimistic (bool; see the
    module docstring). A damaged run is left out with a warning naming its bad file."""
    rows, damaged = damaged_rows(leaderboard(runs_dir))
    for row in damaged:
        warnings.warn(damaged_note(row), stacklevel=2)
    return flat(rows)


def flat(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One column per figure, per-class F1 as `f1:<class>` (for CSV and Markdown); damaged runs left out."""
    records = []
    for row in damaged_rows(rows)[0]:
        record = {k: v for k, v in row.items() if k not in {"per_class", "fold_macro_f1", "macro_f1_ci", "cv"}}
        if "macro_f1_ci" in row:
            record["ci_low"], record["ci_high"] = row["macro_f1_ci"]
        for name, values in row["per_class"].items():
            record[f"f1:{name}"] = values["f1"]
        records.append(record)
    return pd.DataFrame.from_records(records)


def render(rows: list[dict[str, Any]], fmt: str, console: Any) -> str | None:
    """Table goes to the console; md/csv/json are returned as text. A damaged run is a note naming its bad
    file: after the tables, or on stderr for md/csv/json (so that their text stays one table)."""
    if fmt not in FORMATS:
        raise OptionError("fmt", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    rows, damaged = damaged_rows(rows)
    note = optimistic_note(rows)
    if fmt != "table":
        for row in damaged:
            print(f"warning: {damaged_note(row)}", file=sys.stderr)
        if note:
            print(f"warning: {note}", file=sys.stderr)
    if fmt == "json":
        return json.dumps(rows, indent=2)
    frame = flat(rows)
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.4f")
    if fmt == "md":
        return _markdown(frame)
    if rows:
        console.print(_rich_table(rows))
    if note:
        console.print(note, style="bold yellow", markup=False, highlight=False, soft_wrap=True)
    for row in rows:
        console.print(_per_class_table(row))
    for row in damaged:
        console.print(damaged_note(row), markup=False, highlight=False, soft_wrap=True)
    return None


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in record) + " |" for record in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _rich_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Leaderboard (out-of-fold)")
    classes = list(rows[0]["per_class"])
    table.add_column("#", justify="right")
    table.add_column("run")
    table.add_column("macro F1", justify="right", style="bold")
    table.add_column("95% CI", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("weighted F1", justify="right")
    for name in classes:
        table.add_column(f"F1 {name}", justify="right")
    table.add_column("fold ±", justify="right")
    table.add_column("vs best member", justify="right")
    table.add_column("folds")
    table.add_column("leak val/test", justify="right")
    for rank, row in enumerate(rows, 1):
        ci = row.get("macro_f1_ci")
        delta = row.get("vs_best_member")
        leak, test = row.get("leak_share"), row.get("test_twin_share")
        marker = f" {MARKER}" if row.get("optimistic") else ""
        shares = f"{leak:.1%} / {'?' if test is None else f'{test:.1%}'}{marker}" if leak is not None else ""
        requested = row.get("cv", {}).get("requested")
        table.add_row(
            str(rank), row["run"] + marker, f"{row['macro_f1']:.4f}", f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "",
            f"{row['accuracy']:.4f}", f"{row['weighted_f1']:.4f}",
            *(f"{row['per_class'][c]['f1']:.3f}" for c in classes),
            f"{row['fold_std']:.3f}" if "fold_std" in row else "",
            f"{delta:+.4f}" if delta is not None else "",
            f"{row['scheme']} (cv.scheme {requested})" if requested else row["scheme"],
            shares,
        )
    return table


def _per_class_table(row: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{row['run']}: per class (OOF)")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, values in row["per_class"].items():
        table.add_row(name, f"{values['precision']:.3f}", f"{values['recall']:.3f}", f"{values['f1']:.3f}",
                      str(values["support"]))
    return table


def leaderboard_for(run_dirs: list[Path], console: Any) -> list[dict[str, Any]]:
    """The leaderboard rows of just these runs, printed as tables (after training, say)."""
    rows = [run_row(Run.load(path)) for path in run_dirs]
    render(rows, "table", console)
    return rows
