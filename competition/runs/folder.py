"""The run folder's layout: the one module that knows its file names. Everything else reads and writes a
run through these functions.

Layout of ``runs/<name>/`` (ensembles use the same files, so every later stage treats them alike)::

    run.json          name, kind ("model" | "ensemble"), classes, recipe_hash, scheme, members, timings;
                      written last, so its presence means the run is finished
    recipe.yaml       the resolved recipe (ensembles: their method and members)
    recipe.hash       its hash: a rerun of another recipe never mixes with these folds
    folds.csv         id,label,fold[,path][,subject]: one row per training image; row order == OOF row order;
                      subject: the subject the folds kept together or cut into blocks (bootstrap resamples it)
                      Written when the run is prepared (the fold assignment every worker reads) and again
                      when it finishes
    oof.npy           float32 (n_train, n_classes) out-of-fold probabilities (with TTA when declared)
    oof_plain.npy     the same without TTA
    test.npy          float32 (n_test, n_classes) test probabilities (mean of the fold models)
    test_plain.npy    the same without TTA
    test_ids.csv      id: row order of test.npy
    skipped_images.csv  training images left out as unreadable (data.on_bad_image: skip)
    fold_<k>/         k = 0 .. folds-1 ("fold k" in every message, report and listing): model.keras (a
                      network) or model.joblib (a scikit-learn model kind: competition.model.classic),
                      history.csv (rewritten whole after every epoch while the fold trains, so it can be
                      watched), oof.npy (rows = that fold's validation rows), test.npy, their *_plain twins,
                      and done.json (written last: the recipe hash and what the fold saw, see `fold_problem`)
    train.lock        while a `train` works on the folder: flock'ed by that process (pid, host, since inside)

A model run is finished only when its run.json is there: preparing a run removes run.json first, and
finishing writes it last, so a crash in between leaves an unfinished run, never a run.json that disagrees with
its arrays. An ensemble is built whole in a hidden sibling folder (`.<name>.building-*`) and then swapped into
place (`building`). Every reader goes through the checked readers here: `read_run_files` (the files checked
against each other), `read_recipe` and `read_recipe_yaml` (recipe.yaml: missing, damaged, or made by a newer
version), `read_fold_info`, `load_fold`, `load_fold_model` (fold files; `fold_model_problem` checks a model file
without loading it), `read_decisions` (one offset per class, tuned on the OOF the run holds now: `oof_digest`),
`read_members` and `read_weights` (an ensemble's run.json). Each problem is one CompetitionError naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import fcntl
import io
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.files import read_npy, run_name_problem, write_json, write_npy, write_text

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
HASH_FILE = "recipe.hash"
FOLDS_FILE = "folds.csv"
TEST_IDS_FILE = "test_ids.csv"
SKIPPED_FILE = "skipped_images.csv"
DONE_FILE = "done.json"
HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"
SKLEARN_MODEL_FILE = "model.joblib"  # a scikit-learn model kind's fold (competition.model.classic.ClassicModel)
DECISIONS_FILE = "decisions.json"  # per-class offsets chosen by `submit --tune`, with the gain that justified them
LOCK_FILE = "train.lock"
ARRAYS = ("oof", "test", "oof_plain", "test_plain")  # each saved as <name>.npy, per fold and per run
FOLD_FILES = (*(f"{name}.npy" for name in ARRAYS), HISTORY_FILE)  # and one model file: MODEL_FILE or SKLEARN_MODEL_FILE
SLACK = 1e-3  # how far outside [0, 1] a stored probability may stray (float rounding) before it is damage


# ---------------------------------------------------------------- the run as a whole


def is_finished(run_dir: str | Path) -> bool:
    """True when the folder holds a finished run or ensemble (its run.json)."""
    return (Path(run_dir) / RUN_FILE).is_file()


def run_json_files(runs_dir: Path) -> list[Path]:
    """The finished runs under runs_dir, by name (hidden folders, such as ensembles being built, left out)."""
    return [p.parent for p in sorted(Path(runs_dir).glob(f"*/{RUN_FILE}")) if not p.parent.name.startswith(".")]


def _damaged(path: Path, problem: str) -> CompetitionError:
    return CompetitionError(f"{path}: damaged ({problem})")


def _json_object(path: Path, missing: str) -> dict[str, Any]:
    """A JSON object file of the run, checked; CompetitionError `missing` when it is not there, else one line
    naming it when it is unreadable, not JSON or not an object."""
    if not path.is_file():
        raise CompetitionError(missing)
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, f"not JSON: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise CompetitionError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(found, dict):
        raise _damaged(path, f"a JSON object expected, found {type(found).__name__}")
    return found


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """run.json as a dict, checked: a JSON object whose `classes` are two or more distinct names.
    CompetitionError naming run.json when it is missing or damaged."""
    meta_file = Path(run_dir) / RUN_FILE
    meta = _json_object(meta_file, f"{run_dir}: not a finished run (no {RUN_FILE})")
    classes = meta.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes)
            or len(set(classes)) != len(classes)):
        raise _damaged(meta_file, f"'classes' must list two or more distinct class names, found {str(classes)[:80]}")
    if meta.get("kind", "model") not in ("model", "ensemble"):
        raise _damaged(meta_file, f"'kind' must be model or ensemble, found {str(meta.get('kind'))[:40]!r}")
    return meta


def read_text_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A run folder's CSV file with every cell a literal string ('NA', 'None', 'null', '007' stay as written),
    checked: whole (ends with a line end), with a header holding `columns` and every row as many fields as
    the header. CompetitionError naming the file otherwise."""
    if not path.is_file():
        raise CompetitionError(f"{path}: missing")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except OSError as exc:
        raise CompetitionError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not text.strip():
        raise _damaged(path, "empty file")
    if not text.endswith("\n"):  # every writer ends its last line: a file without is cut short
        raise _damaged(path, "cut short: its last line is incomplete")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise _damaged(path, f"not CSV: {' '.join(str(exc).split())}") from None
    header, data = rows[0], rows[1:]
    missing = [c for c in columns if c not in header]
    if missing or len(set(header)) != len(header):
        raise _damaged(path, f"header {','.join(header)[:80]!r}, expected the columns {','.join(columns)}")
    for r, row in enumerate(data, start=1):
        if len(row) != len(header):
            raise _damaged(path, f"row {r} has {len(row)} fields, the header {len(header)}")
    return pd.DataFrame(data, columns=header, dtype=str) if data else pd.DataFrame(columns=header, dtype=str)


