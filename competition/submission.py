"""Submissions: write a run's test predictions in exactly the sample's format, validated first.

Three sample formats: one label column (``id,label``: the class name per row), one column per
class (``id,<class 1>,...``: probabilities), or, in a two-class contest, one column of numbers
(``id,target`` with ``0.5``: the positive class's probability; competition.data.contest.sample_format
tells them apart, positive_class names the class). Every CSV is read as literal text. Row numbers in
messages count data rows from 1 (the header is not a row), as a spreadsheet user would after freezing
the header.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.data.contest import positive_class, sample_format
from competition.errors import CompetitionError
from competition.files import CsvShapeError, read_string_csv, write_text
from competition.metrics import macro_f1
from competition.runs import Run
from competition.tuning import DecisionTuner

SHOW = 5  # rows/values named per problem before "and N more"
SUM_TOLERANCE = 1e-3
LOG_COLUMNS = ["time", "file", "run", "recipe_hash", "oof_macro_f1"]


def _rows(positions: np.ndarray, values: list[str] | None = None) -> str:
    """'rows 3, 7 ('x') and 12 more' from 0-based positions (and optional values shown beside them)."""
    positions = np.asarray(positions)
    shown = [
        f"{p + 1}" + (f" ({values[i]!r})" if values is not None else "") for i, p in enumerate(positions[:SHOW])
    ]
    more = f" and {len(positions) - SHOW} more" if len(positions) > SHOW else ""
    return ("row " if len(positions) == 1 else "rows ") + ", ".join(shown) + more


def _is_empty(column: pd.Series) -> np.ndarray:
    return (column.isna() | column.astype(str).str.strip().eq("")).to_numpy()


def validate_submission(frame: pd.DataFrame, sample: pd.DataFrame, classes: list[str] | None = None) -> list[str]:
    """Every way `frame` differs from what the sample's format demands; empty list means valid.

    Labels are checked against `classes` only when given: a sample's placeholder labels
    (often all one class) are not the vocabulary.
    """
    problems: list[str] = []
    expected, got = list(sample.columns), list(frame.columns)
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if missing:
        alike = [f"{e!r} as {g!r}" for e in missing for g in extra if e.strip().lower() == g.strip().lower()]
        hint = f"; the submission writes {', '.join(alike)} (names are compared as written)" if alike else ""
        problems.append(f"missing columns {missing} (sample columns: {expected}){hint}")
    if extra:
        problems.append(f"extra columns {extra} (sample columns: {expected})")
    if not missing and not extra and got != expected:
        problems.append(f"columns in order {got}, sample has {expected}")
    if len(frame) != len(sample):
        problems.append(f"{len(frame)} data rows, sample has {len(sample)}")

    for column in [c for c in expected if c in got]:
        empty = np.flatnonzero(_is_empty(frame[column]))
        if len(empty):
            problems.append(f"empty cells in column '{column}' at {_rows(empty)}")

    id_column = expected[0]
    if id_column in got:
        ids = frame[id_column].astype(str).to_numpy()
        sample_ids = sample[id_column].astype(str).to_numpy()
        duplicated = np.flatnonzero(pd.Series(ids).duplicated().to_numpy())
        if len(duplicated):
            problems.append(f"duplicate ids at {_rows(duplicated, list(ids[duplicated]))}")
        sample_set, id_set = set(sample_ids), set(ids)
        absent = np.flatnonzero([i not in id_set for i in sample_ids])
        if len(absent):
            problems.append(f"sample ids missing from submission: sample {_rows(absent, list(sample_ids[absent]))}")
        unknown = np.flatnonzero([i not in sample_set for i in ids])
        if len(unknown):
            problems.append(f"ids not in the sample at {_rows(unknown, list(ids[unknown]))}")
        if not len(duplicated) and not len(absent) and not len(unknown) and not np.array_equal(ids, sample_ids):
            moved = np.flatnonzero(ids != sample_ids)
            first = moved[0]
            problems.append(
                f"ids not in the sample's order at {_rows(moved)} "
                f"(row {first + 1} has {ids[first]!r}, sample has {sample_ids[first]!r})"
            )

    value_columns = [c for c in expected[1:] if c in got]
    kind = sample_format(sample, classes)
    if kind != "labels":
        values = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64) for c in value_columns}
        for c, v in values.items():
            bad = np.flatnonzero(np.isnan(v) & ~_is_empty(frame[c]))
            if len(bad):
                problems.append(f"column '{c}': not a number at {_rows(bad, list(frame[c].astype(str).to_numpy()[bad]))}")
            outside = np.flatnonzero((v < 0) | (v > 1))
            if len(outside):
                problems.append(f"column '{c}': outside [0, 1] at {_rows(outside, [f'{x:g}' for x in v[outside]])}")
        if values and not missing and kind == "probabilities":
            matrix = np.column_stack(list(values.values()))
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: reported above, not warned about
                sums = matrix.sum(axis=1)
                off = np.flatnonzero(np.isfinite(sums) & (np.abs(sums - 1.0) > SUM_TOLERANCE))
            if len(off):
                problems.append(
                    f"probabilities do not sum to 1 (±{SUM_TOLERANCE:g}) at {_rows(off, [f'sum {s:.6g}' for s in sums[off]])}"
                )
    elif classes is not None and value_columns:
        labels = frame[value_columns[0]].astype(str).to_numpy()
        known = set(classes)
        unknown_labels = np.flatnonzero([lab not in known and lab.strip() != "" for lab in labels])
        if len(unknown_labels):
            vocabulary = ", ".join(classes[:10]) + (f" and {len(classes) - 10} more" if len(classes) > 10 else "")
            problems.append(
                f"unknown labels in column '{value_columns[0]}' at "
                f"{_rows(unknown_labels, list(labels[unknown_labels]))}; known: {vocabulary}"
            )
    return problems


def read_csv_strings(path: str | Path) -> pd.DataFrame:
    """A CSV as literal text cells ('NA', 'None', '007' as written; empty cells ''), each row checked against
    the header, so validation sees what the grader sees (competition.files.read_string_csv)."""
    return read_string_csv(path)


def validate_file(
    submission_path: str | Path, sample_path: str | Path, classes: list[str] | None = None
) -> list[str]:
    """A submission whose rows do not fit its own header (a field too many or too few) has that one problem:
    everything else would be read shifted and reported wrongly. A bad sample is an error, not a problem."""
    sample = read_csv_strings(sample_path)
    try:
        frame = read_csv_strings(submission_path)
    except CsvShapeError as err:
        return [err.problem]
    return validate_submission(frame, sample, classes)


def _format_probability(x: float) -> str:
    return f"{x:.6f}"


def make_submission(
    run: Run,
    sample_path: str | Path,
    out_path: str | Path,
    tuner: DecisionTuner | None = None,
    log_path: Path | None = None,
) -> Path:
    """Write run's test predictions in the sample's columns and id order; refuse if invalid."""
    sample = read_csv_strings(sample_path)
    if len(sample.columns) < 2:
        raise CompetitionError(f"{sample_path}: sample needs an id column and at least one value column")
    id_column, value_columns = sample.columns[0], list(sample.columns[1:])
    position = {str(i): r for r, i in enumerate(run.test_ids)}
    sample_ids = sample[id_column].astype(str).to_numpy()
    absent = [i for i in sample_ids if i not in position]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise CompetitionError(f"sample id {absent[0]!r}{more} not in run '{run.name}' test ids")
    test = np.asarray(run.test, dtype=np.float64)[[position[i] for i in sample_ids]]

    rows: dict[str, object] = {id_column: sample_ids}
    kind = sample_format(sample, run.classes)
    if kind == "binary":
        if tuner is not None:
            raise CompetitionError(f"{sample_path}: a decision tuner applies to label submissions, not probabilities")
        positive = positive_class(value_columns[0], run.classes, sample_path)
        rows[value_columns[0]] = [_format_probability(x) for x in test[:, run.classes.index(positive)]]
    elif kind == "probabilities":
        if tuner is not None:
            raise CompetitionError(f"{sample_path}: a decision tuner applies to label submissions, not probabilities")
        unknown = [c for c in value_columns if c not in run.classes]
        if unknown:
            raise CompetitionError(f"{sample_path}: column {unknown[0]!r} is not a class of run '{run.name}' ({run.classes})")
        for c in value_columns:
            rows[c] = [_format_probability(x) for x in test[:, run.classes.index(c)]]
    else:
        pred = tuner.predict(test) if tuner is not None else test.argmax(axis=1)
        rows[value_columns[0]] = np.asarray(run.classes, dtype=object)[pred]
    frame = pd.DataFrame(rows, columns=list(sample.columns))

    problems = validate_submission(frame, sample, run.classes)
    if problems:
        raise CompetitionError(f"submission for run '{run.name}' refused: " + "; ".join(problems))
    out_path = Path(out_path)
    write_text(out_path, frame.to_csv(index=False))

    if log_path is not None:
        log_path = Path(log_path)
        log = read_string_csv(log_path) if log_path.is_file() else pd.DataFrame(columns=LOG_COLUMNS)
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "file": str(out_path),
            "run": run.name,
            "recipe_hash": run.recipe_hash,
            "oof_macro_f1": f"{macro_f1(run.y, run.oof):.6f}",
        }
        log = pd.concat([log, pd.DataFrame([entry])], ignore_index=True)
        write_text(log_path, log.to_csv(index=False))
    return out_path


def submit_run(run: str | Path, runs_dir: str | Path = "runs", *, out: str | Path | None = None,
               sample: str | Path | None = None, tune: bool = False,
               submissions_dir: str | Path = "submissions") -> tuple[Path, dict[str, Any] | None]:
    """`competition submit`: the run's test predictions, validated against the contest's sample, written
    to submissions/<run>.csv and logged in submissions/log.csv.

    With `tune`, per-class decision offsets are fitted on the OOF and applied only when their nested-CV gain
    (fit on the other folds, scored on the held-out one) is positive; the applied offsets and the figures
    that justified them are saved in the run folder (decisions.json), so later `submit` and `predict` calls
    use the same decisions; when the gain is not positive any saved decisions are removed. Without `tune`,
    saved decisions are used. The returned dict gives the in-sample and nested gains and "applied"."""
    from competition.runs import resolve_run
    from competition.runs.folder import read_decisions, remove_decisions, write_decisions
    from competition.tuning import nested_cv_gain

    run_dir = resolve_run(run, runs_dir)
    loaded = Run.load(run_dir)
    tuner, tuning = None, None
    if tune:
        tuning = nested_cv_gain(loaded.oof, loaded.y, loaded.folds)
        tuning["applied"] = tuning["nested_gain"] > 0
        if tuning["applied"]:
            tuner = DecisionTuner().fit(loaded.oof, loaded.y)
    else:
        saved = read_decisions(run_dir)
        if saved is not None:
            tuner = DecisionTuner()
            tuner.offsets_ = np.asarray(saved["offsets"], dtype=np.float64)
    sample_path = Path(sample) if sample is not None else Path(loaded.meta.get("sample_submission", ""))
    if sample is None and not sample_path.is_file():
        raise CompetitionError(f"run '{loaded.name}': its sample submission {sample_path} is gone; pass --sample")
    submissions_dir = Path(submissions_dir)
    out_path = Path(out) if out is not None else submissions_dir / f"{loaded.name}.csv"
    written = make_submission(loaded, sample_path, out_path, tuner=tuner, log_path=submissions_dir / "log.csv")
    if tuning is not None and tuner is not None:
        write_decisions(run_dir, {"offsets": [float(o) for o in tuner.offsets_],
                                  **{k: float(tuning[k]) for k in ("base_macro_f1", "in_sample_gain", "nested_gain")}})
    elif tuning is not None:
        remove_decisions(run_dir)
    return written, tuning
