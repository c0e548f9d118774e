"""The command line's help: choices and defaults shown, one example per command, -h as well as --help, and
--version."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from competition import cli

WIDE = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}  # one line per option: choices are not wrapped


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli.app, [*args, "-h"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("command", "flag", "choices"), [
    ("train", "--executor", "process|local|ray"),
    ("leaderboard", "--format", "table|md|csv|json"),
    ("ensemble", "--method", "mean|weighted|rank|geometric|caruana|stacking"),
    ("ensemble", "--metric", "macro_f1|accuracy|balanced_accuracy|kappa|roc_auc|log_loss"),
    ("export", "--format", "keras|savedmodel|tflite|onnx"),
])
def test_help_lists_the_choices(command: str, flag: str, choices: str) -> None:
    line = next(line for line in _help(command).splitlines() if flag in line)
    assert choices in line, line


def test_help_shows_defaults_and_an_example_for_every_command() -> None:
    assert "[default: (the recipe's, else 0.005)]" in _help("audit")
    assert "[default: no-tune]" in _help("submit")
    for info in cli.app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        assert f"Example: competition {name}" in _help(name), name


def test_the_choices_are_the_library_registries() -> None:
    from competition.ensemble import ENSEMBLERS
    from competition.metrics import METRICS
    from competition.executors import EXECUTORS
    from competition.export import FORMATS as EXPORT_FORMATS
    from competition.report.tables import FORMATS as BOARD_FORMATS
    from competition.data.similarity import DEFAULT_THRESHOLD

    assert set(get_args(cli.ExecutorName)) == set(EXECUTORS)
    assert set(get_args(cli.EnsembleMethod)) == set(ENSEMBLERS)
    assert set(get_args(cli.EnsembleMetric)) == set(METRICS)
    assert set(get_args(cli.ExportFormat)) == set(EXPORT_FORMATS)
    assert set(get_args(cli.BoardFormat)) == set(BOARD_FORMATS)
    assert DEFAULT_THRESHOLD == 0.005  # what audit --help says


def test_short_h_and_version() -> None:
    runner = CliRunner()
    assert runner.invoke(cli.app, ["-h"], env=WIDE).output == runner.invoke(cli.app, ["--help"], env=WIDE).output
    assert "Commands" in runner.invoke(cli.app, ["-h"], env=WIDE).output
    printed = subprocess.run([sys.executable, "-m", "competition.cli", "--version"], capture_output=True, text=True)
    assert printed.returncode == 0 and printed.stdout.strip() == f"competition {version('competition')}"


@pytest.mark.slow
def test_a_bad_choice_is_the_library_s_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("name: r\n")
    result = subprocess.run([sys.executable, "-m", "competition.cli", "train", "r.yaml", "--executor", "procss"],
                            capture_output=True, text=True, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == "error: --executor: unknown executor 'procss'; did you mean 'process'?; known: local, process, ray"