def read_folds(run_dir: Path) -> pd.DataFrame:
    """folds.csv, checked: id, label (literal strings), fold (an int per row), [path]; at least one row,
    ids distinct and not empty. CompetitionError naming folds.csv otherwise."""
    file = Path(run_dir) / FOLDS_FILE
    frame = read_text_csv(file, ("id", "label", "fold"))
    if frame.empty:
        raise _damaged(file, "no rows")
    bad = np.flatnonzero(~frame["fold"].str.fullmatch(r"\d{1,6}").to_numpy(dtype=bool))
    if len(bad):
        raise _damaged(file, f"row {bad[0] + 1}: fold {frame['fold'].iloc[bad[0]]!r} is not a fold number")
    frame["fold"] = frame["fold"].astype(np.int64)
    _check_ids(file, frame["id"])
    return frame


def read_test_ids(run_dir: Path) -> np.ndarray:
    """test_ids.csv's ids (literal strings, distinct, not empty), in test.npy's row order."""
    file = Path(run_dir) / TEST_IDS_FILE
    ids = read_text_csv(file, ("id",))["id"]
    _check_ids(file, ids)
    return ids.to_numpy(dtype=object)


def _check_ids(file: Path, ids: pd.Series) -> None:
    empty = np.flatnonzero((ids == "").to_numpy())
    if len(empty):
        raise _damaged(file, f"row {empty[0] + 1} has an empty id")
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise _damaged(file, f"id {repeated.iloc[0]!r} appears twice")


def _read_probabilities(path: Path, n_classes: int | None) -> np.ndarray:
    """A (rows, n_classes) float array of probabilities (finite, within [0, 1]; any number of columns when
    n_classes is None); CompetitionError naming the file when it is missing, unreadable or of another shape
    or kind."""
    if not path.is_file():
        raise CompetitionError(f"{path}: missing")
    try:
        array = read_npy(path)
    except (ValueError, OSError, EOFError) as exc:
        raise _damaged(path, f"not a whole .npy array: {' '.join(str(exc).split())[:120]}") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise _damaged(path, f"{array.dtype} array of shape {array.shape}, expected float (rows, {n_classes})")
    if n_classes is not None and array.shape[1] != n_classes:
        raise _damaged(path, f"{array.shape[1]} columns, but {RUN_FILE} has {n_classes} classes")
    if array.size and not np.isfinite(array).all():
        raise _damaged(path, "holds NaN or infinite values")
    if array.size and (array.min() < -SLACK or array.max() > 1 + SLACK):
        raise _damaged(path, f"values from {array.min():.3g} to {array.max():.3g}, not probabilities")
    return array


