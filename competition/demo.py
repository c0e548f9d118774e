"""A small synthetic medical-imaging contest, made on the spot: brain-MRI-like phantoms in 4 atrophy classes.

`make_demo(out_dir)` writes a Kaggle-style folder contest that looks like the Alzheimer MRI set
(train/<Class>/<name>.png, test/<id>.png, sample_submission.csv) with the real set's class imbalance,
plus a hidden answer key `.solution.csv` so tests can measure true test accuracy. Images are procedural:
skull, grey/white matter with sulci, two lateral ventricles. Atrophy grows with the class
(NonDemented < VeryMildDemented < MildDemented < ModerateDemented): ventricles widen, the brain shrinks
away from the skull, sulci and the midline fissure deepen. Severity is drawn per subject with noise, so
neighbouring classes overlap. Each training subject contributes a few consecutive slices that look alike
(`subj012_slice03.png`; group with `regex:(subj\\d+)`), so random-split CV leaks and group CV does not;
test images come from other subjects.

Deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from competition.errors import CompetitionError
from competition.files import check_output, staging_folder

CLASSES = ("MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented")
# Atrophy stage per class (0 = none ... 3 = moderate).
STAGE = {"NonDemented": 0, "VeryMildDemented": 1, "MildDemented": 2, "ModerateDemented": 3}
# Real Alzheimer MRI set counts: Mild 717, Moderate 52, Non 2560, VeryMild 1792; kept roughly in proportion,
# with the rarest class lifted so 5-fold stratified CV works.
TRAIN_COUNTS = {"NonDemented": 240, "VeryMildDemented": 168, "MildDemented": 68, "ModerateDemented": 24}
TEST_COUNTS = {"NonDemented": 58, "VeryMildDemented": 40, "MildDemented": 16, "ModerateDemented": 6}
PLACEHOLDER = "NonDemented"
MIN_TRAIN_PER_CLASS = 6
MIN_TEST_PER_CLASS = 2
RELATIONS = ("new_subjects", "seen_subjects")  # what the test holds


@dataclass(frozen=True)
class DemoLayout:
    """How a demo contest is laid out and scored, after a public contest's shape (its description, not its
    data): the classes and their atrophy stage (how far the phantom is from healthy), the images per class,
    where the files go, the columns, the metric a recipe declares for it."""

    classes: tuple[str, ...]
    stage: dict[str, float]
    train: dict[str, int]
    test: dict[str, int]
    placeholder: str  # the sample's value in every row
    train_csv: tuple[str, ...] | None = None  # the labels file's columns (id, label[, group]); None: class folders
    sample_columns: tuple[str, str] = ("id", "label")
    train_images: str = "train"
    test_images: str = "test"
    id_prefix: str = ""
    metric: str = "macro_f1"
    task: str = "4 atrophy classes"
    label_separator: str | None = None  # a multi-label layout: labels joined by it (FINDINGS)
    # a multi-label layout of one 0/1 column per finding (train_csv's label name unused); a row of zeros: none
    label_columns: tuple[str, ...] | None = None

    @property
    def multilabel(self) -> bool:
        return self.label_separator is not None or self.label_columns is not None

    def recipe_data(self) -> dict[str, Any]:
        """The recipe.data keys that declare this layout (and its metric)."""
        if self.train_csv is None:
            return {}
        keys: dict[str, Any] = {"train_csv": "train.csv", "id_column": self.train_csv[0]}
        if self.label_columns is not None:
            keys["label_columns"] = list(self.label_columns)
        else:
            keys["label_column"] = self.train_csv[1]
        if len(self.train_csv) > 2:
            keys["group_column"] = self.train_csv[2]
        if self.train_images != "train":
            keys["train_images"] = self.train_images
        if self.test_images != "test":
            keys["test_images"] = self.test_images
        if self.label_separator is not None:
            keys["label_separator"] = self.label_separator
        return {**keys, **({"metric": self.metric} if self.metric != "macro_f1" else {})}

    def contest_layout(self) -> Any:
        """competition.data.contest.Layout of this demo layout."""
        from competition.data.contest import Layout

        return Layout(**{k: v for k, v in self.recipe_data().items() if k != "metric"})


LAYOUTS = {
    # The seed's own contests: train/<Class>/ folders, macro F1.
    "folders": DemoLayout(CLASSES, STAGE, TRAIN_COUNTS, TEST_COUNTS, PLACEHOLDER),
    # APTOS 2019 blindness detection: train.csv id_code,diagnosis, train_images/ and test_images/, grades 0-4
    # in its proportions (1805, 370, 999, 193, 295 of 3662), quadratic weighted kappa.
    "aptos": DemoLayout(("0", "1", "2", "3", "4"), {"0": 0.0, "1": 0.8, "2": 1.6, "3": 2.4, "4": 3.2},
                        {"0": 246, "1": 51, "2": 136, "3": 26, "4": 41}, {"0": 59, "1": 12, "2": 33, "3": 7, "4": 9},
                        "0", train_csv=("id_code", "diagnosis"), sample_columns=("id_code", "diagnosis"),
                        train_images="train_images", test_images="test_images", metric="kappa",
                        task="5 ordinal grades"),
    # SIIM-ISIC melanoma: train.csv image_name,patient_id,target (0/1, malignant rare), patients with several
    # images, a probability submission, ROC AUC.
    "isic": DemoLayout(("0", "1"), {"0": 0.0, "1": 1.0}, {"0": 410, "1": 90}, {"0": 98, "1": 22}, "0",
                       train_csv=("image_name", "target", "patient_id"), sample_columns=("image_name", "target"),
                       id_prefix="ISIC_", metric="roc_auc", task="benign (0) or malignant (1)"),
    # NIH ChestX-ray14: 'Image Index,Finding Labels,Patient ID', findings joined by '|' ('No Finding' when none),
    # patients with several images, mean AUC over the findings; the sample asks one probability per finding.
    # Counts are images per patient group plan (train, test); the findings are drawn per image (FINDINGS).
    "chestxray": DemoLayout(("Cardiomegaly", "Effusion", "No Finding", "Nodule"), {"images": 0.0},
                            {"images": 480}, {"images": 120}, "0",
                            train_csv=("Image Index", "Finding Labels", "Patient ID"),
                            sample_columns=("Image Index", "Cardiomegaly", "Effusion", "No Finding", "Nodule"),
                            id_prefix="CXR_", metric="roc_auc", label_separator="|",
                            task="findings, several per image (multi-label)"),
    # CheXpert-like: the same findings as one 0/1 column per finding (a row of zeros: no finding), patients,
    # a sample of one probability column per finding, mean AUC.
    "chexpert": DemoLayout(("Cardiomegaly", "Effusion", "Nodule"), {"images": 0.0}, {"images": 480},
                           {"images": 120}, "0", train_csv=("image_id", "", "patient_id"),
                           sample_columns=("image_id", "Cardiomegaly", "Effusion", "Nodule"), id_prefix="CXP_",
                           metric="roc_auc", label_columns=("Cardiomegaly", "Effusion", "Nodule"),
                           task="findings as one 0/1 column each (multi-label)"),
}
# The chestxray layout's findings and their prevalence: Cardiomegaly belongs to the patient (an enlarged,
# darker centre, the phantom at a later atrophy stage), Effusion and Nodule to each image (a bright band at the
# bottom of one side; a small bright spot), each of a drawn strength, so some are faint.
FINDINGS = {"Cardiomegaly": 0.25, "Effusion": 0.3, "Nodule": 0.25}
NO_FINDING = "No Finding"
SEVERITY_NOISE = 0.42  # std of a subject's severity around its class stage; neighbours overlap


def class_counts(scale: float = 1.0, layout: str = "folders") -> tuple[dict[str, int], dict[str, int]]:
    """(train, test) images per class for `scale` and the demo `layout`."""
    if not scale > 0:
        raise CompetitionError(f"demo scale must be > 0, got {scale}")
    spec = LAYOUTS[layout]
    train = {c: max(MIN_TRAIN_PER_CLASS, round(n * scale)) for c, n in spec.train.items()}
    test = {c: max(MIN_TEST_PER_CLASS, round(n * scale)) for c, n in spec.test.items()}
    return train, test


# ---------------------------------------------------------------- drawing

def _sig(x: np.ndarray, sharp: float) -> np.ndarray:
    """Soft step 0 -> 1 as x crosses 0 (anti-aliased masks)."""
    return 0.5 * (1.0 + np.tanh(x * sharp))


def _subject(rng: np.random.Generator, stage: float) -> dict:
    """Base anatomy of one subject; slices vary around it."""
    sev = float(np.clip(stage + rng.normal(0.0, SEVERITY_NOISE), -0.6, 3.8))
    a = rng.uniform(0.66, 0.76)  # head half-width (grid units: image spans -1..1)
    n_gyri = int(rng.integers(13, 19))
    return {
        "sev": sev,
        "a": a,
        "b": a * rng.uniform(1.14, 1.24),  # axial heads are longer front-to-back
        "angle": rng.normal(0.0, 0.10),
        "cx": rng.normal(0.0, 0.03),
        "cy": rng.normal(0.0, 0.03),
        "gyri_n": n_gyri,
        "gyri_phase": rng.uniform(0, 2 * np.pi, size=3),
        "gyri_amp": rng.uniform(0.6, 1.0, size=3),
        "vent_x": rng.uniform(0.11, 0.15),
        "vent_tilt": rng.uniform(0.15, 0.35),
        "vent_asym": rng.normal(0.0, 0.06),
        "gm": rng.uniform(0.45, 0.55),
        "wm": rng.uniform(0.70, 0.80),
        "skull": rng.uniform(0.85, 1.0),
        "z0": rng.uniform(-0.3, 0.1),  # slice position of the first slice (0 = ventricle level)
        # The scan's look, shared by all its slices as in a real acquisition: bias field, gain, contrast, blur,
        # noise. Slices of one scan are then near twins, and the tool can find the subjects from the pixels.
        "field_seed": int(rng.integers(2**31)),
        "gain": rng.uniform(0.82, 1.12),
        "gamma": rng.uniform(0.85, 1.2),
        "blur": rng.uniform(0.35, 0.8),
        "noise": rng.uniform(0.012, 0.035),
    }


def _draw(subj: dict, z: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """One axial slice at height `z` as uint8 (size x size)."""
    s = subj["sev"]
    lin = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(lin, lin, indexing="ij")
    px = 2.0 / size  # one pixel in grid units
    sharp = 1.0 / px

    ang = subj["angle"] + rng.normal(0.0, 0.005)  # the head barely moves within one scan
    cx = subj["cx"] + rng.normal(0.0, 0.002)
    cy = subj["cy"] + rng.normal(0.0, 0.002)
    ca, sa = np.cos(ang), np.sin(ang)
    u = (x - cx) * ca + (y - cy) * sa  # left-right
    v = -(x - cx) * sa + (y - cy) * ca  # front-back (down = back)

    # Head shrinks away from the slice through the ventricles.
    shrink = 1.0 - 0.10 * z * z
    a, b = subj["a"] * shrink, subj["b"] * shrink
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(v / b, u / a)

    img = np.full((size, size), 0.03)
    head = _sig(1.0 - r, sharp * a)
    scalp = head * _sig(r - 0.90, sharp * a)  # bright scalp/skull-marrow ring (T1)
    inside = _sig(0.90 - r, sharp * a)
    img = img + scalp * 0.75 * subj["skull"] + inside * 0.10  # inside the skull: dark CSF

    # Brain edge: shrinks from the skull with atrophy; sulci are narrow notches that deepen with atrophy.
    gap = 0.035 + 0.035 * s
    rb = 0.88 - gap
    n, ph, amp = subj["gyri_n"], subj["gyri_phase"], subj["gyri_amp"]
    # Irregularly spaced sulci: a warped angular phase; cos(psi) = 1 in a sulcus, -1 on a gyrus crown.
    psi = n * phi + ph[0] + 0.3 * z + 1.4 * amp[1] * np.sin(3 * phi + ph[1]) + 0.7 * amp[2] * np.sin(5 * phi + ph[2])
    sulcus = np.clip(np.cos(psi), 0.0, None) ** 10
    per_sulcus = 0.65 + 0.35 * np.cos(0.5 * psi + ph[2])
    depth = 0.09 + 0.045 * max(s, 0.0)
    edge = rb * (1.0 - depth * sulcus * per_sulcus - 0.012 * np.cos(psi)) + 0.01 * rng.normal()
    brain = _sig(edge - r, sharp * a)

    # Midline fissure: dark, widening with atrophy, front and back of the brain only.
    fiss_w = px * (0.3 + 0.35 * max(s, 0.0))
    fiss = _sig(fiss_w - np.abs(u), sharp) * _sig(np.abs(v / b) - 0.5 + 0.05 * s, sharp * b * 0.5)
    brain = brain * (1.0 - 0.7 * fiss)

    # White matter core, with its own wavy border following the gyri.
    wm_edge = rb * (0.74 - 0.04 * max(s, 0.0)) * (1.0 - 0.07 * np.cos(psi))
    wm = _sig(wm_edge - r, sharp * a)
    tissue = subj["gm"] + (subj["wm"] - subj["gm"]) * wm
    img = img * (1.0 - brain) + brain * tissue

    # Lateral ventricles: two curved bands ")(" either side of the midline, closest at the middle, frontal
    # horns thicker; wider, longer and further apart with atrophy.
    zf = max(0.2, 1.0 - 1.2 * z * z)
    grow = 1.0 + 0.45 * s
    L = 0.26 * b * (1.0 + 0.10 * s) * max(0.35, zf)
    v0 = -0.03 * b
    t = (v - v0) / L  # -1 (front tip) .. 1 (back tip)
    taper = np.sqrt(np.clip(1.0 - t * t, 0.0, None))
    vent = np.zeros_like(img)
    for side in (-1.0, 1.0):
        asym = 1.0 + side * subj["vent_asym"]
        d0 = (subj["vent_x"] * 0.45 + 0.012 * s) * a
        xc = side * (d0 + subj["vent_tilt"] * 0.45 * a * (t + 0.15) ** 2)
        thick = 0.028 * a * grow * asym * zf * np.clip(1.25 - 0.55 * t, 0.5, 1.8) * taper
        shape = _sig(thick - np.abs(u - xc), sharp) * _sig(1.0 - np.abs(t), 6.0)
        vent = np.maximum(vent, shape)
    vent = vent * brain
    img = img * (1.0 - vent) + vent * 0.08

    # Scanner look: smooth bias field, contrast, blur, noise.
    field_rng = np.random.default_rng(subj["field_seed"])
    field = gaussian_filter(field_rng.normal(size=(size, size)), sigma=size / 6.0, mode="reflect")
    field = field / (np.abs(field).max() + 1e-9)
    img = img * (1.0 + 0.10 * field)
    img = np.clip(img, 0.0, 1.0) ** subj["gamma"] * subj["gain"]
    img = gaussian_filter(img, sigma=subj["blur"] * size / 64.0, mode="nearest")
    img = img + rng.normal(0.0, subj["noise"], size=img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _slices_per_subject(rng: np.random.Generator, total: int, lo: int, hi: int) -> list[int]:
    """Split `total` images into subjects of lo..hi consecutive slices."""
    out: list[int] = []
    left = total
    while left > 0:
        k = int(rng.integers(lo, hi + 1))
        if left - k < lo and left - k != 0:
            k = left if left <= hi else left - lo
        out.append(min(k, left))
        left -= out[-1]
    return out


# ---------------------------------------------------------------- writing

_README = """# Synthetic Alzheimer MRI contest (demo)

