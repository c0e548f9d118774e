"""Is the accelerator used, and how fast is it? Images per second for one backbone's train step and inference.

    python benchmarks/gpu_check.py                                   # MobileNetV2 a=0.35, 96 px, batch 64
    python benchmarks/gpu_check.py --backbone efficientnetb0 --size 224 --batch 128 --mixed-precision --jit
    python benchmarks/gpu_check.py --size 32 --batch 8 --steps 3     # seconds on a CPU: checks the script runs

Prints TensorFlow's devices (a CUDA build that finds no GPU shows only the CPU here), then the throughput of
`model.fit` steps (Adam, sparse cross-entropy, the framework's own classifier from competition.model.backbones with
random weights: no download) and of `model.predict`, each timed on a second pass so graph tracing and XLA
compilation are excluded. Synthetic uint8 images, fed from host memory as training does. The last line is
the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--alpha", type=float, default=0.35, help="width multiplier (MobileNets only)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--channels", type=int, default=3, choices=[1, 3])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 policy")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="XLA on (--jit) or off (--no-jit); default: Keras's 'auto'")
    args = parser.parse_args(argv)

    from competition.runtime import import_tensorflow

    import_tensorflow()  # quiet start-up, GPU memory growth
    import keras
    import numpy as np
    import tensorflow as tf

    from competition.model.backbones import build_model
    from competition.recipe import ModelConfig

    devices = tf.config.list_physical_devices()
    print("devices:", ", ".join(f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in devices))
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        print(f"  {gpu.name}: {details.get('device_name', '?')}, "
              f"compute capability {details.get('compute_capability')}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}")

    keras.mixed_precision.set_global_policy("mixed_float16" if args.mixed_precision else "float32")
    alpha = args.alpha if args.backbone.startswith("mobilenet") else None
    config = ModelConfig(backbone=args.backbone, weights="none", alpha=alpha)
    model = build_model(config, (args.size, args.size, args.channels), args.classes)
    jit = "auto" if args.jit is None else args.jit
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=jit)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch * args.steps, args.size, args.size, args.channels), dtype=np.uint8)
    y = rng.integers(0, args.classes, size=len(x)).astype(np.int32)

    def timed(fn: object) -> float:
        fn()  # trace, compile, warm up
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    train_s = timed(lambda: model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0))
    infer_s = timed(lambda: model.predict(x, batch_size=args.batch, verbose=0))
    result = {
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "backbone": args.backbone, "alpha": alpha, "size": args.size, "batch": args.batch, "steps": args.steps,
        "mixed_precision": args.mixed_precision, "jit_compile": jit, "params": int(model.count_params()),
        "train_images_per_s": round(len(x) / train_s, 1), "inference_images_per_s": round(len(x) / infer_s, 1),
    }
    print(f"{args.backbone} ({model.count_params():,} parameters), {args.size}px, batch {args.batch}, "
          f"{'mixed float16' if args.mixed_precision else 'float32'}, jit_compile={jit}, on {result['device']}:")
    print(f"  train step: {result['train_images_per_s']:.0f} images/s   inference: "
          f"{result['inference_images_per_s']:.0f} images/s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
