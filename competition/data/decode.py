"""Decoding one image file into uint8 pixels of the recipe's size and channels.

Formats and how each becomes pixels (then converted to the recipe's channels, 1: ITU-R 601 luma, 3: grey
replicated):

- JPEG (CMYK JPEGs converted to RGB), PNG, BMP, TIFF, GIF, WebP through Pillow; multi-frame files
  (GIF, TIFF) give their first frame. EXIF orientation is applied; a broken EXIF block is ignored, with one
  ImageWarning naming the file (Pillow's own "Corrupt EXIF data" warning names none).
- Grey images of more than 8 bits (PNG ``I;16``, TIFF ``I;16``/``I``/``F``) are mapped to 0..255 in one way for
  the whole contest, train and test alike (never by each image's own minimum and maximum, which would erase
  the brightness differences between images): by default the bit depth's full range (16-bit:
  value / 65535 * 255; signed 16-bit: -32768..32767; 32-bit integers: their full signed or unsigned range;
  32-bit float: 0.0..1.0), or, when the recipe declares ``data.intensity_window: [low, high]``, low..high
  (values outside clipped). `train` says which mapping it used (competition.data.cache.intensity_note).
- Alpha (RGBA, LA, palette with transparency): composited on black, so transparent pixels are 0.
- Palette images: their palette colours.
- DICOM (``.dcm``/``.dicom`` or any file with the ``DICM`` preamble) through pydicom: rescale slope and
  intercept applied; then the recipe's ``data.intensity_window`` when declared (in the rescaled units, e.g.
  HU), else the file's window (first WindowCenter/WindowWidth value when multi-valued; linear from
  centre - width/2 to centre + width/2) or, without a window, min-max per image; MONOCHROME1 inverted so
  that high values are bright; multi-frame files give their first frame; RGB, YBR and palette-colour
  DICOM give colour. Compressed transfer syntaxes need pydicom's optional decoders (pylibjpeg, gdcm).
- A file whose bytes are another format than its name says (PNG bytes named ``.dcm``, a web page named
  ``.jpg``) is unreadable with a reason naming what its first bytes ("magic bytes") show it is (`file_kind`).
- Size limit: an image with more pixels than Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by
  default, about 9459 x 9459) is rejected as a possible decompression bomb, DICOM included. Raise that
  setting to allow larger images.

Then, in this order (`DecodeOptions`, from the recipe by ``recipe.data.decode_options()``): the intensity
mapping above; the foreground crop (``data.crop: foreground``) on the full-resolution 0..255 image; the
conversion to the recipe's channels and the resize to its size; the per-image standardisation
(``data.standardize: image``) of the resized pixels. Train, test and new images go through the same steps.
Both find the foreground the same robust way (`foreground_mask`): noise above the threshold in the background
counts as background.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from competition.errors import CompetitionError

DICOM_EXTENSIONS = {".dcm", ".dicom"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"} | DICOM_EXTENSIONS


class ImageWarning(UserWarning):
    """Something about one image file that did not stop it from being read (a broken EXIF block); the message
    starts with the file's path."""


# A file's first bytes and what they show it is: (prefix, what, the extension such a file has).
_MAGIC: tuple[tuple[bytes, str, str | None], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", ".png"),
    (b"\xff\xd8\xff", "a JPEG image", ".jpg"),
    (b"GIF87a", "a GIF image", ".gif"),
    (b"GIF89a", "a GIF image", ".gif"),
    (b"II*\x00", "a TIFF image", ".tif"),
    (b"MM\x00*", "a TIFF image", ".tif"),
    (b"%PDF-", "a PDF document", None),
    (b"PK\x03\x04", "a ZIP archive", None),
    (b"\x1f\x8b", "a gzip-compressed file", None),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image", None),
)