Made by `competition.demo.make_demo(seed={seed}, size={size}, scale={scale})`. Every image is a procedural
phantom of an axial brain MRI slice (8-bit grayscale, {size}x{size} PNG): dark background, bright scalp
ring, grey matter with sulci, brighter white matter, two dark lateral ventricles. No patient data.

## Task

Classify each slice into one of 4 classes; the metric is macro F1.

| class | train | test |
|---|---:|---:|
{table}

The imbalance follows the real Kaggle Alzheimer MRI set (Mild 717, Moderate 52, Non 2560, VeryMild 1792).

## Signal

The class follows atrophy, as in the real disease: from NonDemented to VeryMild, Mild and Moderate the
ventricles widen, the brain shrinks away from the skull (wider CSF gap), and sulci and the midline fissure
deepen. Each subject's severity is drawn around its class stage with noise, so neighbouring classes overlap.
Per subject (one scan): head size, rotation, position, intensity, contrast, bias field, blur and noise level
vary; the slices of one scan share them, as in a real acquisition.

## Layout

- `train/<Class>/subjNNN_sliceKK.png`: {n_subjects} subjects, a few consecutive slices each. Slices of one
  subject look alike, so a random split leaks; group folds with `regex:(subj\\d+)`.
- `test/<id>.png`: {n_test} images {test_from}, named by random hex ids.
- `sample_submission.csv`: `id,label`, one row per test image (ids sorted), label filled with `{placeholder}`.
- `.solution.csv`: the hidden answer key (`id,label`), for measuring real test scores.
"""


def make_demo(
    out_dir: Path | str,
    seed: int = 0,
    size: int = 64,
    scale: float = 1.0,
    *,
    overwrite: bool = False,
    relation: str = "new_subjects",
    layout: str = "folders",
) -> Path:
    """Write the synthetic contest into `out_dir` (created atomically) and return it. `relation` says what the
    test holds: "new_subjects" (other subjects' slices, the default) or "seen_subjects" (the next slice of
    training subjects, as the Alzheimer MRI test holds the top slices of the training brains). `layout` is
    the contest's shape (LAYOUTS): "folders" (train/<Class>/, macro F1, the default), "aptos" (train.csv
    id_code,diagnosis, train_images/, 5 ordinal grades, kappa), "isic" (train.csv image_name,target,
    patient_id, binary, a probability sample, ROC AUC), "chestxray" (findings joined by '|', multi-label, mean
    AUC) or "chexpert" (the same findings as one 0/1 column each); the recipe that declares each is
    recipes/demo-<layout>.yaml.

    Raises CompetitionError for a bad argument or an occupied `out_dir`."""
    out_dir = Path(out_dir)
    spec = _checked_layout(out_dir, seed, size, relation, layout, overwrite)
    if spec.multilabel:
        return _make_multilabel_demo(out_dir, spec, seed, size, scale, relation, layout)
    train_counts, test_counts = class_counts(scale, layout)
    root = np.random.SeedSequence([int(seed), 0x5EED_DE30])
    plan_rng = np.random.default_rng(root.spawn(1)[0])
    subjects = _plan_subjects(plan_rng, spec, relation, train_counts, test_counts)
    n_train_subj = sum(1 for s in subjects if s[1] > 0)
    numbers = plan_rng.permutation(n_train_subj) + 1  # subject numbers carry no label
    n_test = sum(test_counts.values())
    ids = _hex_ids(plan_rng, n_test)

    def write(tmp: Path) -> None:
        solution, labels = _write_images(tmp, spec, subjects, root.spawn(len(subjects) + 1)[1:], numbers, ids,
                                         plan_rng, size)
        _write_tables(tmp, spec, solution, labels)
        table = "\n".join(f"| {c} | {train_counts[c]} | {test_counts[c]} |" for c in spec.classes)
        test_from = ("from other subjects" if relation == "new_subjects"
                     else "that are the next slice of training subjects (their other slices are in train)")
        readme = _README.format(seed=seed, size=size, scale=scale, table=table, n_subjects=n_train_subj,
                                n_test=n_test, placeholder=spec.placeholder, test_from=test_from)
        if layout != "folders":
            readme = _layout_readme(readme, layout, spec, n_train_subj)
        (tmp / "README.md").write_text(readme, encoding="utf-8")

    return _write_staged(out_dir, write)


def _write_staged(out_dir: Path, write: Callable[[Path], None]) -> Path:
    """`out_dir` written atomically: `write(tmp)` fills a staging folder beside it (of the user's umask, as the
    contest folder will be), which is then swapped in; on any failure the staging folder is removed."""
    tmp = staging_folder(out_dir)
    try:
        write(tmp)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_images(tmp: Path, spec: DemoLayout, subjects: list[Any], subj_seeds: list[Any], numbers: np.ndarray,
                  ids: list[str], plan_rng: np.random.Generator,
                  size: int) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Every subject's slices drawn and written as PNG into `tmp` in the layout's folders: its first slices to
    train (named by subject and slice in class folders, or by a hex id with a labels file), the rest to test
    (named by `ids` in order). Returns (the solution's (test id, class) rows, the labels file's (id, class,
    subject) rows)."""
    if spec.train_csv is None:
        for cls in spec.classes:
            (tmp / spec.train_images / cls).mkdir(parents=True)
    else:
        (tmp / spec.train_images).mkdir()
    (tmp / spec.test_images).mkdir()
    solution: list[tuple[str, str]] = []
    labels: list[tuple[str, str, str]] = []
    width = max(3, len(str(len(numbers))))
    test_ids = iter(ids)
    for i, ((cls, n_train, n_test_slices), ss) in enumerate(zip(subjects, subj_seeds)):
        rng = np.random.default_rng(ss)
        subj = _subject(rng, spec.stage[cls])
        step = rng.uniform(0.08, 0.14)
        for k in range(n_train + n_test_slices):
            arr = _draw(subj, subj["z0"] + k * step, size, rng)
            if k < n_train and spec.train_csv is None:
                name = f"subj{numbers[i]:0{width}d}_slice{k + 1:02d}.png"
                (tmp / spec.train_images / cls / name).write_bytes(_png_bytes(arr))
            elif k < n_train:  # a labels file: the file named by a hex id, the subject only in its column
                name = f"{spec.id_prefix}{plan_rng.bytes(6).hex()}"
                (tmp / spec.train_images / f"{name}.png").write_bytes(_png_bytes(arr))
                labels.append((name, cls, f"IP_{numbers[i]:0{width}d}"))
            else:
                hid = f"{spec.id_prefix}{next(test_ids)}"
                (tmp / spec.test_images / f"{hid}.png").write_bytes(_png_bytes(arr))
                solution.append((hid, cls))
    return solution, labels


