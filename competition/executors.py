"""Executors: where the pending folds of a prepared run are trained.

`run_folds(prepared, "local")` trains them one after another in this process (frozen-backbone features are
computed once and shared); "process" (the command line's default) trains each fold in a fresh process, so
memory does not grow from fold to fold. `run_folds(prepared, "ray", address=...)` submits one Ray task per pending fold to a
local Ray runtime started on demand or to a cluster (`address="auto"` or `"ray://head:10001"`). A task rebuilds
the run from its folder (`load_prepared`) and writes the fold's files there, done.json last, exactly as the
local loop does: the run folder, the contest folder and the decode cache (COMPETITION_CACHE_DIR) must be at the
same path on every node (shared storage). Whatever executor trained a fold, `finish_run` gathers the folds, and
a rerun trains only the folds without done.json.

Each fold asks Ray for `recipe.resources.cpus_per_fold` CPUs and `gpus_per_fold` GPUs (fractions share a GPU).
A fold whose worker dies (killed, out of memory, node lost) is retried once; a fold that still fails, or raises,
is reported by number after the others have finished, and the finished ones are kept.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from competition.errors import CompetitionError

# Environment a fold worker needs to see what the driver sees (decode cache, Keras weights, TF settings,
# test hooks). Passed explicitly: Ray workers do not inherit the driver's environment.
FORWARDED_ENV = ("COMPETITION_", "KERAS_", "TF_")
TEST_KILL_ENV = "COMPETITION_TEST_KILL_FOLD"  # test hook: "2" kills fold 2's first attempt, "2:always" every one


def run_folds(prepared: Any, executor: str = "local", *, address: str | None = None, console: Any = None,
              resources: Any = None) -> None:
    """Train every pending fold of `prepared` (a competition.train.PreparedRun) with the named executor.
    `resources` overrides the recipe's `resources` section (Ray only)."""
    run = executor_named(executor, address)
    run(prepared, address=address, console=console, resources=resources or prepared.recipe.resources)


