"""`make bench`: how fast the framework is, measured against what it claims.

Each benchmark runs in its own Python subprocess (clean memory, its own environment such as
TF_ENABLE_ONEDNN_OPTS), on in-memory synthetic uint8 arrays, except where a benchmark names a file under
../shared (the Alzheimer set, the MobileNetV2 weights); without that file its row says "skipped". A benchmark
that fails becomes an "error: ..." row; the others still run.

    python benchmarks/run.py --out benchmarks # everything, about 10 minutes on 2 CPU cores (what `make bench` runs)
    python benchmarks/run.py --quick          # tiny sizes: checks the script works, the numbers mean nothing
    python benchmarks/run.py --only ensemble,decode --out /tmp/bench

Results: the table printed (benchmark, measured, goal, pass/fail, notes); with --out, also as Markdown in
OUT/results.md and every figure in OUT/results.json (both written atomically). Without --out nothing is written,
so a trial run never replaces the committed benchmarks/results.md.

Timing conventions. Training throughput is images per second over the epochs after the first (the first
epoch traces the graph), taken as the median epoch. "Excluding validation" subtracts the time the
framework's macro-F1 callback (ValidationScore) spends predicting the validation images at the end of each
epoch (timed by wrapping competition.engine.fold.predict_proba, the name it calls); plain `model.fit` does no
validation at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ALZHEIMER = SHARED / "data" / "alzheimer-mri"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
AUGMENT_RECIPE = ROOT / "recipes" / "alzheimer-cnn.yaml"
CLASSES = ["MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented"]

# Sizes per mode. Full: about 10 minutes in all on 2 idle CPU cores. Quick: seconds per benchmark.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "throughput": {"n_train": 2000, "n_val": 200, "epochs": 2, "rounds": 3, "batch": 32, "size": 64},
        "augment": {"n_train": 2000, "n_val": 200, "epochs": 2, "rounds": 5, "batch": 32, "size": 64},
        # heads: [pooling, batch size]; the flatten head at 32 is alzheimer-mobilenetv2's as shipped.
        "cached": {"n_train": 1024, "n_val": 256, "through_epochs": 2, "cached_epochs": 5, "amortise": 12,
                   "folds": 5, "size": 96, "repeats": 3, "heads": [["avg", 32], ["flatten", 128], ["flatten", 32]],
                   "goal_heads": ["avg", "flatten"]},
        "cached_resnet": {"backbone": "resnet50v2", "n_train": 192, "n_val": 64, "through_epochs": 1,
                          "cached_epochs": 3, "amortise": 10, "folds": 5, "size": 224, "repeats": 3,
                          "heads": [["flatten", 32]], "goal_heads": []},
        "onednn": {"n_train": 2000, "n_val": 200, "epochs": 2, "batch": 32, "size": 64, "pairs": 5},
        "ensemble": {"runs": 10, "folds": 5, "n_train": 5000, "n_test": 10000},
        "audit": {"source": "alzheimer"},
        "decode": {"limit": None, "size": 96},
        "memory": {"size": 128, "scale": 12.81, "channels": 3, "epochs": 1, "folds": 5},
        "startup": {"scale": 1.0, "repeats": 6},
    },
    "quick": {
        "throughput": {"n_train": 96, "n_val": 32, "epochs": 1, "rounds": 1, "batch": 32, "size": 64},
        "augment": {"n_train": 96, "n_val": 32, "epochs": 1, "rounds": 1, "batch": 32, "size": 64},
        "cached": {"n_train": 64, "n_val": 32, "through_epochs": 1, "cached_epochs": 2, "amortise": 12,
                   "folds": 5, "size": 96, "repeats": 1, "heads": [["avg", 32]], "goal_heads": ["avg"]},
        "cached_resnet": {"backbone": "resnet50v2", "n_train": 32, "n_val": 16, "through_epochs": 1,
                          "cached_epochs": 2, "amortise": 10, "folds": 5, "size": 64, "repeats": 1,
                          "heads": [["flatten", 32]], "goal_heads": []},
        "onednn": {"n_train": 96, "n_val": 32, "epochs": 1, "batch": 32, "size": 64, "pairs": 1},
        "ensemble": {"runs": 3, "folds": 5, "n_train": 500, "n_test": 1000},
        "audit": {"source": "demo", "scale": 0.2},
        "decode": {"limit": 200, "size": 96},
        "memory": {"size": 32, "scale": 0.3, "channels": 1, "epochs": 1, "folds": 2},
        "startup": {"scale": 0.2, "repeats": 3},
    },
}

# Subprocess time limits (seconds): a hung benchmark becomes an error row, not a hung `make bench`.
TIMEOUT = {"full": 900, "quick": 300}


class Skip(Exception):
    """A benchmark that cannot run here (a file under ../shared is absent): its row says why."""


# ================================================================ worker side (runs in a subprocess)


def _tf() -> None:
    from competition.runtime import import_tensorflow

    import_tensorflow()


def _synthetic(n: int, size: int, channels: int = 1, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8),
            rng.integers(0, len(CLASSES), n).astype(np.int64))


def _cnn_recipe(epochs: int, batch: int, size: int, extra: list[str] | None = None) -> Any:
    from competition.recipe import load_recipe

    return load_recipe(None, [f"data.image_size={size}", "data.channels=1", f"train.batch_size={batch}",
                              f"train.phases.0.epochs={epochs}", *(extra or [])])


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _precision(recipe: Any) -> None:
    """The dtype policy fit_fold sets before building (competition.engine.features.set_precision)."""
    from competition.engine.features import set_precision

    set_precision(recipe)


def framework_fit(recipe: Any, x: Any, y: Any, x_val: Any, y_val: Any, *, features: dict | None = None,
                  train_rows: Any = None, val_rows: Any = None) -> dict[str, Any]:
    """One competition.engine.fold.fit_phase call (phase 0) with a FoldData built as fit_fold builds it; per-epoch
    times from the fold's history (EpochLog's 'seconds': epoch start to after validation), validation time
    measured by wrapping the predict_proba that fit_phase's ValidationScore calls (the name bound in
    competition.engine.fold). The first epoch (tracing) is left out of the per-epoch figures."""
    import gc

    import keras

    import competition.engine.fold as fold_module
    from competition.console import Progress
    from competition.model.backbones import build_model

    val_seconds: list[float] = []
    original = fold_module.predict_proba

    def timed(model: Any, images: Any, batch_size: int | None = None) -> Any:
        start = time.perf_counter()
        out = original(model, images, batch_size)
        val_seconds.append(time.perf_counter() - start)
        return out

    seed = 1000
    keras.utils.set_random_seed(seed)
    _precision(recipe)
    data = fold_module.FoldData(recipe, CLASSES, x, y, x_val, y_val, seed,
                                train_rows=train_rows, val_rows=val_rows, features=features)
    model = build_model(recipe.model, x.shape[1:], len(CLASSES))
    fold_module.predict_proba = timed
    try:
        start = time.perf_counter()
        fold_module.fit_phase(model, data, 0, Progress())
        wall = time.perf_counter() - start
    finally:
        fold_module.predict_proba = original
    history = data.state.history
    epochs = len(history)
    if epochs != recipe.train.phases[0].epochs or len(val_seconds) != epochs:
        raise RuntimeError(f"expected {recipe.train.phases[0].epochs} epochs, history has {epochs} "
                           f"and {len(val_seconds)} validation passes")
    incl = [float(row["seconds"]) for row in history[1:]]
    val = val_seconds[1:]
    excl = [a - b for a, b in zip(incl, val, strict=True)]
    del model, data
    keras.backend.clear_session()
    gc.collect()
    return {"wall_s": wall, "first_epoch_s": float(history[0]["seconds"]), "epoch_incl_s": incl,
            "epoch_excl_s": excl, "val_s": val, "n_train": len(x), "n_val": len(x_val)}


def plain_fit(recipe: Any, x: Any, y: Any, *, steps_per_execution: int = 1, x_val: Any = None) -> dict[str, Any]:
    """The same model compiled the same way, trained by a bare `model.fit(x, y, batch_size, epochs, verbose=0)`
    on the arrays (Keras feeds them through its own prefetching tf.data pipeline), with `steps_per_execution`
    train steps per compiled call (0: a whole epoch per call); a callback only reads the clock at epoch start
    and end, after predicting `x_val` when given (the fast way: predict_on_batch chunks). What trains is the
    recipe's first phase's `trainable`, with a pretrained backbone's BatchNorm in inference mode, as the
    framework sets it: for a head phase, the whole classifier through its frozen backbone."""
    import gc

    import keras

    from competition.engine.optim import make_optimizer
    from competition.model.backbones import build_model, pretrained_backbone, set_trainable
    from competition.tta import predict_proba

    phase = recipe.train.phases[0]
    batch = phase.batch_size or recipe.train.batch_size
    keras.utils.set_random_seed(1000)
    _precision(recipe)
    model = build_model(recipe.model, x.shape[1:], len(CLASSES))
    set_trainable(model, phase.trainable, keep_batchnorm_frozen=pretrained_backbone(recipe.model))
    model.compile(optimizer=make_optimizer(phase.optimizer, phase.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=recipe.train.jit_compile,
                  steps_per_execution=steps_per_execution or -(-len(x) // batch))
    clock = epoch_clock(None if x_val is None else lambda: predict_proba(model, x_val))
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=phase.epochs, verbose=0, callbacks=[clock])
    wall = time.perf_counter() - start
    del model
    keras.backend.clear_session()
    gc.collect()
    return {"wall_s": wall, "first_epoch_s": clock.seconds[0], "epoch_s": clock.seconds[1:], "n_train": len(x)}


def _epoch_clock() -> Any:
    import keras

    class Clock(keras.callbacks.Callback):
        """Seconds from each epoch's start to its end, after `at_end()` (validation) when given."""

        def __init__(self, at_end: Callable[[], Any] | None = None) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.at_end = at_end

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.at_end is not None:
                self.at_end()
            self.seconds.append(time.perf_counter() - self.start)

    return Clock


