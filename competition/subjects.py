"""Subject-level aggregation: the slices (or views) of one subject share its diagnosis, so each image's class
probabilities are replaced by their mean over the subject's images, as medical imaging turns slice predictions
into a scan- or patient-level one.

Contests rarely give subject ids, so subjects are found as near-duplicate groups (data.similarity: image
signatures linked when within a distance threshold): for the OOF among the validation images of one fold at a
time, at a threshold chosen on the other folds' labels, so the estimate stays out-of-fold and sees what the test
sees; for the test among the test images, at a threshold chosen on all training labels. No label reaches its
own prediction. The threshold is the largest candidate at which every group of labelled training images holds
one class (a group mixing classes would be two subjects linked by mistake).

Pipeline place: after training (and ensembling), before `submit`: `competition aggregate RUN` writes a new run
of kind 'ensemble' (method 'subject-mean', the run as its one member) that the leaderboard ranks and `submit`
picks only when its OOF macro F1 beats the run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from competition.errors import CompetitionError
from competition.metrics import macro_f1

# Signature distances tried, smallest first (data.similarity: 1 - cosine of 16x16 thumbnails; 0.005 is what
# the audit calls a near twin).
THRESHOLDS = (0.002, 0.003, 0.004, 0.005, 0.006, 0.008)
METHOD = "subject-mean"


def group_mean(proba: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row of proba (n, k) replaced by the mean of the rows in its group (groups: int (n,)); float64."""
    proba = np.asarray(proba, dtype=np.float64)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), proba.shape[1]))
    np.add.at(sums, inverse, proba)
    return sums[inverse] / counts[inverse, None]


def within(groups: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Groups cut at fold borders (int (n,)): images of one group in two folds become two groups, so an OOF
    average only mixes images that one fold model predicted without training on any of them."""
    return pd.factorize(pd.Series(list(zip(np.asarray(groups).tolist(), np.asarray(folds).tolist(), strict=True))))[0]


@dataclass
class ThresholdChoice:
    """The chosen threshold (None: no candidate links any two images without mixing classes) and, per
    candidate, its group count, largest group and the training images in groups of mixed classes."""

    threshold: float | None
    table: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "candidates": self.table}


def choose_threshold(signatures: np.ndarray, y: np.ndarray, candidates: tuple[float, ...] = THRESHOLDS
                     ) -> ThresholdChoice:
    """The largest of `candidates` at which every near-duplicate group of the labelled images (signatures
    (n, d) float32, labels int (n,), or a multi-label (n, k) 0/1 matrix: one label set) holds one class and some
    group holds two or more images."""
    from competition.data.similarity import cached_groups

    table, chosen = [], None
    if np.ndim(y) == 2:  # multi-label: a group must hold one label set (findings differ between images)
        y = np.unique(np.asarray(y), axis=0, return_inverse=True)[1].reshape(-1)
    for threshold in sorted(candidates):
        groups = cached_groups(signatures, threshold)
        frame = pd.DataFrame({"g": groups, "y": np.asarray(y)})
        sizes, classes = frame.groupby("g").size(), frame.groupby("g")["y"].nunique()
        mixed = int(sizes[classes > 1].sum())
        table.append({"threshold": threshold, "groups": int(len(sizes)), "largest": int(sizes.max()),
                      "mixed_images": mixed})
        if mixed:
            break  # larger thresholds only merge more
        if sizes.max() > 1:
            chosen = threshold
    return ThresholdChoice(chosen, table)


class SubjectAverage(BaseEstimator):
    """scikit-learn style: fit(signatures, y) picks `threshold_` (choose_threshold, unless `threshold` is
    given); transform(proba, signatures, folds=None) averages each image's probabilities over its group (cut at
    fold borders when `folds` is given). Without a threshold (nothing to link) transform returns proba."""

    def __init__(self, threshold: float | None = None, candidates: tuple[float, ...] = THRESHOLDS) -> None:
        self.threshold = threshold
        self.candidates = candidates

    def fit(self, signatures: np.ndarray, y: np.ndarray) -> SubjectAverage:
        choice = (ThresholdChoice(float(self.threshold)) if self.threshold is not None
                  else choose_threshold(signatures, y, tuple(self.candidates)))
        self.threshold_, self.choice_ = choice.threshold, choice
        return self

    def groups(self, signatures: np.ndarray, folds: np.ndarray | None = None) -> np.ndarray:
        from competition.data.similarity import cached_groups

        if self.threshold_ is None:
            return np.arange(len(signatures))
        groups = cached_groups(signatures, self.threshold_)
        return within(groups, folds) if folds is not None else groups

    def oof_groups(self, signatures: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
        """int (n,) groups for the OOF, fold by fold as a fold model sees it: the threshold chosen on the other
        folds' labels alone (unless `threshold` is given), the groups formed among the fold's validation images
        only; so no validation label chooses how its own prediction is averaged. `fold_thresholds_` records
        each fold's threshold."""
        from competition.data.similarity import cached_groups

        groups = np.zeros(len(signatures), dtype=np.int64)
        self.fold_thresholds_: list[float | None] = []
        for k in np.unique(folds):
            val, train = np.flatnonzero(folds == k), np.flatnonzero(folds != k)
            threshold = (float(self.threshold) if self.threshold is not None
                         else choose_threshold(signatures[train], np.asarray(y)[train], tuple(self.candidates)).threshold)
            self.fold_thresholds_.append(threshold)
            local = np.arange(len(val)) if threshold is None else cached_groups(signatures[val], threshold)
            groups[val] = local + groups.max() + 1
        return groups

    def transform(self, proba: np.ndarray, signatures: np.ndarray, folds: np.ndarray | None = None) -> np.ndarray:
        return group_mean(proba, self.groups(signatures, folds))


