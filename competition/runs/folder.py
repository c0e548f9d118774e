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
place (competition.runs.locking.building). Every reader goes through the checked readers: here
`read_run_files` (the files checked against each other), `read_recipe` and `read_recipe_yaml` (recipe.yaml:
missing, damaged, or made by a newer version), `read_members` and `read_weights` (an ensemble's run.json); in
competition.runs.fold_files `read_fold_info`, `load_fold`, `load_fold_model` (`fold_model_problem` checks a model
file without loading it); in competition.runs.decisions `read_decisions` (one offset per class, tuned on the OOF
the run holds now: `oof_digest`). Each problem is one CompetitionError naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
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
OOF_FILE = "oof.npy"  # the run's out-of-fold probabilities (what decisions are tuned on)
FOLD_FILES = (*(f"{name}.npy" for name in ARRAYS), HISTORY_FILE)  # and one model file: MODEL_FILE or SKLEARN_MODEL_FILE
SLACK = 1e-3  # how far outside [0, 1] a stored probability may stray (float rounding) before it is damage


# ---------------------------------------------------------------- the run as a whole


def is_finished(run_dir: str | Path) -> bool:
    """True when the folder holds a finished run or ensemble (its run.json)."""
    return (Path(run_dir) / RUN_FILE).is_file()


def run_json_files(runs_dir: Path) -> list[Path]:
    """The finished runs under runs_dir, by name (hidden folders, such as ensembles being built, left out)."""
    return [p.parent for p in sorted(Path(runs_dir).glob(f"*/{RUN_FILE}")) if not p.parent.name.startswith(".")]


def damaged_error(path: Path, problem: str) -> CompetitionError:
    return CompetitionError(f"{path}: damaged ({problem})")


def json_object(path: Path, missing: str) -> dict[str, Any]:
    """A JSON object file of the run, checked; CompetitionError `missing` when it is not there, else one line
    naming it when it is unreadable, not JSON or not an object."""
    if not path.is_file():
        raise CompetitionError(missing)
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged_error(path, f"not JSON: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise CompetitionError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(found, dict):
        raise damaged_error(path, f"a JSON object expected, found {type(found).__name__}")
    return found


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """run.json as a dict, checked: a JSON object whose `classes` are two or more distinct names.
    CompetitionError naming run.json when it is missing or damaged."""
    meta_file = Path(run_dir) / RUN_FILE
    meta = json_object(meta_file, f"{run_dir}: not a finished run (no {RUN_FILE})")
    classes = meta.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes)
            or len(set(classes)) != len(classes)):
        raise damaged_error(meta_file, f"'classes' must list two or more distinct class names, found {str(classes)[:80]}")
    if meta.get("kind", "model") not in ("model", "ensemble"):
        raise damaged_error(meta_file, f"'kind' must be model or ensemble, found {str(meta.get('kind'))[:40]!r}")
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
        raise damaged_error(path, "not UTF-8 text") from None
    except OSError as exc:
        raise CompetitionError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not text.strip():
        raise damaged_error(path, "empty file")
    if not text.endswith("\n"):  # every writer ends its last line: a file without is cut short
        raise damaged_error(path, "cut short: its last line is incomplete")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise damaged_error(path, f"not CSV: {' '.join(str(exc).split())}") from None
    header, data = rows[0], rows[1:]
    missing = [c for c in columns if c not in header]
    if missing or len(set(header)) != len(header):
        raise damaged_error(path, f"header {','.join(header)[:80]!r}, expected the columns {','.join(columns)}")
    for r, row in enumerate(data, start=1):
        if len(row) != len(header):
            raise damaged_error(path, f"row {r} has {len(row)} fields, the header {len(header)}")
    return pd.DataFrame(data, columns=header, dtype=str) if data else pd.DataFrame(columns=header, dtype=str)


def read_folds(run_dir: Path) -> pd.DataFrame:
    """folds.csv, checked: id, label (literal strings), fold (an int per row), [path]; at least one row,
    ids distinct and not empty. CompetitionError naming folds.csv otherwise."""
    file = Path(run_dir) / FOLDS_FILE
    frame = read_text_csv(file, ("id", "label", "fold"))
    if frame.empty:
        raise damaged_error(file, "no rows")
    bad = np.flatnonzero(~frame["fold"].str.fullmatch(r"\d{1,6}").to_numpy(dtype=bool))
    if len(bad):
        raise damaged_error(file, f"row {bad[0] + 1}: fold {frame['fold'].iloc[bad[0]]!r} is not a fold number")
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
        raise damaged_error(file, f"row {empty[0] + 1} has an empty id")
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise damaged_error(file, f"id {repeated.iloc[0]!r} appears twice")


