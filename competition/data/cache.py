"""Decoding many images once: the on-disk decode cache (the one `cache_dir` of the package) and the
preflight that lists every unreadable file. A cache entry is keyed by the images' bytes, the size, the
channels and the recipe's decode options (data.intensity_window, data.crop, data.standardize and the values
they read: competition.data.decode.DecodeOptions), so every fold, epoch and later run at that size reuses it.
An entry keeps how the grey values of images of more than 8 bits were mapped, so `intensity_note` can say it
whether the pixels were decoded now or read back. A damaged entry is a miss: decoded again and replaced.

Since the key is the files' contents, not their paths, one entry serves the same files named another way (a
relative path, then an absolute one; a moved contest folder): an entry records its unreadable files by their
position in the list, and they are reported under the paths of the call that reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from competition.data.decode import DecodeOptions, Mapping, UnreadableImage, Window, decode_image, named_warnings
from competition.errors import CompetitionError
from competition.files import atomic_write, locked, write_text

SHOW = 5  # files named in one message before "and N more"
CACHE_VERSION = "v3"  # bump when decoding changes what pixels a file gives (v3: one 16-bit mapping per contest)

# How the grey values of deep images were mapped, per decoded list of files (for intensity_note): filled by
# decode_images, whether it decoded or read the cache.
_MAPPINGS: dict[tuple[tuple[str, ...], Window | None], list[dict]] = {}
MIN_MAX, FULL = "min-max per image", "full range"  # Mapping.how (competition.data.decode)
ONE_RANGE = (FULL, "recipe window")




def cache_dir() -> Path:
    """The package's one cache folder (decoded pixels, signatures, features): COMPETITION_CACHE_DIR when set
    and not empty, else ~/.cache/competition."""
    return Path(os.environ.get("COMPETITION_CACHE_DIR") or Path.home() / ".cache" / "competition")


def content_key(paths: Sequence[str | Path], size: tuple[int, int], channels: int,
                options: DecodeOptions | None = None) -> str:
    """The decode-cache key of these files at this size, channels and decode options (None or the defaults:
    keyed as before the options existed, so older cache entries stay valid)."""
    shown = options.key() if options is not None else ""
    digest = hashlib.sha256(f"{CACHE_VERSION}|{size[0]}x{size[1]}x{channels}{shown}|".encode())
    for path in paths:
        try:
            digest.update(hashlib.sha1(Path(path).read_bytes()).digest())
        except OSError as exc:  # the decoder reports it; the key just has to differ from a readable file's
            digest.update(f"unreadable:{path}:{exc.errno}".encode())
    return digest.hexdigest()[:32]


def decode_images(
    paths: Sequence[str | Path], size: tuple[int, int], channels: int, *, cache: bool = True, workers: int = 4,
    options: DecodeOptions | None = None, window: Window | None = None,
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Every image decoded once (or read from the cache): the readable ones as one uint8 array
    (n_readable, h, w, channels) in the order given, and (path, reason) for each unreadable file, its path as
    given here. `decode_images_at` says the same with each unreadable file's position. `options`
    are the recipe's decode options (``recipe.data.decode_options()``; None: the defaults); `window`
    alone is short for DecodeOptions(window=window). Raises ValueError when both are given.

    The cache entry covers the whole list, unreadable files included, so a later call with the same
    files neither decodes again nor forgets which were bad. An entry that cannot be read back whole
    (cut short, damaged) is decoded again and replaced."""
    images, bad = decode_images_at(paths, size, channels, cache=cache, workers=workers, options=options,
                                   window=window)
    return images, [(path, reason) for _, path, reason in bad]


def decode_images_at(
    paths: Sequence[str | Path], size: tuple[int, int], channels: int, *, cache: bool = True, workers: int = 4,
    options: DecodeOptions | None = None, window: Window | None = None,
) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """`decode_images`, each unreadable file given as (its position in `paths`, its path as given, reason):
    row k of the images is the k-th readable file, whichever way the files were named when the cache entry
    was written."""
    size = (int(size[0]), int(size[1]))
    if window is not None and options is not None:
        raise ValueError("decode_images: give the window in `options`, not both")
    options = options if options is not None else DecodeOptions(window=window)
    remember = (tuple(str(p) for p in paths), options.window)
    target = cache_dir() / "decoded" / f"{content_key(paths, size, channels, options)}.npy" if cache else None
    if target is not None:
        found = _read_entry(target, [str(p) for p in paths], (size[0], size[1], channels))
        if found is not None:
            images, bad, mappings = found
            _MAPPINGS[remember] = mappings
            return images, bad
    out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)
    reasons: list[str | None] = [None] * len(paths)
    mapped: list[Mapping | None] = [None] * len(paths)

    def fill(i: int) -> None:
        try:
            out[i] = decode_image(paths[i], size, channels, options, on_mapping=lambda m: mapped.__setitem__(i, m))
        except UnreadableImage as exc:
            reasons[i] = exc.reason

    with named_warnings(paths), ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow's EXIF warnings name files
        list(pool.map(fill, range(len(paths))))
    bad = [(i, str(p), r) for i, (p, r) in enumerate(zip(paths, reasons)) if r is not None]
    if bad:
        out = out[[r is None for r in reasons]]
    mappings = _summarise([_as_group(m) for m in mapped if m is not None])
    _MAPPINGS[remember] = mappings
    if target is not None:
        bad_file, mapping_file = _sidecars(target)
        with locked(target):  # an entry's three files written by one process at a time, never a mix of two
            if bad:  # by position: the entry is found by content, whatever the paths are called next time
                write_text(bad_file, json.dumps([[i, r] for i, _, r in bad]) + "\n")
            else:
                bad_file.unlink(missing_ok=True)
            write_text(mapping_file, json.dumps(mappings) + "\n")
            with atomic_write(target, "wb") as handle:  # last: the array marks the entry complete
                np.save(handle, out, allow_pickle=False)
    return out, bad  # type: ignore[return-value]


