"""Peak memory of `competition predict` against the number of images: bounded when batches stream.

Builds, in a temporary folder, a run that trains nothing (two untrained small-CNN fold models at 16x16 grey,
saved as `train` saves them, with the run files `predict` reads) and N random 16x16 grey PNGs, then runs the
`competition predict` command on them once per N, each in a fresh process with a fresh decode cache
(COMPETITION_CACHE_DIR in the temporary folder: every image is decoded, none read back), and reports its peak
resident memory (the child's ru_maxrss) and wall time. The largest N runs only when the time measured at the
one before, scaled linearly, says it will take under --budget seconds.

    python benchmarks/predict_memory.py                        # N = 1,000, 10,000, 100,000 (within budget)
    python benchmarks/predict_memory.py --sizes 100,1000 --budget 60

Prints one row per N: images, seconds, peak RSS in MiB, rows written; and the growth in MiB per 10,000
images between the smallest and the largest N measured. Not part of the test suite or `make bench`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 16
CLASSES = ["a", "b", "c"]
RECIPE = f"""\
name: mem
data: {{image_size: {SIZE}, channels: 1}}
model: {{backbone: cnn, filters: [4], head: {{dense: [4]}}}}
train: {{batch_size: 8, phases: [{{epochs: 1}}]}}
cv: {{folds: 2, seed: 1}}
"""


def build_run(runs: Path) -> None:
    """runs/mem: a finished two-fold run of untrained models (what `predict` reads: run.json, folds.csv, the
    arrays, recipe.yaml and fold_<k>/model.keras)."""
    from competition.model.backbones import build_model
    from competition.recipe import load_recipe
    from competition.runs import save_run
    from competition.runtime import import_tensorflow

    import_tensorflow()
    recipe_file = runs.parent / "mem.yaml"
    recipe_file.write_text(RECIPE)
    recipe = load_recipe(recipe_file)
    run_dir = runs / "mem"
    n = 6
    uniform = np.full((n, len(CLASSES)), 1 / len(CLASSES), dtype=np.float32)
    save_run(run_dir, name="mem", kind="model", classes=CLASSES, ids=np.array([f"t{i}" for i in range(n)]),
             y=np.arange(n) % len(CLASSES), folds=np.arange(n) % 2, oof=uniform, test=uniform[:1],
             test_ids=np.array(["x"]))
    (run_dir / "recipe.yaml").write_text(RECIPE)
    for k in range(2):
        (run_dir / f"fold_{k}").mkdir(exist_ok=True)
        build_model(recipe.model, (SIZE, SIZE, 1), len(CLASSES)).save(run_dir / f"fold_{k}" / "model.keras")


def write_images(folder: Path, n: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(folder / f"img{i:06d}.png")


def measure(work: Path, n: int) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, rows written) of `competition predict` on n images, in a fresh process."""
    images = work / f"images_{n}"
    write_images(images, n)
    out = work / f"pred_{n}.csv"
    command = [str(Path(sys.executable).parent / "competition"), "predict", "mem", str(images), "--runs",
               str(work / "runs"), "--out", str(out)]
    # An intermediate Python, so that RUSAGE_CHILDREN's maximum is this one command's.
    probe = ("import resource, subprocess, sys, time; t = time.monotonic(); done = subprocess.run(sys.argv[1:]); "
             "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)")
    env = {**os.environ, "COMPETITION_CACHE_DIR": str(work / f"cache_{n}")}
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, env=env)
    seconds, max_kib, code = done.stdout.split()[-3:]
    if code != "0":
        raise SystemExit(f"predict failed on {n} images:\n{done.stdout[-2000:]}")
    rows = sum(1 for _ in out.open()) - 1
    return float(seconds), int(max_kib) / 1024, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="Image counts, ascending.")
    parser.add_argument("--budget", type=float, default=300.0, help="Largest predicted seconds for one N.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'images':>8} {'seconds':>8} {'peak RSS MiB':>13} {'rows':>8}")
    results = []
    with tempfile.TemporaryDirectory(prefix="predict-memory-") as tmp:
        work = Path(tmp)
        build_run(work / "runs")
        for n in sizes:
            if results and results[-1][1] * n / results[-1][0] > args.budget:
                print(f"{n:>8} skipped: about {results[-1][1] * n / results[-1][0]:.0f} s expected, over the "
                      f"{args.budget:.0f} s budget")
                continue
            started = time.monotonic()
            seconds, peak, rows = measure(work, n)
            print(f"{n:>8} {seconds:>8.1f} {peak:>13.0f} {rows:>8}   (images written and measured in "
                  f"{time.monotonic() - started:.0f} s)", flush=True)
            results.append((n, seconds, peak))
    if len(results) > 1:
        (n0, _, p0), (n1, _, p1) = results[0], results[-1]
        print(f"growth: {(p1 - p0) / (n1 - n0) * 10_000:.1f} MiB per 10,000 images ({n0:,} -> {n1:,})")
    print(f"machine: {os.cpu_count()} CPUs; peak RSS is ru_maxrss of the `competition predict` process")


if __name__ == "__main__":
    main()
