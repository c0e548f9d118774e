"""The README's notebook example, run on a tiny demo: the public Python API from recipe to submission."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

import competition

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python (a notebook)"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.slow
def test_the_readme_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    competition.make_demo(tmp_path / "demo-data", seed=3, size=32, scale=0.15)
    (tmp_path / "recipes").mkdir()
    demo = (README.parent / "recipes" / "demo.yaml").read_text(encoding="utf-8")
    (tmp_path / "recipes" / "demo.yaml").write_text(demo)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    code = _readme_example().replace('["cv.folds=3", "train.phases.0.epochs=2"]',
                                     '["cv.folds=3", "train.phases.0.epochs=2", "data.image_size=32"]')
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example itself

    board = namespace["board"]
    assert isinstance(board, pd.DataFrame) and board.loc[0, "run"] == "nb"
    assert 0 <= board.loc[0, "macro_f1"] <= 1 and board.loc[0, "ci_low"] <= board.loc[0, "ci_high"]
    run = namespace["run"]
    assert run.oof.shape == (len(run.y), len(run.classes))
    done = namespace["done"]
    assert done.choice.name == "nb" and done.log.is_file()
    predicted = namespace["predicted"]
    assert predicted.ids == ["0", "1", "2", "3"] and set(predicted.labels) <= set(run.classes)
    assert predicted.proba.shape == (4, len(run.classes))
    submission = pd.read_csv(done.path, dtype=str, keep_default_na=False)
    sample = pd.read_csv(tmp_path / "demo-data" / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == list(sample.columns) and submission["id"].tolist() == sample["id"].tolist()
    assert os.path.isfile(tmp_path / "runs" / "nb" / "run.json")


def test_dir_lists_the_api_and_an_array_of_the_wrong_kind_is_one_line() -> None:
    import numpy as np

    names = dir(competition)
    assert {"train", "submit", "predict", "explain", "export_run", "ensemble_runs", "aggregate", "run_audit",
            "check_recipes", "validate", "leaderboard", "Run"} <= set(names)
    with pytest.raises(competition.OptionError, match=r"^inputs: expected uint8 pixels .* got float32"):
        competition.predict("nb", np.zeros((2, 8, 8), np.float32), "no-runs")
    with pytest.raises(competition.OptionError, match=r"^inputs: an array of images is .* got shape \(8, 8\)"):
        competition.predict("nb", np.zeros((8, 8), np.uint8), "no-runs")


@pytest.mark.slow
def test_public_names_resolve_without_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys, competition\n"
            "names = [competition.load_recipe, competition.Recipe, competition.Run, competition.leaderboard,\n"
            "         competition.submit, competition.CompetitionError]\n"
            "print('TF' if 'tensorflow' in sys.modules else 'noTF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "noTF", out.stderr
