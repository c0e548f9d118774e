"""Submissions: write a run's test predictions in exactly the sample's format, validated first.

Three sample formats: one label column (``id,label``: the class name per row), one column per
class (``id,<class 1>,...``: probabilities), or, in a two-class contest, one column of numbers
(``id,target`` with ``0.5``: the positive class's probability; competition.data.contest.sample_format
tells them apart, positive_class names the class). Every CSV is read as literal text. Row numbers in
messages count data rows from 1 (the header is not a row), as a spreadsheet user would after freezing
the header.

A sample may also carry Kaggle's public/private marker column ('Usage': Public/Private per row, copied from a
solution file; competition.data.contest.marker_columns). The submission leaves it out: Kaggle scores the id and
prediction columns and rejects a column it does not expect, so a submission with it is refused here too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.data.contest import marker_columns, positive_class, sample_format
from competition.data.contest import value_columns as submission_values
from competition.errors import CompetitionError, OptionError
from competition.files import CsvShapeError, check_output, csv_header, locked, read_string_csv, write_text
from competition.metrics import get_metric, macro_f1
from competition.runs import Run
from competition.tuning import DecisionTuner, GradeThresholds, label_sets

SHOW = 5  # rows/values named per problem before "and N more"
SUM_TOLERANCE = 1e-3
LOG_FILE = "log.csv"  # in the folder of the submissions it logs
# file: the submission's name (beside the log); oof_macro_f1: the run's OOF macro F1 (an ensemble's nested-CV
# one); tuned: yes when tuned decisions were applied; honest_macro_f1: the macro F1 the file is expected to
# score (with tuning, its nested-CV figure; empty when decisions tuned for another metric were applied);
# message: the user's note (`submit --message`); metric: the contest metric (recipe.data.metric); expected: the
# file's expected score by it (the honest figure)
LOG_COLUMNS = ["time", "file", "run", "recipe_hash", "oof_macro_f1", "tuned", "honest_macro_f1", "message",
               "metric", "expected"]


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


def validate_submission(frame: pd.DataFrame, sample: pd.DataFrame, classes: list[str] | None = None, *,
                        probabilities: bool | None = None, separator: str | None = None,
                        no_label: bool = False) -> list[str]:
    """Every way `frame` differs from what the sample's format demands; empty list means valid. Rows may come in
    any order (the id set must equal the sample's, each id once), as Kaggle accepts.

    Labels are checked against `classes` only when given: a sample's placeholder labels
    (often all one class) are not the vocabulary. `probabilities`: whether the contest metric reads
    probabilities (contest.sample_format); None when unknown (`validate` without a run): a one-column sample of
    whole numbers answered with numbers that are not all class names is read as the positive class's
    probability, as an AUC contest's 0/1 sample is. `separator`: a multi-label contest's (its label column holds
    labels joined by it, each checked; its per-label probability columns need not sum to 1). `no_label`: such a
    contest's images may carry none of the labels (recipe.data.label_columns), so an empty label cell is an
    image without one, not a missing value.
    """
    expected, got = [sample.columns[0], *submission_values(sample)], list(frame.columns)
    labels_only = no_label and len(expected) == 2 and sample_format(sample, classes, multilabel=True) == "labels"
    problems, missing = _column_problems(frame, sample, expected, got, empty_ok=expected[1:] if labels_only else [])
    if expected[0] in got:
        problems += _id_problems(frame[expected[0]].astype(str).to_numpy(), sample[expected[0]].astype(str).to_numpy())
    value_columns = [c for c in expected[1:] if c in got]
    return problems + _value_problems(frame, sample, value_columns, classes, probabilities, missing=bool(missing),
                                      separator=separator)


def _column_problems(frame: pd.DataFrame, sample: pd.DataFrame, expected: list[str],
                     got: list[str], empty_ok: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(the problems of the submission's columns, row count and empty cells (but in `empty_ok`); the sample's
    columns it lacks)."""
    problems: list[str] = []
    markers = [c for c in marker_columns(sample) if c in got]
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected and c not in markers]
    if markers:
        problems.append(f"column {markers[0]!r} is the sample's public/private marker (Kaggle's Usage column), "
                        f"not a prediction: leave it out (Kaggle rejects columns it does not score; columns to "
                        f"write: {expected})")
    if missing:
        alike = [f"{e!r} as {g!r}" for e in missing for g in extra if e.strip().lower() == g.strip().lower()]
        hint = f"; the submission writes {', '.join(alike)} (names are compared as written)" if alike else ""
        problems.append(f"missing columns {missing} (sample columns: {expected}){hint}")
    if extra:
        problems.append(f"extra columns {extra} (sample columns: {expected})")
    if not missing and not extra and not markers and got != expected:
        problems.append(f"columns in order {got}, sample has {expected}")
    if len(frame) != len(sample):
        problems.append(f"{len(frame)} data rows, sample has {len(sample)}")
    for column in [c for c in expected if c in got and c not in empty_ok]:
        empty = np.flatnonzero(_is_empty(frame[column]))
        if len(empty):
            problems.append(f"empty cells in column '{column}' at {_rows(empty)}")
    return problems, missing


