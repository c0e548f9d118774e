"""`submit` picks what to submit by its honest score: an ensemble only when it beats its best member under
nested CV; one line says what and why; the log sits beside the file with the tuning flag, the honest score and
the message. `validate` checks labels against the contest's classes by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faultkit import cli

from competition.ensemble import build_ensemble, ensemble_summary
from competition.errors import CompetitionError
from competition.metrics import macro_f1
from competition.runs import Run, save_run
from competition.submission import check_file, choose_run, submit

CLASSES = ["cat", "dog", "fox"]
N = 300


def _sample(tmp_path: Path) -> Path:
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,label\n" + "".join(f"t{k},cat\n" for k in range(6)))
    return sample


def _member(runs: Path, name: str, oof: np.ndarray, y: np.ndarray, sample: Path) -> Run:
    rng = np.random.default_rng(len(name))
    test = rng.dirichlet(np.ones(3), 6)
    return Run.load(save_run(runs / name, name=name, kind="model", classes=CLASSES,
                             ids=np.array([f"i{k}" for k in range(N)]), y=y, folds=np.arange(N) % 5, oof=oof,
                             test=test, test_ids=np.array([f"t{k}" for k in range(6)]), recipe_hash=f"h-{name}",
                             extra={"sample_submission": str(sample)}))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _blend(tmp_path: Path, y: np.ndarray, logits: dict[str, np.ndarray]) -> Path:
    """A runs folder holding one member run per name (its OOF the softmax of its logits) and their mean, 'blend'."""
    sample = _sample(tmp_path)
    runs = tmp_path / "runs"
    members = [_member(runs, name, _softmax(z), y, sample) for name, z in logits.items()]
    build_ensemble(members, "mean", "blend", runs)
    return runs


@pytest.fixture
def worse_ensemble(tmp_path: Path) -> Path:
    """A strong member, a confidently wrong one, and their mean: the ensemble loses to the strong member."""
    rng = np.random.default_rng(0)
    y = np.arange(N) % 3
    return _blend(tmp_path, y, {"strong": rng.normal(0, 1, (N, 3)) + 3.0 * np.eye(3)[y],
                                "noisy": 4.0 * rng.normal(0, 1, (N, 3))})


@pytest.fixture
def better_ensemble(tmp_path: Path) -> Path:
    """Two members of equal skill with independent errors: their mean beats both."""
    rng = np.random.default_rng(1)
    y = np.arange(N) % 3
    return _blend(tmp_path, y, {name: rng.normal(0, 1.6, (N, 3)) + 1.5 * np.eye(3)[y] for name in ("left", "right")})


def test_an_ensemble_worse_than_its_member_is_not_submitted(worse_ensemble: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    summary = ensemble_summary(Run.load(worse_ensemble / "blend"))
    assert summary is not None and summary["vs_best_member"] < 0 and summary["best_member"] == "strong"

    done = submit(["strong", "noisy", "blend"], worse_ensemble, out=tmp_path / "out" / "sub.csv", message="try 1")
    assert done.choice.name == "strong"
    line = done.lines()[0]
    assert line.startswith("submitting strong: the best honest OOF macro F1 of 3 candidates")
    assert "ensemble blend scores" in line and "so not the ensemble" in line
    assert choose_run(None, worse_ensemble).name == "strong"  # every run when none is named

    log = pd.read_csv(tmp_path / "out" / "log.csv", dtype=str, keep_default_na=False)  # beside the file
    assert log.to_dict("records")[0] | {"time": ""} == {
        "time": "", "file": "sub.csv", "run": "strong", "recipe_hash": "h-strong",
        "oof_macro_f1": f"{done.choice.score:.6f}", "tuned": "no", "honest_macro_f1": f"{done.choice.score:.6f}",
        "message": "try 1", "metric": "macro_f1", "expected": f"{done.choice.score:.6f}"}
    assert not (tmp_path / "submissions").exists()  # nothing in the working folder's submissions/


def test_an_ensemble_that_beats_its_members_is_submitted(better_ensemble: Path, tmp_path: Path) -> None:
    blend = Run.load(better_ensemble / "blend")
    summary = ensemble_summary(blend)
    assert summary is not None and summary["vs_best_member"] > 0
    choice = choose_run(["left", "right", "blend"], better_ensemble)
    assert choice.name == "blend" and choice.score == pytest.approx(macro_f1(blend.y, blend.oof))
    assert f"beats its best member {summary['best_member']}" in choice.reason


def test_a_named_ensemble_is_kept_but_the_line_says_its_member_is_better(worse_ensemble: Path) -> None:
    choice = choose_run(["blend"], worse_ensemble)
    assert choice.name == "blend" and choice.reason.startswith("blend as named")
    assert "its best member strong scores" in choice.reason


def test_tuning_is_logged_with_its_nested_score(worse_ensemble: Path, tmp_path: Path) -> None:
    done = submit(["strong"], worse_ensemble, out=tmp_path / "subs" / "a.csv", tune=True)
    assert done.tuning is not None
    log = pd.read_csv(tmp_path / "subs" / "log.csv", dtype=str, keep_default_na=False)
    entry = log.to_dict("records")[-1]
    assert entry["tuned"] == ("yes" if done.tuning["applied"] else "no")
    expected = done.tuning["nested_score"] if done.tuning["applied"] else done.tuning["base_score"]
    assert float(entry["honest_macro_f1"]) == pytest.approx(expected, abs=1e-6)
    assert any(line.startswith("decision tuning (per-class offsets): OOF macro F1") for line in done.lines())


def test_validate_checks_labels_against_the_contests_classes(tiny_contest: Path, tmp_path: Path) -> None:
    sample = tiny_contest / "sample_submission.csv"
    rows = sample.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([rows[0], rows[1].rsplit(",", 1)[0] + ",Foo", *rows[2:]]) + "\n")
    problems, checked, _ = check_file(bad, sample)
    assert len(problems) == 1 and "unknown labels in column 'label' at row 1 ('Foo')" in problems[0]
    assert checked.startswith(f"labels checked against the training classes of {tiny_contest}")
    assert check_file(sample, sample)[0] == []

    loose = tmp_path / "elsewhere.csv"  # a sample outside any contest folder: labels cannot be checked
    loose.write_text(sample.read_text())
    problems, checked, _ = check_file(bad, loose)
    assert problems == [] and checked.startswith("labels not checked (no class list")
    with pytest.raises(CompetitionError, match="run 'ghost'"):
        check_file(bad, loose, run="ghost", runs_dir=tmp_path)

    result = cli("validate", bad, "--sample", sample, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "'Foo'" in lines[0] and "known: " in lines[0], result.stderr
