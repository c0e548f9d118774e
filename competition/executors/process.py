"""The process executor (the command line's default): each pending fold in a fresh process, so memory does not
grow from fold to fold."""

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
    import multiprocessing
    import queue as queues

    pending = prepared.pending()
    say_reused(prepared, pending, console)
    prepared.free_pixels()  # each fold's process reads the pixels from the decode cache
    context = multiprocessing.get_context("spawn")
    with progress_bar(console) as bar:
        progress = Progress(bar=bar, console=console, metric=prepared.metric)
        progress.start_folds(prepared.run_dir.name, len(pending), prepared.recipe.cv.folds)
        for k in pending:
            progress.start_fold(k)
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
                raise CompetitionError(f"fold {k} failed: {reason}; finished folds are kept, rerun to resume")
            _, best_epoch, best_score, seconds, rss = outcome
            say(console, f"fold {k}: best epoch {best_epoch}, val {prepared.metric.title} {best_score:.4f} "
                         f"({seconds:.0f} s, RSS {rss:.0f} MB in its own process)")
            progress.fold_done()


def _process_fold(run_dir: str, fold: int, deterministic: bool, workdir: str, messages: Any) -> None:
    """The child of run_process: train one fold, send epochs and the outcome back through `messages`."""
    _die_with_parent()
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
    """Linux: the kernel kills this process when its parent dies (a SIGKILLed driver leaves no orphan)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
