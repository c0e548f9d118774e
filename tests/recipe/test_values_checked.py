"""Issue 25, round 5. Kind 4: no stale or ambiguous answer with exit 0 (two images with one id, two run folders
that record one name, a `--set` through a YAML alias). Kind 5: no value coerced or checked too late (YAML
booleans as numbers, a weights file of another backbone width). Kind 6: no traceback on a degenerate file (a
train.csv or sample holding only its header, an empty or image-less file). Each case names itself in its
docstring: the issue's examples, and further members of the kind found while fixing them.

In process (library functions, and `competition.cli.main` for the command line), on one module-scoped tiny
finished run of a scikit-learn kind (knn, no network: trained in about a second)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from competition.errors import CompetitionError
from faultkit import cli_in_process

KNN_RECIPE = """\
name: tiny
data: {image_size: 16, channels: 1}
model: {kind: knn, embedding: {kind: pixels}, params: {n_neighbors: 3}}
cv: {folds: 2, seed: 1, scheme: stratified}
"""

NETWORK_RECIPE = """\
name: net
data: {image_size: 16, channels: 1}
model: {backbone: cnn, filters: [4], head: {dense: [4]}}
train: {batch_size: 8, phases: [{epochs: 1}]}
cv: {folds: 2, seed: 1, scheme: stratified}
"""

YES = "(YAML reads yes, no, on, off, true and false as booleans, which are not numbers)"


def _one_line(exc: pytest.ExceptionInfo[CompetitionError], *parts: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[str]]:
    return cli_in_process(capsys, *args)


def small_contest(root: Path, *, csv: bool = False) -> Path:
    """2 classes x 6 grey 16 px training images (class folders, or train.csv with the images in train/),
    4 test images, a label-format sample."""
    rng = np.random.default_rng(0)
    rows = []
    for k, cls in enumerate(("Alpha", "Beta")):
        for i in range(6):
            path = root / "train" / ("" if csv else cls) / f"{cls[0].lower()}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(rng.normal(60 + 100 * k, 25, (16, 16)), 0, 255).astype(np.uint8)).save(path)
            rows.append(f"{path.stem},{cls}\n")
    if csv:
        (root / "train.csv").write_text("id,label\n" + "".join(rows))
    (root / "test").mkdir(parents=True)
    for i in range(4):
        pixels = np.clip(rng.normal(120, 25, (16, 16)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "test" / f"t{i}.png")
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},Alpha\n" for i in range(4)))
    return root


def doctor(recipe: Path, data: Path | None = None) -> dict[str, object]:
    """competition doctor's checks of one recipe: {item: check}."""
    from competition.doctor import check_recipes

    return {check.item: check for check in check_recipes([recipe], data)}