def _make_multilabel_demo(out_dir: Path, spec: DemoLayout, seed: int, size: int, scale: float, relation: str,
                          layout: str) -> Path:
    """The multi-label demos (the chestxray and chexpert layouts): patients of 1-4 images, FINDINGS drawn on the
    phantom, a labels file of findings joined by the separator (or one 0/1 column per finding), a sample of
    one probability column per finding. Both layouts draw the same images from one seed."""
    root = np.random.SeedSequence([int(seed), 0x5EED_DE30, 14])
    rng = np.random.default_rng(root)
    n_train, n_test = (max(40, round(spec.train["images"] * scale)), max(10, round(spec.test["images"] * scale)))
    low, high = (1, 4) if relation == "new_subjects" else (4, 8)
    plan = [(k, "train") for k in _slices_per_subject(rng, n_train, low, high)]
    if relation == "new_subjects":
        plan += [(k, "test") for k in _slices_per_subject(rng, n_test, 1, 3)]
    ids = _hex_ids(rng, n_train + n_test)

    def write(tmp: Path) -> None:
        (tmp / spec.train_images).mkdir()
        (tmp / spec.test_images).mkdir()
        train_rows, solution = [], []
        test_left = n_test if relation == "seen_subjects" else 0
        for patient, (count, side) in enumerate(plan):
            patient_rng = np.random.default_rng(rng.integers(2**63))
            cardio = patient_rng.random() < FINDINGS["Cardiomegaly"]
            subj = _subject(patient_rng, 2.6 if cardio else 0.0)
            extra = 1 if test_left > 0 and side == "train" else 0  # seen subjects: one more image, to the test
            test_left -= extra
            for k in range(count + extra):
                findings = {"Cardiomegaly"} if cardio else set()
                arr = _draw(subj, subj["z0"] + k * 0.1, size, patient_rng).astype(np.float64)
                arr = _findings(arr, findings, patient_rng)
                name = f"{spec.id_prefix}{ids.pop()}"
                where = spec.train_images if side == "train" and k < count else spec.test_images
                (tmp / where / f"{name}.png").write_bytes(_png_bytes(arr))
                if where == spec.train_images:
                    train_rows.append((name, tuple(sorted(findings)), f"{patient:05d}"))
                else:
                    solution.append((name, tuple(sorted(findings))))
        _write_multilabel_tables(tmp, spec, sorted(train_rows), sorted(solution))
        (tmp / "README.md").write_text(_multilabel_readme(spec, layout, seed, size, scale), encoding="utf-8")

    return _write_staged(out_dir, write)


