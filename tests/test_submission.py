import numpy as np
import pandas as pd
import pytest

from competition.errors import CompetitionError
from competition.runs import Run, save_run
from competition.submission import make_submission, validate_file, validate_submission
from competition.tuning import DecisionTuner

CLASSES = ["cat", "dog", "fox"]


def _label_sample() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c", "d"], "label": ["cat"] * 4})


def _proba_sample() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c"], "cat": ["0.2", "0.3", "0.5"], "dog": ["0.8", "0.7", "0.5"]})


def _one(problems: list[str], *fragments: str) -> str:
    assert len(problems) >= 1, "expected a problem"
    text = " | ".join(problems)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return text


def test_accepts_the_sample_itself():
    assert validate_submission(_label_sample(), _label_sample()) == []
    assert validate_submission(_proba_sample(), _proba_sample()) == []


def test_rejects_missing_and_extra_column():
    sample = _label_sample()
    _one(validate_submission(sample[["id"]], sample), "missing columns ['label']")
    _one(validate_submission(sample.assign(score="1"), sample), "extra columns ['score']")
    _one(validate_submission(sample[["label", "id"]], sample), "columns in order ['label', 'id']")


def test_rows_in_any_order_are_valid_as_on_kaggle_while_ids_are_still_checked():
    sample = _label_sample()
    frame = sample.iloc[[0, 2, 1, 3]].reset_index(drop=True)
    assert validate_submission(frame, sample) == []
    swapped = frame.assign(id=["a", "c", "c", "d"])  # same length, 'b' missing and 'c' twice
    problems = validate_submission(swapped, sample)
    assert any("duplicate ids" in p for p in problems) and any("missing from submission" in p for p in problems)


def test_rejects_missing_id():
    sample = _label_sample()
    _one(validate_submission(sample.drop(index=2).reset_index(drop=True), sample),
         "3 data rows, sample has 4", "missing from submission: sample row 3 ('c')")


def test_rejects_duplicate_id():
    sample = _label_sample()
    frame = sample.copy()
    frame.loc[3, "id"] = "a"
    _one(validate_submission(frame, sample), "duplicate ids at row 4 ('a')", "sample row 4 ('d')")


def test_rejects_unknown_label_only_with_vocabulary():
    sample = _label_sample()
    frame = sample.copy()
    frame.loc[1, "label"] = "wolf"
    _one(validate_submission(frame, sample, CLASSES), "unknown labels in column 'label' at row 2 ('wolf'); known: cat, dog, fox")
    assert validate_submission(frame, sample) == []  # the sample's labels are not a vocabulary


def test_rejects_empty_cell():
    sample = _label_sample()
    frame = sample.copy()
    frame.loc[2, "label"] = ""
    _one(validate_submission(frame, sample, CLASSES), "empty cells in column 'label' at row 3")


def test_rejects_probabilities_not_summing_to_one_or_out_of_range():
    sample = _proba_sample()
    frame = sample.copy()
    frame.loc[1, "dog"] = "0.6"
    _one(validate_submission(frame, sample), "do not sum to 1", "row 2 ('sum 0.9')")
    frame.loc[0, "cat"] = "-0.2"
    frame.loc[2, "dog"] = "half"
    _one(validate_submission(frame, sample), "'cat': outside [0, 1] at row 1", "'dog': not a number at row 3 ('half')")


def test_row_lists_are_truncated():
    sample = pd.DataFrame({"id": [str(i) for i in range(20)], "label": ["x"] * 20})
    frame = sample.assign(label="")
    _one(validate_submission(frame, sample), "rows 1, 2, 3, 4, 5 and 15 more")


def test_validate_file_reads_strings_and_reports_bad_paths(tmp_path):
    sample_path = tmp_path / "sample.csv"
    sample_path.write_text("id,label\n001,cat\n002,cat\n")
    sub = tmp_path / "sub.csv"
    sub.write_text("id,label\n001,dog\n002,\n")
    _one(validate_file(sub, sample_path, CLASSES), "empty cells in column 'label' at row 2")
    sub.write_text("id,label\n001,dog\n002,fox\n")
    assert validate_file(sub, sample_path, CLASSES) == []  # '001' kept as text
    with pytest.raises(CompetitionError, match="missing.csv: file not found"):
        validate_file(tmp_path / "missing.csv", sample_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CompetitionError, match="empty.csv: cannot read as CSV") as err:
        validate_file(empty, sample_path)
    assert "\n" not in str(err.value)


def _run(tmp_path, test: np.ndarray, test_ids: list[str]) -> Run:
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    oof = rng.dirichlet(np.ones(3), 30)
    path = save_run(
        tmp_path / "r1", name="r1", kind="model", classes=CLASSES, ids=np.array([f"t{i}" for i in range(30)]),
        y=y, folds=np.arange(30) % 5, oof=oof, test=test, test_ids=np.array(test_ids), recipe_hash="abc123",
    )
    return Run.load(path)


TEST = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.45, 0.05]])


