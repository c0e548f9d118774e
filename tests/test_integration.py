"""On the real contest in ../shared (present in CI): the audit sees the slice leak that plain folds suffer."""

from __future__ import annotations

from pathlib import Path

import pytest

ALZHEIMER = Path(__file__).resolve().parents[2] / "shared" / "data" / "alzheimer-mri"


@pytest.mark.integration
@pytest.mark.skipif(not ALZHEIMER.is_dir(), reason="the real contest lives in ../shared, beside the project")
def test_audit_of_the_alzheimer_set(tmp_path: Path) -> None:
    from competition.audit import run_audit

    result = run_audit(ALZHEIMER, tmp_path, n_folds=5, seed=42)
    assert (result["n_train"], result["n_test"]) == (5121, 1279)
    assert result["exact_duplicates"]["within_train"]["extra_copies"] == 0
    leak = result["leak"]
    # Random folds put a near twin of most validation slices in training; grouped folds put none; the
    # test set sits in between, which is what an honest scheme should mimic.
    assert leak["stratified"]["leak_share"] > 0.8
    assert leak["grouped"]["leak_share"] == 0.0
    assert 0.05 < leak["test_reference"]["share_with_twin_in_train"] < 0.3
    assert (tmp_path / "audit.json").is_file() and (tmp_path / "closest_pairs.png").is_file()
