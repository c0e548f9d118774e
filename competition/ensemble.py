"""Ensembles of finished runs: combine member OOF/test probabilities into a new run folder.

Members are stacked as ``P`` of shape (n_members, n, k). Every method is a scikit-learn-style
estimator (``fit(P, y)`` -> self, ``predict_proba(P)``) registered by name, so the CLI picks one by
string. Methods that learn from OOF (``fitted_on_oof``) would report an optimistic OOF if scored on
the rows they were fitted on, so the ensemble's saved OOF comes from `cross_val_oof` over the
members' own folds; the estimator refitted on all OOF rows produces the test probabilities.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from competition.errors import CompetitionError
from competition.files import check_output, locked
from competition.metrics import METRICS as CONTEST_METRICS
from competition.metrics import EPS, cross_fit_predict, fast_macro_f1, is_multilabel, log_proba, macro_f1
from competition.runs import Run, check_same_folds, save_run
from competition.runs.run import check_one_contest
from competition.runs.folder import holds, run_name_problem, write_recipe
from competition.runs.locking import building, lock_holder

def ensemble_score(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """Higher-is-better score of (y, proba) for the searches: any registered contest metric (competition.metrics.
    METRICS), oriented (a loss negated); macro F1 and log loss by their fast paths."""
    if metric == "macro_f1":
        return lambda y, proba: (macro_f1(y, proba) if is_multilabel(y) else
                                 fast_macro_f1(y, proba.argmax(axis=1), proba.shape[1]))
    if metric == "log_loss":
        return lambda y, proba: (-CONTEST_METRICS["log_loss"](y, proba) if is_multilabel(y) else
                                 float(log_proba(proba[np.arange(len(y)), y]).mean()))
    if metric not in CONTEST_METRICS:
        raise CompetitionError(f"ensemble metric: unknown '{metric}'; known: {', '.join(CONTEST_METRICS)}")
    scorer = CONTEST_METRICS[metric]
    return lambda y, proba: scorer.oriented(scorer(y, proba))


def blend(weights: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Weighted sum of member matrices (weights sum to 1); the one formula fit and predict share."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.asarray(P, dtype=np.float64), axes=1)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=1, keepdims=True)


class Ensembler(BaseEstimator):
    """Base: fit on member OOF probabilities P (m, n, k) and labels y; predict_proba(P) -> (n, k)."""

    fitted_on_oof: ClassVar[bool] = False

    def fit(self, P: np.ndarray, y: np.ndarray) -> Ensembler:
        self.n_members_ = np.shape(P)[0]
        return self

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError


ENSEMBLERS: dict[str, type[Ensembler]] = {}


def register(name: str) -> Callable[[type[Ensembler]], type[Ensembler]]:
    """Class decorator: add an Ensembler to the registry under `name` (`ensemble --method name`)."""
    def decorate(cls: type[Ensembler]) -> type[Ensembler]:
        ENSEMBLERS[name] = cls
        return cls

    return decorate


def make_ensembler(method: str, metric: str = "macro_f1") -> Ensembler:
    """The registered estimator for `method`, given `metric` when it searches on one."""
    if method not in ENSEMBLERS:
        raise CompetitionError(f"ensemble method: unknown '{method}'; known: {', '.join(sorted(ENSEMBLERS))}")
    ensemble_score(metric)  # validates the name
    estimator = ENSEMBLERS[method]()
    if "metric" in estimator.get_params():
        estimator.set_params(metric=metric)
    return estimator


@register("mean")
class MeanEnsembler(Ensembler):
    """Plain average: nothing fitted, so nothing to overfit; the baseline every other method must beat."""

    def fit(self, P: np.ndarray, y: np.ndarray) -> MeanEnsembler:
        self.n_members_ = np.shape(P)[0]
        self.weights_ = np.full(self.n_members_, 1.0 / self.n_members_)
        return self

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        return blend(np.full(len(P), 1.0 / len(P)), P)


@register("rank")
class RankEnsembler(Ensembler):
    """Average of per-class ranks scaled to (0, 1], rows renormalised: ignores members' calibration.

    Ranks are taken within the matrix passed in (OOF rows among OOF rows, test among test).
    """

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        P = np.asarray(P, dtype=np.float64)
        ranks = rankdata(P, axis=1) / P.shape[1]  # per member and class, over rows; ties averaged
        return _normalise_rows(ranks.mean(axis=0))


@register("geometric")
class GeometricEnsembler(Ensembler):
    """Normalised geometric mean: a member confidently ruling a class out vetoes it (log-prob averaging)."""

    def __init__(self, eps: float = EPS) -> None:
        self.eps = eps

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        logs = np.log(np.clip(np.asarray(P, dtype=np.float64), self.eps, 1.0))  # eps is a parameter here
        return _normalise_rows(np.exp(logs.mean(axis=0)))


class BlendEnsembler(Ensembler):
    """An ensembler whose fit learns `weights_` for a weighted mean of the members' probabilities."""

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        return blend(self.weights_, P)


