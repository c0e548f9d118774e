"""A run's fold folders (`<run>/fold_<k>/`, their file names in competition.runs.folder): the checked readers
and the writers of each fold's arrays, history, done.json and model file (Keras or scikit-learn). Each problem
is one CompetitionError naming the file."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.files import write_json, write_npy, write_text
from competition.runs.folder import (ARRAYS, DONE_FILE, FOLD_FILES, HISTORY_FILE, MODEL_FILE, SKLEARN_MODEL_FILE,
                                     array_rows, damaged_error, is_finished, json_object, read_probabilities)
from competition.runs.locking import lock_run



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
    return json_object(path, f"{path}: missing (fold {fold} did not finish)")


def fold_files_problem(run_dir: Path, fold: int) -> str | None:
    """Why fold `fold`'s files are not whole (one line naming the file: missing, an array that is not a whole
    .npy file, a damaged model file: fold_model_problem), or None. Reads headers only."""
    where = fold_dir(run_dir, fold)
    for name in FOLD_FILES:
        if not (where / name).is_file():
            return f"{where / name}: missing"
    for name in ARRAYS:
        try:
            array_rows(where / f"{name}.npy")
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
        return str(damaged_error(path, f"{size:,} bytes, {recorded:,} when it was saved: cut short or changed"))
    if path.name == MODEL_FILE:
        problem = _keras_archive_problem(path)
        if problem:
            return str(damaged_error(path, problem))
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
        raise damaged_error(path, f"Keras cannot load it: {reason}") from None


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
    return {name: read_probabilities(folder / f"{name}.npy", n_classes) for name in ARRAYS}


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
