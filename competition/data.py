"""Contest data: index the folder, decode each image once, cache the decoded pixels on disk.

A contest folder holds ``train/<Class>/<image>`` (or ``train.csv`` with ``id,label`` and the images in
``train/``), ``test/<image>`` and ``sample_submission.csv``. Images of any size and mode are resized to the
recipe's size and channel count; the result is cached keyed by the images' bytes, size and channels, so
every fold, epoch and later run at that size reuses it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.errors import CompetitionError
from competition.files import atomic_write

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


@dataclass
class Contest:
    root: Path
    train: pd.DataFrame  # id, path, label (+ any other train.csv columns)
    test: pd.DataFrame  # id, path
    classes: list[str]
    sample_path: Path

    def y(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return self.train["label"].map(index).to_numpy(dtype=np.int64)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def index_contest(root: str | Path) -> Contest:
    """Find every train and test image and the sample submission; errors name the offending path."""
    root = Path(root)
    if not root.is_dir():
        raise CompetitionError(f"{root}: contest folder not found")
    train_dir, test_dir, sample = root / "train", root / "test", root / "sample_submission.csv"
    if not train_dir.is_dir():
        raise CompetitionError(f"{train_dir}: train folder not found")
    if not test_dir.is_dir():
        raise CompetitionError(f"{test_dir}: test folder not found")
    if not sample.is_file():
        raise CompetitionError(f"{sample}: sample submission not found")

    train_csv = root / "train.csv"
    if train_csv.is_file():
        train = _train_from_csv(train_csv, train_dir)
    else:
        rows = []
        class_dirs = sorted(p for p in train_dir.iterdir() if p.is_dir())
        if not class_dirs:
            raise CompetitionError(f"{train_dir}: no class folders (expected train/<Class>/<images>)")
        for class_dir in class_dirs:
            images = _images_in(class_dir)
            if not images:
                raise CompetitionError(f"{class_dir}: class folder holds no images")
            rows += [(p.stem, str(p), class_dir.name) for p in images]
        train = pd.DataFrame(rows, columns=["id", "path", "label"])
    classes = sorted(train["label"].unique())
    if len(classes) < 2:
        raise CompetitionError(f"{train_dir}: only one class ({classes[0]}); a classifier needs at least two")
    duplicated = train["id"][train["id"].duplicated()]
    if len(duplicated):
        raise CompetitionError(f"{train_dir}: image id {duplicated.iloc[0]!r} appears more than once")

    test_images = _images_in(test_dir)
    if not test_images:
        raise CompetitionError(f"{test_dir}: test folder holds no images")
    test = pd.DataFrame({"id": [p.stem for p in test_images], "path": [str(p) for p in test_images]})
    return Contest(root=root, train=train, test=test, classes=classes, sample_path=sample)


def _train_from_csv(train_csv: Path, image_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    for column in ("id", "label"):
        if column not in frame.columns:
            raise CompetitionError(f"{train_csv}: missing column '{column}' (columns: {', '.join(frame.columns)})")
    by_stem = {p.stem: p for p in _images_in(image_dir)} | {p.name: p for p in _images_in(image_dir)}
    missing = [i for i in frame["id"] if i not in by_stem]
    if missing:
        raise CompetitionError(f"{train_csv}: no image in {image_dir} for id {missing[0]!r} ({len(missing)} missing)")
    empty = frame.index[frame["label"].str.strip() == ""]
    if len(empty):
        raise CompetitionError(f"{train_csv}: row {empty[0] + 2} has an empty label")
    frame.insert(1, "path", [str(by_stem[i]) for i in frame["id"]])
    return frame


def class_counts(contest: Contest) -> pd.DataFrame:
    counts = contest.train["label"].value_counts().reindex(contest.classes).fillna(0).astype(int)
    return pd.DataFrame({"class": counts.index, "images": counts.to_numpy(), "share": counts.to_numpy() / counts.sum()})


# ---------------------------------------------------------------- decoding and the cache


def cache_dir() -> Path:
    return Path(os.environ.get("COMPETITION_CACHE_DIR", Path.home() / ".cache" / "competition"))


def decode_image(path: str | Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One file as uint8 (h, w, channels): EXIF orientation applied, 16-bit scaled, resized with area filter."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
                array = np.asarray(image, dtype=np.float64)
                low, high = float(array.min()), float(array.max())
                array = (array - low) / (high - low or 1.0) * 255.0
                image = Image.fromarray(array.astype(np.uint8), mode="L")
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((size[1], size[0]), Image.Resampling.BOX if image.width >= size[1] else Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise CompetitionError(f"{path}: cannot read image ({exc})") from None
    return array.reshape(size[0], size[1], channels)


def _content_key(paths: Sequence[str | Path], size: tuple[int, int], channels: int) -> str:
    digest = hashlib.sha256(f"v1|{size[0]}x{size[1]}x{channels}|".encode())
    for path in paths:
        try:
            digest.update(hashlib.sha1(Path(path).read_bytes()).digest())
        except OSError as exc:
            raise CompetitionError(f"{path}: cannot read ({exc.strerror})") from None
    return digest.hexdigest()[:32]


def load_images(
    paths: Sequence[str | Path], size: tuple[int, int], channels: int, *, cache: bool = True, workers: int = 4
) -> np.ndarray:
    """All images as one uint8 array (n, h, w, channels), decoded once and then read from the cache."""
    size = (int(size[0]), int(size[1]))
    target = cache_dir() / "decoded" / f"{_content_key(paths, size, channels)}.npy" if cache else None
    if target is not None and target.is_file():
        cached = np.load(target, mmap_mode="r", allow_pickle=False)
        if cached.shape == (len(paths), size[0], size[1], channels):
            return np.ascontiguousarray(cached)
    out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)

    def fill(i: int) -> None:
        out[i] = decode_image(paths[i], size, channels)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, range(len(paths))))
    if target is not None:
        with atomic_write(target, "wb") as handle:
            np.save(handle, out, allow_pickle=False)
    return out