def _multilabel_readme(spec: DemoLayout, layout: str, seed: int, size: int, scale: float) -> str:
    """The README.md of a multi-label demo: how it was made, its task and its files."""
    if spec.label_columns is not None:
        columns = (f"`{spec.train_csv[0]},{spec.train_csv[2]},{','.join(spec.label_columns)}`, one 0/1 column "
                   "per finding (a row of zeros: none)")
        none = "no finding when all are 0"
    else:
        columns = f"`{','.join(spec.train_csv or ())}`, findings joined by '{spec.label_separator}'"
        none = f"'{NO_FINDING}' when none"
    return (f"# Synthetic {layout}-like contest (demo)\n\nMade by `competition.demo.make_demo(seed={seed}, "
            f"size={size}, scale={scale}, layout={layout!r})`: phantom images with findings drawn on them "
            f"({', '.join(FINDINGS)}; {none}), several per image.\n\n## Task\n\n{spec.task}; "
            f"the metric is mean ROC AUC over the labels (recipes/demo-{layout}.yaml declares it).\n\n## Layout"
            f"\n\n- `train.csv`: {columns}; images in `{spec.train_images}/<id>.png`.\n- `{spec.test_images}/"
            "<id>.png`: the test images.\n- `sample_submission.csv`: one probability column per label.\n"
            "- `.solution.csv`: the hidden answer key, for measuring real test scores.\n")


