"""Know the test: the verdict and cv.scheme auto on contests whose relation is known, the seen-subject folds, and
scikit-learn model kinds (knn, label spreading) through the run folder, fold-honest."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.data import similarity
from competition.errors import CompetitionError
from competition.folds import chain_block_folds, choose_scheme, estimate_doubt
from competition.model.classic import fit_fold
from competition.recipe import load_recipe

SIZE = 16


def _chains(n_subjects: int = 12, train_slices: int = 10, test_slices: int = 3, *, seen: bool,
            seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Subjects as chains of slices: each slice a small step from the one before (near twins), the ends of a chain
    far apart. seen: the test is the next `test_slices` slices of every training chain; else new chains.
    Returns (train frame with label and subject, train images, test images, int subject per train row)."""
    rng = np.random.default_rng(seed)

    def chain(n: int) -> list[np.ndarray]:
        image = rng.uniform(0, 255, (SIZE, SIZE))
        out = []
        for _ in range(n):
            image = image + rng.normal(0, 6, (SIZE, SIZE))
            out.append(image.copy())
        return out

    train, test, labels, subjects = [], [], [], []
    for s in range(n_subjects):
        slices = chain(train_slices + (test_slices if seen else 0))
        train += slices[:train_slices]
        test += slices[train_slices:]
        labels += [f"c{s % 2}"] * train_slices
        subjects += [s] * train_slices
    if not seen:
        for _ in range(n_subjects // 2):
            test += chain(test_slices)
    frame = pd.DataFrame({"id": [f"tr{k}" for k in range(len(train))], "label": labels, "subject": subjects})
    as_uint8 = lambda images: np.clip(np.stack(images), 0, 255).astype(np.uint8)  # noqa: E731
    return frame, as_uint8(train), as_uint8(test), np.asarray(subjects)


@pytest.mark.parametrize("seen", [True, False])
def test_auto_mirrors_how_the_test_relates_to_train(seen: bool) -> None:
    train, images, test_images, subjects = _chains(seen=seen)
    choice = choose_scheme(train, None, n_folds=5, seed=0, train_signatures=similarity.signatures(images),
                           test_signatures=similarity.signatures(test_images))
    record = choice.record()
    assert set(record["candidates"]) == {"stratified", "grouped", "seen_subjects"}
    assert all("match" in c for c in record["candidates"].values())
    if seen:
        assert choice.scheme == "seen_subjects" and record["test"]["relation"] == "seen_subjects"
        assert choice.verdict.startswith("The test holds other images of the training subjects")
        assert "as a slice-level split does" in choice.verdict
        assert record["test"]["chain_share"] > 0.9
    else:
        assert choice.scheme == "grouped" and choice.verdict.startswith("The test holds new subjects")
        assert record["test"]["chain_share"] < 0.1
        assert (pd.Series(choice.folds).groupby(subjects).nunique() == 1).all()  # subjects held out whole
    assert choice.name in choice.lines()[0] and f"  {choice.verdict}" in choice.lines()


def test_seen_subject_folds_cut_each_chain_into_contiguous_blocks() -> None:
    train, images, _, subjects = _chains(seen=True, train_slices=10)
    folds = chain_block_folds(subjects, similarity.signatures(images), train["label"].to_numpy(), 5, seed=0)
    for s in np.unique(subjects):
        f = folds[subjects == s]  # rows of a subject are in chain order here
        assert sorted(np.bincount(f, minlength=5)) == [2, 2, 2, 2, 2]  # every fold validates a block of it
        runs = np.count_nonzero(np.diff(f)) + 1
        assert runs <= 6  # contiguous blocks (a walk may start inside the chain: one block then splits in two)


def test_too_few_subjects_to_hold_out_can_still_be_cut_into_blocks() -> None:
    train, images, test_images, _ = _chains(seen=True, n_subjects=4)  # 4 subjects cannot fill 5 grouped folds
    choice = choose_scheme(train, None, n_folds=5, seed=0, group_by="column:subject",
                           train_signatures=similarity.signatures(images),
                           test_signatures=similarity.signatures(test_images))
    assert choice.scheme == "seen_subjects" and "groups cannot fill 5 folds" in choice.candidates["grouped"]["problem"]


def test_large_neighbour_counts_are_accepted_when_the_recipe_loads() -> None:
    assert load_recipe(None, ["model.kind=label_spreading", "model.params.n_neighbors=20"]).model.params == {
        "n_neighbors": 20}


def test_seen_subjects_as_asked_and_its_one_line_error() -> None:
    train, images, test_images, _ = _chains(seen=True)
    sigs, test_sigs = similarity.signatures(images), similarity.signatures(test_images)
    choice = choose_scheme(train, None, n_folds=5, seed=0, scheme="seen_subjects", group_by="column:subject",
                           train_signatures=sigs, test_signatures=test_sigs)
    assert re.fullmatch(r"seen subjects \(([2-5]) chain blocks of column:subject\) 5-fold, seed 0", choice.name)
    tried = choice.candidates["seen_subjects"]["blocks_tried"]  # the block count is measured, not assumed
    assert set(tried) == {"2", "3", "4", "5"} and choice.blocks == int(min(tried, key=lambda b: (tried[b], -int(b))))
    lonely = train.assign(subject=np.arange(len(train)))  # every image its own subject
    with pytest.raises(CompetitionError, match=r"^recipe.cv.scheme: seen_subjects: every subject has one image"):
        choose_scheme(lonely, None, n_folds=5, seed=0, scheme="seen_subjects", group_by="column:subject",
                      train_signatures=sigs, test_signatures=test_sigs)


def test_the_block_count_ignores_test_images_no_chain_joins_to_train() -> None:
    """A test of the next slices of the training chains, then the same with new subjects' slices added (joined to
    nothing): the seen-subject block count and the figures it is chosen by stay the same (match_joined), while
    the candidate's match over all test images moves."""
    train, images, test_images, _ = _chains(seen=True, train_slices=12)
    _, _, strangers, _ = _chains(seen=False, n_subjects=12, train_slices=1, seed=1)
    signatures = similarity.signatures(images)
    choices = [choose_scheme(train, None, n_folds=5, seed=0, group_by="column:subject", train_signatures=signatures,
                             test_signatures=similarity.signatures(test)) for test in
               (test_images, np.concatenate([test_images, strangers]))]
    alone, mixed = (c.candidates["seen_subjects"] for c in choices)
    assert choices[1].test["chain_share"] < 0.8 < choices[0].test["chain_share"]
    assert mixed["blocks_tried"] == alone["blocks_tried"] and choices[0].blocks == choices[1].blocks
    assert mixed["match"] > alone["match"] and mixed["match_joined"] == alone["match_joined"]


def test_estimate_doubt_names_the_distance_each_kind_relies_on() -> None:
    record = {"scheme": "seen_subjects", "test": {"nearest": {"p50": 0.022}, "hops": {"p50": 4.0}},
              "candidates": {"seen_subjects": {"ks_nearest": 0.5, "ks_hops": 0.09, "nearest": {"p50": 0.0097},
                                               "hops": {"p50": 4.0}}}}
    doubt = estimate_doubt(record, transductive=False)
    assert doubt is not None and "inductive" in doubt and "0.0097" in doubt and "KS 0.50" in doubt
    assert estimate_doubt(record, transductive=True) is None  # chain steps match: trusted
    record["candidates"]["seen_subjects"].update(ks_hops=0.6, hops={"p50": 1.0})
    assert "transductive" in estimate_doubt(record, transductive=True)
    assert estimate_doubt({"scheme": "grouped"}, transductive=False) is None  # older runs: no figures


# ---------------------------------------------------------------- scikit-learn model kinds


def test_transductive_folds_never_see_their_validation_labels() -> None:
    rng = np.random.default_rng(0)
    z, z_test = rng.normal(size=(60, 5)).astype(np.float32), rng.normal(size=(20, 5)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    val = np.arange(0, 60, 5)
    for kind in ("label_spreading", "knn"):
        oof, test, model = fit_fold(kind, {}, None, z, y, val, z_test, 3, seed=0)
        shuffled = y.copy()
        shuffled[val] = (y[val] + 1) % 3  # other labels on the validation rows only
        oof2, test2, _ = fit_fold(kind, {}, None, z, shuffled, val, z_test, 3, seed=0)
        np.testing.assert_array_equal(oof, oof2)
        np.testing.assert_array_equal(test, test2)
        assert oof.shape == (len(val), 3) and np.allclose(oof.sum(1), 1) and test.shape == (20, 3)
        assert model.predict_proba(np.zeros((2, 1, 1, 5), np.uint8)).shape == (2, 3)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.kind=knnn"], "recipe.model.kind: unknown model kind 'knnn'; did you mean 'knn'?"),
    (["model.kind=knn", "model.params.n_neighbors=ten"], "recipe.model.params.n_neighbors: The 'n_neighbors'"),
    (["model.kind=knn", "model.params.k=3"], "recipe.model.params.k: not a parameter of KNeighborsClassifier"),
    (["model.kind=knn", "model.embedding.kind=umap"], "recipe.model.embedding.kind"),
    (["model.params.n_neighbors=3"], "recipe.model.params: used only by a scikit-learn model.kind"),
    (["model.kind=label_spreading", "model.backbone=mobilenetv2"], "recipe.model.backbone: used only by model.kind"),
    (["model.kind=knn", "balance.method=oversample"], "recipe.balance.method: used only by model.kind 'network'"),
    (["model.kind=knn", "train.batch_size=64"], "recipe.train.batch_size: used only by model.kind 'network'"),
    (["model.kind=knn", "augment=[{HorizontalFlip: {p: 0.5}}]"], "recipe.augment: used only by model.kind"),
    (["model.kind=knn", "train.pseudo_label={run: x}"], "recipe.train.pseudo_label"),
    (["train.keep=last", "train.patience=3"], "recipe.train.keep: 'last' keeps an epoch chosen without"),
    (["train.pseudo_label={run: x, threshold: 0}"], "recipe.train.pseudo_label.threshold"),
])
def test_model_kind_mistakes_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(CompetitionError) as exc:
        load_recipe(None, overrides)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_network_recipes_keep_their_hash() -> None:
    recipe = load_recipe(None, [])
    assert "kind" not in recipe.resolved()["model"] and "params" not in recipe.resolved()["model"]
    classic = load_recipe(None, ["model.kind=knn"])
    assert classic.resolved()["model"]["embedding"] == {"kind": "pca", "components": 100}
    assert classic.hash() != recipe.hash()


