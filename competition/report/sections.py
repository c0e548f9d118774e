"""What the report page is made of, shared by the figures (report.plots) and the Grad-CAM section
(report.explain) without either importing the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from competition.runs import Run


@dataclass
class Section:
    """One block of the page: a heading, an optional image and notes explaining what is (not) shown."""

    title: str
    image: str | None = None
    notes: list[str] = field(default_factory=list)


def most_confident_wrong(run: Run, n: int) -> np.ndarray:
    """Row indices (int64) of the wrong OOF predictions, most confidently wrong first (at most n): the highest
    predicted-class probability; in a multi-label run, the rows with a wrong label decision (at
    metrics.LABEL_THRESHOLD), by how far their worst such label's probability is from its truth."""
    if run.multilabel:
        error = _label_errors(run)
        worst = error.max(axis=1)
        wrong = np.flatnonzero(worst >= 0)
        return wrong[np.argsort(-worst[wrong], kind="stable")][:n]
    pred = run.oof.argmax(axis=1)
    wrong = np.flatnonzero(pred != run.y)
    confidence = run.oof[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:n]


def wrong_label(run: Run, rows: np.ndarray) -> np.ndarray:
    """int64 (len(rows),) the class each wrong row is shown and explained for: its predicted class; in a
    multi-label run, its most confidently wrong label (a false finding, or a missed one)."""
    rows = np.asarray(rows, dtype=np.int64)
    if run.multilabel:
        return _label_errors(run)[rows].argmax(axis=1).astype(np.int64)
    return run.oof[rows].argmax(axis=1).astype(np.int64)


def wrong_captions(run: Run, rows: np.ndarray) -> list[str]:
    """What each wrong row's prediction is called on a figure: its predicted class; in a multi-label run its
    most confidently wrong label, as 'missed <label>' (present, not found) or 'false <label>' (found, absent)."""
    rows = np.asarray(rows, dtype=np.int64)
    chosen = wrong_label(run, rows)
    if not run.multilabel:
        return [run.classes[k] for k in chosen]
    return [f"{'missed' if run.y[r, k] else 'false'} {run.classes[k]}" for r, k in zip(rows, chosen)]


def _label_errors(run: Run) -> np.ndarray:
    """float (n, k): |truth - probability| where the label decision is wrong, -1 where it is right."""
    from competition.metrics import label_decisions

    y = np.asarray(run.y, dtype=np.float64)
    return np.where(label_decisions(run.oof) != run.y, np.abs(y - run.oof), -1.0)