def _findings(arr: np.ndarray, findings: set[str], rng: np.random.Generator) -> np.ndarray:
    """Draw an image's per-image findings (Effusion, Nodule) on uint8-range pixels, adding them to `findings`."""
    size = arr.shape[0]
    lin = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(lin, lin, indexing="ij")
    if rng.random() < FINDINGS["Effusion"]:
        findings.add("Effusion")
        side = rng.choice([-1.0, 1.0])
        band = _sig(y - rng.uniform(0.2, 0.45), 12.0) * _sig(side * x - 0.1, 12.0)
        arr = arr + rng.uniform(25, 70) * band
    if rng.random() < FINDINGS["Nodule"]:
        findings.add("Nodule")
        cy, cx = rng.uniform(-0.5, 0.5, size=2)
        r = rng.uniform(0.06, 0.11)
        arr = arr + rng.uniform(40, 90) * _sig(r - np.hypot(y - cy, x - cx), 60.0)
    return (np.clip(arr, 0, 255) + 0.5).astype(np.uint8)


def _write_multilabel_tables(tmp: Path, spec: DemoLayout, train_rows: list[tuple[str, tuple[str, ...], str]],
                             solution: list[tuple[str, tuple[str, ...]]]) -> None:
    """train.csv (id, findings joined by the separator, patient; or with label columns: id, patient, one 0/1
    column per finding), sample_submission.csv (one placeholder probability per label) and the hidden
    .solution.csv (id and the findings, as train.csv writes them)."""
    id_col, *labels = spec.sample_columns
    train_csv = spec.train_csv or ("id", "label", "group")
    if spec.label_columns is not None:
        def cells(findings: tuple[str, ...]) -> str:
            return ",".join("1" if c in findings else "0" for c in spec.label_columns or ())

        header, answer = f"{train_csv[0]},{train_csv[2]},{','.join(spec.label_columns)}", ",".join(spec.label_columns)
        rows = "".join(f"{name},{patient},{cells(found)}\n" for name, found, patient in train_rows)
    else:
        def cells(findings: tuple[str, ...]) -> str:
            return (spec.label_separator or "|").join(findings) if findings else NO_FINDING

        header, answer = ",".join(train_csv), train_csv[1]
        rows = "".join(f"{name},{cells(found)},{patient}\n" for name, found, patient in train_rows)
    (tmp / "train.csv").write_text(header + "\n" + rows, encoding="utf-8")
    (tmp / "sample_submission.csv").write_text(
        ",".join(spec.sample_columns) + "\n" + "".join(f"{hid}," + ",".join(spec.placeholder for _ in labels) + "\n"
                                                      for hid, _ in solution), encoding="utf-8")
    (tmp / ".solution.csv").write_text(f"{id_col},{answer}\n" + "".join(
        f"{hid},{cells(found)}\n" for hid, found in solution), encoding="utf-8")