def file_kind(head: bytes) -> tuple[str, str | None, str] | None:
    """What a file's first bytes (132 or more; fewer for a short file) show it is: (what, the extension such a
    file has or None, the first bytes as shown in a message), or None when they show nothing known. DICOM is
    never reported here (a DICOM file without its preamble has no magic bytes)."""
    shown_hex = " ".join(f"{b:02X}" for b in head[:8])
    for prefix, what, extension in _MAGIC:
        if head.startswith(prefix):
            return what, extension, f"they begin {shown_hex}"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image", ".webp", f"they begin {shown_hex}"
    if head.startswith(b"BM") and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56,
                                                                                                  64, 108, 124):
        return "a BMP image", ".bmp", f"they begin {shown_hex}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the head is still text
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 and exc.start > 0 else ""
    if text and all(c.isprintable() or c in "\t\r\n\ufeff" for c in text):
        lowered = text.lstrip("\ufeff \t\r\n").lower()
        what = ("an HTML page (a web page saved in place of the file?)"
                if lowered.startswith(("<!doctype html", "<html")) else
                "an XML file" if lowered.startswith("<?xml") else "text")
        first = " ".join(text.split())[:40]
        return what, None, f"they read {first!r}"
    return None


def _not_what_named(path: str | Path, head: bytes) -> str | None:
    """The reason a file named .dcm/.dicom is not DICOM when its first bytes show another format, else None."""
    kind = file_kind(head)
    if kind is None:
        return None
    what, extension, shown = kind
    rename = f"; rename it to {Path(path).stem}{extension}" if extension else ""
    return f"named {Path(path).suffix} but not DICOM: its bytes are {what} ({shown}){rename}"




