"""Pre-flight checks for recipes: does each one validate, does its contest folder index and fit the recipe (the
class names in balance.weights / balance.alpha, the folds' checks: the same checks `train` makes before its run
folder exists), does every image's header read, and can its weights be had on this machine (offline) and do they
load into the declared backbone? Every problem is one failed check with a one-line detail naming the path or key.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competition.errors import CompetitionError

@dataclass
class Check:
    recipe: str  # the recipe file as given
    item: str  # "recipe", "data" or "weights"
    ok: bool
    detail: str


def check_recipes(recipe_paths: list[Path], data: Path | None = None) -> list[Check]:
    """Checks for every recipe, in order; `data` overrides each recipe's data.root (like `--data`)."""
    checks: list[Check] = []
    for path in recipe_paths:
        checks += _check_one(Path(path), data)
    return checks


def _check_one(path: Path, data: Path | None) -> list[Check]:
    from competition.recipe import load_recipe

    name = str(path)
    try:
        recipe = load_recipe(path)
    except CompetitionError as exc:
        checks = [Check(name, "recipe", False, _one_line(exc))]
        if data is not None:  # the contest folder does not depend on the recipe
            checks.append(_check_data(name, data))
        return checks
    size = recipe.data.image_size
    model = (f"backbone {recipe.model.backbone}" if recipe.model.kind == "network" else
             f"{recipe.model.kind} on {recipe.model.embedding.kind}"
             + (f" {recipe.model.embedding.backbone}" if recipe.model.embedding.kind == "backbone" else ""))
    checks = [Check(name, "recipe", True,
                    f"valid: {model}, {size[0]}x{size[1]}x{recipe.data.channels}, "
                    f"{len(recipe.augment)} augment step(s)")]
    root = data if data is not None else recipe.data.root
    if root is None:
        checks.append(Check(name, "data", False, "recipe.data.root: no contest folder; set it in the recipe or pass --data DIR"))
    else:
        checks.append(_check_data(name, root, recipe))
    if recipe.loaded_backbone is not None:  # a network, or a scikit-learn kind on frozen backbone features
        checks.append(_check_weights(name, recipe))
    return checks


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_data(name: str, root: Path, recipe: Any = None) -> Check:
    """The contest folder indexes, every image's header reads (as `train` would report an unreadable one;
    with the recipe's data.on_bad_image); with a recipe, it also fits the recipe (competition.recipe.check_with_contest)."""
    from competition.data import index_contest, unreadable_message

    try:
        contest = index_contest(root, recipe.data.layout() if recipe is not None else None)
    except CompetitionError as exc:
        detail = _one_line(exc)
        if str(root) not in detail:
            detail = f"{root}: {detail}"
        return Check(name, "data", False, detail)
    except OSError as exc:  # unreadable folder, broken CSV file, ...
        return Check(name, "data", False, f"{root}: cannot read ({exc.strerror or exc})")
    if recipe is not None:
        try:
            from competition.recipe import check_with_contest

            check_with_contest(recipe, contest)
        except CompetitionError as exc:
            return Check(name, "data", False, _one_line(exc))
    skip = recipe is not None and recipe.data.on_bad_image == "skip"
    unreadable = _unreadable_headers(contest.test["path"].tolist())
    if unreadable:
        return Check(name, "data", False, f"{unreadable_message(unreadable, 'test')}; test images cannot be skipped, "
                                          "the submission needs a prediction for each: fix or replace them")
    unreadable = _unreadable_headers(contest.train["path"].tolist())
    if unreadable and not skip:
        return Check(name, "data", False, f"{unreadable_message(unreadable, 'training')}; fix or remove them, or set "
                                          "data.on_bad_image: skip to train without them")
    skipped = f" ({len(unreadable)} unreadable, skipped: data.on_bad_image)" if unreadable else ""
    return Check(name, "data", True,
                 f"{root}: {len(contest.train)} train images{skipped} in {len(contest.classes)} classes, "
                 f"{len(contest.test)} test images")


def _unreadable_headers(paths: list[str]) -> list[tuple[str, str]]:
    """(path, reason) of the images whose header does not read (an empty file, a file of another kind, a
    decompression bomb, a DICOM file without an image), as `train`'s decoder words it; pixels are not decoded,
    so a file whose pixel data alone is damaged passes here and fails in `train`."""
    from PIL import Image

    from competition.data import UnreadableImage, decode_image
    from competition.data.decode import DICOM_EXTENSIONS

    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                head = handle.read(132)
            if not head:
                bad.append((path, "empty file"))
                continue
            if Path(path).suffix.lower() in DICOM_EXTENSIONS or head[128:132] == b"DICM":
                import pydicom

                dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
                if "Rows" not in dataset or "Columns" not in dataset:
                    raise ValueError("no image in the DICOM header")
                continue
            with Image.open(path):
                pass
        except Exception:  # the decoder says why, in the words `train` uses
            try:
                decode_image(path, (8, 8), 1)
            except UnreadableImage as exc:
                bad.append((path, exc.reason))
            except Exception as exc:  # not a reason the decoder words: Pillow's own, on one line
                bad.append((path, _one_line(exc)))
    return bad