def _checked_layout(out_dir: Path, seed: int, size: int, relation: str, layout: str, overwrite: bool) -> DemoLayout:
    """make_demo's arguments checked (CompetitionError of one line each); the layout's DemoLayout."""
    if relation not in RELATIONS:
        raise CompetitionError(f"demo relation: {relation!r} is not one of: {', '.join(RELATIONS)}")
    if layout not in LAYOUTS:
        raise CompetitionError(f"demo layout: {layout!r} is not one of: {', '.join(LAYOUTS)}")
    if int(seed) < 0:
        raise CompetitionError(f"demo seed must be >= 0, got {seed}")
    if size < 32:
        raise CompetitionError(f"demo size must be at least 32 pixels, got {size}")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise CompetitionError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise CompetitionError(f"{out_dir}: already exists and is not empty")
        check_output(out_dir, folder=True, ours=is_demo, option="DIR")  # --overwrite replaces only a demo
    return LAYOUTS[layout]


def _plan_subjects(plan_rng: np.random.Generator, spec: DemoLayout, relation: str, train_counts: dict[str, int],
                   test_counts: dict[str, int]) -> list[tuple[str, int, int]]:
    """(class, training slices, test slices) per subject. New subjects: 2-4 training slices a subject, and test
    subjects of their own. Seen subjects: longer scans (6-10 training slices) whose next slices are the test, as
    the Alzheimer test holds the top slices of the training brains."""
    subjects: list[tuple[str, int, int]] = []
    low, high = (2, 4) if relation == "new_subjects" else (6, 10)
    for cls in spec.classes:
        for k in _slices_per_subject(plan_rng, train_counts[cls], low, high):
            subjects.append((cls, k, 0))
    if relation == "new_subjects":
        for cls in spec.classes:
            for k in _slices_per_subject(plan_rng, test_counts[cls], 1, 3):
                subjects.append((cls, 0, k))
    else:  # the next slices of the training subjects, one more each, round the class's subjects
        for cls in spec.classes:
            rows = [i for i, s in enumerate(subjects) if s[0] == cls]
            for n in range(test_counts[cls]):
                i = rows[n % len(rows)]
                subjects[i] = (cls, subjects[i][1], subjects[i][2] + 1)
    return subjects


