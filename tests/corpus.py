"""A corpus of image files in every format the tool reads (and some it must reject), written by tests: each
writer takes a path, writes one file there and returns the path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

S = 16  # decoded size (S x S) unless a case says otherwise


def save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def ramp16(path: Path) -> Path:
    values = np.tile(np.linspace(1000, 5000, S, dtype=np.uint16), (S, 1))  # 12-bit-ish data in a 16-bit PNG
    return save(Image.fromarray(values), path)


def rgba(path: Path) -> Path:
    pixels = np.zeros((S, S, 4), np.uint8)
    pixels[:, :4] = (255, 0, 0, 0)  # fully transparent red -> black
    pixels[:, 4:8] = (0, 255, 0, 255)  # opaque green stays green
    pixels[:, 8:] = (255, 255, 255, 128)  # half-transparent white -> mid grey
    return save(Image.fromarray(pixels), path)


def gray_alpha(path: Path) -> Path:
    pixels = np.zeros((S, S, 2), np.uint8)
    pixels[..., 0], pixels[:, :8, 1], pixels[:, 8:, 1] = 200, 0, 255
    return save(Image.fromarray(pixels), path)


def palette(path: Path, transparent: bool = False) -> Path:
    image = Image.new("P", (S, S))
    image.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30] + [0] * (256 - 3) * 3)
    pixels = np.zeros((S, S), np.uint8)
    pixels[:, 8:] = 1
    pixels[:4] = 2
    image.putdata(pixels.ravel().tolist())
    return save(image, path, **({"transparency": 1} if transparent else {}))


def cmyk_jpeg(path: Path) -> Path:
    return save(Image.new("CMYK", (S, S), (0, 255, 255, 0)), path, quality=100)  # pure red in CMYK


def jpeg(path: Path) -> Path:
    return save(Image.new("RGB", (S, S), (30, 120, 220)), path, quality=100)


def corrupt_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))).save(buffer, "JPEG")
    raw = bytearray(buffer.getvalue())
    table = raw.find(b"\xff\xc4")  # zero the Huffman tables: the entropy-coded data cannot be decoded
    raw[table + 4:table + 40] = bytes(36)
    path.write_bytes(bytes(raw))
    return path


def truncated_png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text_as_jpeg(path: Path) -> Path:
    path.write_text("id,label\nthis is a CSV file, not a JPEG\n")
    return path


def text_as_dicom(path: Path) -> Path:
    path.write_text("not a DICOM file either\n")
    return path


def bmp(path: Path) -> Path:
    return save(Image.new("RGB", (S, S), (10, 20, 30)), path)


def tiff16(path: Path) -> Path:
    values = np.tile(np.linspace(0, 65535, S).astype(np.uint16), (S, 1))
    return save(Image.fromarray(values), path)


def tiff_float(path: Path) -> Path:
    return save(Image.fromarray(np.tile(np.linspace(-1.0, 1.0, S, dtype=np.float32), (S, 1))), path)


def multipage_tiff(path: Path) -> Path:
    first, second = Image.new("L", (S, S), 40), Image.new("L", (S, S), 220)
    return save(first, path, save_all=True, append_images=[second])


def one_pixel(path: Path) -> Path:
    return save(Image.new("L", (1, 1), 77), path)


def exif_rotated(path: Path) -> Path:
    pixels = np.zeros((S, 2 * S), np.uint8)  # 16 high, 32 wide, left half bright
    pixels[:, :S] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return save(image, path, exif=exif)


def large_gray(path: Path) -> Path:
    pixels = np.zeros((6000, 6000), np.uint8)  # 36 Mpx: under Pillow's default 89.5 Mpx limit
    pixels[:, 3000:] = 255
    return save(Image.fromarray(pixels), path, compress_level=1)


def spaces_and_unicode(path: Path) -> Path:
    return save(Image.new("L", (S, S), 99), path)


def dicom(path: Path, raw: np.ndarray, *, photometric: str = "MONOCHROME2", preamble: bool = True,
          **tags: object) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    frames = raw.shape[0] if raw.ndim == 3 and photometric != "RGB" else 1
    rows, cols = raw.shape[-3:-1] if photometric == "RGB" else raw.shape[-2:]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = raw.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(raw).tobytes()
    ds.save_as(path, enforce_file_format=preamble)
    return path


def ct_windowed(path: Path) -> Path:
    # stored values 0..1023; HU = 2 * stored - 1024; window centre 0 HU, width 400 HU -> -200..200 HU
    raw = np.tile(np.linspace(0, 1023, S).astype(np.uint16), (S, 1))
    raw[0, :4] = (412, 512, 612, 300)  # -200 HU, 0 HU, 200 HU, -424 HU
    return dicom(path, raw, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=400)


def ct_multi_window(path: Path) -> Path:
    # first window 0..200 HU puts 100 HU mid-grey; the second (0..80 HU) would make it white
    raw = np.full((S, S), 512, np.uint16)  # 0 HU
    raw[0, 0] = 562  # 100 HU
    return dicom(path, raw, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=[100, 40], WindowWidth=[200, 80])


def mono1(path: Path) -> Path:
    raw = np.tile(np.linspace(0, 4000, S).astype(np.uint16), (S, 1))  # no window: min-max, then inverted
    return dicom(path, raw, photometric="MONOCHROME1")


def dicom_frames(path: Path) -> Path:
    raw = np.stack([np.full((S, S), 100, np.uint16), np.full((S, S), 900, np.uint16)])
    raw[0, :, :8] = 300  # frame 0: left half 300, right half 100 -> min-max gives 255 | 0
    return dicom(path, raw)


def dicom_rgb(path: Path) -> Path:
    raw = np.zeros((S, S, 3), np.uint8)
    raw[...] = (200, 50, 25)
    return dicom(path, raw, photometric="RGB")


def dicom_no_extension(path: Path) -> Path:
    raw = np.tile(np.linspace(0, 255, S).astype(np.uint8), (S, 1))
    return dicom(path, raw)


def dicom_bare(path: Path) -> Path:
    """No preamble and no file meta (older files): read by its .dcm extension, encoding guessed."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = S, S, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.tile(np.arange(S, dtype=np.uint16) * 100, (S, 1)).tobytes()
    ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


# ---------------------------------------------------------------- checks on the decoded pixels