def _array_rows(path: Path) -> int | None:
    """The row count of an optional array (its header only); None when absent. Damaged: CompetitionError."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _damaged(path, f"not a whole .npy array: {' '.join(str(exc).split())[:120]}") from None
    return int(array.shape[0]) if array.ndim == 2 else -1


def read_run_files(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's files, each checked and all checked against each other: meta (run.json: an object
    with two or more classes), folds (folds.csv: id, label, fold, [path], labels among the classes), oof
    ((len(folds), n_classes) probabilities), test ((len(test_ids), n_classes)) and test_ids (test_ids.csv);
    the *_plain twins, where present, of the same shapes. Any problem is one CompetitionError naming the bad
    file."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    classes = list(meta["classes"])
    folds = read_folds(run_dir)
    unknown = np.flatnonzero(~folds["label"].isin(classes).to_numpy())
    if len(unknown):
        raise _damaged(run_dir / FOLDS_FILE, f"row {unknown[0] + 1}: label {folds['label'].iloc[unknown[0]]!r} is "
                                             f"not one of the classes in {RUN_FILE}")
    test_ids = read_test_ids(run_dir)
    files = {"meta": meta, "folds": folds, "test_ids": test_ids}
    for name, rows, source in (("oof", len(folds), FOLDS_FILE), ("test", len(test_ids), TEST_IDS_FILE)):
        path = run_dir / f"{name}.npy"
        array = _read_probabilities(path, len(classes))
        plain = run_dir / f"{name}_plain.npy"
        plain_rows = _array_rows(plain)
        if array.shape[0] != rows:
            if plain_rows == array.shape[0]:  # two arrays agree against the CSV: the CSV is the odd one out
                raise _damaged(run_dir / source, f"{rows} rows, but {path.name} and {plain.name} have {array.shape[0]}")
            raise _damaged(path, f"{array.shape[0]} rows, but {source} has {rows}")
        if plain_rows is not None and plain_rows != rows:
            raise _damaged(plain, f"not of shape ({rows}, {len(classes)}) like {path.name}")
        files[name] = array
    return files


def write_folds(run_dir: Path, frame: pd.DataFrame) -> None:
    """folds.csv: id,label,fold[,path], one row per training image in OOF row order."""
    write_text(run_dir / FOLDS_FILE, frame.to_csv(index=False))


def write_run_files(run_dir: Path, *, folds: pd.DataFrame, oof: np.ndarray, test: np.ndarray, test_ids: np.ndarray,
                    meta: dict[str, Any], oof_plain: np.ndarray | None = None,
                    test_plain: np.ndarray | None = None) -> Path:
    """Write a run's shared files; run.json goes last, so its presence means the run is complete (an
    earlier run.json is removed first)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_unfinished(run_dir)
    write_folds(run_dir, folds)
    write_text(run_dir / TEST_IDS_FILE, pd.DataFrame({"id": test_ids}).to_csv(index=False))
    for name, array in (("oof", oof), ("test", test), ("oof_plain", oof_plain), ("test_plain", test_plain)):
        if array is not None:
            write_npy(run_dir / f"{name}.npy", np.asarray(array, dtype=np.float32))
        else:
            (run_dir / f"{name}.npy").unlink(missing_ok=True)  # never a stale twin from an earlier run
    write_json(run_dir / RUN_FILE, meta)
    return run_dir


def mark_unfinished(run_dir: Path) -> None:
    """Remove run.json: until it is written again the folder is an unfinished run that readers leave alone."""
    (Path(run_dir) / RUN_FILE).unlink(missing_ok=True)