def _signatures(run: Any) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) image signatures in the run's row orders; CompetitionError naming what is missing."""
    from competition.data import index_contest
    from competition.data.similarity import image_signatures

    if run.paths is None:
        raise CompetitionError(f"run '{run.name}': records no image paths, so its subjects cannot be found")
    root = run.data_root
    if root is None or not Path(root).is_dir():
        raise CompetitionError(f"run '{run.name}': contest folder not found ({root}); pass --data DIR")
    test = index_contest(root, run.record.contest_layout()).test.set_index("id")
    missing = [i for i in run.test_ids if i not in test.index]
    if missing:
        raise CompetitionError(f"run '{run.name}': test image '{missing[0]}' is not in the test images of {root}")
    return image_signatures(list(run.paths)), image_signatures(list(test.loc[list(run.test_ids), "path"]))


def aggregate_run(run: Any, name: str, runs_dir: str | Path, threshold: float | None = None) -> Path:
    """Write runs_dir/name: `run` (a competition.runs.Run) with OOF and test probabilities averaged per subject
    (SubjectAverage), as a run of kind 'ensemble' with `run` its one member. run.json's `subjects` records the
    threshold, the candidates' purity table, group counts and the OOF macro F1 before and after."""
    from competition.ensemble import check_replaceable, ensemble_dir, write_ensemble

    out = ensemble_dir(runs_dir, name)
    if name == run.name:
        raise CompetitionError(f"aggregate '{name}': has the same name as the run it averages")
    check_replaceable(name, out, [run])
    train_sig, test_sig = _signatures(run)
    averager = SubjectAverage(threshold).fit(train_sig, run.y)
    oof_groups, test_groups = averager.oof_groups(train_sig, run.y, run.folds), averager.groups(test_sig)
    oof, test = group_mean(run.oof, oof_groups), group_mean(run.test, test_groups)
    test_sizes = pd.Series(test_groups).value_counts().value_counts().sort_index()  # group size -> how many
    record = {**averager.choice_.record(), "oof_groups": int(len(np.unique(oof_groups))),
              "test_groups": int(len(np.unique(test_groups))), "fold_thresholds": averager.fold_thresholds_,
              "test_group_sizes": {int(size): int(count) for size, count in test_sizes.items()},
              "oof_macro_f1_before": macro_f1(run.y, run.oof), "oof_macro_f1_after": macro_f1(run.y, oof)}
    recipe = {"kind": "ensemble", "method": METHOD, "threshold": averager.threshold_,
              "members": [{"name": run.name, "recipe_hash": run.recipe_hash}]}
    # the averaging fits nothing on the scores (the threshold comes from label purity): its OOF is unfitted
    return write_ensemble(out, name, recipe, [run], oof, test, metric=run.record.metric, weights=[1.0], in_sample=oof,
                          oof_is="unfitted", extra={"subjects": record})


def aggregate(run: str, *, name: str | None = None, runs_dir: str | Path = "runs", threshold: float | None = None,
              data: str | Path | None = None) -> Path:
    """`competition aggregate`: load the run by name or folder, then aggregate_run (name default RUN-subjects)."""
    from competition.runs import Run, resolve_run

    if threshold is not None and not 0 < threshold < 2:
        raise CompetitionError(f"--threshold: expected a signature distance between 0 and 2, got {threshold}")
    loaded = Run.load(resolve_run(run, runs_dir), data=data)
    return aggregate_run(loaded, name or f"{loaded.name}-subjects", runs_dir, threshold)
