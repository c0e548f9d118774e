"""Any real contest: a layout declared in the recipe (columns, folders, a patient column), the contest's metric
from a registry driving every choice (the kept epoch, Caruana, `submit`, the leaderboard), and the demo contests
shaped like APTOS (kappa) and SIIM-ISIC (patients, probabilities, ROC AUC), end to end on tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faultkit import cli
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, log_loss,
                             roc_auc_score)

from competition.data import Layout, index_contest
from competition.demo import LAYOUTS, make_demo
from competition.errors import CompetitionError
from competition.metrics import METRICS, get_metric
from competition.recipe import load_recipe
from competition.runs import Run, save_run
from competition.submission import choose_run, validate_submission

APTOS = ["data.train_csv=train.csv", "data.id_column=id_code", "data.label_column=diagnosis",
         "data.train_images=train_images", "data.test_images=test_images", "data.metric=kappa"]
ISIC = ["data.train_csv=train.csv", "data.id_column=image_name", "data.label_column=target",
        "data.group_column=patient_id", "data.metric=roc_auc"]
KNN = ["model.kind=knn", "model.embedding.kind=pca", "model.embedding.components=8", "model.params={n_neighbors: 3}",
       "data.image_size=32", "cv.folds=3"]


def _recipe(folder: Path) -> Path:
    """A recipe file of defaults (each test gives its keys with --set)."""
    path = folder / "recipe.yaml"
    path.write_text("name: t\n")
    return path


def _sets(*keys: str) -> list[str]:
    """`--set KEY=VALUE` for each key."""
    return [a for key in keys for a in ("--set", key)]


def _aptos_copy(demos: Path, folder: Path, **cells: dict[int, str]) -> Path:
    """A copy of the APTOS-like demo in `folder`, its train.csv's cells changed ({column: {row: text}})."""
    import shutil

    shutil.copytree(demos / "aptos", folder)
    frame = pd.read_csv(folder / "train.csv", dtype=str)
    for column, rows in cells.items():
        for row, text in rows.items():
            frame.loc[row, column] = text
    frame.to_csv(folder / "train.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layouts")
    for layout in ("aptos", "isic"):
        make_demo(root / layout, size=32, scale=0.25, layout=layout)
    return root


# ---------------------------------------------------------------- a declared layout


def test_demo_layouts_are_the_public_contests_shapes(demos: Path) -> None:
    aptos = index_contest(demos / "aptos", LAYOUTS["aptos"].contest_layout())
    assert aptos.classes == ["0", "1", "2", "3", "4"] and len(aptos.test) > 0
    assert (demos / "aptos" / "train.csv").read_text().startswith("id_code,diagnosis\n")
    assert all(Path(p).parent.name == "train_images" for p in aptos.train["path"])
    isic = index_contest(demos / "isic", LAYOUTS["isic"].contest_layout())
    assert isic.classes == ["0", "1"] and "patient_id" in isic.train.columns
    assert isic.train["patient_id"].nunique() < len(isic.train)  # patients with several images
    assert (demos / "isic" / "sample_submission.csv").read_text().startswith("image_name,target\n")


def test_the_default_layout_is_unchanged_by_the_new_keys() -> None:
    import dataclasses

    from competition.recipe import LAYOUT_KEYS

    recipe = load_recipe(None)
    assert LAYOUT_KEYS == tuple(f.name for f in dataclasses.fields(Layout))  # the recipe declares every field
    assert recipe.data.layout() == Layout() and Layout().declared() == {}
    assert not {"train_csv", "id_column", "metric"} & set(recipe.resolved()["data"])  # old hashes hold


def test_a_declared_group_column_groups_the_folds() -> None:
    recipe = load_recipe(None, ISIC)
    assert recipe.cv.group_by == "column:patient_id"
    assert load_recipe(None, [*ISIC, "cv.group_by=none"]).cv.group_by == "none"  # the recipe says otherwise


