"""Image formats: every file the tests write here is read to the expected pixels or rejected with its path and
reason. The corpus is generated (no committed binaries); `CASES` is the table of case -> expected outcome."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.data import cache
from competition.data import UnreadableImage, decode_image, decode_images, load_images
from competition.errors import CompetitionError

from corpus import (save, ramp16, rgba, gray_alpha, palette, cmyk_jpeg, jpeg, corrupt_jpeg, truncated_png,
                    zero_bytes, text_as_jpeg, text_as_dicom, bmp, tiff16, tiff_float, multipage_tiff,
                    one_pixel, exif_rotated, large_gray, spaces_and_unicode, dicom, ct_windowed,
                    ct_multi_window, mono1, dicom_frames, dicom_rgb, dicom_no_extension, dicom_bare, S)



def _close(a: object, b: object, tol: float = 3) -> bool:
    return bool(np.all(np.abs(np.asarray(a, np.int32) - np.asarray(b, np.int32)) <= tol))


def check_ramp16(x: np.ndarray) -> bool:
    # the full 16-bit range, the same for every image (value / 65535 * 255): 1000 -> 4, 5000 -> 19, linear
    # between; never stretched to the image's own minimum and maximum
    row = x[0, :, 0].astype(int)
    return row[0] == 4 and row[-1] == 19 and _close(row, np.linspace(1000, 5000, S) / 65535 * 255, 1)


def check_float_tiff(x: np.ndarray) -> bool:
    # 32-bit float: 0.0..1.0 -> 0..255, the same for every image; the negative half clipped to 0
    row = x[0, :, 0].astype(int)
    expected = np.clip(np.linspace(-1, 1, S), 0, 1) * 255
    return bool(np.all(row[:S // 2] == 0)) and row[-1] == 255 and _close(row, expected, 1)


def check_rgba(x: np.ndarray) -> bool:
    return _close(x[0, 1], (0, 0, 0), 0) and _close(x[0, 5], (0, 255, 0), 0) and _close(x[0, 12], (128, 128, 128), 1)


def check_gray_alpha(x: np.ndarray) -> bool:
    return x[5, 2, 0] == 0 and x[5, 12, 0] == 200


def check_palette(x: np.ndarray) -> bool:
    return _close(x[8, 2], (255, 0, 0), 0) and _close(x[8, 12], (0, 0, 255), 0) and _close(x[1, 1], (10, 200, 30), 0)


def check_palette_transparent(x: np.ndarray) -> bool:
    return _close(x[8, 2], (255, 0, 0), 0) and _close(x[8, 12], (0, 0, 0), 0)


def check_windowed(x: np.ndarray) -> bool:
    first = x[0, :4, 0].astype(int).tolist()  # -200 HU -> 0, 0 HU -> mid, 200 HU -> 255, below window -> 0
    return first[0] == 0 and abs(first[1] - 128) <= 1 and first[2] == 255 and first[3] == 0


def check_mono1(x: np.ndarray) -> bool:
    row = x[0, :, 0].astype(int)  # lowest stored value is brightest
    return row[0] == 255 and row[-1] == 0 and bool(np.all(np.diff(row) <= 0))


def check_exif(x: np.ndarray) -> bool:
    # 16x32 landscape rotated to 32x16 portrait (decoded at 32 high, 16 wide): bright half is now the top
    return x.shape == (2 * S, S, 1) and x[: S - 1].min() == 255 and x[S + 1:].max() == 0


def check_large(x: np.ndarray) -> bool:
    return x[:, : S // 2].max() == 0 and x[:, S // 2:].min() == 255


Check = Callable[[np.ndarray], bool]
# name -> (writer, file name, decode (size, channels), expected: a check on the pixels, or the reason's words)
CASES: dict[str, tuple[Callable[[Path], Path], str, tuple[tuple[int, int], int], Check | str]] = {
    "RGB JPEG": (jpeg, "photo.jpg", ((S, S), 3), lambda x: _close(x[8, 8], (30, 120, 220), 4)),
    "RGB JPEG as 1 channel (luma)": (jpeg, "photo.jpg", ((S, S), 1), lambda x: _close(x[8, 8, 0], 102, 3)),
    "CMYK JPEG": (cmyk_jpeg, "cmyk.jpg", ((S, S), 3), lambda x: _close(x[8, 8], (255, 0, 0), 3)),
    "corrupt JPEG": (corrupt_jpeg, "corrupt.jpg", ((S, S), 1), "broken data stream"),
    "truncated PNG": (truncated_png, "truncated.png", ((S, S), 1), "truncated"),
    "zero-byte file": (zero_bytes, "empty.png", ((S, S), 1), "empty file"),
    "text file named .jpg": (text_as_jpeg, "notes.jpg", ((S, S), 1), "cannot identify image file"),
    "text file named .dcm": (text_as_dicom, "notes.dcm", ((S, S), 1), "not DICOM: its bytes are text"),
    "RGBA PNG (on black)": (rgba, "rgba.png", ((S, S), 3), check_rgba),
    "grey+alpha PNG (on black)": (gray_alpha, "la.png", ((S, S), 1), check_gray_alpha),
    "16-bit PNG (full 16-bit range)": (ramp16, "ramp16.png", ((S, S), 1), check_ramp16),
    "palette PNG": (palette, "palette.png", ((S, S), 3), check_palette),
    "palette PNG, transparent index": (lambda p: palette(p, True), "palette_t.png", ((S, S), 3),
                                       check_palette_transparent),
    "BMP": (bmp, "plain.bmp", ((S, S), 3), lambda x: _close(x[3, 3], (10, 20, 30), 0)),
    "16-bit TIFF (full 16-bit range)": (tiff16, "ramp16.tif", ((S, S), 1),
                                        lambda x: x[0, 0, 0] == 0 and x[0, -1, 0] == 255),
    "float TIFF (0.0..1.0)": (tiff_float, "float.tiff", ((S, S), 1), check_float_tiff),
    "multi-page TIFF (first page)": (multipage_tiff, "pages.tif", ((S, S), 1), lambda x: bool(np.all(x == 40))),
    "1x1 image": (one_pixel, "dot.png", ((S, S), 3), lambda x: bool(np.all(x == 77))),
    "EXIF orientation 6": (exif_rotated, "rotated.png", ((2 * S, S), 1), check_exif),
    "6000x6000 greyscale PNG": (large_gray, "large.png", ((S, S), 1), check_large),
    "name with spaces and non-ASCII": (spaces_and_unicode, "Röntgen Bild ü 1.png", ((S, S), 1),
                                       lambda x: bool(np.all(x == 99))),
    "DICOM MONOCHROME2, rescale + window": (ct_windowed, "ct.dcm", ((S, S), 1), check_windowed),
    "DICOM multi-valued window (first)": (ct_multi_window, "ct2.dicom", ((S, S), 1),
                                          lambda x: abs(int(x[0, 0, 0]) - 128) <= 1 and x[5, 5, 0] == 0),  # 2nd: 255
    "DICOM MONOCHROME1 (inverted)": (mono1, "mono1.dcm", ((S, S), 1), check_mono1),
    "DICOM multi-frame (first frame)": (dicom_frames, "frames.dcm", ((S, S), 1),
                                        lambda x: x[0, 0, 0] == 255 and x[0, -1, 0] == 0),
    "DICOM RGB": (dicom_rgb, "colour.dcm", ((S, S), 3), lambda x: _close(x[4, 4], (200, 50, 25), 0)),
    "DICOM RGB as 1 channel": (dicom_rgb, "colour.dcm", ((S, S), 1),
                               lambda x: _close(x[4, 4, 0], round(0.299 * 200 + 0.587 * 50 + 0.114 * 25), 1)),
    "DICOM without preamble or file meta (.dcm)": (dicom_bare, "old.dcm", ((S, S), 1),
                                                   lambda x: x[0, 0, 0] == 0 and x[0, -1, 0] == 255),
    "DICOM without extension (DICM preamble)": (dicom_no_extension, "IM000001", ((S, S), 3),
                                                lambda x: x[0, 0, 0] == 0 and x[0, -1, 0] == 255 and x.shape[-1] == 3),
}


def run_case(name: str, folder: Path) -> tuple[bool, str]:
    """(as expected, outcome in words) for one case."""
    writer, file_name, (size, channels), expected = CASES[name]
    path = writer(folder / file_name)
    try:
        x = decode_image(path, size, channels)
    except UnreadableImage as exc:
        named = str(path) in str(exc)
        ok = isinstance(expected, str) and expected in exc.reason and named
        return ok, f"rejected: {exc.reason}"
    if isinstance(expected, str):
        return False, f"read, but expected rejection ({expected})"
    assert x.dtype == np.uint8 and x.shape == (*size, channels)
    return bool(expected(x)), f"read {x.shape[0]}x{x.shape[1]}x{x.shape[2]}, pixels checked"


@pytest.mark.parametrize("name", list(CASES))
def test_format(name: str, tmp_path: Path) -> None:
    ok, outcome = run_case(name, tmp_path)
    assert ok, f"{name}: {outcome}"


def test_decompression_bomb_guard_names_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    for side in (1500, 2000):  # over the limit (Pillow would warn), and over twice the limit (Pillow raises)
        path = save(Image.new("L", (side, side)), tmp_path / f"bomb{side}.png")
        with pytest.raises(UnreadableImage, match="above the 1,000,000-pixel limit") as caught:
            decode_image(path, (S, S), 1)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    big = dicom(tmp_path / "big.dcm", np.zeros((1100, 1000), np.uint8))
    with pytest.raises(UnreadableImage, match="1000x1100 = 1,100,000 pixels"):
        decode_image(big, (S, S), 1)


def test_unreadable_files_are_listed_together_on_one_line(tmp_path: Path) -> None:
    good = [jpeg(tmp_path / "good.jpg"), bmp(tmp_path / "good.bmp")]
    bad = [zero_bytes(tmp_path / f"empty{i}.png") for i in range(6)] + [text_as_jpeg(tmp_path / "text.jpg")]
    with pytest.raises(CompetitionError) as caught:
        load_images([good[0], *bad, good[1]], (S, S), 1)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("7 unreadable images: ")
    assert f"{bad[0]} (empty file)" in message and message.endswith("; and 2 more")


def test_bad_files_are_cached_with_the_good_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [jpeg(tmp_path / "a.jpg"), zero_bytes(tmp_path / "b.png"), bmp(tmp_path / "c.bmp")]
    images, bad = decode_images(paths, (S, S), 3)
    assert images.shape == (2, S, S, 3) and bad == [(str(paths[1]), "empty file")]

    def no_decoding(*args: object, **options: object) -> np.ndarray:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cache, "decode_image", no_decoding)
    again, bad_again = decode_images(paths, (S, S), 3)
    np.testing.assert_array_equal(again, images)
    assert bad_again == bad


if __name__ == "__main__":  # the case table: python tests/test_formats.py
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        rows = [(name, *run_case(name, Path(folder))) for name in CASES]
    width = max(len(name) for name, *_ in rows)
    for name, ok, outcome in rows:
        print(f"{name:<{width}}  {'as expected' if ok else 'UNEXPECTED'}  {outcome}")
    print(f"{len(rows)} cases, {sum(ok for _, ok, _ in rows)} as expected")