def _hex_ids(plan_rng: np.random.Generator, n: int) -> list[str]:
    """n distinct 12-digit hex ids (the test images' names: they say nothing of class or subject)."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        hid = plan_rng.bytes(6).hex()
        if hid not in seen:
            seen.add(hid)
            ids.append(hid)
    return ids


def _write_tables(tmp: Path, spec: DemoLayout, solution: list[tuple[str, str]],
                  labels: list[tuple[str, str, str]]) -> None:
    """sample_submission.csv (the placeholder), .solution.csv (the hidden answers) and, for a layout with a
    labels file, train.csv (id, label[, subject])."""
    solution.sort()
    id_col, value_col = spec.sample_columns
    (tmp / "sample_submission.csv").write_text(
        f"{id_col},{value_col}\n" + "".join(f"{hid},{spec.placeholder}\n" for hid, _ in solution), encoding="utf-8")
    (tmp / ".solution.csv").write_text(
        f"{id_col},{value_col}\n" + "".join(f"{hid},{cls}\n" for hid, cls in solution), encoding="utf-8")
    if spec.train_csv is not None:
        labels.sort()
        columns = spec.train_csv
        (tmp / "train.csv").write_text(",".join(columns) + "\n" + "".join(
            ",".join((name, cls, subject)[: len(columns)]) + "\n" for name, cls, subject in labels),
            encoding="utf-8")


def _layout_readme(readme: str, layout: str, spec: DemoLayout, n_subjects: int) -> str:
    """The demo README for a layout other than class folders: its task, metric and files."""
    head, _, rest = readme.partition("## Task")
    table = rest[rest.index("| class"):rest.index("\n\nThe imbalance")]
    stages = ", ".join(f"{c}: {spec.stage[c]:g}" for c in spec.classes)
    signal = (f"## Signal\n\nEach class is an atrophy stage of the phantom ({stages}; 0 is healthy): the ventricles "
              "widen, the brain shrinks away from the skull and the sulci deepen with it. Each subject's stage is "
              "drawn around its class's with noise, so neighbouring classes overlap.\n\n")
    head = head.replace(")`. Every image", f", layout={layout!r})`. Every image", 1)
    id_col, value_col = spec.sample_columns
    group = (f" ({spec.train_csv[2]}: {n_subjects} subjects, several images each; the recipe groups folds by it)"
             if len(spec.train_csv or ()) > 2 else "")
    value = ("the probability of class 1" if spec.metric == "roc_auc" else f"a grade, placeholder {spec.placeholder}")
    return (f"{head.replace('Synthetic Alzheimer MRI contest (demo)', f'Synthetic {layout}-like contest (demo)')}"
            f"## Task\n\n{spec.task}; the metric is {spec.metric} (recipes/demo-{layout}.yaml declares it).\n\n"
            f"{table}\n\n{signal}## Layout\n\n"
            f"- `train.csv`: `{','.join(spec.train_csv or ())}`{group}; images in `{spec.train_images}/<id>.png`.\n"
            f"- `{spec.test_images}/<id>.png`: the test images.\n"
            f"- `sample_submission.csv`: `{id_col},{value_col}`, {value}.\n"
            f"- `.solution.csv`: the hidden answer key, for measuring real test scores.\n")


def is_demo(folder: Path) -> bool:
    """A demo contest written by `make_demo` (its hidden .solution.csv): what --overwrite replaces."""
    return (folder / ".solution.csv").is_file()


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder `tmp` to `out_dir`, replacing an old one only after the new one is complete."""
    old: Path | None = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old.{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
