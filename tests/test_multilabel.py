"""Multi-label contests (recipe.data.label_separator): labels read, folds, metrics, per-label thresholds,
submissions as label texts or one probability column per label, and the ChestX-ray14-like demo end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faultkit import cli
from sklearn.metrics import f1_score, roc_auc_score

from competition.data import Layout, index_contest
from competition.data.contest import label_targets, label_texts
from competition.demo import LAYOUTS, make_demo
from competition.errors import CompetitionError
from competition.folds import multilabel_folds, rarest_label
from competition.metrics import METRICS
from competition.submission import validate_submission
from competition.tuning import DecisionTuner, nested_cv_gain

CHEST = ["data.train_csv=train.csv", "data.id_column=Image Index", "data.label_column=Finding Labels",
         "data.group_column=Patient ID", 'data.label_separator="|"']
KNN = ["model.kind=knn", "model.embedding.kind=pca", "model.embedding.components=8",
       "model.params={n_neighbors: 5, weights: distance}", "data.image_size=32", "cv.folds=3"]
LABELS = ["Cardiomegaly", "Effusion", "No Finding", "Nodule"]


def _sets(*keys: str) -> list[str]:
    return [a for key in keys for a in ("--set", key)]


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("chest") / "cx", size=32, scale=0.4, layout="chestxray")


def _label_sample(chest: Path, folder: Path) -> Path:
    """A copy of the demo whose sample asks one column of label texts (placeholder 'No Finding')."""
    import shutil

    shutil.copytree(chest, folder)
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    pd.DataFrame({"Image Index": sample["Image Index"], "Finding Labels": "No Finding"}).to_csv(
        folder / "sample_submission.csv", index=False)
    return folder


def _truth(chest: Path) -> np.ndarray:
    solution = pd.read_csv(chest / ".solution.csv", dtype=str)
    return label_targets(solution["Finding Labels"], LABELS, "|"), solution["Image Index"].to_numpy()


# ---------------------------------------------------------------- reading the labels


def test_labels_are_read_as_sets_in_canonical_form(chest: Path, tmp_path: Path) -> None:
    contest = index_contest(chest, LAYOUTS["chestxray"].contest_layout())
    assert contest.multilabel and contest.classes == LABELS
    y = contest.y()
    assert y.shape == (len(contest.train), 4) and y.dtype == np.uint8
    assert (y.sum(axis=1) >= 1).all() and (y.sum(axis=1) > 1).any()  # several findings on some images
    # written in any order, with spaces and a repeat: one canonical text, class order
    assert list(label_texts(label_targets(["Nodule | Effusion|Nodule"], LABELS, "|"), LABELS, "|")) == ["Effusion|Nodule"]
    frame = pd.read_csv(chest / "train.csv", dtype=str)
    frame.loc[0, "Finding Labels"] = "Nodule|Effusion"
    frame.loc[3, "Finding Labels"] = "Effusion||Nodule"
    frame.to_csv(tmp_path / "train.csv", index=False)
    import shutil

    for name in ("images", "test", "sample_submission.csv"):
        source = chest / ("train" if name == "images" else name)
        target = tmp_path / ("train" if name == "images" else name)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    with pytest.raises(CompetitionError, match=r"train.csv: row 4 \(id .*\) has an empty label in 'Effusion\|\|Nodule'"):
        index_contest(tmp_path, LAYOUTS["chestxray"].contest_layout())


def test_an_undeclared_multilabel_file_is_refused_and_told_the_key(chest: Path) -> None:
    layout = Layout(train_csv="train.csv", id_column="Image Index", label_column="Finding Labels")
    with pytest.raises(CompetitionError, match=r"look multi-label .*recipe.data.label_separator: '\|'"):
        index_contest(chest, layout)


def test_a_sample_column_that_is_no_label_is_one_line(chest: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(chest, tmp_path / "c")
    sample = pd.read_csv(tmp_path / "c" / "sample_submission.csv", dtype=str).rename(columns={"Nodule": "Mass"})
    sample.to_csv(tmp_path / "c" / "sample_submission.csv", index=False)
    with pytest.raises(CompetitionError, match=r"label 'Nodule' \(\d+ images\) is not a column of"):
        index_contest(tmp_path / "c", LAYOUTS["chestxray"].contest_layout())


# ---------------------------------------------------------------- folds, metrics, thresholds


def test_iterative_stratification_spreads_every_label_over_the_folds() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((300, 5)) < [0.4, 0.2, 0.1, 0.05, 0.5]).astype(np.uint8)
    folds = multilabel_folds(y, list("abcde"), 3, seed=1)
    per_fold = np.array([y[folds == k].sum(axis=0) for k in range(3)])
    assert (np.abs(per_fold - y.sum(axis=0) / 3) <= 2).all(), per_fold  # each label within 2 images of a third
    with pytest.raises(CompetitionError, match="recipe.cv.folds: 5 folds need at least 5 images per label; label 'x'"):
        multilabel_folds(np.array([[1, 0]] * 9 + [[0, 1]] * 3, np.uint8), ["w", "x"], 5, seed=0)
    names = rarest_label(np.array([[1, 1], [1, 0], [1, 0], [0, 0]], np.uint8), ["common", "rare"])
    assert list(names) == ["rare", "common", "common", "(none)"]


def test_metrics_of_label_sets_are_scikit_learns() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((200, 4)) < 0.3).astype(np.uint8)
    proba = np.clip(y * 0.4 + rng.random((200, 4)) * 0.6, 0, 1)
    assert METRICS["macro_f1"](y, proba) == pytest.approx(f1_score(y, proba >= 0.5, average="macro"))
    assert METRICS["roc_auc"](y, proba) == pytest.approx(roc_auc_score(y, proba, average="macro"))
    assert METRICS["accuracy"](y, proba) == pytest.approx(np.mean(((proba >= 0.5) == y).all(axis=1)))
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    assert METRICS["log_loss"](y, proba) == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_per_label_thresholds_raise_f1_and_the_nested_gain_is_honest() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random((400, 3)) < [0.3, 0.1, 0.5]).astype(np.uint8)
    proba = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.12, y.shape), 0, 1)  # under-confident: 0.5 misses most
    tuner = DecisionTuner().fit(proba, y)
    assert tuner.predict(proba).shape == y.shape and set(np.unique(tuner.predict(proba))) <= {0, 1}
    assert tuner.in_sample_macro_f1_ > METRICS["macro_f1"](y, proba) + 0.2
    gain = nested_cv_gain(proba, y, np.arange(400) % 4)
    assert 0 < gain["nested_gain"] <= gain["in_sample_gain"] + 1e-9


def test_validate_checks_each_label_of_a_label_text() -> None:
    sample = pd.DataFrame({"id": ["a", "b"], "Finding Labels": ["No Finding", "No Finding"]})
    good = pd.DataFrame({"id": ["b", "a"], "Finding Labels": ["Effusion|Nodule", "No Finding"]})
    assert validate_submission(good, sample, LABELS, separator="|") == []
    bad = good.assign(**{"Finding Labels": ["Effusion|Mass", "No Finding"]})
    assert any("unknown labels" in p and "Effusion|Mass" in p for p in validate_submission(bad, sample, LABELS,
                                                                                            separator="|"))
    columns = pd.DataFrame({"id": ["a"], **{c: ["0"] for c in LABELS}})
    probabilities = pd.DataFrame({"id": ["a"], **{c: ["0.9"] for c in LABELS}})  # need not sum to 1
    assert validate_submission(probabilities, columns, LABELS, separator="|") == []


@pytest.mark.parametrize("key, says", [
    ("data.metric=kappa", "recipe.data.metric: 'kappa' is defined for one class per image"),
    ("balance.method=class_weight", "recipe.balance.method: 'class_weight' balances one class per image"),
    ("model.kind=label_spreading", "recipe.model.kind: 'label_spreading' spreads one class per image"),
])
def test_what_reads_one_class_per_image_is_refused_in_one_line(chest: Path, tmp_path: Path, key: str,
                                                               says: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\n")
    keys = [k for k in KNN if not (key.startswith(("model.kind", "balance")) and k.startswith("model."))]
    result = cli("train", recipe, "--data", chest, "--runs", tmp_path / "runs", *_sets(*CHEST, *keys, key),
                 cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- end to end


def test_label_text_submission_with_tuned_thresholds(chest: Path, tmp_path: Path) -> None:
    """knn on a sample of label texts scored by macro F1 (the mean of each label's F1): thresholds tuned per
    label under nested CV, the submission's texts valid, predict writes the same sets."""
    data = _label_sample(chest, tmp_path / "labels")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: knn\n")
    runs = tmp_path / "runs"
    assert cli("train", recipe, "--data", data, "--runs", runs, *_sets(*CHEST, *KNN), cwd=tmp_path).returncode == 0
    out = tmp_path / "sub.csv"
    result = cli("submit", "knn", "--runs", runs, "--tune", "--out", out, cwd=tmp_path)
    assert result.returncode == 0 and "decision tuning: OOF macro F1" in result.stdout, result.stdout + result.stderr
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns) == ["Image Index", "Finding Labels"]
    assert written["Finding Labels"].str.contains("|", regex=False).any()  # several findings on some images
    assert cli("validate", out, "--run", "knn", "--runs", runs, cwd=tmp_path).returncode == 0
    predicted = tmp_path / "pred.csv"
    assert cli("predict", "knn", "--runs", runs, "--out", predicted, cwd=tmp_path).returncode == 0
    assert (pd.read_csv(predicted, dtype=str).set_index("id")["label"].loc[written["Image Index"]].to_numpy()
            == written["Finding Labels"].to_numpy()).all()
    truth, ids = _truth(chest)
    got = label_targets(written.set_index("Image Index").loc[ids, "Finding Labels"], LABELS, "|")
    assert f1_score(truth, got, average="macro") > 0.5  # the real test's mean per-label F1