def epoch_clock(at_end: Callable[[], Any] | None = None) -> Any:
    """A Keras callback timing each epoch (its `seconds`); made here, since Keras is imported only in workers."""
    return _epoch_clock()(at_end)


def work_throughput(cfg: dict[str, Any]) -> dict[str, Any]:
    """1. The framework vs the strongest plain Keras (the faster of `fit` on arrays with one step per compiled
    call and with a whole epoch per call), same model and arrays; each round runs all three, the order rotating
    from round to round."""
    _tf()
    x, y = _synthetic(cfg["n_train"], cfg["size"], seed=0)
    x_val, y_val = _synthetic(cfg["n_val"], cfg["size"], seed=1)
    recipe = _cnn_recipe(cfg["epochs"] + 1, cfg["batch"], cfg["size"])
    n = cfg["n_train"]
    rounds = []
    for r in range(cfg["rounds"]):
        order = ["plain_step", "plain_epoch", "framework"]
        order = order[r % 3:] + order[: r % 3]
        got: dict[str, Any] = {}
        for which in order:
            if which == "framework":
                got[which] = framework_fit(recipe, x, y, x_val, y_val)
            else:
                got[which] = plain_fit(recipe, x, y, steps_per_execution=1 if which == "plain_step" else 0)
        ips = {"plain_step": n / _median(got["plain_step"]["epoch_s"]),
               "plain_epoch": n / _median(got["plain_epoch"]["epoch_s"]),
               "framework_excl": n / _median(got["framework"]["epoch_excl_s"]),
               "framework_incl": n / _median(got["framework"]["epoch_incl_s"])}
        ips["plain_best"] = max(ips["plain_step"], ips["plain_epoch"])
        rounds.append({"order": order, "ips": ips, "val_s": got["framework"]["val_s"],
                       "wall_s": {k: v["wall_s"] for k, v in got.items()}})
    return {"rounds": rounds, "params": _params(recipe)}