def _id_problems(ids: np.ndarray, sample_ids: np.ndarray) -> list[str]:
    """Duplicate, missing and unknown ids. Rows in another order than the sample's are valid, as Kaggle matches
    rows by id (submissions this tool writes keep the sample's order all the same)."""
    problems: list[str] = []
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
    return problems


def _value_problems(frame: pd.DataFrame, sample: pd.DataFrame, value_columns: list[str],
                    classes: list[str] | None, probabilities: bool | None, *, missing: bool,
                    separator: str | None = None) -> list[str]:
    """The values' problems, by what the sample asks for (sample_format): numbers in [0, 1] (summing to 1 across
    a probability sample's columns), or labels among `classes` when given."""
    problems: list[str] = []
    kind = sample_format(sample, classes, probabilities=bool(probabilities), multilabel=separator is not None)
    if (probabilities is None and separator is None and kind == "labels" and len(value_columns) == 1
            and sample_format(sample, classes, probabilities=True) == "binary"):
        written = frame[value_columns[0]].astype(str).str.strip()
        numbers = pd.to_numeric(written, errors="coerce")
        numeric = bool(numbers.notna().all() and numbers.between(0, 1).all())  # probabilities, every one
        fractions = not written.str.fullmatch(r"[+-]?\d+").all()
        known_pair = classes is not None and len(classes) == 2 and not written.isin(list(classes)).all()
        if numeric and (fractions or known_pair):
            kind = "binary"  # a 0/1 sample answered with probabilities (an AUC contest): both readings are the sample's
    if kind != "labels":
        values = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64) for c in value_columns}
        for c, v in values.items():
            bad = np.flatnonzero(np.isnan(v) & ~_is_empty(frame[c]))
            if len(bad):
                problems.append(f"column '{c}': not a number at {_rows(bad, list(frame[c].astype(str).to_numpy()[bad]))}")
            outside = np.flatnonzero((v < 0) | (v > 1))
            if len(outside):
                problems.append(f"column '{c}': outside [0, 1] at {_rows(outside, [f'{x:g}' for x in v[outside]])}")
        if values and not missing and kind == "probabilities" and separator is None:
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
        def unknown(text: str) -> bool:
            parts = [t.strip() for t in text.split(separator)] if separator is not None else [text]
            return text.strip() != "" and any(part not in known for part in parts)
        unknown_labels = np.flatnonzero([unknown(lab) for lab in labels])
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
    submission_path: str | Path, sample_path: str | Path, classes: list[str] | None = None,
    separator: str | None = None, no_label: bool = False,
) -> list[str]:
    """A submission whose rows do not fit its own header (a field too many or too few) has that one problem:
    everything else would be read shifted and reported wrongly. A bad sample is an error, not a problem."""
    sample = read_csv_strings(sample_path)
    if not len(sample):  # every submission of the same header alone would be "valid" against it
        raise CompetitionError(f"{sample_path}: no rows, only the header; a sample lists every test id")
    try:
        frame = read_csv_strings(submission_path)
    except CsvShapeError as err:
        return [err.problem]
    return validate_submission(frame, sample, classes, separator=separator, no_label=no_label)


