"""A trained run as one deployable model: the mean of its fold models (one Keras model taking uint8-range
images (batch, h, w, channels) and returning class probabilities), written as a `.keras` file, a TensorFlow
SavedModel, a TFLite flatbuffer (TensorFlow's own converters) or an ONNX file (Keras's `model.export(...,
format="onnx")`, which converts with tf2onnx; tf2onnx and onnxruntime are the optional `onnx` extra), with
the class list, input size, channels and the decode steps the inputs need (size, channels, intensity
window, crop, standardisation: competition.data.decode.DecodeOptions) in `model.json` and a README of how to
call it. Each export is checked: its outputs on 8 of the run's images (run by Keras, TensorFlow, the TFLite
interpreter or onnxruntime) must equal the fold models' mean within 1e-4, else nothing is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError, OptionError
from competition.files import check_output, mark_owned, staging_folder

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
TOLERANCE = 1e-4
ONNX_PACKAGES = ("tf2onnx", "onnxruntime")  # the `onnx` extra of pyproject.toml


def averaged_model(run_dir: Path, n_folds: int) -> Any:
    """One Keras model: the mean of the run's fold models' probabilities (standard layers only). Raises
    CompetitionError naming a missing fold model (competition.inference.check_fold_models), or one that is
    damaged or made by a newer version of Keras (competition.runs.fold_files.load_fold_model)."""
    import keras

    from competition.inference import check_fold_models
    from competition.runs.fold_files import load_fold_model

    check_fold_models(run_dir, n_folds)
    models = [load_fold_model(run_dir, k) for k in range(n_folds)]
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
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])
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
               out: str | Path | None = None, data: str | Path | None = None) -> tuple[Path, float]:
    """Export the run's averaged model to folder `out` (default exports/<run>-<fmt>); returns (the folder,
    the largest absolute difference from the fold models' mean on 8 of its images, read from `data` when the
    run's contest folder moved). Raises CompetitionError (OptionError for `fmt`) for an ensemble, an unknown
    format, or an export that disagrees with the run."""
    from competition.data import decode_images
    from competition.registry import unknown_name
    from competition.runs import resolve_run
    from competition.runs.folder import read_recipe
    from competition.runs.record import RunRecord
    from competition.runs.run import training_images
    from competition.runtime import import_tensorflow

    problem = unknown_name(fmt, FORMATS, "format")
    if problem:
        raise OptionError("fmt", problem)
    if fmt == "onnx":
        _require_onnx()
    run_dir = resolve_run(run, runs_dir)
    record = RunRecord.read(run_dir)
    if record.is_ensemble:
        raise CompetitionError(f"export: '{run_dir.name}' is an ensemble; export one of its member runs")
    meta = record.raw
    recipe = read_recipe(run_dir)
    out = Path(out) if out is not None else Path("exports") / f"{run_dir.name}-{fmt}"
    _check_out(out, run_dir, meta, data)
    import_tensorflow()
    model = averaged_model(run_dir, recipe.cv.folds)
    paths = (training_images(run_dir, data) or [])[:8]
    images, bad = decode_images(paths, tuple(recipe.data.image_size), recipe.data.channels,
                                options=recipe.data.decode_options())
    if len(images) == 0 or bad:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (8, *recipe.data.image_size, recipe.data.channels), dtype=np.uint8)
    expected = np.asarray(model.predict(images.astype(np.float32), verbose=0))

    staging = staging_folder(out)
    try:
        target = _write(fmt, model, staging)
        difference = float(np.abs(_predict(fmt, target, images) - expected).max())
        if difference > TOLERANCE:
            raise CompetitionError(f"export: the {fmt} model differs from the run by {difference:.2e} "
                                   f"(> {TOLERANCE:g}); nothing written")
        info = {"run": run_dir.name, "format": fmt, "file": target.name, "classes": record.classes,
                "input": {"height": recipe.data.image_size[0], "width": recipe.data.image_size[1],
                          "channels": recipe.data.channels, "dtype": "float32", "range": "0-255 (raw pixels)"},
                "preprocessing": _preprocessing(recipe), "folds_averaged": recipe.cv.folds,
                "tta": "not included (the run declares " + (", ".join(recipe.tta) or "none") + ")",
                "max_difference_from_run": difference}
        (staging / "model.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(_readme(info), encoding="utf-8")
        mark_owned(staging, "export")
        _check_out(out, run_dir, meta, data)  # again: the folder may have been filled meanwhile
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, difference


def _check_out(out: Path, run_dir: Path, meta: dict[str, Any], data: str | Path | None) -> None:
    """The export folder: never the run's contest folder or run folder (or inside them), never a folder of
    the user's (competition.files.check_output); an earlier export is replaced."""
    from competition.runs.run import contest_root

    check_output(out, folder=True, ours=_is_export, protected=[("the run's contest folder", contest_root(meta, data)),
                                                                ("the run folder", run_dir)])


