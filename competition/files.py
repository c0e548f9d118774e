"""Atomic file writes (a reader never sees a half-written output) and CSV files read as literal text."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from competition.errors import CompetitionError

if TYPE_CHECKING:
    import pandas as pd

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _name_target(exc: OSError, path: Path, tmp: str | None) -> None:
    """Make an OSError about writing `path` name `path` (not its hidden temporary file, not nothing), so that
    "disk full" or "permission denied" says which output could not be written."""
    if exc.filename is None or (tmp is not None and str(exc.filename) == tmp):
        exc.filename, exc.filename2 = str(path), None


def _make_parent(path: Path) -> None:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(20, "not a folder, so nothing can be written inside it", str(parent))
    parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, then rename it over `path` (atomic on POSIX). On any failure
    the temporary file is removed, and an OSError of the write (disk full, permissions) names `path`."""
    with atomic_path(path) as tmp, open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` for writers that want a file name (``model.save(tmp)``): renamed over
    `path` when the block ends, removed when it fails; an OSError of the block then names `path`.
    The temporary name is hidden (``.<name>.<random><suffix>``) and ends with `suffix` (Keras wants ``.keras``)."""
    path = Path(path)
    _make_parent(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            _name_target(exc, path, tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def read_npy(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def read_cached_npy(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    """A cache entry's array, or None when it is missing, damaged (cut short, not an array) or not of `shape`:
    a damaged cache entry is a miss, computed again and replaced, never an error."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return array if shape is None or array.shape == shape else None


# ---------------------------------------------------------------- CSV as text


class CsvShapeError(CompetitionError):
    """A CSV file whose rows do not fit its header (a field too many or too few, a repeated column name):
    `problem` says which row, without the file's name; str() names the file too."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def read_string_csv(path: str | Path) -> pd.DataFrame:
    """A CSV file as a DataFrame of literal strings: every cell is the text the user wrote ('NA', 'None',
    'null', 'nan', '007', 'Alpha ' stay as they are; an empty cell is ''), a UTF-8 byte-order mark is dropped,
    blank lines are skipped. Data rows count from 1 after the header (as in every message). Raises a
    CompetitionError of one line naming the file: not found, not UTF-8, not CSV, no header, or a
    CsvShapeError for a row whose field count differs from the header's or a column named twice."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        raise CompetitionError(f"{path}: is a folder, not a CSV file")
    if not path.is_file():
        raise CompetitionError(f"{path}: file not found" + (" (a broken symbolic link)" if path.is_symlink() else ""))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CompetitionError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), strict=False)
                if row and not (len(row) == 1 and row[0].strip() == "")]
    except csv.Error as exc:
        raise CompetitionError(f"{path}: cannot read as CSV ({' '.join(str(exc).split())})") from None
    if not rows:
        raise CompetitionError(f"{path}: cannot read as CSV (empty file, no header line)")
    header, data = rows[0], rows[1:]
    seen: dict[str, int] = {}
    for k, name in enumerate(header):
        if name in seen:
            raise CsvShapeError(path, f"column {name!r} appears twice in the header (columns {seen[name] + 1} "
                                      f"and {k + 1})")
        seen[name] = k
    ragged = [(r, len(row)) for r, row in enumerate(data, start=1) if len(row) != len(header)]
    if ragged:
        r, n = ragged[0]
        more = f" ({len(ragged) - 1} more such rows, e.g. row {ragged[1][0]})" if len(ragged) > 1 else ""
        raise CsvShapeError(path, f"row {r} has {_plural(n, 'field')}, the header {len(header)}{more} "
                                  "(rows count from 1 after the header)")
    return pd.DataFrame(data, columns=header, dtype=str)