@pytest.mark.slow
def test_knn_and_label_spreading_runs_on_both_demo_relations(tmp_path: Path) -> None:
    """End to end through the run folder (seconds): the verdict and scheme on each demo relation, OOF and test
    probabilities written like a network's, the leaderboard, and `submit` taking label spreading only where
    its honest figure is the best."""
    import competition
    from competition.demo import make_demo
    from competition.submission import choose_run

    root = Path(__file__).resolve().parents[1] / "recipes"
    chosen = {}
    for relation in ("new_subjects", "seen_subjects"):
        data = make_demo(tmp_path / relation, seed=1, size=32, scale=0.6, relation=relation)
        runs = tmp_path / f"runs-{relation}"
        for name in ("baseline-knn", "baseline-spreading"):
            recipe = load_recipe(root / f"{name}.yaml", ["data.image_size=32", "model.embedding.components=20"])
            run_dir = competition.train(recipe, runs, data_root=data, executor="process")
            run = competition.Run.load(run_dir)
            assert run.model_kinds == [recipe.model.kind] and run.oof.shape == (len(run.y), 4)
            assert (run_dir / "fold_0" / "model.joblib").is_file()
            expected = "grouped" if relation == "new_subjects" else "seen_subjects"
            assert run.cv["scheme"] == expected and run.cv["test"]["relation"] == expected
        chosen[relation] = choose_run(None, runs)
        board = competition.leaderboard(runs)
        assert set(board["backbone"]) == {"knn", "label_spreading"}
    assert chosen["new_subjects"].name == "baseline-knn"  # spreading over new subjects loses, and CV says so

    # predict gives what submit writes, for a knn run and for it averaged per subject
    from competition.inference import predict_run
    from competition.subjects import aggregate

    runs = tmp_path / "runs-seen_subjects"
    aggregate("baseline-knn", runs_dir=runs)
    for name in ("baseline-knn", "baseline-knn-subjects"):
        run = competition.Run.load(runs / name)
        predicted = predict_run(name, [tmp_path / "seen_subjects"], runs)
        order = [predicted.ids.index(i) for i in run.test_ids]
        np.testing.assert_allclose(predicted.proba[order], run.test, atol=1e-4)
    with pytest.raises(CompetitionError, match="transductive"):
        predict_run("baseline-spreading", [tmp_path / "seen_subjects"], runs)


