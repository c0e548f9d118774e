"""Decoding one image file into uint8 pixels of the recipe's size and channels.

Formats and how each becomes pixels (then converted to the recipe's channels, 1: ITU-R 601 luma, 3: grey
replicated):

- JPEG (CMYK JPEGs converted to RGB), PNG, BMP, TIFF, GIF, WebP through Pillow; multi-frame files
  (GIF, TIFF) give their first frame. EXIF orientation is applied; a broken EXIF block is ignored.
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
- Size limit: an image with more pixels than Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by
  default, about 9459 x 9459) is rejected as a possible decompression bomb, DICOM included. Raise that
  setting to allow larger images.

Then, in this order (`DecodeOptions`, from the recipe by ``recipe.data.decode_options()``): the intensity
mapping above; the foreground crop (``data.crop: foreground``) on the full-resolution 0..255 image; the
conversion to the recipe's channels and the resize to its size; the per-image standardisation
(``data.standardize: image``) of the resized pixels. Train, test and new images go through the same steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from competition.errors import CompetitionError

DICOM_EXTENSIONS = {".dcm", ".dicom"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"} | DICOM_EXTENSIONS




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
      is left uncropped.
    - `standardize`: data.standardize. "image" standardises each image after the crop and the resize: the
      mean and standard deviation of its foreground pixels (the maximum over the channels above
      `threshold`; every channel of such a pixel counts) give each foreground value
      clip(round(128 + 40 * z), 0, 255), z = (value - mean) / std; background pixels (<= threshold) become 0;
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
        if self.crop != "none":
            parts += f"|crop {self.crop} {self.threshold} {self.margin!r}"
        if self.standardize != "none":
            parts += f"|standardize {self.standardize} {self.threshold}"
        return parts


def _foreground(array: np.ndarray, threshold: int) -> np.ndarray:
    """bool (h, w): pixels whose value (the maximum over the channels) is above `threshold`."""
    return (array.max(axis=-1) if array.ndim == 3 else array) > threshold


def foreground_box(array: np.ndarray, threshold: int, margin: float, aspect: float = 1.0
                   ) -> tuple[int, int, int, int] | None:
    """The crop box (top, bottom, left, right; bottom and right exclusive) of `array` (uint8 (h, w) or
    (h, w, c)), as DecodeOptions describes for crop "foreground": `aspect` is the target's height / width.
    The box may reach outside the image (negative, or past its size) where it was grown to the aspect.
    None when no pixel is above `threshold`."""
    mask = _foreground(array, threshold)
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


def standardize_image(array: np.ndarray, threshold: int) -> np.ndarray:
    """uint8 (h, w, c) standardised per image as DecodeOptions describes for standardize "image"; a new
    array of the same shape and dtype."""
    mask = _foreground(array, threshold)
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


def _pil_pixels(handle: Any, window: Window | None = None) -> tuple[Any, Mapping | None]:
    """A Pillow image (frame 0) as mode L or RGB, fully loaded, and how its grey values were mapped when it has
    more than 8 bits."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    global _BOMB_WARNING_OFF
    if not _BOMB_WARNING_OFF:
        # Pillow warns between MAX_IMAGE_PIXELS and twice that; _check_pixels makes the whole range an error, so
        # the warning would only add a second line (a filter, not catch_warnings, which threads would race on).
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _BOMB_WARNING_OFF = True
    try:
        image = Image.open(handle)
    except UnidentifiedImageError:
        raise _Bad("cannot identify image file: not an image, or a format Pillow does not read") from None
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise _Bad(f"{size}, above the {Image.MAX_IMAGE_PIXELS:,}-pixel limit "
                   "(PIL.Image.MAX_IMAGE_PIXELS, a decompression-bomb guard)") from None
    with image:
        _check_pixels(image.width, image.height)
        image.load()
        try:
            image = ImageOps.exif_transpose(image)  # a new image either way
        except Exception:  # a broken EXIF block never makes the pixels unreadable
            image = image.copy()
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


def _dicom_pixels(handle: Any, window: Window | None = None) -> tuple[Any, Mapping | None]:
    """A DICOM file's first frame as a Pillow image: rescaled, windowed (the recipe's window, else the file's,
    else min-max), MONOCHROME1 inverted; and how its grey values were mapped (None for colour)."""
    import pydicom
    from PIL import Image
    from pydicom.pixels import apply_color_lut, pixel_array
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(handle, force=True)
    except Exception as exc:
        raise _Bad(f"not a readable DICOM file ({_reason(exc, None)})") from None
    if "PixelData" not in ds:
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


def decode_image(path: str | Path, size: tuple[int, int], channels: int, options: DecodeOptions | None = None,
                 on_mapping: Callable[[Mapping], None] | None = None) -> np.ndarray:
    """One file as uint8 (h, w, channels), read-only; raises UnreadableImage naming the path and the reason.
    See the module docstring for how each format becomes pixels and DecodeOptions for `options`
    (``recipe.data.decode_options()``; None: the defaults, no crop, no standardisation); resized
    with an area filter when shrinking, bilinear when growing. For a grey image of more than 8 bits,
    `on_mapping` is called with how its values were mapped to 0..255."""
    from PIL import Image

    options = options if options is not None else DecodeOptions()
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
            if not head:
                raise _Bad("empty file")
            handle.seek(0)
            if Path(path).suffix.lower() in DICOM_EXTENSIONS or head[128:132] == b"DICM":
                image, mapping = _dicom_pixels(handle, options.window)
            else:
                image, mapping = _pil_pixels(handle, options.window)
        box = (foreground_box(np.asarray(image), options.threshold, options.margin, size[0] / size[1])
               if options.crop == "foreground" else None)  # on the picture as decoded, before the channels
        image = image.convert("L" if channels == 1 else "RGB")
        if box is not None:
            image = Image.fromarray(_crop(np.asarray(image), box))
        shrink = image.width >= size[1]
        image = image.resize((size[1], size[0]), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8).reshape(size[0], size[1], channels)
        if options.standardize == "image":
            array = standardize_image(array, options.threshold)
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