def test_make_submission_label_format_follows_sample_order_and_logs(tmp_path):
    run = _run(tmp_path, TEST, ["w", "x", "y", "z"])
    sample = tmp_path / "sample.csv"
    sample.write_text("image,species\nz,cat\nx,cat\nw,cat\ny,cat\n")
    log = tmp_path / "submissions.csv"
    out = make_submission(run, sample, tmp_path / "sub.csv", log_path=log)
    frame = pd.read_csv(out, dtype=str)
    assert list(frame.columns) == ["image", "species"]
    assert frame["image"].tolist() == ["z", "x", "w", "y"]
    assert frame["species"].tolist() == ["cat", "dog", "cat", "fox"]
    make_submission(run, sample, tmp_path / "sub2.csv", log_path=log)
    entries = pd.read_csv(log, dtype=str)
    assert list(entries.columns) == ["time", "file", "run", "recipe_hash", "oof_macro_f1", "tuned", "honest_macro_f1",
                                     "message", "metric", "expected"]
    assert len(entries) == 2 and entries["recipe_hash"].tolist() == ["abc123"] * 2
    assert entries["file"].tolist() == ["sub.csv", "sub2.csv"] and entries["tuned"].tolist() == ["no", "no"]
    assert entries["honest_macro_f1"].tolist() == entries["oof_macro_f1"].tolist()


def test_make_submission_applies_tuner_offsets(tmp_path):
    run = _run(tmp_path, TEST, ["w", "x", "y", "z"])
    sample = tmp_path / "sample.csv"
    sample.write_text("id,label\nw,cat\nx,cat\ny,cat\nz,cat\n")
    tuner = DecisionTuner()
    tuner.offsets_ = np.array([0.0, 0.5, 0.0])  # lifts 'dog' past 'cat' on row z (0.45 * e^0.5 > 0.5)
    out = make_submission(run, sample, tmp_path / "sub.csv", tuner=tuner)
    assert pd.read_csv(out, dtype=str)["label"].tolist() == ["cat", "dog", "dog", "dog"]


def test_make_submission_probability_format(tmp_path):
    run = _run(tmp_path, TEST, ["w", "x", "y", "z"])
    sample = tmp_path / "sample.csv"
    sample.write_text("id,fox,cat,dog\nx,0,0,1\nw,0,0,1\nz,0,0,1\ny,0,0,1\n")
    out = make_submission(run, sample, tmp_path / "sub.csv")
    frame = pd.read_csv(out)
    assert frame["id"].tolist() == ["x", "w", "z", "y"]
    np.testing.assert_allclose(frame[["cat", "dog", "fox"]].to_numpy(), TEST[[1, 0, 3, 2]], atol=1e-6)


def test_make_submission_refuses_missing_id_and_invalid_output(tmp_path):
    sample = tmp_path / "sample.csv"
    sample.write_text("id,label\nw,cat\nq,cat\n")
    run = _run(tmp_path, TEST, ["w", "x", "y", "z"])
    with pytest.raises(CompetitionError, match="sample id 'q' not in run 'r1' test ids"):
        make_submission(run, sample, tmp_path / "sub.csv")
    bad = TEST.copy()
    bad[0] = [0.5, 0.1, 0.1]  # sums to 0.7
    run = _run(tmp_path, bad, ["w", "x", "y", "z"])
    sample.write_text("id,cat,dog,fox\nw,1,0,0\nx,1,0,0\n")
    with pytest.raises(CompetitionError, match=r"refused: probabilities do not sum to 1 .* row 1") as err:
        make_submission(run, sample, tmp_path / "sub.csv")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "sub.csv").exists()


def _run_with_oof(tmp_path, oof, y, name="r"):
    rng = np.random.default_rng(1)
    n = len(y)
    test = rng.dirichlet(np.ones(3), 4).astype(np.float32)
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,label\n" + "".join(f"{i},cat\n" for i in "abcd"))
    return save_run(tmp_path / "runs" / name, name=name, kind="model", classes=CLASSES, ids=np.array([f"i{k}" for k in range(n)]),
                    y=y, folds=np.arange(n) % 5, oof=oof, test=test, test_ids=np.array(list("abcd")),
                    extra={"sample_submission": str(sample)})


def test_tuned_decisions_are_saved_only_when_their_nested_gain_is_positive(tmp_path):
    from competition.runs.decisions import read_decisions
    from competition.submission import submit_run

    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    truth = np.eye(3)[y] * 2.0 + rng.uniform(0, 1.5, (600, 3))
    biased = truth * np.array([1.0, 0.55, 1.0])  # 'dog' systematically under-scored: an offset fixes it
    biased = (biased / biased.sum(axis=1, keepdims=True)).astype(np.float32)
    run_dir = _run_with_oof(tmp_path, biased, y, "biased")
    _, tuning = submit_run("biased", tmp_path / "runs", tune=True, submissions_dir=tmp_path / "subs")
    assert tuning["applied"] and tuning["nested_gain"] > 0
    saved = read_decisions(run_dir)
    assert saved is not None and saved["nested_gain"] == pytest.approx(tuning["nested_gain"]) and saved["offsets"][1] > 0

    # a later plain submit uses the saved decisions: same file as the tuned one
    tuned_file = (tmp_path / "subs" / "biased.csv").read_text()
    submit_run("biased", tmp_path / "runs", out=tmp_path / "again.csv", submissions_dir=tmp_path / "subs")
    assert (tmp_path / "again.csv").read_text() == tuned_file

    perfect = np.eye(3, dtype=np.float32)[y] * 0.9 + 0.1 / 3  # already right: nothing to gain
    run_dir = _run_with_oof(tmp_path, perfect, y, "perfect")
    (run_dir / "decisions.json").write_text('{"offsets": [5, 0, 0]}')  # stale decisions from an earlier tune
    _, tuning = submit_run("perfect", tmp_path / "runs", tune=True, submissions_dir=tmp_path / "subs")
    assert not tuning["applied"] and tuning["nested_gain"] <= 0 and read_decisions(run_dir) is None
