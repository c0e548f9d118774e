"""Issue 15, "Nothing silent, nothing stale, nothing half-written": one test per reported case, written as the
behaviour EXPECTED after the fix (many fail until it lands).

Every test builds its own tiny contest or run folder (16 px images, 6-10 a class, 2 classes) and drives the tool
only through its command line: the installed `competition` script in a subprocess (so exit codes, the one-line
errors of `competition.cli.main` and stray tracebacks are what a user sees). Nothing inside the package is
imported, so these tests survive the package being reorganised.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faultkit import COMPETITION, DISK_FULL_SHIM, TINY, TINY_SETS, cli, one_line_error, tiny_recipe



RECIPE = tiny_recipe("ft")


# ---------------------------------------------------------------- helpers




def image(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def pixels(rng: np.random.Generator, level: int, size: int = 16) -> np.ndarray:
    """8-bit grey noise around `level` (classes differ in brightness, so a tiny model learns something)."""
    return np.clip(rng.normal(level, 25, (size, size)), 0, 255).astype(np.uint8)


def make_contest(root: Path, classes: tuple[str, ...] = ("Alpha", "Beta"), per_class: int = 8, n_test: int = 4,
                 test_ids: list[str] | None = None, train_names: dict[str, list[str]] | None = None,
                 sample_header: str = "id,label", sample_value: str | None = None, seed: int = 0) -> Path:
    """train/<Class>/<id>.png (16 px), test/<id>.png and sample_submission.csv naming exactly the test ids."""
    rng = np.random.default_rng(seed)
    for k, cls in enumerate(classes):
        names = (train_names or {}).get(cls) or [f"{cls[:1].lower()}{i}" for i in range(per_class)]
        for name in names:
            image(root / "train" / cls / f"{name}.png", pixels(rng, 60 + 120 * k))
    test_ids = test_ids or [f"t{i}" for i in range(n_test)]
    for i, tid in enumerate(test_ids):
        image(root / "test" / f"{tid}.png", pixels(rng, 60 + 120 * (i % len(classes))))
    value = sample_value if sample_value is not None else classes[0]
    (root / "sample_submission.csv").write_text(sample_header + "\n" + "".join(f"{t},{value}\n" for t in test_ids))
    return root


def recipe(folder: Path, text: str = RECIPE, name: str = "ft.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def leaderboard_json(runs: Path, cwd: Path) -> list[dict]:
    board = cli("leaderboard", "--runs", runs, "--format", "json", cwd=cwd)
    assert board.returncode == 0 and "Traceback" not in board.output, board.output[-3000:]
    return json.loads(board.stdout)


# ================================================================ 1. ids and labels are text


def test_trailing_space_label_stops_naming_the_rows(tmp_path: Path) -> None:
    root = tmp_path / "c"  # the train.csv layout: images directly in train/
    rng = np.random.default_rng(1)
    rows = ["id,label"]
    for i in range(8):  # a0..a3 "Alpha", a4..a7 "Alpha " (trailing space), b0..b7 "Beta"
        image(root / "train" / f"a{i}.png", pixels(rng, 60))
        rows.append(f"a{i},Alpha" + (" " if i >= 4 else ""))
    for i in range(8):
        image(root / "train" / f"b{i}.png", pixels(rng, 180))
        rows.append(f"b{i},Beta")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    for i in range(4):
        image(root / "test" / f"t{i}.png", pixels(rng, 120))
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},Alpha\n" for i in range(4)))

    result = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    line = one_line_error(result, "train.csv", "Alpha")
    assert re.search(r"\ba[4-7]\b", line), f"the rows with 'Alpha ' are not named: {line}"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_na_like_names_stay_literal_strings(tmp_path: Path) -> None:
    # A class folder named None, a training image null.png, a test image NA.png; the default executor.
    root = make_contest(tmp_path / "c", classes=("None", "Beta"), test_ids=["NA", "t1", "t2", "t3"],
                        train_names={"Beta": ["null", *[f"b{i}" for i in range(1, 8)]]})
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY_SETS, "--executor", "process",
                  cwd=tmp_path)
    assert trained.returncode == 0, trained.output[-3000:]
    assert "did not finish" not in trained.output and "does not match" not in trained.output

    board = cli("leaderboard", "--runs", runs, "--format", "json", cwd=tmp_path)
    assert board.returncode == 0 and "Warning" not in board.stderr, board.output[-3000:]
    row = json.loads(board.stdout)[0]
    assert set(row["per_class"]) == {"None", "Beta"}
    assert row["per_class"]["None"]["support"] == 8 and row["per_class"]["Beta"]["support"] == 8
    folds = read_csv(runs / "ft" / "folds.csv")
    assert {r["label"] for r in folds} == {"None", "Beta"} and "null" in {r["id"] for r in folds}

    out = tmp_path / "sub.csv"
    submitted = cli("submit", "ft", "--runs", runs, "--out", out, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.output[-3000:]
    written = read_csv(out)
    assert [r["id"] for r in written] == ["NA", "t1", "t2", "t3"]
    assert {r["label"] for r in written} <= {"None", "Beta"}


@pytest.mark.slow
def test_binary_one_column_sample_gets_the_positive_probability(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c", classes=("benign", "malignant"), sample_header="id,target",
                        sample_value="0.5")
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert trained.returncode == 0, trained.output[-3000:]

    out = tmp_path / "sub.csv"
    submitted = cli("submit", "ft", "--runs", runs, "--out", out, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.output[-3000:]
    header = out.read_text().splitlines()[0]
    assert header == "id,target"
    written = read_csv(out)
    assert [r["id"] for r in written] == ["t0", "t1", "t2", "t3"]
    try:
        values = np.array([float(r["target"]) for r in written])
    except ValueError:
        pytest.fail(f"the probability column holds class names: {[r['target'] for r in written]}")
    assert ((values >= 0) & (values <= 1)).all(), values
    test = np.load(runs / "ft" / "test.npy")
    order = [r["id"] for r in read_csv(runs / "ft" / "test_ids.csv")]
    by_id = test[[order.index(r["id"]) for r in written]]
    assert any(np.allclose(values, by_id[:, k], atol=1e-3) for k in range(2)), (values, by_id)
    checked = cli("validate", out, "--sample", root / "sample_submission.csv", cwd=tmp_path)
    assert checked.returncode == 0, checked.output


@pytest.mark.slow
def test_macosx_folder_in_train_is_skipped(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    for cls, first in (("Alpha", "a0"), ("Beta", "b0")):  # what unzipping a Mac zip leaves
        fork = root / "train" / "__MACOSX" / cls / f"._{first}.png"
        fork.parent.mkdir(parents=True, exist_ok=True)
        fork.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        AppleDouble")
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert trained.returncode == 0, trained.output[-3000:]
    assert "__MACOSX" not in trained.output
    assert set(leaderboard_json(runs, tmp_path)[0]["per_class"]) == {"Alpha", "Beta"}


# ================================================================ 2. a recipe is fully checked first; doctor agrees


def test_crop_larger_than_image_size_is_a_recipe_error(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    path = recipe(tmp_path, RECIPE + "augment:\n  - RandomCrop: {height: 24, width: 24}\n")

    doctor = cli("doctor", path, "--data", root, cwd=tmp_path)
    assert doctor.returncode == 1 and "FAIL" in doctor.output and "RandomCrop" in doctor.output, doctor.output
    assert "Traceback" not in doctor.output

    trained = cli("train", path, "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    line = one_line_error(trained, "recipe.augment[0]", "RandomCrop")
    assert "24" in line and "16" in line, line
    assert not (tmp_path / "runs").exists()

    preview = cli("augment-preview", path, "--data", root, "--out", tmp_path / "p.png", cwd=tmp_path)
    one_line_error(preview, "recipe.augment[0]", "RandomCrop")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_class_weights_naming_an_unknown_class_fail_before_the_run_folder(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    bad = recipe(tmp_path, RECIPE + "balance: {method: class_weight, weights: {Alpha: 1, Btea: 3}}\n")

    doctor = cli("doctor", bad, "--data", root, cwd=tmp_path)
    assert doctor.returncode == 1 and "FAIL" in doctor.output and "Btea" in doctor.output, doctor.output

    runs = tmp_path / "runs"
    one_line_error(cli("train", bad, "--data", root, "--runs", runs, *TINY, cwd=tmp_path), "Btea")
    assert not runs.exists()

    bad.write_text(RECIPE + "balance: {method: class_weight, weights: {Alpha: 1, Beta: 3}}\n")  # corrected
    fixed = cli("train", bad, "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.output[-3000:]
    assert (runs / "ft" / "run.json").is_file()


def test_key_given_twice_in_yaml_is_an_error(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    path = recipe(tmp_path, RECIPE + "cv: {folds: 3}\n")  # `cv:` on line 5 and again on line 6
    line = one_line_error(cli("train", path, "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path),
                          "'cv'", "twice")
    assert re.search(r"line [56]\b", line), line
    assert not (tmp_path / "runs").exists()


def _alias_bomb(where: str) -> str:
    """Nine levels of ten-fold aliases (10**9 leaves if expanded) at `where`."""
    levels = ["&a0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    if where == "train.batch_size":
        return RECIPE.replace("train: {batch_size: 8, phases: [{epochs: 1}]}\n",
                              "train:\n  batch_size:\n" + "".join(f"    - {level}\n" for level in levels))
    if where == "name":
        return RECIPE.replace("name: ft\n", "name:\n" + "".join(f"  - {level}\n" for level in levels))
    return RECIPE + "augment:\n  - Rotate:\n      limit:\n" + "".join(f"        - {level}\n" for level in levels)


@pytest.mark.parametrize("where", ["train.batch_size", "name", "augment"])
def test_yaml_alias_bomb_is_refused_at_once(where: str, tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c", per_class=6, n_test=2)
    path = recipe(tmp_path, _alias_bomb(where))
    try:
        result = cli("train", path, "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"alias bomb under {where}: train still running after 20 s")
    one_line_error(result)
    assert len(result.error_lines[0]) < 1000, f"the error echoes {len(result.error_lines[0])} characters"
    assert result.seconds < 5, f"took {result.seconds:.1f} s"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("override", "key"), [("cv.seed=-1", "recipe.cv.seed"),
                                               ("data.image_size=4294967296", "recipe.data.image_size")])
def test_out_of_range_values_are_one_line(override: str, key: str, tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c", per_class=6, n_test=2)
    result = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, "--set", override,
                 cwd=tmp_path)
    one_line_error(result, key)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_bogus_group_by_is_reported_before_decoding(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    cache = tmp_path / "fresh-cache"
    result = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY,
                 "--set", "cv.group_by=bogus", cwd=tmp_path, env={"COMPETITION_CACHE_DIR": str(cache)})
    one_line_error(result, "cv.group_by", "bogus")
    assert not (tmp_path / "runs").exists()
    decoded = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert decoded == [], f"images were decoded before the recipe error: {decoded}"


# ================================================================ 3. resume reuses only what would train the same


@pytest.mark.slow
def test_changed_test_images_are_predicted_again(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    path, runs = recipe(tmp_path), tmp_path / "runs"
    command = ("train", path, "--data", root, "--runs", runs, *TINY, "--deterministic")
    first = cli(*command, cwd=tmp_path)
    assert first.returncode == 0, first.output[-3000:]
    before = np.load(runs / "ft" / "test.npy")

    rng = np.random.default_rng(99)  # same ids, other pictures
    for i, test_image in enumerate(sorted((root / "test").iterdir())):
        image(test_image, pixels(rng, 230 if i % 2 else 10))
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.output, rerun.output[-3000:]
    after = np.load(runs / "ft" / "test.npy")
    assert not np.array_equal(before, after), "test.npy is unchanged although the test images changed"

    fresh = cli("train", path, "--data", root, "--runs", tmp_path / "fresh", *TINY, "--deterministic", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.output[-3000:]
    np.testing.assert_allclose(after, np.load(tmp_path / "fresh" / "ft" / "test.npy"), atol=1e-6)


@pytest.mark.slow
def test_added_training_image_retrains_instead_of_crashing(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    path, runs = recipe(tmp_path), tmp_path / "runs"
    command = ("train", path, "--data", root, "--runs", runs, *TINY)
    first = cli(*command, cwd=tmp_path)
    assert first.returncode == 0, first.output[-3000:]

    image(root / "train" / "Beta" / "b8.png", pixels(np.random.default_rng(5), 180))
    rerun = cli(*command, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.output, rerun.output[-3000:]
    folds = read_csv(runs / "ft" / "folds.csv")
    assert len(folds) == 17 and "b8" in {r["id"] for r in folds}
    assert np.load(runs / "ft" / "oof.npy").shape == (17, 2)


@pytest.mark.slow
def test_two_trains_on_one_run_folder_do_not_both_train(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    path, runs = recipe(tmp_path), tmp_path / "runs"
    command = [COMPETITION, "train", str(path), "--data", str(root), "--runs", str(runs), *TINY]
    procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        outputs.append((proc.returncode, out, err))

    for code, out, err in outputs:
        assert "Traceback" not in out + err and "did not finish" not in out + err, (out + err)[-3000:]
    trained = [i for i, (_, out, err) in enumerate(outputs) if re.search(r"fold \d+: best epoch", out + err)]
    assert len(trained) <= 1, f"both commands trained folds:\n{outputs[0][1][-1500:]}\n---\n{outputs[1][1][-1500:]}"
    for i, (code, out, err) in enumerate(outputs):
        if i in trained:
            assert code == 0, (out + err)[-3000:]
        elif code != 0:  # refused: one line naming the lock or its holder
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and re.search(r"lock|held|holder|pid|in use", lines[0], re.I), err
        else:  # waited, then reused the folds the other one trained
            assert "reused" in out + err, out + err
    assert (runs / "ft" / "run.json").is_file()
    assert leaderboard_json(runs, tmp_path)[0]["run"] == "ft"


def _cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])



@pytest.mark.slow
def test_truncated_cache_entry_is_decoded_again(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c")
    path, cache = recipe(tmp_path), tmp_path / "cache"
    env = {"COMPETITION_CACHE_DIR": str(cache)}
    first = cli("train", path, "--data", root, "--runs", tmp_path / "runs1", *TINY, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.output[-3000:]
    entries = {p: p.stat().st_size for p in cache.rglob("*.npy")}
    assert entries, "nothing was cached"
    for entry in entries:
        _cut(entry, 0.5)

    again = cli("train", path, "--data", root, "--runs", tmp_path / "runs2", *TINY, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "Traceback" not in again.output, again.output[-3000:]
    assert "mmap" not in again.output
    assert {p: p.stat().st_size for p in entries if p.exists()} == {p: s for p, s in entries.items() if p.exists()}


# ================================================================ 5. every message names the real culprit


def test_dangling_symlink_is_named_as_a_broken_link(tmp_path: Path) -> None:
    root = make_contest(tmp_path / "c", test_ids=["t0", "t1", "t2", "t9"])
    (root / "test" / "t9.png").unlink()
    (root / "test" / "t9.png").symlink_to(tmp_path / "gone" / "t9.png")
    result = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    line = one_line_error(result, "t9.png")
    assert re.search(r"link", line, re.I), line
    assert "not a supported image type" not in line
    assert not (tmp_path / "runs").exists()




@pytest.mark.slow
def test_disk_full_names_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    shim_c = tmp_path / "full.c"
    shim_c.write_text(DISK_FULL_SHIM)
    shim = tmp_path / "full.so"
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to simulate a full disk"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(shim), str(shim_c), "-ldl"], check=True)

    root = make_contest(tmp_path / "c")
    runs = tmp_path / "runs"
    runs.mkdir()
    env = {"LD_PRELOAD": str(shim), "FULL_UNDER": str(runs) + "/", "FULL_CONTAINS": ".keras"}  # saving a model
    result = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path, env=env)
    line = one_line_error(result, code=None)
    assert "fold_" in line and "model" in line and "runs" in line, f"the file and its folder are not named: {line}"
    hidden = [str(p.relative_to(runs)) for p in runs.rglob(".*")]
    assert hidden == [], f"temporary files left behind: {hidden}"


def test_validate_names_a_row_with_a_field_too_many(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("id,Alpha,Beta\nt0,0.5,0.5\nt1,0.5,0.5\nt2,0.5,0.5\n")
    submission = tmp_path / "sub.csv"
    submission.write_text("id,Alpha,Beta\nt0,0.2,0.8,0.1\nt1,0.3,0.7\nt2,0.6,0.4\n")
    result = cli("validate", submission, "--sample", sample, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert re.search(r"row 1\b.*\b4 fields\b.*\bheader\b.*\b3\b", result.output), result.output
    assert "duplicate" not in result.output and "'0.5'" not in result.output and "empty" not in result.output


def test_validate_inf_without_numpy_warnings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("id,Alpha,Beta\nt0,0.5,0.5\nt1,0.5,0.5\n")
    submission = tmp_path / "sub.csv"
    submission.write_text("id,Alpha,Beta\nt0,inf,0.5\nt1,-inf,inf\n")  # inf - inf: numpy warns
    result = cli("validate", submission, "--sample", sample, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert "Warning" not in result.output, result.output
    lines = result.error_lines
    assert lines and all(line.startswith(str(submission)) for line in lines), result.stderr
    assert "inf" in result.output and re.search(r"rows? 1\b", result.output) and re.search(r"\b2\b", result.output), \
        result.output


# ================================================================ 6. pixel values mean the same in every image


def _intensity_contest(root: Path, bits: int) -> Path:
    """Two classes with the same textures, told apart only by brightness (about 16,000 vs 48,000 of 65,535)."""
    rng = np.random.default_rng(7)

    def picture(level: float) -> np.ndarray:
        grey = np.clip(rng.normal(level, 4000, (16, 16)), 0, 65535)
        return grey.astype(np.uint16) if bits == 16 else (grey / 257).round().astype(np.uint8)

    for cls, level in (("dim", 16000), ("bright", 48000)):
        for i in range(10):
            image(root / "train" / cls / f"{cls}{i}.png", picture(level))
    for i in range(4):
        image(root / "test" / f"t{i}.png", picture(16000 if i % 2 else 48000))
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},dim\n" for i in range(4)))
    return root


@pytest.mark.slow
def test_16_bit_pngs_keep_their_brightness(tmp_path: Path) -> None:
    path = recipe(tmp_path)
    longer = ["--set", "train.phases.0.epochs=12", "--set", "train.phases.0.learning_rate=0.01",
              "--set", "train.batch_size=4", "--deterministic"]
    scores = {}
    for bits in (8, 16):
        root = _intensity_contest(tmp_path / f"c{bits}", bits)
        if bits == 16:
            assert Image.open(root / "train" / "dim" / "dim0.png").mode.startswith("I")
        runs = tmp_path / f"runs{bits}"
        trained = cli("train", path, "--data", root, "--runs", runs, *TINY, *longer, cwd=tmp_path)
        assert trained.returncode == 0, trained.output[-3000:]
        scores[bits] = leaderboard_json(runs, tmp_path)[0]["macro_f1"]
        said = trained.output
    assert scores[8] >= 0.9, f"the 8-bit control does not learn brightness: {scores}"
    assert scores[16] >= 0.9, f"16-bit images lose their brightness: OOF macro F1 {scores}"
    assert re.search(r"16[- ]bit", said), "the mapping used for the 16-bit images is not said"