class UnreadableImage(CompetitionError):
    """One file that cannot be decoded; `reason` is a short phrase without the path."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: cannot read image ({reason})")
        self.path, self.reason = str(path), reason


def _reason(exc: BaseException, path: str | Path | None) -> str:
    text = " ".join(str(exc).split())
    for shown in (repr(str(path)), str(path)) if path else ():
        text = text.replace(shown, "").replace("  ", " ")
    text = re.sub(r"<_io\.\w+ name=[^>]*>", "", text).replace("  ", " ").strip(" :") or type(exc).__name__
    if not isinstance(exc, (OSError, ValueError)):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 160 else text[:157] + "..."


def _check_pixels(width: int, height: int) -> None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise _Bad(f"{width}x{height} = {width * height:,} pixels, above the {limit:,}-pixel limit "
                   "(PIL.Image.MAX_IMAGE_PIXELS, a decompression-bomb guard)")


class _Bad(Exception):
    """A decoding failure with a reason already worded for the user."""


Window = tuple[float, float]
CROPS = ("none", "foreground")
STANDARDIZES = ("none", "image")


@dataclass(frozen=True)
class DecodeOptions:
    """What the recipe's data section says about turning a file into pixels, beyond size and channels
    (competition.recipe.DataConfig.decode_options builds it).

    - `window`: data.intensity_window, (low, high) for grey images of more than 8 bits, or None (module
      docstring).
    - `crop`: data.crop. "foreground" crops the full-resolution image (after the intensity mapping to 0..255,
      before the resize) as MONAI's CropForeground does (monai.transforms.CropForeground: the bounding box of
      the pixels whose value passes a select function, expanded by a margin, clipped to the image): the box
      of the pixels above `threshold` (the maximum over the channels), each side expanded by `margin` times
      the box's extent along that axis and clipped to the image; then grown, centred, along its shorter
      side to the aspect of the target size (a square for a square size), so the resize does not distort
      the picture, with 0 where the grown box leaves the image. An image without a pixel above `threshold`
      is left uncropped. The pixels above `threshold` are first cleared of background noise
      (`foreground_mask`: the largest connected object after a small opening).
    - `standardize`: data.standardize. "image" standardises each image after the crop and the resize: the
      mean and standard deviation of its foreground pixels (the maximum over the channels above `threshold`,
      inside the object `foreground_mask` found on the full-resolution picture; every channel of such a pixel
      counts) give each foreground value clip(round(128 + 40 * z), 0, 255), z = (value - mean) / std; other
      pixels (<= threshold, or background noise) become 0;
      an image whose foreground is flat (std 0) gets 128 there, one without foreground is all 0.
    - `threshold`: data.foreground_threshold, the grey level 0..254 (of 255) a foreground pixel is above.
    - `margin`: data.crop_margin, 0..1.

    Raises CompetitionError for a value outside these ranges."""

    window: Window | None = None
    crop: Literal["none", "foreground"] = "none"
    standardize: Literal["none", "image"] = "none"
    threshold: int = 10
    margin: float = 0.05

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise CompetitionError(f"DecodeOptions.crop: expected one of {CROPS}, got {self.crop!r}")
        if self.standardize not in STANDARDIZES:
            raise CompetitionError(f"DecodeOptions.standardize: expected one of {STANDARDIZES}, "
                                   f"got {self.standardize!r}")
        if (isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, np.integer))
                or not 0 <= self.threshold <= 254):
            raise CompetitionError(f"DecodeOptions.threshold: expected an integer 0..254, got {self.threshold!r}")
        if (isinstance(self.margin, bool) or not isinstance(self.margin, (int, float, np.number))
                or not 0.0 <= float(self.margin) <= 1.0):
            raise CompetitionError(f"DecodeOptions.margin: expected a number 0..1, got {self.margin!r}")
        # one spelling per value, so equal options give equal cache keys
        object.__setattr__(self, "threshold", int(self.threshold))
        object.__setattr__(self, "margin", float(self.margin))
        if self.window is not None:
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))

    def key(self) -> str:
        """The part of the decode-cache key these options add: empty for the defaults (so caches from before
        the options existed stay valid); a value the chosen steps do not read is left out."""
        parts = ""
        if self.window is not None:
            parts += f"|window {self.window[0]!r},{self.window[1]!r}"
        if self.crop != "none":  # "object": the foreground of foreground_mask (entries before it: every pixel)
            parts += f"|crop {self.crop} {self.threshold} {self.margin!r} object"
        if self.standardize != "none":
            parts += f"|standardize {self.standardize} {self.threshold} object"
        return parts


def _foreground(array: np.ndarray, threshold: int) -> np.ndarray:
    """bool (h, w): pixels whose value (the maximum over the channels) is above `threshold`."""
    return (array.max(axis=-1) if array.ndim == 3 else array) > threshold


KEEP_SHARE = 0.25  # a part of the foreground kept beside the largest: at least this share of its area


def foreground_mask(array: np.ndarray, threshold: int) -> np.ndarray:
    """bool (h, w): the foreground of `array` (uint8 (h, w) or (h, w, c)), robust to noise in the background.
    The pixels above `threshold` (the maximum over the channels) are opened by a 3 x 3 square (which removes
    specks and thin bridges between them and the object); of the connected parts left (8-connected), the
    largest and any other at least KEEP_SHARE of its area (an object in pieces, two lungs say) mark the
    object; the foreground is every part of the thresholded pixels that touches them, so the object's own thin
    edges stay while isolated noise above the threshold goes. An object thinner than 3 pixels everywhere
    (nothing survives the opening) is its largest part of the thresholded pixels. All False when no pixel is
    above `threshold`."""
    from scipy import ndimage

    raw = _foreground(array, threshold)
    if not raw.any():
        return raw
    eight = np.ones((3, 3), dtype=bool)
    core = ndimage.binary_opening(raw, structure=eight)
    if not core.any():
        core = raw
    labels, _ = ndimage.label(core, structure=eight)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # the background
    core = (sizes >= KEEP_SHARE * sizes.max())[labels]
    parts, count = ndimage.label(raw, structure=eight)
    touched = np.zeros(count + 1, dtype=bool)
    touched[parts[core]] = True
    touched[0] = False
    return touched[parts]


def foreground_box(array: np.ndarray, threshold: int, margin: float, aspect: float = 1.0
                   ) -> tuple[int, int, int, int] | None:
    """The crop box (top, bottom, left, right; bottom and right exclusive) of `array` (uint8 (h, w) or
    (h, w, c)), as DecodeOptions describes for crop "foreground", around `foreground_mask`: `aspect` is the
    target's height / width. The box may reach outside the image (negative, or past its size) where it was
    grown to the aspect. None when no pixel is above `threshold`."""
    return _mask_box(foreground_mask(array, threshold), margin, aspect)


def _mask_box(mask: np.ndarray, margin: float, aspect: float) -> tuple[int, int, int, int] | None:
    """foreground_box of a foreground mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    height, width = mask.shape
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    grow_y, grow_x = round(margin * (bottom - top)), round(margin * (right - left))
    top, bottom = max(top - grow_y, 0), min(bottom + grow_y, height)
    left, right = max(left - grow_x, 0), min(right + grow_x, width)
    box_h, box_w = bottom - top, right - left
    if box_h < box_w * aspect:  # too wide for the target: grow the height, centred
        new_h = max(round(box_w * aspect), box_h)
        top -= (new_h - box_h) // 2
        bottom = top + new_h
    else:
        new_w = max(round(box_h / aspect), box_w)
        left -= (new_w - box_w) // 2
        right = left + new_w
    return top, bottom, left, right