def _params(recipe: Any) -> int:
    import keras

    from competition.model.backbones import build_model

    size = recipe.data.image_size
    model = build_model(recipe.model, (size[0], size[1], recipe.data.channels), len(CLASSES))
    count = int(model.count_params())
    keras.backend.clear_session()
    return count


def work_augment(cfg: dict[str, Any]) -> dict[str, Any]:
    """2. The framework with recipes/alzheimer-cnn.yaml's augment list (balance none) vs the strongest plain
    Keras without augmentation (`fit` on arrays, a whole epoch per compiled call); rounds alternate the order."""
    import yaml

    _tf()
    augment = yaml.safe_load(AUGMENT_RECIPE.read_text(encoding="utf-8")).get("augment") or []
    if not augment:
        raise RuntimeError(f"{AUGMENT_RECIPE}: no augment list")
    x, y = _synthetic(cfg["n_train"], cfg["size"], seed=0)
    x_val, y_val = _synthetic(cfg["n_val"], cfg["size"], seed=1)
    off = _cnn_recipe(cfg["epochs"] + 1, cfg["batch"], cfg["size"])
    on = _cnn_recipe(cfg["epochs"] + 1, cfg["batch"], cfg["size"], [f"augment={json.dumps(augment)}"])
    n = cfg["n_train"]
    rounds = []
    for r in range(cfg["rounds"]):
        got: dict[str, Any] = {}
        for which in (("off", "on") if r % 2 == 0 else ("on", "off")):
            got[which] = (plain_fit(off, x, y, steps_per_execution=0) if which == "off"
                          else framework_fit(on, x, y, x_val, y_val))
        rounds.append({"off_ips": n / _median(got["off"]["epoch_s"]), "on_ips": n / _median(got["on"]["epoch_excl_s"]),
                       "on_ips_incl": n / _median(got["on"]["epoch_incl_s"])})
    return {"rounds": rounds, "augment": augment, "workers": on.train.workers}


def work_cached(cfg: dict[str, Any]) -> dict[str, Any]:
    """3. The head phase on a frozen backbone: the framework on cached features vs the strongest plain Keras
    through the backbone, for each head in cfg["heads"] ([pooling, batch size]); cfg["repeats"] rounds, each
    computing the features anew (as frozen_features does: build, cut off the head, predict) and alternating
    which path runs first."""
    import numpy as np

    backbone = cfg.get("backbone", "mobilenetv2")
    if backbone == "mobilenetv2" and not MOBILENET_WEIGHTS.is_file():
        raise Skip(f"skipped: file not found: {MOBILENET_WEIGHTS}")
    _tf()
    import keras

    from competition.engine.features import extract, split_head, uses_cached_features
    from competition.model.backbones import build_model

    n_train, n_val, size = cfg["n_train"], cfg["n_val"], cfg["size"]
    x_all, y_all = _synthetic(n_train + n_val, size, seed=0)
    train_rows, val_rows = np.arange(n_train), np.arange(n_train, n_train + n_val)
    # ResNet50V2 runs with its own (random) weights: speed does not depend on their values, and the
    # cached-features path is taken for any weights but "none".
    model_args = (["model.backbone=mobilenetv2", "model.alpha=0.35", f"model.weights={MOBILENET_WEIGHTS}"]
                  if backbone == "mobilenetv2" else [f"model.backbone={backbone}", "model.weights=none"])
    heads: dict[str, Any] = {}
    for repeat in range(cfg["repeats"]):
        start = time.perf_counter()
        probe = _cnn_recipe(2, cfg["heads"][0][1], size, [*model_args, "train.phases.0.trainable=head"])
        _precision(probe)
        extractor, _ = split_head(build_model(probe.model, x_all.shape[1:], len(CLASSES)))
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        features = {"phase0": extract(extractor, x_all)}
        predict_s = time.perf_counter() - start
        del extractor
        keras.backend.clear_session()
        for pooling, batch in cfg["heads"]:
            base = [*model_args, f"model.head.pooling={pooling}", "model.head.dense=[256]", "model.head.dropout=0.3",
                    "train.phases.0.trainable=head", "train.phases.0.augment=false",
                    f"train.phases.0.batch_size={batch}"]
            cached_recipe = _cnn_recipe(cfg["cached_epochs"] + 1, 32, size, base)
            through_recipe = _cnn_recipe(cfg["through_epochs"] + 1, 32, size, base)
            if not uses_cached_features(cached_recipe, cached_recipe.train.phases[0]):
                raise RuntimeError("the recipe does not take the cached-features path")
            got: dict[str, Any] = {}
            for which in (("cached", "through") if repeat % 2 == 0 else ("through", "cached")):
                if which == "cached":
                    got[which] = framework_fit(cached_recipe, x_all[train_rows], y_all[train_rows], x_all[val_rows],
                                               y_all[val_rows], features=features, train_rows=train_rows,
                                               val_rows=val_rows)
                else:
                    got[which] = plain_fit(through_recipe, x_all[train_rows], y_all[train_rows],
                                           steps_per_execution=0, x_val=x_all[val_rows])
            heads.setdefault(f"{pooling}/{batch}", []).append({
                "features_s": build_s + predict_s, "features_build_s": build_s, "features_predict_s": predict_s,
                "cached_epoch_s": _median(got["cached"]["epoch_incl_s"]),
                "cached_epoch_excl_s": _median(got["cached"]["epoch_excl_s"]),
                "through_epoch_s": _median(got["through"]["epoch_s"])})
    return {"heads": heads, "n_features_images": n_train + n_val, "feature_shape": list(features["phase0"].shape[1:])}