def label_classes(sample_path: str | Path, classes: Sequence[str] | None = None, run: str | Path | None = None,
                  runs_dir: str | Path = "runs") -> tuple[list[str] | None, str]:
    """(the labels a submission may use, where they come from) for `check_file`: `classes` when given; else
    the training classes of the contest the sample lies in (its folder's train/ or train.csv), narrowed to the
    run's classes when `run` is given (a name under runs_dir or a folder); (None, why not) when neither is
    known. A contest folder that does not index (competition.data.index_contest) counts as unknown."""
    from competition.data import index_contest
    from competition.runs import resolve_run

    if classes:
        return list(classes), "--classes"
    root = Path(sample_path).parent
    known: list[str] | None = None
    where: list[str] = []
    unknown = "the sample is not in a contest folder"
    loaded = Run.load(resolve_run(run, runs_dir)) if run is not None else None
    layout = loaded.record.contest_layout() if loaded is not None else None  # the run's contest's layout
    if (root / (layout.train_images if layout else "train")).is_dir() or (root / "train.csv").is_file() or layout:
        try:
            known = list(index_contest(root, layout).classes)
            where.append(f"the training classes of {root}")
        except CompetitionError as exc:
            unknown = (f"its contest folder does not read: {exc}" if layout is not None else
                       f"{root} does not read as a contest of the default layout (a layout a recipe declares is "
                       "known through --run)")
    if loaded is not None:
        known = [c for c in (known if known is not None else loaded.classes) if c in loaded.classes]
        where.append(f"run {loaded.name}'s classes")
    if known is None:
        return None, f"no class list: {unknown}; pass --run or --classes"
    return known, " and ".join(where)


def check_file(submission_path: str | Path, sample_path: str | Path | None, *, classes: Sequence[str] | None = None,
               run: str | Path | None = None, runs_dir: str | Path = "runs",
               separator: str | None = None) -> tuple[list[str], str, Path]:
    """`competition validate`: (every problem of the submission against the sample, as `validate_file`; a line
    saying what its labels were checked against; the sample used). Labels are checked by default against
    `label_classes`. `sample_path` None: the sample of `run`'s contest (its declared layout, where the contest is
    now); OptionError (`--sample`) when neither is given. `separator`: a multi-label contest's, when no `run`
    says it (`--label-separator`)."""
    if sample_path is None:
        if run is None:
            raise OptionError("sample", "give the contest's sample submission, or --run (its contest's sample is used)")
        from competition.runs import Run, resolve_run

        sample_path = Run.load(resolve_run(run, runs_dir)).sample_submission()
    known, where = label_classes(sample_path, classes, run, runs_dir)
    no_label = False
    if run is not None:  # run.json alone: label_classes has read the run's arrays already
        from competition.runs import resolve_run
        from competition.runs.record import RunRecord

        layout = RunRecord.read(resolve_run(run, runs_dir)).contest_layout()
        separator, no_label = layout.label_separator, layout.allows_no_label
    problems = validate_file(submission_path, sample_path, known, separator, no_label=no_label)
    if run is None and separator is None:  # nothing says the contest is multi-label: say how to tell it
        problems = [p + (" (a multi-label contest's need not: give --run RUN, or --label-separator '|')"
                         if p.startswith("probabilities do not sum to 1") else "") for p in problems]
    checked = f"labels checked against {where}" if known is not None else f"labels not checked ({where})"
    return problems, checked, Path(sample_path)


def _format_probability(x: float) -> str:
    return f"{x:.6f}"


