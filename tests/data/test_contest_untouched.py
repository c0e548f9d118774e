"""Input data is only read: a whole training run leaves every byte, name and timestamp of the contest folder as
it was, while skipped images are recorded in the run folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from competition.recipe import load_recipe


def folder_fingerprint(root: Path) -> str:
    """Every entry's relative name (as bytes), type, mode bits, size, modification time and content."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            digest.update(os.path.relpath(path, os.fsencode(root)) + b"\0")
            kind, mode = stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode)
            digest.update(f"{kind}|{mode}|{info.st_size}|{info.st_mtime_ns}".encode())
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _read_only(root: Path, on: bool) -> None:
    for dirpath, _, filenames in os.walk(root):
        for path in [dirpath, *(os.path.join(dirpath, f) for f in filenames)]:
            mode = os.stat(path).st_mode
            os.chmod(path, mode & ~0o222 if on else mode | 0o200)


@pytest.mark.slow
def test_training_leaves_the_contest_folder_untouched(tiny_contest: Path, tiny_recipe: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from corpus import ct_windowed

    from competition.runs.prepare import load_prepared
    from competition.training import train_run

    root = tmp_path / "contest"
    shutil.copytree(tiny_contest, root)
    classes = sorted(p.name for p in (root / "train").iterdir())
    first_class = root / "train" / classes[0]
    bad = first_class / "unreadable.png"
    bad.write_bytes(b"")  # skipped, not fatal
    shutil.copy(next(iter(sorted((root / "train" / classes[1]).iterdir()))),
                root / "train" / classes[1] / "Röntgen Bild ü.png")
    ct_windowed(first_class / "scan.dcm")
    before = folder_fingerprint(root)

    recipe = load_recipe(tiny_recipe, ["train.phases.0.epochs=1", "cv.folds=2", "data.on_bad_image=skip"])
    _read_only(root, True)  # any write attempt fails (unless running as root, where the fingerprint still catches it)
    try:
        run_dir = train_run(recipe, tmp_path / "runs", data_root=root)
    finally:
        _read_only(root, False)
        after = folder_fingerprint(root)

    assert after == before
    skipped = pd.read_csv(run_dir / "skipped_images.csv")
    assert skipped.to_dict("records") == [{"path": str(bad), "reason": "empty file"}]
    assert "skipped 1 unreadable training image" in capsys.readouterr().err
    ids = pd.read_csv(run_dir / "folds.csv", dtype={"id": str})["id"].tolist()  # the fold assignment
    assert "unreadable" not in ids and {"scan", "Röntgen Bild ü"} <= set(ids)
    reloaded = load_prepared(run_dir)  # a worker rebuilding the run skips the same images
    assert reloaded.contest.train["id"].tolist() == ids and len(reloaded.x) == len(ids)
    assert folder_fingerprint(root) == before