def work_cnn(cfg: dict[str, Any]) -> dict[str, Any]:
    """4. Framework throughput of the small CNN under this process's TF_ENABLE_ONEDNN_OPTS."""
    _tf()
    x, y = _synthetic(cfg["n_train"], cfg["size"], seed=0)
    x_val, y_val = _synthetic(cfg["n_val"], cfg["size"], seed=1)
    result = framework_fit(_cnn_recipe(cfg["epochs"] + 1, cfg["batch"], cfg["size"]), x, y, x_val, y_val)
    n = cfg["n_train"]
    return {"ips": n / _median(result["epoch_excl_s"]), "ips_incl": n / _median(result["epoch_incl_s"]),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), **result}


def work_ensemble(cfg: dict[str, Any]) -> dict[str, Any]:
    """5. caruana ensemble + leaderboard + render(json) + submission over synthetic runs (creation not timed)."""
    import numpy as np
    import pandas as pd

    from competition.ensemble import build_ensemble
    from competition.report import leaderboard, render
    from competition.runs import Run, save_run
    from competition.submission import make_submission

    rng = np.random.default_rng(0)
    n, n_test, k = cfg["n_train"], cfg["n_test"], len(CLASSES)
    y = rng.integers(0, k, n)
    folds = rng.permutation(np.arange(n) % cfg["folds"])
    ids = np.array([f"train{i:06d}" for i in range(n)])
    test_ids = np.array([f"test{i:06d}" for i in range(n_test)])

    def softmax(z: Any) -> Any:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        runs_dir = Path(tmp) / "runs"
        sample = Path(tmp) / "sample_submission.csv"
        pd.DataFrame({"id": test_ids, "label": CLASSES[2]}).to_csv(sample, index=False)
        members = []
        for r in range(cfg["runs"]):
            strength = 1.0 + 0.2 * r
            oof = softmax(rng.normal(size=(n, k)) + strength * np.eye(k)[y])
            test = softmax(rng.normal(size=(n_test, k)))
            members.append(save_run(runs_dir / f"model{r:02d}", name=f"model{r:02d}", kind="model", classes=CLASSES,
                                    ids=ids, y=y, folds=folds, oof=oof, test=test, test_ids=test_ids,
                                    recipe_hash=f"{r:016x}", scheme=f"stratified {cfg['folds']}-fold seed 42",
                                    extra={"sample_submission": str(sample)}))
        timings: dict[str, float] = {}
        start = clock = time.perf_counter()
        runs = [Run.load(path) for path in members]
        timings["load"] = time.perf_counter() - clock
        clock = time.perf_counter()
        ensemble = build_ensemble(runs, "caruana", "ensemble", runs_dir)
        timings["build_ensemble"] = time.perf_counter() - clock
        clock = time.perf_counter()
        rows = leaderboard(runs_dir)
        timings["leaderboard"] = time.perf_counter() - clock
        clock = time.perf_counter()
        text = render(rows, "json", console=None)
        timings["render_json"] = time.perf_counter() - clock
        clock = time.perf_counter()
        out = make_submission(Run.load(ensemble), sample, Path(tmp) / "submission.csv")
        timings["submission"] = time.perf_counter() - clock
        total = time.perf_counter() - start
        if not text or not out.is_file() or len(rows) != cfg["runs"] + 1:
            raise RuntimeError("ensemble pipeline produced no leaderboard or submission")
    return {"seconds": total, "timings": timings}


def work_audit(cfg: dict[str, Any]) -> dict[str, Any]:
    """6. run_audit with a cold cache (the parent points COMPETITION_CACHE_DIR at a fresh folder)."""
    from competition.audit import run_audit

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        if cfg["source"] == "alzheimer":
            if not ALZHEIMER.is_dir():
                raise Skip(f"skipped: folder not found: {ALZHEIMER}")
            root = ALZHEIMER
        else:
            from competition.demo import make_demo

            root = make_demo(Path(tmp) / "demo", seed=0, size=64, scale=cfg["scale"])
        start = time.perf_counter()
        result = run_audit(root, Path(tmp) / "audit")
        seconds = time.perf_counter() - start
    counts = result.get("counts") or {}
    return {"seconds": seconds, "source": str(root) if cfg["source"] == "alzheimer" else "demo contest",
            "timings": result.get("timings", {}), "counts": counts, "cache": os.environ.get("COMPETITION_CACHE_DIR")}


def work_decode(cfg: dict[str, Any]) -> dict[str, Any]:
    """7. load_images of the Alzheimer train set at size x size: cold (decode + write cache) vs warm (cache hit)."""
    import numpy as np

    from competition.data import index_contest, load_images

    if not ALZHEIMER.is_dir():
        raise Skip(f"skipped: folder not found: {ALZHEIMER}")
    paths = index_contest(ALZHEIMER).train["path"].tolist()
    if cfg["limit"]:
        paths = paths[: cfg["limit"]]
    size = (cfg["size"], cfg["size"])
    start = time.perf_counter()
    cold = load_images(paths, size, 1)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = load_images(paths, size, 1)
    warm_s = time.perf_counter() - start
    if not np.array_equal(cold, warm):
        raise RuntimeError("the cached images differ from the decoded ones")
    return {"cold_s": cold_s, "warm_s": warm_s, "images": len(paths), "mb": cold.nbytes / 2**20}