def make_submission(
    run: Run,
    sample_path: str | Path,
    out_path: str | Path,
    tuner: DecisionTuner | GradeThresholds | None = None,
    log_path: Path | None = None,
    *,
    honest: float | None = None,
    message: str = "",
) -> Path:
    """Write run's test predictions in the sample's columns and id order; refuse if invalid. With `log_path`,
    append a row to that CSV (LOG_COLUMNS; `honest`, the expected score by the run's contest metric, defaults to
    the run's OOF score)."""
    sample = _read_sample(sample_path)
    frame = _submission_frame(run, sample, sample_path, tuner)
    problems = validate_submission(frame, sample, run.classes, probabilities=run.metric.needs == "probabilities",
                                   separator=run.separator, no_label=run.allows_no_label)
    if problems:
        raise CompetitionError(f"submission for run '{run.name}' refused: " + "; ".join(problems))
    out_path = Path(out_path)
    check_outputs(run, sample_path, out_path, log_path)
    write_text(out_path, frame.to_csv(index=False))
    if log_path is not None:
        _log_submission(Path(log_path), out_path, run, tuned=tuner is not None,
                        expected=run.score() if honest is None else honest, message=message)
    return out_path


def _read_sample(sample_path: str | Path) -> pd.DataFrame:
    """The sample submission, every cell a string; CompetitionError of one line when it has no value column or
    no row (a submission of its header alone would be "valid" against it)."""
    sample = read_csv_strings(sample_path)
    if len(sample.columns) < 2:
        raise CompetitionError(f"{sample_path}: sample needs an id column and at least one value column")
    if not len(sample):
        raise CompetitionError(f"{sample_path}: no rows, only the header; a sample lists every test id")
    return sample


def _submission_frame(run: Run, sample: pd.DataFrame, sample_path: str | Path,
                      tuner: DecisionTuner | GradeThresholds | None) -> pd.DataFrame:
    """run's test predictions in the sample's id order and value columns (no marker column such as Usage): the
    positive class's probability (binary), every class's (probabilities), or the decided label (labels, through
    `tuner` when given). CompetitionError naming the sample for an id the run did not predict, a column that is
    not a class, or a tuner on a probability submission."""
    id_column, value_columns = sample.columns[0], submission_values(sample)
    position = {str(i): r for r, i in enumerate(run.test_ids)}
    sample_ids = sample[id_column].astype(str).to_numpy()
    absent = [i for i in sample_ids if i not in position]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise CompetitionError(f"sample id {absent[0]!r}{more} not in run '{run.name}' test ids")
    test = np.asarray(run.test, dtype=np.float64)[[position[i] for i in sample_ids]]

    rows: dict[str, object] = {id_column: sample_ids}
    kind = sample_format(sample, run.classes, probabilities=run.metric.needs == "probabilities",
                         multilabel=run.multilabel)
    if kind != "labels" and tuner is not None:
        raise CompetitionError(f"{sample_path}: a decision tuner applies to label submissions, not probabilities")
    if kind == "binary":
        positive = positive_class(value_columns[0], run.classes, sample_path, run.record.positive_class or None)
        rows[value_columns[0]] = [_format_probability(x) for x in test[:, run.classes.index(positive)]]
    elif kind == "probabilities":
        unknown = [c for c in value_columns if c not in run.classes]
        if unknown:
            raise CompetitionError(f"{sample_path}: column {unknown[0]!r} is not a class of run '{run.name}' ({run.classes})")
        for c in value_columns:
            rows[c] = [_format_probability(x) for x in test[:, run.classes.index(c)]]
    elif run.multilabel:
        rows[value_columns[0]] = run.label_texts(label_sets(test, tuner, at_least_one=not run.allows_no_label))
    else:
        pred = tuner.predict(test) if tuner is not None else test.argmax(axis=1)
        rows[value_columns[0]] = np.asarray(run.classes, dtype=object)[pred]
    return pd.DataFrame(rows, columns=[id_column, *value_columns])


