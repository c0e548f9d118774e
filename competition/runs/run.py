"""A run (or ensemble) read back from its folder (layout: competition.runs.folder): what scoring,
ensembling, submitting and reports need."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.runs import folder


@dataclass
class Run:
    """A finished run (or ensemble) loaded into memory: all that scoring, ensembling and submitting need."""

    path: Path
    name: str
    kind: str
    classes: list[str]
    ids: np.ndarray  # training ids, OOF row order
    y: np.ndarray  # int class index per training row
    folds: np.ndarray  # fold index per training row
    oof: np.ndarray  # (n_train, n_classes)
    test: np.ndarray  # (n_test, n_classes)
    test_ids: np.ndarray
    recipe_hash: str = ""
    scheme: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    paths: np.ndarray | None = None  # absolute image path per training row, when known
    # how the folds were chosen and how much they leak (competition.folds.SchemeChoice.record); None for runs
    # trained before cv.scheme existed, and for ensembles (their members' folds)
    cv: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Read a finished run, every file checked against the others (competition.runs.folder.read_run_files);
        CompetitionError of one line naming the bad file when `path` holds no finished run or a damaged one."""
        path = Path(path)
        files = folder.read_run_files(path)
        meta, folds, test_ids = files["meta"], files["folds"], files["test_ids"]
        classes = list(meta["classes"])
        index = {c: i for i, c in enumerate(classes)}
        return cls(
            path=path,
            name=meta.get("name", path.name),
            kind=meta.get("kind", "model"),
            classes=classes,
            ids=folds["id"].to_numpy(),
            y=folds["label"].map(index).to_numpy(dtype=np.int64),
            folds=folds["fold"].to_numpy(dtype=np.int64),
            oof=files["oof"],
            test=files["test"],
            test_ids=test_ids,
            recipe_hash=meta.get("recipe_hash", ""),
            scheme=meta.get("scheme", ""),
            meta=meta,
            paths=folds["path"].to_numpy() if "path" in folds else None,
            cv=meta["cv"] if isinstance(meta.get("cv"), dict) else None,
        )


def save_run(
    path: str | Path,
    *,
    name: str,
    kind: str,
    classes: list[str],
    ids: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    oof: np.ndarray,
    test: np.ndarray,
    test_ids: np.ndarray,
    recipe_hash: str = "",
    scheme: str = "",
    paths: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
    oof_plain: np.ndarray | None = None,
    test_plain: np.ndarray | None = None,
    cv: dict[str, Any] | None = None,
) -> Path:
    """Write a run's shared files (y: int class index per row; oof, test: float probabilities); run.json
    goes last, so its presence means the run is complete. `cv` (SchemeChoice.record(): the fold choice and its
    leak figures) is kept next to `scheme`."""
    meta: dict[str, Any] = {"name": name, "kind": kind, "classes": list(classes), "recipe_hash": recipe_hash,
                            "scheme": scheme}
    if cv is not None:
        meta["cv"] = cv
    meta.update(extra or {})
    return folder.write_run_files(Path(path), folds=folds_frame(classes, ids, y, folds, paths), oof=oof, test=test,
                                  test_ids=test_ids, meta=meta, oof_plain=oof_plain, test_plain=test_plain)


def folds_frame(classes: list[str], ids: np.ndarray, y: np.ndarray, folds: np.ndarray,
                paths: np.ndarray | None = None) -> pd.DataFrame:
    """The folds.csv frame: id, label (class name), fold[, path]."""
    labels = np.asarray(classes, dtype=object)[np.asarray(y)]
    frame = pd.DataFrame({"id": ids, "label": labels, "fold": np.asarray(folds, dtype=np.int64)})
    if paths is not None:
        frame["path"] = [str(p) for p in paths]
    return frame


def resolve_run(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run given by name (looked up under runs_dir) or by path."""
    candidate = Path(run)
    if folder.is_finished(candidate):
        return candidate
    named = Path(runs_dir) / str(run)
    if folder.is_finished(named):
        return named
    raise CompetitionError(f"run '{run}': no finished run at {candidate} or {named}")


def list_runs(runs_dir: str | Path = "runs") -> list[Run]:
    """Every finished run and ensemble under runs_dir, by name; CompetitionError naming the bad file of the
    first damaged one (`load_runs` keeps going instead)."""
    runs, damaged = load_runs(runs_dir)
    if damaged:
        raise CompetitionError(damaged[0][1])
    return runs


def load_runs(runs_dir: str | Path = "runs") -> tuple[list[Run], list[tuple[str, str]]]:
    """Every finished run and ensemble under runs_dir, by name, and the damaged ones as (name, the one-line
    problem naming the bad file): one damaged run does not hide the others."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise CompetitionError(f"{runs_dir}: runs folder not found")
    runs: list[Run] = []
    damaged: list[tuple[str, str]] = []
    for path in folder.run_json_files(runs_dir):
        try:
            runs.append(Run.load(path))
        except CompetitionError as exc:
            damaged.append((path.name, str(exc)))
    return runs, damaged


def check_same_folds(runs: list[Run]) -> None:
    """Ensembles need one split: same training ids, labels, folds and test ids in the same order."""
    first = runs[0]
    for other in runs[1:]:
        for what, a, b in (
            ("training ids", first.ids, other.ids),
            ("labels", first.y, other.y),
            ("folds", first.folds, other.folds),
            ("test ids", first.test_ids, other.test_ids),
        ):
            if len(a) != len(b) or not np.array_equal(a, b):
                raise CompetitionError(
                    f"runs '{first.name}' and '{other.name}' do not share the same {what}; "
                    "ensembles need runs trained with the same cv (folds, seed, group_by) on the same data"
                )
        if first.classes != other.classes:
            raise CompetitionError(f"runs '{first.name}' and '{other.name}' have different classes")
