"""A run (or ensemble) read back from its folder (layout: competition.runs.folder): what scoring,
ensembling, submitting and reports need.

Run folders travel: run.json keeps the contest folder once, as an absolute path (`data_root`), and the files
of the contest relative to it (folds.csv's `path` column, run.json's `sample_submission`), so a run folder
copied to another machine or read from another folder finds the contest where it was, or, given `data` (the
command line's `--data`), where it is now. Runs written before this kept `data_root` as given to `train`
and absolute or working-folder-relative paths; they read as before, and with `data` the part of each path
below the recorded `data_root` is taken from `data`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.runs import decisions, folder
from competition.runs.record import RunRecord


@dataclass
class Run:
    """A finished run (or ensemble) loaded into memory: all that scoring, ensembling and submitting need."""

    path: Path
    name: str
    kind: str
    classes: list[str]
    ids: np.ndarray  # training ids, OOF row order
    y: np.ndarray  # int class index per training row; multi-label: uint8 (n, n_classes) indicator matrix
    folds: np.ndarray  # fold index per training row
    oof: np.ndarray  # (n_train, n_classes)
    test: np.ndarray  # (n_test, n_classes)
    test_ids: np.ndarray
    recipe_hash: str = ""
    scheme: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    paths: np.ndarray | None = None  # image path (str) per training row, under data_root; None when not recorded
    # subject id (str) per training row, as the folds saw them (competition.folds.SchemeChoice.subjects); None for
    # runs from before, and contests where no subjects were found
    subjects: np.ndarray | None = None
    # how the folds were chosen and how they relate to the test (competition.folds.SchemeChoice.record); None for
    # runs trained before cv.scheme existed; an ensemble's is its first member's (they share folds)
    cv: dict[str, Any] | None = None
    # the contest folder the run reads: the `data` given to load (the contest moved), else run.json's
    data_root: Path | None = None

    @classmethod
    def load(cls, path: str | Path, data: str | Path | None = None) -> Run:
        """Read a finished run, every file checked against the others (competition.runs.folder.read_run_files);
        CompetitionError of one line naming the bad file when `path` holds no finished run or a damaged one.
        `data` is where the run's contest folder is now, when it moved (`paths` and `sample_submission()`
        then point into it)."""
        from competition.data.contest import label_targets  # data.contest loads the decoders: not at import

        path = Path(path)
        files = folder.read_run_files(path)
        meta, folds, test_ids = files["meta"], files["folds"], files["test_ids"]
        classes = list(meta["classes"])
        separator = RunRecord.from_meta(meta).contest_layout().label_separator
        return cls(
            path=path,
            # the folder's name, what every command looks a run up by (`--runs DIR` + name, an ensemble's
            # members): run.json's recorded name stays behind when a folder is renamed or copied, and two runs
            # would then show, submit and ensemble as one
            name=os.path.basename(os.path.abspath(path)) or meta.get("name", "run"),
            kind=meta.get("kind", "model"),
            classes=classes,
            ids=folds["id"].to_numpy(),
            y=label_targets(folds["label"], classes, separator),
            folds=folds["fold"].to_numpy(dtype=np.int64),
            oof=files["oof"],
            test=files["test"],
            test_ids=test_ids,
            recipe_hash=meta.get("recipe_hash", ""),
            scheme=meta.get("scheme", ""),
            meta=meta,
            paths=np.asarray(contest_paths(folds["path"].tolist(), meta, data), dtype=object)
            if "path" in folds else None,
            subjects=folds["subject"].to_numpy() if "subject" in folds else None,
            cv=meta["cv"] if isinstance(meta.get("cv"), dict) else None,
            data_root=contest_root(meta, data),
        )

    @cached_property
    def record(self) -> RunRecord:
        """run.json, typed (competition.runs.record.RunRecord)."""
        return RunRecord.from_meta(self.meta)

    @property
    def separator(self) -> str | None:
        """A multi-label run's label separator (recipe.data.label_separator); None: one class per image."""
        return self.record.contest_layout().label_separator

    @property
    def allows_no_label(self) -> bool:
        """A multi-label run whose images may carry none of the labels (Layout.allows_no_label)."""
        return self.record.contest_layout().allows_no_label

    @property
    def multilabel(self) -> bool:
        return np.ndim(self.y) == 2

    def label_texts(self, y: np.ndarray | None = None) -> np.ndarray:
        """object (n,) label text per row of `y` (default: the run's training labels): class names, or joined
        multi-label texts."""
        return folds_labels(self.y if y is None else y, self.classes, self.separator)

    @property
    def contest(self) -> tuple[str, str]:
        """(id, name) of the contest the run was trained on: id, 12 hex digits of a SHA-256 over its training
        ids with their labels and its test ids (order-free; what `data_record` hashes, read from the run's own
        files, so runs from before have one too); name, the contest folder's name ('?' when not recorded)."""
        digest = hashlib.sha256()
        labels = self.label_texts()
        for part in (sorted(f"{i}\t{c}" for i, c in zip(self.ids, labels, strict=True)), sorted(map(str, self.test_ids))):
            digest.update("\n".join(part).encode("utf-8") + b"\0")
        return digest.hexdigest()[:12], self.data_root.name if self.data_root is not None else "?"

    @property
    def metric(self) -> Any:
        """The contest metric the run is scored and chosen by (competition.metrics.Metric of run.json's "metric";
        macro F1 for runs from before it was recorded). CompetitionError of one line for one this version does
        not know."""
        from competition.metrics import METRICS

        name = self.record.metric
        if name not in METRICS:
            raise CompetitionError(f"run '{self.name}': scored by metric {name!r}, which this version does not know "
                                   f"(made by a newer version?); known: {', '.join(METRICS)}")
        return METRICS[name]

    def score(self) -> float:
        """The run's OOF score by its contest metric (an ensemble's: its nested-CV OOF); a per-fold metric's
        (ROC AUC) is the mean of the folds' (competition.metrics.Metric.of_oof)."""
        return self.metric.of_oof(self.y, self.oof, self.folds)

    @property
    def model_kinds(self) -> list[str]:
        """The model kinds behind the probabilities (competition.model.classic.MODEL_KINDS): the recipe's for a
        model run, the weighed members' for an ensemble; ["network"] for runs from before kinds were recorded."""
        kinds = self.meta.get("model_kinds")
        return [str(k) for k in kinds] if isinstance(kinds, list) and kinds else ["network"]

    def estimate_doubt(self) -> str | None:
        """One line when the run's CV estimate is likely optimistic for its kind(s) of model on this contest's
        test (competition.folds.estimate_doubt), else None."""
        from competition.folds import estimate_doubt
        from competition.model.classic import is_transductive

        for kind in self.model_kinds:
            doubt = estimate_doubt(self.cv, is_transductive(kind))
            if doubt:
                return doubt
        return None

    def sample_submission(self) -> Path:
        """The contest's sample_submission.csv, where the run's contest is now (`data_root`). CompetitionError
        of one line when it is not there: naming the contest folder that is gone and `--data`, or the file."""
        return sample_submission_path(self.meta, self.data_root if self.data_root != contest_root(self.meta)
                                      else None)