def _log_submission(log_path: Path, out_path: Path, run: Run, *, tuned: bool, expected: float,
                    message: str) -> None:
    """One row (LOG_COLUMNS) added to the submission log, under its lock (read, one row added, written back:
    never while another submit does the same); older logs with fewer columns keep their rows."""
    oof_macro_f1 = macro_f1(run.y, run.oof)
    # under another metric, decisions tuned for it are not macro F1's: no macro F1 figure is known for the file
    honest_f1 = (f"{expected:.6f}" if run.metric.name == "macro_f1" else "" if tuned else f"{oof_macro_f1:.6f}")
    entry = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "file": out_path.name if out_path.parent.resolve() == log_path.parent.resolve() else str(out_path),
        "run": run.name,
        "recipe_hash": run.recipe_hash,
        "oof_macro_f1": f"{oof_macro_f1:.6f}",
        "tuned": "yes" if tuned else "no",
        "honest_macro_f1": honest_f1,
        "message": " ".join(message.split()),
        "metric": run.metric.name,
        "expected": f"{expected:.6f}",
    }
    with locked(log_path):
        log = read_string_csv(log_path) if log_path.is_file() else pd.DataFrame(columns=LOG_COLUMNS)
        log = pd.concat([log, pd.DataFrame([entry])], ignore_index=True).fillna("")
        write_text(log_path, log.to_csv(index=False))


def check_outputs(run: Run, sample_path: str | Path, out_path: str | Path, log_path: str | Path | None) -> None:
    """Where a submission and its log may go (competition.files.check_output): never on or inside the run's
    contest folder or run folder, never on the sample; an existing file is replaced only when it is a
    submission of the sample's columns (the submission) or a log of LOG_COLUMNS (the log). OptionError of one
    line naming the file otherwise."""
    protected = [("the run's contest folder", run.data_root), ("the sample submission", sample_path),
                 ("the run folder", run.path)]
    out_path = Path(out_path)
    if log_path is not None and Path(log_path).resolve() == out_path.resolve():
        raise OptionError("out", f"{out_path}: is the submission log of its folder ({LOG_FILE}); give the "
                                 "submission another name")
    header = csv_header(sample_path)
    if header is not None:  # a submission leaves the sample's marker columns (Kaggle's Usage) out
        markers = set(marker_columns(read_csv_strings(sample_path)))
        header = [c for c in header if c not in markers]
    check_output(out_path, protected=protected, ours=lambda p: header is not None and csv_header(p) == header,
                 what="a submission with the sample's columns")
    if log_path is None:
        return
    check_output(log_path, protected=protected, what=f"a submission log ({','.join(LOG_COLUMNS[:3])},...)",
                 ours=lambda p: (csv_header(p) or [])[:3] == LOG_COLUMNS[:3])


@dataclass
class Choice:
    """The run `choose_run` picked: its folder, name, honest OOF score by the contest metric (`metric`, a
    competition.metrics.Metric) and the one line saying why."""

    path: Path
    name: str
    score: float
    reason: str
    metric: Any = None


@dataclass
class Submitted:
    """What `submit` did: the file written, the log it went into, the choice, the tuning figures (None without
    --tune), whether decision offsets were applied (tuned now or saved by an earlier --tune), and the score (by
    the contest metric) the file is honestly expected to score (OOF; with offsets, their nested-CV figure)."""

    path: Path
    log: Path
    choice: Choice
    tuning: dict[str, Any] | None
    tuned: bool
    honest: float
    notes: list[str] = field(default_factory=list)  # decisions not applied, and why (one line each)

    def lines(self) -> list[str]:
        """What `competition submit` prints: the choice and why, the tuning verdict, the file."""
        lines = [f"submitting {self.choice.reason}"]
        if self.tuning is not None:
            t = self.tuning
            what = t["kind"]
            verdict = ("applied, and saved in the run for later submit and predict calls" if t["applied"] else
                       f"not applied: the nested-CV gain is not positive, so the {what} would only fit noise")
            title = get_metric(t["metric"]).title
            lines.append(f"decision tuning ({what}): OOF {title} {t['base_score']:.4f} -> {t['in_sample_score']:.4f} "
                         f"in-sample ({t['in_sample_gain']:+.4f}), {t['nested_gain']:+.4f} under nested CV "
                         f"(the honest gain); {verdict}")
        elif self.tuned:
            lines.append("decisions saved by an earlier submit --tune applied")
        lines += self.notes
        title = self.choice.metric.title if self.choice.metric is not None else "macro F1"
        lines.append(f"submission written to {self.path} (expected {title} {self.honest:.4f}; logged in {self.log})")
        return lines