@register("weighted")
class WeightedEnsembler(BlendEnsembler):
    """Non-negative weights summing to 1, by coordinate search on a grid from the uniform mean.

    Macro F1 is piecewise constant in the weights, so gradient optimisers stall; a grid search per
    member (others rescaled to keep the sum) handles both metrics and only moves on strict
    improvement, so in-sample it never scores below the plain mean.
    """

    fitted_on_oof = True

    def __init__(self, metric: str = "macro_f1", n_steps: int = 21, n_passes: int = 3) -> None:
        self.metric = metric
        self.n_steps = n_steps
        self.n_passes = n_passes

    def fit(self, P: np.ndarray, y: np.ndarray) -> WeightedEnsembler:
        score = ensemble_score(self.metric)
        y = np.asarray(y, dtype=np.int64)
        m = len(P)
        weights = np.full(m, 1.0 / m)
        best = score(y, blend(weights, P))
        for _ in range(self.n_passes):
            improved = False
            for j in range(m):
                rest = weights.copy()
                rest[j] = 0.0
                if rest.sum() == 0:
                    continue  # j holds all the weight; another member's turn can move it
                for g in np.linspace(0.0, 1.0, self.n_steps):
                    candidate = rest * (1.0 - g) / rest.sum()
                    candidate[j] = g
                    value = score(y, blend(candidate, P))
                    if value > best + 1e-12:
                        best, weights, improved = value, candidate, True
            if not improved:
                break
        self.n_members_ = m
        self.weights_ = weights
        self.score_ = best
        return self


@register("caruana")
class CaruanaEnsembler(BlendEnsembler):
    """Caruana et al. (2004): greedy forward selection with replacement, from the best single member.

    Each step adds the member whose inclusion scores best (even if worse than now, to escape
    plateaus); the kept selection is the best-scoring prefix, so in-sample it is never below the
    best member. Weights are selection counts, normalised. Ties (macro F1 moves in steps) go to the lower
    log loss, as AutoGluon breaks them, then to the member listed first: the order members are named in
    decides nothing that a score can.
    """

    fitted_on_oof = True

    def __init__(self, metric: str = "macro_f1", n_iter: int = 50) -> None:
        self.metric = metric
        self.n_iter = n_iter

    def fit(self, P: np.ndarray, y: np.ndarray) -> CaruanaEnsembler:
        score = ensemble_score(self.metric)
        y = np.asarray(y, dtype=np.int64)
        m = len(P)
        eye = np.eye(m)
        self.member_scores_ = np.array([score(y, blend(eye[j], P)) for j in range(m)])
        counts = eye[_best(self.member_scores_, [blend(eye[j], P) for j in range(m)], y)].copy()
        best, best_counts = float(self.member_scores_.max()), counts.copy()
        for _ in range(self.n_iter):
            blends = [blend((counts + eye[j]) / (counts.sum() + 1), P) for j in range(m)]
            trials = [score(y, b) for b in blends]
            j = _best(np.asarray(trials), blends, y)
            counts[j] += 1
            if trials[j] > best + 1e-12:
                best, best_counts = trials[j], counts.copy()
        self.n_members_ = m
        self.counts_ = best_counts.astype(np.int64)
        self.weights_ = best_counts / best_counts.sum()
        self.score_ = best
        return self


def _best(scores: np.ndarray, blends: list[np.ndarray], y: np.ndarray) -> int:
    """Index of the best score; among scores tied with it (within 1e-12), the blend of lowest log loss."""
    tied = np.flatnonzero(scores >= scores.max() - 1e-12)
    if len(tied) == 1:
        return int(tied[0])
    if is_multilabel(y):  # multi-label: the mean binary cross-entropy
        losses = [CONTEST_METRICS["log_loss"](y, blends[j]) for j in tied]
        return int(tied[int(np.argmin(losses))])
    rows = np.arange(len(y))
    losses = [-np.mean(np.log(np.clip(blends[j][rows, y], EPS, 1.0))) for j in tied]
    return int(tied[int(np.argmin(losses))])


