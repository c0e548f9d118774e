"""The recipe's checks that need the contest (its classes, its labels file's columns, its sample): run by `train`
once the contest is indexed, before the run folder is made, and by `doctor`."""

from __future__ import annotations

from typing import Any

from competition.errors import CompetitionError
from competition.recipe.schema import Recipe



def check_with_contest(recipe: Recipe, contest: Any, console: Any = None) -> None:
    """The recipe's checks that need the contest (its classes, its train.csv columns, its images per class): run
    by `train` once the contest is loaded, before the run folder is made, and by `doctor`. With a console, also
    says how the contest's grey images of more than 8 bits were mapped to 0..255 (known once they are decoded).

    Raises CompetitionError naming the recipe key and value."""
    from competition.balance import check_classes
    from competition.folds import make_folds, parse_group_by, resolve_groups, stratified_folds, stratify_labels

    if contest.multilabel:
        _check_multilabel(recipe, contest)
    check_classes(recipe.balance, list(contest.classes))
    _check_metric_with_sample(recipe.data.metric, contest, recipe.data.positive_class)
    from competition.model.classic import is_transductive

    if is_transductive(recipe.model.kind) and len(contest.test) == 0:
        raise CompetitionError(f"recipe.model.kind: {recipe.model.kind!r} is transductive (it learns from the test "
                               f"images, unlabelled), and {contest.root} has no test images")
    # The folds' checks (images per class, a group_by column or regex against the files) without decoding;
    # near-duplicate groups need the pixels and are checked when the folds are made.
    kind, _ = parse_group_by(recipe.cv.group_by)
    groups = resolve_groups(recipe.cv.group_by, contest.train) if kind in ("column", "regex") else None
    labels, targets = contest.train["label"].to_numpy(), (contest.y(), contest.classes) if contest.multilabel else None
    if groups is None:
        stratified_folds(labels, recipe.cv.folds, recipe.cv.seed, targets)
    else:
        make_folds(stratify_labels(labels, targets), recipe.cv.folds, recipe.cv.seed, groups=groups)
    if console is not None:
        from competition.data.cache import intensity_note

        paths = [*contest.train["path"].tolist(), *contest.test["path"].tolist()]
        note = intensity_note(paths, recipe.data.intensity_window)
        if note:
            console.print(note, markup=False, highlight=False)


def _check_multilabel(recipe: Recipe, contest: Any) -> None:
    """A multi-label contest trains one sigmoid output per label: the recipe's parts that assume one class per
    image are refused in one line naming the key (the metric, balancing, a transductive kind, pseudo-labels)."""
    from competition.metrics import METRICS, get_metric
    from competition.model.classic import is_transductive

    layout = recipe.data.layout()
    declared = ("a multi-label contest (recipe.data.label_columns)" if layout.label_columns is not None else
                f"a multi-label contest (recipe.data.label_separator {layout.label_separator!r})")
    metric = get_metric(recipe.data.metric)
    if not metric.multilabel:
        usable = ", ".join(name for name, m in METRICS.items() if m.multilabel)
        raise CompetitionError(f"recipe.data.metric: {metric.name!r} is defined for one class per image, not for "
                               f"{declared}; use one of {usable}")
    if recipe.balance.method != "none":
        raise CompetitionError(f"recipe.balance.method: {recipe.balance.method!r} balances one class per image; "
                               f"{declared} trains each label on its own: use 'none'")
    if is_transductive(recipe.model.kind):
        raise CompetitionError(f"recipe.model.kind: {recipe.model.kind!r} spreads one class per image; {declared} "
                               "needs knn, logistic or a network")
    for key in ("mixup", "cutmix"):
        if getattr(recipe.train, key) is not None:
            raise CompetitionError(f"recipe.train.{key}: mixes one-hot class targets; remove it for {declared}")
    if recipe.train.pseudo_label is not None:
        raise CompetitionError(f"recipe.train.pseudo_label: pseudo-labels are one class per image; remove it for "
                               f"{declared}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_metric_with_sample(name: str, contest: Any, recipe_positive: str | None = None) -> None:
    """A metric that scores probabilities (ROC AUC, log loss) needs a sample that asks for them: one column per
    class, or one column of numbers in a two-class contest. CompetitionError naming the key and the sample."""
    from competition.data.contest import sample_format, value_columns
    from competition.files import read_string_csv
    from competition.metrics import get_metric

    metric = get_metric(name)
    if recipe_positive is not None and recipe_positive not in contest.classes:
        raise CompetitionError(f"recipe.data.positive_class: {recipe_positive!r} is not a class (classes: "
                               f"{', '.join(contest.classes)})")
    if metric.name == "kappa":  # quadratic weights need the grades' order: numbers give it, names do not
        named = [c for c in contest.classes if not _is_number(c)]
        if named:
            raise CompetitionError(f"recipe.data.metric: 'kappa' (quadratic weighted) weighs errors by the distance "
                                   f"between grades, but class {named[0]!r} is not a number, so the classes have no "
                                   "order; use grades as labels (0, 1, 2, ...) or another metric")
    if metric.needs != "probabilities":
        return
    sample = read_string_csv(contest.sample_path)
    kind = sample_format(sample, contest.classes, probabilities=True, multilabel=contest.multilabel)
    if kind == "labels":
        from competition.metrics import METRICS

        column = value_columns(sample)[0]
        usable = [m.name for m in METRICS.values() if m.needs == "labels" and (m.multilabel or not contest.multilabel)]
        example = str(sample[column].iloc[0])
        holds = f"holds label texts such as {example!r}" if example.strip() else "holds empty label texts"
        raise CompetitionError(f"recipe.data.metric: {name!r} scores probabilities, but {contest.sample_path} asks for "
                               f"labels (column {column!r} {holds}); choose a metric of labels "
                               f"({', '.join(usable)}) or check the sample")
    if kind == "binary" and len(contest.classes) != 2:
        raise CompetitionError(f"recipe.data.metric: {name!r} with a one-column sample ({contest.sample_path}) needs "
                               f"two classes; the contest has {len(contest.classes)}")


