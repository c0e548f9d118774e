"""Cross-validation folds: which training image is validated by which fold model.

Plain stratified folds over-estimate when the training set holds near-copies of one another
(neighbouring MRI slices of one brain, several photos of one patient): a validation image then has a
twin in the training folds. ``recipe.cv.group_by`` keeps such images together in one fold:

    None                     stratified k-fold, no grouping
    column:<name>            a train.csv column (e.g. a patient id)
    regex:<pattern>          applied to the file name (basename of path, else the id); the group is
                             the first capture group if the pattern has one, else the whole match
    near_duplicates          groups from image similarity (see competition.data.similarity): connected
                             components of the pairs whose signature distance is <= the threshold
    near_duplicates:<float>  the same with an explicit threshold

``recipe.cv.scheme`` says which folds to make (`choose_scheme`):

    auto (default)  group_by given: grouped by it. Otherwise the folds whose validation images resemble the
                    test set most: the share of test images with a near twin in train (distance <=
                    the twin threshold: cv.near_duplicate_threshold, else similarity.DEFAULT_THRESHOLD) is
                    compared with each candidate's *leak share*, the share of validation images with a near
                    twin in their training folds, and the closest candidate wins (a tie: stratified).
                    Candidates: stratified, and near_duplicates grouping at the largest threshold of
                    twin threshold x (1, 0.9, ..., 0.1) at which every class lies in at least `folds`
                    groups and every fold holds every class. No feasible threshold: stratified, with a warning.
    stratified      StratifiedKFold; a group_by with it is refused.
    grouped         group_by's grouping; without group_by, near_duplicates at that feasible threshold (none
                    feasible: an error).

Grouped folds from near-duplicate groups are the image-similarity analogue of grouping by patient, as in
scikit-learn's StratifiedGroupKFold; choosing the scheme whose validation resembles the test set follows the
advice to make validation mimic the train/test relationship (adversarial-validation practice).
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
SCHEMES = ("auto", "stratified", "grouped")
# Grouping thresholds cv.scheme auto and grouped try, as fractions of the twin threshold, largest first.
THRESHOLD_STEPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
# A validation leak share more than this (absolute) above the test's share of images with a near twin in train
# marks an estimate as likely optimistic (leaderboard, audit). On the Alzheimer set stratified folds leak 0.936
# against the test's 0.156 and over-estimated the test macro F1 by 0.19-0.32; grouped folds leak ~0.01 and
# predicted it within 0.002. 0.2 flags such gaps and not the few points that separate honest schemes.
OPTIMISTIC_MARGIN = 0.2


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


def describe_scheme(n_folds: int, seed: int, group_by: str | None, threshold: float | None = None) -> str:
    """A one-line name of the cv scheme, shown beside every estimate so unlike schemes are not compared.

    near_duplicates always names its threshold (`threshold`, else the one in group_by, else the default),
    so a later change of the default cannot make two schemes look alike.
    """
    kind, arg = parse_group_by(group_by)
    if kind == "none":
        return f"stratified {n_folds}-fold, seed {seed}"
    if kind == NEAR:
        if threshold is None:
            from competition.data.similarity import DEFAULT_THRESHOLD

            threshold = float(arg) if arg else DEFAULT_THRESHOLD
        return f"grouped ({NEAR}, threshold {threshold:g}) {n_folds}-fold, seed {seed}"
    return f"grouped ({kind}:{arg}) {n_folds}-fold, seed {seed}"


@dataclass
class SchemeChoice:
    """The folds `choose_scheme` made, and what they rest on (all shares in [0, 1], distances 1 - cosine).

    requested        cv.scheme as given: "auto", "stratified" or "grouped"
    scheme           what was made: "stratified" or "grouped"
    group_by         the grouping used: None, the recipe's group_by, or "near_duplicates" (with `threshold`)
    threshold        near-duplicate grouping threshold (None unless grouped by near_duplicates)
    folds            int64 (n_train,) fold index per training row
    twin_threshold   distance at or below which two images are near twins, for the shares below
    test_twin_share  share of test images with a near twin in train (None: no test images)
    leak_share       share of validation images of `folds` with a near twin in their training folds
    candidates       per candidate ("stratified", "grouped"): its scheme name, leak share, and threshold or problem
    thresholds       the grouping thresholds tried, largest first: {"threshold", "problem" (None: feasible)}
    reason           one line: why this scheme
    warning          one line when auto fell back to stratified folds although the contest has near twins
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
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    warning: str | None = None

    @property
    def name(self) -> str:
        """The scheme's one-line name (describe_scheme), as run.json's `scheme` and the leaderboard show it."""
        return describe_scheme(self.n_folds, self.seed, self.group_by, self.threshold)

    def record(self) -> dict[str, Any]:
        """The choice as JSON (run.json's `cv`, audit.json's `leak.auto`): everything but the fold array."""
        return {"requested": self.requested, "scheme": self.scheme, "name": self.name, "folds": self.n_folds,
                "seed": self.seed, "group_by": self.group_by,
                "threshold": self.threshold, "twin_threshold": self.twin_threshold,
                "test_twin_share": self.test_twin_share, "leak_share": self.leak_share,
                "candidates": self.candidates, "thresholds": self.thresholds, "reason": self.reason,
                "warning": self.warning, "optimistic_margin": OPTIMISTIC_MARGIN}

    def lines(self) -> list[str]:
        """What `train` prints: the scheme and why, then the thresholds tried (when a search ran)."""
        out = [f"folds: {self.name} (cv.scheme {self.requested})", f"  {self.reason}"]
        grouped = self.candidates.get("grouped", {})
        if self.scheme == "grouped" and self.group_by == NEAR and "why" in grouped:
            out.append(f"  {grouped['why']}")
        return out