@pytest.fixture(scope="module")
def finished(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/tiny: a finished knn run on its own copy of the tiny contest (base/contest)."""
    from competition.recipe import load_recipe
    from competition.training import train_run

    base = tmp_path_factory.mktemp("round5-values")
    shutil.copytree(tiny_contest, base / "contest")
    (base / "tiny.yaml").write_text(KNN_RECIPE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPETITION_CACHE_DIR", str(base / "cache"))
        return train_run(load_recipe(base / "tiny.yaml"), base / "runs", data_root=base / "contest")


@pytest.fixture
def runs(finished: Path, tmp_path: Path) -> Path:
    """A runs folder of this test's own holding `tiny`, which it may change."""
    shutil.copytree(finished, tmp_path / "runs" / "tiny")
    return tmp_path / "runs"


# ---------------------------------------------------------------- kind 4: stale or ambiguous answers


def test_predict_refuses_one_id_from_two_folders(runs: Path, tmp_path: Path) -> None:
    """Example: `predict tiny new/site_a new/site_b` where both hold 001.png wrote two rows of id 001. Chosen:
    refused in one line naming both files (ids stay the file names the contest uses); nothing written."""
    from competition.inference import predict_run

    test_images = sorted((Path(json.loads((runs / "tiny" / "run.json").read_text())["data_root"]) / "test").iterdir())
    for site, image in (("site_a", test_images[0]), ("site_b", test_images[1])):
        (tmp_path / "new" / site).mkdir(parents=True)
        shutil.copy(image, tmp_path / "new" / site / "001.png")
    out = tmp_path / "predictions.csv"
    with pytest.raises(CompetitionError) as exc:
        predict_run("tiny", [tmp_path / "new" / "site_a", tmp_path / "new" / "site_b"], runs, out=out)
    _one_line(exc, "'001'", str(tmp_path / "new" / "site_a" / "001.png"), str(tmp_path / "new" / "site_b" / "001.png"))
    assert not out.exists()
    # one folder each: one row each, as before
    assert predict_run("tiny", [tmp_path / "new" / "site_a"], runs).ids == ["001"]


def test_predict_refuses_one_id_in_two_formats_and_one_file_twice(runs: Path, tmp_path: Path) -> None:
    """Further member: `001.png` and `001.jpg` in one folder (one scan exported twice) wrote two rows of id 001;
    and `predict tiny new new/001.png` predicted the same file twice. Both refused, naming the files."""
    from competition.inference import predict_run

    folder = tmp_path / "new"
    folder.mkdir()
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(folder / "001.png")
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(folder / "001.jpg")
    with pytest.raises(CompetitionError) as exc:
        predict_run("tiny", [folder], runs)
    _one_line(exc, "'001'", "001.png", "001.jpg")
    (folder / "001.jpg").unlink()
    with pytest.raises(CompetitionError) as exc:
        predict_run("tiny", [folder, folder / "001.png"], runs)
    _one_line(exc, str(folder / "001.png"), "given twice")


def test_a_renamed_run_folder_is_its_own_run(runs: Path, tmp_path: Path) -> None:
    """Example: a run folder copied or renamed by hand (run.json still records 'tiny') showed as a second
    `tiny` row, and `submit` of it wrote submissions/tiny.csv over the other's. A run is its folder's name."""
    from competition.report.leaderboard import leaderboard
    from competition.submission import submit

    shutil.copytree(runs / "tiny", runs / "tiny-copy")
    assert sorted(row["run"] for row in leaderboard(runs)) == ["tiny", "tiny-copy"]
    subs = tmp_path / "submissions"
    first = submit(["tiny"], runs, submissions_dir=subs).path
    before = first.read_bytes()
    second = submit(["tiny-copy"], runs, submissions_dir=subs).path
    assert first.name == "tiny.csv" and second.name == "tiny-copy.csv"
    assert first.read_bytes() == before


def test_an_ensemble_or_aggregate_of_a_renamed_run_names_its_folder(runs: Path) -> None:
    """Further members: `ensemble tiny tiny-copy` was refused as "a run is listed twice in ['tiny', 'tiny']"
    (and an ensemble of tiny-copy with another run recorded the member 'tiny', so `predict` through it read
    the other run); `aggregate tiny-copy` wrote `tiny-subjects`, the other run's aggregate."""
    from competition.ensemble import ensemble_runs
    from competition.subjects import aggregate

    shutil.copytree(runs / "tiny", runs / "tiny-copy")
    both = ensemble_runs(["tiny", "tiny-copy"], method="mean", name="both", runs_dir=runs)
    members = json.loads((both / "run.json").read_text())["members"]
    assert [m["name"] if isinstance(m, dict) else m for m in members] == ["tiny", "tiny-copy"]
    assert aggregate("tiny-copy", runs_dir=runs).name == "tiny-copy-subjects"
    assert not (runs / "tiny-subjects").exists()


def test_set_through_a_yaml_alias_changes_one_place(tmp_path: Path) -> None:
    """Example: `--set train.phases.1.learning_rate=...` on a recipe whose phases share a YAML alias changed
    phase 0 too. Further member: two augment steps sharing their parameters by alias, `--set` on one."""
    from competition.recipe import load_recipe

    path = tmp_path / "alias.yaml"
    original = ("name: alias\n"
                "augment: [{Affine: &shared {rotate: [-5, 5], p: 0.5}}, {Affine: *shared}]\n"
                "train:\n  phases:\n    - &phase {epochs: 2, learning_rate: 0.01}\n    - *phase\n")
    path.write_text(original)
    recipe = load_recipe(path, ["train.phases.1.learning_rate=0.5", "augment.1.Affine.p=0.25"])
    assert [p.learning_rate for p in recipe.train.phases] == [0.01, 0.5]
    assert [step["Affine"]["p"] for step in recipe.augment] == [0.5, 0.25]
    assert path.read_text() == original


# ---------------------------------------------------------------- kind 5: values coerced or checked too late


def test_yaml_boolean_epochs_refused_in_the_file_and_in_set(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           tiny_contest: Path) -> None:
    """Example: `--set train.phases.0.epochs=yes` trained one epoch and exited 0 (True counted as 1). Refused
    in the recipe file and in --set alike, echoing what was written; `train` makes no run folder."""
    from competition.recipe import load_recipe

    expected = "recipe.train.phases[0].epochs: expected an integer, got True ('yes')"
    path = tmp_path / "r.yaml"
    path.write_text(NETWORK_RECIPE)
    with pytest.raises(CompetitionError) as exc:
        load_recipe(path, ["train.phases.0.epochs=yes"])
    _one_line(exc, expected)
    path.write_text(NETWORK_RECIPE.replace("{epochs: 1}", "{epochs: yes}"))
    with pytest.raises(CompetitionError) as exc:
        load_recipe(path)
    _one_line(exc, expected)
    path.write_text(NETWORK_RECIPE)
    code, lines = _cli(capsys, "train", path, "--data", tiny_contest, "--runs", tmp_path / "runs",
                       "--set", "train.phases.0.epochs=yes", "--executor", "local")
    assert code == 2 and len(lines) == 1 and expected in lines[0], (code, lines)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("given", "expected"), [
    (["data.channels=true"], "recipe.data.channels: expected an integer, got True"),
    (["model.filters=[4, on]"], "recipe.model.filters[1]: expected an integer, got True ('on')"),
    (["data.intensity_window=[no, 1000]"], "recipe.data.intensity_window[0]: expected a number, got False ('no')"),
    (["train.phases.0.learning_rate=on"], "recipe.train.phases[0].learning_rate: expected a number, got True ('on')"),
    (["balance={method: class_weight, weights: {Alpha: yes}}"],
     "recipe.balance.weights.Alpha: expected a number, got True ('yes')"),
    (["resources.gpus_per_fold=yes"], "recipe.resources.gpus_per_fold: expected a number, got True ('yes')"),
    (["train.mixed_precision=1"], "recipe.train.mixed_precision: expected true or false, got 1"),
    (["train.phases.0.augment=0"], "recipe.train.phases[0].augment: expected true or false, got 0"),
    (["train.jit_compile=0"], "recipe.train.jit_compile: expected true, false or 'auto', got 0"),
    (["augment=[{HorizontalFlip: {p: yes}}]"], f"recipe.augment[0].p: expected a number, got True {YES}"),
    (["augment=[{Affine: {rotate: [-10, on]}}]"], "recipe.augment[0].rotate: expected a number, got [-10, True]"),
    (["model={kind: knn, params: {n_neighbors: yes}}", "train={}"],
     "recipe.model.params.n_neighbors: expected an int in the range [1, inf) or None, got True"),
])
def test_no_boolean_passes_as_a_number_anywhere(tmp_path: Path, given: list[str], expected: str) -> None:
    """Further members: `data.channels: true` read as 1 channel, `p: yes` of an albumentations step as p=1.0,
    `model.params.n_neighbors: yes` as one neighbour, a list or mapping holding a boolean (filters, window,
    class weights), and the other way round a number read as a boolean (`mixed_precision: 1`, `augment: 0`,
    `jit_compile: 0`). Each is one line naming the key; booleans stay welcome where they are booleans."""
    from competition.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: b\ndata: {image_size: 16}\n")
    with pytest.raises(CompetitionError) as exc:
        load_recipe(path, given)
    _one_line(exc, expected)
    legit = load_recipe(path, ["train.jit_compile=auto", "train.phases.0.augment=no", "train.mixed_precision=false",
                               "augment=[{Affine: {keep_ratio: yes, rotate: [-5, 5]}}]"])
    assert legit.train.phases[0].augment is False and legit.augment[0]["Affine"]["keep_ratio"] is True
    assert load_recipe(path, ["model={kind: logistic, params: {fit_intercept: no}}", "train={}"]).model.params == {
        "fit_intercept": False}