def executor_named(name: str, address: str | None = None) -> Callable[..., None]:
    """The executor called `name`; a wrong name, or an address for the local executor, is a one-line error."""
    if name not in EXECUTORS:
        raise CompetitionError(f"--executor: unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    if address is not None and name != "ray":
        raise CompetitionError("--address: a Ray cluster address needs --executor ray")
    return EXECUTORS[name]


def _reused(prepared: Any, pending: list[int], console: Any, prefix: str = "") -> None:
    from competition.train import _say

    for k in sorted(set(range(prepared.recipe.cv.folds)) - set(pending)):
        _say(console, f"{prefix}fold {k + 1}: finished earlier, reused")


# ---------------------------------------------------------------- local


def run_local(prepared: Any, *, address: str | None = None, console: Any = None, resources: Any = None) -> None:
    """One fold after another in this process, with a live progress bar."""
    from competition.train import Progress, _progress, _rss_mb, _say, frozen_features, train_fold

    pending = prepared.pending()
    _reused(prepared, pending, console)
    with _progress(console) as bar:
        progress = Progress(bar=bar)
        if bar is not None:
            progress.fold_task = bar.add_task(f"{prepared.run_dir.name}: folds", total=len(pending))
            progress.epoch_task = bar.add_task("epochs", total=None)
        features = frozen_features(prepared.recipe, prepared.x, len(prepared.classes)) if pending else None
        for k in pending:
            progress.fold, progress.best = k, float("-inf")
            t0 = time.perf_counter()
            fitted = train_fold(prepared, k, progress, features)
            _say(console, f"fold {k + 1}: best epoch {fitted.best_epoch}, val macro F1 {fitted.best_macro_f1:.4f} "
                          f"({time.perf_counter() - t0:.0f} s, RSS {_rss_mb():.0f} MB)")
            del fitted
            if bar is not None:
                bar.update(progress.fold_task, advance=1)


# ---------------------------------------------------------------- one process per fold


def run_process(prepared: Any, *, address: str | None = None, console: Any = None, resources: Any = None) -> None:
    """One fold after another, each in a fresh process: TensorFlow's memory (allocator arenas, traced
    functions) goes back to the system with the process, so memory does not grow from fold to fold. The child
    rebuilds the run from its folder and the decode cache and reports epochs to the live progress bar."""
    import multiprocessing
    import queue as queues

    from competition.train import Progress, _progress, _say

    pending = prepared.pending()
    _reused(prepared, pending, console)
    context = multiprocessing.get_context("spawn")
    with _progress(console) as bar:
        progress = Progress(bar=bar)
        if bar is not None:
            progress.fold_task = bar.add_task(f"{prepared.run_dir.name}: folds", total=len(pending))
            progress.epoch_task = bar.add_task("epochs", total=None)
        for k in pending:
            progress.fold, progress.best = k, float("-inf")
            messages = context.Queue()
            child = context.Process(target=_process_fold, args=(str(prepared.run_dir), k, prepared.deterministic,
                                                                os.getcwd(), messages), daemon=True)
            child.start()
            outcome: tuple[Any, ...] | None = None
            try:
                while outcome is None:
                    try:
                        message = messages.get(timeout=0.5)
                    except queues.Empty:
                        if not child.is_alive():
                            break
                        continue
                    if message[0] == "epoch":
                        progress.epoch(*message[1:])
                    else:
                        outcome = message
                child.join()
            except BaseException:  # Ctrl-C or an error here: the fold's process goes too
                child.kill()
                child.join()
                raise
            if outcome is None or outcome[0] != "done":
                reason = outcome[1] if outcome is not None else f"its process ended with exit code {child.exitcode}"
                raise CompetitionError(f"fold {k + 1} failed: {reason}; finished folds are kept, rerun to resume")
            _, best_epoch, best_f1, seconds, rss = outcome
            _say(console, f"fold {k + 1}: best epoch {best_epoch}, val macro F1 {best_f1:.4f} "
                          f"({seconds:.0f} s, RSS {rss:.0f} MB in its own process)")
            if bar is not None:
                bar.update(progress.fold_task, advance=1)


def _process_fold(run_dir: str, fold: int, deterministic: bool, workdir: str, messages: Any) -> None:
    """The child of run_process: train one fold, send epochs and the outcome back through `messages`."""
    _die_with_parent()
    os.chdir(workdir)
    from competition.train import Progress, _rss_mb, load_prepared, train_fold

    class Forward(Progress):
        def epoch(self, epoch: int, total: int, f1: float) -> None:
            messages.put(("epoch", epoch, total, f1))

    t0 = time.perf_counter()
    try:
        fitted = train_fold(load_prepared(run_dir, deterministic=deterministic), fold, Forward())
        messages.put(("done", int(fitted.best_epoch), float(fitted.best_macro_f1), time.perf_counter() - t0, _rss_mb()))
    except KeyboardInterrupt:
        os._exit(130)
    except CompetitionError as exc:
        messages.put(("error", str(exc)))
    except Exception as exc:  # reported by the parent as one line; the fold stays unfinished
        messages.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    messages.close()
    messages.join_thread()


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (a SIGKILLed driver leaves no orphan)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------- Ray


def _ray_fold(run_dir: str, fold: int, deterministic: bool, workdir: str | None = None,
              test_kill: str | None = None) -> dict[str, Any]:
    """A Ray task: train fold `fold` of the run in `run_dir` (written there, done.json last); a short summary back.
    `workdir` is the driver's folder, against which relative paths in the stored recipe (data.root) resolve;
    `test_kill` is the driver's COMPETITION_TEST_KILL_FOLD (an argument, not worker environment, so that
    workers are reused whatever the hook says)."""
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)
    from competition.train import load_prepared, train_fold

    t0 = time.perf_counter()
    prepared = load_prepared(run_dir, deterministic=deterministic)
    loaded = time.perf_counter() - t0
    fitted = train_fold(prepared, fold, _test_kill_hook(Path(run_dir), fold, test_kill))
    return {"fold": fold, "best_epoch": int(fitted.best_epoch), "best_macro_f1": float(fitted.best_macro_f1),
            "seconds": round(time.perf_counter() - t0, 2), "load_seconds": round(loaded, 2),
            "hostname": socket.gethostname(), "pid": os.getpid()}


def _test_kill_hook(run_dir: Path, fold: int, hook: str | None) -> Any:
    """Progress for the fold; under the test hook, one that SIGKILLs its own worker at the end of epoch 1 (the
    first attempt only, remembered by a marker file in the run folder, unless the hook says ':always')."""
    from competition.train import Progress

    target, _, mode = (hook if hook is not None else os.environ.get(TEST_KILL_ENV, "")).partition(":")
    if target != str(fold + 1):
        return Progress()
    marker = run_dir / f".test-killed-fold{fold + 1}"
    if marker.exists() and mode != "always":
        return Progress()

    class Killer(Progress):
        def epoch(self, epoch: int, total: int, f1: float) -> None:
            marker.write_text(f"{int(marker.read_text()) + 1 if marker.exists() else 1}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    return Killer()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CompetitionError("--executor ray: Ray is not installed; pip install 'competition[ray]' "
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
        raise CompetitionError(f"--executor ray: could not connect to {where}: {str(exc).splitlines()[0]}") from None
    return ray


def _worker_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.startswith(FORWARDED_ENV) and key != TEST_KILL_ENV}


