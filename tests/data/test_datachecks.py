"""Contest checks before any decoding (one line naming the path each), and the preflight decode that lists
every unreadable image at once or skips bad training images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from faultkit import cli
from PIL import Image

from competition.data import index_contest, load_contest
from competition.errors import CompetitionError


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (12, 12), value).save(path)
    return path


def contest(root: Path, classes: dict[str, int] | None = None, n_test: int = 2, sample: str | None = None) -> Path:
    """train/<Class>/<class><i>.png, test/t<i>.png, and a label-format sample naming exactly the test ids."""
    for name, count in (classes or {"a": 3, "b": 3}).items():
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _png(root / "train" / name / f"{name}{i}.png", 40 * i)
    (root / "test").mkdir(parents=True, exist_ok=True)
    for i in range(n_test):
        _png(root / "test" / f"t{i}.png", 10 * i)
    sample = sample if sample is not None else "id,label\n" + "".join(f"t{i},a\n" for i in range(n_test))
    (root / "sample_submission.csv").write_text(sample)
    return root


def csv_contest(root: Path, rows: str, sample: str | None = None) -> Path:
    """train.csv layout: images directly in train/."""
    contest(root, {}, sample=sample)
    (root / "train").mkdir(exist_ok=True)
    for line in rows.strip().splitlines()[1:]:
        _png(root / "train" / f"{line.split(',')[0]}.png")
    (root / "train.csv").write_text(rows)
    return root


def fails(root: Path, *expected: str) -> str:
    with pytest.raises(CompetitionError) as caught:
        index_contest(root)
    message = str(caught.value)
    assert "\n" not in message, message
    for part in expected:
        assert part in message, message
    return message


# ---------------------------------------------------------------- layout


def test_missing_test_folder(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    for image in (root / "test").iterdir():
        image.unlink()
    (root / "test").rmdir()
    fails(root, f"{root / 'test'}: test folder not found")


def test_empty_class_folder(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", {"a": 2, "b": 0})
    (root / "train" / "b" / "notes.txt").write_text("not an image")
    fails(root, f"{root / 'train' / 'b'}: class folder holds no images")


def test_single_class(tmp_path: Path) -> None:
    fails(contest(tmp_path / "c", {"only": 4}), "only one class (only)")


def test_image_directly_in_train_with_class_folders(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    loose = _png(root / "train" / "stray.png")
    fails(root, f"{loose}: image directly in train/", "train/<Class>/<image>")


def test_folder_inside_test(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    _png(root / "test" / "more" / "t9.png")
    fails(root, f"{root / 'test' / 'more'}: folder inside test/")


def test_folder_inside_a_class_folder(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    _png(root / "train" / "a" / "nested" / "x.png")
    fails(root, f"{root / 'train' / 'a' / 'nested'}: folder inside a class folder")


def test_hidden_files_are_not_images(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    (root / "train" / "a" / "._a0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork
    (root / "test" / ".DS_Store").write_bytes(b"\x00")
    found = index_contest(root)
    assert len(found.train) == 6 and found.test["id"].tolist() == ["t0", "t1"]


# ---------------------------------------------------------------- ids


def test_duplicate_train_ids_in_one_class(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    _png(root / "train" / "a" / "a0.bmp")
    fails(root, "id 'a0' is used by two files", str(root / "train" / "a" / "a0.bmp"), str(root / "train" / "a" / "a0.png"))


def test_duplicate_train_ids_across_classes(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    _png(root / "train" / "b" / "a1.png")
    fails(root, f"{root / 'train'}: id 'a1' is used by two files")


def test_duplicate_test_ids(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    Image.new("L", (8, 8)).save(root / "test" / "t1.jpg")
    fails(root, f"{root / 'test'}: id 't1' is used by two files", "t1.jpg", "t1.png")


def test_duplicate_ids_in_train_csv(tmp_path: Path) -> None:
    root = csv_contest(tmp_path / "c", "id,label\nx1,a\nx2,b\nx1,b\n")
    fails(root, f"{root / 'train.csv'}: id 'x1' appears more than once (row 3")


def test_train_csv_id_matching_two_files(tmp_path: Path) -> None:
    root = csv_contest(tmp_path / "c", "id,label\nx1,a\nx2,b\n")
    _png(root / "train" / "x1.bmp")
    fails(root, f"{root / 'train.csv'}: id 'x1' matches 2 files")


def test_train_csv_not_utf8(tmp_path: Path) -> None:
    root = csv_contest(tmp_path / "c", "id,label\nx1,a\nx2,b\n")
    (root / "train.csv").write_bytes("id,label\nx1,Ä\nx2,b\n".encode("latin-1"))
    fails(root, f"{root / 'train.csv'}: not UTF-8")


# ---------------------------------------------------------------- the sample submission


def test_sample_id_without_test_image(tmp_path: Path) -> None:
    sample = "id,label\nt0,a\nt1,a\nt2,a\nt3,a\n"
    root = contest(tmp_path / "c", sample=sample)
    (root / "test" / "t3.heic").write_bytes(b"\x00")
    fails(root, f"{root / 'sample_submission.csv'}: test images do not match the sample",
          "2 sample ids have no image", "e.g. 't2'")
    (root / "test" / "t2.heic").write_bytes(b"\x00")
    fails(root, "e.g. 't2' (found t2.heic, not a supported image type)")


def test_test_image_not_in_sample(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", n_test=3, sample="id,label\nt0,a\nt2,a\n")
    fails(root, "1 image in", "is not in the sample, e.g. 't1.png'")


def test_sample_ids_may_be_file_names(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", sample="id,label\nt0.png,a\nt1.png,a\n")
    assert index_contest(root).test["id"].tolist() == ["t0.png", "t1.png"]


def test_train_label_not_a_sample_column(tmp_path: Path) -> None:
    root = csv_contest(tmp_path / "c", "id,label\nx1,cat\nx2,dog\nx3,cow\n", sample="id,cat,dog\nt0,0.5,0.5\nt1,0.5,0.5\n")
    fails(root, f"{root / 'train.csv'}: label 'cow' (1 image) is not a column of {root / 'sample_submission.csv'}")


def test_class_folder_not_a_sample_column(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", {"a": 2, "b": 2, "c": 2}, sample="id,a,b\nt0,0.5,0.5\nt1,0.5,0.5\n")
    fails(root, f"{root / 'train'}: label 'c' (2 images) is not a column of")


def test_sample_column_without_training_class(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", sample="id,a,b,z\nt0,0.3,0.3,0.4\nt1,0.3,0.3,0.4\n")
    fails(root, f"{root / 'sample_submission.csv'}: column 'z' has no training images")


def test_label_sample_is_not_a_vocabulary(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", sample="id,label\nt0,placeholder\nt1,placeholder\n")
    assert index_contest(root).classes == ["a", "b"]


# ---------------------------------------------------------------- file names


@pytest.mark.parametrize(("name", "shown"), [("tab\there.png", "'\\t'"), ("a,b.png", "','"),
                                             ("two\nlines.png", "'\\n'")])
def test_odd_file_names(tmp_path: Path, name: str, shown: str) -> None:
    root = contest(tmp_path / "c")
    _png(root / "train" / "a" / name)
    message = fails(root, repr(str(root / "train" / "a" / name)), f"file name contains {shown}")
    assert "rename it" in message


def test_odd_class_folder_name(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", {"a": 2, "b,c": 2})
    fails(root, repr(str(root / "train" / "b,c")), "file name contains ','")


def test_non_utf8_file_name(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    raw = os.fsencode(root / "test") + b"/t\xff.png"  # Linux file systems take any bytes but '/' and NUL
    with open(raw, "wb") as handle:
        Image.new("L", (8, 8)).save(handle, "PNG")
    message = fails(root, "file name is not valid UTF-8")
    assert repr(raw) in message


def test_dicom_without_extension_keeps_its_whole_name(tmp_path: Path) -> None:
    from corpus import dicom_no_extension

    root = contest(tmp_path / "c", sample="id,label\nt0,a\n1.2.840.113619.2.55,a\n")
    (root / "test" / "t1.png").unlink()
    dicom_no_extension(root / "test" / "1.2.840.113619.2.55")
    assert index_contest(root).test["id"].tolist() == ["1.2.840.113619.2.55", "t0"]


# ---------------------------------------------------------------- the preflight


def _spoil(root: Path) -> list[Path]:
    bad = [root / "train" / "a" / "a0.png", root / "train" / "b" / "b1.png", root / "train" / "b" / "b2.png"]
    bad[0].write_bytes(b"")
    bad[1].write_text("text, not an image")
    bad[2].write_bytes(bad[2].read_bytes()[:40])
    return bad


def test_preflight_lists_every_unreadable_image(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    bad = _spoil(root)
    with pytest.raises(CompetitionError) as caught:
        load_contest(root, (8, 8), 1)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("3 unreadable training images: ")
    assert f"{bad[0]} (empty file)" in message and f"{bad[1]} (cannot identify image file" in message
    assert str(bad[2]) in message and "data.on_bad_image: skip" in message


def test_skip_drops_bad_training_images(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", {"a": 3, "b": 4})
    bad = _spoil(root)
    found, x, x_test, skipped = load_contest(root, (8, 8), 1, on_bad="skip")
    assert [path for path, _ in skipped] == [str(p) for p in bad]
    assert found.train["id"].tolist() == ["a1", "a2", "b0", "b3"] and len(x) == 4 and len(x_test) == 2
    np.testing.assert_array_equal(x[0, ..., 0], np.full((8, 8), 40))  # a1 is the first kept image
    assert found.y().tolist() == [0, 0, 1, 1] and found.classes == ["a", "b"]


def test_bad_test_image_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    root = contest(tmp_path / "c")
    (root / "test" / "t1.png").write_bytes(b"")
    with pytest.raises(CompetitionError, match="1 unreadable test image: .*t1.png \\(empty file\\); test images "
                                               "cannot be skipped"):
        load_contest(root, (8, 8), 1, on_bad="skip")


def test_skip_that_empties_a_class_is_an_error(tmp_path: Path) -> None:
    root = contest(tmp_path / "c", {"a": 1, "b": 3})
    (root / "train" / "a" / "a0.png").write_bytes(b"")
    with pytest.raises(CompetitionError, match="leaves class 'a' without images"):
        load_contest(root, (8, 8), 1, on_bad="skip")


def test_cli_reports_unreadable_images_on_one_line(tmp_path: Path, tiny_recipe: Path) -> None:
    root = contest(tmp_path / "c")
    _spoil(root)
    result = cli("train", tiny_recipe, "--data", root, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 3 unreadable training images: "), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
