"""Any upload -> the 8-bit RGB PIL image the captioning processors expect.

`load_image` accepts a path, raw bytes or a PIL image. Ordinary formats (PNG, JPEG, WebP, BMP,
TIFF, GIF, ...) go through Pillow; DICOM (found by its 'DICM' marker at byte 128, or a `.dcm` or
`.dicom` name) goes through pydicom. Whatever comes in, the result is an RGB image of the first frame,
upright, with no metadata attached; anything that cannot become that raises `ImageError`, whose
message is meant for the user.

Grey levels that do not fit in 8 bits (16-bit and 32-bit greyscale, DICOM after its LUTs) are
stretched from the image's actual minimum to its maximum onto 0..255. Stretching by the bit
depth instead would turn a 12-bit X-ray stored in 16 bits nearly black.

An alpha channel (and a palette's transparent colour) is dropped: the grey levels the file stores
are what the models see. A radiograph with alpha is almost always an export artefact (a uniform
alpha, or a transparent border); compositing it on black would darken the image (alpha 128 halves
every grey level) and on white lighten it, both changing the pixel values the modality wrote.
Radiology viewers do the same: cornerstone (OHIF's renderer) skips the alpha of colour pixel data,
and Pillow's own `convert("RGB")` discards the band. Premultiplied alpha (Pillow's RGBa, La) is
undone first, since there the stored value is already grey x alpha.
"""

import io
import logging
import os
import re
import struct
import threading
import warnings
from contextlib import contextmanager

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 60_000_000  # per frame; checked from the header, before anything is decoded

# What Pillow raises for broken or truncated data (truncation included, because
# ImageFile.LOAD_TRUNCATED_IMAGES stays False: a half-decoded X-ray must not pass as whole).
_PIL_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, struct.error)
# What pydicom (and numpy, given the values of a corrupt header) raise for a broken DICOM file.
_DICOM_ERRORS = (InvalidDicomError, BytesLengthException, OSError, EOFError, ValueError, TypeError,
                 AttributeError, KeyError, IndexError, NotImplementedError, RuntimeError,
                 OverflowError, struct.error)

# The only DICOM elements ever read: those that describe the pixels. Patient, study and
# institution fields are skipped by the reader: never parsed, so never in messages or logs.
_DICOM_PIXEL_TAGS = [
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData",
]
_DICOM_REQUIRED = ["Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                   "BitsAllocated", "BitsStored", "PixelRepresentation"]
# pydicom's pixel_array already converts YBR colour to RGB.
_DICOM_COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"}
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}  # Pillow's modes with associated alpha -> straight alpha


class ImageError(ValueError):
    """An upload that cannot become an image; the message is shown to the user as is."""


def load_image(source: "str | os.PathLike | bytes | Image.Image") -> Image.Image:
    """Return `source` as an 8-bit RGB image (first frame, EXIF orientation applied).

    Raises ImageError for a missing, empty, oversized, truncated or unreadable upload.
    """
    if isinstance(source, Image.Image):
        with _pillow_errors():
            return _to_rgb(source)
    if isinstance(source, bytes):
        _check_file_size(len(source))
        data, name = source, ""
    elif isinstance(source, (str, os.PathLike)):
        data, name = _read_file(source), os.fspath(source)
    else:
        raise TypeError(f"load_image takes a path, bytes or a PIL image, not {type(source).__name__}")
    if _is_dicom(data, name):
        return _dicom_to_rgb(data, has_preamble=data[128:132] == b"DICM")
    with _pillow_errors(), Image.open(io.BytesIO(data)) as image:  # opens on the first frame
        return _to_rgb(image)


@contextmanager
def _pillow_errors():
    """Turn what Pillow raises for an unreadable image into an ImageError."""
    try:
        yield
    except ImageError:  # ours, already clear (and a ValueError, caught below otherwise)
        raise
    except UnidentifiedImageError:
        raise ImageError("This file is not an image in a format we can read "
                         "(PNG, JPEG, WebP, BMP, TIFF, GIF or DICOM).") from None
    except Image.DecompressionBombError:  # Pillow's own guard, on the header, before ours
        raise ImageError(f"The image has more than {MAX_PIXELS / 1e6:.0f} megapixels, the limit.") from None
    except _PIL_ERRORS as err:
        raise ImageError("The image file is truncated or corrupt and cannot be decoded.") from err


def _read_file(path: "str | os.PathLike") -> bytes:
    # The size is checked before reading so that a huge file is never pulled into memory.
    try:
        _check_file_size(os.stat(path).st_size)
        with open(path, "rb") as file:
            return file.read()
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError(f"No such file: {os.fspath(path)}") from None
    except IsADirectoryError:
        raise ImageError(f"This is a folder, not an image file: {os.fspath(path)}") from None
    except PermissionError:
        raise ImageError(f"No permission to read: {os.fspath(path)}") from None


def _check_file_size(size: int) -> None:
    if size == 0:
        raise ImageError("The file is empty (0 bytes).")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"The file is {size / 1e6:.1f} MB; the limit is "
                         f"{MAX_FILE_BYTES / 1e6:.1f} MB.")


