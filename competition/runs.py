"""The run folder: what a training run or an ensemble leaves behind, and how to read it back.

Layout of ``runs/<name>/`` (ensembles use the same files, so every later stage treats them alike)::

    run.json        name, kind ("model" | "ensemble"), classes, recipe_hash, scheme, members, timings
    recipe.yaml     the resolved recipe (ensembles: their method and members)
    folds.csv       id,label,fold[,path]: one row per training image; row order == OOF row order
    oof.npy         float32 (n_train, n_classes) out-of-fold probabilities
    test.npy        float32 (n_test, n_classes) test probabilities (mean of the fold models)
    test_ids.csv    id: row order of test.npy
    fold_<k>/       per-fold model.keras, history.csv, oof.npy (rows = that fold's val rows), test.npy, done.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.files import read_npy, write_json, write_npy, write_text

RUN_FILE = "run.json"


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

    @classmethod
    def load(cls, path: str | Path) -> Run:
        path = Path(path)
        meta_file = path / RUN_FILE
        if not meta_file.is_file():
            raise CompetitionError(f"{path}: not a finished run (no {RUN_FILE})")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        classes = list(meta["classes"])
        folds = pd.read_csv(path / "folds.csv", dtype={"id": str, "label": str})
        index = {c: i for i, c in enumerate(classes)}
        test_ids = pd.read_csv(path / "test_ids.csv", dtype={"id": str})["id"].to_numpy()
        return cls(
            path=path,
            name=meta.get("name", path.name),
            kind=meta.get("kind", "model"),
            classes=classes,
            ids=folds["id"].to_numpy(),
            y=folds["label"].map(index).to_numpy(dtype=np.int64),
            folds=folds["fold"].to_numpy(dtype=np.int64),
            oof=read_npy(path / "oof.npy"),
            test=read_npy(path / "test.npy"),
            test_ids=test_ids,
            recipe_hash=meta.get("recipe_hash", ""),
            scheme=meta.get("scheme", ""),
            meta=meta,
            paths=folds["path"].to_numpy() if "path" in folds else None,
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
) -> Path:
    """Write a run's shared files; run.json goes last, so its presence means the run is complete."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(classes, dtype=object)[np.asarray(y)]
    frame = pd.DataFrame({"id": ids, "label": labels, "fold": np.asarray(folds, dtype=np.int64)})
    if paths is not None:
        frame["path"] = [str(p) for p in paths]
    write_text(path / "folds.csv", frame.to_csv(index=False))
    write_text(path / "test_ids.csv", pd.DataFrame({"id": test_ids}).to_csv(index=False))
    write_npy(path / "oof.npy", np.asarray(oof, dtype=np.float32))
    write_npy(path / "test.npy", np.asarray(test, dtype=np.float32))
    meta = {"name": name, "kind": kind, "classes": list(classes), "recipe_hash": recipe_hash, "scheme": scheme}
    meta.update(extra or {})
    write_json(path / RUN_FILE, meta)
    return path


def resolve_run(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run given by name (looked up under runs_dir) or by path."""
    candidate = Path(run)
    if (candidate / RUN_FILE).is_file():
        return candidate
    named = Path(runs_dir) / str(run)
    if (named / RUN_FILE).is_file():
        return named
    raise CompetitionError(f"run '{run}': no finished run at {candidate} or {named}")


def list_runs(runs_dir: str | Path = "runs") -> list[Run]:
    """Every finished run and ensemble under runs_dir, by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise CompetitionError(f"{runs_dir}: runs folder not found")
    return [Run.load(p.parent) for p in sorted(runs_dir.glob(f"*/{RUN_FILE}"))]


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
