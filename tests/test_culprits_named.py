"""Issue 15, kind 5 ("Every message names the real culprit"): new cases written from the kind alone, tried through
the command line as a new user would (tiny contests of 16 px images, 2 folds, 1 epoch). Each bad input ends in one
line that names the file, row or value at fault, and no traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faultkit import DISK_FULL_SHIM, TINY, Result, cli, tiny_recipe
from faultkit import one_line_error as one_line

RECIPE = tiny_recipe("ft")


def one_line_error(done: Result, *expected: str, code: int = 2) -> str:
    """The shared check, and no warning printed either (messages name the culprit, nothing else)."""
    assert "Warning" not in done.output, done.output[-3000:]
    return one_line(done, *expected, code=code)


def contest(root: Path, classes: tuple[str, ...] = ("Alpha", "Beta"), n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        for i in range(n):
            path = root / "train" / cls / f"{cls[0].lower()}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(rng.normal(60 + 100 * k, 25, (16, 16)), 0, 255).astype(np.uint8)).save(path)
    for i in range(4):
        path = root / "test" / f"t{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(rng.normal(120, 25, (16, 16)), 0, 255).astype(np.uint8)).save(path)
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"t{i},{classes[0]}\n" for i in range(4)))
    return root


def recipe(folder: Path) -> Path:
    (folder / "ft.yaml").write_text(RECIPE)
    return folder / "ft.yaml"





@pytest.fixture(scope="module")
def disk_full_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shim")
    (folder / "full.c").write_text(DISK_FULL_SHIM)
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler (cc or gcc, on every machine of this project) simulates the full disk"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(folder / "full.so"), str(folder / "full.c"), "-ldl"],
                   check=True)
    return folder / "full.so"


def test_broken_link_as_a_class_folder_is_named_not_dropped(tmp_path: Path) -> None:
    """train/Gamma is a link to a folder that is gone: before, the class vanished without a word."""
    root = contest(tmp_path / "c")
    (root / "train" / "Gamma").symlink_to(tmp_path / "elsewhere" / "Gamma", target_is_directory=True)
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    one_line_error(done, "train/Gamma", "broken symbolic link")
    assert not (tmp_path / "runs").exists()


def test_a_file_where_the_test_folder_belongs_is_named_as_a_file(tmp_path: Path) -> None:
    """`test` is a file (an unzipped archive named test): 'not found' would send the user looking elsewhere."""
    root = contest(tmp_path / "c")
    shutil.rmtree(root / "test")
    (root / "test").write_bytes(b"PK\x03\x04")
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path)
    one_line_error(done, str(root / "test"), "a file is there")


def test_validate_names_a_row_with_a_field_too_few(tmp_path: Path) -> None:
    """Row 2 lacks its last field: say so, not 'empty cells' or a sum that is off."""
    sample = tmp_path / "sample.csv"
    sample.write_text("id,cat,dog\na,0.5,0.5\nb,0.5,0.5\nc,0.5,0.5\n")
    sub = tmp_path / "sub.csv"
    sub.write_text("id,cat,dog\na,0.2,0.8\nb,0.3\nc,0.6,0.4\n")
    line = one_line_error(cli("validate", sub, "--sample", sample, cwd=tmp_path), str(sub), code=1)
    assert "row 2 has 2 fields, the header 3" in line and "empty" not in line and "sum" not in line, line


def test_validate_blames_the_sample_when_the_sample_is_ragged(tmp_path: Path) -> None:
    """The sample itself has a row with an extra field: the sample is named, not the user's submission."""
    sample = tmp_path / "sample.csv"
    sample.write_text("id,label\na,cat\nb,cat,extra\n")
    sub = tmp_path / "sub.csv"
    sub.write_text("id,label\na,cat\nb,dog\n")
    line = one_line_error(cli("validate", sub, "--sample", sample, cwd=tmp_path), str(sample), "row 2 has 3 fields")
    assert str(sub) not in line


@pytest.mark.slow
def test_disk_full_in_the_decode_cache_names_the_cache(tmp_path: Path, disk_full_shim: Path) -> None:
    """The disk holding the decode cache is full: the message names the cache file and says it is the cache
    (so the user frees space there, or moves COMPETITION_CACHE_DIR); no temporary file stays behind."""
    root = contest(tmp_path / "c")
    cache = tmp_path / "cache"
    env = {"COMPETITION_CACHE_DIR": str(cache), "LD_PRELOAD": str(disk_full_shim), "FULL_UNDER": str(cache) + "/"}
    done = cli("train", recipe(tmp_path), "--data", root, "--runs", tmp_path / "runs", *TINY, cwd=tmp_path, env=env)
    line = one_line_error(done, "disk full", str(cache), "decode cache", code=28)
    assert "a file" not in line, line
    assert [p.name for p in cache.rglob(".*")] == []


@pytest.mark.slow
def test_disk_full_writing_the_submission_names_it(tmp_path: Path, disk_full_shim: Path) -> None:
    """Training fits, the submission's disk is full: name submissions/<run>.csv and leave nothing half-written."""
    root = contest(tmp_path / "c")
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    subs = tmp_path / "submissions"
    subs.mkdir()
    env = {"LD_PRELOAD": str(disk_full_shim), "FULL_UNDER": str(subs) + "/"}
    done = cli("submit", "ft", "--runs", runs, cwd=tmp_path, env=env)
    one_line_error(done, "disk full", "submissions/ft.csv", code=28)
    assert list(subs.iterdir()) == []


@pytest.mark.slow
def test_submit_out_below_a_file_names_that_file(tmp_path: Path) -> None:
    """`--out notes/sub.csv` where notes is a file: name notes, not a hidden temporary file or 'File exists'."""
    root = contest(tmp_path / "c")
    runs = tmp_path / "runs"
    trained = cli("train", recipe(tmp_path), "--data", root, "--runs", runs, *TINY, cwd=tmp_path)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    (tmp_path / "notes").write_text("not a folder\n")
    done = cli("submit", "ft", "--runs", runs, "--out", tmp_path / "notes" / "sub.csv", cwd=tmp_path)
    line = one_line_error(done, str(tmp_path / "notes"), "not a folder")
    assert ".tmp" not in line and "File exists" not in line, line
