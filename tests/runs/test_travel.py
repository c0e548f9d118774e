"""Run folders that travel: the contest folder is stored once, absolute, with its files relative to it; a run
folder copied elsewhere and read from another folder finds its contest with `--data`, and without it says in
one line which folder is gone. Runs written before (absolute or working-folder-relative paths) still read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faultkit import cli

from competition.errors import CompetitionError
from competition.runs import Run, save_run
from competition.runs.run import contest_folder, training_images


@pytest.mark.slow
def test_a_copied_run_reads_its_moved_contest_with_data(tiny_contest: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from competition.inference import predict_run
    from competition.recipe import load_recipe
    from competition.report.plots import write_report
    from competition.submission import submit_run
    from competition.training import train_run

    shutil.copytree(tiny_contest, tmp_path / "contest")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(None, ["name=r", "data.image_size=16", "model.filters=[4]", "model.head.dense=[4]",
                                "train.phases.0.epochs=1", "cv.folds=2", "cv.scheme=stratified"])
    train_run(recipe, "runs", data_root="contest")  # a relative contest folder, as users type it
    meta = json.loads(Path("runs/r/run.json").read_text())
    assert meta["data_root"] == str(tmp_path / "contest") and meta["sample_submission"] == "sample_submission.csv"
    assert all(p.startswith("train/") for p in pd.read_csv("runs/r/folds.csv")["path"])

    shutil.copytree("runs/r", tmp_path / "far" / "runs" / "r")  # the run travels, the contest moves
    shutil.move(tmp_path / "contest", tmp_path / "far" / "moved")
    (tmp_path / "far" / "other").mkdir()
    monkeypatch.chdir(tmp_path / "far" / "other")
    runs, moved = Path("../runs"), Path("../moved")

    gone = cli("submit", "r", "--runs", runs, cwd=Path.cwd())
    lines = gone.stderr.strip().splitlines()
    assert gone.returncode == 2 and len(lines) == 1, gone.stderr
    assert f"its contest folder {tmp_path / 'contest'} is gone" in lines[0] and "--data" in lines[0]
    with pytest.raises(CompetitionError, match="is gone .*pass --data"):
        contest_folder(runs / "r")

    written, _ = submit_run("r", runs, data=moved, out="r.csv")
    sample = pd.read_csv(moved / "sample_submission.csv", dtype=str)
    assert pd.read_csv(written, dtype=str)["id"].tolist() == sample["id"].tolist()

    page = write_report(runs / "r", data=moved).read_text()
    assert "wrong.png" in page and "exist on disk" not in page and "gone" not in page
    assert all(Path(p).is_file() for p in training_images(runs / "r", moved))

    predicted = predict_run("r", [contest_folder(runs / "r", moved)], runs)
    assert sorted(predicted.ids) == sorted(sample["id"])
    run = Run.load(runs / "r", data=moved)
    order = [list(run.test_ids).index(i) for i in predicted.ids]
    np.testing.assert_allclose(predicted.proba, run.test[order], atol=1e-5)

    without = write_report(runs / "r", tmp_path / "report2").read_text()
    assert "is gone (moved or deleted): pass --data DIR" in without


def _old_run(path: Path, root: str, paths: list[str], sample: str) -> Path:
    """A run as earlier versions wrote it: data_root as given to train, paths as the contest index made them."""
    save_run(path, name="old", kind="model", classes=["a", "b"], ids=np.array(["x", "y"]), y=np.array([0, 1]),
             folds=np.array([0, 1]), oof=np.eye(2), test=np.eye(2), test_ids=np.array(["t0", "t1"]),
             extra={"data_root": root, "sample_submission": sample})
    frame = pd.read_csv(path / "folds.csv", dtype=str)
    frame["path"] = paths
    frame.to_csv(path / "folds.csv", index=False)
    meta = json.loads((path / "run.json").read_text())
    meta["sample_submission"] = sample  # earlier versions stored it whole
    (path / "run.json").write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("absolute", [False, True])
def test_runs_of_earlier_versions_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, absolute: bool) -> None:
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path / "old-contest") if absolute else "old-contest"
    paths = [os.path.join(root, "train", "a", "x.png"), os.path.join(root, "train", "b", "y.png")]
    run_dir = _old_run(tmp_path / "runs" / "old", root, paths, os.path.join(root, "sample_submission.csv"))
    (tmp_path / "old-contest").mkdir()
    (tmp_path / "old-contest" / "sample_submission.csv").write_text("id,label\nt0,a\nt1,b\n")

    run = Run.load(run_dir)
    assert list(run.paths) == paths and run.sample_submission() == Path(root) / "sample_submission.csv"

    shutil.move(tmp_path / "old-contest", tmp_path / "new-contest")
    with pytest.raises(CompetitionError, match=r"old-contest is gone .*pass --data DIR .*or --sample FILE$"):
        Run.load(run_dir).sample_submission()
    moved = Run.load(run_dir, data=tmp_path / "new-contest")
    assert list(moved.paths) == [str(tmp_path / "new-contest" / "train" / c / f) for c, f in (("a", "x.png"),
                                                                                              ("b", "y.png"))]
    assert moved.sample_submission() == tmp_path / "new-contest" / "sample_submission.csv"