def _crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """array[top:bottom, left:right] with 0 where the box leaves the image."""
    top, bottom, left, right = box
    out = np.zeros((bottom - top, right - left, *array.shape[2:]), dtype=array.dtype)
    y0, y1, x0, x1 = max(top, 0), min(bottom, array.shape[0]), max(left, 0), min(right, array.shape[1])
    out[y0 - top : y1 - top, x0 - left : x1 - left] = array[y0:y1, x0:x1]
    return out


def standardize_image(array: np.ndarray, threshold: int, within: np.ndarray | None = None) -> np.ndarray:
    """uint8 (h, w, c) standardised per image as DecodeOptions describes for standardize "image"; a new array
    of the same shape and dtype. Its foreground: the pixels above `threshold` inside `within` (bool (h, w):
    where decode_image found the object on the full-resolution picture), else `foreground_mask` of `array`
    (noise above the threshold in the background becomes background either way)."""
    mask = foreground_mask(array, threshold) if within is None else _foreground(array, threshold) & within
    out = np.zeros_like(array)
    if not mask.any():
        return out
    values = array[mask].astype(np.float64)
    std = values.std()
    z = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    out[mask] = np.clip(np.round(128.0 + 40.0 * z), 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class Mapping:
    """How one grey image of more than 8 bits became 0..255: its kind ("16-bit", "32-bit float", "DICOM", ...),
    the range mapped to 0..255 (`how`: "full range", "recipe window", "DICOM window" or "min-max per image"),
    and the lowest and highest value the image holds."""

    kind: str
    how: str
    low: float
    high: float
    min_value: float
    max_value: float


def _scale_min_max(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64)
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    return ((np.nan_to_num(array, nan=low) - low) / (high - low or 1.0) * 255.0).round().astype(np.uint8)


def _scale_window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """low..high to 0..255 linearly, values outside clipped, NaN as low."""
    array = np.nan_to_num(array.astype(np.float64), nan=low, posinf=high, neginf=low)
    return (np.clip((array - low) / (high - low), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _value_range(array: np.ndarray) -> tuple[float, float]:
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def _depth(image: Any) -> tuple[str, float, float]:
    """A grey image of more than 8 bits: its kind and the full range of its bit depth."""
    mode = image.mode
    if mode.startswith("I;16"):
        return ("16-bit signed", -32768.0, 32767.0) if mode.endswith("S") else ("16-bit", 0.0, 65535.0)
    if mode == "F":
        return "32-bit float", 0.0, 1.0  # float images hold 0.0..1.0 by convention
    tags = getattr(image, "tag_v2", None) or {}
    bits, sample_format = tags.get(258, (32,)), tags.get(339, (1,))
    bits = int(bits[0] if isinstance(bits, tuple) else bits)
    signed = int(sample_format[0] if isinstance(sample_format, tuple) else sample_format) == 2
    if image.format == "PNG" or bits <= 16:  # Pillow's "I" holds 16-bit PNGs and TIFFs too
        return ("16-bit signed", -32768.0, 32767.0) if signed else ("16-bit", 0.0, 65535.0)
    return ("32-bit signed", -(2.0**31), 2.0**31 - 1) if signed else ("32-bit", 0.0, 2.0**32 - 1)


def _map_grey(array: np.ndarray, kind: str, full: Window, window: Window | None) -> tuple[np.ndarray, Mapping]:
    low, high = window if window is not None else full
    how = "recipe window" if window is not None else "full range"
    return _scale_window(array, low, high), Mapping(kind, how, low, high, *_value_range(array))


_BOMB_WARNING_OFF = False


def _pil_pixels(handle: Any, window: Window | None = None, path: str | Path = "", head: bytes = b""
                ) -> tuple[Any, Mapping | None]:
    """A Pillow image (frame 0) as mode L or RGB, fully loaded, and how its grey values were mapped when it has
    more than 8 bits. `path` names the file in the warning about a broken EXIF block; `head` (its first bytes)
    says what a file Pillow cannot identify is."""
    from PIL import Image, UnidentifiedImageError

    global _BOMB_WARNING_OFF
    if not _BOMB_WARNING_OFF:
        # Pillow warns between MAX_IMAGE_PIXELS and twice that; _check_pixels makes the whole range an error, so
        # the warning would only add a second line (a filter, not catch_warnings, which threads would race on).
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _BOMB_WARNING_OFF = True
    try:
        image = Image.open(handle)
    except UnidentifiedImageError:
        kind = file_kind(head)
        if kind is not None and kind[1] is None:  # bytes of something that is no image at all
            raise _Bad(f"cannot identify image file: its bytes are {kind[0]} ({kind[2]}), not an image") from None
        raise _Bad("cannot identify image file: not an image, or a format Pillow does not read") from None
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise _Bad(f"{size}, above the {Image.MAX_IMAGE_PIXELS:,}-pixel limit "
                   "(PIL.Image.MAX_IMAGE_PIXELS, a decompression-bomb guard)") from None
    with image:
        _check_pixels(image.width, image.height)
        image.load()
        image = _exif_transposed(image, path)  # a new image either way
        mode = image.mode
        if mode.startswith("I") or mode == "F":
            kind, low, high = _depth(image)
            pixels, mapping = _map_grey(np.asarray(image), kind, (low, high), window)
            return Image.fromarray(pixels), mapping
        if mode == "P" and "transparency" in image.info:
            image, mode = image.convert("RGBA"), "RGBA"
        if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
            rgba = image.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(black, rgba).convert("L" if mode in {"LA", "La"} else "RGB"), None
        if mode in {"L", "RGB"}:
            return image, None
        if mode == "1":
            return image.convert("L"), None
        return image.convert("RGB"), None  # P, CMYK (Adobe-inverted CMYK handled by Pillow), YCbCr, HSV, ...


EXIF_SHOWN_MAX = 5  # files named in ImageWarnings about broken EXIF blocks per decoding, then one line for the rest
_PILLOW_EXIF = re.compile(r"corrupt exif|tag data larger than file|tag offset too large", re.I)
_ACTIVE: list[list[tuple[str, str]]] = []  # the broken EXIF blocks found under each open named_warnings
_FOUND = threading.Lock()
_CURRENT = threading.local()  # .path: the file decode_image reads in this thread


def _exif_transposed(image: Any, path: str | Path) -> Any:
    """A copy of `image` turned by its EXIF orientation; a broken EXIF block is ignored (kept for an
    ImageWarning naming `path`: `named_warnings`)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # a broken EXIF block never makes the pixels unreadable
        _broken_exif(str(path), _reason(exc, path))
        return image.copy()


def _broken_exif(path: str, reason: str) -> None:
    if _ACTIVE:
        with _FOUND:
            _ACTIVE[-1].append((path, reason))
    else:
        _issue([(path, reason)])


def _issue(found: list[tuple[str, str]], order: Sequence[str] = ()) -> None:
    """One ImageWarning per file with a broken EXIF block (the first EXIF_SHOWN_MAX, then one for the rest), in
    the `order` of the files (as found for the others)."""
    first: dict[str, str] = {}
    rank = {path: k for k, path in reversed(list(enumerate(order)))}
    for path, reason in sorted(found, key=lambda item: rank.get(item[0], len(rank))):
        first.setdefault(path, reason)
    for k, (path, reason) in enumerate(first.items()):
        if k == EXIF_SHOWN_MAX:
            warnings.warn(f"{path} and {len(first) - k - 1} more files: broken EXIF blocks ignored as well",
                          ImageWarning, stacklevel=3)
            break
        warnings.warn(f"{path}: broken EXIF block ignored ({reason.rstrip('. ')}); the pixels are read as "
                      "stored, without an EXIF orientation", ImageWarning, stacklevel=3)


@contextlib.contextmanager
def named_warnings(order: Sequence[str | Path] = ()) -> Iterator[None]:
    """Pillow warns "Corrupt EXIF data" (and the like) without naming the file. Within this context, entered in
    the main thread (around a pool of decode_image calls, as decode_images does), those warnings, raised while
    decode_image reads a file in any thread, are kept with that file and issued at exit, in this thread, as
    one ImageWarning per file naming it, in the `order` of the files given; every other warning passes
    through unchanged. Elsewhere (another
    thread) it does nothing: the warnings machinery is process-wide, and only the main thread may swap it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    found: list[tuple[str, str]] = []
    with warnings.catch_warnings():  # restores the filters and showwarning at exit
        warnings.filterwarnings("always", message=r"(?i).*(corrupt exif|tag data larger|tag offset too large)",
                                module=r"PIL\.")
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            path = getattr(_CURRENT, "path", None)
            if path is not None and _PILLOW_EXIF.search(str(message)):
                with _FOUND:
                    found.append((path, " ".join(str(message).split())))
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        _ACTIVE.append(found)
        try:
            yield
        finally:
            _ACTIVE.remove(found)
    _issue(found, [str(p) for p in order])


def _dicom_pixels(handle: Any, window: Window | None = None, head: bytes = b"") -> tuple[Any, Mapping | None]:
    """A DICOM file's first frame as a Pillow image: rescaled, windowed (the recipe's window, else the file's,
    else min-max), MONOCHROME1 inverted; and how its grey values were mapped (None for colour). `head`: the
    file's first bytes, for the message when it is not DICOM at all."""
    import pydicom
    from PIL import Image
    from pydicom.datadict import DicomDictionary
    from pydicom.pixels import apply_color_lut, pixel_array
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(handle, force=True)
    except Exception as exc:
        raise _Bad(f"not a readable DICOM file ({_reason(exc, None)})") from None
    if "PixelData" not in ds:
        if not any(tag in DicomDictionary for tag in ds.keys()) and not len(getattr(ds, "file_meta", None) or ()):
            kind = file_kind(head)
            first = kind[2] if kind else "they begin " + " ".join(f"{b:02X}" for b in head[:8])
            raise _Bad(f"not a DICOM file: no 'DICM' marker at byte 128 and no DICOM data elements ({first})")
        raise _Bad("DICOM file has no pixel data")
    try:
        _check_pixels(int(ds.Columns), int(ds.Rows))
    except AttributeError:
        raise _Bad("DICOM file has no Rows/Columns") from None
    if not ds.file_meta.get("TransferSyntaxUID"):  # a bare dataset without file meta: guess its encoding
        implicit = ds.original_encoding[0] if ds.original_encoding[0] is not None else True
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    array = pixel_array(ds, index=0)  # only the first frame of a multi-frame file
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        bits = 16 if array.dtype.itemsize > 1 else 8
        return Image.fromarray((array.astype(np.float64) / (2**bits - 1) * 255).round().astype(np.uint8)), None
    if array.ndim == 3:  # RGB (YBR already converted to RGB by pydicom)
        if array.dtype != np.uint8:
            bits = int(ds.get("BitsStored", 8 * array.dtype.itemsize))
            array = np.clip(array.astype(np.float64) / (2**bits - 1) * 255, 0, 255).round()
        return Image.fromarray(array.astype(np.uint8)), None
    values = array.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    value_range = _value_range(values)
    if window is not None:
        pixels = _scale_window(values, *window)
        mapping = Mapping("DICOM", "recipe window", *window, *value_range)
    elif center is not None and width is not None and width > 0:
        low = center - width / 2
        pixels = (np.clip((values - low) / width, 0.0, 1.0) * 255).round().astype(np.uint8)
        mapping = Mapping("DICOM", "DICOM window", low, low + width, *value_range)
    else:
        pixels = _scale_min_max(values)
        mapping = Mapping("DICOM", "min-max per image", *value_range, *value_range)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    return Image.fromarray(pixels), mapping


def _first(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _picture(handle: Any, path: str | Path, head: bytes, options: DecodeOptions) -> tuple[Any, Mapping | None]:
    """The open file as a Pillow image (L or RGB) at full resolution, grey values mapped to 0..255: DICOM by its
    preamble or its name (unless its first bytes show another format), anything else through Pillow."""
    if head[128:132] != b"DICM" and Path(path).suffix.lower() in DICOM_EXTENSIONS:
        other = _not_what_named(path, head)
        if other is not None:
            raise _Bad(other)
    if Path(path).suffix.lower() in DICOM_EXTENSIONS or head[128:132] == b"DICM":
        return _dicom_pixels(handle, options.window, head)
    return _pil_pixels(handle, options.window, path, head)


def decode_image(path: str | Path, size: tuple[int, int], channels: int, options: DecodeOptions | None = None,
                 on_mapping: Callable[[Mapping], None] | None = None) -> np.ndarray:
    """One file as uint8 (h, w, channels), read-only; raises UnreadableImage naming the path and the reason.
    See the module docstring for how each format becomes pixels and DecodeOptions for `options`
    (``recipe.data.decode_options()``; None: the defaults, no crop, no standardisation); resized
    with an area filter when shrinking, bilinear when growing. For a grey image of more than 8 bits,
    `on_mapping` is called with how its values were mapped to 0..255."""
    if not _ACTIVE and threading.current_thread() is threading.main_thread():
        with named_warnings():  # a call of its own: Pillow's EXIF warnings name this file
            return decode_image(path, size, channels, options, on_mapping)
    previous, _CURRENT.path = getattr(_CURRENT, "path", None), str(path)
    try:
        return _decode_image(path, size, channels, options, on_mapping)
    finally:
        _CURRENT.path = previous


def _open_picture(path: str | Path, options: DecodeOptions) -> tuple[Any, Any]:
    """(picture, intensity mapping) of one file (`_picture` on its first bytes); _Bad for an empty file."""
    with open(path, "rb") as handle:
        head = handle.read(132)
        if not head:
            raise _Bad("empty file")
        handle.seek(0)
        return _picture(handle, path, head, options)


def _decode_image(path: str | Path, size: tuple[int, int], channels: int, options: DecodeOptions | None,
                  on_mapping: Callable[[Mapping], None] | None) -> np.ndarray:
    from PIL import Image

    options = options if options is not None else DecodeOptions()
    try:
        image, mapping = _open_picture(path, options)
        # the object, found once on the picture as decoded (full resolution, before the channels): the crop's
        # box and the standardisation's foreground
        mask = (foreground_mask(np.asarray(image), options.threshold)
                if options.crop == "foreground" or options.standardize == "image" else None)
        box = _mask_box(mask, options.margin, size[0] / size[1]) if options.crop == "foreground" else None
        image = image.convert("L" if channels == 1 else "RGB")
        if box is not None:
            image = Image.fromarray(_crop(np.asarray(image), box))
            mask = _crop(mask, box)
        shrink = image.width >= size[1]
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        image = image.resize((size[1], size[0]), resample)
        array = np.asarray(image, dtype=np.uint8).reshape(size[0], size[1], channels)
        if options.standardize == "image":  # a resized pixel with any of the object in it is the object's
            within = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), resample)) > 0
            array = standardize_image(array, options.threshold, within)
            array.flags.writeable = False
    except _Bad as exc:
        raise UnreadableImage(path, str(exc)) from None
    except OSError as exc:
        if exc.filename is not None and exc.strerror:  # the file itself: missing, permission denied, ...
            raise UnreadableImage(path, exc.strerror.lower()) from None
        raise UnreadableImage(path, _reason(exc, path)) from None
    except MemoryError:
        raise UnreadableImage(path, "out of memory while decoding") from None
    except Exception as exc:  # any other failure inside a decoder is a property of this file
        raise UnreadableImage(path, _reason(exc, path)) from None
    if mapping is not None and on_mapping is not None:
        on_mapping(mapping)
    return array


def foreground_outline(path: str | Path, size: tuple[int, int], options: DecodeOptions
                       ) -> tuple[np.ndarray, tuple[float, float, float, float] | None]:
    """Where data.crop and data.standardize find the foreground of one file, to draw over the image decoded
    without them (augment-preview): `foreground_mask` of the full-resolution picture resized to `size`
    (bool (h, w)), and the crop box of data.crop foreground (top, bottom, left, right) in the coordinates of
    that size, or None when the recipe does not crop or no pixel is above the threshold. Raises
    UnreadableImage as decode_image does."""
    from PIL import Image

    try:
        image, _ = _open_picture(path, options)
        array = np.asarray(image)
    except _Bad as exc:
        raise UnreadableImage(path, str(exc)) from None
    except Exception as exc:
        raise UnreadableImage(path, _reason(exc, path)) from None
    height, width = array.shape[:2]
    mask = foreground_mask(array, options.threshold)
    shown = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.BOX)
    box = _mask_box(mask, options.margin, size[0] / size[1]) if options.crop == "foreground" else None
    if box is not None:
        sy, sx = size[0] / height, size[1] / width
        box = (box[0] * sy, box[1] * sy, box[2] * sx, box[3] * sx)
    return np.asarray(shown) >= 128, box