@register("stacking")
class StackingEnsembler(Ensembler):
    """Multinomial logistic regression on the members' concatenated log-probabilities.

    Learns cross-member, cross-class corrections a weighted mean cannot; the most prone to overfit,
    hence the nested-CV OOF.
    """

    fitted_on_oof = True

    def __init__(self, C: float = 1.0, max_iter: int = 1000, eps: float = EPS) -> None:
        self.C = C
        self.max_iter = max_iter
        self.eps = eps

    def _features(self, P: np.ndarray) -> np.ndarray:
        logs = np.log(np.clip(np.asarray(P, dtype=np.float64), self.eps, 1.0))  # eps is a parameter here
        return logs.transpose(1, 0, 2).reshape(logs.shape[1], -1)  # (n, m * k)

    def fit(self, P: np.ndarray, y: np.ndarray) -> StackingEnsembler:
        self.n_members_, _, self.n_classes_ = np.shape(P)
        # A few hundred rows x (m*k) features: BLAS threads only add start-up and contention.
        with threadpool_limits(limits=1):
            self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(self._features(P), y)
        return self

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        out = np.zeros((np.shape(P)[1], self.n_classes_))
        out[:, self.model_.classes_] = self.model_.predict_proba(self._features(P))  # classes seen in fit
        return out