def _save_cnn_weights(path: Path, filters: list[int]) -> Path:
    from competition.model.backbones import BACKBONES

    BACKBONES["cnn"].build((16, 16, 1), SimpleNamespace(filters=filters)).save_weights(str(path))
    return path


def _narrow_mobilenetv2_h5(path: Path) -> Path:
    """A Keras 2 (legacy) no-top weights file whose first layer, Conv1, has 16 filters, as MobileNetV2 at alpha
    0.35 or 0.5 has (alpha 1.0 has 32): the layout of Keras's published files, with one layer."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"Conv1"]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.15.0"
        handle.create_dataset("Conv1/Conv1/kernel", data=np.zeros((3, 3, 3, 16), np.float32))
        handle["Conv1"].attrs["weight_names"] = [b"Conv1/kernel"]
    return path


@pytest.mark.slow
def test_weights_of_another_shape_refused_before_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Example: weights of a MobileNetV2 of another width passed `doctor`; `train` printed Keras's warnings
    (one per variable) and an error cut off mid-sentence. Now `doctor` and `train` (before decoding any image,
    before the run folder) load the file into the declared backbone and say in one line which weight does
    not fit. Here: the small CNN's weights saved at filters [8] (Keras 3 format) for a recipe of filters [4],
    and a narrow MobileNetV2 file (Keras 2 format) for alpha 1.0."""
    import warnings

    from competition.recipe import load_recipe
    from competition.training import train_run

    contest = small_contest(tmp_path / "contest")
    weights = _save_cnn_weights(tmp_path / "cnn8.weights.h5", [8])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(NETWORK_RECIPE.replace("filters: [4]", f"filters: [4], weights: {weights}"))
    check = doctor(recipe, contest)["weights"]
    assert not check.ok and "does not fit backbone 'cnn' with filters [4]" in check.detail, check.detail
    assert "block1_conv/kernel" in check.detail and "\n" not in check.detail
    monkeypatch.setenv("COMPETITION_CACHE_DIR", str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CompetitionError) as exc:
        warnings.simplefilter("always")
        train_run(load_recipe(recipe), tmp_path / "runs", data_root=contest)
    _one_line(exc, "does not fit backbone 'cnn'", "block1_conv/kernel", "3x3x1x4")
    assert not [w for w in caught if "keras" in str(w.filename)], [str(w.message) for w in caught][:3]
    assert not (tmp_path / "runs" / "net").exists() and not (tmp_path / "cache").exists()  # nothing decoded

    from competition.model.backbones import check_weights

    narrow = _narrow_mobilenetv2_h5(tmp_path / "narrow.h5")
    config = SimpleNamespace(backbone="mobilenetv2", weights=str(narrow), alpha=None, filters=[])
    with pytest.raises(CompetitionError) as exc:
        check_weights(config, (32, 32), 1)
    _one_line(exc, f"{narrow} does not fit backbone 'mobilenetv2' at alpha 1", "Conv1", "3x3x3x32", "3x3x3x16")
    # the same width as the file's is no problem
    assert check_weights(SimpleNamespace(backbone="cnn", weights=str(weights), alpha=None, filters=[8]),
                         (16, 16), 1) == weights


