"""The process executor (the command line's default): each pending fold in a fresh process, so memory does not
grow from fold to fold. The processes are forked from a fork server that imported TensorFlow once
(competition.executors.preload), so a fold starts training within seconds of its process starting."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from competition.console import Progress, progress_bar, rss_mb, say
from competition.errors import CompetitionError, OptionError
from competition.executors.common import say_reused


def run_process(prepared: Any, *, address: str | None = None, console: Any = None, resources: Any = None,
                callbacks: tuple[Any, ...] = ()) -> None:
    """One fold after another, each in a fresh process: TensorFlow's memory (allocator arenas, traced
    functions) goes back to the system with the process, so memory does not grow from fold to fold. The child
    rebuilds the run from its folder and the decode cache and reports epochs to the live progress bar.
    `callbacks` are not passed on (they live in this process): a CompetitionError says so."""
    if callbacks:
        raise OptionError("callbacks", "Keras callbacks run only with the local executor (they stay in this process)")
    import queue as queues

    pending = prepared.pending()
    say_reused(prepared, pending, console)
    prepared.free_pixels()  # each fold's process reads the pixels from the decode cache
    context = fold_context()
    with progress_bar(console) as bar:
        progress = Progress(bar=bar, console=console, metric=prepared.metric)
        progress.start_folds(prepared.run_dir.name, len(pending), prepared.recipe.cv.folds)
        for k in pending:
            progress.start_fold(k)
            messages = context.Queue()
            child = context.Process(target=_process_fold, args=(str(prepared.run_dir), k, prepared.deterministic,
                                                                os.getcwd(), dict(os.environ), messages),
                                    daemon=True)
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
                raise CompetitionError(f"fold {k} failed: {reason}; finished folds are kept, rerun to resume")
            _, best_epoch, best_score, seconds, rss = outcome
            say(console, f"fold {k}: best epoch {best_epoch}, val {prepared.metric.title} {best_score:.4f} "
                         f"({seconds:.0f} s, RSS {rss:.0f} MB in its own process)")
            progress.fold_done()


def fold_context() -> Any:
    """The multiprocessing context fold processes start from: a fork server (one per driver process, started by
    start_fold_server when `train` begins, else at the first fold) that preloads competition.executors.preload,
    i.e. TensorFlow imported but not started.

    Forking is safe there because the server never ran a TensorFlow operation nor touched a GPU: the runtime
    (thread pools, CUDA) starts in each fold's process, as with a fresh interpreter. The server keeps the
    environment of the moment it started; each fold gets the driver's current one (see _process_fold)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows: a fresh interpreter per fold
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["competition.executors.preload"])
    return context


def start_fold_server() -> None:
    """Start the fold processes' fork server now, without waiting for it: it imports TensorFlow while this
    process prepares the run (decoding, folds, checks), so the first fold need not wait for that import. Later
    calls, and run_process, reuse the running server."""
    import multiprocessing.forkserver

    if fold_context().get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()


def _process_fold(run_dir: str, fold: int, deterministic: bool, workdir: str, environ: dict[str, str],
                  messages: Any) -> None:
    """The child of run_process: train one fold, send epochs and the outcome back through `messages`.
    `environ` and `workdir` are the driver's at the fold's start (the fork server's may be older: thread count,
    test hooks, TF_* settings read when TensorFlow starts)."""
    _die_with_parent()
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(workdir)
    from competition.runs.prepare import load_prepared, train_fold

    class Forward(Progress):
        def epoch(self, epoch: int, total: int, f1: float, loss: float = float("nan")) -> None:
            messages.put(("epoch", epoch, total, f1, loss))

    t0 = time.perf_counter()
    try:
        fitted = train_fold(load_prepared(run_dir, deterministic=deterministic), fold, Forward())
        messages.put(("done", int(fitted.best_epoch), float(fitted.best_score), time.perf_counter() - t0, rss_mb()))
    except KeyboardInterrupt:
        os._exit(130)
    except CompetitionError as exc:
        messages.put(("error", str(exc)))
    except Exception as exc:  # reported by the parent as one line; the fold stays unfinished
        messages.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    messages.close()
    messages.join_thread()


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (a SIGKILLed driver leaves no orphan: its fork
    server exits when the driver's end of their pipe closes, and takes the fold's process with it)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
