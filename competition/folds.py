"""Cross-validation folds: which training image is validated by which fold model, made the way the test is.

A contest's test relates to its training set in one of three ways, and each has its fold scheme:

    stratified      the test is like random draws of the training images (near twins of training images on
                    both sides): StratifiedKFold.
    grouped         the test holds new subjects (other patients, other brains): whole subjects are held out
                    (StratifiedGroupKFold over `cv.group_by`, else near-duplicate groups).
    seen_subjects   the test holds other images of the training subjects (the remaining slices of scanned
                    brains): every subject is cut along its chain of near twins (competition.data.similarity.
                    chain_order) into `folds` contiguous blocks, and fold k validates one block of each subject
                    and trains on the rest of it (`chain_block_folds`).

``recipe.cv.group_by`` names the subjects:

    None                     near-duplicate groups from the images (competition.data.similarity)
    column:<name>            a train.csv column (e.g. a patient id)
    regex:<pattern>          applied to the file name (basename of path, else the id); the group is
                             the first capture group if the pattern has one, else the whole match
    near_duplicates          connected components of the pairs whose signature distance is <= the threshold
    near_duplicates:<float>  the same with an explicit threshold

``recipe.cv.scheme`` says which folds to make (`choose_scheme`): `auto` (the default) measures, for the test and
for each candidate scheme's validation images, three measures (MEASURES) of the images a model learns from: the
distance to the nearest training image; the chain distance, the largest step on the best path of near twins
through all images, train and test, to a training image; and the chain hops, how many near-twin steps that path
takes. It picks the candidate whose three distributions are closest to the test's: the smallest mean of the
three two-sample Kolmogorov-Smirnov statistics (`match`, 0 = alike, 1 = disjoint; scipy.stats.ks_2samp).
Candidates: stratified, grouped (near-duplicate grouping at the largest threshold of twin threshold x (1, 0.9,
..., 0.1) at which every class lies in at least `folds` groups and every fold holds every class), and
seen_subjects with the number of blocks a subject (folds down to 2) that matches best; with a group_by, grouped
and seen_subjects by it. Without test images auto makes grouped folds when a group_by is given, else stratified
ones.

Choosing the scheme whose validation resembles the test follows the advice to make validation mimic the
train/test relationship; grouped folds by image similarity are the analogue of grouping by patient, as in
scikit-learn's StratifiedGroupKFold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from competition.errors import CompetitionError

KEY = "recipe.cv.group_by"
SCHEME_KEY = "recipe.cv.scheme"
NEAR = "near_duplicates"
SYNTAX = "None, column:<name>, regex:<pattern>, near_duplicates[:<threshold>]"
SCHEMES = ("auto", "stratified", "grouped", "seen_subjects")
# Grouping thresholds cv.scheme auto and grouped try, as fractions of the twin threshold, largest first.
THRESHOLD_STEPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
# A run whose folds match the test worse than the best candidate's by more than this (in `match`, the mean KS
# statistic; for runs from before `match`, its validation leak share above the test's twin share) carries a
# warning marker (leaderboard, audit): its estimate may be far too high or too low. On Alzheimer (the test holds
# the top slices of the training brains) stratified folds over-estimated the real test macro F1 by about 0.2
# and grouped folds under-estimated it by 0.18; their match figures are 0.64 and 0.63 against 0.22 for seen
# subjects (3 blocks a brain).
OPTIMISTIC_MARGIN = 0.2


def rarest_label(targets: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """A multi-label contest's one label per image for stratifying grouped folds: its rarest label (by images
    carrying it), "(none)" for an image without one. object (n,) of `classes` names; targets uint8 (n, k)."""
    targets = np.asarray(targets)
    counts = targets.sum(axis=0)
    rank = np.where(targets > 0, counts[None, :], np.iinfo(np.int64).max)
    names = np.asarray(list(classes) + ["(none)"], dtype=object)
    return names[np.where(targets.any(axis=1), rank.argmin(axis=1), len(classes))]


def multilabel_folds(targets: np.ndarray, classes: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """int64 fold per image of a multi-label contest, by iterative stratification (Sechidis et al. 2011, as
    iterative-stratification's MultilabelStratifiedKFold): each label's images spread evenly over the folds.
    Raises CompetitionError (recipe.cv.folds) for a label on fewer images than folds."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    targets = np.asarray(targets)
    counts = targets.sum(axis=0)
    if n_folds < 2:
        raise CompetitionError(f"recipe.cv.folds: need at least 2 folds, got {n_folds}")
    if counts.min() < n_folds:
        raise CompetitionError(f"recipe.cv.folds: {n_folds} folds need at least {n_folds} images per label; label "
                               f"'{classes[int(counts.argmin())]}' is on {int(counts.min())}")
    folds = np.full(len(targets), -1, dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
        folds[val] = k
    return folds


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int,
                     targets: tuple[np.ndarray, Sequence[str]] | None = None) -> np.ndarray:
    """The stratified scheme's fold per image: by label (`make_folds`), or for a multi-label contest's `targets`
    (uint8 (n, k) indicator matrix, label names) by iterative stratification (`multilabel_folds`)."""
    return multilabel_folds(targets[0], targets[1], n_folds, seed) if targets is not None else (
        make_folds(labels, n_folds, seed))


def stratify_labels(labels: np.ndarray, targets: tuple[np.ndarray, Sequence[str]] | None = None) -> np.ndarray:
    """The one label per image that grouped folds stratify by: the label; multi-label, its rarest label."""
    return rarest_label(*targets) if targets is not None else labels


def make_folds(labels: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold index (0..n_folds-1) per sample; stratified by label, and grouped when `groups` is given.

    With groups no group spans two folds (StratifiedGroupKFold(shuffle=True, random_state=seed)).
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise CompetitionError(f"recipe.cv.folds: need at least 2 folds, got {n_folds}")
    classes, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y)
    if counts.min() < n_folds:
        raise CompetitionError(
            f"recipe.cv.folds: {n_folds} folds need at least {n_folds} images per class; "
            f"class '{classes[counts.argmin()]}' has {counts.min()}"
        )
    folds = np.full(len(y), -1, dtype=np.int64)
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for k, (_, val) in enumerate(splitter.split(np.zeros(len(y)), y)):
            folds[val] = k
        return folds

    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise CompetitionError(f"{KEY}: {len(groups)} group values for {len(y)} training images")
    _, g = np.unique(groups, return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    if n_groups < n_folds:
        raise CompetitionError(
            f"{KEY}: {n_groups} groups cannot fill {n_folds} folds; use fewer folds or a finer grouping"
        )
    for c, name in enumerate(classes):
        n_class_groups = len(np.unique(g[y == c]))
        if n_class_groups < n_folds:
            raise CompetitionError(
                f"{KEY}: class '{name}' lies in only {n_class_groups} groups, fewer than {n_folds} folds; "
                "use fewer folds or a finer grouping (e.g. a lower near-duplicate threshold)"
            )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val) in enumerate(splitter.split(np.zeros(len(y)), y, g)):
        folds[val] = k
    spans = pd.Series(folds).groupby(g).nunique()
    if (spans > 1).any():  # sklearn guarantees this; checked because a leak here is silent
        bad = groups[g == spans.index[(spans > 1).to_numpy()][0]][0]
        raise CompetitionError(f"{KEY}: group '{bad}' was split across folds")
    if (np.bincount(folds, minlength=n_folds) == 0).any():
        raise CompetitionError(f"{KEY}: grouping left a fold empty; use fewer folds or a finer grouping")
    return folds


def parse_group_by(group_by: str | None) -> tuple[str, str]:
    """('none'|'column'|'regex'|'near_duplicates', argument); CompetitionError on unknown syntax."""
    if group_by is None or str(group_by).strip().lower() in ("", "none", "null"):
        return "none", ""
    text = str(group_by).strip()
    kind, sep, arg = text.partition(":")
    if kind == "column" and sep and arg:
        return "column", arg
    if kind == "regex" and sep and arg:
        return "regex", arg
    if kind == NEAR:
        if sep:
            try:
                value = float(arg)
            except ValueError:
                value = -1.0
            if not 0 <= value <= 2:
                raise CompetitionError(f"{KEY}: '{text}': threshold must be a number in [0, 2]")
        return NEAR, arg if sep else ""
    raise CompetitionError(f"{KEY}: '{text}' is not one of: {SYNTAX}")


def resolve_groups(
    group_by: str | None,
    train: pd.DataFrame,
    *,
    signatures: np.ndarray | None = None,
    threshold: float | None = None,
) -> np.ndarray | None:
    """Group id (int) per training row for `group_by`, or None for plain stratified folds.

    near_duplicates uses `signatures` (row order of `train`) when given, else computes them from the
    image paths (cached, see competition.data.similarity.train_signatures); `threshold` defaults to the one in
    the group_by string, else competition.data.similarity.DEFAULT_THRESHOLD.
    """
    kind, arg = parse_group_by(group_by)
    if kind == "none":
        return None
    if kind == "column":
        if arg not in train.columns:
            raise CompetitionError(
                f"{KEY}: column '{arg}' not in train.csv; available: {', '.join(map(str, train.columns))}"
            )
        values = train[arg]
        missing = values.isna().to_numpy()
        if missing.any():
            raise CompetitionError(
                f"{KEY}: column '{arg}' is empty for {int(missing.sum())} rows (e.g. id '{_ids(train)[missing][0]}')"
            )
        return pd.factorize(values.astype(str))[0].astype(np.int64)
    if kind == "regex":
        return _regex_groups(arg, _file_names(train), _ids(train))
    from competition.data import similarity

    if threshold is None:
        threshold = float(arg) if arg else similarity.DEFAULT_THRESHOLD
    if signatures is None:
        signatures = similarity.train_signatures(train)
    if len(signatures) != len(train):
        raise CompetitionError(f"{KEY}: {len(signatures)} image signatures for {len(train)} training rows")
    return similarity.cached_groups(signatures, threshold)


def describe_scheme(n_folds: int, seed: int, group_by: str | None, threshold: float | None = None,
                    scheme: str | None = None, blocks: int | None = None) -> str:
    """A one-line name of the cv scheme, shown beside every estimate so unlike schemes are not compared.

    near_duplicates always names its threshold (`threshold`, else the one in group_by, else the default),
    so a later change of the default cannot make two schemes look alike. `scheme` "seen_subjects" names the
    chain blocks of the subjects (group_by None: near-duplicate groups at `threshold`)."""
    kind, arg = parse_group_by(group_by)
    if kind in ("none", NEAR) and (scheme == "seen_subjects" or kind == NEAR) and threshold is None:
        from competition.data.similarity import DEFAULT_THRESHOLD

        threshold = float(arg) if arg else DEFAULT_THRESHOLD
    if kind == "none" and scheme != "seen_subjects":
        return f"stratified {n_folds}-fold, seed {seed}"
    subjects = f"{NEAR}, threshold {threshold:g}" if kind in ("none", NEAR) else f"{kind}:{arg}"
    if scheme == "seen_subjects":
        return f"seen subjects ({blocks or n_folds} chain blocks of {subjects}) {n_folds}-fold, seed {seed}"
    return f"grouped ({subjects}) {n_folds}-fold, seed {seed}"


# A test with at most this share of its images joined to train by near twins holds new subjects: auto warns
# when grouped folds cannot be made for it.
NEW_SHARE = 0.2
# What each scheme's validation mirrors, as the verdict names it.
RELATIONS = {"stratified": "images like random draws of the training images, with near twins on both sides",
             "grouped": "new subjects, none of whose images is in train",
             "seen_subjects": "other images of the training subjects"}


def chain_block_folds(groups: np.ndarray, signatures: np.ndarray, labels: np.ndarray, n_folds: int,
                      seed: int, blocks: int | None = None, orders: dict[Any, np.ndarray] | None = None) -> np.ndarray:
    """int64 (n,) fold per image for "unseen images of seen subjects": each subject's images (rows sharing a
    `groups` id) in chain order (competition.data.similarity.chain_order of their (n, d) `signatures`) cut into
    `blocks` (default n_folds, at most n_folds) contiguous blocks of near-equal size; block b of a subject goes to
    fold (b + shift) mod n_folds. Fewer, longer blocks put validation images further along the chain from their
    training images. Shifts go round each class's subjects (in a seeded order, by the subject's most common
    label), so every fold gets blocks of every class with at least n_folds / blocks subjects; with as many blocks
    as folds, the shift moves by one a subject, so a fold's blocks sit at every place along the chains. A subject
    of fewer images than blocks gives each image its own block. `orders` (subject -> its rows in chain order)
    saves the chain walks when several block counts are tried.

    Raises CompetitionError (recipe.cv.scheme) when a fold would miss a class."""
    from competition.data.similarity import chain_order

    blocks = n_folds if blocks is None else min(int(blocks), n_folds)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    subjects = rng.permutation(np.unique(groups))
    majority = {g: pd.Series(labels[groups == g]).mode().iloc[0] for g in subjects}
    offsets = {c: int(rng.integers(n_folds)) for c in np.unique(labels)}
    seen: dict[Any, int] = {}
    step = blocks if blocks < n_folds else 1  # n_folds blocks: every shift holds one block per fold
    for g in subjects:
        c = majority[g]
        shift = (offsets[c] + seen.get(c, 0) * step) % n_folds
        seen[c] = seen.get(c, 0) + 1
        if orders is not None and g in orders:
            ordered = orders[g]
        else:
            rows = np.flatnonzero(groups == g)
            ordered = rows[chain_order(signatures[rows])]
            if orders is not None:
                orders[g] = ordered
        block = (np.arange(len(ordered)) * blocks) // len(ordered)
        folds[ordered] = (block + shift) % n_folds
    for k in range(n_folds):
        missing = sorted(set(labels) - set(labels[folds == k]))
        if missing:
            raise CompetitionError(f"{SCHEME_KEY}: seen_subjects: fold {k} holds no '{missing[0]}' with {blocks} "
                                   "blocks a subject (its subjects are too few); use fewer cv.folds")
    return folds


@dataclass
class SchemeChoice:
    """The folds `choose_scheme` made, and what they rest on (shares in [0, 1], distances 1 - cosine).

    requested        cv.scheme as given: "auto", "stratified", "grouped" or "seen_subjects"
    scheme           what was made: "stratified", "grouped" or "seen_subjects"
    group_by         the subjects used: None, the recipe's group_by, or "near_duplicates" (with `threshold`)
    threshold        near-duplicate grouping threshold (None unless the subjects are near-duplicate groups)
    folds            int64 (n_train,) fold index per training row
    twin_threshold   distance at or below which two images are near twins, for the shares below
    test_twin_share  share of test images with a near twin in train (None: no test images)
    leak_share       share of validation images of `folds` with a near twin in their training folds
    test             the test's figures: chain_share (joined to train by near twins), relation, quantiles
    candidates       per candidate scheme: its name, leak share, match with the test (mean KS), quantiles, or problem
    thresholds       the grouping thresholds tried, largest first: {"threshold", "problem" (None: feasible)}
    reason           one line: why this scheme
    warning          one line when the test holds new subjects but grouped folds cannot be made
    distances        per candidate and "test": {"nearest", "chain", "hops"} float64 arrays (the audit's figure; not
                     recorded)
    """

    requested: str
    scheme: str
    group_by: str | None
    threshold: float | None
    folds: np.ndarray
    n_folds: int
    seed: int
    twin_threshold: float
    test_twin_share: float | None
    leak_share: float | None
    test: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    warning: str | None = None
    distances: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    blocks: int | None = None  # seen_subjects: chain blocks a subject
    # int64 (n_train,) subject per training row: group_by's, else near-duplicate groups at the twin threshold;
    # None when there are none (no near twins). Bootstrap intervals resample them (competition.metrics).
    subjects: np.ndarray | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The scheme's one-line name (describe_scheme), as run.json's `scheme` and the leaderboard show it."""
        return describe_scheme(self.n_folds, self.seed, self.group_by, self.threshold, self.scheme, self.blocks)

    @property
    def verdict(self) -> str:
        """One line: how the test relates to train, and which scheme's estimates to trust."""
        return verdict_line(self.record())

    def record(self) -> dict[str, Any]:
        """The choice as JSON (run.json's `cv`, audit.json's `auto`): everything but the arrays."""
        return {"requested": self.requested, "scheme": self.scheme, "name": self.name, "folds": self.n_folds,
                "seed": self.seed, "group_by": self.group_by,
                "threshold": self.threshold, "twin_threshold": self.twin_threshold,
                "test_twin_share": self.test_twin_share, "leak_share": self.leak_share, "test": self.test,
                "candidates": self.candidates, "thresholds": self.thresholds, "reason": self.reason,
                "warning": self.warning, "optimistic_margin": OPTIMISTIC_MARGIN, "statistic": STATISTIC,
                "blocks": self.blocks}

    def lines(self) -> list[str]:
        """What `train` prints: the scheme and why, the verdict, the grouping threshold (when a search ran)."""
        out = [f"folds: {self.name} (cv.scheme {self.requested})", f"  {self.reason}"]
        if self.test.get("relation"):
            out.append(f"  {self.verdict}")
        grouped = self.candidates.get("grouped", {})
        if self.scheme == "grouped" and self.group_by == NEAR and "why" in grouped:
            out.append(f"  {grouped['why']}")
        return out


# The distances every image's relation to its training images is measured by (competition.data.similarity):
# to the nearest training image, the chain distance (the largest step on the best path of near twins), and the
# chain hops (how many near-twin steps that path takes).
MEASURES = ("nearest", "chain", "hops")
# What `match` compares: how validation images connect to their training images (chain distance and hops), the
# relation a fold scheme can reproduce. The nearest-image distance also moves when the test images simply look
# different (Alzheimer's top slices: adversarial AUC 0.999), which no fold scheme reproduces; matching it too
# chose blocks too long for label spreading on the seen-subject demo (CV 0.79 against 0.92 on its test). It is
# kept for estimate_doubt: inductive models rely on it.
MATCHED = ("chain", "hops")
# The block count of seen-subject folds is chosen by `match_joined`: the same statistic over the validation and
# test images joined to train by a chain of near twins. A test image no chain reaches is like a new subject's,
# which no cut of the training subjects into blocks reproduces; counting them pulled the count towards long
# blocks: on the seen-subject demo (29% of test images not joined) 2 blocks, label spreading's CV 0.79 against
# 0.92 on its test; joined only, 4 blocks. On Alzheimer (95% joined) the count stays 3 (docs/know-the-test.md).
JOINED_ONLY = "match_joined"
NOT_JOINED = 1e9  # stands for inf (no path of near twins to a training image) in figures and statistics
STATISTIC = ("match: mean of three two-sample Kolmogorov-Smirnov statistics (0 alike .. 1 disjoint) between the "
             "test's and the validation images' distance to the nearest training image, chain distance and chain "
             "hops to a training image")


def verdict_line(record: dict[str, Any] | None) -> str:
    """The verdict in one line from a fold record (SchemeChoice.record(), run.json's `cv`): the relation of the
    test to train, the share behind it, the scheme whose estimates to trust; '' when the record has no test
    figures (runs from before they existed, a contest without test images)."""
    if not isinstance(record, dict) or not isinstance(record.get("test"), dict) or not record["test"]:
        return ""
    test = record["test"]
    best = test.get("closest_scheme")
    trust = f"trust estimates from {best.replace('_', ' ')} folds" if best else ""
    warning = ""
    if test.get("relation") in ("seen_subjects", "stratified"):
        warning = ("; a split that shares subjects between train and test inflates a score next to new patients "
                   "(as a slice-level split does)")
    doubts = [d for d in (estimate_doubt(record, False), estimate_doubt(record, True)) if d]
    doubt = f"; estimates {'; '.join(doubts)}" if doubts else ""
    return (f"The test holds {test.get('relation_text', '?')}: {test['chain_share']:.0%} of test images are joined "
            f"to a training image by a chain of near twins; {trust}{warning}{doubt}")


def optimistic(record: dict[str, Any] | None) -> bool:
    """True when a fold record (SchemeChoice.record(), run.json's `cv`) was made unlike the test: another
    candidate's `match` is better by more than OPTIMISTIC_MARGIN (its estimate may be too high or too low);
    for records without match figures (older runs), when the validation leak share is more than
    OPTIMISTIC_MARGIN above the test twin share. False when the figures are missing."""
    if not isinstance(record, dict):
        return False
    candidates = record.get("candidates") if isinstance(record.get("candidates"), dict) else {}
    matches = {k: c.get("match") for k, c in candidates.items() if isinstance(c, dict)
               and isinstance(c.get("match"), int | float)}
    if record.get("scheme") in matches:
        return matches[record["scheme"]] - min(matches.values()) > OPTIMISTIC_MARGIN
    leak, test = record.get("leak_share"), record.get("test_twin_share")
    if not isinstance(leak, int | float) or not isinstance(test, int | float):
        return False
    return float(leak) - float(test) > OPTIMISTIC_MARGIN


# A run's estimate is in doubt when the measure its kind of model relies on (an inductive model: the distance to
# the nearest training image; a transductive one: the near-twin steps to a labelled image) is distributed unlike
# the test's (KS statistic above this) and is smaller in validation than in the test (the estimate leans high).
# On Alzheimer's seen-subject folds the nearest-image KS is 0.40 (validation median 0.015 against the test's
# 0.022) and the hops KS 0.09 (docs/know-the-test.md).
DOUBT_KS = 0.3


def estimate_doubt(record: dict[str, Any] | None, transductive: bool) -> str | None:
    """One line when a run's CV estimate is likely optimistic for its kind of model, else None. An inductive
    model (a network, knn, logistic) predicts an image from the training images near it: its estimate leans
    high when validation images lie closer to their nearest training image than test images do. A transductive
    model (label spreading) carries labels along chains of unlabelled images: it is judged on the chain hops
    (near-twin steps to a labelled image). `record`: a fold record with candidates' figures
    (SchemeChoice.record(), run.json's `cv`)."""
    if not isinstance(record, dict) or not isinstance(record.get("candidates"), dict):
        return None
    entry, test = record["candidates"].get(record.get("scheme")), record.get("test")
    measure = "hops" if transductive else "nearest"
    if not isinstance(entry, dict) or not isinstance(test, dict) or f"ks_{measure}" not in entry:
        return None
    ks = entry[f"ks_{measure}"]
    val_median, test_median = entry[measure].get("p50"), test.get(measure, {}).get("p50")
    if ks <= DOUBT_KS or val_median is None or test_median is None or val_median >= test_median:
        return None
    shown = lambda v: "not joined" if v >= NOT_JOINED else f"{v:g}"  # noqa: E731
    if transductive:
        return (f"likely optimistic for a transductive model: validation images are fewer near-twin steps from a "
                f"training image (median {shown(val_median)}) than test images are ({shown(test_median)}; "
                f"KS {ks:.2f})")
    return (f"likely optimistic for an inductive model: validation images' distance to the nearest training image "
            f"(median {val_median:.4f}) is smaller than the test's ({test_median:.4f}; KS {ks:.2f})")


def check_scheme(scheme: str, group_by: str | None) -> None:
    """CompetitionError (one line naming the keys) for an unknown scheme or a group_by with `stratified`."""
    if scheme not in SCHEMES:
        raise CompetitionError(f"{SCHEME_KEY}: {scheme!r} is not one of: {', '.join(SCHEMES)}")
    if scheme == "stratified" and parse_group_by(group_by)[0] != "none":
        raise CompetitionError(f"{KEY}: {group_by!r} groups the folds, but {SCHEME_KEY} is 'stratified' (no groups); "
                               "remove one of them (cv.scheme: grouped or auto folds by the group_by)")


def choose_scheme(
    train: pd.DataFrame,
    test: pd.DataFrame | None = None,
    *,
    n_folds: int = 5,
    seed: int = 42,
    scheme: str = "auto",
    group_by: str | None = None,
    threshold: float | None = None,
    train_signatures: np.ndarray | None = None,
    test_signatures: np.ndarray | None = None,
    targets: tuple[np.ndarray, Sequence[str]] | None = None,
) -> SchemeChoice:
    """Make the folds recipe.cv asks for, measured against the test (module docstring): the candidates are made
    (`_make_candidates`), each measured as the test is (`_Relation`), and one is kept (`_decide`).

    train: rows with `label` (and `path` unless train_signatures are given; a group_by column when it names one).
    test: rows with `path` unless test_signatures are given; None or empty: no test figures.
    threshold: cv.near_duplicate_threshold: the twin threshold (default similarity.DEFAULT_THRESHOLD), the
    largest grouping threshold tried, and the threshold of group_by near_duplicates without its own.
    Signatures (n, 256) float32 (competition.data.similarity) are computed from the paths, cached, when not given.
    targets: a multi-label contest's (uint8 (n, k) indicator matrix, label names): stratified folds by iterative
    stratification (`multilabel_folds`), the grouped and seen-subject schemes by each image's rarest label.

    Raises CompetitionError (one line naming the recipe key): unknown scheme, stratified with a group_by, a bad
    group_by or fold count (make_folds, resolve_groups), a scheme asked for that cannot be made."""
    from competition.data import similarity

    check_scheme(scheme, group_by)
    twin = float(threshold) if threshold is not None else similarity.DEFAULT_THRESHOLD
    stratified = stratified_folds(train["label"].to_numpy(), n_folds, seed, targets)  # checks the images per class
    labels = stratify_labels(train["label"].to_numpy(), targets)  # what the grouped schemes stratify by
    if train_signatures is None:
        train_signatures = similarity.train_signatures(train)
    if len(train_signatures) != len(train):
        raise CompetitionError(f"{KEY}: {len(train_signatures)} image signatures for {len(train)} training rows")
    if test_signatures is None and test is not None and len(test):
        test_signatures = similarity.signatures_of_test(test)
    if test_signatures is None:
        test_signatures = np.zeros((0, train_signatures.shape[1]), np.float32)
    relation = _Relation(train_signatures, test_signatures, twin, n_folds)
    made = _make_candidates(train, labels, stratified, relation, n_folds=n_folds, seed=seed, group_by=group_by,
                            threshold=threshold)
    test_figures = relation.test_figures()
    if test_figures:
        scored = {k: c["match"] for k, c in made.candidates.items() if "match" in c}
        closest = min(scored, key=lambda k: (scored[k], list(scored).index(k)))
        test_figures.update(closest_scheme=closest, relation=closest, relation_text=RELATIONS[closest])
    name, reason, warning = _decide(scheme, group_by, made, test_figures)
    folds, by, at = made.folds[name]
    return SchemeChoice(scheme, name, by, at, folds, n_folds=n_folds, seed=seed, twin_threshold=twin,
                        test_twin_share=relation.test_twin_share, leak_share=made.candidates[name]["leak_share"],
                        test=test_figures, candidates=made.candidates, thresholds=made.tried, reason=reason,
                        warning=warning, distances=relation.distances,
                        blocks=made.blocks if name == "seen_subjects" else None, subjects=made.subjects)


class _Relation:
    """How images relate to the images a model learns from (MEASURES), on one chain tree of the training and
    test images: the test's distances to train (`distances["test"]`), and `measure(folds)`, the same for each
    fold's validation images to its training folds. `distances` collects every measured candidate's."""

    def __init__(self, train: np.ndarray, test: np.ndarray, twin: float, n_folds: int) -> None:
        from competition.data import similarity

        self.similarity, self.train, self.n_test, self.twin, self.n_folds = similarity, train, len(test), twin, n_folds
        self.tree = similarity.chain_tree(np.vstack([train, test]))
        self.distances: dict[str, dict[str, np.ndarray]] = {}
        self.test_twin_share: float | None = None
        if len(test):
            n = len(train)
            sources = np.r_[np.ones(n, bool), np.zeros(len(test), bool)]
            near = similarity.nearest(test, train)[1]
            self.distances["test"] = {"nearest": near, "chain": similarity.chain_distance(self.tree, sources)[n:],
                                      "hops": similarity.chain_hops(self.tree, sources, twin)[n:]}
            self.test_twin_share = _share(near <= twin)

    def test_figures(self) -> dict[str, Any]:
        """The test's figures (chain share, quantiles of each measure); {} without test images."""
        test = self.distances.get("test")
        if test is None:
            return {}
        return {"chain_share": _share(test["chain"] <= self.twin), **{m: _quantiles(v) for m, v in test.items()}}

    def measure(self, folds: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A fold assignment's validation distances (MEASURES) and their figures against the test's: leak share,
        quantiles, KS per measure, `match` (mean KS of MATCHED) and JOINED_ONLY (the same over joined images)."""
        similarity, n_train, twin = self.similarity, len(self.train), self.twin
        found = {"nearest": similarity.nearest_in_other_fold(self.train, folds),
                 "chain": np.zeros(n_train), "hops": np.zeros(n_train)}
        for k in range(self.n_folds):
            val = folds == k
            sources = np.r_[~val, np.zeros(self.n_test, bool)]
            found["chain"][val] = similarity.chain_distance(self.tree, sources)[:n_train][val]
            found["hops"][val] = similarity.chain_hops(self.tree, sources, twin)[:n_train][val]
        figures: dict[str, Any] = {"leak_share": _share(found["nearest"] <= twin),
                                   **{m: _quantiles(v) for m, v in found.items()}}
        test = self.distances.get("test")
        if test is not None:
            ks = {f"ks_{m}": _ks(found[m], test[m]) for m in MEASURES}
            figures.update(ks, match=_round(float(np.mean([ks[f"ks_{m}"] for m in MATCHED]))))
            test_joined, val_joined = test["chain"] <= twin, found["chain"] <= twin
            if test_joined.any() and val_joined.any():
                figures[JOINED_ONLY] = _round(float(np.mean(
                    [_ks(found[m][val_joined], test[m][test_joined]) for m in MATCHED])))
        return found, figures


@dataclass
class _Candidates:
    """The candidate schemes: `candidates` (name -> record: its name, figures, or the problem that stopped it),
    `folds` (the ones made: name -> (folds, group_by, threshold)), the grouping thresholds `tried`, the subjects
    and the seen-subject block count."""

    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    folds: dict[str, tuple[np.ndarray, str | None, float | None]] = field(default_factory=dict)
    tried: list[dict[str, Any]] = field(default_factory=list)
    subjects: np.ndarray | None = None
    blocks: int | None = None


def _make_candidates(train: pd.DataFrame, labels: np.ndarray, stratified: np.ndarray, relation: _Relation, *,
                     n_folds: int, seed: int, group_by: str | None, threshold: float | None) -> _Candidates:
    """Every scheme that can be made, each measured (relation.measure): without a group_by, stratified folds,
    near-duplicate groups held out (the largest feasible threshold) and cut into chain blocks; with one, its
    subjects held out and cut into chain blocks."""
    similarity, twin, n_train = relation.similarity, relation.twin, len(relation.train)
    kind, arg = parse_group_by(group_by)
    out = _Candidates()
    subject_key: str | None = None
    subject_threshold: float | None = None
    if kind == "none":
        out.candidates["stratified"] = {"name": describe_scheme(n_folds, seed, None)}
        out.folds["stratified"] = (stratified, None, None)
        within = similarity.scan(relation.train, threshold=twin)
        if len(within.i):
            found, out.tried = _feasible_grouping(labels, n_folds, seed, within, twin)
            if found is None:
                last = out.tried[-1]
                out.candidates["grouped"] = {"name": describe_scheme(n_folds, seed, NEAR, twin), "problem": (
                    f"no near-duplicate threshold from {twin:g} down to {last['threshold']:g} puts every class in "
                    f"all {n_folds} folds (at {last['threshold']:g}: {last['problem']})")}
            else:
                at, grouped = found
                failed = "; ".join(f"{t['threshold']:g}: {t['problem']}" for t in out.tried if t["problem"])
                out.candidates["grouped"] = {
                    "name": describe_scheme(n_folds, seed, NEAR, at), "threshold": at,
                    "why": f"threshold {at:g} is the largest <= {twin:g} at which every class lies in >= {n_folds} "
                           f"groups and every fold holds every class" + (f" (not at {failed})" if failed else "")}
                out.folds["grouped"] = (grouped, NEAR, at)
            out.subjects = similarity.groups_at(n_train, within.i, within.j, within.d, twin)
            subject_key, subject_threshold = NEAR, twin
        else:
            for name in ("grouped", "seen_subjects"):
                out.candidates[name] = {"name": describe_scheme(n_folds, seed, NEAR, twin, name), "problem": (
                    f"no two training images are near twins (distance <= {twin:g}), so there are no subjects")}
    else:  # the user's subjects: held out whole, or cut into blocks
        out.subjects = resolve_groups(group_by, train, signatures=relation.train, threshold=threshold)
        used = (threshold if threshold is not None else float(arg) if arg else twin) if kind == NEAR else None
        out.candidates["grouped"] = {"name": describe_scheme(n_folds, seed, group_by, used)}
        try:
            out.folds["grouped"] = (make_folds(labels, n_folds, seed, groups=out.subjects), group_by, used)
        except CompetitionError as exc:  # too few subjects to hold out whole: blocks of them may still do
            out.candidates["grouped"]["problem"] = str(exc).removeprefix(f"{KEY}: ")
        subject_key, subject_threshold = group_by, used
    for name, (folds, _, _) in out.folds.items():
        relation.distances[name], figures = relation.measure(folds)
        out.candidates[name].update(figures)
    if out.subjects is not None:
        out.blocks, entry, found_blocks = _seen_subject_folds(out.subjects, relation.train, labels, n_folds, seed,
                                                              relation.measure)
        entry["name"] = describe_scheme(n_folds, seed, subject_key, subject_threshold, "seen_subjects", out.blocks)
        out.candidates["seen_subjects"] = entry
        if found_blocks is not None:
            out.folds["seen_subjects"] = (found_blocks[0], subject_key, subject_threshold)
            relation.distances["seen_subjects"] = found_blocks[1]
    return out


def _decide(scheme: str, group_by: str | None, made: _Candidates,
            test_figures: dict[str, Any]) -> tuple[str, str, str | None]:
    """(the scheme kept, the one-line reason, a warning or None): the one asked for; else the only one that can
    be made; else, with no test images, the group_by's or stratified; else the closest to the test. Raises
    CompetitionError when what was asked for cannot be made."""
    candidates, folds = made.candidates, made.folds
    figures = _match_figures(candidates)
    grouped_by = parse_group_by(group_by)[0] != "none"
    if scheme != "auto":
        if scheme not in folds:
            raise CompetitionError(f"{SCHEME_KEY}: {scheme}: {candidates[scheme]['problem']}; use fewer folds or "
                                   "cv.group_by (e.g. column:<patient id>)")
        return scheme, f"as asked{figures}", None
    if not folds:  # a group_by whose subjects can be neither held out nor cut into blocks
        raise CompetitionError(f"{KEY}: {group_by!r}: {_problems(candidates)}")
    if len(folds) == 1:  # nothing to choose between
        (name,) = folds
        return name, f"the only scheme that can be made ({_problems(candidates)}){figures}", None
    if not test_figures:
        name = ("grouped" if "grouped" in folds else "seen_subjects") if grouped_by else "stratified"
        why = f"cv.group_by {group_by!r} given and " if grouped_by else ""
        return name, f"{why}no test images to compare the folds with{figures}", None
    closest = test_figures["closest_scheme"]
    warning = None
    if "grouped" not in folds and test_figures["chain_share"] <= NEW_SHARE:
        warning = (f"cv.scheme auto: the test holds new subjects ({test_figures['chain_share']:.0%} of its images "
                   f"joined to train by near twins), but {candidates['grouped']['problem']}, so the folds are "
                   f"{closest.replace('_', ' ')}; use fewer cv.folds or cv.group_by (e.g. column:<patient id>)")
    return closest, f"{closest.replace('_', ' ')} folds resemble the test most{figures}", warning


def _seen_subject_folds(subjects: np.ndarray, signatures: np.ndarray, labels: np.ndarray, n_folds: int, seed: int,
                        measure: Any) -> tuple[int | None, dict[str, Any], tuple[np.ndarray, dict] | None]:
    """(blocks, the candidate's record, (folds, distances) or None): chain-block folds with n_folds, n_folds - 1,
    ..., 2 blocks a subject, the one whose `match_joined` with the test is best (a tie: more blocks; no test:
    n_folds).
    Fewer blocks put validation images more chain steps from a training image: the count is measured, not
    assumed, as the grouped scheme's threshold is searched."""
    if np.bincount(subjects).max() < 2:
        return None, {"problem": "every subject has one image"}, None
    best: tuple[float, int, np.ndarray, dict, dict] | None = None
    tried: dict[str, Any] = {}
    problem = None
    orders: dict[Any, np.ndarray] = {}  # each subject's chain walked once for every block count
    for blocks in range(n_folds, 1, -1):
        try:
            folds = chain_block_folds(subjects, signatures, labels, n_folds, seed, blocks, orders)
        except CompetitionError as exc:
            problem = problem or str(exc).removeprefix(f"{SCHEME_KEY}: ")
            tried[str(blocks)] = None
            continue
        found, figures = measure(folds)
        # blocks are judged on the images chains of near twins join to train (JOINED_ONLY), as the test's are
        score = figures.get(JOINED_ONLY, figures.get("match", 0.0))
        tried[str(blocks)] = score if "match" in figures else None
        if best is None or score < best[0]:
            best = (score, blocks, folds, found, figures)
        if "match" not in figures:
            break  # nothing to compare with: n_folds blocks
    if best is None:
        return None, {"problem": problem or "no fold assignment"}, None
    _, blocks, folds, found, figures = best
    return blocks, {**figures, "blocks": blocks, "blocks_tried": tried}, (folds, found)


def _problems(candidates: dict[str, dict[str, Any]]) -> str:
    """'grouped: why; seen subjects: why' over the candidates that could not be made."""
    return "; ".join(f"{k.replace('_', ' ')}: {c['problem']}" for k, c in candidates.items() if "problem" in c)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (scipy.stats.ks_2samp), inf distances (nothing joined) kept as
    the largest: 0 alike, 1 disjoint."""
    from scipy.stats import ks_2samp

    return _round(float(ks_2samp(_finite(a), _finite(b)).statistic))


def _finite(values: np.ndarray) -> np.ndarray:
    """Distances or hops with inf (no path to a training image) as NOT_JOINED, above any real one."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, NOT_JOINED)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    """Quartiles, 10th and 90th percentiles of distances or hops (inf, not joined: NOT_JOINED)."""
    values = _finite(values)
    if len(values) == 0:
        return {}
    return {f"p{int(q * 100):02d}": round(float(np.quantile(values, q)), 5) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}


def _match_figures(candidates: dict[str, dict[str, Any]]) -> str:
    """' (match with the test: seen subjects 0.21, grouped 0.55, stratified 0.66)' over the measured candidates."""
    scored = sorted(((c["match"], k) for k, c in candidates.items() if "match" in c))
    if not scored:
        return ""
    return " (match with the test, 0 = alike: " + ", ".join(f"{k.replace('_', ' ')} {m:.2f}" for m, k in scored) + ")"


def _feasible_grouping(labels: np.ndarray, n_folds: int, seed: int, within: Any, twin: float
                       ) -> tuple[tuple[float, np.ndarray] | None, list[dict[str, Any]]]:
    """((threshold, folds) at the largest feasible grouping threshold or None, every threshold tried)."""
    from competition.data.similarity import groups_at

    classes, y = np.unique(labels, return_inverse=True)
    tried: list[dict[str, Any]] = []
    for step in THRESHOLD_STEPS:
        at = float(f"{twin * step:.6g}")
        groups = groups_at(len(labels), within.i, within.j, within.d, at)
        per_class = [len(np.unique(groups[y == c])) for c in range(len(classes))]
        rare = int(np.argmin(per_class))
        problem = None
        if per_class[rare] < n_folds:
            n = per_class[rare]
            problem = f"class '{classes[rare]}' lies in {n} group{'s' * (n != 1)}, fewer than {n_folds} folds"
        else:
            try:
                folds = make_folds(labels, n_folds, seed, groups=groups)
            except CompetitionError as exc:
                problem = str(exc).removeprefix(f"{KEY}: ")
            else:
                for k in range(n_folds):
                    missing = np.setdiff1d(np.arange(len(classes)), y[folds == k])
                    if len(missing):
                        problem = f"fold {k} holds no '{classes[missing[0]]}'"
                        break
        tried.append({"threshold": at, "problem": problem})
        if problem is None:
            return (at, folds), tried
    return None, tried


def _share(mask: np.ndarray) -> float:
    return _round(float(np.mean(mask))) if len(mask) else 0.0


def _round(value: float) -> float:
    return round(float(value), 4)


def _ids(train: pd.DataFrame) -> np.ndarray:
    if "id" in train.columns:
        return train["id"].astype(str).to_numpy()
    return np.asarray([str(i) for i in train.index])


def _file_names(train: pd.DataFrame) -> list[str]:
    ids = _ids(train)
    if "path" not in train.columns:
        return list(ids)
    return [PurePath(str(p)).name if isinstance(p, str | PurePath) and str(p) else i for p, i in zip(train["path"], ids)]


def _regex_groups(pattern: str, names: Sequence[str], ids: np.ndarray) -> np.ndarray:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise CompetitionError(f"{KEY}: invalid regex '{pattern}': {exc}") from None
    keys: list[str] = []
    misses: list[str] = []
    for name in names:
        match = compiled.search(name)
        key = None
        if match is not None:
            key = match.group(1) if compiled.groups else match.group(0)
        if not key:
            misses.append(name)
        else:
            keys.append(key)
    if misses:
        others = f" (and {len(misses) - 1} other files)" if len(misses) > 1 else ""
        raise CompetitionError(f"{KEY}: regex '{pattern}' does not match file name '{misses[0]}'{others}")
    return pd.factorize(pd.Series(keys))[0].astype(np.int64)
