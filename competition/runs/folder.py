"""The run folder's layout: the one module that knows its file names. Everything else reads and writes a
run through these functions.

Layout of ``runs/<name>/`` (ensembles use the same files, so every later stage treats them alike)::

    run.json          name, kind ("model" | "ensemble"), classes, recipe_hash, scheme, members, timings;
                      written last, so its presence means the run is finished
    recipe.yaml       the resolved recipe (ensembles: their method and members)
    recipe.hash       its hash: a rerun of another recipe never mixes with these folds
    folds.csv         id,label,fold[,path]: one row per training image; row order == OOF row order.
                      Written when the run is prepared (the fold assignment every worker reads) and again
                      when it finishes
    oof.npy           float32 (n_train, n_classes) out-of-fold probabilities (with TTA when declared)
    oof_plain.npy     the same without TTA
    test.npy          float32 (n_test, n_classes) test probabilities (mean of the fold models)
    test_plain.npy    the same without TTA
    test_ids.csv      id: row order of test.npy
    skipped_images.csv  training images left out as unreadable (data.on_bad_image: skip)
    fold_<k>/         k = 0 .. folds-1: model.keras, history.csv, oof.npy (rows = that fold's validation
                      rows), test.npy, their *_plain twins, and done.json (written last)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.files import read_npy, write_json, write_npy, write_text

RUN_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
HASH_FILE = "recipe.hash"
FOLDS_FILE = "folds.csv"
TEST_IDS_FILE = "test_ids.csv"
SKIPPED_FILE = "skipped_images.csv"
DONE_FILE = "done.json"
HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"
ARRAYS = ("oof", "test", "oof_plain", "test_plain")  # each saved as <name>.npy, per fold and per run
FOLD_FILES = (*(f"{name}.npy" for name in ARRAYS), HISTORY_FILE, MODEL_FILE)


# ---------------------------------------------------------------- the run as a whole


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot be a run folder's name (a plain folder name: no '/', '\\', leading '.', or
    surrounding spaces), or None when it can."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name != name.strip():
        return f"a run name is a plain folder name (no '/', '\\', leading '.' or surrounding spaces), got {name!r}"
    return None


def is_finished(run_dir: str | Path) -> bool:
    """True when the folder holds a finished run or ensemble (its run.json)."""
    return (Path(run_dir) / RUN_FILE).is_file()


def run_json_files(runs_dir: Path) -> list[Path]:
    """The finished runs under runs_dir, by name."""
    return [p.parent for p in sorted(runs_dir.glob(f"*/{RUN_FILE}"))]


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """run.json as a dict; CompetitionError when it is missing."""
    meta_file = Path(run_dir) / RUN_FILE
    if not meta_file.is_file():
        raise CompetitionError(f"{run_dir}: not a finished run (no {RUN_FILE})")
    return json.loads(meta_file.read_text(encoding="utf-8"))


def read_run_files(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's files: meta (run.json), folds (the folds.csv frame, ids and labels as text), oof,
    test (float32 arrays) and test_ids."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    files = {"meta": meta, "folds": read_folds(run_dir), "oof": read_npy(run_dir / "oof.npy"),
             "test": read_npy(run_dir / "test.npy"),
             "test_ids": pd.read_csv(run_dir / TEST_IDS_FILE, dtype={"id": str})["id"].to_numpy()}
    n_classes = len(meta.get("classes", []))
    for name, rows, source in (("oof", len(files["folds"]), FOLDS_FILE), ("test", len(files["test_ids"]), TEST_IDS_FILE)):
        if files[name].shape != (rows, n_classes):
            raise CompetitionError(f"{run_dir / f'{name}.npy'}: shape {files[name].shape}, expected ({rows}, "
                                   f"{n_classes}) from {source} and {RUN_FILE}")
    return files


def write_folds(run_dir: Path, frame: pd.DataFrame) -> None:
    """folds.csv: id,label,fold[,path], one row per training image in OOF row order."""
    write_text(run_dir / FOLDS_FILE, frame.to_csv(index=False))


def read_folds(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / FOLDS_FILE, dtype={"id": str, "label": str})


def write_run_files(run_dir: Path, *, folds: pd.DataFrame, oof: np.ndarray, test: np.ndarray, test_ids: np.ndarray,
                    meta: dict[str, Any], oof_plain: np.ndarray | None = None,
                    test_plain: np.ndarray | None = None) -> Path:
    """Write a run's shared files; run.json goes last, so its presence means the run is complete."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_folds(run_dir, folds)
    write_text(run_dir / TEST_IDS_FILE, pd.DataFrame({"id": test_ids}).to_csv(index=False))
    for name, array in (("oof", oof), ("test", test), ("oof_plain", oof_plain), ("test_plain", test_plain)):
        if array is not None:
            write_npy(run_dir / f"{name}.npy", np.asarray(array, dtype=np.float32))
    write_json(run_dir / RUN_FILE, meta)
    return run_dir


