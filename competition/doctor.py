"""Pre-flight checks for recipes: does each one validate, does its contest folder index and fit the recipe (the
class names in balance.weights / balance.alpha, the folds' checks: the same checks `train` makes before its run
folder exists), and can its weights be had on this machine (offline)? Every problem is one failed check with a
one-line detail naming the path or key.
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
             f"{recipe.model.kind} on {recipe.model.embedding.kind}")
    checks = [Check(name, "recipe", True,
                    f"valid: {model}, {size[0]}x{size[1]}x{recipe.data.channels}, "
                    f"{len(recipe.augment)} augment step(s)")]
    root = data if data is not None else recipe.data.root
    if root is None:
        checks.append(Check(name, "data", False, "recipe.data.root: no contest folder; set it in the recipe or pass --data DIR"))
    else:
        checks.append(_check_data(name, root, recipe))
    if recipe.model.kind == "network":  # a scikit-learn kind has no weights to fetch
        checks.append(_check_weights(name, recipe))
    return checks


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_data(name: str, root: Path, recipe: Any = None) -> Check:
    """The contest folder indexes; with a recipe, it also fits the recipe (recipe.check_with_contest)."""
    from competition.data import index_contest

    try:
        contest = index_contest(root)
    except CompetitionError as exc:
        detail = _one_line(exc)
        if str(root) not in detail:
            detail = f"{root}: {detail}"
        return Check(name, "data", False, detail)
    except OSError as exc:  # unreadable folder, broken CSV file, ...
        return Check(name, "data", False, f"{root}: cannot read ({exc.strerror or exc})")
    if recipe is not None:
        try:
            recipe.check_with_contest(contest)
        except CompetitionError as exc:
            return Check(name, "data", False, _one_line(exc))
    return Check(name, "data", True,
                 f"{root}: {len(contest.train)} train images in {len(contest.classes)} classes, {len(contest.test)} test images")


def _check_weights(name: str, recipe: Any) -> Check:
    from competition.model.backbones import BACKBONES, find_imagenet_file, imagenet_file

    model = recipe.model
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