def _check_weights(name: str, recipe: Any) -> Check:
    """The weights can be had offline, and a file loads into the recipe's backbone as training will load it
    (competition.model.backbones.check_weights: the same check `train` makes before its run folder exists)."""
    from competition.model.backbones import check_weights

    from competition.model.frozen import embedding_key

    model = recipe.loaded_backbone
    check = _weights_at_hand(name, recipe)
    if check.ok and model.weights != "none":
        try:
            check_weights(model, recipe.data.image_size, recipe.data.channels)
        except CompetitionError as exc:
            check = Check(name, "weights", False, _one_line(exc))
    # a `backbone` embedding's weights: the key the user wrote is recipe.model.embedding.<key>
    return check if model is recipe.model else Check(check.recipe, check.item, check.ok, embedding_key(check.detail))


def _weights_at_hand(name: str, recipe: Any) -> Check:
    from competition.model.backbones import BACKBONES, find_imagenet_file, imagenet_file

    model = recipe.loaded_backbone
    spec = BACKBONES[model.backbone]
    weights = model.weights
    if weights == "none":
        return Check(name, "weights", True, "none (random initialisation)")
    if weights == "imagenet":
        if not spec.pretrained:
            return Check(name, "weights", False,
                         f"recipe.model.weights: backbone '{spec.name}' has no ImageNet weights; use 'none'")
        shape = (*recipe.data.image_size, 3)
        expected = imagenet_file(model, shape)
        if expected is None:
            return Check(name, "weights", True, f"imagenet for '{spec.name}'")
        found = find_imagenet_file(model, shape)
        if found is None:
            also = imagenet_file(model, (224, 224, 3))
            other = f" (or {also.name}, which serves every size)" if also is not None and also != expected else ""
            return Check(name, "weights", False,
                         f"imagenet: {expected} not found; place {expected.name}{other} in {expected.parent} "
                         f"(Keras downloads it only with network access), or set weights to a local file")
        expected = found
        expected_hash = spec.weights_hash
        if expected_hash is not None and not _hash_matches(expected, expected_hash):
            return Check(name, "weights", False,
                         f"imagenet: {expected} does not match the hash Keras checks ({expected_hash}); "
                         "Keras would re-download it and, offline, delete it")
        return Check(name, "weights", True, f"imagenet: {expected}")
    return _check_local(name, Path(weights).expanduser())


def _hash_matches(path: Path, expected: str) -> bool:
    digest = hashlib.sha256() if len(expected) == 64 else hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == expected


def _check_local(name: str, path: Path) -> Check:
    if not path.is_file():
        return Check(name, "weights", False, f"recipe.model.weights: weights file {str(path)!r} not found")
    suffix = path.name.lower()
    try:
        if suffix.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(path, "r") as handle:
                n = len(handle.keys())
            return Check(name, "weights", True, f"{path}: HDF5 weights file ({n} top-level groups)")
        if suffix.endswith(".keras"):
            if not zipfile.is_zipfile(path):
                return Check(name, "weights", False, f"recipe.model.weights: {path} is not a .keras archive")
            return Check(name, "weights", True, f"{path}: .keras archive")
        if suffix.endswith(".weights.json"):
            with open(path, "rb") as handle:
                handle.read(1)
            return Check(name, "weights", True, f"{path}: sharded weights index")
    except OSError as exc:
        return Check(name, "weights", False, f"recipe.model.weights: cannot read {path} as HDF5 ({_one_line(exc)})")
    return Check(name, "weights", False,
                 f"recipe.model.weights: {path} is not a weights file Keras loads (.weights.h5, .h5, .hdf5 or .keras)")


def print_checks(checks: list[Check], console: Any) -> None:
    """One table: recipe, item, ok/FAIL, detail; then a one-line summary."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="doctor")
    table.add_column("recipe", overflow="fold")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for check in checks:
        status = Text("ok", style="green") if check.ok else Text("FAIL", style="bold red")
        table.add_row(Text(check.recipe), Text(check.item), status, Text(check.detail))
    console.print(table)
    failed = sum(not c.ok for c in checks)
    summary = f"{len(checks)} checks, {failed} failed" if failed else f"{len(checks)} checks, all ok"
    console.print(Text(summary, style="bold red" if failed else "green"))