def prepare_folder(run_dir: Path, recipe_hash: str, overwrite: bool) -> None:
    """Reuse a folder of the same recipe (resume); never mix with another recipe's folds.

    Raises CompetitionError when the folder holds another recipe's run and `overwrite` is false."""
    if run_dir.exists() and any(run_dir.iterdir()):
        stored = stored_hash(run_dir)
        if stored != recipe_hash:
            if not overwrite:
                raise CompetitionError(
                    f"{run_dir}: holds a run of a different recipe (hash {stored}, now {recipe_hash}); "
                    "give the run another name or overwrite it")
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def write_recipe(run_dir: Path, recipe_yaml: str, recipe_hash: str | None = None) -> None:
    write_text(run_dir / RECIPE_FILE, recipe_yaml)
    if recipe_hash is not None:
        write_text(run_dir / HASH_FILE, recipe_hash + "\n")


def read_recipe_text(run_dir: Path) -> str | None:
    """recipe.yaml's text, or None when the folder has none."""
    path = Path(run_dir) / RECIPE_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None


def stored_hash(run_dir: Path) -> str | None:
    path = Path(run_dir) / HASH_FILE
    return path.read_text().strip() if path.is_file() else None


def skipped_file(run_dir: Path) -> Path:
    return Path(run_dir) / SKIPPED_FILE


# ---------------------------------------------------------------- folds


def fold_dir(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / f"fold_{fold}"


def fold_is_done(run_dir: Path, fold: int, recipe_hash: str) -> bool:
    """Complete only with done.json (written last) of this recipe's hash and every file present."""
    try:
        info = read_fold_info(run_dir, fold)
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("recipe_hash") == recipe_hash and all((fold_dir(run_dir, fold) / f).is_file() for f in FOLD_FILES)


def read_fold_info(run_dir: Path, fold: int) -> dict[str, Any]:
    """A finished fold's done.json (best epoch, scores, seconds, memory, threads)."""
    return json.loads((fold_dir(run_dir, fold) / DONE_FILE).read_text(encoding="utf-8"))


def save_fold(run_dir: Path, fold: int, *, arrays: dict[str, np.ndarray], history: pd.DataFrame, model: Any,
              info: dict[str, Any]) -> None:
    """Write fold `fold`'s files atomically, done.json (`info`) last: a killed run never leaves a fold that
    looks complete. `arrays` holds the ARRAYS by name; `model` is a Keras model."""
    folder = fold_dir(run_dir, fold)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE_FILE).unlink(missing_ok=True)
    for name in ARRAYS:
        write_npy(folder / f"{name}.npy", arrays[name])
    write_text(folder / HISTORY_FILE, history.to_csv(index=False))
    tmp_model = folder / f".{MODEL_FILE}.tmp.keras"
    model.save(tmp_model)
    tmp_model.replace(folder / MODEL_FILE)
    write_json(folder / DONE_FILE, info)


def load_fold(run_dir: Path, fold: int) -> dict[str, np.ndarray]:
    """A finished fold's ARRAYS by name."""
    folder = fold_dir(run_dir, fold)
    return {name: read_npy(folder / f"{name}.npy") for name in ARRAYS}


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
