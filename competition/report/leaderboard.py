"""Leaderboard: every run and ensemble scored on its out-of-fold predictions (the rows; competition.report.tables
renders them as a table, Markdown, CSV or JSON).

The table fits the terminal: by default compact columns (rank, run, OOF macro F1 with its 95% bootstrap interval,
the spread of the per-fold scores, fold scheme in short, backbone, image size, training time, leak figures); when
the terminal is narrower than they need, the least important (time, then size, backbone, scheme, fold spread and
leak figures) are left out with a note, never cutting a run name, score or interval. `per_class` adds a table of
per-class F1, `wide` shows every figure: in one table when the terminal is wide enough, else in as many tables
as it takes, each repeating the rank, run and macro F1 columns at their full width (a figure is never squeezed
out of sight). Markdown, CSV and JSON carry every figure, per-fold scores
included (CSV and Markdown as `f1:fold_<k>`, per-class F1 as `f1:<class>`; an empty cell where a run has no
value).

Each row also shows how leaky its folds are: the share of validation images with a near twin in their training
folds (`leak_share`) beside the share of test images with a near twin in train (`test_twin_share`), both from
run.json's `cv` (competition.folds.SchemeChoice). A row whose leak share is more than
competition.folds.OPTIMISTIC_MARGIN (0.2, absolute) above the test's is `optimistic`: it carries a marker and a
note under the table says its estimate is likely too high and which cv setting to train with. Runs trained
before these figures were recorded show none and get no marker; an ensemble shows its members' (same folds).

A damaged run (a file that does not read or does not fit the others) is left out of the scores and named in one
line under the table (on stderr for md, csv and json).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.ensemble import ensemble_summary
from competition.errors import CompetitionError
from competition.folds import OPTIMISTIC_MARGIN, optimistic
from competition.metrics import fold_metric, fold_scores, metric_ci, score
from competition.runs import Run
from competition.runs.folder import read_recipe
from competition.runs.run import load_runs

MARKER = "⚠"  # beside a run whose folds leak far more than the test does


def run_row(run: Run) -> dict[str, Any]:
    """Everything the leaderboard shows for one run (the JSON row; the other formats flatten it): metric and
    metric_title (the contest metric, recipe.data.metric), score (the run's OOF score by it; what the rows are
    ranked by), score_ci ([low, high], 95% bootstrap, subjects resampled when the folds know them), fold_std
    (of the per-fold scores), macro_f1, accuracy, weighted_f1 (floats in [0, 1]), fold_macro_f1 (one macro F1
    per fold, in fold order), per_class ({class: precision, recall, f1, support}),
    scheme and scheme_short, backbone and image_size (text, None when the run's recipe.yaml does not say),
    train_seconds (the folds' training time summed, None when not recorded) and the leak figures."""
    scores = score(run.y, run.oof, run.classes)
    metric = run.metric
    backbone, size = _recipe_facts(run)
    scheme = str(run.scheme or "")  # run.json is JSON, not always what was written: text from here on
    row: dict[str, Any] = {
        "run": str(run.name),
        "kind": run.kind,
        "scheme": scheme,
        "scheme_short": short_scheme(scheme, run.cv),
        "metric": metric.name,
        "metric_title": metric.title,
        "metric_header": metric.header,
        "score": run.score(),
        "macro_f1": scores["macro_f1"],
        "accuracy": scores["accuracy"],
        "weighted_f1": scores["weighted_f1"],
        "per_class": scores["per_class"],
        "backbone": backbone,
        "image_size": size,
        "train_seconds": _train_seconds(run.record),
    }
    row["contest_id"], row["contest"] = run.contest  # runs are ranked against runs of their own contest
    # subjects, not slices, are independent
    interval = metric_ci(metric, run.y, run.oof, groups=run.subjects, folds=run.folds)
    row["ci_resamples"] = "subjects" if run.subjects is not None else "images"
    row["score_ci"] = [interval["low"], interval["high"]]
    row["fold_macro_f1"] = fold_scores(run.y, run.oof, run.folds)
    row["fold_std"] = float(np.std(fold_metric(metric, run.y, run.oof, run.folds)))
    summary = ensemble_summary(run)
    if summary is not None:
        row["method"] = summary["method"]
        row["in_sample_score"] = summary["in_sample"]
    _add_leak(row, run.cv)
    doubt = run.estimate_doubt()
    if doubt:
        row["doubt"], row["optimistic"] = doubt, True
    return row


def short_scheme(scheme: str, cv: dict[str, Any] | None = None) -> str:
    """'strat 5f' or 'group 5f' from a scheme name (competition.folds.describe_scheme) or fold record; the
    name itself when it is neither."""
    kind = cv.get("scheme") if isinstance(cv, dict) else None
    folds = cv.get("folds") if isinstance(cv, dict) else None
    match = re.match(r"(stratified|grouped|seen subjects)\b.*?(\d+)-fold", scheme or "")
    if match:
        kind, folds = kind or match.group(1).replace(" ", "_"), folds or match.group(2)
    short = {"stratified": "strat", "grouped": "group", "seen_subjects": "seen"}
    if kind not in short or folds is None:
        return scheme or ""
    return f"{short[kind]} {folds}f"


def _recipe_facts(run: Run) -> tuple[str | None, str | None]:
    """(backbone, image size) from the run's recipe.yaml; an ensemble's backbone is '<method> of <n>'. Either is
    None when the recipe does not say (or does not read: the scores do not depend on it)."""
    if run.kind == "ensemble":
        return f"{run.record.method or 'ensemble'} of {len(run.record.members)}", None
    try:
        recipe = read_recipe(run.path)
    except CompetitionError:  # a damaged or newer recipe.yaml: not said here (the scores do not depend on it)
        return None, None
    backbone = recipe.model.backbone if recipe.model.kind == "network" else recipe.model.kind
    height, width = recipe.data.image_size
    return str(backbone), str(height) if height == width else f"{height}x{width}"


def _train_seconds(record: Any) -> float | None:
    """The folds' training seconds summed (a resumed run counts every fold once), else the last call's wall time
    (a competition.runs.record.RunRecord's)."""
    folds = record.fold_seconds
    if folds and all(s is not None for s in folds):
        return float(sum(folds))
    return record.wall_seconds


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
    """One row per run and ensemble, best OOF score (by each run's contest metric, larger-is-better after
    orientation) first; then one row per damaged run, unscored: {"run": name, "damaged": the one-line problem
    naming the bad file} (`damaged_rows` picks them out). An ensemble's row also has best_member and
    vs_best_member (its nested-CV score against that member's, in the metric's direction) and its members'
    image size when they share one."""
    runs, damaged = load_runs(runs_dir)
    if not runs and not damaged:
        raise CompetitionError(f"{runs_dir}: no finished runs")
    rows = [run_row(r) for r in runs]
    by_name = {row["run"]: row for row in rows}
    for row, run in zip(rows, runs, strict=True):
        if run.kind != "ensemble":
            continue
        members = [by_name[m] for m in run.record.members if m in by_name]
        # The ensemble's own record of its members' scores, so members kept outside this runs folder count too.
        summary = ensemble_summary(run)
        metric = run.metric
        if summary is not None and summary.get("best_member_score") is not None:
            row["best_member"], row["vs_best_member"] = summary["best_member"], summary["vs_best_member"]
        elif members:
            best = max(members, key=lambda m: metric.oriented(m["score"]))
            row["best_member"] = best["run"]
            row["vs_best_member"] = metric.oriented(row["score"]) - metric.oriented(best["score"])
        if members:
            sizes = {m["image_size"] for m in members}
            row["image_size"] = sizes.pop() if len(sizes) == 1 else None
        if "cv" not in row:  # members share its folds (check_same_folds)
            recorded = [by_name[m["run"]].get("cv") for m in members if by_name[m["run"]].get("cv")]
            _add_leak(row, recorded[0] if recorded else None)
    return (sorted(rows, key=lambda r: _oriented(r), reverse=True)
            + [{"run": name, "damaged": problem} for name, problem in damaged])


def _oriented(row: dict[str, Any]) -> float:
    """A row's score made larger-is-better (a loss negated), for ranking."""
    from competition.metrics import METRICS

    metric = METRICS.get(row.get("metric", "macro_f1"), METRICS["macro_f1"])
    return metric.oriented(row["score"])


def contest_groups(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Scored rows by contest and metric ('<folder name> (<contest id>)', with ', by <metric>' when one contest's
    runs declare two metrics; when there are several, in the order of each contest's best row), so that runs are
    ranked only against runs of their own contest and metric."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("contest_id", "")), str(row.get("metric", "macro_f1"))), []).append(row)
    if len(groups) < 2:
        return {"": rows} if rows else {}
    contests = {key for key, _ in groups}
    return {f"{g[0].get('contest', '?')} ({key})" + (f", by {g[0].get('metric_title', metric)}"
                                                       if len(contests) < len(groups) else ""): g
            for (key, metric), g in groups.items()}


def damaged_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the scored rows, the damaged runs' rows) of a leaderboard."""
    return [r for r in rows if "damaged" not in r], [r for r in rows if "damaged" in r]


def damaged_note(row: dict[str, Any]) -> str:
    return f"run {row['run']} left out: {row['damaged']}"


def relation_note(rows: list[dict[str, Any]]) -> str | None:
    """One line: how the test relates to train and the folds that mirror it, from the first row whose fold
    record measured the test (competition.folds); None when no run did."""
    for row in rows:
        cv = row.get("cv")
        test = cv.get("test") if isinstance(cv, dict) else None
        if isinstance(test, dict) and test.get("relation_text"):
            scheme = str(test.get("closest_scheme", "")).replace("_", " ")
            return (f"the test holds {test['relation_text']} ({test['chain_share']:.0%} of its images joined to "
                    f"train by near twins): {scheme} folds mirror it; trust the {MARKER}-free estimates")
    return None


def optimistic_note(rows: list[dict[str, Any]]) -> str | None:
    """One line naming the rows whose folds leak far more than the test does, or None when there are none."""
    doubted = [r for r in rows if r.get("doubt")]
    if doubted:
        rest = [r for r in rows if r.get("optimistic") and not r.get("doubt")]
        return (f"{MARKER} {', '.join(r['run'] for r in doubted)}: {doubted[0]['doubt']}; `submit` prefers a run "
                "without the marker" + (f" ({', '.join(r['run'] for r in rest)}: folds unlike the test)" if rest
                                        else ""))
    flagged = [r for r in rows if r.get("optimistic")]
    if not flagged:
        return None
    unlike = [r for r in flagged if isinstance(r.get("cv"), dict) and "test" in r["cv"]]
    if unlike:  # marked by `match`: folds another scheme mirrors the test better than
        return (f"{MARKER} {', '.join(r['run'] for r in unlike)}: folds unlike the test ("
                + "; ".join(f"{r['cv'].get('scheme')} against {r['cv']['test'].get('closest_scheme')}" for r in unlike)
                + "): the estimate may be far too high or too low; retrain with cv.scheme: auto (the default)")
    figures = ", ".join(f"{r['run']} {r.get('leak_share', 0):.0%} vs {r.get('test_twin_share', 0):.0%}"
                        for r in flagged)
    return (f"{MARKER} likely optimistic: more validation images have a near twin in their training folds than test "
            f"images have in train (by over {OPTIMISTIC_MARGIN * 100:g} points: {figures}); retrain with "
            "cv.scheme: auto (the default; or grouped) for an estimate that holds on the test")


def below_member_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per ensemble whose honest (nested-CV) score is not above its best member's."""
    return [f"{r['run']} scores {r['vs_best_member']:+.4f} against its best member {r['best_member']} under nested "
            "CV: `submit` picks the member" for r in rows if r.get("vs_best_member") is not None
            and r["vs_best_member"] <= 0]


def leaderboard_frame(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """The leaderboard as a DataFrame, best first: one row per finished run or ensemble with its OOF macro
    F1 (and 95% bootstrap interval ci_low, ci_high), fold_std, accuracy, fold scheme, backbone, image_size,
    train_seconds, per-class F1 (`f1:<class>`), per-fold macro F1 (`f1:fold_<k>`) and, where run.json recorded
    them, leak_share, test_twin_share (floats in [0, 1]) and optimistic (bool; see the module docstring). A
    damaged run is left out with a warning naming its bad file."""
    rows, damaged = damaged_rows(leaderboard(runs_dir))
    for row in damaged:
        warnings.warn(damaged_note(row), stacklevel=2)
    return flat(rows)


def flat(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One column per figure (for CSV and Markdown): ci_low and ci_high, per-class F1 as `f1:<class>`, per-fold
    macro F1 as `f1:fold_<k>`; damaged runs left out; NaN where a run has no value."""
    records = []
    for row in damaged_rows(rows)[0]:
        # the metric's display names are the table's headers, not figures: left out of CSV and Markdown
        record = {k: v for k, v in row.items() if not isinstance(v, list | dict)
                  and k not in ("metric_title", "metric_header")}
        if "score_ci" in row:
            record["ci_low"], record["ci_high"] = row["score_ci"]
        for name, values in row["per_class"].items():
            record[f"f1:{name}"] = values["f1"]
        for k, value in enumerate(row.get("fold_macro_f1", [])):
            record[f"f1:fold_{k}"] = value
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if "train_seconds" in frame:  # whole seconds; an empty cell where not recorded
        frame["train_seconds"] = pd.to_numeric(frame["train_seconds"]).round().astype("Int64")
    first = [c for c in ("run", "kind", "scheme", "metric", "score", "ci_low", "ci_high", "fold_std", "macro_f1")
             if c in frame]
    return frame[first + [c for c in frame.columns if c not in first]]


def ci_text(row: dict[str, Any]) -> str:
    """A row's 95% interval as text ("0.612–0.795"), "" when it has none."""
    ci = row.get("score_ci")
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else ""


# ---------------------------------------------------------------- one line per new run


def standing(run_dirs: list[Path]) -> list[str]:
    """One line per run: its OOF macro F1 with the 95% interval and its rank on the leaderboard of its runs
    folder (an ensemble's line adds the in-sample figure and its gap to the best member), for `train` and
    `ensemble` to end with instead of the whole table."""
    lines = []
    boards: dict[Path, list[dict[str, Any]]] = {}
    for run_dir in map(Path, run_dirs):
        folder = run_dir.parent
        if folder not in boards:
            boards[folder] = damaged_rows(leaderboard(folder))[0]
        run = Run.load(run_dir)
        name = str(run.name)
        rows = [r for r in boards[folder] if r.get("contest_id") == run.contest[0]]  # ranked within its contest
        rank, row = next(((i, r) for i, r in enumerate(rows, 1) if r["run"] == name), (None, None))
        if row is None:  # not listed under its folder (a damaged neighbour of its name): its own figures only
            row = run_row(run)
            rank, rows = 1, [row]
        line = (f"{name}: OOF {row.get('metric_title', 'macro F1')} {row['score']:.4f} (95% CI {ci_text(row)}), "
                f"rank {rank} of {len(rows)} in {folder}")
        if row.get("kind") == "ensemble":
            if row.get("in_sample_score") is not None and row["in_sample_score"] != row["score"]:
                line += f"; nested CV, {row['in_sample_score']:.4f} in-sample"
            if row.get("vs_best_member") is not None:
                line += f"; {row['vs_best_member']:+.4f} against its best member {row['best_member']}"
        lines.append(line)
    return lines


def leaderboard_for(run_dirs: list[Path], console: Any) -> list[str]:
    """Print `standing` of these runs (after training, say): one line each; returns the lines."""
    lines = standing(run_dirs)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return lines