def work_startup_prepare(cfg: dict[str, Any]) -> dict[str, Any]:
    """9 (set-up, not timed). A demo contest and a prepared 5-fold run of recipes/demo.yaml in cfg["root"]."""
    from competition.demo import make_demo
    from competition.recipe import load_recipe
    from competition.runs.prepare import prepare_run

    contest = make_demo(Path(cfg["root"]) / "contest", seed=0, size=64, scale=cfg["scale"])
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", [f"data.root={contest}"])
    prepared = prepare_run(recipe, Path(cfg["root"]) / "runs", data_root=contest)
    return {"run_dir": str(prepared.run_dir), "n_train": len(prepared.contest.train)}


def work_startup(cfg: dict[str, Any]) -> dict[str, Any]:
    """9. What a fold's process does before it can train, as competition.executors.process starts it: forked
    from the fork server (which imports TensorFlow once per driver, when the first fold starts), then
    load_prepared (the run rebuilt from its folder and the decode cache). Timed in this driver from
    Process.start(): the first fold waits for the server's start-up, the later ones do not."""
    from competition.executors.process import fold_context

    context = fold_context()
    folds = []
    for _ in range(cfg["repeats"]):
        messages = context.Queue()
        child = context.Process(target=_startup_fold, args=(cfg["run_dir"], messages))
        started = time.time()
        child.start()
        at_start, at_ready = messages.get(timeout=300)
        child.join()
        folds.append({"forked_s": at_start - started, "load_s": at_ready - at_start, "total_s": at_ready - started})
    return {"first": folds[0], "later": folds[1:]}


def _startup_fold(run_dir: str, messages: Any) -> None:
    """The fold process of work_startup: what competition.executors.process._process_fold does before training."""
    at_start = time.time()
    from competition.runs.prepare import load_prepared

    load_prepared(run_dir)
    messages.put((at_start, time.time()))


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "throughput": work_throughput, "augment": work_augment, "cached": work_cached, "cnn": work_cnn,
    "ensemble": work_ensemble, "audit": work_audit, "decode": work_decode, "startup_prepare": work_startup_prepare,
    "startup": work_startup,
}


def worker_main(name: str, config: str, result_path: str) -> int:
    try:
        out = {"ok": True, "result": WORKERS[name](json.loads(config))}
    except Skip as exc:
        out = {"ok": False, "skip": str(exc)}
    except BaseException as exc:  # reported as the benchmark's error row
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
               "traceback": traceback.format_exc()}
    Path(result_path).write_text(json.dumps(out, default=_jsonable), encoding="utf-8")
    return 0


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# ================================================================ parent side


class BenchError(Exception):
    pass