def test_label_spreading_needs_test_images(tmp_path: Path) -> None:
    from competition.demo import make_demo
    from competition.runs.prepare import prepare_run

    data = make_demo(tmp_path / "d", seed=1, size=32, scale=0.4)
    for image in (data / "test").iterdir():
        image.unlink()
    (data / "sample_submission.csv").write_text("id,label\n")
    with pytest.raises(CompetitionError) as exc:
        prepare_run(load_recipe(None, ["model.kind=label_spreading", "data.image_size=32"]), tmp_path / "runs",
                    data_root=data)
    assert "\n" not in str(exc.value) and ("transductive" in str(exc.value) or "test" in str(exc.value))
    assert not (tmp_path / "runs" / "run").exists()


def test_bootstrap_resamples_subjects_when_given() -> None:
    from competition.metrics import bootstrap_ci

    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(40), 25)  # 40 subjects of 25 slices, each subject right or wrong as a whole
    y = np.repeat(rng.integers(0, 2, 40), 25)
    right = np.repeat(rng.random(40) < 0.7, 25)
    pred = np.where(right, y, 1 - y)
    rows = bootstrap_ci(y, pred, n_classes=2)
    whole = bootstrap_ci(y, pred, n_classes=2, groups=subjects)
    assert rows["macro_f1"] == whole["macro_f1"]
    # 40 independent draws, not 1,000: the honest interval is several times wider
    assert (whole["high"] - whole["low"]) > 3 * (rows["high"] - rows["low"])