def optimistic(record: dict[str, Any] | None) -> bool:
    """True when a fold record (SchemeChoice.record(), run.json's `cv`) has a validation leak share more than
    OPTIMISTIC_MARGIN above its test twin share; False when either figure is missing (older runs)."""
    if not isinstance(record, dict):
        return False
    leak, test = record.get("leak_share"), record.get("test_twin_share")
    if not isinstance(leak, int | float) or not isinstance(test, int | float):
        return False
    return float(leak) - float(test) > OPTIMISTIC_MARGIN


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
) -> SchemeChoice:
    """Make the folds recipe.cv asks for and measure how much their validation images leak (module docstring).

    train: rows with `label` (and `path` unless train_signatures are given; a group_by column when it names one).
    test: rows with `path` unless test_signatures are given; None or empty: no test share, auto stays stratified.
    threshold: cv.near_duplicate_threshold: the twin threshold (default similarity.DEFAULT_THRESHOLD), the
    largest grouping threshold tried, and the threshold of group_by near_duplicates without its own.
    Signatures (n, 256) float32 (competition.data.similarity) are computed from the paths, cached, when not given.

    Raises CompetitionError (one line naming the recipe key): unknown scheme, stratified with a group_by, a bad
    group_by or fold count (make_folds, resolve_groups), grouped without a feasible near-duplicate threshold.
    """
    from competition.data import similarity

    check_scheme(scheme, group_by)
    labels = train["label"].to_numpy()
    twin = float(threshold) if threshold is not None else similarity.DEFAULT_THRESHOLD
    stratified = make_folds(labels, n_folds, seed)  # also checks the images per class
    if train_signatures is None:
        train_signatures = similarity.train_signatures(train)
    if len(train_signatures) != len(train):
        raise CompetitionError(f"{KEY}: {len(train_signatures)} image signatures for {len(train)} training rows")
    if test_signatures is None and test is not None and len(test):
        test_signatures = similarity.signatures_of_test(test)
    test_share = None
    if test_signatures is not None and len(test_signatures):
        test_share = _share(similarity.nearest(test_signatures, train_signatures)[1] <= twin)
    base = dict(n_folds=n_folds, seed=seed, twin_threshold=twin, test_twin_share=test_share)

    kind, arg = parse_group_by(group_by)
    if kind != "none":  # the user's explicit grouping, as before cv.scheme existed
        groups = resolve_groups(group_by, train, signatures=train_signatures, threshold=threshold)
        folds = make_folds(labels, n_folds, seed, groups=groups)
        used = (threshold if threshold is not None else float(arg) if arg else twin) if kind == NEAR else None
        leak = similarity.leak_share(train_signatures, folds, twin)
        return SchemeChoice(scheme, "grouped", group_by, used, folds, leak_share=_round(leak), reason=(
            f"cv.group_by {group_by!r} given, so grouped by it{_figures(leak, test_share)}"), **base)

    within = similarity.scan(train_signatures, threshold=twin, fold_sets=[stratified])
    strat_leak = _share(within.fold_nearest[0] <= twin)
    candidates: dict[str, dict[str, Any]] = {
        "stratified": {"name": describe_scheme(n_folds, seed, None), "leak_share": strat_leak}}
    if scheme == "stratified":
        return SchemeChoice(scheme, "stratified", None, None, stratified, leak_share=strat_leak,
                            candidates=candidates, reason=f"as asked{_figures(strat_leak, test_share)}", **base)
    if scheme == "auto" and len(within.i) == 0:
        return SchemeChoice(scheme, "stratified", None, None, stratified, leak_share=strat_leak, candidates=candidates,
                            reason=f"no two training images are near twins (distance <= {twin:g}), "
                                   f"so grouping changes nothing{_figures(strat_leak, test_share)}", **base)

    found, tried = _feasible_grouping(labels, n_folds, seed, within, twin)
    if found is None:
        last = tried[-1]
        problem = (f"no near-duplicate threshold from {twin:g} down to {last['threshold']:g} puts every class in "
                   f"all {n_folds} folds (at {last['threshold']:g}: {last['problem']})")
        candidates["grouped"] = {"name": describe_scheme(n_folds, seed, NEAR, twin), "problem": problem}
        if scheme == "grouped":
            raise CompetitionError(f"{SCHEME_KEY}: grouped: {problem}; use fewer folds or cv.group_by "
                                   "(e.g. column:<patient id>)")
        warning = (f"cv.scheme auto: {problem}, so the folds are stratified{_figures(strat_leak, test_share)}; "
                   "use fewer cv.folds or cv.group_by (e.g. column:<patient id>) for folds like the test")
        return SchemeChoice(scheme, "stratified", None, None, stratified, leak_share=strat_leak, candidates=candidates,
                            thresholds=tried, reason="no feasible near-duplicate grouping (see the warning)",
                            warning=warning, **base)
    at, grouped = found
    grouped_leak = _share(similarity.nearest_in_other_fold(train_signatures, grouped) <= twin)
    failed = "; ".join(f"{t['threshold']:g}: {t['problem']}" for t in tried if t["problem"])
    candidates["grouped"] = {
        "name": describe_scheme(n_folds, seed, NEAR, at), "threshold": at, "leak_share": grouped_leak,
        "why": f"threshold {at:g} is the largest <= {twin:g} at which every class lies in >= {n_folds} groups and "
               f"every fold holds every class" + (f" (not at {failed})" if failed else "")}
    both = (f"validation leak {grouped_leak:.1%} grouped (threshold {at:g}), {strat_leak:.1%} stratified"
            + (f", test {test_share:.1%}" if test_share is not None else "")
            + f" (share of images with a near twin, distance <= {twin:g}, in their training data)")
    if scheme == "grouped":
        return SchemeChoice(scheme, "grouped", NEAR, at, grouped, leak_share=grouped_leak, candidates=candidates,
                            thresholds=tried, reason=f"as asked: {both}", **base)
    if test_share is None:
        return SchemeChoice(scheme, "stratified", None, None, stratified, leak_share=strat_leak, candidates=candidates,
                            thresholds=tried, reason=f"no test images to compare the folds with: {both}", **base)
    if abs(grouped_leak - test_share) < abs(strat_leak - test_share):
        return SchemeChoice(scheme, "grouped", NEAR, at, grouped, leak_share=grouped_leak, candidates=candidates,
                            thresholds=tried, reason=f"grouped folds resemble the test most: {both}", **base)
    return SchemeChoice(scheme, "stratified", None, None, stratified, leak_share=strat_leak, candidates=candidates,
                        thresholds=tried, reason=f"stratified folds resemble the test as much or more: {both}", **base)


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


def _figures(leak: float, test_share: float | None) -> str:
    """', validation leak L% (test T%)': the shares of images with a near twin in their training data."""
    test = f" against the test's {test_share:.1%}" if test_share is not None else ""
    return f" (validation leak {leak:.1%}{test})"


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