def holds(run_dir: str | Path) -> str | None:
    """What a folder holds, in words: None (no folder, or an empty one), "an ensemble", "a model run",
    "an unfinished model run" or "files that are not a run"."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return "a file, not a folder"
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
    if not entries:
        return None
    if (run_dir / HASH_FILE).exists() or any(p.name.startswith("fold_") for p in entries):
        return "a model run" if is_finished(run_dir) else "an unfinished model run"
    try:
        return "an ensemble" if json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))["kind"] == "ensemble" \
            else "a model run"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import yaml

    try:
        recipe = yaml.safe_load(read_recipe_text(run_dir) or "")
    except (OSError, ValueError, yaml.YAMLError, CompetitionError):
        recipe = None
    if isinstance(recipe, dict) and recipe.get("kind") == "ensemble":
        return "an ensemble"
    return "files that are not a run"


@contextlib.contextmanager
def building(run_dir: Path) -> Iterator[Path]:
    """Build a run whole in a hidden sibling folder (yielded), then put it in place of `run_dir` in one step
    (an atomic exchange where the system has one): readers see the old run or the new one, never a mix, and a
    crash leaves the old run as it was (and a hidden folder that the next build of this name removes)."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(run_dir)
    tmp = run_dir.parent / f".{run_dir.name}.building-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        if run_dir.exists():
            if _exchange(tmp, run_dir):
                shutil.rmtree(tmp, ignore_errors=True)  # now the old run
            else:
                aside = tmp.with_name(tmp.name.replace(".building-", ".replaced-"))
                os.rename(run_dir, aside)
                os.rename(tmp, run_dir)
                shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove_dead_builds(run_dir: Path) -> None:
    """Hidden build folders of `run_dir` left by processes of this host that are gone (killed mid-build)."""
    host = socket.gethostname()
    for kind in ("building", "replaced"):
        for leftover in run_dir.parent.glob(f".{run_dir.name}.{kind}-*"):
            who, _, _ = leftover.name[len(f".{run_dir.name}.{kind}-"):].rpartition("-")
            where, _, pid = who.rpartition("-")
            if where == host and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_folder(run_dir: Path, recipe_hash: str, overwrite: bool) -> None:
    """Reuse a folder of the same recipe (resume); never mix with another recipe's folds. The run is marked
    unfinished (no run.json) until finish writes it again.

    Raises CompetitionError when the folder holds another recipe's run and `overwrite` is false."""
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE] if run_dir.is_dir() else []
    if entries:
        stored = stored_hash(run_dir)
        if stored != recipe_hash:
            if not overwrite:
                what = f"a run of a different recipe (hash {stored}, now {recipe_hash})" if stored else holds(run_dir)
                raise CompetitionError(f"{run_dir}: holds {what}; give the run another name or overwrite it")
            for entry in entries:  # everything but the lock this process holds
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_unfinished(run_dir)


def write_recipe(run_dir: Path, recipe_yaml: str, recipe_hash: str | None = None) -> None:
    write_text(run_dir / RECIPE_FILE, recipe_yaml)
    if recipe_hash is not None:
        write_text(run_dir / HASH_FILE, recipe_hash + "\n")


def read_recipe_text(run_dir: Path) -> str | None:
    """recipe.yaml's text, or None when the folder has none; CompetitionError naming the file when it is not
    UTF-8 text or cannot be read."""
    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except OSError as exc:
        raise CompetitionError(f"{path}: unreadable ({exc.strerror or exc})") from None


MAX_RECIPE_FILE = 1 << 20  # a stored recipe is a few kB


def read_recipe_yaml(run_dir: Path) -> dict[str, Any]:
    """recipe.yaml as a mapping, checked: there, UTF-8, YAML, a mapping. CompetitionError of one line naming
    the file otherwise: a missing recipe is never read as the default recipe (the run's image size, channels
    and folds are in it)."""
    import yaml

    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        raise CompetitionError(f"{path}: missing (the run's recipe: its image size, channels and folds); copy the "
                               "run folder whole, or train the run again")
    if path.stat().st_size > MAX_RECIPE_FILE:
        raise _damaged(path, f"{path.stat().st_size:,} bytes, not a recipe")
    text = read_recipe_text(run_dir) or ""
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise _damaged(path, "not YAML" + (f" (line {mark.line + 1})" if mark is not None else "")) from None
    if not isinstance(raw, dict):
        raise _damaged(path, f"a mapping of recipe sections expected, found {type(raw).__name__}")
    return raw