def contest_root(meta: dict[str, Any], data: str | Path | None = None) -> Path | None:
    """The contest folder of a run (run.json as a dict): `data` when given, else the recorded `data_root`
    (None when the run records none)."""
    if data is not None:
        return Path(data)
    root = meta.get("data_root")
    return Path(root) if isinstance(root, str) and root else None


def contest_paths(stored: list[str], meta: dict[str, Any], data: str | Path | None = None) -> list[str]:
    """Paths of contest files as stored in a run (folds.csv's `path`, run.json's `sample_submission`),
    where they are now: relative paths under an absolute `data_root` (how runs are written) are joined to
    `data` or to `data_root`; older runs' paths (absolute, or relative to the folder `train` ran in) stay as
    they are, unless `data` is given, which then replaces the recorded `data_root` at their start."""
    recorded = meta.get("data_root") if isinstance(meta.get("data_root"), str) else ""
    base = str(data) if data is not None else recorded
    if recorded and os.path.isabs(recorded):
        return [os.path.join(base, p) if p and not os.path.isabs(p) else _moved(p, recorded, data) for p in stored]
    return [_moved(p, recorded, data) for p in stored]


def _moved(path: str, recorded: str, data: str | Path | None) -> str:
    """An older run's path (absolute or working-folder-relative), with `data` in place of the recorded root
    it starts with; as stored when no `data` is given or the path is not under that root."""
    if data is None or not recorded or not path:
        return path
    below = os.path.relpath(os.path.normpath(path), os.path.normpath(recorded))
    return path if below == os.pardir or below.startswith(os.pardir + os.sep) else os.path.join(str(data), below)


