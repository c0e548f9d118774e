"""Every command given bad input ends with one line, a non-zero exit and no traceback; and a run killed inside a
fold or at random moments finishes, on rerun, exactly as an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from competition.cli import main
from competition.runs import Run

RECIPE_COMMANDS = {  # command -> arguments after the recipe
    "train": ["--data", "{contest}", "--runs", "{tmp}/runs"],
    "doctor": ["--data", "{contest}"],
    "augment-preview": ["--data", "{contest}", "--out", "{tmp}/p.png"],
}
FAULTS = {  # fault -> (recipe, the one-line error, a word doctor's table shows unwrapped)
    "missing path": ("{tmp}/missing.yaml", "missing.yaml: recipe file not found", "found"),
    "wrong key": ("train: {{batch_sise: 8}}", "recipe.train.batch_sise: unknown key (did you mean 'batch_size'?)",
                  "batch_sise"),
    "bad value": ("cv: {{folds: many}}", "recipe.cv.folds: expected an integer, got 'many'", "'many'"),
}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    captured = capsys.readouterr()
    code = ended.value.code if isinstance(ended.value.code, int) else 1
    return code, captured.err + captured.out


def one_line_error(code: int, output: str, expected: str) -> None:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in output
    assert len(lines) == 1 and expected in lines[0], output


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("command", sorted(RECIPE_COMMANDS))
def test_recipe_commands(command: str, fault: str, tiny_contest: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    text, expected, word = FAULTS[fault]
    recipe = text.format(tmp=tmp_path)
    if fault != "missing path":
        (tmp_path / "r.yaml").write_text(text.format())
        recipe = str(tmp_path / "r.yaml")
    args = [a.format(contest=tiny_contest, tmp=tmp_path) for a in RECIPE_COMMANDS[command]]
    code, output = run([command, recipe, *args], capsys)
    if command == "doctor":  # doctor lists every problem in its table (cells wrap) and exits 1
        assert code == 1 and "FAIL" in output and word in output and "Traceback" not in output
    else:
        one_line_error(code, output, expected)
    assert not (tmp_path / "runs").exists()


def _run_and_sample(tmp_path: Path, contest: Path) -> tuple[Path, Path]:
    """A finished run folder made without training, and a copy of the contest's sample."""
    from competition.runs import save_run

    sample = contest / "sample_submission.csv"
    ids = [line.split(",")[0] for line in sample.read_text().splitlines()[1:]]
    rng = np.random.default_rng(0)
    save_run(tmp_path / "runs" / "r", name="r", kind="model", classes=["a", "b"], ids=np.array(["x", "y", "z", "w"]),
             y=np.array([0, 1, 0, 1]), folds=np.array([0, 0, 1, 1]), oof=rng.dirichlet([1, 1], 4),
             test=rng.dirichlet([1, 1], len(ids)), test_ids=np.array(ids), extra={"sample_submission": str(sample)})
    return tmp_path / "runs", sample


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo", "{tmp}/runs/r"], "already exists and is not empty"),
        (["demo", "{tmp}/d", "--size", "8"], "demo size must be at least 32 pixels, got 8"),
        (["audit", "{tmp}/nowhere"], "nowhere: contest folder not found"),
        (["leaderboard", "--runs", "{tmp}/nowhere"], "nowhere: runs folder not found"),
        (["leaderboard", "--runs", "{runs}", "--format", "xml"], "--format: expected one of table, md, csv, json, got 'xml'"),
        (["submit", "ghost", "--runs", "{runs}"], "run 'ghost'"),
        (["submit", "r", "--runs", "{runs}", "--sample", "{tmp}/nowhere.csv"], "nowhere.csv"),
        (["submit", "r", "--runs", "{runs}", "--sample", "{tmp}/malformed.csv"], "malformed.csv"),
        (["ensemble", "r", "ghost", "--name", "e", "--runs", "{runs}"], "run 'ghost'"),
        (["ensemble", "r", "r", "--name", "../e", "--runs", "{runs}"], "'../e'"),
        (["ensemble", "r", "r", "--name", "e", "--method", "vote", "--runs", "{runs}"], "vote"),
        (["validate", "{tmp}/nowhere.csv", "--sample", "{sample}"], "nowhere.csv"),
        (["validate", "{sample}", "--sample", "{tmp}/malformed.csv"], "malformed.csv"),
        (["report", "ghost", "--runs", "{runs}"], "run 'ghost'"),
        (["train", "{tmp}/r.yaml", "--data", "{tmp}/nowhere"], "nowhere: contest folder not found"),
        (["train", "{tmp}/r.yaml", "--data", "{contest}", "--set", "cv.folds"], "expected KEY=VALUE"),
    ],
)
def test_other_commands(argv: list[str], expected: str, tiny_contest: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    runs, sample = _run_and_sample(tmp_path, tiny_contest)
    (tmp_path / "malformed.csv").write_bytes(b"\xff\xfe\x00garbage,\n\"unclosed")
    (tmp_path / "r.yaml").write_text("name: r2\n")
    args = [a.format(tmp=tmp_path, runs=runs, sample=sample, contest=tiny_contest) for a in argv]
    code, output = run(args, capsys)
    one_line_error(code, output, expected)


@pytest.mark.slow
def test_a_killed_train_reruns_to_exactly_the_uninterrupted_run(tiny_contest: Path, tmp_path: Path) -> None:
    """SIGKILL of `competition train` (the driver; its fold processes die with it): first inside the last fold,
    where the rerun reuses the finished one; then at random moments (start-up, decoding, training, saving).
    Every rerun ends bit for bit as an uninterrupted run."""
    recipe = tmp_path / "k.yaml"
    recipe.write_text("name: k\ndata: {image_size: 32}\nmodel: {filters: [8, 16], head: {dense: [16]}}\n"
                      "train: {phases: [{epochs: 3}]}\ncv: {folds: 2}\n")
    command = [sys.executable, "-m", "competition.cli", "train", str(recipe), "--data", str(tiny_contest),
               "--deterministic"]
    started = time.monotonic()
    reference = subprocess.run([*command, "--runs", str(tmp_path / "ref")], capture_output=True, text=True)
    duration = time.monotonic() - started
    assert reference.returncode == 0, reference.stderr
    expected = Run.load(tmp_path / "ref" / "k")

    def finish(runs: Path) -> str:
        rerun = subprocess.run([*command, "--runs", str(runs)], capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        np.testing.assert_array_equal(Run.load(runs / "k").oof, expected.oof)
        np.testing.assert_array_equal(Run.load(runs / "k").test, expected.test)
        return rerun.stdout

    runs = tmp_path / "in-the-last-fold"
    victim = subprocess.Popen([*command, "--runs", str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (runs / "k" / "fold_0" / "done.json").is_file():
        assert victim.poll() is None and time.monotonic() < deadline, "training ended before fold 1"
        time.sleep(0.05)
    time.sleep(0.1)  # inside fold 1 (the last)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (runs / "k" / "run.json").exists() and not (runs / "k" / "fold_1" / "done.json").exists()
    assert finish(runs).count("finished earlier, reused") == 1

    rng, kills, sequence = random.Random(7), 0, 0
    while kills < 2:  # kill at random moments; each sequence then finishes
        runs = tmp_path / f"killed{sequence}"
        while kills < 2 and not (runs / "k" / "run.json").is_file():
            victim = subprocess.Popen([*command, "--runs", str(runs)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.1, 0.8) * duration)
            if victim.poll() is None:
                os.kill(victim.pid, signal.SIGKILL)
                kills += 1
            victim.wait()
        finish(runs)
        sequence += 1
