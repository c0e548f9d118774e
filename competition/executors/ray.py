"""The Ray executor: one Ray task per pending fold, on a local Ray runtime started on demand or on a cluster
(`address="auto"` or `"ray://head:10001"`). A task rebuilds the run from its folder (`load_prepared`) and writes
the fold's files there, done.json last, exactly as the local loop does: the run folder, the contest folder and
the decode cache (COMPETITION_CACHE_DIR) must be at the same path on every node (shared storage).

Each fold asks Ray for `recipe.resources.cpus_per_fold` CPUs and `gpus_per_fold` GPUs (fractions share a GPU).
A fold whose worker dies (killed, out of memory, node lost) is retried once; a fold that still fails, or raises,
is reported by number after the others have finished, and the finished ones are kept.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from competition.console import Progress, say
from competition.errors import CompetitionError, OptionError
from competition.executors.common import TEST_KILL_ENV, say_reused
from competition.runs import fold_files

# Environment a fold worker needs to see what the driver sees (decode cache, Keras weights, TF settings,
# pinned threads, test hooks). Passed explicitly: Ray workers do not inherit the driver's environment.
FORWARDED_ENV = ("COMPETITION_", "KERAS_", "TF_")
EPOCH_POLL_S = 2.0  # how often the driver looks for new epochs in the folds' history.csv files


def _ray_fold(run_dir: str, fold: int, deterministic: bool, workdir: str | None = None,
              test_kill: str | None = None) -> dict[str, Any]:
    """A Ray task: train fold `fold` of the run in `run_dir` (written there, done.json last); a short summary back.
    `workdir` is the driver's folder, against which relative paths in the stored recipe (data.root) resolve;
    `test_kill` is the driver's COMPETITION_TEST_KILL_FOLD (an argument, not worker environment, so that
    workers are reused whatever the hook says)."""
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)
    from competition.runs.prepare import load_prepared, train_fold

    t0 = time.perf_counter()
    prepared = load_prepared(run_dir, deterministic=deterministic)
    loaded = time.perf_counter() - t0
    fitted = train_fold(prepared, fold, _test_kill_hook(Path(run_dir), fold, test_kill))
    return {"fold": fold, "best_epoch": int(fitted.best_epoch), "best_score": float(fitted.best_score),
            "seconds": round(time.perf_counter() - t0, 2), "load_seconds": round(loaded, 2),
            "hostname": socket.gethostname(), "pid": os.getpid()}


def _test_kill_hook(run_dir: Path, fold: int, hook: str | None) -> Any:
    """Progress for the fold; under the test hook, one that SIGKILLs its own worker at the end of epoch 1 (the
    first attempt only, remembered by a marker file in the run folder, unless the hook says ':always')."""
    target, _, mode = (hook if hook is not None else os.environ.get(TEST_KILL_ENV, "")).partition(":")
    if target != str(fold):
        return Progress()
    marker = run_dir / f".test-killed-fold{fold}"
    if marker.exists() and mode != "always":
        return Progress()

    class Killer(Progress):
        def epoch(self, epoch: int, total: int, f1: float, loss: float = float("nan")) -> None:
            marker.write_text(f"{int(marker.read_text()) + 1 if marker.exists() else 1}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    return Killer()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError("executor", "Ray is not installed; pip install 'competition[ray]' "
                                      "(or pip install 'ray>=2.9')") from None
    return ray


def connect_ray(address: str | None = None) -> Any:
    """The Ray module, connected: to `address` (a cluster; "auto" finds the one this node belongs to), to the
    runtime this process already uses, or to a local runtime started now with this machine's CPUs and GPUs
    (it stops when this process ends)."""
    import logging

    ray = _import_ray()
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise OptionError("executor", f"could not connect to {where}: {str(exc).splitlines()[0]}") from None
    return ray


def _worker_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.startswith(FORWARDED_ENV) and key != TEST_KILL_ENV}


def _check_fits(ray: Any, resources: Any, local: bool, console: Any) -> None:
    """A fold asking for more than any node has waits forever: an error on a local runtime, a warning on a
    cluster (an autoscaler may add such a node)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    need = {"CPU": resources.cpus_per_fold, "GPU": resources.gpus_per_fold}
    if any(all(node.get(k, 0) >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    have = ", ".join(f"{int(n.get('CPU', 0))} CPU / {n.get('GPU', 0):g} GPU" for n in nodes) or "no nodes"
    text = (f"recipe.resources: a fold asks for {need['CPU']:g} CPU and {need['GPU']:g} GPU, more than any Ray "
            f"node has ({have})")
    if local:
        raise CompetitionError(text)
    say(console, f"warning: {text}; the folds wait until such a node joins")


def _failure(exc: BaseException) -> str:
    """One line on why a fold's task failed."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CompetitionError):
        return str(cause)
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return "its worker ran out of memory (Ray's memory monitor killed it)"
    if "WorkerCrashed" in name or "ActorDied" in name or "NodeDied" in name or "ObjectLost" in name:
        return "its worker died (killed, out of memory or its node lost), also on the retry"
    if cause is not None:
        text = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {text[-1] if text else ''}".rstrip(": ")
    text = str(exc).strip().splitlines()
    return f"{name}: {text[-1] if text else ''}".rstrip(": ")


def run_ray(prepared: Any, *, address: str | None = None, console: Any = None, resources: Any = None,
            callbacks: tuple[Any, ...] = ()) -> None:
    """One Ray task per pending fold, all submitted at once; Ray runs as many as the resources allow."""
    if callbacks:
        raise OptionError("callbacks", "Keras callbacks run only with the local executor (they stay in this process)")
    failed = submit_ray([prepared], address=address, console=console, resources=resources)
    if failed:
        raise CompetitionError(failed_line(failed[0]))


def submit_ray(prepared_runs: list[Any], *, address: str | None = None, console: Any = None,
               resources: Any = None) -> dict[int, dict[int, str]]:
    """Every pending fold of every run as one Ray task, all submitted together; waits for all of them.
    Returns the failures: {index of the run: {fold: reason}} (empty when every fold finished)."""
    several = len(prepared_runs) > 1
    pending = [p.pending() for p in prepared_runs]
    for prepared, folds in zip(prepared_runs, pending, strict=True):
        say_reused(prepared, folds, console, f"{prepared.run_dir.name}: " if several else "")
    if not any(pending):
        return {}
    ray = connect_ray(address)
    env = {"env_vars": _worker_env()}
    hook, workdir = os.environ.get(TEST_KILL_ENV), os.getcwd()
    total = ray.cluster_resources()
    refs: dict[Any, tuple[int, int]] = {}
    for i, (prepared, folds) in enumerate(zip(prepared_runs, pending, strict=True)):
        if not folds:
            continue
        need = resources or prepared.recipe.resources
        _check_fits(ray, need, local=not address, console=console)
        task = ray.remote(num_cpus=need.cpus_per_fold, num_gpus=need.gpus_per_fold, max_retries=1)(_ray_fold)
        task = task.options(runtime_env=env)
        run_dir = str(Path(prepared.run_dir).resolve())
        say(console, f"Ray: {len(folds)} fold(s) of {prepared.run_dir.name} submitted, each with "
                      f"{need.cpus_per_fold:g} CPU and {need.gpus_per_fold:g} GPU "
                      f"(cluster: {total.get('CPU', 0):g} CPU, {total.get('GPU', 0):g} GPU)")
        for k in folds:
            fold_files.start_fold(prepared.run_dir, k)  # no epochs of an earlier attempt in the lines below
            refs[task.remote(run_dir, k, prepared.deterministic, workdir, hook)] = (i, k)
    started = time.perf_counter()
    failed: dict[int, dict[int, str]] = {}
    waiting = list(refs)
    seen: dict[tuple[int, int], int] = {}
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1, timeout=EPOCH_POLL_S)
            for ref in [*done, *waiting]:
                _say_epochs(prepared_runs, *refs[ref], seen, console, several)
            if not done:
                continue
            i, k = refs[done[0]]
            who = f"{prepared_runs[i].run_dir.name}: fold {k}" if several else f"fold {k}"
            try:
                info = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - any task failure is reported per fold
                failed.setdefault(i, {})[k] = _failure(exc)
                say(console, f"{who}: failed on Ray: {failed[i][k]}")
                continue
            say(console, f"{who}: best epoch {info['best_epoch']}, val {prepared_runs[i].metric.title} "
                         f"{info['best_score']:.4f} "
                          f"({info['seconds']:.0f} s on {info['hostname']}, {info['load_seconds']:.0f} s of it "
                          f"loading; "
                          f"{time.perf_counter() - started:.0f} s since submit)")
    except KeyboardInterrupt:
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise
    return failed


def _say_epochs(prepared_runs: list[Any], i: int, k: int, seen: dict[tuple[int, int], int], console: Any,
                several: bool) -> None:
    """One line per epoch that fold k of run i finished since the last look, read from its history.csv
    (written by the worker after every epoch, on the shared storage); no ETA, as folds run side by side."""
    if console is None:
        return
    prepared = prepared_runs[i]
    rows = fold_files.read_partial_history(prepared.run_dir, k)
    if len(rows) < seen.get((i, k), 0):  # a retry started the fold again
        seen[(i, k)] = 0
    planned = sum(phase.epochs for phase in prepared.recipe.train.phases)
    metric = prepared.metric
    values = [float(r.get(metric.monitor, float("nan"))) for r in rows]
    best = max((metric.oriented(v) for v in values[: seen.get((i, k), 0)]), default=float("-inf"))
    prefix = f"{prepared.run_dir.name}: " if several else ""
    for row, value in zip(rows[seen.get((i, k), 0):], values[seen.get((i, k), 0):]):
        best = max(best, metric.oriented(value))
        say(console, f"{prefix}fold {k} ({k + 1} of {prepared.recipe.cv.folds})  epoch {int(row.get('epoch', 0))}/"
                     f"{planned}  loss {float(row.get('loss', float('nan'))):.3f}  val {metric.title} {value:.3f}  "
                     f"best {metric.oriented(best):.3f}")
    seen[(i, k)] = len(rows)


def failed_line(failed: dict[int, str]) -> str:
    """One line naming the failed folds ({fold: reason}, 0-based) and why, ending with how to resume."""
    folds = ", ".join(str(k) for k in sorted(failed))
    reasons = sorted(set(failed.values()))
    reason = reasons[0] if len(reasons) == 1 else "; ".join(f"fold {k}: {r}" for k, r in sorted(failed.items()))
    return f"fold(s) {folds} failed on Ray: {reason}; rerun the same command to train only those"