def read_recipe(run_dir: Path) -> Any:
    """A model run's recipe.yaml as a competition.recipe.Recipe, checked (read_recipe_yaml). Keys this version
    does not know: "made by a newer version"; any other problem: "damaged"; one line naming the file."""
    from pydantic import ValidationError

    from competition.recipe import Recipe, format_error

    path = Path(run_dir) / RECIPE_FILE
    raw = read_recipe_yaml(run_dir)
    if raw.get("kind") == "ensemble":
        raise CompetitionError(f"{path}: the recipe of an ensemble, not of a model run")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        unknown = [".".join(str(part) for part in error["loc"]) for error in exc.errors()
                   if error["type"] == "extra_forbidden"]
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise CompetitionError(f"{path}: made by a newer version of competition (keys this version does not "
                                   f"know: {', '.join(unknown[:3])[:200]}{more}); read the run with that version, or "
                                   "train it again with this one") from None
        raise _damaged(path, format_error(exc, "recipe")) from None
    except CompetitionError as exc:  # a check against another library
        raise _damaged(path, " ".join(str(exc).split())[:300]) from None


def stored_hash(run_dir: Path) -> str | None:
    """recipe.hash's text (a damaged file reads as a hash no recipe has), or None when there is none."""
    path = Path(run_dir) / HASH_FILE
    return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else None


def skipped_file(run_dir: Path) -> Path:
    return Path(run_dir) / SKIPPED_FILE


# ---------------------------------------------------------------- the lock of a run being trained


class RunLock:
    """An exclusive flock on `<run>/train.lock`, held by the process that trains the run (its fold workers,
    other processes or Ray tasks, do not take it). Released by `release` or when the process ends; taking it
    again in the same process shares it (counted)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd, self.count = path, fd, 1

    def release(self) -> None:
        self.count -= 1
        if self.count > 0 or self.fd < 0:
            return
        _HELD.pop(str(self.path), None)
        with contextlib.suppress(OSError):  # removed while still held: a waiter then retries on a fresh file
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1


_HELD: dict[str, RunLock] = {}


def lock_run(run_dir: Path) -> RunLock:
    """Lock the run folder (made if missing) for this process, at once or not at all: CompetitionError of
    one line naming the holder (pid, host, since when) when another process trains it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = Path(os.path.realpath(run_dir)) / LOCK_FILE
    held = _HELD.get(str(path))
    if held is not None and held.fd >= 0:
        held.count += 1
        return held
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(fd)
            os.close(fd)
            raise _in_use(run_dir, holder) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it as we opened it: take the lock on the new file
            os.close(fd)
            continue
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        with contextlib.suppress(OSError):  # the lock is the flock; the text only says who holds it
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode(), 0)
        lock = _HELD[str(path)] = RunLock(path, fd)
        return lock


def refuse_if_locked(run_dir: Path) -> None:
    """CompetitionError naming the holder when another process holds the run folder's lock (nothing is
    taken: `lock_run` takes it once the input is checked)."""
    holder = lock_holder(run_dir)
    if holder is not None and "(this process)" not in holder:
        raise _in_use(run_dir, holder)


def _in_use(run_dir: Path, holder: str) -> CompetitionError:
    return CompetitionError(f"{run_dir}: in use, locked by another train ({holder}); wait for it to end, or "
                            "give this run another name")


def lock_holder(run_dir: Path) -> str | None:
    """Who holds the run folder's lock ("pid 12 on host, since ..."), or None when nobody does."""
    path = Path(run_dir) / LOCK_FILE
    if str(Path(os.path.realpath(run_dir)) / LOCK_FILE) in _HELD:
        return f"pid {os.getpid()} (this process)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(fd)
    finally:
        os.close(fd)
    return None