def choose_run(candidates: Sequence[str | Path] | None, runs_dir: str | Path = "runs") -> Choice:
    """The candidate with the best honest OOF macro F1: every finished run under runs_dir when `candidates` is
    empty or None (damaged runs left out), else the named runs (names under runs_dir, or folders); all of one
    contest (Run.contest), else CompetitionError of one line naming two runs and their contests. A run whose
    estimate is likely optimistic on this test for its kind of model (Run.estimate_doubt) ranks after every other
    and is chosen only when all are; the reason names what was set aside. An ensemble's
    OOF is its nested-CV one (competition.ensemble.cross_val_oof), so an ensemble is chosen only when it beats
    every candidate model, its members among them, under nested CV; on a tie the model is chosen. One named
    candidate is taken as named, with a warning in the reason when it is an ensemble that does not beat its
    best member."""
    from competition.runs import load_runs, resolve_run
    from competition.runs.run import check_one_contest

    if candidates:
        runs = [Run.load(resolve_run(c, runs_dir)) for c in dict.fromkeys(candidates)]
        left_out = ""
    else:
        runs, damaged = load_runs(runs_dir)
        if not runs:
            raise CompetitionError(f"{runs_dir}: no finished runs to submit")
        left_out = f"; damaged, not considered: {', '.join(n for n, _ in damaged)}" if damaged else ""
    check_one_contest(runs, "submit")  # a submission answers one contest (and its metric): never the best of two
    metric = runs[0].metric
    scores = {id(r): r.score() for r in runs}
    # An estimate likely optimistic for its kind of model on this test (competition.folds.estimate_doubt) ranks
    # after every trusted one: its figure is not a promise about the test.
    doubts = {id(r): r.estimate_doubt() for r in runs}
    ranked = sorted(runs, key=lambda r: (doubts[id(r)] is None, metric.oriented(scores[id(r)]), r.kind != "ensemble"),
                    reverse=True)
    best = ranked[0]
    if len(runs) == 1:
        reason = _named_reason(best, scores[id(best)])
        if not candidates:  # none named: the folder's one finished run
            reason = reason.replace(" as named ", f", the only finished run in {runs_dir} ", 1) + left_out
        return Choice(best.path, best.name, scores[id(best)], reason, metric)
    return Choice(best.path, best.name, scores[id(best)], _chosen_reason(ranked, scores, doubts) + left_out, metric)


def _named_reason(run: Run, score: float) -> str:
    """choose_run's reason for one named candidate: taken as named, with a warning when it is an ensemble that
    does not beat its best member under nested CV."""
    from competition.ensemble import ensemble_summary

    summary = ensemble_summary(run)
    reason = f"{run.name} as named (OOF {run.metric.title} {score:.4f})"
    if summary is not None and summary["vs_best_member"] is not None and summary["vs_best_member"] <= 0:
        reason += (f"; but its best member {summary['best_member']} scores {-summary['vs_best_member']:.4f} "
                   f"better ({summary['best_member_score']:.4f}) under nested CV: name both, or none, "
                   "to have the better one chosen")
    return reason


def _chosen_reason(ranked: list[Run], scores: dict[int, float], doubts: dict[int, str | None]) -> str:
    """choose_run's reason for the first of `ranked` (two or more candidates): its score among the trusted
    ones; against its best member (an ensemble), the ensemble it beat, or the next candidate; what was set
    aside as likely optimistic though higher, or its own doubt."""
    from competition.ensemble import ensemble_summary

    best, metric = ranked[0], ranked[0].metric
    score = scores[id(best)]
    trusted = sum(d is None for d in doubts.values())
    among = f"{trusted} trusted" if 0 < trusted < len(ranked) else str(len(ranked))
    reason = (f"{best.name}: the best honest OOF {metric.title} of {among} "
              f"candidate{'s' * (among != '1' and trusted != 1)}, {score:.4f}")
    summary = ensemble_summary(best)
    if summary is not None and summary["vs_best_member"] is not None:
        reason += (f"; it beats its best member {summary['best_member']} ({summary['best_member_score']:.4f}) "
                   f"by {summary['vs_best_member']:+.4f} under nested CV")
    else:
        beaten = [r for r in ranked[1:] if r.kind == "ensemble"]
        if beaten:
            e = beaten[0]
            reason += (f"; ensemble {e.name} scores {scores[id(e)]:.4f} under nested CV "
                       f"({metric.oriented(scores[id(e)]) - metric.oriented(score):+.4f}), so not the ensemble")
        elif doubts[id(ranked[1])] is None or doubts[id(best)] is not None:
            reason += f" (next: {ranked[1].name} {scores[id(ranked[1])]:.4f})"
    set_aside = [r for r in ranked if doubts[id(r)] and metric.oriented(scores[id(r)]) > metric.oriented(score)]
    if set_aside and doubts[id(best)] is None:
        reason += (f"; set aside, though higher: {', '.join(f'{r.name} {scores[id(r)]:.4f}' for r in set_aside)} "
                   f"({doubts[id(set_aside[0])]})")
    elif doubts[id(best)]:
        reason += f"; its estimate is {doubts[id(best)]}"
    return reason


