"""The run folder (competition.runs.folder, through Run.load): files checked against each other, ids and labels
read as the literal strings they were, a run replaced whole, the lock of a run being trained, and a failed model
save that leaves no temporary file."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from competition.errors import CompetitionError
from competition.runs import Run, save_run
from competition.runs import fold_files, folder, locking

NA_WORDS = ["NA", "None", "null", "nan", "N/A", "007"]


def _run(path: Path, classes: list[str] | None = None, ids: list[str] | None = None,
         test_ids: list[str] | None = None) -> Path:
    classes = classes or ["a", "b"]
    ids = ids or [f"x{i}" for i in range(6)]
    test_ids = test_ids or ["t0", "t1", "t2"]
    rng = np.random.default_rng(0)
    return save_run(path, name=path.name, kind="model", classes=classes, ids=np.array(ids, dtype=object),
                    y=np.arange(len(ids)) % len(classes), folds=np.arange(len(ids)) % 2,
                    oof=rng.dirichlet(np.ones(len(classes)), len(ids)),
                    test=rng.dirichlet(np.ones(len(classes)), len(test_ids)), test_ids=np.array(test_ids, dtype=object),
                    oof_plain=rng.dirichlet(np.ones(len(classes)), len(ids)),
                    test_plain=rng.dirichlet(np.ones(len(classes)), len(test_ids)))


def test_na_like_ids_and_labels_read_back_as_written(tmp_path: Path) -> None:
    run = Run.load(_run(tmp_path / "r", classes=["None", "NA"], ids=NA_WORDS, test_ids=["null", "NA", "nan"]))
    assert run.classes == ["None", "NA"]
    assert list(run.ids) == NA_WORDS and list(run.test_ids) == ["null", "NA", "nan"]
    assert list(run.y) == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(("file", "damage", "said"), [
    ("run.json", lambda p: p.write_text('{"name": "r", "kind": "model", "classes": ["a"'), "not JSON"),
    ("run.json", lambda p: p.write_text('{"kind": "model", "classes": ["a", "a"]}'), "classes"),
    ("run.json", lambda p: p.write_text("[1, 2]"), "JSON object"),
    ("folds.csv", lambda p: p.write_text(""), "empty"),
    ("folds.csv", lambda p: p.write_text("id,label,fold\n"), "no rows"),
    ("folds.csv", lambda p: p.write_text(p.read_text()[:-5]), "cut short"),
    ("folds.csv", lambda p: p.write_text(p.read_text().replace("fold", "split")), "columns"),
    ("folds.csv", lambda p: p.write_text(p.read_text().replace(",a,0", ",a,zero")), "fold number"),
    ("folds.csv", lambda p: p.write_text(p.read_text().replace(",a,0", ",c,0")), "'c'"),
    ("folds.csv", lambda p: p.write_text(p.read_text().replace("x1,", "x0,")), "twice"),
    ("folds.csv", lambda p: p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1])), "rows"),
    ("test_ids.csv", lambda p: p.write_text("id\nt0\nt1\n"), "rows"),
    ("oof.npy", lambda p: np.save(p, np.load(p)[:, :1]), "columns"),
    ("oof.npy", lambda p: np.save(p, np.load(p) * 5), "not probabilities"),
    ("oof.npy", lambda p: np.save(p, np.array(["a"] * 12).reshape(6, 2)), "expected float"),
    ("oof.npy", lambda p: p.write_bytes(p.read_bytes()[:60]), "not a whole .npy"),
    ("test.npy", lambda p: np.save(p, np.full((3, 2), np.inf, np.float32)), "infinite"),
    ("oof_plain.npy", lambda p: np.save(p, np.load(p)[:4]), "shape"),
])
def test_every_damage_names_its_file(tmp_path: Path, file: str, damage, said: str) -> None:
    path = _run(tmp_path / "r")
    damage(path / file)
    with pytest.raises(CompetitionError) as caught:
        Run.load(path)
    message = str(caught.value)
    assert "\n" not in message and file in message and said in message, message


def test_an_ensemble_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "e")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(RuntimeError), locking.building(run_dir) as new:
        _run(new)
        raise RuntimeError("killed before run.json")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["e"], "the aborted build was left behind"
    with locking.building(run_dir) as new:
        _run(new, classes=["p", "q", "r"])
    assert Run.load(run_dir).classes == ["p", "q", "r"] and [p.name for p in tmp_path.iterdir()] == ["e"]


def test_holds_tells_runs_apart(tmp_path: Path) -> None:
    assert folder.holds(tmp_path / "nothing") is None
    assert folder.holds(_run(tmp_path / "m")) == "a model run"
    half = tmp_path / "half"
    folder.write_recipe(half, "name: half\n", "abc")
    assert folder.holds(half) == "an unfinished model run"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert folder.holds(tmp_path / "mine") == "files that are not a run"


HOLD = """
import sys, time
from pathlib import Path
from competition.runs import locking
lock = locking.lock_run(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def test_a_run_folder_is_locked_by_one_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CompetitionError, match=rf"in use.*pid {holder.pid} on .*, since "):
            locking.lock_run(run_dir)
        with pytest.raises(CompetitionError, match="in use"):
            locking.refuse_if_locked(run_dir)
        assert str(holder.pid) in locking.lock_holder(run_dir)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert locking.lock_holder(run_dir) is None  # a killed holder's lock goes with it (the file may stay)
    lock = locking.lock_run(run_dir)
    again = locking.lock_run(run_dir)  # the same process: shared, counted
    assert again is lock
    again.release()
    assert (run_dir / folder.LOCK_FILE).exists()
    lock.release()
    assert not (run_dir / folder.LOCK_FILE).exists()


def test_overwriting_keeps_the_lock_of_this_process(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "r")
    folder.write_recipe(run_dir, "name: r\n", "old")
    lock = locking.lock_run(run_dir)
    try:
        folder.prepare_folder(run_dir, "new", overwrite=True)
        assert [p.name for p in run_dir.iterdir()] == [folder.LOCK_FILE]
    finally:
        lock.release()


class _FullDisk:
    def save(self, path: Path) -> None:
        Path(path).write_bytes(b"PK half a model")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_model_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    arrays = {name: np.zeros((2, 2), np.float32) for name in folder.ARRAYS}
    import pandas as pd

    with pytest.raises(OSError) as caught:
        fold_files.save_fold(tmp_path, 0, arrays=arrays, history=pd.DataFrame({"epoch": [1]}), model=_FullDisk(),
                         info={"recipe_hash": "h"})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith(f"fold_0/{folder.MODEL_FILE}")
    left = sorted(p.name for p in fold_files.fold_dir(tmp_path, 0).iterdir())
    assert not [name for name in left if name.startswith(".")] and folder.DONE_FILE not in left
    assert not fold_files.fold_is_done(tmp_path, 0, "h")
    assert json.dumps(left)  # the arrays and history may stay; the fold is simply not done