def test_a_cached_imagenet_file_of_another_width_fails_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Further member: `weights: imagenet` with a MobileNet file of another width copied under the expected
    cache name (Keras checks no hash for the MobileNets) passed `doctor` as 'imagenet: <file>'."""
    from competition.model.backbones import keras_cache_dir

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = keras_cache_dir() / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    cached.parent.mkdir(parents=True)
    _narrow_mobilenetv2_h5(cached)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: m\ndata: {image_size: 32}\nmodel: {backbone: mobilenetv2, weights: imagenet}\n")
    check = doctor(recipe)["weights"]
    assert not check.ok and f"{cached} does not fit backbone 'mobilenetv2' at alpha 1" in check.detail, check.detail


SHARED = Path("/work/shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")


@pytest.mark.skipif(not SHARED.is_file(), reason="the real MobileNetV2 0.35 weights are not on this machine")
@pytest.mark.slow
def test_real_mobilenetv2_weights_checked_against_alpha(tmp_path: Path) -> None:
    """Example, with Keras's real ImageNet values (MobileNetV2 at alpha 0.35): declared at alpha 0.5 they fail
    `doctor` naming the first layer that differs; declared at 0.35 they pass."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: m\ndata: {{image_size: 32}}\nmodel: {{backbone: mobilenetv2, alpha: 0.5, "
                      f"weights: {SHARED}}}\n")
    check = doctor(recipe)["weights"]
    assert not check.ok and "at alpha 0.5" in check.detail and "block_1_project" in check.detail, check.detail
    recipe.write_text(recipe.read_text().replace("alpha: 0.5", "alpha: 0.35"))
    assert doctor(recipe)["weights"].ok


