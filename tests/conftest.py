"""Shared fixtures: an isolated decode cache and Keras home, and tiny contests made by the tests. Every contest
folder a test shares (the session's tiny contest, the real one in ../shared) is checked byte for byte when the
session ends: nothing any command did in between may have touched what the user gave."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Commands print at one width whatever runs the suite (a terminal, CI's pipe, a pytest-xdist worker, which is
# given COLUMNS=80): competition.cli reads COLUMNS when its console is made, at import, after this.
os.environ.pop("COLUMNS", None)
# One TensorFlow thread per process (competition.runtime.THREADS_ENV) unless the caller sets another count: the
# suite runs two workers on two cores, and their fold processes beside them; pools sized to every core fight
# over them (the training tests took 8% longer: 141 s against 130 s on 2 cores).
os.environ.setdefault("COMPETITION_THREADS", "1")
# ... and pinned in this process before any test module imports Keras: TensorFlow takes its thread count once,
# when its runtime starts, so a test that runs Keras directly would otherwise start it with a thread per core,
# and what ran in this process after it (a local executor's deterministic reference run) would depend on the
# order the tests were dealt to the workers.
from competition.runtime import import_tensorflow  # noqa: E402

import_tensorflow()

from competition.demo import make_demo  # noqa: E402

TINY_RECIPE = """
name: tiny
data: {image_size: 32, channels: 1}
model: {backbone: cnn, filters: [8, 16], head: {dense: [16], dropout: 0.1}}
train: {batch_size: 32, phases: [{epochs: 2}]}
cv: {folds: 2, seed: 1, scheme: stratified}  # fixed folds; cv.scheme auto has its own tests (test_folds_scheme.py)
"""


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("COMPETITION_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(base / "keras-home"))


SHARED_CONTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "alzheimer-mri"


def folder_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256 of its bytes, or "folder"} for everything under `folder` (links not followed), and
    the folder's own mode bits: what a command must leave as it found it."""
    found = {".": f"mode {folder.stat().st_mode:o}"}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = f"link {path.readlink()}"
        elif path.is_dir():
            found[key] = f"folder, mode {path.stat().st_mode:o}"
        else:
            found[key] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} mode {path.stat().st_mode:o}"
    return found


def _unchanged(folder: Path, before: dict[str, str]) -> None:
    after = folder_digest(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{folder}: a test's command changed what the user gave: {changed[:10]}"


@pytest.fixture(scope="session")
def tiny_contest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """About 40 train and 20 test 32x32 brain phantoms in the contest folder format, shared by the session's
    tests (read only: checked byte for byte when the session ends)."""
    folder = make_demo(tmp_path_factory.mktemp("contest") / "tiny", seed=3, size=32, scale=0.1)
    before = folder_digest(folder)
    yield folder
    _unchanged(folder, before)


@pytest.fixture(scope="session", autouse=True)
def _shared_contest_untouched() -> Iterator[None]:
    """The real contest in ../shared (integration tests and benchmarks read it in place) is never written."""
    if not SHARED_CONTEST.is_dir():
        yield
        return
    before = folder_digest(SHARED_CONTEST)
    yield
    _unchanged(SHARED_CONTEST, before)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests on the real contest are end to end: part of the slow layer `make test-fast` leaves out.
    for item in items:
        if item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path
