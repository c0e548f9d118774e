"""Who may write a run folder: the train lock (an flock on `<run>/train.lock`, held by the process that trains
the run; competition.runs.folder names the file) and whole-folder builds put in place in one step (an
ensemble's folder: `building`)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from competition.errors import CompetitionError
from competition.runs.folder import LOCK_FILE



# ---------------------------------------------------------------- the lock of a run being trained


class RunLock:
    """An exclusive flock on `<run>/train.lock`, held by the process that trains the run (its fold workers,
    other processes or Ray tasks, do not take it). Released by `release` or when the process ends; taking it
    again in the same process shares it (counted)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd, self.count = path, fd, 1

    def release(self) -> None:
        self.count -= 1
        if self.count > 0 or self.fd < 0:
            return
        _HELD.pop(str(self.path), None)
        with contextlib.suppress(OSError):  # removed while still held: a waiter then retries on a fresh file
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1


_HELD: dict[str, RunLock] = {}


def lock_run(run_dir: Path) -> RunLock:
    """Lock the run folder (made if missing) for this process, at once or not at all: CompetitionError of
    one line naming the holder (pid, host, since when) when another process trains it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = Path(os.path.realpath(run_dir)) / LOCK_FILE
    held = _HELD.get(str(path))
    if held is not None and held.fd >= 0:
        held.count += 1
        return held
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(fd)
            os.close(fd)
            raise _in_use(run_dir, holder) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it as we opened it: take the lock on the new file
            os.close(fd)
            continue
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        with contextlib.suppress(OSError):  # the lock is the flock; the text only says who holds it
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode(), 0)
        lock = _HELD[str(path)] = RunLock(path, fd)
        return lock


def refuse_if_locked(run_dir: Path) -> None:
    """CompetitionError naming the holder when another process holds the run folder's lock (nothing is
    taken: `lock_run` takes it once the input is checked)."""
    holder = lock_holder(run_dir)
    if holder is not None and "(this process)" not in holder:
        raise _in_use(run_dir, holder)


def _in_use(run_dir: Path, holder: str) -> CompetitionError:
    return CompetitionError(f"{run_dir}: in use, locked by another train ({holder}); wait for it to end, or "
                            "give this run another name")


def lock_holder(run_dir: Path) -> str | None:
    """Who holds the run folder's lock ("pid 12 on host, since ..."), or None when nobody does."""
    path = Path(run_dir) / LOCK_FILE
    if str(Path(os.path.realpath(run_dir)) / LOCK_FILE) in _HELD:
        return f"pid {os.getpid()} (this process)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(fd)
    finally:
        os.close(fd)
    return None


def _holder_text(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


# ---------------------------------------------------------------- a folder built whole, then put in place


@contextlib.contextmanager
def building(run_dir: Path) -> Iterator[Path]:
    """Build a run whole in a hidden sibling folder (yielded), then put it in place of `run_dir` in one step
    (an atomic exchange where the system has one): readers see the old run or the new one, never a mix, and a
    crash leaves the old run as it was (and a hidden folder that the next build of this name removes)."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(run_dir)
    tmp = run_dir.parent / f".{run_dir.name}.building-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        if run_dir.exists():
            if _exchange(tmp, run_dir):
                shutil.rmtree(tmp, ignore_errors=True)  # now the old run
            else:
                aside = tmp.with_name(tmp.name.replace(".building-", ".replaced-"))
                os.rename(run_dir, aside)
                os.rename(tmp, run_dir)
                shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove_dead_builds(run_dir: Path) -> None:
    """Hidden build folders of `run_dir` left by processes of this host that are gone (killed mid-build)."""
    host = socket.gethostname()
    for kind in ("building", "replaced"):
        for leftover in run_dir.parent.glob(f".{run_dir.name}.{kind}-*"):
            who, _, _ = leftover.name[len(f".{run_dir.name}.{kind}-"):].rpartition("-")
            where, _, pid = who.rpartition("-")
            if where == host and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
