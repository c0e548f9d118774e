"""What the fault tests share: the installed `competition` command, the issue's tiny
training settings, and a tiny recipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = Path(sys.executable).parent / "competition"
COMPETITION = str(_SCRIPT) if _SCRIPT.is_file() else (shutil.which("competition") or "competition")

# The tiny training settings, as command-line overrides (tiny_recipe says the same).
TINY_SETS = ["--set", "cv.folds=2", "--set", "train.phases.0.epochs=1", "--set", "data.image_size=16",
             "--set", "model.filters=[4]", "--set", "model.head.dense=[4]"]
TINY = [*TINY_SETS, "--executor", "local"]


@dataclass
class Result:
    """What a `competition` command did: exit code, its output and how long it took."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def cli(*args: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
    """`competition ARGS...` as a user types it, in `cwd`. In this process (competition.cli.main, the console
    script's entry point; saves the interpreter and TensorFlow start-up, about 4 s a call) unless `env` is given
    or COMPETITION_TEST_SUBPROCESS=1 is set: then as the installed command, in a process of its own with the
    environment of the test plus `env`. An exception escaping main is printed as the interpreter would (a
    traceback on stderr, exit 1), so no test can mistake it for a clean exit."""
    started = time.monotonic()
    if env or os.environ.get("COMPETITION_TEST_SUBPROCESS") == "1":
        done = subprocess.run([COMPETITION, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})
        return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    import io
    import traceback
    from contextlib import redirect_stderr, redirect_stdout

    from competition.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    code = 0
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                if isinstance(exc.code, int) or exc.code is None:
                    code = int(exc.code or 0)
                else:  # sys.exit("message"): printed on stderr, exit 1, as the interpreter does
                    print(exc.code, file=sys.stderr)
                    code = 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(before)
    return Result(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


def one_line_error(result: Result, *expected: str, code: int | None = 2) -> str:
    """Exit `code` (any non-zero when None), exactly one line on stderr holding every `expected`, no traceback."""
    assert "Traceback" not in result.output, result.output[-3000:]
    if code is None:
        assert result.returncode != 0, result.output[-3000:]
    else:
        assert result.returncode == code, f"exit {result.returncode}\n{result.output[-3000:]}"
    lines = result.error_lines
    assert len(lines) == 1, result.stderr[-3000:]
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


def tiny_recipe(name: str) -> str:
    """A recipe's YAML text: 16 px grey images, a one-block CNN, one epoch, 2 folds."""
    return f"""\
name: {name}
data: {{image_size: 16, channels: 1}}
model: {{backbone: cnn, filters: [4], head: {{dense: [4]}}}}
train: {{batch_size: 8, phases: [{{epochs: 1}}]}}
cv: {{folds: 2, seed: 1}}
"""

# write(2) and friends fail with ENOSPC on files under $FULL_UNDER whose path contains $FULL_CONTAINS.
DISK_FULL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int full(int fd) {
    const char *under = getenv("FULL_UNDER"), *contains = getenv("FULL_CONTAINS");
    char link[64], target[4096];
    ssize_t n;
    if (!under) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    if (strncmp(target, under, strlen(under)) != 0) return 0;
    return !contains || strstr(target, contains) != NULL;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    if (count && full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, count);
}
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    if (count && full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, count, offset);
}
ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64);
    if (count && full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, count, offset);
}
ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev);
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, iov, iovcnt);
}
"""


def cli_in_process(capsys: Any, *args: object) -> tuple[int, list[str]]:
    """`competition ARGS...` in this process (competition.cli.main; `capsys`, pytest's fixture, captures it):
    (exit code, the non-empty lines on stderr), asserting that no traceback was printed."""
    import pytest

    from competition.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return int(exit_.value.code or 0), [line for line in err.splitlines() if line.strip()]