DICOM_SUFFIXES = (".dcm", ".dicom")


def _is_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def _check_pixel_count(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(f"The image is {width}×{height} ({width * height / 1e6:.0f} megapixels); "
                         f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels.")


def _to_rgb(image: Image.Image) -> Image.Image:
    _check_pixel_count(*image.size)
    image.load()
    rgb = _pil_mode_to_rgb(ImageOps.exif_transpose(image))
    rgb.info = {}  # pixels only: no EXIF, ICC profile or comments travel on
    return rgb


def _pil_mode_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return _grey_to_rgb(np.asarray(image))
    if image.mode in _PREMULTIPLIED:  # stored value = grey x alpha: undo that before dropping alpha
        image = image.convert(_PREMULTIPLIED[image.mode])
    return image.convert("RGB")  # RGB, L, 1, P, CMYK, YCbCr; alpha and palette transparency dropped


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map the array's actual min..max onto 0..255 (a constant array becomes 0)."""
    values = values.astype(np.float64)
    low, high = values.min(), values.max()
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint((values - low) * scale).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    if grey.dtype != np.uint8:
        grey = _stretch_to_uint8(grey)
    return Image.fromarray(grey, "L").convert("RGB")


_PYDICOM_QUIET = threading.Lock()


@contextmanager
def _pydicom_silenced():
    """Hold back pydicom's warnings and log records while it reads a file.

    They quote header values, and in a corrupt file such a value can run on over the patient
    fields. Warning filters are process-wide, hence the lock between the app's threads.
    """
    logger = logging.getLogger("pydicom")
    with _PYDICOM_QUIET, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        was_disabled, logger.disabled = logger.disabled, True
        try:
            yield
        finally:
            logger.disabled = was_disabled


def _dicom_to_rgb(data: bytes, has_preamble: bool) -> Image.Image:
    try:
        with _pydicom_silenced():
            return _decode_dicom(data, has_preamble)
    except ImageError:  # ours, already clear (and a ValueError, caught below otherwise)
        raise
    except _DICOM_ERRORS:
        pass  # pydicom's message may quote header bytes, patient fields included: not kept
    raise ImageError("This DICOM file is truncated or corrupt and cannot be decoded.")


def _decode_dicom(data: bytes, has_preamble: bool) -> Image.Image:
    # force=True only for a `.dcm`/`.dicom` without the preamble (older files); with it, pydicom
    # reads anything, so the checks below decide whether there is an image.
    ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble, specific_tags=_DICOM_PIXEL_TAGS)
    if "PixelData" not in ds:
        raise ImageError("This file is not a DICOM image (it has no Pixel Data).")
    missing = [keyword for keyword in _DICOM_REQUIRED if keyword not in ds]
    if missing:
        raise ImageError(f"This DICOM file lacks elements needed to read its image: {', '.join(missing)}.")
    _check_pixel_count(ds.Columns, ds.Rows)
    _check_dicom_decoder(_dicom_transfer_syntax(ds))
    photometric = str(ds.PhotometricInterpretation)
    if photometric not in _DICOM_COLOUR | {"MONOCHROME1", "MONOCHROME2"}:
        # Named only when it is a well-formed code string, never a run-on of other fields.
        shown = photometric if re.fullmatch(r"[A-Z0-9_ ]{1,16}", photometric) else "(invalid)"
        raise ImageError(f"DICOM images with photometric interpretation {shown} are not supported.")
    pixels = pixel_array(ds, index=0)  # decodes the first frame only
    if photometric in _DICOM_COLOUR:
        colour = pixels if pixels.dtype == np.uint8 else _stretch_to_uint8(pixels)
        return Image.fromarray(colour, "RGB")
    grey = _stretch_to_uint8(apply_voi_lut(apply_modality_lut(pixels, ds), ds))
    if photometric == "MONOCHROME1":  # MONOCHROME1 stores low values as white
        grey = 255 - grey
    return _grey_to_rgb(grey)


def _dicom_transfer_syntax(ds: pydicom.FileDataset) -> pydicom.uid.UID:
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare dataset (no file meta) is uncompressed; record the encoding pydicom found so
        # that the pixel decoder knows it.
        implicit, little_endian = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian if implicit
            else pydicom.uid.ExplicitVRLittleEndian if little_endian
            else pydicom.uid.ExplicitVRBigEndian)
    return ds.file_meta.TransferSyntaxUID


def _check_dicom_decoder(syntax: pydicom.uid.UID) -> None:
    """Refuse, with what to install, a transfer syntax this installation cannot decode."""
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError(f"DICOM transfer syntax '{syntax.name}' is not supported "
                         "(pydicom has no decoder for it).") from None
    if not decoder.is_available:
        plugins = "; ".join(decoder.missing_dependencies)
        raise ImageError(f"DICOM transfer syntax '{syntax.name}' cannot be decoded here: no decoder "
                         f"is installed. Install one of the pydicom plugins ({plugins}), e.g. "
                         "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` or "
                         "`pip install python-gdcm`.")
