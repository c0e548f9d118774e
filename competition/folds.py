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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from competition.errors import CompetitionError

KEY = "recipe.cv.group_by"
NEAR = "near_duplicates"
SYNTAX = "None, column:<name>, regex:<pattern>, near_duplicates[:<threshold>]"


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