def spawn(worker: str, cfg: dict[str, Any], timeout: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one worker in a fresh interpreter; its result dict, or Skip / BenchError."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        result_file = Path(tmp) / "result.json"
        log = Path(tmp) / "log.txt"
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--config", json.dumps(cfg),
                   "--result", str(result_file)]
        with open(log, "w", encoding="utf-8") as handle:
            try:
                proc = subprocess.run(command, cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise BenchError(f"timed out after {timeout} s") from None
        if not result_file.is_file():
            tail = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
            raise BenchError(f"worker exited with code {proc.returncode}: {tail[-1] if tail else 'no output'}"[:300])
        out = json.loads(result_file.read_text(encoding="utf-8"))
    if out.get("skip"):
        raise Skip(out["skip"])
    if not out.get("ok"):
        raise BenchError(out.get("error", "unknown error"))
    return out["result"]


def row(benchmark: str, measured: str, goal: str, status: str, notes: str, **values: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "measured": measured, "goal": goal, "status": status, "notes": notes,
            "values": values}


def verdict(ok: bool) -> str:
    return "pass" if ok else "fail"


def _spread(values: list[float], digits: int = 2, suffix: str = "") -> str:
    return f"{min(values):.{digits}f}{suffix}–{max(values):.{digits}f}{suffix}"


def bench_throughput(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    r = spawn("throughput", cfg, TIMEOUT[mode])
    rounds = r["rounds"]
    excl = [x["ips"]["framework_excl"] / x["ips"]["plain_best"] for x in rounds]
    incl = [x["ips"]["framework_incl"] / x["ips"]["plain_best"] for x in rounds]
    med = lambda key: _median([x["ips"][key] for x in rounds])  # noqa: E731
    val = _median([v for x in rounds for v in x["val_s"]])
    size = f"{cfg['n_train']} imgs {cfg['size']}x{cfg['size']}x1, batch {cfg['batch']}, cnn {r['params']:,} params"
    epochs = (f"each of {len(rounds)} rounds runs all three (order rotating), median of {cfg['epochs']} epochs "
              "after 1 warm-up epoch")
    return [
        row("1. framework / strongest plain Keras, training img/s (excl. validation)", f"{_median(excl):.3f}",
            ">= 0.97", verdict(_median(excl) >= 0.97),
            f"min–max over rounds {_spread(excl, 3)}; framework {med('framework_excl'):.0f} img/s; plain Keras "
            f"fit on arrays: one step per call {med('plain_step'):.0f} img/s, a whole epoch per call "
            f"(steps_per_execution) {med('plain_epoch'):.0f} img/s, the faster of the two is each round's "
            f"baseline; {size}; {epochs}; validation-prediction time subtracted from each framework epoch",
            ratio=_median(excl), ratios=excl, rounds=rounds, params=r["params"]),
        row("1b. framework / strongest plain Keras, img/s (incl. validation)", f"{_median(incl):.3f}", "info", "info",
            f"min–max {_spread(incl, 3)}; the framework also scores macro F1 on {cfg['n_val']} validation images "
            f"every epoch ({val:.3f} s/epoch), which plain fit does not",
            ratio=_median(incl), ratios=incl),
    ]


def bench_augment(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    r = spawn("augment", cfg, TIMEOUT[mode])
    ratios = [x["on_ips"] / x["off_ips"] for x in r["rounds"]]
    ratio = _median(ratios)
    steps = ", ".join(next(iter(step)) for step in r["augment"])
    return [row("2. augmentation on (framework) / off (strongest plain Keras), training img/s", f"{ratio:.3f}",
                ">= 0.90", verdict(ratio >= 0.90),
                f"min–max over {len(ratios)} rounds {_spread(ratios, 3)}; off: plain fit on arrays, a whole epoch "
                f"per call, {_median([x['off_ips'] for x in r['rounds']]):.0f} img/s; on: the framework's PyDataset, "
                f"{r['workers']} worker threads, albumentations {steps} from {AUGMENT_RECIPE.name}, "
                f"{_median([x['on_ips'] for x in r['rounds']]):.0f} img/s excl. validation; small cnn, "
                f"{cfg['n_train']} imgs {cfg['size']}x{cfg['size']}x1, median of {cfg['epochs']} epochs after warm-up; "
                "balance none",
                ratio=ratio, ratios=ratios, rounds=r["rounds"])]


def bench_cached(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    r = spawn("cached", cfg, TIMEOUT[mode])
    resnet = cfg.get("backbone", "mobilenetv2") != "mobilenetv2"
    what = f"{cfg['backbone']} (random weights: speed only)" if resnet else "MobileNetV2 a0.35 (ImageNet)"
    n = cfg["amortise"]
    rows = []
    for index, (pooling, batch) in enumerate(cfg["heads"]):
        reps = r["heads"][f"{pooling}/{batch}"]
        per_epoch = [x["through_epoch_s"] / x["cached_epoch_s"] for x in reps]
        amortised = [x["through_epoch_s"] / (x["cached_epoch_s"] + x["features_s"] / n) for x in reps]
        whole_run = [x["through_epoch_s"] / (x["cached_epoch_s"] + x["features_s"] / (n * cfg["folds"])) for x in reps]
        goal = pooling in cfg["goal_heads"]
        number = ("3c" if resnet else "3") + ("abcdef"[index] if len(cfg["heads"]) > 1 else "")
        head = f"{'flatten' if pooling == 'flatten' else pooling + ' pooling'} + Dense(256) head, batch {batch}"
        through, cached = _median([x["through_epoch_s"] for x in reps]), _median([x["cached_epoch_s"] for x in reps])
        feats = _median([x["features_s"] for x in reps])
        common = (f"{what} {cfg['size']}x{cfg['size']}x1 frozen, {head}, no augment; {cfg['n_train']} train + "
                  f"{cfg['n_val']} val imgs; epochs incl. validation; median of {len(reps)} repeats")
        rows.append(row(f"{number}. head phase: cached features (framework) vs through the frozen backbone "
                        f"(strongest plain Keras), per epoch; {head}",
                        f"{_median(per_epoch):.1f}x", ">= 10x" if goal else "info",
                        verdict(_median(per_epoch) >= 10) if goal else "info",
                        f"min–max {_spread(per_epoch, 1, 'x')}; through {through:.3f} s/epoch, cached {cached:.3f} s/epoch "
                        f"(excl. val {_median([x['cached_epoch_excl_s'] for x in reps]):.3f} s); {common}",
                        speedup=_median(per_epoch), speedups=per_epoch, repeats=reps))
        rows.append(row(f"{number}-amortised. same, the one-off features counted, over {n} epochs",
                        f"{_median(amortised):.1f}x", ">= 5x" if goal else "info",
                        verdict(_median(amortised) >= 5) if goal else "info",
                        f"min–max {_spread(amortised, 1, 'x')}; features of {r['n_features_images']} imgs once: "
                        f"{feats:.2f} s (as frozen_features: model build "
                        f"{_median([x['features_build_s'] for x in reps]):.2f} s + predict "
                        f"{_median([x['features_predict_s'] for x in reps]):.2f} s), spread over {n} epochs (one "
                        f"fold's head phase in alzheimer-mobilenetv2); over a whole {cfg['folds']}-fold run (features "
                        f"once per contest): {_median(whole_run):.1f}x",
                        speedup=_median(amortised), speedups=amortised, whole_run=whole_run))
    return rows


def bench_onednn(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    runs: dict[str, list[float]] = {"1": [], "0": []}
    order = []
    for k in range(cfg["pairs"]):
        pair = ("1", "0") if k % 2 == 0 else ("0", "1")  # ABBA: neither setting always runs first
        for value in pair:
            runs[value].append(spawn("cnn", cfg, TIMEOUT[mode], env={"TF_ENABLE_ONEDNN_OPTS": value})["ips"])
            order.append(value)
    ratios = [a / b for a, b in zip(runs["1"], runs["0"], strict=True)]
    ratio = _median(runs["1"]) / _median(runs["0"])
    return [row("4. TF_ENABLE_ONEDNN_OPTS=1 / =0, training img/s", f"{ratio:.3f}", "info", "info",
                f"paired ratios min–max {_spread(ratios, 3)}; =1: median {_median(runs['1']):.0f} img/s "
                f"({_spread(runs['1'], 0)}), =0: median {_median(runs['0']):.0f} img/s ({_spread(runs['0'], 0)}); "
                f"{cfg['pairs']} runs each in fresh subprocesses, alternating (ABBA); framework, small cnn, "
                f"{cfg['n_train']} imgs {cfg['size']}x{cfg['size']}x1, median of {cfg['epochs']} epochs after "
                "warm-up, excl. validation",
                ratio=ratio, ratios=ratios, on_ips=runs["1"], off_ips=runs["0"], order=order)]


def bench_ensemble(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    r = spawn("ensemble", cfg, TIMEOUT[mode])
    parts = ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items())
    return [row("5. ensemble (caruana) + leaderboard + render json + submit", f"{r['seconds']:.2f} s", "<= 2 s",
                verdict(r["seconds"] <= 2.0),
                f"{cfg['runs']} runs x {cfg['folds']} folds, {cfg['n_train']} train rows, {cfg['n_test']} test rows, "
                f"4 classes; synthetic runs written first (not timed); seconds: {parts}",
                seconds=r["seconds"], timings=r["timings"])]


def bench_audit(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        r = spawn("audit", cfg, TIMEOUT[mode], env={"COMPETITION_CACHE_DIR": cache})
    parts = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items() if isinstance(v, (int, float)))
    what = "../shared/data/alzheimer-mri" if cfg["source"] == "alzheimer" else f"demo contest (scale {cfg.get('scale')})"
    return [row("6. audit, cold cache", f"{r['seconds']:.1f} s", "<= 60 s", verdict(r["seconds"] <= 60),
                f"run_audit({what}) with COMPETITION_CACHE_DIR a fresh folder (the OS file cache may be warm); "
                f"stages (s): {parts}", seconds=r["seconds"], timings=r["timings"])]


def bench_decode(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        r = spawn("decode", cfg, TIMEOUT[mode], env={"COMPETITION_CACHE_DIR": cache})
    speedup = r["cold_s"] / r["warm_s"] if r["warm_s"] > 0 else float("inf")
    return [row("7. decode cache: cold / warm", f"{r['cold_s']:.2f} s / {r['warm_s']:.2f} s ({speedup:.0f}x)", "info",
                "info",
                f"load_images of {r['images']} Alzheimer train images at {cfg['size']}x{cfg['size']}x1 "
                f"({r['mb']:.1f} MB): cold = hash + decode + write cache, warm = hash + read cache; "
                "fresh COMPETITION_CACHE_DIR (the OS file cache may be warm)",
                cold_s=r["cold_s"], warm_s=r["warm_s"], speedup=speedup, images=r["images"])]


MEMORY_RECIPE = """name: memory
data: {{root: {root}, image_size: {size}, channels: {channels}}}
model: {{backbone: cnn, weights: none, filters: [8, 16], head: {{pooling: avg, dense: [16], dropout: 0.0}}}}
augment:
  - HorizontalFlip: {{p: 0.5}}
train:
  batch_size: 32
  phases:
    - {{epochs: {epochs}, optimizer: adam, learning_rate: 0.001}}
cv: {{folds: {folds}, seed: 42}}
"""


def tree_rss(pid: int) -> tuple[int, int, int]:
    """(bytes of RSS summed over the process and all its descendants, the largest single RSS, process count).
    The sum counts pages shared between processes (libraries) once per process: an upper bound."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    sizes = []
    for proc in procs:
        try:
            sizes.append(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sum(sizes), max(sizes, default=0), len(sizes)


def bench_memory(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """8. Peak RSS of a whole `competition train` command (the parent and every fold process it starts, sampled
    every 50 ms) on a generated contest, process executor, a cold cache (decoding included)."""
    from competition.demo import make_demo

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = make_demo(Path(tmp) / "contest", seed=0, size=cfg["size"], scale=cfg["scale"])
        n_train = sum(1 for _ in (root / "train").rglob("*.png"))
        recipe = Path(tmp) / "memory.yaml"
        recipe.write_text(MEMORY_RECIPE.format(root=root, size=cfg["size"], channels=cfg["channels"],
                                               epochs=cfg["epochs"], folds=cfg["folds"]), encoding="utf-8")
        command = [str(Path(sys.executable).parent / "competition"), "train", str(recipe), "--runs",
                   str(Path(tmp) / "runs"), "--executor", "process"]
        env = {**os.environ, "COMPETITION_CACHE_DIR": str(Path(tmp) / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        peak = peak_single = processes = 0
        start = time.perf_counter()
        with open(Path(tmp) / "log.txt", "w", encoding="utf-8") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            while proc.poll() is None:
                total, single, count = tree_rss(proc.pid)
                peak, peak_single, processes = max(peak, total), max(peak_single, single), max(processes, count)
                if time.perf_counter() - start > TIMEOUT[mode]:
                    proc.kill()
                    raise BenchError(f"train did not finish in {TIMEOUT[mode]} s")
                time.sleep(0.05)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            lines = (Path(tmp) / "log.txt").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            raise BenchError(f"train exited with {proc.returncode}: {lines[-1] if lines else 'no output'}"[:300])
    gib = peak / 2**30
    return [row("8. peak RSS of `competition train`, parent + fold processes", f"{gib:.2f} GiB", "<= 2 GiB",
                verdict(gib <= 2.0),
                f"{n_train} generated {cfg['size']}x{cfg['size']} PNGs (demo contest, scale {cfg['scale']}), "
                f"channels {cfg['channels']}, {cfg['folds']} folds, process executor, cv.scheme auto, small cnn, "
                f"{cfg['epochs']} epoch(s), cold cache; sum over the process tree sampled every 50 ms (shared pages "
                f"counted per process: an upper bound); largest single process {peak_single / 2**30:.2f} GiB; "
                f"at most {processes} processes at once; wall {wall:.0f} s",
                peak_gib=gib, peak_single_gib=peak_single / 2**30, images=n_train, wall_s=wall)]


def bench_startup(mode: str, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = {"COMPETITION_CACHE_DIR": str(Path(tmp) / "cache")}
        made = spawn("startup_prepare", {"root": tmp, "scale": cfg["scale"]}, TIMEOUT[mode], env=env)
        measured = spawn("startup", {"run_dir": made["run_dir"], "repeats": cfg["repeats"]}, TIMEOUT[mode], env=env)
    first, later = measured["first"], measured["later"]
    total = _median([r["total_s"] for r in later])
    return [row(TITLES["startup"], f"{total:.1f} s", GOALS["startup"], verdict(total <= 5),
                f"a fold's process of recipes/demo.yaml on the demo ({made['n_train']} training images), started to "
                f"ready to train, median of {len(later)} folds: forked {_median([r['forked_s'] for r in later]):.2f} "
                f"s, load_prepared {_median([r['load_s'] for r in later]):.1f} s; each: "
                f"{_spread([r['total_s'] for r in later], 1, ' s')}. The run's first fold also waits for the fork "
                f"server to import TensorFlow (once per run): {first['total_s']:.1f} s. Before the fork server, "
                f"each fold spawned a fresh interpreter: 6.4 s (5.7 s of it the interpreter and TensorFlow)",
                total_s=total, first_fold_s=first["total_s"])]


BENCHMARKS: dict[str, Callable[[str, dict[str, Any]], list[dict[str, Any]]]] = {
    "throughput": bench_throughput, "augment": bench_augment, "cached": bench_cached,
    "cached_resnet": bench_cached, "onednn": bench_onednn, "ensemble": bench_ensemble, "audit": bench_audit,
    "decode": bench_decode, "memory": bench_memory, "startup": bench_startup,
}
TITLES = {"throughput": "1. framework / strongest plain Keras throughput", "augment": "2. augmentation on / off",
          "cached": "3. head phase: cached features vs through the frozen backbone",
          "cached_resnet": "3c. cached features vs through frozen ResNet50V2", "onednn": "4. TF_ENABLE_ONEDNN_OPTS 1 / 0",
          "ensemble": "5. ensemble + leaderboard + submit", "audit": "6. audit, cold cache",
          "decode": "7. decode cache cold / warm", "memory": "8. peak RSS of train",
          "startup": "9. a fold's process: started to ready to train"}
GOALS = {"throughput": ">= 0.97", "augment": ">= 0.90", "cached": ">= 10x", "cached_resnet": "info", "onednn": "info",
         "ensemble": "<= 2 s", "audit": "<= 60 s", "decode": "info", "memory": "<= 2 GiB", "startup": "<= 5 s"}


def run_one(name: str, mode: str) -> list[dict[str, Any]]:
    cfg = SIZES[mode][name]
    start = time.perf_counter()
    try:
        rows = BENCHMARKS[name](mode, cfg)
    except Skip as exc:
        rows = [row(TITLES[name], "—", GOALS[name], "skipped", str(exc))]
    except Exception as exc:  # any failure is this benchmark's row, never the end of the others
        message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
        rows = [row(TITLES[name], "—", GOALS[name], "error", f"error: {message}")]
    for r in rows:
        r["name"], r["seconds"], r["config"] = name, round(time.perf_counter() - start, 2), cfg
    return rows


# ---------------------------------------------------------------- output


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for label, names in (("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow_cpu")), ("keras", ("keras",)),
                         ("albumentations", ("albumentations",)), ("numpy", ("numpy",))):
        for name in names:
            try:
                out[label] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = ["# Benchmarks", ""]
    if meta["mode"] == "quick":
        lines += ["**QUICK MODE: tiny sizes to check the script runs; these numbers are not the benchmark.**", ""]
    lines += [f"Mode {meta['mode']}, {meta['started']}, {meta['seconds']:.0f} s in all; {meta['cpus']} CPUs, "
              f"load average {meta['load_before']} before and {meta['load_after']} after; "
              + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
              "| benchmark | measured | goal | pass/fail | notes |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(r['benchmark'])} | {_cell(r['measured'])} | {_cell(r['goal'])} | {_cell(r['status'])} | "
              f"{_cell(r['notes'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    colour = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow", "info": "cyan"}
    title = "Benchmarks" + (" — QUICK MODE (tiny sizes, numbers not meaningful)" if meta["mode"] == "quick" else "")
    table = Table(title=title, show_lines=True)
    for column, style in (("benchmark", "bold"), ("measured", ""), ("goal", ""), ("pass/fail", ""), ("notes", "dim")):
        table.add_column(column, style=style or None, overflow="fold")
    for r in rows:
        table.add_row(r["benchmark"], r["measured"], r["goal"],
                      f"[{colour.get(r['status'], 'white')}]{r['status']}[/]", r["notes"])
    console = Console()
    Console(width=max(console.width, 180)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), to test the script")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default=None,
                        help="folder for results.md and results.json (none: the table is printed, nothing written; "
                             "`make bench` gives benchmarks/)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.config or "{}", args.result)

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    mode = "quick" if args.quick else "full"
    started, load_before, clock = dt.datetime.now().astimezone(), _load(), time.perf_counter()
    rows: list[dict[str, Any]] = []
    for name in names:
        print(f"[bench] {name} ({mode}) ...", flush=True)
        rows += run_one(name, mode)
    meta = {"mode": mode, "started": started.isoformat(timespec="seconds"), "seconds": time.perf_counter() - clock,
            "cpus": os.cpu_count(), "load_before": load_before, "load_after": _load(), "versions": _versions(),
            "host": platform.node(), "machine": platform.machine()}

    print_table(meta, rows)
    if args.out is None:
        return 0
    from competition.files import write_json, write_text

    out = Path(args.out)
    write_text(out / "results.md", markdown(meta, rows))
    write_json(out / "results.json", {**meta, "results": rows})
    print(f"written: {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