def _holder_text(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


# ---------------------------------------------------------------- folds


def fold_dir(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / f"fold_{fold}"


def fold_is_done(run_dir: Path, fold: int, recipe_hash: str) -> bool:
    """Complete only with done.json (written last) of this recipe's hash and every file present and whole
    (fold_files_problem: a damaged fold is trained again). Whether it saw the data of now is the caller's
    question (done.json's "data", see PreparedRun.fold_problem)."""
    try:
        info = read_fold_info(run_dir, fold)
    except CompetitionError:
        return False
    return info.get("recipe_hash") == recipe_hash and fold_files_problem(run_dir, fold) is None


def read_fold_info(run_dir: Path, fold: int) -> dict[str, Any]:
    """A finished fold's done.json (recipe hash, the data it saw, best epoch, scores, seconds, memory,
    threads, its model file's name and size), checked: a JSON object. CompetitionError naming the file when
    it is missing or damaged."""
    path = fold_dir(run_dir, fold) / DONE_FILE
    return _json_object(path, f"{path}: missing (fold {fold} did not finish)")


def fold_files_problem(run_dir: Path, fold: int) -> str | None:
    """Why fold `fold`'s files are not whole (one line naming the file: missing, an array that is not a whole
    .npy file, a damaged model file: fold_model_problem), or None. Reads headers only."""
    where = fold_dir(run_dir, fold)
    for name in FOLD_FILES:
        if not (where / name).is_file():
            return f"{where / name}: missing"
    for name in ARRAYS:
        try:
            _array_rows(where / f"{name}.npy")
        except CompetitionError as exc:
            return str(exc)
    return fold_model_problem(run_dir, fold)


def fold_model_problem(run_dir: Path, fold: int) -> str | None:
    """Why fold `fold`'s model file (model.keras or model.joblib) cannot be what was saved, from cheap checks
    (no model is loaded): missing; another size than done.json recorded when it was saved; a model.keras
    that is not a whole Keras archive (its zip directory, at its end, is read). One line naming the file,
    or None."""
    where = fold_dir(run_dir, fold)
    path = next((where / name for name in (MODEL_FILE, SKLEARN_MODEL_FILE) if (where / name).is_file()), None)
    if path is None:
        return f"{where / MODEL_FILE}: fold model missing"
    try:
        info = read_fold_info(run_dir, fold)
    except CompetitionError:
        info = {}
    recorded, size = info.get("model_bytes"), path.stat().st_size
    if info.get("model_file") == path.name and isinstance(recorded, int) and recorded != size:
        return str(_damaged(path, f"{size:,} bytes, {recorded:,} when it was saved: cut short or changed"))
    if path.name == MODEL_FILE:
        problem = _keras_archive_problem(path)
        if problem:
            return str(_damaged(path, problem))
    return None


KERAS_PARTS = ("config.json", "model.weights.h5")  # what every saved .keras archive holds


def _keras_archive_problem(path: Path) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "not a whole .keras file: cut short or overwritten"
    missing = [name for name in KERAS_PARTS if name not in names]
    return f"not a Keras model file (no {missing[0]} inside)" if missing else None


def _keras_version(path: Path) -> str | None:
    """The Keras version that saved a .keras file (its metadata.json), or None when it does not say."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            version = json.loads(archive.read("metadata.json")).get("keras_version")
    except Exception:  # any unreadable archive or metadata: it does not say
        return None
    return version if isinstance(version, str) else None


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        parts.append(int(digits[:9]) if digits else 0)
    return tuple(parts)


def load_fold_model(run_dir: Path, fold: int) -> Any:
    """Fold `fold`'s Keras model, loaded; CompetitionError of one line naming the file when it is missing,
    damaged (fold_model_problem, or Keras cannot load it) or made by a newer version of Keras."""
    from importlib import import_module

    import keras

    import_module("competition.model.layers")  # registers the layer of models saved by earlier versions
    path = fold_model_path(run_dir, fold)
    if not path.is_file():
        raise CompetitionError(f"{path}: fold model missing; train the run again")
    problem = fold_model_problem(run_dir, fold)
    if problem:
        raise CompetitionError(f"{problem}; train the run again")
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # a damaged or foreign file: Keras raises many kinds
        saved = _keras_version(path)
        if saved is not None and _version_key(saved) > _version_key(keras.__version__):
            raise CompetitionError(f"{path}: made by a newer version of Keras ({saved}; this is "
                                   f"{keras.__version__}); load it with that version, or train the run again") from None
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise _damaged(path, f"Keras cannot load it: {reason}") from None


def save_fold(run_dir: Path, fold: int, *, arrays: dict[str, np.ndarray], history: pd.DataFrame, model: Any,
              info: dict[str, Any]) -> None:
    """Write fold `fold`'s files atomically, done.json (`info`) last: a killed run never leaves a fold that
    looks complete, and a failed save (disk full) leaves no temporary model file. `arrays` holds the ARRAYS
    by name; `model` is a Keras model (MODEL_FILE) or a scikit-learn kind's ClassicModel (SKLEARN_MODEL_FILE,
    joblib)."""
    folder = fold_dir(run_dir, fold)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE_FILE).unlink(missing_ok=True)
    for name in ARRAYS:
        write_npy(folder / f"{name}.npy", arrays[name])
    write_history(run_dir, fold, history)
    keras_model = hasattr(model, "save")
    name = MODEL_FILE if keras_model else SKLEARN_MODEL_FILE
    (folder / (SKLEARN_MODEL_FILE if keras_model else MODEL_FILE)).unlink(missing_ok=True)  # a kind changed
    tmp_model = folder / f".{name}.tmp{Path(name).suffix}"
    try:
        if keras_model:
            model.save(tmp_model)
        else:
            import joblib

            joblib.dump(model, tmp_model)
        tmp_model.replace(folder / name)
        info = {**info, "model_file": name, "model_bytes": (folder / name).stat().st_size}  # fold_model_problem
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_model.unlink()
        if isinstance(exc, OSError) and (exc.filename is None or str(exc.filename) == str(tmp_model)):
            exc.filename, exc.filename2 = str(folder / name), None  # the file the user knows
        raise
    write_json(folder / DONE_FILE, info)


def start_fold(run_dir: Path, fold: int) -> None:
    """Fold `fold` starts training: its folder made, and what an earlier attempt left that would make it look
    finished or tell of other epochs (done.json, history.csv) removed."""
    folder = fold_dir(run_dir, fold)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE_FILE).unlink(missing_ok=True)
    (folder / HISTORY_FILE).unlink(missing_ok=True)


def write_history(run_dir: Path, fold: int, history: pd.DataFrame | list[dict[str, Any]]) -> None:
    """Fold `fold`'s history.csv (one row per epoch: phase, epoch, the Keras logs, val_loss, val_macro_f1,
    seconds, learning_rate), replaced whole in one rename: called after every epoch, a reader sees the
    epochs before or after it, never half a line."""
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    write_text(fold_dir(run_dir, fold) / HISTORY_FILE, frame.to_csv(index=False))


def load_fold(run_dir: Path, fold: int, n_classes: int | None = None) -> dict[str, np.ndarray]:
    """A finished fold's ARRAYS by name, each checked (probabilities of `n_classes` columns when given);
    CompetitionError naming the file that is missing or damaged."""
    folder = fold_dir(run_dir, fold)
    return {name: _read_probabilities(folder / f"{name}.npy", n_classes) for name in ARRAYS}


def read_histories(run_dir: Path) -> dict[int, pd.DataFrame]:
    """fold index -> history.csv frame, for every ``fold_<k>/history.csv`` present (fold order)."""
    out: dict[int, pd.DataFrame] = {}
    folders = [p for p in Path(run_dir).glob("fold_*") if p.is_dir() and p.name[5:].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name[5:])):
        file = folder / HISTORY_FILE
        if not file.is_file():
            continue
        try:
            frame = pd.read_csv(file)
        except (OSError, ValueError) as exc:
            raise CompetitionError(f"{file}: unreadable history ({exc})") from None
        if frame.empty:
            continue
        if "epoch" not in frame:
            frame["epoch"] = np.arange(1, len(frame) + 1)
        out[int(folder.name[5:])] = frame
    return out


def read_partial_history(run_dir: Path, fold: int) -> list[dict[str, Any]]:
    """The epochs fold `fold` has finished so far (history.csv's rows as dicts, numbers as floats), also while
    it trains; [] when it has none or the file cannot be read."""
    file = fold_dir(run_dir, fold) / HISTORY_FILE
    try:
        frame = pd.read_csv(file)
    except (OSError, ValueError):
        return []
    return frame.to_dict("records")


def remove_unfinished(run_dir: Path) -> None:
    """Remove an unfinished run's folder whole. Its lock is taken first, so a run being trained is never
    removed, nor one that a train starts on meanwhile. CompetitionError naming the holder when it is locked,
    or saying the run is finished."""
    run_dir = Path(run_dir)
    lock = lock_run(run_dir)
    try:
        if is_finished(run_dir):
            raise CompetitionError(f"{run_dir}: a finished run; not removed")
        shutil.rmtree(run_dir)
    finally:
        lock.release()


def fold_model_path(run_dir: Path, fold: int) -> Path:
    """Fold `fold`'s saved Keras model (loads with plain keras.saving.load_model)."""
    return fold_dir(run_dir, fold) / MODEL_FILE


def sklearn_model_path(run_dir: Path, fold: int) -> Path:
    """Fold `fold`'s saved scikit-learn model kind (competition.model.classic.ClassicModel, joblib)."""
    return fold_dir(run_dir, fold) / SKLEARN_MODEL_FILE


def load_sklearn_model(run_dir: Path, fold: int) -> Any:
    """Fold `fold`'s ClassicModel; CompetitionError of one line naming the file when it is missing or damaged."""
    import joblib

    path = sklearn_model_path(run_dir, fold)
    if not path.is_file():
        raise CompetitionError(f"{path}: fold model missing; run `competition train` for this run again")
    try:
        return joblib.load(path)
    except Exception as exc:  # a cut or foreign file: whatever unpickling raises
        raise CompetitionError(f"{path}: damaged ({type(exc).__name__}); train the run again") from None


def write_decisions(run_dir: Path, decisions: dict[str, Any]) -> None:
    """Save the run's decisions: {"offsets": [float per class], ...figures}; `predict` and `submit` use them.
    They are kept with the digest of the OOF they were tuned on (oof_digest): after a retrain they are stale."""
    write_json(Path(run_dir) / DECISIONS_FILE, {**decisions, "oof_sha256": oof_digest(run_dir)})


def oof_digest(run_dir: Path) -> str:
    """A digest of the run's oof.npy values (what decisions are tuned on); '' when it does not read."""
    import hashlib

    try:
        array = np.ascontiguousarray(read_npy(Path(run_dir) / "oof.npy"))
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
    """The run's saved decisions, or None when it has none (plain argmax)."""
    path = Path(run_dir) / DECISIONS_FILE
    if not path.is_file():
        return None
    try:
        decisions = json.loads(path.read_text(encoding="utf-8"))
        offsets = [float(v) for v in decisions["offsets"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise CompetitionError(f"{path}: damaged decisions file; delete it or rerun submit --tune") from None
    meta = read_meta(run_dir)
    n_classes = len(meta["classes"])
    if len(offsets) != n_classes or not np.isfinite(offsets).all():
        what = f"{len(offsets)} offsets for {n_classes} classes" if len(offsets) != n_classes else "offsets not finite"
        raise CompetitionError(f"{path}: damaged decisions file ({what}); delete it or rerun submit --tune")
    made_for = decisions.get("oof_sha256")
    if isinstance(made_for, str) and made_for != oof_digest(run_dir):
        name = meta.get("name", Path(run_dir).name)
        raise CompetitionError(f"{path}: stale: tuned on the out-of-fold predictions of an earlier training of run "
                               f"'{name}'; run `competition submit {name} --tune` to tune again, or delete it")
    return {**decisions, "offsets": offsets}


# ---------------------------------------------------------------- an ensemble's members


def read_members(run_dir: Path, meta: dict[str, Any] | None = None) -> list[str]:
    """An ensemble's member run names from run.json (`meta`, read when not given): its 'members' (names, or
    {"name": ...} entries), checked: one or more plain run names. CompetitionError naming run.json otherwise."""
    meta = read_meta(run_dir) if meta is None else meta
    members = meta.get("members")
    names = [m.get("name") if isinstance(m, dict) else m for m in members] if isinstance(members, list) else []
    if not names or not all(isinstance(n, str) and run_name_problem(n) is None for n in names):
        raise _damaged(Path(run_dir) / RUN_FILE, f"'members' must list the member runs by name, found "
                                                 f"{str(members)[:80]}")
    return names


def read_weights(run_dir: Path, meta: dict[str, Any] | None = None) -> list[float] | None:
    """An ensemble's blend weights from run.json, checked: a finite number per member (read_members); None
    when it has none (methods that blend otherwise). CompetitionError naming run.json otherwise."""
    meta = read_meta(run_dir) if meta is None else meta
    weights = meta.get("weights")
    if weights is None:
        return None
    n = len(read_members(run_dir, meta))
    if (not isinstance(weights, list) or len(weights) != n
            or not all(isinstance(w, int | float) and not isinstance(w, bool) and np.isfinite(w) for w in weights)):
        raise _damaged(Path(run_dir) / RUN_FILE, f"'weights' must be {n} numbers, one per member, found "
                                                 f"{str(weights)[:80]}")
    return [float(w) for w in weights]
