"""The benchmark script (`make bench`) works: a quick run of two benchmarks gives their rows, and it writes its
results only where asked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmarks_give_their_rows_and_write_only_where_asked(tmp_path: Path, capsys, monkeypatch) -> None:
    committed = SCRIPT.parent / "results.md"
    before = committed.read_bytes() if committed.is_file() else None
    bench = _script()
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--quick", "--only", "ensemble,decode"]) == 0
    printed = capsys.readouterr().out
    assert "written:" not in printed and not any(tmp_path.iterdir())
    assert bench.main(["--quick", "--only", "ensemble,decode", "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {row["benchmark"] for row in results["results"]}
    assert results["mode"] == "quick" and len(rows) >= 2, rows
    assert not any("error" in str(row["status"]) or str(row["measured"]).startswith("error")
                   for row in results["results"]), results
    assert "| benchmark | measured | goal | pass/fail | notes |" in (tmp_path / "out" / "results.md").read_text()
    assert (committed.read_bytes() if committed.is_file() else None) == before


def test_unknown_benchmark_is_named(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        _script().main(["--only", "nope"])
    assert exit_.value.code == 2 and "unknown benchmark 'nope'" in capsys.readouterr().err
