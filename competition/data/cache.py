"""Decoding many images once: the on-disk decode cache (the one `cache_dir` of the package) and the
preflight that lists every unreadable file. A cache entry is keyed by the images' bytes, the size and the
channels, so every fold, epoch and later run at that size reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from competition.data.decode import UnreadableImage, decode_image
from competition.errors import CompetitionError
from competition.files import atomic_write, write_text

SHOW = 5  # files named in one message before "and N more"
CACHE_VERSION = "v2"  # bump when decoding changes what pixels a file gives




def cache_dir() -> Path:
    """The package's one cache folder (decoded pixels, signatures, features): COMPETITION_CACHE_DIR when set
    and not empty, else ~/.cache/competition."""
    return Path(os.environ.get("COMPETITION_CACHE_DIR") or Path.home() / ".cache" / "competition")


def content_key(paths: Sequence[str | Path], size: tuple[int, int], channels: int) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{size[0]}x{size[1]}x{channels}|".encode())
    for path in paths:
        try:
            digest.update(hashlib.sha1(Path(path).read_bytes()).digest())
        except OSError as exc:  # the decoder reports it; the key just has to differ from a readable file's
            digest.update(f"unreadable:{path}:{exc.errno}".encode())
    return digest.hexdigest()[:32]


def decode_images(
    paths: Sequence[str | Path], size: tuple[int, int], channels: int, *, cache: bool = True, workers: int = 4
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Every image decoded once (or read from the cache): the readable ones as one uint8 array
    (n_readable, h, w, channels) in the order given, and (path, reason) for each unreadable file.

    The cache entry covers the whole list, unreadable files included, so a later call with the same
    files neither decodes again nor forgets which were bad."""
    size = (int(size[0]), int(size[1]))
    target = cache_dir() / "decoded" / f"{content_key(paths, size, channels)}.npy" if cache else None
    bad_file = target.with_suffix(".bad.json") if target is not None else None
    if target is not None and target.is_file():
        bad = [tuple(b) for b in json.loads(bad_file.read_text())] if bad_file.is_file() else []
        cached = np.load(target, mmap_mode="r", allow_pickle=False)
        if cached.shape == (len(paths) - len(bad), size[0], size[1], channels):
            return np.ascontiguousarray(cached), bad  # type: ignore[return-value]
    out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)
    reasons: list[str | None] = [None] * len(paths)

    def fill(i: int) -> None:
        try:
            out[i] = decode_image(paths[i], size, channels)
        except UnreadableImage as exc:
            reasons[i] = exc.reason

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, range(len(paths))))
    bad = [(str(p), r) for p, r in zip(paths, reasons) if r is not None]
    if bad:
        out = out[[r is None for r in reasons]]
    if target is not None:
        if bad:
            write_text(bad_file, json.dumps(bad) + "\n")
        with atomic_write(target, "wb") as handle:  # last: the array marks the entry complete
            np.save(handle, out, allow_pickle=False)
    return out, bad  # type: ignore[return-value]


def unreadable_message(bad: Sequence[tuple[str, str]], kind: str = "") -> str:
    """One line: '3 unreadable training images: a.jpg (empty file); b.png (...); ... and N more'."""
    noun = "image" if len(bad) == 1 else "images"
    listed = "; ".join(f"{path} ({reason})" for path, reason in bad[:SHOW])
    more = f"; and {len(bad) - SHOW} more" if len(bad) > SHOW else ""
    return f"{len(bad)} unreadable {kind + ' ' if kind else ''}{noun}: {listed}{more}"


def load_images(
    paths: Sequence[str | Path], size: tuple[int, int], channels: int, *, cache: bool = True, workers: int = 4
) -> np.ndarray:
    """All images as one uint8 array (n, h, w, channels), decoded once and then read from the cache; any
    unreadable file raises one CompetitionError listing every unreadable file with its reason."""
    images, bad = decode_images(paths, size, channels, cache=cache, workers=workers)
    if bad:
        raise CompetitionError(unreadable_message(bad))
    return images