@pytest.mark.slow
def test_pseudo_labels_come_from_the_same_fold_of_the_teacher(tmp_path: Path) -> None:
    """Fold k of a student learns from the test images that fold k of the teacher labelled (never from a model
    that saw fold k's validation labels); a threshold outside (0, 1] or a teacher on other folds is one line."""
    import competition
    from competition.demo import make_demo
    from competition.engine.fold import fit_fold as fit_network_fold
    from competition.runs.prepare import prepare_run, pseudo_labels

    data = make_demo(tmp_path / "d", seed=2, size=32, scale=0.5)
    runs = tmp_path / "runs"
    teacher = competition.train(load_recipe(None, ["model.kind=knn", "data.image_size=32", "cv.folds=3"]), runs,
                                data_root=data, name="teacher")
    tiny = ["data.image_size=32", "model.filters=[4]", "model.head.dense=[]", "cv.folds=3", "augment=[]",
            "train.phases.0.epochs=1"]
    student = load_recipe(None, [*tiny, "train.pseudo_label={run: teacher, threshold: 0.6, weight: 0.5}"])
    prepared = prepare_run(student, runs, data_root=data, name="student")
    try:
        for k in range(3):
            rows, labels, weight = pseudo_labels(prepared, k)
            proba = np.load(teacher / f"fold_{k}" / "test.npy")
            np.testing.assert_array_equal(rows, np.flatnonzero(proba.max(axis=1) >= 0.6))
            np.testing.assert_array_equal(labels, proba[rows].argmax(axis=1))
            assert weight == 0.5
        rows, labels, weight = pseudo_labels(prepared, 0)
        val = np.flatnonzero(prepared.folds == 0)
        result = fit_network_fold(student, prepared.x, prepared.y, val, prepared.x_test, prepared.classes, 0,
                                  pseudo=(rows, labels, weight))
        assert result.oof.shape == (len(val), 4)
    finally:
        prepared.release()
    with pytest.raises(CompetitionError, match=r"recipe.train.pseudo_label.threshold") as exc:
        load_recipe(None, [*tiny, "train.pseudo_label={run: teacher, threshold: 1.5}"])
    assert "\n" not in str(exc.value)
    other = load_recipe(None, [*tiny, "cv.seed=7", "train.pseudo_label={run: teacher}"])
    with pytest.raises(CompetitionError, match=r"^recipe.train.pseudo_label.run: 'teacher' was trained on other"):
        prepare_run(other, runs, data_root=data, name="other")
    assert not (runs / "other").exists()


def test_the_leaderboard_says_in_one_line_how_the_test_relates_to_train() -> None:
    from competition.report.leaderboard import relation_note

    cv = {"test": {"relation_text": "other images of the training subjects", "chain_share": 0.95,
                   "closest_scheme": "seen_subjects"}}
    note = relation_note([{"run": "old"}, {"run": "a", "cv": cv}])
    assert note is not None and "\n" not in note
    assert note.startswith("the test holds other images of the training subjects (95%") and "seen subjects" in note
    assert relation_note([{"run": "old", "cv": {"scheme": "grouped"}}]) is None  # runs from before the figures


def test_a_neighbour_count_above_the_contest_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    from competition.demo import make_demo
    from competition.runs.prepare import prepare_run

    data = make_demo(tmp_path / "d", seed=1, size=32, scale=0.4)
    for kind, where in (("knn", "training images of the smallest fold"), ("label_spreading", "training and test")):
        recipe = load_recipe(None, [f"model.kind={kind}", "model.params.n_neighbors=100000", "data.image_size=32"])
        with pytest.raises(CompetitionError, match=r"^recipe.model.params.n_neighbors: 100000 is more than") as exc:
            prepare_run(recipe, tmp_path / "runs", data_root=data, name=kind)
        assert where in str(exc.value) and not (tmp_path / "runs" / kind).exists()
