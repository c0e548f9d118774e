"""Issue 25, kinds 3 and 4.

Kind 3, "a file is read without its check": every reader of a run file goes through the checked readers of
competition.runs.folder (read_recipe, load_fold_model, load_fold, read_decisions, read_members, read_weights), and
a bad file is one line naming it and saying "damaged" or "made by a newer version"; a missing recipe.yaml is never
read as the default recipe.

Kind 4, "a stale or ambiguous answer, exit 0": a submission is made only from predictions of the contest's test
images as they are now; decisions tuned on an earlier training, an ensemble whose member was trained again, and
offsets on a sample that wants probabilities are not applied silently.

One tiny network run (2 folds, 1 epoch, 16 px) is trained once for the module and copied by the tests that damage
it; the tests of submissions and ensembles use runs written directly (save_run), and the two that need a retrain
use a k-nearest-neighbour run (no network: a fraction of a second).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.errors import CompetitionError
from competition.recipe import load_recipe
from competition.runs import Run, decisions, fold_files, folder, save_run
from competition.training import train_run

TINY = ["name=tiny", "data.image_size=16", "model.filters=[4]", "model.head.dense=[4]", "train.phases.0.epochs=1",
        "cv.folds=2", "cv.seed=1", "cv.scheme=stratified"]
KNN = ["name=floor", "model.kind=knn", "model.embedding={kind: pca, components: 4}", "model.params={n_neighbors: 3}",
       "data.image_size=16", "cv.folds=2", "cv.seed=1", "cv.scheme=stratified"]


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def trained(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny network run (runs/tiny) of the module's own copy of the tiny contest."""
    base = tmp_path_factory.mktemp("round5-readers")
    contest = Path(shutil.copytree(tiny_contest, base / "contest"))
    return train_run(load_recipe(None, TINY), base / "runs", data_root=contest)


def _runs_copy(trained: Path, tmp_path: Path) -> Path:
    """A runs folder of the test's own holding a copy of the trained run (its contest stays the module's)."""
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / trained.name)
    return runs


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """`competition ARGS...` in this process, as the installed command runs it: (exit code, stdout, stderr)."""
    from competition import cli

    capsys.readouterr()
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str, *parts: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err[-3000:])
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _replace_test_images(contest: Path) -> None:
    """Every test image's file replaced by a training image's bytes (same names: the ids do not change)."""
    train = sorted(contest.glob("train/*/*.png"))
    for k, image in enumerate(sorted((contest / "test").glob("*.png"))):
        shutil.copyfile(train[(7 * k) % len(train)], image)


CLASSES = ["cat", "dog", "emu"]


def _sample(tmp_path: Path, header: str = "id,label", value: str = "cat") -> Path:
    path = tmp_path / f"sample-{header.replace(',', '-')}.csv"
    values = ",".join([value] * (header.count(",")))
    path.write_text(f"{header}\n" + "".join(f"{i},{values}\n" for i in "abcd"))
    return path