@pytest.mark.slow
def test_isic_folds_hold_out_whole_patients(demos: Path, tmp_path: Path) -> None:
    result = cli("train", _recipe(tmp_path), "--data", demos / "isic", "--runs", tmp_path / "runs", "--name", "knn",
                 *_sets(*ISIC, *KNN), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "grouped (column:patient_id)" in result.stdout
    run = Run.load(tmp_path / "runs" / "knn")
    patients = pd.read_csv(demos / "isic" / "train.csv", dtype=str).set_index("image_name").loc[run.ids, "patient_id"]
    assert (pd.Series(run.folds, index=patients.index).groupby(patients.to_numpy()).nunique() == 1).all()
    assert run.record.contest_layout().group_column == "patient_id" and run.record.metric == "roc_auc"


@pytest.mark.slow
def test_audit_with_the_recipe_measures_the_folds_train_makes(demos: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "isic.yaml"
    recipe.write_text("name: t\ndata: {train_csv: train.csv, id_column: image_name, label_column: target, "
                      "group_column: patient_id}\ncv: {folds: 3, seed: 7}\n")
    result = cli("audit", demos / "isic", "--recipe", recipe, "--out", tmp_path / "a", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    auto = json.loads((tmp_path / "a" / "audit.json").read_text())["leak"]["auto"]
    assert (auto["group_by"], auto["folds"], auto["seed"]) == ("column:patient_id", 3, 7)
    assert "patient_id" in result.stdout  # the grouped candidate is named by the subjects training would use
    given = cli("audit", demos / "isic", "--recipe", recipe, "--folds", "2", "--out", tmp_path / "b", cwd=tmp_path)
    assert given.returncode == 0, given.stderr
    assert json.loads((tmp_path / "b" / "audit.json").read_text())["leak"]["auto"]["folds"] == 2  # an option wins


@pytest.mark.parametrize(("keys", "says"), [
    (["data.id_column=image_id"], ["recipe.data.id_column: no column 'image_id'", "'id_code', 'diagnosis'"]),
    (["data.label_column=Diagnosis"], ["recipe.data.label_column", "'diagnosis' exists", "upper/lower case"]),
    (["data.train_images=train_imgs"], ["recipe.data.train_images: train folder not found",
                                        "did you mean 'train_images'?", "'test_images'"]),
])
def test_a_wrong_column_or_folder_is_one_line_with_what_is_there(demos: Path, keys: list[str], says: list[str],
                                                                  tmp_path: Path) -> None:
    overrides = [*[k for k in APTOS if k.split("=")[0] not in {x.split("=")[0] for x in keys}], *keys, *KNN]
    result = cli("train", _recipe(tmp_path), "--data", demos / "aptos", "--runs", tmp_path / "runs",
                 *_sets(*overrides), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(s in result.stderr for s in says), result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_label_column_with_empty_cells_names_the_column_and_rows(demos: Path, tmp_path: Path) -> None:
    contest = _aptos_copy(demos, tmp_path / "aptos", diagnosis={3: "", 7: ""})
    with pytest.raises(CompetitionError, match=r"row 4 has an empty label in column 'diagnosis' \(2 such rows"):
        index_contest(contest, LAYOUTS["aptos"].contest_layout())


def test_train_and_test_images_in_one_folder_are_told_apart_by_the_sample(demos: Path, tmp_path: Path) -> None:
    contest = _aptos_copy(demos, tmp_path / "one-folder")
    for image in (contest / "test_images").iterdir():
        image.rename(contest / "train_images" / image.name)
    layout = Layout(train_csv="train.csv", id_column="id_code", label_column="diagnosis", train_images="train_images",
                    test_images="train_images")
    read = index_contest(contest, layout)
    original = index_contest(demos / "aptos", LAYOUTS["aptos"].contest_layout())
    assert sorted(read.test["id"]) == sorted(original.test["id"]) and len(read.train) == len(original.train)
    frame = pd.read_csv(contest / "train.csv", dtype=str)
    frame.loc[0, "id_code"] = read.test["id"].iloc[0]  # a test image that is also labelled (not a copy's edit:
    frame.to_csv(contest / "train.csv", index=False)  # the id is known only once the folder is read)
    with pytest.raises(CompetitionError, match=r"sample_submission.csv: 1 id also labelled in .*train.csv"):
        index_contest(contest, layout)


def test_columns_declared_without_a_labels_file_are_refused(tiny_contest: Path) -> None:
    with pytest.raises(CompetitionError, match="set recipe.data.train_csv"):
        index_contest(tiny_contest, Layout(id_column="image"))


def test_an_undeclared_csv_contest_says_what_layouts_are_read(demos: Path) -> None:
    with pytest.raises(CompetitionError) as caught:
        index_contest(demos / "aptos")
    assert "did you mean 'train_images'?" in str(caught.value) and "recipe.data.train_csv" in str(caught.value)


# ---------------------------------------------------------------- the metric registry


def test_each_metric_is_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    proba = rng.dirichlet(np.ones(3), 120)
    proba[np.arange(120), y] += 0.6
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    expected = {"macro_f1": f1_score(y, pred, average="macro"), "accuracy": accuracy_score(y, pred),
                "balanced_accuracy": balanced_accuracy_score(y, pred),
                "kappa": cohen_kappa_score(y, pred, weights="quadratic"),
                "roc_auc": roc_auc_score(y, proba, multi_class="ovr"), "log_loss": log_loss(y, proba)}
    assert set(METRICS) == set(expected)
    for name, value in expected.items():
        assert METRICS[name](y, proba) == pytest.approx(value, rel=1e-6), name
    assert METRICS["log_loss"].oriented(1.0) < METRICS["log_loss"].oriented(0.5)  # a loss: lower is better
    binary = (proba[:, 1] > 0.4).astype(int)
    two = np.c_[1 - proba[:, 1], proba[:, 1]]
    assert METRICS["roc_auc"](binary, two) == pytest.approx(roc_auc_score(binary, proba[:, 1]))


def test_roc_auc_of_a_runs_oof_is_the_mean_of_its_folds() -> None:
    """Each fold's model ranks its own rows perfectly, on a scale of its own: pooled, the scales mix (AUC below
    1); fold by fold, as the test (ranked by one model, the folds' mean) is, it is 1."""
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.10, 0.20, 0.15, 0.30, 0.70, 0.90, 0.80, 0.95])  # fold 1's model says "1" more freely
    proba = np.c_[1 - p1, p1]
    auc = METRICS["roc_auc"]
    assert auc(y, proba) < 1 and auc.of_oof(y, proba, folds) == 1.0
    assert METRICS["accuracy"].of_oof(y, proba, folds) == METRICS["accuracy"](y, proba)  # labels: pooled


def test_an_unknown_metric_is_one_line_with_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(CompetitionError, match="recipe.data.metric: unknown metric 'kapa'; did you mean 'kappa'"):
        get_metric("kapa")
    result = cli("train", _recipe(tmp_path), "--set", "data.metric=auc", cwd=tmp_path)
    assert result.returncode == 2 and "recipe.data.metric" in result.stderr and "roc_auc" in result.stderr, result.stderr


def _disagreeing() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grades 0-4, and two predictions on which macro F1 and kappa disagree: `exact` right more often but far off
    when wrong (kappa punishes the distance), `near` right less often but always one grade off."""
    y = np.repeat(np.arange(5), 40)
    exact, near = y.copy(), y.copy()
    wrong = np.arange(len(y)) % 3 == 0
    exact[wrong] = 4 - y[wrong]  # far: 0 <-> 4
    off = np.arange(len(y)) % 2 == 0
    near[off] = np.clip(y[off] + 1, 0, 4)
    near[off & (y == 4)] = 3
    return y, exact, near


def test_kappa_and_macro_f1_disagree_on_the_fixture() -> None:
    y, exact, near = _disagreeing()
    f1, kappa = METRICS["macro_f1"], METRICS["kappa"]
    assert f1(y, exact) > f1(y, near) and kappa(y, near) > kappa(y, exact)


def test_the_kept_epoch_follows_the_contest_metric() -> None:
    from competition.engine.callbacks import FoldState, KeepBest

    class Classifier:
        epoch = 0

        def get_weights(self) -> list[int]:
            return [self.epoch]

    for name, logs, kept in (("macro_f1", [{"val_macro_f1": 0.6, "val_kappa": 0.2},
                                           {"val_macro_f1": 0.5, "val_kappa": 0.7}], 1),
                             ("kappa", [{"val_macro_f1": 0.6, "val_kappa": 0.2},
                                        {"val_macro_f1": 0.5, "val_kappa": 0.7}], 2),
                             ("log_loss", [{"val_macro_f1": 0.6, "val_loss": 0.9},
                                           {"val_macro_f1": 0.5, "val_loss": 0.4}], 2)):
        state, model = FoldState(metric=get_metric(name)), Classifier()
        keep = KeepBest(state, model)
        for epoch, log in enumerate(logs, 1):
            state.epoch = model.epoch = epoch
            keep.on_epoch_end(epoch, log)
        assert state.best_epoch == kept and state.best_weights == [kept], name


def test_caruana_chooses_by_the_contest_metric() -> None:
    from competition.ensemble import make_ensembler

    y, exact, near = _disagreeing()
    P = np.stack([np.eye(5)[exact] * 0.9 + 0.02, np.eye(5)[near] * 0.9 + 0.02])
    by_f1 = make_ensembler("caruana", "macro_f1").fit(P, y)
    by_kappa = make_ensembler("caruana", "kappa").fit(P, y)
    assert by_f1.weights_[0] > by_f1.weights_[1] and by_kappa.weights_[1] > by_kappa.weights_[0]


def _run(runs: Path, name: str, pred: np.ndarray, y: np.ndarray, sample: Path, metric: str) -> Run:
    n = len(y)
    return Run.load(save_run(runs / name, name=name, kind="model", classes=[str(c) for c in range(5)],
                             ids=np.array([f"i{k}" for k in range(n)]), y=y, folds=np.arange(n) % 5,
                             oof=np.eye(5)[pred] * 0.9 + 0.02, test=np.full((4, 5), 0.2),
                             test_ids=np.array([f"t{k}" for k in range(4)]), recipe_hash=f"h-{name}",
                             extra={"sample_submission": str(sample), "contest_metric": metric}))


@pytest.mark.slow
def test_submit_and_the_leaderboard_choose_by_the_contest_metric(tmp_path: Path) -> None:
    from competition.report.leaderboard import leaderboard

    y, exact, near = _disagreeing()
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id_code,diagnosis\n" + "".join(f"t{k},0\n" for k in range(4)))
    for metric, winner in (("macro_f1", "exact"), ("kappa", "near")):
        runs = tmp_path / metric
        for name, pred in (("exact", exact), ("near", near)):
            _run(runs, name, pred, y, sample, metric)
        choice = choose_run(None, runs)
        assert choice.name == winner and choice.metric.name == metric, choice.reason
        rows = leaderboard(runs)
        assert rows[0]["run"] == winner and rows[0]["metric"] == metric
    result = cli("leaderboard", "--runs", tmp_path / "kappa", cwd=tmp_path)
    assert "quadratic weighted" in result.stdout and "QW kappa" in result.stdout, result.stdout
    result = cli("submit", "--runs", tmp_path / "kappa", "--tune", "--out", tmp_path / "subs" / "s.csv", cwd=tmp_path)
    assert result.returncode == 0 and "expected quadratic weighted kappa" in result.stdout, result.stderr
    # under kappa, --tune fits cut points on the expected grade (not macro F1's offsets), applied on a nested gain
    assert "decision tuning (grade thresholds): OOF quadratic weighted kappa" in result.stdout, result.stdout
    from competition.tuning import nested_cv_gain

    gain = nested_cv_gain(np.eye(5)[near] * 0.9 + 0.02, y, np.arange(len(y)) % 5, metric="kappa")
    assert gain["base_score"] == pytest.approx(METRICS["kappa"](y, near))
    log = pd.read_csv(tmp_path / "subs" / "log.csv")
    expected = gain["nested_score"] if gain["nested_gain"] > 0 else gain["base_score"]
    assert log.loc[0, "metric"] == "kappa" and log.loc[0, "expected"] == pytest.approx(expected, abs=1e-6)


def test_runs_of_two_metrics_are_not_mixed(tmp_path: Path) -> None:
    y, exact, near = _disagreeing()
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,label\n" + "".join(f"t{k},0\n" for k in range(4)))
    _run(tmp_path / "runs", "a", exact, y, sample, "macro_f1")
    _run(tmp_path / "runs", "b", near, y, sample, "kappa")
    with pytest.raises(CompetitionError, match="runs scored by two metrics: 'a' by macro_f1 and 'b' by kappa"):
        choose_run(None, tmp_path / "runs")
    result = cli("ensemble", "a", "b", "--name", "ab", "--runs", tmp_path / "runs", cwd=tmp_path)
    assert result.returncode == 2 and "two metrics" in result.stderr and not (tmp_path / "runs" / "ab").exists()


# ---------------------------------------------------------------- end to end, and bad input


@pytest.mark.slow
def test_aptos_and_isic_demos_submit_valid_files(demos: Path, tmp_path: Path) -> None:
    for layout, keys, header in (("aptos", APTOS, "QW kappa"), ("isic", ISIC, "ROC AUC")):
        runs = tmp_path / f"runs-{layout}"
        result = cli("train", _recipe(tmp_path), "--data", demos / layout, "--runs", runs, "--name", layout,
                     *_sets(*keys, *KNN), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        out = tmp_path / "subs" / f"{layout}.csv"
        result = cli("submit", layout, "--runs", runs, "--tune", "--out", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        result = cli("validate", out, "--run", layout, "--runs", runs, cwd=tmp_path)  # the run's contest's sample
        assert result.returncode == 0 and "valid" in result.stdout, result.stdout + result.stderr
        assert str(demos / layout / "sample_submission.csv") in result.stdout
        board = cli("leaderboard", "--runs", runs, cwd=tmp_path)
        assert header in board.stdout, board.stdout
    neither = cli("validate", out, cwd=tmp_path)
    assert neither.returncode == 2 and neither.stderr.strip().count("\n") == 0 and "--sample" in neither.stderr
    # predict reads the run's contest by its layout: the contest folder, or nothing, stands for its test images
    sample_ids = sorted(pd.read_csv(demos / "aptos" / "sample_submission.csv", dtype=str)["id_code"])
    for given in ([demos / "aptos"], []):
        out = tmp_path / f"pred-{len(given)}.csv"
        result = cli("predict", "aptos", *given, "--runs", tmp_path / "runs-aptos", "--out", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert sorted(pd.read_csv(out, dtype=str)["id"]) == sample_ids
        predicted = cli("predict", layout, "--runs", runs, "--out", tmp_path / f"{layout}-predictions.csv",
                        cwd=tmp_path)  # by default the declared test_images folder
        assert predicted.returncode == 0, predicted.stderr
        assert len(pd.read_csv(tmp_path / f"{layout}-predictions.csv")) == len(pd.read_csv(out))
    probabilities = pd.read_csv(tmp_path / "subs" / "isic.csv")
    assert list(probabilities.columns) == ["image_name", "target"]
    assert probabilities["target"].between(0, 1).all() and probabilities["target"].nunique() > 2
    grades = pd.read_csv(tmp_path / "subs" / "aptos.csv", dtype=str)
    assert set(grades["diagnosis"]) <= {"0", "1", "2", "3", "4"}
    meta = json.loads((tmp_path / "runs-aptos" / "aptos" / "run.json").read_text())
    assert meta["contest_metric"] == "kappa" and meta["layout"]["id_column"] == "id_code"


def test_a_probability_metric_with_a_label_sample_is_refused_before_the_run(tmp_path: Path, tiny_contest: Path) -> None:
    result = cli("train", _recipe(tmp_path), "--data", tiny_contest, "--runs", tmp_path / "runs",
                 *_sets("data.metric=roc_auc", *KNN), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "recipe.data.metric: 'roc_auc' scores probabilities" in result.stderr and "asks for labels" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_validate_reads_an_auc_contests_0_sample_as_probabilities() -> None:
    sample = pd.DataFrame({"image_name": ["a", "b"], "target": ["0", "0"]})
    written = pd.DataFrame({"image_name": ["b", "a"], "target": ["0.25", "0.9"]})  # any order, as Kaggle
    assert validate_submission(written, sample, ["0", "1"]) == []
    assert validate_submission(written, sample, ["0", "1"], probabilities=False) != []  # labels asked: refused
    wrong = pd.DataFrame({"image_name": ["a", "b"], "target": ["1.5", "0.2"]})
    assert any("'1.5'" in p for p in validate_submission(wrong, sample, ["0", "1"]))  # neither reading takes it
    assert any("outside [0, 1]" in p for p in validate_submission(wrong, sample, ["0", "1"], probabilities=True))


@pytest.mark.slow
def test_the_helpers_findings(demos: Path, tmp_path: Path) -> None:
    """A new user's trial: a group column that is the id column, grades sorted as text, a 0 placeholder with five
    grades, a rank ensemble under log loss, multi-label strings."""
    from competition.data.contest import class_order, sample_format

    with pytest.raises(CompetitionError, match="recipe.data.group_column: 'id_code' is also the id column"):
        index_contest(demos / "aptos", Layout(train_csv="train.csv", id_column="id_code", label_column="diagnosis",
                                              group_column="id_code", train_images="train_images",
                                              test_images="test_images"))
    assert class_order(["1", "10", "2", "9"]) == ["1", "2", "9", "10"]  # grades in their order (kappa's)
    assert class_order(["b", "a"]) == ["a", "b"]
    zeros = pd.DataFrame({"id": ["a", "b"], "grade": ["0", "0"]})
    assert sample_format(zeros, ["1", "2", "3", "4", "5"]) == "labels"  # a placeholder, not a probability
    assert sample_format(zeros, ["1", "2"]) == "binary"
    contest = _aptos_copy(demos, tmp_path / "multi", diagnosis={0: "Effusion|Mass", 5: "Effusion|Mass"})
    with pytest.raises(CompetitionError, match=r"labels joined by '\|' .*recipe.data.label_separator"):
        index_contest(contest, LAYOUTS["aptos"].contest_layout())
    result = cli("train", _recipe(tmp_path), "--data", demos / "isic", "--runs", tmp_path / "runs",
                 *_sets(*[k for k in ISIC if "metric" not in k], "data.metric=kappa", *KNN), cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # grades 0 and 1 are numbers: kappa has their order
    named = cli("train", _recipe(tmp_path), "--data", demos / "isic", "--runs", tmp_path / "runs2",
                *_sets(*ISIC[:-1], "data.metric=log_loss", *KNN), "--name", "a", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    cli("train", _recipe(tmp_path), "--data", demos / "isic", "--runs", tmp_path / "runs2",
        *_sets(*ISIC[:-1], "data.metric=log_loss", *KNN, "model.params={n_neighbors: 7}"),
        "--name", "b", cwd=tmp_path)
    ranked = cli("ensemble", "a", "b", "--name", "rk", "--method", "rank", "--runs", tmp_path / "runs2", cwd=tmp_path)
    assert ranked.returncode == 2 and "log loss" in ranked.stderr and not (tmp_path / "runs2" / "rk").exists()
    submitted = cli("submit", "a", "--runs", tmp_path / "runs2", "--out", tmp_path / "s.csv", cwd=tmp_path)
    assert "column 'target' gets the probability of class '1'" in submitted.stdout, submitted.stdout


def test_kappa_needs_grades_and_a_positive_class_must_be_a_class(tiny_contest: Path, demos: Path,
                                                                  tmp_path: Path) -> None:
    result = cli("train", _recipe(tmp_path), "--data", tiny_contest, "--runs", tmp_path / "runs",
                 *_sets("data.metric=kappa", *KNN), cwd=tmp_path)
    assert result.returncode == 2 and "is not a number, so the classes have no order" in result.stderr, result.stderr
    result = cli("train", _recipe(tmp_path), "--data", demos / "isic", "--runs", tmp_path / "runs",
                 *_sets(*ISIC, "data.positive_class=malignant", *KNN), cwd=tmp_path)
    assert result.returncode == 2 and "recipe.data.positive_class: 'malignant' is not a class" in result.stderr
    assert not (tmp_path / "runs").exists()