@pytest.mark.slow
def test_chestxray_demo_submits_mean_auc_probabilities(chest: Path, tmp_path: Path) -> None:
    """The ChestX-ray14-like demo as `make submit RECIPE=recipes/demo-chestxray.yaml` runs it (on 2 folds, a few
    epochs): a sigmoid network, patients held out, aggregate, submit, validate, the leaderboard's header."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "demo-chestxray.yaml"
    runs = tmp_path / "runs"
    trained = cli("train", recipe, "--data", chest, "--runs", runs, *_sets(
        "data.image_size=32", "cv.folds=2", "train.phases=[{epochs: 3, optimizer: adam, learning_rate: 0.003}]"),
        cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "grouped (column:Patient ID)" in trained.stdout and "val ROC AUC" in trained.stdout
    meta = json.loads((runs / "demo-chestxray" / "run.json").read_text())
    assert meta["layout"]["label_separator"] == "|" and meta["contest_metric"] == "roc_auc"
    run_folds = pd.read_csv(runs / "demo-chestxray" / "folds.csv", dtype=str)
    patients = pd.read_csv(chest / "train.csv", dtype=str).set_index("Image Index").loc[run_folds["id"], "Patient ID"]
    assert (pd.Series(run_folds["fold"].to_numpy()).groupby(patients.to_numpy()).nunique() == 1).all()
    oof = np.load(runs / "demo-chestxray" / "oof.npy")
    assert not np.allclose(oof.sum(axis=1), 1.0)  # sigmoids: each label on its own
    assert cli("aggregate", "demo-chestxray", "--runs", runs, cwd=tmp_path).returncode == 0
    out = tmp_path / "sub.csv"
    submitted = cli("submit", "demo-chestxray", "demo-chestxray-subjects", "--runs", runs, "--tune", "--out", out,
                    cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == ["Image Index", *LABELS]
    assert cli("validate", out, "--run", "demo-chestxray", "--runs", runs, cwd=tmp_path).returncode == 0
    board = cli("leaderboard", "--runs", runs, "--per-class", cwd=tmp_path)
    assert "ROC AUC" in board.stdout and "Nodule" in board.stdout
    truth, ids = _truth(chest)
    assert roc_auc_score(truth, written.set_index("Image Index").loc[ids, LABELS].to_numpy()) > 0.6
    report = cli("report", "demo-chestxray", "--runs", runs, cwd=tmp_path)
    assert report.returncode == 2 and "multi-label" in report.stderr and len(report.stderr.strip().splitlines()) == 1
