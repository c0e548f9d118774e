"""A trained run as one deployable model: the mean of its fold models (one Keras model taking uint8-range
images (batch, h, w, channels) and returning class probabilities), written as a `.keras` file, a TensorFlow
SavedModel or a TFLite flatbuffer (TensorFlow's own converters), with the class list, input size, channels and
preprocessing in `model.json` and a README of how to call it. Each export is checked: its outputs on 8 of the
run's images must equal the fold models' mean within 1e-4, else nothing is written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError, OptionError

FORMATS = ("keras", "savedmodel", "tflite")
TOLERANCE = 1e-4


def averaged_model(run_dir: Path, n_folds: int) -> Any:
    """One Keras model: the mean of the run's fold models' probabilities (standard layers only)."""
    import keras

    from competition.runs.folder import fold_model_path

    import_module("competition.model.layers")  # registers the layer of models saved by earlier versions
    models = [keras.saving.load_model(fold_model_path(run_dir, k)) for k in range(n_folds)]
    for k, model in enumerate(models):
        model.name = f"fold_{k}"
    image = keras.Input(models[0].input_shape[1:], name="image")
    outputs = [model(image) for model in models]
    outputs = [out[0] if isinstance(out, (list, tuple)) else out for out in outputs]  # one-output models
    mean = keras.layers.Average(name="probabilities")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(image, mean, name="run_mean")


def _predict(fmt: str, path: Path, images: np.ndarray) -> np.ndarray:
    import keras
    import tensorflow as tf

    x = images.astype(np.float32)
    if fmt == "keras":
        return np.asarray(keras.saving.load_model(path).predict(x, verbose=0))
    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(path))
        return np.asarray(loaded.serve(tf.constant(x)))
    interpreter = tf.lite.Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(target["index"]))


def export_run(run: str | Path, runs_dir: str | Path = "runs", *, fmt: str = "keras",
               out: str | Path | None = None) -> tuple[Path, float]:
    """Export the run's averaged model to folder `out` (default exports/<run>-<fmt>); returns (the folder,
    the largest absolute difference from the fold models' mean on 8 of its images). Raises CompetitionError
    (OptionError for `fmt`) for an ensemble, an unknown format, or an export that disagrees with the run."""
    import yaml

    from competition.data import decode_images
    from competition.recipe import Recipe
    from competition.registry import unknown_name
    from competition.runs import resolve_run
    from competition.runs.folder import read_folds, read_meta, read_recipe_text
    from competition.runtime import import_tensorflow

    problem = unknown_name(fmt, FORMATS, "format")
    if problem:
        raise OptionError("fmt", problem)
    run_dir = resolve_run(run, runs_dir)
    meta = read_meta(run_dir)
    if meta.get("kind") == "ensemble":
        raise CompetitionError(f"export: '{meta.get('name')}' is an ensemble; export one of its member runs")
    recipe = Recipe.model_validate(yaml.safe_load(read_recipe_text(run_dir) or "{}"))
    out = Path(out) if out is not None else Path("exports") / f"{run_dir.name}-{fmt}"
    import_tensorflow()
    model = averaged_model(run_dir, recipe.cv.folds)
    folds = read_folds(run_dir)
    paths = folds["path"].tolist()[:8] if "path" in folds else []
    images, bad = decode_images(paths, tuple(recipe.data.image_size), recipe.data.channels,
                                options=recipe.data.decode_options())
    if len(images) == 0 or bad:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (8, *recipe.data.image_size, recipe.data.channels), dtype=np.uint8)
    expected = np.asarray(model.predict(images.astype(np.float32), verbose=0))

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    try:
        target = _write(fmt, model, staging)
        difference = float(np.abs(_predict(fmt, target, images) - expected).max())
        if difference > TOLERANCE:
            raise CompetitionError(f"export: the {fmt} model differs from the run by {difference:.2e} "
                                   f"(> {TOLERANCE:g}); nothing written")
        info = {"run": run_dir.name, "format": fmt, "file": target.name, "classes": list(meta["classes"]),
                "input": {"height": recipe.data.image_size[0], "width": recipe.data.image_size[1],
                          "channels": recipe.data.channels, "dtype": "float32", "range": "0-255 (raw pixels)"},
                "preprocessing": "inside the model", "folds_averaged": recipe.cv.folds,
                "tta": "not included (the run declares " + (", ".join(recipe.tta) or "none") + ")",
                "max_difference_from_run": difference}
        (staging / "model.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(_readme(info), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, difference


def _write(fmt: str, model: Any, folder: Path) -> Path:
    import tensorflow as tf

    if fmt == "keras":
        model.save(folder / "model.keras")
        return folder / "model.keras"
    saved = folder / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    if fmt == "savedmodel":
        return saved
    flat = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    shutil.rmtree(saved)
    (folder / "model.tflite").write_bytes(flat)
    return folder / "model.tflite"


def _readme(info: dict[str, Any]) -> str:
    size = info["input"]
    call = {
        "keras": "import keras\nmodel = keras.saving.load_model(\"model.keras\")\nproba = model.predict(images)",
        "savedmodel": "import tensorflow as tf\nmodel = tf.saved_model.load(\"saved_model\")\n"
                      "proba = model.serve(tf.constant(images)).numpy()",
        "tflite": "import tensorflow as tf\nit = tf.lite.Interpreter(model_path=\"model.tflite\")\n"
                  "it.resize_tensor_input(it.get_input_details()[0][\"index\"], list(images.shape))\n"
                  "it.allocate_tensors()\nit.set_tensor(it.get_input_details()[0][\"index\"], images)\n"
                  "it.invoke()\nproba = it.get_tensor(it.get_output_details()[0][\"index\"])",
    }[info["format"]]
    return (f"# {info['run']} ({info['format']})\n\nThe mean of the run's {info['folds_averaged']} fold models. "
            f"Input: float32 images (batch, {size['height']}, {size['width']}, {size['channels']}) of raw pixel "
            "values 0-255, resized to that size (grayscale: ITU-R 601 luma); preprocessing is inside the "
            f"model. Output: probabilities (batch, {len(info['classes'])}) in the order of `classes` in "
            f"model.json: {', '.join(info['classes'])}. Test-time augmentation is {info['tta']}.\n\n"
            f"```python\n{call}\n```\n")