def _sample_path(run: Run, sample: str | Path | None) -> Path:
    """The sample submission to follow: `sample` when given, else the run's contest's (Run.sample_submission)."""
    return Path(sample) if sample is not None else run.sample_submission()


def submit(runs: Sequence[str | Path] | None = None, runs_dir: str | Path = "runs", *, out: str | Path | None = None,
           sample: str | Path | None = None, tune: bool | None = None, message: str = "",
           submissions_dir: str | Path = "submissions", data: str | Path | None = None) -> Submitted:
    """`competition submit`: choose the run to submit (`choose_run`: the best honest score among `runs`, or
    among every finished run when none are named), write its test predictions validated against the contest's
    sample to `out` (default submissions_dir/<run>.csv), and log it in log.csv beside that file (LOG_COLUMNS,
    with `message`). `data`: where the run's contest folder is now, when it moved (Run.load).

    With `tune`, per-class decision offsets are fitted on the OOF and applied only when their nested-CV gain
    (fit on the other folds, scored on the held-out one) is positive; the applied offsets and the figures
    that justified them are saved in the run folder (decisions.json), so later `submit` and `predict` calls
    use the same decisions; when the gain is not positive any saved decisions are removed. With `tune` None
    (neither --tune nor --no-tune), saved decisions are used; with False (--no-tune), none are (plain argmax,
    a note says so, the saved ones are kept). Offsets only move labels: for a sample that wants probabilities
    nothing is tuned or applied, and a note says so.

    The run's test predictions must be of the contest's test images as they are now, and an ensemble's
    members as they were when it was built (competition.runs.run.stale_problem): CompetitionError of one line
    saying what changed and what to run otherwise, nothing written."""
    from competition.runs.folder import DECISIONS_FILE
    from competition.runs.run import stale_problem

    if isinstance(runs, str | Path):  # one run named as a string (Python), not its characters
        runs = [runs]
    choice = choose_run(runs, runs_dir)
    loaded = Run.load(choice.path, data)
    stale = stale_problem(loaded)
    if stale is not None:
        raise CompetitionError(stale)
    sample_path = _sample_path(loaded, sample)
    out_path = Path(out) if out is not None else Path(submissions_dir) / f"{loaded.name}.csv"
    check_outputs(loaded, sample_path, out_path, out_path.parent / LOG_FILE)  # before any tuning is fitted
    # --tune reads, fits and writes back the run's decisions: one submit --tune of a run at a time (a plain
    # submit only reads them, a whole file replaced in one rename)
    with locked(choice.path / DECISIONS_FILE) if tune else contextlib.nullcontext():
        return _submit_locked(choice, loaded, sample_path, out_path, tune=tune, message=message)


