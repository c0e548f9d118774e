"""TensorFlow start-up: quiet, and tuned for CPUs without changing anything on a GPU."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: absl logs from C++ before any Python setting applies."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr (some runners): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# The number of CPU threads TensorFlow's kernels split their work over (intra- and inter-op pools). It changes
# float results: the same deterministic run gave different OOF probabilities in 1,877 of 2,000 values with
# TF_NUM_INTRAOP_THREADS=1 against 2 (up to 5e-6), while OMP_NUM_THREADS=1 (which Ray sets in its workers) and
# the inter-op count changed none. A deterministic run fixes it in the driver and hands it to every fold's
# process or Ray worker through this variable, so that a worker whose machine or cgroup shows another CPU
# count still splits the work the same way.
THREADS_ENV = "COMPETITION_THREADS"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), as TensorFlow counts them by default."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def thread_count() -> int:
    """The thread count to pin: COMPETITION_THREADS when set (a positive integer), else the usable CPUs.

    Raises CompetitionError for a value that is not a positive integer."""
    from competition.errors import CompetitionError

    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return usable_cpus()
    if not value.isdigit() or int(value) < 1:
        raise CompetitionError(f"{THREADS_ENV}: expected a positive integer, got {value!r}")
    return int(value)


def pin_threads_for_determinism() -> int:
    """Fix the thread count for this process and every fold worker it starts (they inherit or are passed
    COMPETITION_THREADS); returns it."""
    os.environ.setdefault(THREADS_ENV, str(usable_cpus()))
    return thread_count()


def thread_settings() -> dict[str, object]:
    """What decides float results on a CPU, as this process runs it (recorded in each fold's done.json)."""
    import tensorflow as tf

    threading = tf.config.threading
    return {"intra_op": threading.get_intra_op_parallelism_threads() or usable_cpus(),
            "inter_op": threading.get_inter_op_parallelism_threads() or usable_cpus(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def _pin_threads(tf: object) -> None:
    """Pin TensorFlow's pools to thread_count() threads; possible only before its first operation (in a
    process that already ran TensorFlow the earlier setting stays, and thread_settings() reports it)."""
    count = thread_count()
    threading = tf.config.threading  # type: ignore[attr-defined]
    try:
        threading.set_intra_op_parallelism_threads(count)
        threading.set_inter_op_parallelism_threads(count)
    except RuntimeError:  # "cannot be modified after initialization"
        pass


def import_tensorflow_only() -> object:
    """Import TensorFlow and Keras, their C++ start-up log silenced, and nothing more: no thread setting, no
    device listed, so TensorFlow's runtime is not started (its context, its thread pools, a GPU's driver). What
    the fold processes' fork server preloads (competition.executors.preload): a process forked after this
    starts TensorFlow as if it had imported it itself. Returns the tensorflow module."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_silenced():
        import keras  # noqa: F401  imports TensorFlow (its backend) too
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # retracing notices when each fold builds a fresh model
    return tf


def import_tensorflow() -> None:
    """Import TensorFlow once, its C++ start-up log silenced, GPU memory taken as needed, CPU threads pinned
    (see THREADS_ENV)."""
    # Read when a GPU is first initialised, so it also holds when Keras imported TensorFlow before us.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    # oneDNN kernels: 2.0x the training throughput without them (small CNN, 64 px, 2 CPU cores; median of 5
    # alternating runs each, paired ratios 1.45-2.23; `make bench`, row 4); the default in recent TF, explicit
    # for older ones.
    # Set even when TensorFlow is already imported (where it changes nothing here), so that fold processes and
    # Ray workers inherit the same value and every fold's done.json records the same settings.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "tensorflow" in sys.modules:
        _pin_threads(sys.modules["tensorflow"])
        return
    tf = import_tensorflow_only()
    _pin_threads(tf)
    for gpu in tf.config.list_physical_devices("GPU"):
        # Take GPU memory as needed rather than all of it up front: several fold processes can share a GPU
        # (recipe resources.gpus_per_fold < 1), and feature extraction and training do not fight over it.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # the GPU was initialised before us; leave it as it is
            pass
