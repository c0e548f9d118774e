"""Issue 15, kind 1 ("Ids and labels are text, compared as the user wrote them"): new cases written from the kind
alone, tried through the command line as a new user would (tiny contests of 16 px images, 2 folds, 1 epoch)."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faultkit import TINY, cli, one_line_error, tiny_recipe

RECIPE = tiny_recipe("ft")


def image(path: Path, level: int, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rng.normal(level, 25, (16, 16)), 0, 255).astype(np.uint8)).save(path)


def contest(root: Path, classes: tuple[str, ...] = ("Alpha", "Beta"), n: int = 6, test_ids: tuple[str, ...] = (),
            sample: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        for i in range(n):
            image(root / "train" / cls / f"{k}x{i}.png", 60 + 100 * k, rng)
    test_ids = test_ids or tuple(f"t{i}" for i in range(4))
    for i, tid in enumerate(test_ids):
        image(root / "test" / f"{tid}.png", 60 + 100 * (i % len(classes)), rng)
    (root / "sample_submission.csv").write_text(sample or "id,label\n" + "".join(f"{t},{classes[0]}\n" for t in test_ids))
    return root


def recipe(folder: Path) -> Path:
    (folder / "ft.yaml").write_text(RECIPE)
    return folder / "ft.yaml"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_leading_zero_ids_and_boolean_looking_labels_stay_as_written(tmp_path: Path) -> None:
    """train.csv ids '007', '08' and labels 'True'/'False': a spreadsheet-minded reader would make numbers and
    booleans of them; the run and the submission keep the user's text."""
    root, rng = tmp_path / "c", np.random.default_rng(2)
    lines = ["id,label"]
    for i in range(12):
        ident = f"{i:03d}"
        image(root / "train" / f"{ident}.png", 60 if i % 2 else 180, rng)
        lines.append(f"{ident},{'True' if i % 2 else 'False'}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    for ident in ("00", "01", "010", "1e3"):
        image(root / "test" / f"{ident}.png", 120, rng)
    (root / "sample_submission.csv").write_text("id,label\n00,True\n01,True\n010,True\n1e3,True\n")
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    out = tmp_path / "sub.csv"
    submitted = cli("submit", "ft", "--runs", runs, "--out", out, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    written = rows(out)
    assert [r["id"] for r in written] == ["00", "01", "010", "1e3"]
    assert {r["label"] for r in written} <= {"True", "False"}


def test_class_folders_differing_only_in_unicode_form_stop_naming_both(tmp_path: Path) -> None:
    """'Café' written twice, once composed (NFC, Linux) and once decomposed (NFD, what a Mac writes): two
    folders that print alike would be two classes."""
    nfc, nfd = unicodedata.normalize("NFC", "Café"), unicodedata.normalize("NFD", "Café")
    root = contest(tmp_path / "c", classes=(nfc, nfd, "Beta"))
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    line = one_line_error(done, "class folders", "train")
    assert repr(nfc) in line and repr(nfd) in line, line
    assert not (tmp_path / "runs").exists()


def test_sample_ids_with_surrounding_whitespace_are_named(tmp_path: Path) -> None:
    """The sample lists 't1 ' (a trailing space): ids are compared as written, and the message says why
    't1 ' has no image although t1.png is there."""
    root = contest(tmp_path / "c", sample="id,label\nt0,Alpha\nt1 ,Alpha\nt2,Alpha\nt3,Alpha\n")
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    one_line_error(done, "sample_submission.csv", "'t1 '", "whitespace")
    assert not (tmp_path / "runs").exists()


def test_validate_keeps_na_like_ids_and_labels_literal(tmp_path: Path) -> None:
    """A sample whose ids are 'NA', 'None', 'null', 'nan', 'N/A' and whose classes are 'NA' and 'None':
    validating a submission of those ids and labels passes, and 'N/A' is not taken for 'NA'."""
    ids = ["NA", "None", "null", "nan", "N/A"]
    sample = tmp_path / "sample.csv"
    sample.write_text("id,label\n" + "".join(f"{i},NA\n" for i in ids))
    good = tmp_path / "good.csv"
    good.write_text("id,label\n" + "".join(f"{i},{'None' if k % 2 else 'NA'}\n" for k, i in enumerate(ids)))
    done = cli("validate", good, "--sample", sample, "--classes", "NA,None", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n" + "".join(f"{i},{'N/A' if k == 2 else 'NA'}\n" for k, i in enumerate(ids)))
    done = cli("validate", bad, "--sample", sample, "--classes", "NA,None", cwd=tmp_path)
    line = one_line_error(done, "unknown labels", "'N/A'", code=1)
    assert "row 3" in line and "empty" not in done.stderr and "duplicate" not in done.stderr


def test_one_probability_column_with_three_classes_is_refused_before_training(tmp_path: Path) -> None:
    """`id,target` with 0.5 asks for one probability: it fits two classes, not three; say so before training."""
    root = contest(tmp_path / "c", classes=("Alpha", "Beta", "Gamma"),
                   sample="id,target\nt0,0.5\nt1,0.5\nt2,0.5\nt3,0.5\n")
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    one_line_error(done, "sample_submission.csv", "'target'", "3 classes")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_macosx_folder_in_test_is_skipped(tmp_path: Path) -> None:
    """A Mac zip leaves test/__MACOSX/ too: not a folder of test images."""
    root = contest(tmp_path / "c")
    fork = root / "test" / "__MACOSX" / "._t0.png"
    fork.parent.mkdir(parents=True)
    fork.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        AppleDouble")
    runs = tmp_path / "runs"
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert done.returncode == 0 and "__MACOSX" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    assert [r["id"] for r in rows(runs / "ft" / "test_ids.csv")] == ["t0", "t1", "t2", "t3"]


@pytest.mark.slow
def test_binary_column_named_after_a_class_gets_that_class_probability(tmp_path: Path) -> None:
    """`id,benign` in a benign/malignant contest asks for P(benign), not P(malignant) (the sorted second)."""
    root = contest(tmp_path / "c", classes=("benign", "malignant"),
                   sample="id,benign\nt0,0.5\nt1,0.5\nt2,0.5\nt3,0.5\n")
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    out = tmp_path / "sub.csv"
    done = cli("submit", "ft", "--runs", runs, "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = rows(out)
    order = [r["id"] for r in rows(runs / "ft" / "test_ids.csv")]
    test = np.load(runs / "ft" / "test.npy")[[order.index(r["id"]) for r in written]]
    np.testing.assert_allclose([float(r["benign"]) for r in written], test[:, 0], atol=1e-5)
    assert cli("validate", out, "--sample", root / "sample_submission.csv", cwd=tmp_path).returncode == 0