def _submit_locked(choice: Choice, loaded: Run, sample_path: Path, out_path: Path, *, tune: bool | None,
                   message: str) -> Submitted:
    """`submit` once the run is chosen and the outputs checked (with `tune`, under the lock of its decisions)."""
    from competition.runs.decisions import read_decisions, remove_decisions, write_decisions
    from competition.runs.folder import DECISIONS_FILE
    from competition.tuning import TUNED_FOR, make_tuner, nested_cv_gain, tuner_from_decisions

    run_dir = choice.path
    tuner, tuning, honest = None, None, choice.score
    notes: list[str] = []
    metric = loaded.metric
    sample = read_csv_strings(sample_path)
    wanted = sample_format(sample, loaded.classes, probabilities=metric.needs == "probabilities",
                           multilabel=loaded.multilabel)
    if wanted == "binary":  # say which class's probability fills the column: a wrong one turns an AUC upside down
        column = submission_values(sample)[0]
        declared = loaded.record.positive_class or None
        positive = positive_class(column, loaded.classes, sample_path, declared)
        how = ("recipe.data.positive_class" if declared else
               "from the column's name or the other class's negative name, else the second class; "
               "recipe.data.positive_class says otherwise")
        notes.append(f"column {column!r} gets the probability of class {positive!r} ({how})")
    tunable = make_tuner(metric.name)
    plain = "each label at probability 0.5" if loaded.multilabel else "plain argmax"
    if wanted == "labels" and tunable is None and tune is not False:
        # decisions are fitted for one metric: for another they could lower the score the contest counts
        if tune or (run_dir / DECISIONS_FILE).is_file():
            what = "decision tuning" if tune else "decisions saved by an earlier submit --tune"
            notes.append(f"{what}: not applied: decisions are tuned for {TUNED_FOR}, and this contest is scored "
                         f"by {metric.title} (recipe.data.metric); {plain}")
    elif wanted != "labels" and tune is not False:  # offsets move labels; probabilities are written as they are
        if tune or (run_dir / DECISIONS_FILE).is_file():
            what = "decision tuning" if tune else "decisions saved by an earlier submit --tune"
            asked = "a probability per class" if wanted == "probabilities" else "the positive class's probability"
            notes.append(f"{what}: not applied: {sample_path.name} wants {asked}, which tuned decisions do not "
                         "change (they only move labels); the probabilities are written as they are")
    elif tune is False:
        if (run_dir / DECISIONS_FILE).is_file():
            notes.append(f"decisions saved by an earlier submit --tune: not applied (--no-tune), {plain}; "
                         "they stay saved for predict (submit --tune fits them again or removes them)")
    elif tune:
        tuning = nested_cv_gain(loaded.oof, loaded.y, loaded.folds, tunable, metric=metric.name)
        tuning["applied"] = tuning["nested_gain"] > 0
        if tuning["applied"]:
            tuner = tuner_from_decisions(tuning["decisions"], multilabel=loaded.multilabel)
            honest = tuning["nested_score"]
    else:
        saved = read_decisions(run_dir)  # checked: one offset per class (or cut point), tuned on the OOF as it is now
        if saved is not None:
            tuner = tuner_from_decisions(saved, multilabel=loaded.multilabel)
            gain = saved.get("nested_gain")
            honest += float(gain) if isinstance(gain, int | float) else 0.0
    log_path = out_path.parent / LOG_FILE
    written = make_submission(loaded, sample_path, out_path, tuner=tuner, log_path=log_path,
                              honest=honest, message=message)
    if tuning is not None and tuner is not None:
        write_decisions(run_dir, {**tuning["decisions"], "metric": metric.name,
                                  **{k: float(tuning[k]) for k in ("base_score", "in_sample_gain", "nested_gain")}})
    elif tuning is not None:
        remove_decisions(run_dir)
    return Submitted(written, log_path, choice, tuning, tuner is not None, honest, notes)


def submit_run(run: str | Path, runs_dir: str | Path = "runs", *, out: str | Path | None = None,
               sample: str | Path | None = None, tune: bool | None = None, message: str = "",
               submissions_dir: str | Path = "submissions",
               data: str | Path | None = None) -> tuple[Path, dict[str, Any] | None]:
    """`submit` of one named run (the Python API's `competition.submit`): (the file written, the tuning figures:
    in-sample and nested gains and "applied"; None without `tune`). `tune` as in `submit`: None uses saved
    decisions, False none."""
    done = submit([run], runs_dir, out=out, sample=sample, tune=tune, message=message,
                  submissions_dir=submissions_dir, data=data)
    return done.path, done.tuning