def read_probabilities(path: Path, n_classes: int | None) -> np.ndarray:
    """A (rows, n_classes) float array of probabilities (finite, within [0, 1]; any number of columns when
    n_classes is None); CompetitionError naming the file when it is missing, unreadable or of another shape
    or kind."""
    if not path.is_file():
        raise CompetitionError(f"{path}: missing")
    try:
        array = read_npy(path)
    except (ValueError, OSError, EOFError) as exc:
        raise damaged_error(path, f"not a whole .npy array: {' '.join(str(exc).split())[:120]}") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise damaged_error(path, f"{array.dtype} array of shape {array.shape}, expected float (rows, {n_classes})")
    if n_classes is not None and array.shape[1] != n_classes:
        raise damaged_error(path, f"{array.shape[1]} columns, but {RUN_FILE} has {n_classes} classes")
    if array.size and not np.isfinite(array).all():
        raise damaged_error(path, "holds NaN or infinite values")
    if array.size and (array.min() < -SLACK or array.max() > 1 + SLACK):
        raise damaged_error(path, f"values from {array.min():.3g} to {array.max():.3g}, not probabilities")
    return array


def array_rows(path: Path) -> int | None:
    """The row count of an optional array (its header only); None when absent. Damaged: CompetitionError."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise damaged_error(path, f"not a whole .npy array: {' '.join(str(exc).split())[:120]}") from None
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
    from competition.data.contest import Layout  # the decoders' module: not at import

    layout = Layout.from_record(meta.get("layout"))
    separator = layout.label_separator
    if separator:  # multi-label: every label of a row among the classes
        known = set(classes) | ({""} if layout.allows_no_label else set())
        unknown = np.flatnonzero([not {t.strip() for t in str(text).split(separator)} <= known
                                  for text in folds["label"]])
    else:
        unknown = np.flatnonzero(~folds["label"].isin(classes).to_numpy())
    if len(unknown):
        raise damaged_error(run_dir / FOLDS_FILE, f"row {unknown[0] + 1}: label {folds['label'].iloc[unknown[0]]!r} is "
                                             f"not one of the classes in {RUN_FILE}")
    test_ids = read_test_ids(run_dir)
    files = {"meta": meta, "folds": folds, "test_ids": test_ids}
    for name, rows, source in (("oof", len(folds), FOLDS_FILE), ("test", len(test_ids), TEST_IDS_FILE)):
        path = run_dir / f"{name}.npy"
        array = read_probabilities(path, len(classes))
        plain = run_dir / f"{name}_plain.npy"
        plain_rows = array_rows(plain)
        if array.shape[0] != rows:
            if plain_rows == array.shape[0]:  # two arrays agree against the CSV: the CSV is the odd one out
                raise damaged_error(run_dir / source, f"{rows} rows, but {path.name} and {plain.name} have {array.shape[0]}")
            raise damaged_error(path, f"{array.shape[0]} rows, but {source} has {rows}")
        if plain_rows is not None and plain_rows != rows:
            raise damaged_error(plain, f"not of shape ({rows}, {len(classes)}) like {path.name}")
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
        raise damaged_error(path, "not UTF-8 text") from None
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
        raise damaged_error(path, f"{path.stat().st_size:,} bytes, not a recipe")
    text = read_recipe_text(run_dir) or ""
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise damaged_error(path, "not YAML" + (f" (line {mark.line + 1})" if mark is not None else "")) from None
    if not isinstance(raw, dict):
        raise damaged_error(path, f"a mapping of recipe sections expected, found {type(raw).__name__}")
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
        raise damaged_error(path, format_error(exc, "recipe")) from None
    except CompetitionError as exc:  # a check against another library
        raise damaged_error(path, " ".join(str(exc).split())[:300]) from None


def stored_hash(run_dir: Path) -> str | None:
    """recipe.hash's text (a damaged file reads as a hash no recipe has), or None when there is none."""
    path = Path(run_dir) / HASH_FILE
    return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else None


def skipped_file(run_dir: Path) -> Path:
    return Path(run_dir) / SKIPPED_FILE


# ---------------------------------------------------------------- an ensemble's members


def read_members(run_dir: Path, meta: dict[str, Any] | None = None) -> list[str]:
    """An ensemble's member run names from run.json (`meta`, read when not given): its 'members' (names, or
    {"name": ...} entries), checked: one or more plain run names. CompetitionError naming run.json otherwise."""
    meta = read_meta(run_dir) if meta is None else meta
    members = meta.get("members")
    names = [m.get("name") if isinstance(m, dict) else m for m in members] if isinstance(members, list) else []
    if not names or not all(isinstance(n, str) and run_name_problem(n) is None for n in names):
        raise damaged_error(Path(run_dir) / RUN_FILE, f"'members' must list the member runs by name, found "
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
        raise damaged_error(Path(run_dir) / RUN_FILE, f"'weights' must be {n} numbers, one per member, found "
                                                 f"{str(weights)[:80]}")
    return [float(w) for w in weights]