def cross_val_oof(estimator: Ensembler, P: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Honest OOF for a fitted method (P: float (n_members, n, k)): each fold's rows predicted by a clone
    fitted on the other folds (metrics.cross_fit_predict)."""
    return cross_fit_predict(estimator, P, y, folds, sample_axis=1).astype(np.float64)


def ensemble_dir(runs_dir: str | Path, name: str) -> Path:
    """runs_dir/name, refusing any name that would land elsewhere."""
    problem = run_name_problem(name)
    if problem:
        raise CompetitionError(f"ensemble name: {problem}")
    root = Path(runs_dir).resolve()
    out = (root / name).resolve()
    if out.parent != root:
        raise CompetitionError(f"ensemble name '{name}': resolves outside {root}")
    return Path(runs_dir) / name


def build_ensemble(
    runs: list[Run], method: str, name: str, runs_dir: str | Path, metric: str | None = None
) -> Path:
    """Fit `method` on the members' OOF and write runs_dir/name as a run of kind 'ensemble'. `metric`: what a
    fitted method optimises; None: the members' contest metric (recipe.data.metric)."""
    if len(runs) < 2:
        raise CompetitionError(f"ensemble '{name}': needs at least 2 runs, got {len(runs)}")
    check_one_contest(runs, f"ensemble '{name}'")  # one contest, one contest metric
    metric = metric or runs[0].record.metric
    if method == "rank" and runs[0].metric.name == "log_loss":
        raise CompetitionError(f"ensemble '{name}': --method rank gives ranks scaled to (0, 1], not probabilities, and "
                               "this contest is scored by log loss, which needs calibrated probabilities; use mean, "
                               "geometric, weighted, caruana or stacking")
    if runs[0].multilabel and method in ("rank", "geometric", "stacking"):
        raise CompetitionError(f"ensemble '{name}': --method {method} makes each row a distribution over classes; the "
                               "runs are multi-label (each label's probability on its own): use mean, weighted or "
                               "caruana")
    estimator = make_ensembler(method, metric)
    out = ensemble_dir(runs_dir, name)
    members = [r.name for r in runs]
    if len(set(members)) != len(members):
        raise CompetitionError(f"ensemble '{name}': a run is listed twice in {members}")
    if name in members:
        raise CompetitionError(f"ensemble '{name}': has the same name as one of its members")
    check_replaceable(name, out, runs)
    check_same_folds(runs)

    first = runs[0]
    oof_members = np.stack([r.oof for r in runs]).astype(np.float64)
    test_members = np.stack([r.test for r in runs]).astype(np.float64)
    estimator.fit(oof_members, first.y)
    in_sample = estimator.predict_proba(oof_members)
    if estimator.fitted_on_oof:
        oof, oof_is = cross_val_oof(estimator, oof_members, first.y, first.folds), "nested-cv"
    else:
        oof, oof_is = in_sample, "unfitted"
    test = estimator.predict_proba(test_members)
    weights = getattr(estimator, "weights_", None)

    recipe = {
        "kind": "ensemble",
        "method": method,
        "metric": metric,
        "params": dict(estimator.get_params()),
        "members": [{"name": r.name, "recipe_hash": r.recipe_hash} for r in runs],
    }
    return write_ensemble(out, name, recipe, runs, oof, test, metric=metric, weights=weights, in_sample=in_sample,
                          oof_is=oof_is)


def write_ensemble(out: Path, name: str, recipe: dict[str, Any], runs: list[Run], oof: np.ndarray, test: np.ndarray,
                   *, metric: str, weights: Sequence[float] | None, in_sample: np.ndarray, oof_is: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write `out` (runs_dir/name) as a run of kind 'ensemble' of `runs`: probabilities oof (n, k) and test
    (m, k), `recipe` (with its "method") as its recipe.yaml and hash, run.json recording the members, their
    OOF macro F1, `weights`, the in-sample and saved OOF macro F1, `oof_is` and any `extra` keys. Built whole
    aside, then put in place of any earlier ensemble of this name; CompetitionError if `out` holds anything else.
    Each member's entry in `recipe` gets the digest of the OOF it was built from (competition.runs.run.member_problem
    tells later when a member was trained again), and run.json the test images' fingerprint the members share
    (CompetitionError when members predicted different test images)."""
    recipe = {**recipe, "members": [_with_oof_digest(m, runs) for m in recipe.get("members", [])]}
    test_images = _shared_test_images(name, runs)
    if test_images is not None:
        extra = {"test_images": test_images, **(extra or {})}
    recipe_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    with locked(out):  # one build of this name at a time: checked, built and swapped in without another between
        check_replaceable(name, out, runs)  # again: a train may have begun there meanwhile
        with building(out) as new:
            write_recipe(new, yaml.safe_dump(recipe, sort_keys=False))
            write_ensemble_folder(new, name, recipe["method"], metric, runs, oof, test, recipe_hash, weights, in_sample,
                           oof_is, extra or {})
    return out


def _with_oof_digest(member: Any, runs: list[Run]) -> Any:
    """A member entry ({"name", "recipe_hash"}) with the digest of that member's OOF (decisions.oof_digest)."""
    from competition.runs.decisions import oof_digest

    run = next((r for r in runs if isinstance(member, dict) and r.name == member.get("name")), None)
    return {**member, "oof_sha256": oof_digest(run.path)} if run is not None else member


def _shared_test_images(name: str, runs: list[Run]) -> dict[str, Any] | None:
    """The test images' fingerprint (run.json "test_images") the members recorded, or None when none did;
    CompetitionError when two members predicted different test images (one trained before they changed)."""
    known = [(r, r.record.test_images) for r in runs if r.record.test_images is not None]
    for run, record in known[1:]:
        first, seen = known[0]
        if (record.get("n"), record.get("content")) != (seen.get("n"), seen.get("content")):
            raise CompetitionError(f"ensemble '{name}': members '{first.name}' and '{run.name}' predicted different "
                                   "test images (the contest's test images changed between their trainings); train "
                                   "the older one again so that every member predicts the same images")
    return known[0][1] if known else None


def check_replaceable(name: str, out: Path, runs: Sequence[Run] = ()) -> None:
    """An ensemble may only replace nothing or an earlier ensemble: never a model run (finished or not),
    nor a folder a train is working in; and it never lands in the contest folder or run folder of one of its
    `runs` (competition.files.check_output)."""
    holder = lock_holder(out)
    if holder is not None:
        raise CompetitionError(f"ensemble '{name}': {out} is in use by a train ({holder}); pick another name")
    what = holds(out)
    if what not in (None, "an ensemble"):
        raise CompetitionError(f"ensemble '{name}': {out} already holds {what}; pick another name")
    check_output(out, folder=True, option="runs_dir", ours=lambda _: True,  # what it holds: checked just above
                 protected=[guard for r in runs for guard in (("the contest folder of run " + r.name, r.data_root),
                                                               ("the folder of run " + r.name, r.path))])


def write_ensemble_folder(out: Path, name: str, method: str, metric: str, runs: list[Run], oof: np.ndarray,
                          test: np.ndarray, recipe_hash: str, weights: Sequence[float] | None, in_sample: np.ndarray,
                          oof_is: str, extra: dict[str, Any]) -> Path:
    """An ensemble's run folder `out` written whole (recipe, OOF and test probabilities, its members and their
    weights, run.json); build_ensemble calls it with the ensemble's lock held. Returns `out`."""
    first = runs[0]
    members = [r.name for r in runs]
    used = [r for r, w in zip(runs, weights if weights is not None else [1.0] * len(runs), strict=True) if w > 0]
    kinds = sorted({k for r in used for k in r.model_kinds})
    contest = first.metric  # the members' contest metric (check_one_contest): what the ensemble is scored by
    scored = ({} if contest.name == "macro_f1" else
              {"contest_metric": contest.name, "in_sample_score": contest.of_oof(first.y, in_sample, first.folds),
               "member_scores": {r.name: r.score() for r in runs}})
    return save_run(
        out,
        name=name,
        kind="ensemble",
        classes=first.classes,
        ids=first.ids,
        y=first.y,
        folds=first.folds,
        oof=oof,
        test=test,
        test_ids=first.test_ids,
        recipe_hash=recipe_hash,
        scheme=first.scheme,
        paths=first.paths,
        subjects=first.subjects,
        cv=first.cv,  # the members' folds (check_same_folds), with their figures
        extra={
            "members": members,
            "model_kinds": kinds,  # of the members it weighs (competition.folds.estimate_doubt reads them)
            "method": method,
            "metric": metric,
            "weights": None if weights is None else [float(w) for w in weights],
            "in_sample_macro_f1": macro_f1(first.y, in_sample),
            "oof_macro_f1": macro_f1(first.y, oof),
            "member_macro_f1": {r.name: macro_f1(r.y, r.oof) for r in runs},
            **scored,
            "oof_is": oof_is,
            # as the first member stores it, relative to its contest folder: spelled out whole here, since
            # save_run takes a relative path from the working folder before storing it relative again
            "sample_submission": _stored_path(first, "sample_submission"),
            "data_root": first.record.data_root,
            **({"layout": first.record.layout} if first.record.layout else {}),
            **({"positive_class": first.record.positive_class} if first.record.positive_class else {}),
            **extra,
        },
    )


def ensemble_summary(run: Run) -> dict[str, Any] | None:
    """What an ensemble rests on, from its run.json (None for a model run), every figure by the contest metric
    (`metric`, a competition.metrics.Metric; run.json's member_scores and in_sample_score, or for macro F1 its
    member_macro_f1 and in_sample_macro_f1): `method`, `oof_is`, `members` as [{"name", "weight" (float, or None
    for methods without weights), "score" (the member's OOF score, or None when not recorded)}], `nested` (its
    saved OOF: for fitted methods each fold predicted by an ensembler fitted on the other folds
    (cross_val_oof), the honest figure the leaderboard ranks), `in_sample` (fitted and scored on the same OOF
    rows: optimistic; equal to the nested figure for methods that fit nothing), `best_member` and
    `best_member_score` (None when no member score is known: a score not in run.json is read from the member's
    run beside the ensemble) and `vs_best_member` (nested against the best member, in the metric's direction:
    below zero, the ensemble loses to one of its own members)."""
    if run.kind != "ensemble":
        return None
    record, metric = run.record, run.metric
    recorded, in_sample = record.member_scores, record.in_sample_score
    names = record.members
    weights: list[float | None] = list(record.weights) if record.weights is not None else [None] * len(names)
    members = [{"name": n, "weight": w, "score": recorded[n] if n in recorded else _member_score(run, n)}
               for n, w in zip(names, weights, strict=True)]
    nested = run.score()
    scored = [m for m in members if m["score"] is not None]
    best = max(scored, key=lambda m: metric.oriented(m["score"])) if scored else None
    return {
        "metric": metric,
        "method": record.method,
        "oof_is": record.oof_is,
        "members": members,
        "nested": nested,
        "in_sample": in_sample,
        "best_member": best["name"] if best else None,
        "best_member_score": best["score"] if best else None,
        "vs_best_member": metric.oriented(nested) - metric.oriented(best["score"]) if best else None,
    }


def _stored_path(run: Run, key: str) -> str:
    """A contest file a run's run.json records under `key`, as a path that reads from here (runs.contest_paths:
    joined to the run's contest folder when stored relative to it); '' when none is recorded."""
    from competition.runs.run import contest_paths

    stored = getattr(run.record, key)
    return contest_paths([stored], run.meta)[0] if stored else ""


def _member_score(ensemble: Run, member: str) -> float | None:
    """A member's OOF score (the ensemble's contest metric) read from its run beside the ensemble (ensembles
    written before run.json recorded them); None when that run is not there or does not read."""
    try:
        run = Run.load(ensemble.path.parent / member)
    except CompetitionError:
        return None
    return run.score()


def ensemble_runs(members: list[str], *, method: str, name: str, runs_dir: str | Path = "runs",
                  metric: str | None = None) -> Path:
    """`competition ensemble`: load the member runs by name or folder, then build_ensemble."""
    from competition.runs import resolve_run

    return build_ensemble([Run.load(resolve_run(m, runs_dir)) for m in members], method, name, runs_dir, metric)