def _check_fits(ray: Any, resources: Any, local: bool, console: Any) -> None:
    """A fold asking for more than any node has waits forever: an error on a local runtime, a warning on a
    cluster (an autoscaler may add such a node)."""
    from competition.train import _say

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    need = {"CPU": resources.cpus_per_fold, "GPU": resources.gpus_per_fold}
    if any(all(node.get(k, 0) >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    have = ", ".join(f"{int(n.get('CPU', 0))} CPU / {n.get('GPU', 0):g} GPU" for n in nodes) or "no nodes"
    text = (f"recipe.resources: a fold asks for {need['CPU']:g} CPU and {need['GPU']:g} GPU, more than any Ray "
            f"node has ({have})")
    if local:
        raise CompetitionError(text)
    _say(console, f"warning: {text}; the folds wait until such a node joins")


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


def run_ray(prepared: Any, *, address: str | None = None, console: Any = None, resources: Any = None) -> None:
    """One Ray task per pending fold, all submitted at once; Ray runs as many as the resources allow."""
    failed = submit_ray([prepared], address=address, console=console, resources=resources)
    if failed:
        raise CompetitionError(_failed_line(failed[0]))


def submit_ray(prepared_runs: list[Any], *, address: str | None = None, console: Any = None,
               resources: Any = None) -> dict[int, dict[int, str]]:
    """Every pending fold of every run as one Ray task, all submitted together; waits for all of them.
    Returns the failures: {index of the run: {fold: reason}} (empty when every fold finished)."""
    from competition.train import _say

    several = len(prepared_runs) > 1
    pending = [p.pending() for p in prepared_runs]
    for prepared, folds in zip(prepared_runs, pending, strict=True):
        _reused(prepared, folds, console, f"{prepared.run_dir.name}: " if several else "")
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
        _say(console, f"Ray: {len(folds)} fold(s) of {prepared.run_dir.name} submitted, each with "
                      f"{need.cpus_per_fold:g} CPU and {need.gpus_per_fold:g} GPU "
                      f"(cluster: {total.get('CPU', 0):g} CPU, {total.get('GPU', 0):g} GPU)")
        for k in folds:
            refs[task.remote(run_dir, k, prepared.deterministic, workdir, hook)] = (i, k)
    started = time.perf_counter()
    failed: dict[int, dict[int, str]] = {}
    waiting = list(refs)
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            i, k = refs[done[0]]
            who = f"{prepared_runs[i].run_dir.name}: fold {k + 1}" if several else f"fold {k + 1}"
            try:
                info = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - any task failure is reported per fold
                failed.setdefault(i, {})[k] = _failure(exc)
                _say(console, f"{who}: failed on Ray: {failed[i][k]}")
                continue
            _say(console, f"{who}: best epoch {info['best_epoch']}, val macro F1 {info['best_macro_f1']:.4f} "
                          f"({info['seconds']:.0f} s on {info['hostname']}, {info['load_seconds']:.0f} s of it "
                          f"loading; "
                          f"{time.perf_counter() - started:.0f} s since submit)")
    except KeyboardInterrupt:
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise
    return failed


def _failed_line(failed: dict[int, str]) -> str:
    folds = ", ".join(str(k + 1) for k in sorted(failed))
    reasons = sorted(set(failed.values()))
    reason = reasons[0] if len(reasons) == 1 else "; ".join(f"fold {k + 1}: {r}" for k, r in sorted(failed.items()))
    return f"fold(s) {folds} failed on Ray: {reason}; rerun the same command to train only those"


# ---------------------------------------------------------------- several recipes


def train_recipes(recipes: list[Any], runs_dir: str | Path = "runs", *, data_root: str | Path | None = None,
                  name: str | None = None, overwrite: bool = False, deterministic: bool = False,
                  console: Any = None, executor: str = "local", address: str | None = None) -> list[Path]:
    """Train several recipes; returns their finished run folders. Locally one recipe after another (each as
    `train_run`); on Ray every recipe is prepared first (all validated before any training), then all their
    pending folds are submitted together, so a cluster with more GPUs than one recipe has folds stays busy.
    A recipe whose folds all finished is finished (run.json) even when another recipe's fold failed."""
    from competition.train import finish_run, prepare_run, train_run

    executor_named(executor, address)
    if name is not None and len(recipes) > 1:
        raise CompetitionError("--name: only with one recipe (several recipes each use their own name)")
    names = [name or r.name for r in recipes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CompetitionError(f"recipes share the run name {', '.join(twice)}; give each recipe its own name")
    if executor != "ray":
        return [train_run(r, runs_dir, data_root=data_root, name=name, overwrite=overwrite, deterministic=deterministic,
                          console=console, executor=executor, address=address) for r in recipes]
    started = time.perf_counter()
    connect_ray(address)  # an unreachable cluster fails before any run folder is written
    prepared_runs = []
    for recipe in recipes:
        prepared = prepare_run(recipe, runs_dir, data_root=data_root, name=name, overwrite=overwrite, console=console,
                               deterministic=deterministic)
        prepared.x = prepared.x_test = None  # the workers read the pixels from the decode cache; free them here
        prepared_runs.append(prepared)
    failed = submit_ray(prepared_runs, address=address, console=console)
    finished = [finish_run(p, started, console) for i, p in enumerate(prepared_runs) if i not in failed]
    if failed:
        if len(prepared_runs) == 1:
            raise CompetitionError(_failed_line(failed[0]))
        lines = [f"{prepared_runs[i].run_dir.name}: {_failed_line(f)}" for i, f in sorted(failed.items())]
        done = f" ({', '.join(p.name for p in finished)} finished)" if finished else ""
        raise CompetitionError("; ".join(line.removesuffix("; rerun the same command to train only those")
                                         for line in lines) + f"{done}; rerun the same command to train only those")
    return finished


EXECUTORS: dict[str, Callable[..., None]] = {"local": run_local, "process": run_process, "ray": run_ray}
