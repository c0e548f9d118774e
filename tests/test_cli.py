"""The command line as a user runs it: train → leaderboard → submit, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from faultkit import Result, cli


def competition(*args: str, cwd: Path) -> Result:
    """The command in this process (tests/faultkit.cli; COMPETITION_TEST_SUBPROCESS=1 runs each in its own)."""
    return cli(*args, cwd=cwd)


@pytest.mark.slow
def test_train_leaderboard_submit(tiny_contest: Path, tiny_recipe: Path, tmp_path: Path) -> None:
    trained = competition("train", str(tiny_recipe), "--data", str(tiny_contest), "--set", "train.phases.0.epochs=1",
                          cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "runs" / "tiny" / "run.json").is_file()
    last = trained.stdout.strip().splitlines()[-1]  # one line with the score and rank, not the whole leaderboard
    assert last.startswith("tiny: OOF macro F1 ") and "rank 1 of 1 in runs" in last, trained.stdout[-2000:]
    assert "Leaderboard" not in trained.stdout and "(OOF)" not in trained.stdout

    board = competition("leaderboard", "--format", "json", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    assert rows[0]["run"] == "tiny" and 0 <= rows[0]["macro_f1"] <= 1
    assert set(rows[0]["per_class"]) == {"MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented"}
    assert set(rows[0]["per_class"]["NonDemented"]) == {"precision", "recall", "f1", "support"}
    for fmt, marker in (("md", "| run |"), ("csv", "run,kind,scheme,metric,score,ci_low,ci_high,fold_std,macro_f1")):
        out = competition("leaderboard", "--format", fmt, cwd=tmp_path)
        assert out.returncode == 0 and marker in out.stdout.replace("| # |", "|"), out.stdout

    submitted = competition("submit", "tiny", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    written = pd.read_csv(tmp_path / "submissions" / "tiny.csv", dtype=str)
    sample = pd.read_csv(tiny_contest / "sample_submission.csv", dtype=str)
    assert list(written.columns) == list(sample.columns)
    assert written["id"].tolist() == sample["id"].tolist()
    assert set(written["label"]) <= set(rows[0]["per_class"])
    assert (tmp_path / "submissions" / "log.csv").read_text().count("tiny") == 2  # file name and run

    # A second recipe on the same folds, a Caruana ensemble of both, a tuned and validated submission.
    second = competition("train", str(tiny_recipe), "--data", str(tiny_contest), "--name", "tiny-wide",
                         "--set", "train.phases.0.epochs=1", "--set", "model.filters=[16]", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    ensembled = competition("ensemble", "tiny", "tiny-wide", "--method", "caruana", "--name", "blend", cwd=tmp_path)
    assert ensembled.returncode == 0, ensembled.stderr
    rows = json.loads(competition("leaderboard", "--format", "json", cwd=tmp_path).stdout)
    by_name = {row["run"]: row for row in rows}
    assert set(by_name) == {"tiny", "tiny-wide", "blend"}
    assert by_name["blend"]["kind"] == "ensemble" and "vs_best_member" in by_name["blend"]
    assert [r["macro_f1"] for r in rows] == sorted((r["macro_f1"] for r in rows), reverse=True)

    tuned = competition("submit", "blend", "--tune", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    assert "under nested CV" in tuned.stdout
    assert tuned.stdout.startswith("submitting blend as named"), tuned.stdout
    best = max(rows, key=lambda r: (r["macro_f1"], r["kind"] == "model"))["run"]
    chosen = competition("submit", "--out", "picked/best.csv", "-m", "all runs", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.startswith(f"submitting {best}: the best honest OOF macro F1 of 3 candidates"), chosen.stdout
    log = pd.read_csv(tmp_path / "picked" / "log.csv", dtype=str)
    assert log[["file", "run", "message"]].values.tolist() == [["best.csv", best, "all runs"]]
    checked = competition("validate", "submissions/blend.csv", "--sample", str(tiny_contest / "sample_submission.csv"),
                          cwd=tmp_path)
    assert checked.returncode == 0 and "valid against" in checked.stdout, checked.stderr

    reported = competition("report", "tiny", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "runs" / "tiny" / "report" / "index.html").read_text()
    assert all(name in page for name in ("curves.png", "confusion.png", "per_class.png"))


def test_validate_lists_problems_with_rows(tiny_contest: Path, tmp_path: Path) -> None:
    sample = tiny_contest / "sample_submission.csv"
    rows = sample.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([rows[0], rows[2], rows[1], *rows[3:-1], rows[3]]) + "\n")  # swapped, one lost, one twice
    result = competition("validate", str(bad), "--sample", str(sample), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "duplicate" in result.stderr and "row" in result.stderr


def _empty_class(contest: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(contest, copy)
    for image in (copy / "train" / "MildDemented").iterdir():
        image.unlink()
    return copy


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        ("unknown key", ["--set", "train.epochs=3"], "recipe.train.epochs: unknown key"),
        ("bad value", ["--set", "train.batch_size=many"], "recipe.train.batch_size: expected an integer, got 'many'"),
        ("bad augment", ["--set", "augment=[{Rotate: {limit: ten}}]"], "recipe.augment[0].limit: expected a number, got 'ten'"),
        ("missing data", ["--data", "{tmp}/nowhere"], "nowhere: contest folder not found"),
        ("empty class", ["--data", "{broken}"], "MildDemented: class folder holds no images"),
        ("bad executor", ["--executor", "dask"], "--executor: unknown executor 'dask'; known: local, process, ray"),
        ("address without ray", ["--address", "auto"], "--address: a Ray cluster address needs the ray executor"),
        ("group_by typo", ["--set", "cv.group_by=near_duplicate"], "recipe.cv.group_by: 'near_duplicate' is not one of"),
    ],
)
def test_bad_input_is_one_line_without_traceback(case: str, args: list[str], expected: str, tiny_contest: Path,
                                                 tiny_recipe: Path, tmp_path: Path) -> None:
    broken = _empty_class(tiny_contest, tmp_path) if case == "empty class" else tmp_path
    args = [a.replace("{tmp}", str(tmp_path)).replace("{broken}", str(broken)) for a in args]
    if "--data" not in args:
        args += ["--data", str(tiny_contest)]
    result = competition("train", str(tiny_recipe), *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()


def test_submit_unknown_run(tmp_path: Path) -> None:
    result = competition("submit", "ghost", cwd=tmp_path)
    assert result.returncode == 2 and "run 'ghost'" in result.stderr and "Traceback" not in result.stderr