def _is_export(folder: Path) -> bool:
    """An export written before exports were marked as the tool's: its model.json says which run and file."""
    try:
        info = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and {"run", "format", "file", "max_difference_from_run"} <= info.keys()


def _require_onnx() -> None:
    """Raises OptionError (one line: the pip extra to install) when tf2onnx or onnxruntime is missing."""
    from importlib.util import find_spec

    missing = [name for name in ONNX_PACKAGES if find_spec(name) is None]
    if missing:
        raise OptionError("fmt", f"onnx needs the optional {' and '.join(missing)} (not installed): "
                                 "pip install -e \".[onnx]\" (or pip install tf2onnx onnxruntime)")


def _write(fmt: str, model: Any, folder: Path) -> Path:
    import tensorflow as tf

    if fmt == "onnx":
        import warnings

        with warnings.catch_warnings():  # Keras's numpy-2 patch of tf2onnx warns about np.object
            warnings.simplefilter("ignore", FutureWarning)
            model.export(str(folder / "model.onnx"), format="onnx", verbose=False)
        return folder / "model.onnx"
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


def _preprocessing(recipe: Any) -> dict[str, Any]:
    """What an input must go through before the model (model.json's "preprocessing"): the run's decode
    steps, in order (competition.data.decode), and what the model does itself."""
    data = recipe.data
    steps = ["decode the file to 8-bit pixels (EXIF orientation applied; alpha composited on black)"]
    if data.intensity_window is not None:
        steps.append(f"grey images of more than 8 bits (and DICOM): map {data.intensity_window[0]:g}.."
                     f"{data.intensity_window[1]:g} linearly to 0..255, values outside clipped")
    else:
        steps.append("grey images of more than 8 bits: their bit depth's full range to 0..255 (DICOM: the file's "
                     "window)")
    if data.crop == "foreground":
        steps.append(f"crop to the box of the pixels above {data.foreground_threshold} (of 255), each side grown by "
                     f"{data.crop_margin:g} times the box's extent, then grown to the input's aspect (0 outside the "
                     "image)")
    steps.append("grey: ITU-R 601 luma (Pillow convert('L'))" if data.channels == 1
                 else "colour: RGB (Pillow convert('RGB')), grey replicated")
    steps.append(f"resize to {data.image_size[0]}x{data.image_size[1]} (height x width): Pillow BOX filter when "
                 "shrinking, bilinear when growing")
    if data.standardize == "image":
        steps.append(f"per image: foreground pixels (above {data.foreground_threshold}) to "
                     "clip(round(128 + 40 * (value - mean) / std), 0, 255) over the foreground, background to 0")
    return {"decode": steps, "in_model": "scaling of the 0-255 pixels for the backbone",
            "recipe_data": {"image_size": list(data.image_size), "channels": data.channels,
                            "intensity_window": list(data.intensity_window) if data.intensity_window else None,
                            "crop": data.crop, "crop_margin": data.crop_margin, "standardize": data.standardize,
                            "foreground_threshold": data.foreground_threshold}}


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
        "onnx": "import onnxruntime as ort\nsession = ort.InferenceSession(\"model.onnx\")\n"
                "proba = session.run(None, {session.get_inputs()[0].name: images})[0]",
    }[info["format"]]
    steps = "\n".join(f"{k}. {step}" for k, step in enumerate(info["preprocessing"]["decode"], 1))
    return (f"# {info['run']} ({info['format']})\n\nThe mean of the run's {info['folds_averaged']} fold models. "
            f"Input: float32 images (batch, {size['height']}, {size['width']}, {size['channels']}) of pixel "
            "values 0-255; the model scales them itself. Output: probabilities "
            f"(batch, {len(info['classes'])}) in the order of `classes` in model.json: "
            f"{', '.join(info['classes'])}. Test-time augmentation is {info['tta']}.\n\n"
            "## Preprocessing: the inputs must be decoded as the run's images were\n\n"
            "The model saw images made by these steps (the run's recipe, `data` section; model.json "
            "`preprocessing` lists them and the recipe values); an image prepared differently (another resize "
            "filter, no crop, no standardisation) gets different, usually worse, predictions. "
            "`competition.data.decode_image(path, size, channels, options)` does exactly this.\n\n"
            f"{steps}\n\n"
            f"```python\n# images: float32 (batch, {size['height']}, {size['width']}, {size['channels']}), "
            f"decoded as above\n{call}\n```\n")