def _sidecars(target: Path) -> tuple[Path, Path]:
    """The files beside a cache entry: the unreadable files, the mappings of deep images."""
    return target.with_suffix(".bad.json"), target.with_suffix(".mapping.json")


def _read_entry(target: Path, paths: list[str], shape: tuple[int, int, int]
                ) -> tuple[np.ndarray, list[tuple[int, str, str]], list[dict]] | None:
    """A complete cache entry for `paths` (images, unreadable files as (position, path in `paths`, reason),
    mappings), or None: missing, or damaged in any way (cut short, not an array, of another shape, an
    unreadable file at no position of `paths`), which makes it a miss."""
    if not target.is_file():
        return None
    bad_file, mapping_file = _sidecars(target)
    try:
        bad = _positions(json.loads(bad_file.read_text()), paths) if bad_file.is_file() else []
        if bad is None:
            return None
        mappings = json.loads(mapping_file.read_text()) if mapping_file.is_file() else []
        fields = {"kind", "how", "low", "high", "count", "min", "max"}
        if not isinstance(mappings, list) or not all(isinstance(g, dict) and fields <= g.keys() for g in mappings):
            return None
        with open(target, "rb") as handle:
            cached = np.load(handle, allow_pickle=False)
    except (OSError, ValueError, TypeError, IndexError, EOFError):
        return None
    if cached.dtype != np.uint8 or cached.shape != (len(paths) - len(bad), *shape):
        return None
    return cached, bad, mappings  # type: ignore[return-value]


def _positions(recorded: object, paths: list[str]) -> list[tuple[int, str, str]] | None:
    """The unreadable files of an entry, [[position, reason], ...], as (position, path, reason) under `paths`;
    None when the record does not fit them. Entries written before positions were recorded name paths
    ([[path, reason], ...]): used when each names one of `paths`, else a miss (decoded again)."""
    if not isinstance(recorded, list):
        return None
    out: list[tuple[int, str, str]] = []
    where = {p: i for i, p in reversed(list(enumerate(paths)))}
    for item in recorded:
        if not isinstance(item, list) or len(item) != 2:
            return None
        key, reason = item
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(paths):
            position = key
        elif isinstance(key, str) and key in where and paths.count(key) == 1:
            position = where[key]
        else:
            return None
        out.append((position, paths[position], str(reason)))
    positions = [i for i, _, _ in out]
    return out if positions == sorted(set(positions)) else None


def _key(group: dict) -> tuple:
    # one range for the full range and a recipe window; a DICOM file's own window and min-max per image differ
    # from file to file, so those group by kind alone
    return (group["kind"], group["how"]) + ((group["low"], group["high"]) if group["how"] in ONE_RANGE else ())


def _summarise(groups: Sequence[dict]) -> list[dict]:
    """Mappings (each a dict: kind, how, low, high, count, min, max) merged by kind, how and range: counts
    added, the lowest and highest value met kept."""
    merged: dict[tuple, dict] = {}
    for group in groups:
        into = merged.get(_key(group))
        if into is None:
            merged[_key(group)] = dict(group)
        else:
            into["count"] += group["count"]
            into["min"], into["max"] = min(into["min"], group["min"]), max(into["max"], group["max"])
    return list(merged.values())


def _as_group(m: Mapping) -> dict:
    return {"kind": m.kind, "how": m.how, "low": m.low, "high": m.high, "count": 1, "min": m.min_value,
            "max": m.max_value}


def intensity_note(paths: Sequence[str | Path], window: Window | None = None) -> str | None:
    """One line saying how the grey values of the images among `paths` that have more than 8 bits were mapped
    to 0..255 (None when there are none), for the images decode_images decoded or read back in this process
    with this window; with a hint when they use little of the bit depth's full range."""
    window = (float(window[0]), float(window[1])) if window is not None else None
    wanted = {str(p) for p in paths}
    found = [g for (decoded, used), groups in _MAPPINGS.items() if used == window and wanted.intersection(decoded)
             for g in groups]
    if not found:
        return None
    parts, hint = [], ""
    for g in _summarise(found):
        what = f"{g['count']} {g['kind']} grey image{'s' if g['count'] != 1 else ''}"
        if g["how"] == MIN_MAX:
            parts.append(f"{what} without a window of their own: scaled min-max per image (declare "
                         "data.intensity_window to map every image alike)")
            continue
        if g["how"] not in ONE_RANGE:
            parts.append(f"{what} mapped to 0..255 by their own {g['how']}")
            continue
        source = "the bit depth's full range" if g["how"] == FULL else "data.intensity_window"
        parts.append(f"{what} mapped to 0..255 from {_number(g['low'])}..{_number(g['high'])} ({source}), the "
                     "same way for every image")
        share = (g["max"] - g["min"]) / ((g["high"] - g["low"]) or 1.0)
        if g["how"] == FULL and g["max"] > g["min"] and share < 0.25 and not hint:
            hint = (f"; their values lie in {_number(g['min'])}..{_number(g['max'])}: data.intensity_window: "
                    f"[{_number(g['min'])}, {_number(g['max'])}] would use all 256 grey levels")
    return "note: " + "; ".join(parts) + hint


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.0f}"


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


