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
    """Row indices (int64) of the wrong OOF predictions, highest predicted-class probability first (at most n)."""
    pred = run.oof.argmax(axis=1)
    wrong = np.flatnonzero(pred != run.y)
    confidence = run.oof[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:n]