def sample_submission_path(meta: dict[str, Any], data: str | Path | None = None) -> Path:
    """The sample submission a run (run.json as a dict) recorded, where its contest is now (`data` when it
    moved). CompetitionError of one line naming the missing folder or file and what to pass."""
    name = meta.get("name", "?")
    stored = meta.get("sample_submission")
    if not isinstance(stored, str) or not stored:
        raise CompetitionError(f"run '{name}': records no sample submission; pass --sample FILE")
    path = Path(contest_paths([stored], meta, data)[0])
    if path.is_file():
        return path
    if data is not None:
        raise CompetitionError(f"{path}: sample submission not found in the contest folder given by --data")
    raise CompetitionError(f"run '{name}': {missing_contest(meta) or f'its sample submission {path} is gone'}; "
                           "pass --data DIR (where the contest is now) or --sample FILE")


def missing_contest(meta: dict[str, Any]) -> str | None:
    """"its contest folder X is gone (moved or deleted)" when the run's recorded contest folder is not there
    (from here: a relative one is taken from the working folder); None when it is, or none is recorded."""
    root = contest_root(meta)
    if root is None or root.is_dir():
        return None
    return f"its contest folder {root} is gone (moved or deleted)"


def training_images(run_dir: str | Path, data: str | Path | None = None) -> list[str] | None:
    """The training image of every row of a finished run's folds.csv, where the contest is now (`data` when
    it moved); None when the run records no paths. Lighter than Run.load: reads run.json and folds.csv."""
    meta = folder.read_meta(run_dir)
    folds = folder.read_folds(Path(run_dir))
    return contest_paths(folds["path"].tolist(), meta, data) if "path" in folds else None


def contest_folder(run_dir: str | Path, data: str | Path | None = None) -> Path:
    """A finished run's contest folder, where it is now (`data` when given); CompetitionError of one line
    naming the folder and `--data` when it is not there."""
    meta = folder.read_meta(run_dir)
    root = contest_root(meta, data)
    if root is None:
        raise CompetitionError(f"run '{meta.get('name', Path(run_dir).name)}': records no contest folder; "
                               "pass --data DIR")
    if not root.is_dir():
        if data is not None:
            raise CompetitionError(f"{root}: contest folder not found (--data)")
        raise CompetitionError(f"run '{meta.get('name', Path(run_dir).name)}': {missing_contest(meta)}; pass "
                               "--data DIR (where the contest is now)")
    return root


# ---------------------------------------------------------------- is the run's answer still the answer


