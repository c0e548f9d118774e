"""A run's decisions.json: the decisions `submit --tune` chose for the contest metric (competition.tuning): per-class
offsets (macro F1; per label in a multi-label run) or grade thresholds (quadratic weighted kappa), kept with the
digest of the OOF they were tuned on (a retrain makes them stale). `predict` and `submit` read them through
`read_decisions`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError
from competition.files import read_npy, write_json
from competition.runs.folder import DECISIONS_FILE, OOF_FILE, read_meta



def write_decisions(run_dir: Path, decisions: dict[str, Any]) -> None:
    """Save the run's decisions: {"offsets": [float per class]} or {"thresholds": [float per cut point]}, with the
    figures that justified them; `predict` and `submit` use them.
    They are kept with the digest of the OOF they were tuned on (oof_digest): after a retrain they are stale."""
    write_json(Path(run_dir) / DECISIONS_FILE, {**decisions, "oof_sha256": oof_digest(run_dir)})


def oof_digest(run_dir: Path) -> str:
    """A digest of the run's oof.npy values (what decisions are tuned on); '' when it does not read."""
    import hashlib

    try:
        array = np.ascontiguousarray(read_npy(Path(run_dir) / OOF_FILE))
    except (ValueError, OSError, EOFError):
        return ""
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).hexdigest()[:16]


def remove_stale_decisions(run_dir: Path) -> bool:
    """Remove the run's decisions when they were tuned on other OOF than its oof.npy now holds (an earlier
    training of the run); True when removed. Decisions saved before the digest was kept are left alone."""
    path = Path(run_dir) / DECISIONS_FILE
    try:
        made_for = json.loads(path.read_text(encoding="utf-8")).get("oof_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(made_for, str) or made_for == oof_digest(run_dir):
        return False
    path.unlink(missing_ok=True)
    return True


def remove_decisions(run_dir: Path) -> None:
    """Forget the run's saved decisions (plain argmax from now on)."""
    (Path(run_dir) / DECISIONS_FILE).unlink(missing_ok=True)


def read_decisions(run_dir: Path) -> dict[str, Any] | None:
    """The run's saved decisions ({"offsets": [float per class]} or {"thresholds": [float, increasing, one fewer
    than the classes]}, with their figures), or None when it has none (plain argmax). CompetitionError naming
    the file when it is damaged or stale."""
    path = Path(run_dir) / DECISIONS_FILE
    if not path.is_file():
        return None
    kind = "offsets"
    try:
        decisions = json.loads(path.read_text(encoding="utf-8"))
        kind = "thresholds" if isinstance(decisions, dict) and "thresholds" in decisions else "offsets"
        values = [float(v) for v in decisions[kind]]
    except (OSError, ValueError, KeyError, TypeError):
        raise CompetitionError(f"{path}: damaged decisions file; delete it or rerun submit --tune") from None
    meta = read_meta(run_dir)
    n_classes = len(meta["classes"])
    wanted = n_classes - 1 if kind == "thresholds" else n_classes
    from competition.tuning import saved_as

    metric = meta.get("contest_metric") or "macro_f1"
    fits = saved_as(metric) or "offsets"  # the key of the metric's tuner (competition.tuning.TUNERS)
    if kind != fits:
        raise CompetitionError(f"{path}: damaged decisions file ({kind}, but the run is scored by {metric}, whose "
                               f"decisions are {fits}); delete it or rerun submit --tune")
    if len(values) != wanted or not np.isfinite(values).all() or (kind == "thresholds" and np.any(np.diff(values) < 0)):
        what = (f"{len(values)} {kind} for {n_classes} classes, {wanted} expected" if len(values) != wanted else
                f"{kind} not finite" if not np.isfinite(values).all() else "thresholds not increasing")
        raise CompetitionError(f"{path}: damaged decisions file ({what}); delete it or rerun submit --tune")
    made_for = decisions.get("oof_sha256")
    if isinstance(made_for, str) and made_for != oof_digest(run_dir):
        name = meta.get("name", Path(run_dir).name)
        raise CompetitionError(f"{path}: stale: tuned on the out-of-fold predictions of an earlier training of run "
                               f"'{name}'; run `competition submit {name} --tune` to tune again, or delete it")
    return {**decisions, kind: values}