def _biased_oof(n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(OOF, labels) where class 1 is systematically under-scored: an offset fixes it, with a positive
    nested-CV gain."""
    rng = np.random.default_rng(0)
    y = np.arange(600) % n_classes
    truth = np.eye(n_classes)[y] * 2.0 + rng.uniform(0, 1.5, (600, n_classes))
    biased = truth * np.array([1.0, 0.55, 1.0][:n_classes])
    return (biased / biased.sum(axis=1, keepdims=True)).astype(np.float32), y


def _written(runs: Path, name: str, sample: Path, *, oof: np.ndarray | None = None, y: np.ndarray | None = None,
             classes: list[str] = CLASSES, recipe_hash: str = "h1", test_images: dict | None = None) -> Path:
    """A finished model run written directly: OOF (default the biased one), 4 test rows whose argmax is
    cat, emu, cat, emu (never dog)."""
    if oof is None or y is None:
        oof, y = _biased_oof(len(classes))
    k = len(classes)
    test = np.full((4, k), 0.1 / max(k - 1, 1), np.float32)
    test[[0, 2], 0] = 0.9
    test[[1, 3], k - 1] = 0.9
    extra: dict = {"sample_submission": str(sample)}
    if test_images is not None:
        extra["test_images"] = test_images
    ids = np.array([f"i{i}" for i in range(len(y))])
    return save_run(runs / name, name=name, kind="model", classes=classes, ids=ids, y=y, folds=np.arange(len(y)) % 5,
                    oof=oof, test=test, test_ids=np.array(list("abcd")), recipe_hash=recipe_hash, extra=extra)


# ---------------------------------------------------------------- kind 3: readers go through the checks


@pytest.mark.slow
def test_export_of_a_model_cut_short_is_one_line_and_runs_calls_the_run_damaged(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's example: `export` with fold_1/model.keras cut short ended in a ValueError traceback, while
    `runs` called the run finished."""
    from competition.runs.status import list_status

    runs = _runs_copy(trained, tmp_path)
    model = runs / "tiny" / "fold_1" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    code, _, err = _cli(capsys, "export", "tiny", "--runs", runs, "--out", tmp_path / "exported")
    _one_line(code, err, str(model), "damaged")
    assert not (tmp_path / "exported").exists()
    status = {s.name: s for s in list_status(runs)}["tiny"]
    assert status.state == "damaged" and str(model) in status.problem and "damaged" in status.problem


@pytest.mark.parametrize("command", ["predict", "explain", "export"])
@pytest.mark.slow
def test_a_recipe_from_a_newer_version_is_one_line(command: str, trained: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's example: predict, explain and export on a run whose recipe.yaml has keys of a newer version
    ended in a pydantic traceback."""
    runs = _runs_copy(trained, tmp_path)
    recipe = runs / "tiny" / "recipe.yaml"
    recipe.write_text(recipe.read_text() + "serving: {batch: 4}\n")
    out = tmp_path / {"predict": "p.csv", "explain": "e.png", "export": "exported"}[command]
    code, _, err = _cli(capsys, command, "tiny", "--runs", runs, "--out", out)
    _one_line(code, err, str(recipe), "made by a newer version", "serving")
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_missing_recipe_is_one_line_naming_it_never_the_default_recipe(
        command: str, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's rule: without recipe.yaml, predict read the default recipe (5 folds, another image size) and
    complained about fold models instead of naming the missing file."""
    runs = _runs_copy(trained, tmp_path)
    recipe = runs / "tiny" / "recipe.yaml"
    recipe.unlink()
    out = tmp_path / ("p.csv" if command == "predict" else "exported")
    code, _, err = _cli(capsys, command, "tiny", "--runs", runs, "--out", out)
    _one_line(code, err, str(recipe), "missing")
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_model_cut_short_is_called_damaged_not_missing(command: str, trained: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Further member (found): predict and explain on a model.keras cut short said "cannot load the fold model
    (File not found: ...)" of a file that is there; the line now says it is damaged."""
    runs = _runs_copy(trained, tmp_path)
    model = runs / "tiny" / "fold_0" / "model.keras"
    model.write_bytes(model.read_bytes()[:-100])
    code, _, err = _cli(capsys, command, "tiny", "--runs", runs, "--out", tmp_path / ("p.csv" if command == "predict"
                                                                                       else "e.png"))
    line = _one_line(code, err, str(model), "damaged")
    assert "not found" not in line.lower()


def test_saved_grade_thresholds_decide_predict_as_submit(trained: Path, tmp_path: Path) -> None:
    """A kappa run's decisions (cut points on the expected grade): predict decides with them, as submit does."""
    from competition.inference import predict_run
    from competition.submission import submit
    from competition.tuning import GradeThresholds

    runs = _runs_copy(trained, tmp_path)
    meta = json.loads((runs / "tiny" / "run.json").read_text())
    (runs / "tiny" / "run.json").write_text(json.dumps({**meta, "contest_metric": "kappa"}))  # a kappa run
    decisions.write_decisions(runs / "tiny", {"thresholds": [0.2, 0.4, 2.9], "nested_gain": 0.01})
    contest = Run.load(runs / "tiny").data_root
    done = predict_run("tiny", [contest / "test"], runs, out=tmp_path / "p.csv")
    want = GradeThresholds.from_thresholds([0.2, 0.4, 2.9]).predict(done.proba)
    assert done.labels == [done.classes[k] for k in want] and done.labels != [done.classes[k] for k in
                                                                              done.proba.argmax(axis=1)]
    written = submit(["tiny"], runs, out=tmp_path / "s.csv")
    assert written.tuned
    by_id = dict(zip(done.ids, done.labels))
    frame = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert (frame.iloc[:, 1] == frame.iloc[:, 0].map(by_id)).all()
    for saved, says in (([0.5, 2.5, 1.5], "thresholds not increasing"),
                        ([0.5, 1.5], "2 thresholds for 4 classes, 3 expected")):
        decisions.write_decisions(runs / "tiny", {"thresholds": saved, "nested_gain": 0.01})
        with pytest.raises(CompetitionError, match=says):
            predict_run("tiny", [contest / "test"], runs, out=tmp_path / "p2.csv")
    assert not (tmp_path / "p2.csv").exists()


@pytest.mark.parametrize("saved, says", [
    ({"offsets": [0.0, 1.0]}, "2 offsets for 4 classes, 4 expected"),
    ({"thresholds": [0.5, 1.5, 2.5]}, "thresholds, but the run is scored by macro_f1, whose decisions are offsets"),
])
def test_decisions_of_another_class_count_are_one_line_for_predict_and_submit(trained: Path, tmp_path: Path,
                                                                              saved: dict, says: str) -> None:
    """Further member (found): a decisions.json whose offsets do not match the run's classes (2 offsets, 4
    classes) ended predict and submit in a numpy broadcasting traceback; grade thresholds are checked alike."""
    from competition.inference import predict_run
    from competition.submission import submit

    runs = _runs_copy(trained, tmp_path)
    decisions = runs / "tiny" / "decisions.json"
    decisions.write_text(json.dumps(saved))
    contest = Run.load(runs / "tiny").data_root
    with pytest.raises(CompetitionError, match=says) as raised:
        predict_run("tiny", [contest / "test"], runs, out=tmp_path / "p.csv")
    assert str(decisions) in str(raised.value) and not (tmp_path / "p.csv").exists()
    with pytest.raises(CompetitionError, match=says):
        submit(["tiny"], runs, out=tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


def test_blend_weights_that_do_not_fit_the_members_are_one_line(trained: Path, tmp_path: Path) -> None:
    """Further member (found): an ensemble whose run.json lists fewer weights than members ended predict in a
    ValueError traceback (zip of unequal lists)."""
    from competition.ensemble import ensemble_runs
    from competition.inference import predict_run

    runs = _runs_copy(trained, tmp_path)
    twin = Path(shutil.copytree(runs / "tiny", runs / "twin"))
    meta = json.loads((twin / "run.json").read_text())
    (twin / "run.json").write_text(json.dumps({**meta, "name": "twin"}))
    blend = ensemble_runs(["tiny", "twin"], method="mean", name="blend", runs_dir=runs)
    meta = json.loads((blend / "run.json").read_text())
    (blend / "run.json").write_text(json.dumps({**meta, "weights": [1.0]}))
    with pytest.raises(CompetitionError, match="damaged") as raised:
        predict_run("blend", [Run.load(blend).data_root / "test"], runs)
    assert str(blend / "run.json") in str(raised.value) and "weights" in str(raised.value)


def test_a_fold_array_cut_short_is_not_reused_and_reads_as_damaged(trained: Path, tmp_path: Path) -> None:
    """Further member (found): a resumed `train` counted a fold whose oof.npy was cut short as finished (files
    present was enough) and then failed in finish with a ValueError traceback (load_fold read it unchecked)."""
    runs = _runs_copy(trained, tmp_path)
    run = runs / "tiny"
    array = run / "fold_0" / "oof.npy"
    array.write_bytes(array.read_bytes()[:-24])
    assert not fold_files.fold_is_done(run, 0, folder.stored_hash(run) or "")  # trained again by a resume
    assert fold_files.fold_is_done(run, 1, folder.stored_hash(run) or "")
    with pytest.raises(CompetitionError, match="damaged") as raised:
        fold_files.load_fold(run, 0)
    assert str(array) in str(raised.value)


# ---------------------------------------------------------------- kind 4: stale or ambiguous answers


def test_submit_refuses_predictions_of_test_images_replaced_since(trained: Path, tmp_path: Path) -> None:
    """The issue's example: test images replaced after training, `submit` wrote the old predictions, exit 0.
    Files touched (same bytes, new times) still submit; replaced ones are one line saying what changed and
    what to run, and nothing is written."""
    from competition.submission import submit

    runs = _runs_copy(trained, tmp_path)
    contest = Path(shutil.copytree(Run.load(trained).data_root, tmp_path / "contest"))
    for image in (contest / "test").glob("*.png"):
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 5_000_000_000))
    assert submit(["tiny"], runs, data=contest, out=tmp_path / "subs" / "same.csv").path.is_file()

    _replace_test_images(contest)
    with pytest.raises(CompetitionError) as raised:
        submit(["tiny"], runs, data=contest, out=tmp_path / "subs" / "replaced.csv")
    line = str(raised.value)
    assert "\n" not in line and "test images changed" in line and "train it again" in line, line
    assert not (tmp_path / "subs" / "replaced.csv").exists()


def test_decisions_do_not_survive_a_retrain_triggered_by_changed_images(tiny_contest: Path, tmp_path: Path) -> None:
    """The issue's example: decisions.json, tuned on the OOF of the first training, survived the retrain that
    changed images triggered, and later submit and predict calls applied it."""
    from competition.submission import submit

    contest = Path(shutil.copytree(tiny_contest, tmp_path / "contest"))
    run = train_run(load_recipe(None, KNN), tmp_path / "runs", data_root=contest)
    decisions.write_decisions(run, {"offsets": [0.0, 3.0, 0.0, 0.0], "nested_gain": 0.05})
    _replace_test_images(contest)
    first, second = sorted(contest.glob("train/*/*.png"))[0], sorted(contest.glob("train/*/*.png"))[-1]
    first_bytes = first.read_bytes()
    shutil.copyfile(second, first)
    second.write_bytes(first_bytes)
    train_run(load_recipe(None, KNN), tmp_path / "runs", data_root=contest)
    assert not (run / "decisions.json").exists()
    done = submit(["floor"], tmp_path / "runs", out=tmp_path / "subs" / "floor.csv")
    assert not done.tuned


def test_a_pseudo_label_teacher_of_replaced_test_images_is_refused(tiny_contest: Path, tmp_path: Path) -> None:
    """Further member (found): pseudo-labels were taken from a teacher run that predicted the test images before
    they were replaced (only the test ids were compared), so the student learnt labels of other images."""
    from competition.runs.prepare import prepare_run

    contest = Path(shutil.copytree(tiny_contest, tmp_path / "contest"))
    train_run(load_recipe(None, KNN), tmp_path / "runs", data_root=contest)
    _replace_test_images(contest)
    student = load_recipe(None, [*TINY, "name=student", "train.pseudo_label={run: floor}"])
    with pytest.raises(CompetitionError, match="before they changed"):
        prepared = prepare_run(student, tmp_path / "runs", data_root=contest)
        prepared.release()
    assert not (tmp_path / "runs" / "student").exists()


@pytest.mark.parametrize("change", ["recipe", "oof"])
def test_an_ensemble_whose_member_was_trained_again_is_not_submitted_or_predicted(change: str, tmp_path: Path) -> None:
    """The issue's example (change "recipe"): an ensemble records its members' recipe hashes but nothing checked
    them. Further member (found, change "oof"): a member trained again with the same recipe on changed images
    keeps its hash; the OOF the ensemble was built from is now checked too."""
    from competition.ensemble import ensemble_runs
    from competition.inference import predict_run
    from competition.submission import submit

    runs, sample = tmp_path / "runs", _sample(tmp_path)
    oof, y = _biased_oof()
    _written(runs, "m1", sample, recipe_hash="h1")
    _written(runs, "m2", sample, oof=oof[:, [0, 2, 1]], y=y, recipe_hash="h2")
    ensemble_runs(["m1", "m2"], method="mean", name="e", runs_dir=runs)
    assert submit(["e"], runs, out=tmp_path / "subs" / "before.csv").path.is_file()

    if change == "recipe":
        _written(runs, "m1", sample, recipe_hash="h9")
    else:
        _written(runs, "m1", sample, oof=oof[:, [2, 1, 0]], y=y, recipe_hash="h1")
    with pytest.raises(CompetitionError, match="'m1' was trained again") as raised:
        submit(["e"], runs, out=tmp_path / "subs" / "after.csv")
    assert "competition ensemble m1 m2 --name e" in str(raised.value)
    assert not (tmp_path / "subs" / "after.csv").exists()
    with pytest.raises(CompetitionError, match="'m1' was trained again"):
        predict_run("e", [tmp_path], runs)


def test_an_ensemble_of_members_that_predicted_different_test_images_is_refused(tmp_path: Path) -> None:
    """Further member (found): members with the same test ids but trained before and after the test images
    changed were blended into one test prediction of images that never existed together."""
    from competition.ensemble import ensemble_runs

    runs, sample = tmp_path / "runs", _sample(tmp_path)
    _written(runs, "m1", sample, test_images={"n": 4, "stat": "s1", "content": "c1"})
    _written(runs, "m2", sample, test_images={"n": 4, "stat": "s2", "content": "c2"})
    with pytest.raises(CompetitionError, match="predicted different test images"):
        ensemble_runs(["m1", "m2"], method="mean", name="e", runs_dir=runs)
    assert not (runs / "e").exists()


def test_submit_no_tune_applies_no_saved_offsets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's example: `submit --no-tune` still applied the offsets an earlier `--tune` saved. Without
    either flag they still apply (the documented default)."""
    runs, sample = tmp_path / "runs", _sample(tmp_path)
    run = _written(runs, "r", sample)
    decisions.write_decisions(run, {"offsets": [0.0, 50.0, 0.0], "nested_gain": 0.01})  # dog always wins

    code, out, err = _cli(capsys, "submit", "r", "--runs", runs, "--out", tmp_path / "plain.csv", "--no-tune")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "plain.csv")["label"].tolist() == ["cat", "emu", "cat", "emu"]
    assert "not applied (--no-tune)" in out

    code, out, err = _cli(capsys, "submit", "r", "--runs", runs, "--out", tmp_path / "saved.csv")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "saved.csv")["label"].tolist() == ["dog"] * 4
    assert (run / "decisions.json").is_file()


@pytest.mark.parametrize("kind", ["probabilities", "binary"])
def test_submit_tune_on_a_sample_of_probabilities_writes_them_with_a_note(kind: str, tmp_path: Path) -> None:
    """Found by reading (the issue): `submit --tune` (which `make submit` passes) applied the tuner whenever
    the nested-CV gain was positive, and make_submission then refused it for a probability or binary sample."""
    from competition.submission import submit

    runs = tmp_path / "runs"
    classes = CLASSES if kind == "probabilities" else ["benign", "malignant"]
    sample = _sample(tmp_path, "id," + ",".join(CLASSES), "0.333") if kind == "probabilities" else \
        _sample(tmp_path, "id,malignant", "0.5")
    _written(runs, "r", sample, classes=classes)
    done = submit(["r"], runs, out=tmp_path / "sub.csv", tune=True)
    assert done.path.is_file() and not done.tuned and not (runs / "r" / "decisions.json").exists()
    assert any("not applied" in line and "probabilit" in line for line in done.lines())
    written = pd.read_csv(done.path)
    assert list(written.columns) == pd.read_csv(sample).columns.tolist()


def test_saved_offsets_are_not_forced_on_a_sample_of_probabilities(tmp_path: Path) -> None:
    """Further member (found): with decisions saved by an earlier `--tune` on a label sample, a plain `submit`
    against a probability sample failed ("a decision tuner applies to label submissions")."""
    from competition.submission import submit

    runs = tmp_path / "runs"
    sample = _sample(tmp_path, "id," + ",".join(CLASSES), "0.333")
    run = _written(runs, "r", sample)
    decisions.write_decisions(run, {"offsets": [0.0, 1.0, 0.0], "nested_gain": 0.02})
    done = submit(["r"], runs, out=tmp_path / "sub.csv")
    assert done.path.is_file() and not done.tuned
    assert any("saved by an earlier submit --tune: not applied" in line for line in done.lines())
    np.testing.assert_allclose(pd.read_csv(done.path)[CLASSES].to_numpy(), Run.load(run).test, atol=1e-6)
