"""Data audit: duplicates, near-duplicates, fold leakage and train/test shift, before any training.

Signatures, distances and the default near-duplicate threshold (and how it was measured): competition.data.similarity.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from competition.data.similarity import (DEFAULT_THRESHOLD, THUMB, area_matrix, connected_groups, file_hashes, grayscale,
                                           image_signatures, load_for_signatures, one_blas_thread, scan, signatures)
from competition.errors import CompetitionError
from competition.files import atomic_write, check_output, mark_owned, write_json

HIST_BINS = 16
MAX_LISTED = 50  # closest pairs written to audit.json (all are counted)
PLOT_PAIRS = 8  # rows of closest_pairs.png


# --------------------------------------------------------------------------------------------------
# the audit


def _quantiles(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {}
    qs = {"min": 0.0, "p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95}
    return {name: round(float(np.quantile(values, q)), 5) for name, q in qs.items()}


def _exact_duplicates(
    train_ids: np.ndarray, train_labels: np.ndarray, train_hashes: list[str], test_ids: np.ndarray, test_hashes: list[str]
) -> dict[str, Any]:
    train_by: dict[str, list[int]] = defaultdict(list)
    test_by: dict[str, list[int]] = defaultdict(list)
    for k, h in enumerate(train_hashes):
        train_by[h].append(k)
    for k, h in enumerate(test_hashes):
        test_by[h].append(k)
    train_groups = [rows for rows in train_by.values() if len(rows) > 1]
    test_groups = [rows for rows in test_by.values() if len(rows) > 1]
    conflicting = [rows for rows in train_groups if len(set(train_labels[rows])) > 1]
    across = [(test_by[h], train_by[h]) for h in test_by if h in train_by]
    return {
        "within_train": {
            "groups": len(train_groups),
            "extra_copies": sum(len(r) - 1 for r in train_groups),
            "conflicting_labels": len(conflicting),
            "examples": [
                [{"id": str(train_ids[k]), "label": str(train_labels[k])} for k in rows] for rows in train_groups[:20]
            ],
        },
        "within_test": {
            "groups": len(test_groups),
            "extra_copies": sum(len(r) - 1 for r in test_groups),
            "examples": [[str(test_ids[k]) for k in rows] for rows in test_groups[:20]],
        },
        "train_test": {
            "test_images": sum(len(te) for te, _ in across),
            "examples": [
                {
                    "test_ids": [str(test_ids[k]) for k in te],
                    "train_ids": [str(train_ids[k]) for k in tr],
                    "train_labels": sorted({str(train_labels[k]) for k in tr}),
                }
                for te, tr in across[:20]
            ],
        },
    }


def _image_features(images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Cheap features for adversarial validation: raw 16x16 thumbnail, intensity histogram, mean, std."""
    gray = grayscale(images) / 255.0
    n, h, w = gray.shape
    thumb = (area_matrix(h, THUMB) @ gray @ area_matrix(w, THUMB).T).reshape(n, -1)
    flat = gray.reshape(n, -1)
    idx = np.minimum((flat * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    idx += np.arange(n)[:, None] * HIST_BINS
    hist = np.bincount(idx.ravel(), minlength=n * HIST_BINS).reshape(n, HIST_BINS) / flat.shape[1]
    names = [f"thumbnail pixel (row {r}, col {c})" for r in range(THUMB) for c in range(THUMB)]
    names += [f"share of pixels in intensity {k * 256 // HIST_BINS}-{(k + 1) * 256 // HIST_BINS - 1}" for k in range(HIST_BINS)]
    names += ["mean intensity", "intensity std"]
    features = np.hstack([thumb, hist, flat.mean(1, keepdims=True), flat.std(1, keepdims=True)]).astype(np.float32)
    return features, names


def adversarial_auc(
    train_features: np.ndarray, test_features: np.ndarray, seed: int = 42, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Cross-validated ROC AUC of a classifier telling test from train; ~0.5: test looks like train.

    Also the single features that separate best (univariate AUC, 0.5 = no signal), to say *what* differs.
    """
    from scipy.stats import rankdata
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([train_features, test_features])
    y = np.r_[np.zeros(len(train_features)), np.ones(len(test_features))]
    n_splits = int(min(5, len(train_features), len(test_features)))
    if n_splits < 2:
        return {"auc": None, "note": "too few images"}
    # closed-form linear classifier: as good as a logistic regression here and ~20x faster
    model = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))
    with one_blas_thread():
        scores = cross_val_score(
            model, x, y, scoring="roc_auc", cv=StratifiedKFold(n_splits, shuffle=True, random_state=seed)
        )
    names = list(names) if names is not None else [f"feature {k}" for k in range(x.shape[1])]
    n_test, n_train = len(test_features), len(train_features)
    ranks = rankdata(x, axis=0)  # Mann-Whitney: AUC of each feature alone, ties counted half
    single = (ranks[n_train:].sum(axis=0) - n_test * (n_test + 1) / 2) / (n_test * n_train)
    strength = np.abs(single - 0.5)
    top = np.argsort(-strength, kind="stable")[:5]
    return {
        "auc": round(float(scores.mean()), 4),
        "auc_std": round(float(scores.std()), 4),
        "model": f"shrinkage linear discriminant analysis, {n_splits}-fold ROC AUC",
        "features": f"{THUMB}x{THUMB} grayscale thumbnail, {HIST_BINS}-bin intensity histogram, mean, std",
        "top_features": [
            {"feature": names[k], "auc": round(float(single[k]), 4),
             "higher_in": "test" if single[k] > 0.5 else "train"}
            for k in top
        ],
    }


def audit_arrays(
    train: pd.DataFrame,
    test: pd.DataFrame,
    train_images: np.ndarray,
    test_images: np.ndarray,
    *,
    train_hashes: list[str] | None = None,
    test_hashes: list[str] | None = None,
    n_folds: int = 5,
    seed: int = 42,
    threshold: float | None = None,
    train_signatures: np.ndarray | None = None,
    test_signatures: np.ndarray | None = None,
    group_by: str | None = None,
    targets: tuple[np.ndarray, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The audit on decoded images (`train`: id, label; `test`: id, rows matching the images). `group_by`:
    recipe.cv.group_by (the subjects of the grouped and seen-subject schemes, as training would use them).
    `targets`: a multi-label contest's (uint8 (n, k) indicator matrix, label names), as training gets them
    (competition.folds.choose_scheme): the class figures are then per label (images carrying it, "no_label"
    the images carrying none), the folds by iterative stratification, not by label combinations.

    Returns the dict that run_audit writes, plus "_distances" (competition.folds.SchemeChoice.distances, when the
    folds could be made) and "_closest_test": [(test row, train row, distance)]
    for the PLOT_PAIRS test images nearest to train (for the figure).
    """
    from competition.folds import stratified_folds

    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    timings: dict[str, float] = {}
    train_ids, test_ids = train["id"].astype(str).to_numpy(), test["id"].astype(str).to_numpy()
    labels = train["label"].astype(str).to_numpy()
    if targets is not None:
        classes = list(targets[1])
        members = [np.asarray(targets[0])[:, c] > 0 for c in range(len(classes))]
    else:
        classes = sorted(set(labels))
        y = np.searchsorted(np.asarray(classes), labels)
        members = [y == c for c in range(len(classes))]
    with _timed(timings, "signatures"):
        train_signatures = signatures(train_images) if train_signatures is None else train_signatures
        test_signatures = signatures(test_images) if test_signatures is None else test_signatures
    result: dict[str, Any] = {
        "n_train": len(train_ids), "n_test": len(test_ids), "classes": classes,
        "signature": {"kind": f"{THUMB}x{THUMB} grayscale thumbnail, zero-mean, unit-norm", "distance": "1 - cosine",
                      "threshold": threshold},
    }
    if train_hashes is not None and test_hashes is not None:
        result["exact_duplicates"] = _exact_duplicates(train_ids, labels, train_hashes, test_ids, test_hashes)
    with _timed(timings, "near_duplicates"):
        try:  # the within-train pairs split by stratified folds; none when they cannot be made (the leak says why)
            stratified: np.ndarray | None = stratified_folds(labels, n_folds, seed, targets)
        except CompetitionError:
            stratified = None
        duplicates, class_groups, (test_nn_index, test_nn) = _near_duplicate_figures(
            train_ids, test_ids, labels, members, train_signatures, test_signatures, threshold, stratified)
    result.update(duplicates)
    result["class_counts"] = [
        {"class": name, "train": int(np.sum(members[c])), "share": _share(members[c]), "groups": class_groups[c]}
        for c, name in enumerate(classes)
    ]
    if targets is not None:
        result["multilabel"] = True
        result["no_label"] = int(np.sum(~np.any(members, axis=0))) if members else 0
    with _timed(timings, "leak"):
        result.update(_leak_section(train, result["near_duplicates"]["train_test"], n_folds=n_folds, seed=seed,
                                    group_by=group_by, threshold=threshold, train_signatures=train_signatures,
                                    test_signatures=test_signatures, targets=targets))
    with _timed(timings, "adversarial"):
        train_features, names = _image_features(train_images)
        result["adversarial"] = adversarial_auc(train_features, _image_features(test_images)[0], seed, names)
    result["_closest_test"] = [(int(k), int(test_nn_index[k]), float(test_nn[k]))
                               for k in np.argsort(test_nn, kind="stable")[:PLOT_PAIRS] if test_nn_index[k] >= 0]
    result["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return result


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """timings[key]: the seconds the block took (wall clock)."""
    clock = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - clock


def _leak_section(train: pd.DataFrame, train_test: dict[str, Any], *, n_folds: int, seed: int,
                  group_by: str | None, threshold: float, train_signatures: np.ndarray,
                  test_signatures: np.ndarray, targets: tuple[np.ndarray, Sequence[str]] | None = None,
                  ) -> dict[str, Any]:
    """The audit's "leak", "verdict" and "cv_advice" entries (and "_distances" for the figure): the fold
    schemes measured against the test as cv.scheme auto measures them (competition.folds.choose_scheme);
    `train_test`, the near-duplicate figures between train and test (the test's reference)."""
    from competition.folds import choose_scheme, verdict_line

    section: dict[str, Any] = {}
    try:
        choice = choose_scheme(train, None, n_folds=n_folds, seed=seed, scheme="auto", group_by=group_by,
                               threshold=threshold, train_signatures=train_signatures,
                               test_signatures=test_signatures, targets=targets)
        auto = choice.record()
        section["_distances"] = choice.distances
    except CompetitionError as exc:
        auto = {"error": str(exc)}
    section["leak"] = {"test_reference": {"share_with_twin_in_train": train_test["test_share_with_twin"],
                                          "median_nearest_distance": train_test["nearest_distance"].get("median")},
                       "auto": auto}
    section["verdict"] = verdict_line(auto) if "error" not in auto else ""
    section["cv_advice"] = cv_advice(auto)
    return section


def _near_duplicate_figures(train_ids: np.ndarray, test_ids: np.ndarray, labels: np.ndarray,
                            members: list[np.ndarray], train_signatures: np.ndarray, test_signatures: np.ndarray,
                            threshold: float, stratified: np.ndarray | None
                            ) -> tuple[dict[str, Any], list[int], tuple[np.ndarray, np.ndarray]]:
    """The audit's near-duplicate section ({"near_duplicates": within train, train-test, groups}), the number of
    near-duplicate groups per class (members: a bool (n,) mask per class of the training rows in it; in a
    multi-label contest, carrying the label), and (each test image's nearest training row, its distance)."""
    within = scan(train_signatures, threshold=threshold, fold_sets=[stratified] if stratified is not None else [])
    i, j, d, train_nn = within.i, within.j, within.d, within.nearest_distance
    groups = connected_groups(len(train_ids), i, j)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, np.int64)
    across = scan(test_signatures, train_signatures, threshold=threshold)
    ti, tj, td = across.i, across.j, across.d
    test_nn = across.nearest_distance
    class_groups = [int(len(np.unique(groups[mask]))) for mask in members]
    figures = {"near_duplicates": {
        "within_train": {
            "pairs": len(i),
            "cross_label_pairs": int(np.sum(labels[i] != labels[j])),
            "images_with_twin": int(np.sum(train_nn <= threshold)),
            "share_with_twin": _share(train_nn <= threshold),
            "nearest_distance": _quantiles(train_nn),
            "closest": [
                {"a": train_ids[p], "b": train_ids[q], "label_a": labels[p], "label_b": labels[q],
                 "distance": round(float(e), 6)}
                for p, q, e in zip(i[:MAX_LISTED], j[:MAX_LISTED], d[:MAX_LISTED])
            ],
        },
        "train_test": {
            "pairs": len(ti),
            "test_with_twin": int(np.sum(test_nn <= threshold)),
            "test_share_with_twin": _share(test_nn <= threshold),
            "nearest_distance": _quantiles(test_nn),
            "closest": [
                {"test": test_ids[p], "train": train_ids[q], "train_label": labels[q], "distance": round(float(e), 6)}
                for p, q, e in zip(ti[:MAX_LISTED], tj[:MAX_LISTED], td[:MAX_LISTED])
            ],
        },
        "groups": {
            "n_groups": len(sizes),
            "largest": int(sizes.max()) if len(sizes) else 0,
            "singletons": int(np.sum(sizes == 1)),
            "mixed_label_groups": int(pd.Series(labels).groupby(groups).nunique().gt(1).sum()) if len(groups) else 0,
            "max_grouped_folds": min(class_groups) if class_groups else 0,
        },
    }}
    return figures, class_groups, (across.nearest_index, test_nn)


def cv_advice(choice: dict[str, Any]) -> str:
    """One line: which recipe `cv` setting to train with, from choose_scheme's record for cv.scheme auto."""
    if "error" in choice:
        return f"no folds can be made as the recipe would ask: {choice['error']}"
    scored = sorted((c["match"], k) for k, c in choice.get("candidates", {}).items() if "match" in c)
    figures = ("match with the test " + ", ".join(f"{k.replace('_', ' ')} {m:.2f}" for m, k in scored)
               if scored else "no test images to compare the folds with")
    if choice.get("warning"):
        return (f"{choice['warning']} ({figures})")
    return (f"use cv.scheme: auto (the default; it makes {choice['name']} here: {figures}; 0 = like the test)")


def _share(mask: np.ndarray) -> float:
    return round(float(np.mean(mask)), 4) if len(mask) else 0.0


def run_audit(
    data_root: str | Path,
    out_dir: str | Path,
    n_folds: int | None = None,
    seed: int | None = None,
    threshold: float | None = None,
    layout: Any = None,
    group_by: str | None = None,
    recipe: Any = None,
) -> dict[str, Any]:
    """Audit a contest folder (laid out as `layout`, a competition.data.contest.Layout; None: the default);
    writes audit.json and closest_pairs.png into out_dir, returns the dict.

    Exact duplicates (within train, within test, across), near-duplicate pairs and groups, the share
    of test images with a near twin in train, fold leakage under stratified and near-duplicate grouped
    folds (same n_folds and seed as training would use), class counts, adversarial validation AUC.
    `recipe` (a competition.recipe.Recipe): its data section gives the layout, its cv section the folds, seed,
    near-duplicate threshold and subjects (cv.group_by; a declared data.group_column arrives as `column:<name>`)
    that training would use; arguments given explicitly win. Without one: 5 folds, seed 42, no group_by.
    """
    if recipe is not None:
        layout = recipe.data.layout() if layout is None else layout
        n_folds = recipe.cv.folds if n_folds is None else n_folds
        seed = recipe.cv.seed if seed is None else seed
        threshold = recipe.cv.near_duplicate_threshold if threshold is None else threshold
        group_by = recipe.cv.group_by if group_by is None else group_by
    n_folds, seed = 5 if n_folds is None else n_folds, 42 if seed is None else seed
    from competition.data import index_contest

    start = time.perf_counter()
    out_dir = Path(out_dir)
    check_output(out_dir, folder=True, protected=[("the contest folder", data_root)],
                 ours=lambda folder: (folder / "audit.json").is_file())  # an audit written before the marker
    contest = index_contest(data_root, layout)
    train, test = contest.train.reset_index(drop=True), contest.test.reset_index(drop=True)
    train_paths, test_paths = [Path(p) for p in train["path"]], [Path(p) for p in test["path"]]
    timings, hashes, images = _hashed_and_decoded(train_paths, test_paths)
    result = audit_arrays(
        train, test, *images, train_hashes=hashes[0], test_hashes=hashes[1], n_folds=n_folds, seed=seed,
        threshold=threshold, group_by=group_by,
        targets=(contest.y().astype(np.uint8), contest.classes) if contest.multilabel else None,
        # cached, so near_duplicates grouping in training needs no decoding
        train_signatures=image_signatures(train_paths, hashes[0], images[0]), test_signatures=signatures(images[1]),
    )
    result = {"data_root": str(Path(data_root).resolve()), **result}
    closest, distances = result.pop("_closest_test"), result.pop("_distances", None)
    mark_owned(out_dir, "audit")  # before its first file: a later audit may write here again
    clock = time.perf_counter()
    if distances:
        _plot_relation(out_dir / "relation.png", distances, result["signature"]["threshold"])
    pairs = [(test_paths[a], images[1][a], train_paths[b], images[0][b], str(test["id"][a]),
              f"{train['id'][b]}\n({train['label'][b] or '(no label)'})", dist) for a, b, dist in closest]
    _plot_closest(out_dir / "closest_pairs.png", pairs, result["signature"]["threshold"])
    result["timings"].update(**timings, plot=round(time.perf_counter() - clock, 3))
    result["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out_dir / "audit.json", result)
    return result


def _hashed_and_decoded(train_paths: list[Path], test_paths: list[Path]) -> tuple[dict[str, float], Any, Any]:
    """(timings in seconds, (train, test) file hashes, (train, test) images decoded for signatures)."""
    timings: dict[str, float] = {}
    with _timed(timings, "hashing"):
        hashes = file_hashes(train_paths), file_hashes(test_paths)
    with _timed(timings, "decoding"):
        images = load_for_signatures(train_paths), load_for_signatures(test_paths)
    return {k: round(v, 3) for k, v in timings.items()}, hashes, images


def _plot_relation(path: Path, distances: dict[str, dict[str, np.ndarray]], threshold: float) -> None:
    """How the test relates to train, as a picture: the cumulative distributions of the distance to the nearest
    training image and of the chain distance, for the test and for each fold scheme's validation images."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    styles = {"test": ("black", 2.5), "stratified": ("tab:blue", 1.2), "grouped": ("tab:red", 1.2),
              "seen_subjects": ("tab:green", 1.2)}
    for col, (measure, title) in enumerate((("nearest", "distance to the nearest training image"),
                                            ("chain", "chain distance to a training image"))):
        ax = fig.add_subplot(1, 2, col + 1)
        for name, values in distances.items():
            v = np.sort(np.where(np.isfinite(values[measure]), values[measure], 2.0))
            if not len(v):
                continue
            color, width = styles.get(name, ("grey", 1.0))
            label = "test (what validation should mimic)" if name == "test" else f"{name.replace('_', ' ')} folds"
            ax.step(np.maximum(v, 1e-5), np.arange(1, len(v) + 1) / len(v), where="post", color=color,
                    linewidth=width, label=label)
        ax.axvline(threshold, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (1 - cosine; dotted: twin threshold {threshold:g})", fontsize=8)
        ax.set_ylabel("share of images at or below", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("How the test relates to train, and which folds mirror it (closest curves to the test's)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=80)


def _display(path: Path, fallback: np.ndarray) -> np.ndarray:
    try:
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except Exception:  # the figure is a convenience; the decoded thumbnail will do
        return grayscale(fallback[None])[0]


def _plot_closest(
    path: Path, pairs: list[tuple[Path, np.ndarray, Path, np.ndarray, str, str, float]], threshold: float
) -> None:
    """Test image | distance | its nearest train image, one row per pair (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(len(pairs), 1)
    height = 2.7 * rows + 0.5
    fig = Figure(figsize=(6.4, height))
    FigureCanvasAgg(fig)
    fig.suptitle(f"Test images closest to a training image (near duplicate: distance <= {threshold:g})", fontsize=10,
                 y=1 - 0.12 / height, va="top")
    if not pairs:
        fig.text(0.5, 0.5, "no test or no train images", ha="center")
    fig.subplots_adjust(hspace=0.35, wspace=0.6, top=1 - 1.0 / height, bottom=0.01, left=0.02, right=0.98)
    for r, (test_path, test_img, train_path, train_img, test_name, train_name, d) in enumerate(pairs):
        axes = []
        for c, (img_path, img, name) in enumerate(
            ((test_path, test_img, f"test {test_name}\n"), (train_path, train_img, f"train {train_name}"))
        ):
            ax = fig.add_subplot(rows, 2, 2 * r + c + 1)
            ax.imshow(_display(img_path, img), cmap="gray", vmin=0, vmax=255)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
            axes.append(ax)
        box = axes[0].get_position()
        verdict = "near duplicate" if d <= threshold else "not a near\nduplicate"
        fig.text(0.5, (box.y0 + box.y1) / 2, f"distance\n{d:.4f}\n{verdict}", ha="center", va="center",
                 fontsize=9, color="firebrick" if d <= threshold else "black")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=80)


def print_audit(result: dict[str, Any], console: Any = None) -> None:
    """A rich summary of run_audit's result."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    thr = result["signature"]["threshold"]
    console.print(f"[bold]Audit[/] {escape(result.get('data_root', ''))}: {result['n_train']} train, {result['n_test']} test, "
                  f"near-duplicate threshold {thr:g} ({result['signature']['distance']})")

    multilabel = bool(result.get("multilabel"))  # the rows are labels, an image may carry several or none
    table = Table(title="Labels (multi-label: images carrying each)" if multilabel else "Classes")
    for col in ("label" if multilabel else "class", "train", "share", "near-dup groups"):
        table.add_column(col, justify="right" if col in ("train", "share", "near-dup groups") else "left")
    for row in result["class_counts"]:
        table.add_row(escape(row["class"]), str(row["train"]), f"{row['share']:.1%}", str(row["groups"]))
    if result.get("no_label"):
        none = result["no_label"]
        table.add_row("(no label)", str(none), f"{none / max(result['n_train'], 1):.1%}", "")
    console.print(table)

    exact = result.get("exact_duplicates")
    if exact:
        console.print(
            f"Exact duplicates: train {exact['within_train']['extra_copies']} extra copies "
            f"({exact['within_train']['conflicting_labels']} with conflicting labels), "
            f"test {exact['within_test']['extra_copies']}, test images also in train {exact['train_test']['test_images']}"
        )
    near = result["near_duplicates"]
    console.print(
        f"Near duplicates: {near['within_train']['pairs']} train pairs "
        f"({near['within_train']['cross_label_pairs']} across labels), "
        f"{near['within_train']['share_with_twin']:.1%} of train images have a twin; "
        f"{near['groups']['n_groups']} groups (largest {near['groups']['largest']}); "
        f"{near['train_test']['test_share_with_twin']:.1%} of test images have a twin in train"
    )

    console.print(_scheme_table(result["leak"].get("auto", {})))
    if result.get("verdict"):
        console.print(f"[bold]Verdict:[/] {escape(result['verdict'])}")
    if result.get("cv_advice"):
        console.print(f"[bold]Validation:[/] {escape(result['cv_advice'])}")

    adv = result["adversarial"]
    if adv.get("auc") is not None:
        verdict = "test looks like train" if adv["auc"] < 0.6 else "[yellow]test differs from train[/]"
        console.print(f"Adversarial validation AUC {adv['auc']:.3f} ± {adv['auc_std']:.3f}: {verdict}")
        if adv["auc"] >= 0.6:
            for feature in adv.get("top_features", [])[:3]:
                console.print(f"  {escape(feature['feature'])}: AUC {feature['auc']:.3f} alone, higher in {feature['higher_in']}")
    if "seconds" in result:
        console.print(f"[dim]{result['seconds']:.1f} s[/]")


def _scheme_table(auto: dict[str, Any]) -> Any:
    """print_audit's table of the fold schemes against the test (the `auto` record of choose_scheme): each
    candidate's match and distance figures, the chosen one marked, and the test's own figures last."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Fold schemes against the test: distances to the training images a model learns from")
    for col in ("scheme", "match (0 = like the test)", "KS nearest", "KS chain", "KS hops", "median nearest",
                "median chain", "median hops", "leak share"):
        table.add_column(col, justify="left" if col == "scheme" else "right")
    for name, entry in auto.get("candidates", {}).items():
        chosen = " [bold](auto)[/]" if name == auto.get("scheme") else ""
        if "problem" in entry and "nearest" not in entry:
            table.add_row(escape(entry["name"]), "[red]impossible[/]", escape(entry["problem"]), *[""] * 6)
            continue
        table.add_row(escape(entry["name"]) + chosen, _fig(entry.get("match")), _fig(entry.get("ks_nearest")),
                      _fig(entry.get("ks_chain")), _fig(entry.get("ks_hops")), _fig(entry["nearest"].get("p50"), 4),
                      _fig(entry["chain"].get("p50"), 4), _hops(entry.get("hops", {}).get("p50")),
                      f"{entry['leak_share']:.1%}")
    test = auto.get("test") or {}
    if test:
        table.add_row("[italic]test vs train (what CV should mimic)[/]", "", "", "", "",
                      _fig(test["nearest"].get("p50"), 4), _fig(test["chain"].get("p50"), 4),
                      _hops(test.get("hops", {}).get("p50")), f"{auto.get('test_twin_share', 0):.1%}")
    return table


def _hops(value: Any) -> str:
    """Near-twin steps to a training image; 'not joined' for the figure that stands for none."""
    from competition.folds import NOT_JOINED

    if not isinstance(value, int | float):
        return ""
    return "not joined" if value >= NOT_JOINED else f"{value:g}"


def _fig(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else ""


def load_audit(out_dir: str | Path) -> dict[str, Any]:
    """The audit.json a previous `run_audit` wrote into out_dir, as a dict."""
    path = Path(out_dir) / "audit.json"
    if not path.is_file():
        raise CompetitionError(f"{path}: no audit found")
    return json.loads(path.read_text(encoding="utf-8"))
