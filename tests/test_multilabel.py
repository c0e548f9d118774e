"""Multi-label contests (recipe.data.label_separator, or recipe.data.label_columns: one 0/1 column per label):
labels read, folds, metrics, per-label thresholds, submissions as label texts or one probability column per
label, the audit and the report per label, and the ChestX-ray14- and CheXpert-like demos end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("chexpert") / "cxp", size=32, scale=0.4, layout="chexpert")


CHEXPERT = ["data.train_csv=train.csv", "data.id_column=image_id", "data.group_column=patient_id",
            "data.label_columns=[Cardiomegaly, Effusion, Nodule]", "data.metric=roc_auc"]
FINDINGS = ["Cardiomegaly", "Effusion", "Nodule"]


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


def test_label_columns_are_read_as_label_sets(chexpert: Path) -> None:
    """One 0/1 column per label: the same label sets as the columns say, a row of zeros an image without a
    label, the run files' texts joined by '|' (the layout's separator unless declared)."""
    layout = LAYOUTS["chexpert"].contest_layout()
    assert layout.label_columns == tuple(FINDINGS) and layout.label_separator == "|"
    assert Layout.from_record(json.loads(json.dumps(layout.declared()))) == layout  # as run.json records it
    contest = index_contest(chexpert, layout)
    assert contest.multilabel and contest.classes == FINDINGS
    written = pd.read_csv(chexpert / "train.csv", dtype=str).set_index("image_id").loc[contest.train["id"]]
    assert (contest.y() == written[FINDINGS].astype(int).to_numpy()).all()
    none = contest.y().sum(axis=1) == 0
    assert none.any() and (contest.train["label"][none] == "").all()
    assert "patient_id" in contest.train.columns and not set(FINDINGS) & set(contest.train.columns)


def _with_train_csv(chexpert: Path, folder: Path, edit: Any) -> Path:
    """A copy of the demo whose train.csv is `edit(frame)` (a new frame)."""
    import shutil

    shutil.copytree(chexpert, folder)
    edit(pd.read_csv(folder / "train.csv", dtype=str, keep_default_na=False)).to_csv(folder / "train.csv", index=False)
    return folder


def _cell(row: int, column: str, value: str) -> Any:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[row, column] = value
        return frame
    return edit


@pytest.mark.parametrize("edit, keys, says", [
    (lambda f: f.rename(columns={"Nodule": "nodule"}), [],
     r"train.csv: recipe.data.label_columns\[2\]: no column 'Nodule' \(columns: .*'nodule'.*\) \(a column 'nodule' "
     r"exists: it differs only in upper/lower case\)"),
    (_cell(4, "Effusion", "2"), [],
     r"train.csv: row 5 \(id '.*'\) has '2' in label column 'Effusion' \(recipe.data.label_columns\), expected 0 or 1"),
    (_cell(2, "Cardiomegaly", ""), [], r"train.csv: row 3 \(id '.*'\) has an empty cell in label column 'Cardiomegaly'"),
    (lambda f: f.assign(Nodule="0"), [],
     r"label column 'Nodule' \(recipe.data.label_columns\) holds no 1: a label no training image has"),
    (lambda f: f.assign(Nodule="1"), [],
     r"label 'Nodule' \(recipe.data.label_columns\) is on every training image: it cannot be learnt or scored"),
    (None, ["data.label_columns=[Nodule]"], r"recipe.data.label_columns: \['Nodule'\] lists 1 column; .* declare it "
     "with data.label_column"),
    (None, ["data.label_column=Nodule"], "recipe.data.label_column: 'Nodule' names one label column, and "
     "recipe.data.label_columns one 0/1 column per label; declare one of them"),
    (None, ["data.label_columns=[Effusion, Nodule, Effusion]"], "recipe.data.label_columns: 'Effusion' is listed twice"),
    (None, ["data.label_columns=[image_id, Nodule]"], r"recipe.data.label_columns\[0\]: 'image_id' is also the id column"),
])
def test_bad_label_columns_are_one_line_naming_the_file_or_key(chexpert: Path, tmp_path: Path, edit: Any,
                                                                keys: list[str], says: str) -> None:
    import re

    data = _with_train_csv(chexpert, tmp_path / "c", edit) if edit is not None else chexpert
    given = (data / "train.csv").read_bytes()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\n")
    result = cli("train", recipe, "--data", data, "--runs", tmp_path / "runs", *_sets(*CHEXPERT, *KNN, *keys),
                 cwd=tmp_path)
    assert result.returncode == 2 and len(result.error_lines) == 1, result.stderr
    assert re.search(says, result.stderr), result.stderr
    assert not (tmp_path / "runs").exists() and (data / "train.csv").read_bytes() == given


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
    assert result.returncode == 0 and "decision tuning (per-label thresholds): OOF macro F1" in result.stdout, result.stdout + result.stderr
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
    assert report.returncode == 0, report.stderr
    page = (runs / "demo-chestxray" / "report" / "index.html").read_text()
    assert "Confusion per label (OOF)" in page and "Per label (decision at the 0.5 threshold)" in page
    assert "each map is for the label most confidently wrong" in page  # Grad-CAM of a multi-label network
    for figure in ("confusion.png", "per_class.png", "wrong.png", "wrong_gradcam.png"):
        assert (runs / "demo-chestxray" / "report" / figure).stat().st_size > 1000


def test_chexpert_demo_trains_submits_and_predicts_rows_without_a_label(chexpert: Path, tmp_path: Path) -> None:
    """The CheXpert-like demo (one 0/1 column per finding) as a user runs it with knn: patients held out, a
    probability per finding in the sample's columns, validate, predict's label sets (a row of zeros allowed),
    and a real-test mean AUC well above chance."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: knn\n")
    runs = tmp_path / "runs"
    trained = cli("train", recipe, "--data", chexpert, "--runs", runs, *_sets(*CHEXPERT, *KNN), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "grouped (column:patient_id)" in trained.stdout and "(no label)" in trained.stdout
    meta = json.loads((runs / "knn" / "run.json").read_text())
    assert meta["layout"]["label_columns"] == FINDINGS and meta["classes"] == FINDINGS
    run_folds = pd.read_csv(runs / "knn" / "folds.csv", dtype=str, keep_default_na=False)
    assert (run_folds["label"] == "").any()  # images without a finding, kept as such
    out = tmp_path / "sub.csv"
    assert cli("submit", "knn", "--runs", runs, "--out", out, cwd=tmp_path).returncode == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["image_id", *FINDINGS]
    assert cli("validate", out, "--run", "knn", "--runs", runs, cwd=tmp_path).returncode == 0
    sample = chexpert / "sample_submission.csv"  # without the run, validate is told the contest is multi-label
    alone = cli("validate", out, "--sample", sample, cwd=tmp_path)
    assert alone.returncode == 1 and "give --run RUN, or --label-separator '|'" in alone.stderr, alone.stderr
    assert cli("validate", out, "--sample", sample, "--label-separator", "|", cwd=tmp_path).returncode == 0
    solution = pd.read_csv(chexpert / ".solution.csv").set_index("image_id")
    got = written.set_index("image_id").loc[solution.index, FINDINGS].to_numpy()
    assert roc_auc_score(solution[FINDINGS].to_numpy(), got) > 0.65
    predicted = tmp_path / "pred.csv"
    assert cli("predict", "knn", "--runs", runs, "--out", predicted, cwd=tmp_path).returncode == 0
    labels = pd.read_csv(predicted, dtype=str, keep_default_na=False)["label"]
    assert (labels == "").any() and labels.str.contains("|", regex=False).any()


def test_label_columns_with_a_label_text_sample_submit_images_without_a_label(chexpert: Path, tmp_path: Path) -> None:
    """A contest of 0/1 label columns whose sample asks for label texts: an image without a finding is an empty
    label (no label is forced on it), and submit and validate take it as such; a metric of probabilities is
    refused naming the metrics of labels a multi-label contest has."""
    import shutil

    data = tmp_path / "c"
    shutil.copytree(chexpert, data)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    pd.DataFrame({"image_id": sample["image_id"], "Labels": "Nodule"}).to_csv(data / "sample_submission.csv", index=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: knn\n")
    runs = tmp_path / "runs"
    refused = cli("train", recipe, "--data", data, "--runs", runs, *_sets(*CHEXPERT, *KNN), cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.error_lines) == 1, refused.stderr
    assert "choose a metric of labels (macro_f1, accuracy)" in refused.stderr and not runs.exists()
    trained = cli("train", recipe, "--data", data, "--runs", runs, *_sets(*CHEXPERT, *KNN, "data.metric=macro_f1"),
                  cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "sub.csv"
    submitted = cli("submit", "knn", "--runs", runs, "--no-tune", "--out", out, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    written = pd.read_csv(out, dtype=str, keep_default_na=False)["Labels"]
    assert (written == "").any() and (written != "").any()
    assert cli("validate", out, "--run", "knn", "--runs", runs, cwd=tmp_path).returncode == 0


def test_the_audit_counts_labels_and_makes_the_folds_training_makes(chexpert: Path, tmp_path: Path) -> None:
    """A multi-label audit: a row per label (images carrying it) and the images without one, and the fold
    scheme made as training makes it (iterative stratification, not label combinations, some of which are
    rarer than the folds)."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "demo-chexpert.yaml"
    audit = cli("audit", chexpert, "--recipe", recipe, "--out", tmp_path / "a", cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    assert "Labels (multi-label: images carrying each)" in audit.stdout and "(no label)" in audit.stdout
    result = json.loads((tmp_path / "a" / "audit.json").read_text())
    contest = index_contest(chexpert, LAYOUTS["chexpert"].contest_layout())
    y = contest.y()
    assert [row["class"] for row in result["class_counts"]] == FINDINGS
    assert [row["train"] for row in result["class_counts"]] == y.sum(axis=0).tolist()
    assert result["no_label"] == int((y.sum(axis=1) == 0).sum()) > 0
    assert "error" not in result["leak"]["auto"], result["leak"]["auto"]
    assert result["leak"]["auto"]["name"].startswith("grouped (column:patient_id)")
