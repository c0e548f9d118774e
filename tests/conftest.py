"""Shared fixtures: an isolated decode cache and Keras home, and tiny contests made by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from competition.demo import make_demo

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


@pytest.fixture(scope="session")
def tiny_contest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 40 train and 20 test 32x32 brain phantoms in the contest folder format."""
    return make_demo(tmp_path_factory.mktemp("contest") / "tiny", seed=3, size=32, scale=0.1)


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path
