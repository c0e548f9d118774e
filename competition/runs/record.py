"""run.json, typed: the one reader of a run's record (competition.runs.folder.read_meta checks the file, this
gives its fields types), so that no module outside `runs/` reads run.json keys by hand.

Every field has the value a run from before it existed reads as (older runs keep meaning what they meant);
a value of the wrong type reads as that default too, since `read_meta` has already refused a damaged file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _scores(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in _mapping(value).items() if _number(v) is not None}


@dataclass(frozen=True)
class RunRecord:
    """A run's run.json (layout: competition.runs.folder).

    name, kind          the recorded name ('' when none) and "model" or "ensemble"
    classes             class names in probability-column order
    recipe_hash, scheme the recipe's hash and the folds' one-line name
    members             an ensemble's member run names (by folder name), [] for a model run
    method              an ensemble's method ("mean", "caruana", "subject-mean", ...), '' for a model run
    weights             an ensemble's member weights (float per member), None when it has none or they are unusable
    member_macro_f1     member name -> its OOF macro F1 as recorded when the ensemble was built
    in_sample_macro_f1  an ensemble's in-sample (optimistic) figure, None when not recorded
    member_scores       member name -> its OOF score by the contest metric when the ensemble was built (the
                        macro F1 ones for ensembles from before the key, which were all scored by macro F1)
    in_sample_score     the in-sample figure by the contest metric (in_sample_macro_f1 for older ensembles)
    oof_is              how an ensemble's OOF was made: "nested-cv" or "unfitted" ('' when not recorded)
    data_root           the contest folder as recorded ('' when none)
    sample_submission   the sample's path as recorded (relative to data_root when under it; '' when none)
    fold_seconds        each fold's training seconds (None where not recorded)
    wall_seconds        the run's wall-clock seconds, None when not recorded
    test_images         the test images' fingerprint (runs.run.test_images_record), None for runs from before
    subjects            a subject-averaged run's record (threshold, groups, figures), {} otherwise
    metric              the contest metric the run was chosen and scored by (recipe.data.metric; "macro_f1" for runs
                        from before the key)
    positive_class      the class a one-column probability sample gets (recipe.data.positive_class), '' when none
    layout              the contest's declared layout (the non-default recipe.data layout keys), {} for the default
    raw                 the whole run.json, for what is only displayed
    """

    name: str
    kind: str
    classes: list[str]
    recipe_hash: str = ""
    scheme: str = ""
    members: list[str] = field(default_factory=list)
    method: str = ""
    weights: list[float] | None = None
    member_macro_f1: dict[str, float] = field(default_factory=dict)
    in_sample_macro_f1: float | None = None
    member_scores: dict[str, float] = field(default_factory=dict)
    in_sample_score: float | None = None
    oof_is: str = ""
    data_root: str = ""
    sample_submission: str = ""
    fold_seconds: list[float | None] = field(default_factory=list)
    wall_seconds: float | None = None
    test_images: dict[str, Any] | None = None
    subjects: dict[str, Any] = field(default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)
    metric: str = "macro_f1"
    positive_class: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_ensemble(self) -> bool:
        return self.kind == "ensemble"

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> RunRecord:
        """The record of a run.json already checked by competition.runs.folder.read_meta."""
        members = meta.get("members")
        names = [m for m in members if isinstance(m, str)] if isinstance(members, list) else []
        weights = meta.get("weights")
        usable = (isinstance(weights, list) and len(weights) == len(names)
                  and all(_number(w) is not None for w in weights))
        scores = _scores(meta.get("member_macro_f1"))
        folds = meta.get("fold_seconds")
        test_images = meta.get("test_images")
        return cls(
            name=_text(meta.get("name")), kind=_text(meta.get("kind"), "model"),
            classes=[str(c) for c in meta.get("classes", [])], recipe_hash=_text(meta.get("recipe_hash")),
            scheme=_text(meta.get("scheme")), members=names, method=_text(meta.get("method")),
            weights=[float(w) for w in weights] if usable else None, member_macro_f1=scores,
            in_sample_macro_f1=_number(meta.get("in_sample_macro_f1")), oof_is=_text(meta.get("oof_is")),
            member_scores=_scores(meta["member_scores"]) if "member_scores" in meta else scores,
            in_sample_score=_number(meta.get("in_sample_score", meta.get("in_sample_macro_f1"))),
            data_root=_text(meta.get("data_root")), sample_submission=_text(meta.get("sample_submission")),
            fold_seconds=[_number(s) for s in folds] if isinstance(folds, list) else [],
            wall_seconds=_number(meta.get("wall_seconds")),
            test_images=test_images if isinstance(test_images, dict) else None,
            subjects=_mapping(meta.get("subjects")), layout=_mapping(meta.get("layout")),
            metric=_text(meta.get("contest_metric"), "macro_f1"), positive_class=_text(meta.get("positive_class")),
            raw=meta)

    def contest_layout(self) -> Any:
        """competition.data.contest.Layout of the run's contest (the default for runs that declare none)."""
        from competition.data.contest import Layout

        return Layout.from_record(self.layout)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        """The record of the run folder `run_dir`; CompetitionError of one line naming run.json when it is
        missing or damaged (competition.runs.folder.read_meta)."""
        from competition.runs.folder import read_meta

        return cls.from_meta(read_meta(run_dir))
