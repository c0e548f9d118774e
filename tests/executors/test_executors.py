"""Executors: folds as Ray tasks give the local executor's OOF bit for bit, survive a killed worker (retry),
report a fold that keeps failing by number, and a rerun trains only that fold. Plus the recipe knobs that go
with scaling out: resources (not in the hash), mixed precision and jit_compile."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from competition.errors import CompetitionError
from competition.executors.common import TEST_KILL_ENV
from competition.recipe import load_recipe
from competition.runs import Run
from competition.runs.fold_files import fold_is_done
from competition.training import train_recipes, train_run

pytestmark = pytest.mark.slow  # every test here trains folds in other processes or on Ray

BASE = ["name=tiny", "data.image_size=32", "model.filters=[8, 16]", "model.head.dense=[16]",
        "train.phases.0.epochs=2", "cv.folds=2", "cv.seed=1", "augment=[{HorizontalFlip: {p: 0.5}}]"]


@pytest.fixture(scope="module")
def ray_runtime() -> object:
    """A local Ray runtime of 2 CPUs for the module; the executor reuses it (workers get the test's
    COMPETITION_CACHE_DIR and KERAS_HOME through the task's runtime_env)."""
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tiny_contest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("local")
    return train_run(load_recipe(None, BASE), runs, data_root=tiny_contest, deterministic=True)


@pytest.fixture(scope="module")
def local_oof(local_run: Path) -> np.ndarray:
    return Run.load(local_run).oof


def _fold_threads(run_dir: Path) -> list[dict]:
    """Each fold's recorded thread settings, less OMP_NUM_THREADS: Ray sets it to 1 in its workers, and it
    changed no value of a deterministic run (measured; see competition.runtime.THREADS_ENV)."""
    done = [json.loads((run_dir / f"fold_{k}" / "done.json").read_text())["threads"] for k in range(2)]
    return [{key: value for key, value in threads.items() if key != "omp_num_threads"} for threads in done]


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


def test_ray_folds_equal_local_folds_even_after_a_killed_worker(
        ray_runtime: object, local_oof: np.ndarray, tiny_contest: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_KILL_ENV, "1")  # fold 1's worker SIGKILLs itself after epoch 1, first attempt only
    console, out = _console()
    run_dir = train_run(load_recipe(None, BASE), tmp_path, data_root=tiny_contest, deterministic=True,
                        executor="ray", console=console)
    assert (run_dir / ".test-killed-fold1").read_text().strip() == "1"  # killed once, then retried by Ray
    assert "fold 1: best epoch" in out.getvalue() and "failed" not in out.getvalue()
    assert "fold 0 (1 of 2)  epoch 2/2  loss " in out.getvalue()  # epochs read from history.csv as they end
    np.testing.assert_array_equal(Run.load(run_dir).oof, local_oof)


def test_every_executor_runs_a_deterministic_fold_with_the_same_threads(
        ray_runtime: object, local_run: Path, tiny_contest: Path, tmp_path: Path) -> None:
    """The thread count changes float sums, so a deterministic run pins it in the driver and every fold's
    process or Ray worker (where Ray sets OMP_NUM_THREADS=1) uses the same; done.json records it."""
    from competition.runtime import thread_count

    expected = _fold_threads(local_run)
    assert expected[0]["intra_op"] == thread_count() and expected[0] == expected[1]
    for executor in ("process", "ray"):
        run_dir = train_run(load_recipe(None, BASE), tmp_path / executor, data_root=tiny_contest,
                            deterministic=True, executor=executor)
        assert _fold_threads(run_dir) == expected, executor
        recorded = json.loads((run_dir / "run.json").read_text())["fold_threads"]
        assert [t["intra_op"] for t in recorded] == [expected[0]["intra_op"]] * 2
        np.testing.assert_array_equal(Run.load(run_dir).oof, Run.load(local_run).oof)


def test_the_pinned_thread_count_reaches_ray_workers(ray_runtime: object, tiny_contest: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """COMPETITION_THREADS set by the user (here one more than the suite's count, tests/conftest.py) is what the
    worker uses."""
    from competition.runtime import thread_count

    wanted = thread_count() + 1
    monkeypatch.setenv("COMPETITION_THREADS", str(wanted))
    run_dir = train_run(load_recipe(None, [*BASE, "cv.folds=2"]), tmp_path, data_root=tiny_contest,
                        deterministic=True, executor="ray")
    assert {t["intra_op"] for t in _fold_threads(run_dir)} == {wanted}


def test_a_fold_failing_every_attempt_is_reported_and_a_rerun_trains_only_it(
        ray_runtime: object, local_oof: np.ndarray, tiny_contest: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load_recipe(None, BASE)
    monkeypatch.setenv(TEST_KILL_ENV, "1:always")
    with pytest.raises(CompetitionError, match=r"^fold\(s\) 1 failed on Ray: its worker died .*; rerun the same "
                                               r"command to train only those$"):
        train_run(recipe, tmp_path, data_root=tiny_contest, deterministic=True, executor="ray")
    run_dir = tmp_path / "tiny"
    assert (run_dir / ".test-killed-fold1").read_text().strip() == "2"  # the first attempt and its retry
    stored = (run_dir / "recipe.hash").read_text().strip()
    assert fold_is_done(run_dir, 0, stored) and not fold_is_done(run_dir, 1, stored)
    assert not (run_dir / "run.json").exists()

    # The rerun, with a second recipe whose folds are submitted together with the missing one.
    monkeypatch.delenv(TEST_KILL_ENV)
    console, out = _console()
    other = load_recipe(None, [*BASE, "name=tiny2"])  # trains exactly the same: the name is not a seed
    finished = train_recipes([recipe, other], tmp_path, data_root=tiny_contest, deterministic=True,
                             executor="ray", console=console)
    assert finished == [run_dir, tmp_path / "tiny2"]
    text = out.getvalue()
    assert "tiny: fold 0: finished earlier, reused" in text and "1 fold(s) of tiny submitted" in text
    assert "2 fold(s) of tiny2 submitted" in text and "tiny2: fold 1: best epoch" in text
    for path in finished:
        np.testing.assert_array_equal(Run.load(path).oof, local_oof)


def test_a_fold_asking_more_than_the_runtime_has_fails_at_once(ray_runtime: object, tiny_contest: Path,
                                                               tmp_path: Path) -> None:
    recipe = load_recipe(None, [*BASE, "resources.gpus_per_fold=1"])
    with pytest.raises(CompetitionError, match=r"recipe.resources: a fold asks for 1 CPU and 1 GPU, more than any"):
        train_run(recipe, tmp_path, data_root=tiny_contest, executor="ray")


def test_executor_names_and_address_are_checked_before_anything_is_written(tiny_contest: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, BASE)
    with pytest.raises(CompetitionError, match=r"^executor: unknown executor 'dask'; known: local, process, ray$"):
        train_run(recipe, tmp_path, data_root=tiny_contest, executor="dask")
    with pytest.raises(CompetitionError, match=r"^address: a Ray cluster address needs the ray executor$"):
        train_run(recipe, tmp_path, data_root=tiny_contest, address="auto")
    with pytest.raises(CompetitionError, match=r"recipes share the run name tiny; give each recipe its own name"):
        train_recipes([recipe, recipe], tmp_path, data_root=tiny_contest, executor="ray")
    with pytest.raises(CompetitionError, match=r"^name: only with one recipe"):
        train_recipes([recipe, load_recipe(None, [*BASE, "name=b"])], tmp_path, name="x", data_root=tiny_contest)
    assert not any(tmp_path.iterdir())


def test_resources_are_not_part_of_the_recipe_hash() -> None:
    base = load_recipe(None, BASE)
    assert load_recipe(None, [*BASE, "resources.cpus_per_fold=4", "resources.gpus_per_fold=0.5"]).hash() == base.hash()
    assert load_recipe(None, [*BASE, "train.mixed_precision=true"]).hash() != base.hash()
    assert load_recipe(None, [*BASE, "train.jit_compile=false"]).hash() != base.hash()
    with pytest.raises(CompetitionError,
                       match=r"recipe.resources.gpu_per_fold: unknown key \(did you mean 'gpus_per_fold'\?\)"):
        load_recipe(None, [*BASE, "resources.gpu_per_fold=1"])


def test_mixed_precision_trains_in_float16_with_float32_probabilities(tiny_contest: Path, tmp_path: Path) -> None:
    import keras

    recipe = load_recipe(None, [*BASE, "train.phases.0.epochs=1", "train.mixed_precision=true",
                                "train.jit_compile=false"])
    try:
        run_dir = train_run(recipe, tmp_path, data_root=tiny_contest)
        model = keras.saving.load_model(run_dir / "fold_0" / "model.keras", compile=False)
        assert model.get_layer("probabilities").compute_dtype == "float32"
        assert any(layer.compute_dtype == "float16" for layer in model.layers)
        oof = Run.load(run_dir).oof
        assert oof.dtype == np.float32 and np.all(np.isfinite(oof))
        np.testing.assert_allclose(oof.sum(axis=1), 1, atol=1e-3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_process_folds_fork_from_a_server_and_get_the_drivers_current_environment(
        tiny_contest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process executor forks each fold from a fork server that imported TensorFlow once; the server keeps
    the environment it started with, so each fold must be given the driver's as it is when the fold starts
    (here a thread count set after the server started: every fold records it)."""
    from competition.executors.process import fold_context
    from competition.runtime import thread_count

    context = fold_context()
    assert context.get_start_method() == "forkserver"
    started = context.Process(target=int)  # the server is running from here on, with the suite's environment
    started.start()
    started.join()
    wanted = thread_count() + 1
    monkeypatch.setenv("COMPETITION_THREADS", str(wanted))
    run_dir = train_run(load_recipe(None, [*BASE, "train.phases.0.epochs=1"]), tmp_path, data_root=tiny_contest,
                        executor="process")
    assert {t["intra_op"] for t in _fold_threads(run_dir)} == {wanted}