def test_images_record(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The fingerprint of a contest's test image files that run.json keeps ("test_images"), to tell later
    whether they are still the images the run predicted: how many, a digest of their names, sizes and
    modification times (`stat`: stat calls only, what a later check takes first) and one of their names and
    bytes (`content`: read again only when `stat` differs, so copied or touched files that kept their bytes
    still match)."""
    files = _by_name(paths)
    return {"n": len(files), "stat": _stat_digest(files), "content": _content_digest(files)}


def _by_name(paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    return sorted((os.path.basename(str(p)), str(p)) for p in paths)


def _stat_digest(files: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, path in files:
        try:
            info = os.stat(path)
            digest.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0unreadable\n".encode())
    return digest.hexdigest()[:16]


def _content_digest(files: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        try:
            digest.update(hashlib.sha1(Path(path).read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()[:16]


def test_images_problem(meta: dict[str, Any], now: dict[str, Any] | None = None,
                        data: str | Path | None = None) -> str | None:
    """How the contest's test images differ from those a run (run.json as a dict) predicted, in words, or None
    when they are the same or either side is unknown (a run from before run.json kept "test_images", a contest
    folder that is gone). `now`: the current fingerprint (test_images_record) when the caller has it; else the
    contest's test/ (where it is now: `data`) is listed and each file's stat read, its bytes only when a stat
    differs."""
    recorded = meta.get("test_images")
    if not isinstance(recorded, dict):
        return None
    if now is None:
        root = contest_root(meta, data)
        test_dir = root / RunRecord.from_meta(meta).contest_layout().test_images if root is not None else None
        if test_dir is None or not test_dir.is_dir():
            return None
        from competition.data import is_image

        files = _by_name([p for p in sorted(test_dir.iterdir()) if not p.name.startswith(".") and p.is_file()
                          and is_image(p)])
        if len(files) == recorded.get("n") and _stat_digest(files) == recorded.get("stat"):
            return None
        now = {"n": len(files), "content": _content_digest(files) if len(files) == recorded.get("n") else None}
    if now.get("n") != recorded.get("n"):
        return f"{recorded.get('n')} test images when it was trained, {now.get('n')} now"
    if now.get("content") != recorded.get("content"):
        return f"{now.get('n')} test images, but their files were replaced or edited since it was trained"
    return None


def stale_problem(run: Run, data: str | Path | None = None) -> str | None:
    """Why the run's stored test predictions are not the answer of now, in one line with what to run, or None:
    the contest's test images changed since it (an ensemble: its members) predicted them
    (test_images_problem), or an ensemble's member was trained again since the ensemble was built
    (member_problem)."""
    changed = test_images_problem(run.meta, data=data if data is not None else run.data_root)
    if changed is not None:
        if run.kind == "ensemble":
            return (f"ensemble '{run.name}': the contest's test images changed ({changed}), so its test predictions "
                    "are of the old images: train its members again, build it again, then submit")
        return (f"run '{run.name}': the contest's test images changed ({changed}), so its test predictions are of the "
                f"old images: train it again (competition train RECIPE --name {run.name}: its folds are retrained "
                "on the new images), then submit")
    return member_problem(run.path)


def member_problem(run_dir: str | Path, _seen: frozenset[str] = frozenset()) -> str | None:
    """For an ensemble (or a subject-averaged run): one line naming the first member that was trained again
    since the ensemble was built, and what to run; None when every member present is as it was built, or for
    a model run. A member is compared with what the ensemble's recipe.yaml recorded of it: its recipe hash,
    and the digest of its OOF (decisions.oof_digest; ensembles built before it was kept: the hash only); a member
    that is an ensemble is checked the same way. A member that is gone is left to the reader that needs it.
    CompetitionError naming recipe.yaml when it is missing or damaged."""
    run_dir = Path(run_dir)
    meta = folder.read_meta(run_dir)
    if meta.get("kind") != "ensemble" or os.path.realpath(run_dir) in _seen:
        return None
    recipe = folder.read_recipe_yaml(run_dir)
    members = recipe.get("members")
    if not isinstance(members, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str)
                                                for m in members):
        raise CompetitionError(f"{run_dir / folder.RECIPE_FILE}: damaged ('members' must list the members by name)")
    name = meta.get("name", run_dir.name)
    for member in members:
        member_dir = run_dir.parent / member["name"]
        if not folder.is_finished(member_dir):
            continue
        then_hash, then_oof = member.get("recipe_hash"), member.get("oof_sha256")
        now_hash = folder.read_meta(member_dir).get("recipe_hash")
        if isinstance(then_hash, str) and then_hash and then_hash != now_hash:
            what = f"recipe hash {then_hash} when the ensemble was built, {now_hash} now"
        elif isinstance(then_oof, str) and then_oof != decisions.oof_digest(member_dir):
            what = "its out-of-fold predictions changed since the ensemble was built"
        else:
            # a member that is itself an ensemble (a blend's averaged twin); a loop of rebuilt names is walked once
            inner = member_problem(member_dir, _seen | {os.path.realpath(run_dir)})
            if inner is not None:
                return inner
            continue
        names = " ".join(m["name"] for m in members)
        again = (f"competition aggregate {names} --name {name}" if recipe.get("method") == "subject-mean"
                 else f"competition ensemble {names} --name {name} --method {recipe.get('method', 'caruana')}")
        return (f"ensemble '{name}': its member '{member['name']}' was trained again ({what}); build the ensemble "
                f"again ({again})")
    return None


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
    subjects: np.ndarray | None = None,
) -> Path:
    """Write a run's shared files (y: int class index per row; oof, test: float probabilities); run.json
    goes last, so its presence means the run is complete. `cv` (SchemeChoice.record(): the fold choice and its
    leak figures) is kept next to `scheme`. With an absolute `data_root` in `extra`, the image `paths` and the
    `sample_submission` under it are stored relative to it (the run folder travels; see the module)."""
    meta: dict[str, Any] = {"name": name, "kind": kind, "classes": list(classes), "recipe_hash": recipe_hash,
                            "scheme": scheme}
    if cv is not None:
        meta["cv"] = cv
    meta.update(extra or {})
    root = meta.get("data_root")
    if isinstance(root, str) and os.path.isabs(root) and isinstance(meta.get("sample_submission"), str):
        meta["sample_submission"] = relative_to_root(meta["sample_submission"], root)
    frame = folds_frame(classes, ids, y, folds, paths, root=root if isinstance(root, str) else None,
                        subjects=subjects, separator=RunRecord.from_meta(meta).contest_layout().label_separator)
    return folder.write_run_files(Path(path), folds=frame, oof=oof, test=test,
                                  test_ids=test_ids, meta=meta, oof_plain=oof_plain, test_plain=test_plain)


def folds_frame(classes: list[str], ids: np.ndarray, y: np.ndarray, folds: np.ndarray,
                paths: np.ndarray | None = None, root: str | Path | None = None,
                subjects: np.ndarray | None = None, separator: str | None = None) -> pd.DataFrame:
    """The folds.csv frame: id, label (class name; multi-label: labels joined by `separator`), fold[, path]
    [, subject]; with an absolute `root` (the contest
    folder), paths under it are written relative to it."""
    labels = folds_labels(y, classes, separator)
    frame = pd.DataFrame({"id": ids, "label": labels, "fold": np.asarray(folds, dtype=np.int64)})
    if paths is not None:
        absolute = root is not None and os.path.isabs(root)
        frame["path"] = [relative_to_root(str(p), str(root)) if absolute else str(p) for p in paths]
    if subjects is not None:
        frame["subject"] = [str(s) for s in subjects]
    return frame


def folds_labels(y: np.ndarray, classes: list[str], separator: str | None = None) -> np.ndarray:
    """folds.csv's label texts of targets `y` (competition.data.contest.label_texts)."""
    from competition.data.contest import label_texts

    return label_texts(y, classes, separator)


def relative_to_root(path: str, root: str) -> str:
    """`path` relative to the absolute folder `root` (POSIX separators) when it lies under it (a relative
    `path` is taken from the working folder); else `path` made absolute."""
    full = os.path.abspath(path)
    below = os.path.relpath(full, root)
    if below == os.pardir or below.startswith(os.pardir + os.sep) or os.path.isabs(below):
        return full
    return Path(below).as_posix()


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


def check_one_contest(runs: Sequence[Run], what: str) -> None:
    """CompetitionError of one line naming two of `runs` and their contests (Run.contest) when they were trained
    on different contests; `what` names the command's object ("ensemble 'x'", "submit")."""
    first = runs[0]
    for other in runs[1:]:
        if other.contest[0] != first.contest[0]:
            (a, a_name), (b, b_name) = first.contest, other.contest
            raise CompetitionError(f"{what}: runs of two contests: '{first.name}' ({a_name}, contest {a}) and "
                                   f"'{other.name}' ({b_name}, contest {b}); name runs of one contest, or keep each "
                                   "contest's runs in a --runs folder of its own")
        if other.record.metric != first.record.metric:
            raise CompetitionError(f"{what}: runs scored by two metrics: '{first.name}' by {first.record.metric} and "
                                   f"'{other.name}' by {other.record.metric} (recipe.data.metric); a contest has one "
                                   "metric: train them with the same one")


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
