"""Watching runs: history.csv after every epoch, a per-epoch line with an ETA in a log, `competition runs`
(state, folds done, score, age, size) and `competition clean` (unfinished runs only), and a run killed with
SIGKILL in the middle of a fold."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faultkit import cli

from competition.console import Progress, duration_text
from competition.runs import fold_files, folder, save_run
from competition.runs.status import clean, list_status, run_status, size_text

# Trains a 2-fold tiny run in this process (local executor, a log on stdout); the epoch 3 of fold 1 stops in a
# callback that says so and sleeps, so the test kills it there for certain.
STALL_IN_FOLD_1_EPOCH_3 = """
import sys, time
from pathlib import Path

import keras
from rich.console import Console

import competition

runs, contest = Path(sys.argv[1]), Path(sys.argv[2])


class Stall(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2 and (runs / "stall" / "fold_0" / "done.json").is_file():
            print("stalled in fold 1, epoch 3", flush=True)
            time.sleep(120)


recipe = competition.load_recipe(None, ["name=stall", "data.image_size=16", "model.filters=[4]",
                                        "model.head.dense=[4]", "train.phases.0.epochs=3", "cv.folds=2",
                                        "cv.scheme=stratified"])
competition.train(recipe, runs, data_root=contest, executor="local", callbacks=[Stall()],
                  console=Console(file=sys.stdout, width=120))
"""


@pytest.mark.slow
def test_a_run_killed_in_epoch_3_of_fold_1_shows_its_finished_epochs(tiny_contest: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    victim = subprocess.Popen([sys.executable, "-u", "-c", STALL_IN_FOLD_1_EPOCH_3, str(runs), str(tiny_contest)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    try:
        for line in victim.stdout:  # type: ignore[union-attr]
            log.append(line)
            if line.startswith("stalled"):
                break
        assert log and log[-1].startswith("stalled"), "".join(log)[-3000:]
        running = run_status(runs / "stall")
        assert running is not None and running.state == "running" and str(victim.pid) in running.problem
        assert clean(runs) == []  # a running run is never offered for removal
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()

    # The log: one line per epoch, fold named as its folder, with an ETA once an epoch is timed.
    epochs = [line for line in log if " epoch " in line and "ETA" in line]
    assert [line.split("  ")[0] for line in epochs] == ["stall: fold 0 (1 of 2)"] * 3 + ["stall: fold 1 (2 of 2)"] * 2
    assert "epoch 2/3" in epochs[-1] and "val macro F1" in epochs[-1] and "ETA ?" not in "".join(epochs)

    # history.csv of the fold in progress: its two finished epochs, whole lines.
    with (runs / "stall" / "fold_1" / "history.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert [row[rows[0].index("epoch")] for row in rows[1:]] == ["1", "2"]
    assert {len(row) for row in rows} == {len(rows[0])} and "val_macro_f1" in rows[0]

    status = run_status(runs / "stall")
    assert status is not None and status.state == "unfinished"
    assert (status.folds_done, status.n_folds) == (1, 2) and status.score_is_folds and 0 <= status.score <= 1
    assert status.epochs.startswith("fold 1: epoch 2/3, best ")
    assert status.size > 0 and status.updated < 60

    listed = subprocess.run([sys.executable, "-m", "competition.cli", "runs", "--runs", str(runs)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("stall"))
    assert "unfinished" in row and "1/2" in row and "fold 1: epoch 2/3" in row, listed.stdout

    assert [s.name for s in clean(runs)] == ["stall"] and (runs / "stall").is_dir()  # listed, not removed
    assert [s.name for s in clean(runs, remove=True)] == ["stall"] and not (runs / "stall").exists()


def _finished(path: Path) -> Path:
    rng = np.random.default_rng(0)
    return save_run(path, name=path.name, kind="model", classes=["a", "b"], ids=np.array(["x", "y", "z", "w"]),
                    y=np.array([0, 1, 0, 1]), folds=np.array([0, 0, 1, 1]), oof=np.eye(2)[[0, 1, 0, 0]],
                    test=rng.dirichlet([1, 1], 3), test_ids=np.array(["t0", "t1", "t2"]))


def test_runs_lists_every_state_and_clean_removes_only_unfinished_runs(tmp_path: Path) -> None:
    _finished(tmp_path / "done")
    damaged = _finished(tmp_path / "broken")
    (damaged / "oof.npy").write_bytes(b"\x93NUMPY cut")
    half = tmp_path / "half"
    folder.write_recipe(half, "name: half\ncv: {folds: 3}\ntrain: {phases: [{epochs: 4}, {epochs: 2}]}\n", "h1")
    fold_files.write_history(half, 0, [{"phase": 0, "epoch": 1, "val_macro_f1": 0.25}])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a run")
    (tmp_path / ".e.building-host-1-ab").mkdir()

    by_name = {s.name: s for s in list_status(tmp_path)}
    assert set(by_name) == {"done", "broken", "half"}
    assert by_name["done"].state == "finished" and by_name["done"].score == pytest.approx((0.8 + 2 / 3) / 2)
    assert by_name["broken"].state == "damaged" and "oof.npy" in by_name["broken"].problem
    assert by_name["half"].state == "unfinished" and (by_name["half"].folds_done, by_name["half"].n_folds) == (0, 3)
    assert by_name["half"].epochs == "fold 0: epoch 1/6, best 0.250" and by_name["half"].score is None

    assert [s.name for s in clean(tmp_path)] == ["half"] and half.is_dir()
    listed = cli("clean", "--runs", tmp_path, cwd=tmp_path)
    assert listed.returncode == 0 and f"would remove {half}" in listed.stdout and "pass --yes" in listed.stdout
    assert half.is_dir()
    removed = cli("clean", "--runs", tmp_path, "--yes", cwd=tmp_path)
    assert removed.returncode == 0 and f"removed {half}" in removed.stdout, removed.stdout + removed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.building-host-1-ab", "broken", "done", "notes"]


def test_progress_lines_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO

    from rich.console import Console

    out, clock = StringIO(), iter([100.0, 110.0, 130.0])
    monkeypatch.setattr("competition.console.time.perf_counter", lambda: next(clock))
    progress = Progress(console=Console(file=out, width=200))
    progress.start_folds("r", n_pending=2, n_folds=5)
    progress.start_fold(3)  # t = 100
    progress.epoch(1, 4, 0.5, 1.25)  # t = 110: 10 s an epoch; 3 left here, 4 in the next fold
    progress.epoch(2, 4, 0.4, 1.0)  # t = 130: 15 s an epoch; 2 + 4 left
    lines = out.getvalue().splitlines()
    assert lines[0] == "r: fold 3 (4 of 5)  epoch 1/4  loss 1.250  val macro F1 0.500  best 0.500  ETA 1 min"
    assert lines[1] == "r: fold 3 (4 of 5)  epoch 2/4  loss 1.000  val macro F1 0.400  best 0.500  ETA 2 min"
    assert [duration_text(s) for s in (None, 45, 720, 7500, 200000)] == ["?", "45 s", "12 min", "2 h 05 min", "2 d 8 h"]
    assert [size_text(n) for n in (812, 3400, 12_000_000)] == ["812 B", "3.4 kB", "12 MB"]