# ---------------------------------------------------------------- kind 6: degenerate files


@pytest.mark.parametrize("text", ["id,label\n", "\ufeffid,label\n", "id,label\n\n\n"])
def test_train_csv_holding_only_its_header(tmp_path: Path, text: str) -> None:
    """Example: a train.csv holding only its header raised IndexError in `doctor` and `train`. Further member:
    the same header followed by blank lines (or after a byte-order mark)."""
    from competition.data import index_contest
    from competition.recipe import load_recipe
    from competition.training import train_run

    contest = small_contest(tmp_path / "contest", csv=True)
    (contest / "train.csv").write_text(text)
    expected = f"{contest / 'train.csv'}: no rows, only the header"
    with pytest.raises(CompetitionError) as exc:
        index_contest(contest)
    _one_line(exc, expected)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(NETWORK_RECIPE)
    check = doctor(recipe, contest)["data"]
    assert not check.ok and expected in check.detail, check.detail
    with pytest.raises(CompetitionError) as exc:
        train_run(load_recipe(recipe), tmp_path / "runs", data_root=contest)
    _one_line(exc, expected)
    assert not (tmp_path / "runs").exists()


def test_a_sample_holding_only_its_header(finished: Path, tmp_path: Path) -> None:
    """Further member: a sample_submission.csv holding only its header. `submit --sample` wrote a submission
    of the header alone and exited 0, `validate` called such a submission valid, and a contest with it was
    reported as '4 images in test are not in the sample'. Each now says the sample has no rows."""
    from competition.data import index_contest
    from competition.submission import submit, validate_file

    header = tmp_path / "header.csv"
    header.write_text("id,label\n")
    out = tmp_path / "out.csv"
    with pytest.raises(CompetitionError) as exc:
        submit(["tiny"], finished.parent, sample=header, out=out)
    _one_line(exc, f"{header}: no rows, only the header")
    assert not out.exists()
    with pytest.raises(CompetitionError) as exc:
        validate_file(header, header)
    _one_line(exc, f"{header}: no rows, only the header")
    contest = small_contest(tmp_path / "contest")
    (contest / "sample_submission.csv").write_text("id,label\r\n")
    with pytest.raises(CompetitionError) as exc:
        index_contest(contest)
    _one_line(exc, f"{contest / 'sample_submission.csv'}: no rows, only the header")


def test_doctor_reads_every_image_header(tmp_path: Path) -> None:
    """Further members: a zero-byte training image, and a test file with the DICOM preamble and nothing else,
    passed `doctor` ('all ok'); `train` then stopped at them. `doctor` now names them as `train` does, and
    honours data.on_bad_image: skip for training images."""
    contest = small_contest(tmp_path / "contest")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(NETWORK_RECIPE)
    (contest / "train" / "Beta" / "b0.png").write_bytes(b"")
    check = doctor(recipe, contest)["data"]
    assert not check.ok and f"1 unreadable training image: {contest / 'train' / 'Beta' / 'b0.png'} (empty file)" \
        in check.detail, check.detail
    recipe.write_text(NETWORK_RECIPE.replace("channels: 1}", "channels: 1, on_bad_image: skip}"))
    check = doctor(recipe, contest)["data"]
    assert check.ok and "1 unreadable, skipped" in check.detail, check.detail
    (contest / "test" / "t0.png").unlink()
    (contest / "test" / "t0").write_bytes(b"\0" * 128 + b"DICM")
    check = doctor(recipe, contest)["data"]
    assert not check.ok and f"1 unreadable test image: {contest / 'test' / 't0'}" in check.detail, check.detail
    # the issue's other degenerate files were already one line each; they stay so
    for path in (contest / "train" / "Beta").iterdir():
        path.unlink()
    check = doctor(recipe, contest)["data"]
    assert not check.ok and f"{contest / 'train' / 'Beta'}: class folder holds no images" in check.detail
    (contest / "sample_submission.csv").write_bytes(b"")
    check = doctor(recipe, contest)["data"]
    assert not check.ok and "sample_submission.csv: cannot read as CSV (empty file" in check.detail, check.detail
