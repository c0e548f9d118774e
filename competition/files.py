"""Atomic file writes (a reader never sees a half-written output), the one guard every user-named output passes
(`check_output`: never on the user's inputs or files the tool did not write), the one lock of a file that is
read, changed and written back (`locked`), and CSV files read as literal text."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from competition.errors import CompetitionError, OptionError

if TYPE_CHECKING:
    import pandas as pd

# The user's umask, read once at import (os.umask can only be read by setting it, which is not thread-safe later):
# files and folders written through a temporary name get the mode a plain open() or mkdir() would give them.
USER_UMASK = os.umask(0o022)
os.umask(USER_UMASK)


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
        os.chmod(tmp, 0o666 & ~USER_UMASK)
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


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot be a run folder's name (a plain folder name: no '/', '\\', leading '.', or
    surrounding spaces), or None when it can."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name != name.strip():
        return f"a run name is a plain folder name (no '/', '\\', leading '.' or surrounding spaces), got {name!r}"
    return None


# ---------------------------------------------------------------- where an output may go

OWNED_MARKER = ".competition"  # in a folder the tool wrote (export, report, audit): it may write there again


def staging_folder(path: str | Path, suffix: str = ".tmp") -> Path:
    """A new hidden folder beside `path` (parents made) in which an output folder is built whole before it is
    renamed to `path`; its mode is the user's umask's, like any folder the user makes (not mkdtemp's 700)."""
    path = Path(path)
    _make_parent(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    os.chmod(staging, 0o777 & ~USER_UMASK)
    return staging


def mark_owned(folder: str | Path, command: str) -> None:
    """Mark `folder` as written by `competition <command>`, so that a later run may write there again."""
    write_text(Path(folder) / OWNED_MARKER, f"written by competition {command}; it may write here again\n")


def owns_folder(folder: str | Path) -> bool:
    """True when `folder` holds the tool's marker (`mark_owned`)."""
    return (Path(folder) / OWNED_MARKER).is_file()


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def check_output(path: str | Path, *, protected: Iterable[tuple[str, str | Path | None]] = (), folder: bool = False,
                 ours: Callable[[Path], bool] | None = None, what: str = "an output of competition",
                 option: str = "out") -> Path:
    """The one check of every output the user names (a file, or with `folder` a folder written whole), before
    anything is written; returns `path`. Refused with an OptionError of one line naming `path` (the command
    line names the flag of `option`) when the output would land on or inside one of the `protected` paths
    ((label, path) pairs: the contest folder, a run folder, the input images, the sample; None entries are
    skipped), or would hold one of them (a folder output), or when it exists and is not the tool's: a file that
    `ours` does not recognise (`what` says what was expected), a folder where a file goes (or the other way),
    or a non-empty folder without the tool's marker (`OWNED_MARKER`) that `ours` does not recognise either."""
    path = Path(path)
    real = _real(path)
    for label, guarded in protected:
        if guarded is None:
            continue
        root = _real(guarded)
        if real == root:
            raise OptionError(option, f"{path}: is {label} ({guarded}); outputs never replace an input, "
                                      "choose another path")
        if root in real.parents:
            raise OptionError(option, f"{path}: lies inside {label} ({guarded}); outputs are never written there, "
                                      "choose a path outside it")
        if folder and real in root.parents:
            raise OptionError(option, f"{path}: holds {label} ({guarded}); choose a folder of its own for the output")
    if not os.path.lexists(path):
        return path
    if not folder:
        if path.is_dir():
            raise OptionError(option, f"{path}: is a folder; give the name of a file to write")
        if not (path.is_file() and ours is not None and ours(path)):
            raise OptionError(option, f"{path}: exists and is not {what}; not replaced (remove it or choose another "
                                      "path)")
        return path
    if not path.is_dir():
        raise OptionError(option, f"{path}: exists and is not a folder; choose a folder to write")
    entries = sorted(p.name for p in path.iterdir())
    if entries and not owns_folder(path) and not (ours is not None and ours(path)):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise OptionError(option, f"{path}: a folder holding files competition did not write ({shown}); not "
                                  "touched, choose a new or empty folder")
    return path


def csv_header(path: str | Path) -> list[str] | None:
    """The first line of a CSV file as its fields (a UTF-8 byte-order mark dropped); None when it does not read."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader([handle.readline()]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def is_matplotlib_png(path: str | Path) -> bool:
    """True for a PNG file that matplotlib wrote (the PNGs of this tool: its Software text says so)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Software\x00Matplotlib" in head


# ---------------------------------------------------------------- the lock of a shared file


def _take_flock(lock_file: Path) -> int:
    """An exclusive flock on `lock_file` (created if missing), waited for while another process (or thread)
    holds it; returns its descriptor. A file its holder removed on release (`_drop_flock`) is never kept:
    the lock is then taken on the new one (as competition.runs.locking.lock_run does for a run's train.lock)."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.stat(lock_file).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as we waited: lock the one there now


def _drop_flock(lock_file: Path, fd: int) -> None:
    """Release `_take_flock`'s lock: the lock file removed (when it is still this one), the descriptor closed."""
    with contextlib.suppress(OSError):
        if os.stat(lock_file).st_ino == os.fstat(fd).st_ino:
            os.unlink(lock_file)
    os.close(fd)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[Path]:
    """Hold the lock of `path` (a file or folder that is read, changed and written back: the submission log, a
    run's decisions, a cache entry, an ensemble folder) for the block, waiting for any other process or thread
    that holds it: a flock on the hidden `.<name>.lock` beside it, removed when released. Yields `path`."""
    path = Path(path)
    _make_parent(path)
    lock_file = path.parent / f".{path.name}.lock"
    fd = _take_flock(lock_file)
    try:
        yield path
    finally:
        _drop_flock(lock_file, fd)


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
