"""cxrcap.images: every upload becomes an 8-bit RGB image or an ImageError, never another crash."""

import csv
import io
import logging
import pickle
import struct
import time
import warnings
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder

from cxrcap import images
from cxrcap.images import ImageError, load_image

PATIENT_NAME = "Doe^Jane"


def _assert_rgb(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert image.mode == "RGB"
    assert image.size == size
    return np.asarray(image)


# --- real data -------------------------------------------------------------------------------

def test_real_chest_xray_loads_as_rgb_of_its_listed_size(cxr_image, cxr_examples_dir):
    with open(cxr_examples_dir / "examples.csv", newline="") as file:
        row = next(r for r in csv.DictReader(file) if r["file"] == f"images/{cxr_image.name}")
    pixels = _assert_rgb(load_image(cxr_image), (int(row["width"]), int(row["height"])))
    assert pixels.std() > 20  # a real radiograph, not a blank
    assert np.array_equal(np.asarray(load_image(cxr_image.read_bytes())), pixels)


def test_truncated_jpeg_is_refused_not_half_decoded(cxr_image, tmp_path):
    data = cxr_image.read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- files that are not images, or too big ---------------------------------------------------

@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "empty"),
    ("notes.png", b"Findings: clear lungs.\n" * 20, "not an image"),
    ("random.jpg", bytes(range(256)) * 8, "not an image"),
    ("report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not an image"),
    ("notes.dcm", b"Findings: clear lungs.\n" * 20, "not a DICOM image"),
], ids=["empty", "text-named-png", "random-bytes", "pdf", "text-named-dcm"])
def test_non_images_get_a_clear_message(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageError, match="No such file"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.effect_noise((64, 64), 50).save(path)
    assert path.stat().st_size > 1000
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ImageError, match="limit is 0.0 MB"):
        load_image(path)
    with pytest.raises(ImageError, match="limit"):
        load_image(path.read_bytes())


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height 8-bit grey pixels; its data is one empty row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side, max_pixels, message", [
    (30000, images.MAX_PIXELS, "more than 60 megapixels"),  # Pillow's own bomb guard fires first
    (200, 10_000, "200×200 .* the limit is 0 megapixels"),  # our header check
])
def test_pixel_bomb_is_refused_from_the_header(tmp_path, monkeypatch, side, max_pixels, message):
    monkeypatch.setattr(images, "MAX_PIXELS", max_pixels)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(side, side))
    start = time.perf_counter()
    with pytest.raises(ImageError, match=message):
        load_image(path)
    assert time.perf_counter() - start < 1.0


# --- image formats and modes -----------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_grey_image_in_each_format_becomes_rgb(tmp_path, fmt):
    gradient = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (32, 1))
    path = tmp_path / f"grey.{fmt.lower()}"
    Image.fromarray(gradient, "L").save(path, format=fmt)
    pixels = _assert_rgb(load_image(path), (48, 32))
    assert np.abs(pixels[..., 1].astype(int) - gradient).max() <= 12


def test_16_bit_png_keeps_its_contrast(tmp_path):
    # A 12-bit-like X-ray in a 16-bit PNG: by bit depth all of it would be near black.
    grey = np.full((32, 60), 1000, np.uint16)
    grey[:, 20:40] = 2000
    grey[:, 40:] = 3000
    path = tmp_path / "xray16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    pixels = _assert_rgb(load_image(path), (60, 32))
    assert pixels[:, :20].max() == 0
    assert pixels[:, 20:40].min() in (127, 128)
    assert pixels[:, 40:].min() == 255


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    pixels = _assert_rgb(load_image(path), (32, 32))
    assert np.abs(pixels[16, 16].astype(int) - (255, 0, 0)).max() <= 12


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_keeping_the_stored_grey_levels(tmp_path, mode):
    # An X-ray exported with a uniform alpha of 128: the models must see the grey levels it stores
    # (mean 142), not those halved by compositing on black (71) or lifted by compositing on white.
    rgba = np.full((10, 30, 4), 142, np.uint8)
    rgba[:, :10, 3] = 0    # transparent
    rgba[:, 10:, 3] = 128  # half
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    pixels = _assert_rgb(load_image(path), (30, 10))
    assert pixels.min() == pixels.max() == 142


def test_premultiplied_alpha_is_undone_not_dropped_raw():
    # In RGBa/La the stored value is grey x alpha: dropping the alpha band raw would darken it.
    premultiplied = Image.new("RGBA", (4, 4), (142, 142, 142, 128)).convert("RGBa")
    assert np.abs(np.asarray(load_image(premultiplied)).astype(int) - 142).max() <= 1


def test_palette_png_keeps_its_colours_and_transparency(tmp_path):
    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.putdata([0, 1, 2])
    path = tmp_path / "palette.png"
    palette.save(path)
    assert np.array_equal(np.asarray(load_image(path))[0], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    palette.save(path, transparency=0)  # dropped, as an alpha channel is: the colour stays
    assert np.array_equal(np.asarray(load_image(path))[0], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 8, 8))  # red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90° clockwise
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.info == {}  # the EXIF block does not travel on
    pixels = _assert_rgb(image, (20, 40))
    assert pixels[4, 15, 0] > 200 and pixels[4, 4, 0] < 50  # the mark is now top-right


def test_animated_gif_and_multipage_tiff_give_the_first_frame(tmp_path):
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    gif = tmp_path / "anim.gif"
    red.save(gif, save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(gif).n_frames == 2
    assert tuple(np.asarray(load_image(gif))[4, 4]) == (255, 0, 0)

    tiff = tmp_path / "pages.tiff"
    Image.new("L", (8, 8), 30).save(tiff, save_all=True, append_images=[Image.new("L", (8, 8), 220)])
    assert tuple(np.asarray(load_image(tiff))[4, 4]) == (30, 30, 30)


def test_pil_image_input_is_converted_without_changing_it():
    original = Image.new("LA", (5, 4), (200, 255))
    image = load_image(original)
    _assert_rgb(image, (5, 4))
    assert original.mode == "LA"


# --- DICOM -----------------------------------------------------------------------------------

def _dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements) -> Dataset:
    """An uncompressed DICOM dataset of `pixels` (frames first if 3-D grey / 4-D colour),
    with patient fields set so that the tests can look for leaks."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid.generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = "PID-4711"
    ds.PatientBirthDate = "19700101"
    colour = photometric == "RGB"
    frame_dims = 3 if colour else 2
    if pixels.ndim > frame_dims:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-frame_dims:][:2]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # 128-byte preamble + 'DICM'
    return buffer.getvalue()


def _windowed_xray() -> Dataset:
    """12-bit values in 16 bits, a rescale (modality LUT) and a window (VOI LUT)."""
    stored = np.repeat(np.array([[500, 1500, 3500]], np.uint16), 4, axis=0)
    # rescaled: -500, 500, 2500; the window 0..1000 maps them to black, mid grey, white.
    return _dataset(stored, BitsStored=12, HighBit=11, RescaleIntercept=-1000, RescaleSlope=1,
                    WindowCenter=500, WindowWidth=1000)


def test_dicom_applies_modality_and_voi_lut(tmp_path):
    path = tmp_path / "xray.dcm"
    path.write_bytes(_dicom_bytes(_windowed_xray()))
    pixels = _assert_rgb(load_image(path), (3, 4))[0, :, 0]
    # Without the rescale the first column would be mid grey; without the window, the middle
    # one would be 85.
    assert pixels[0] == 0 and 120 <= pixels[1] <= 136 and pixels[2] == 255


def test_dicom_monochrome1_is_the_inverse_of_monochrome2():
    monochrome2 = np.asarray(load_image(_dicom_bytes(_windowed_xray())))
    ds = _windowed_xray()
    ds.PhotometricInterpretation = "MONOCHROME1"
    monochrome1 = np.asarray(load_image(_dicom_bytes(ds)))
    assert np.array_equal(monochrome1, 255 - monochrome2)
    assert monochrome2.min() == 0 and monochrome2.max() == 255


def test_dicom_patient_fields_are_never_read(tmp_path, monkeypatch, caplog):
    path = tmp_path / "xray.dcm"
    path.write_bytes(_dicom_bytes(_windowed_xray()))
    read = []
    real_dcmread = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: read.append(real_dcmread(*a, **k)) or read[-1])
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path)
    assert len(read) == 1 and "PixelData" in read[0]
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(read[0].dir())
    assert image.info == {}
    assert PATIENT_NAME.encode() not in pickle.dumps(image)
    assert PATIENT_NAME not in caplog.text + "".join(str(w.message) for w in caught)


def test_corrupt_dicom_does_not_leak_patient_fields_through_pydicom(caplog):
    # The Transfer Syntax UID's length is stretched over the patient fields, so its value
    # now holds them; pydicom would quote that value in a warning and a log record.
    data = bytearray(_dicom_bytes(_windowed_xray()))
    length_at = data.index(b"\x02\x00\x10\x00UI") + 6
    start = length_at + 2
    end = data.index(b"PID-4711") + 8
    data[length_at:start] = struct.pack("<H", (end - start + 1) // 2 * 2)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as error:
            load_image(bytes(data))
    said = str(error.value) + caplog.text + "".join(str(w.message) for w in caught)
    assert PATIENT_NAME not in said and "PID-4711" not in said


def test_dicom_errors_carry_no_patient_fields():
    bomb = _dataset(np.zeros((2, 2), np.uint8), Rows=30000, Columns=30000)
    truncated = _windowed_xray()
    truncated.PixelData = truncated.PixelData[:6]
    unsupported = _windowed_xray()
    unsupported.file_meta.TransferSyntaxUID = uid.MPEG2MPML
    unsupported.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    palette = _windowed_xray()
    palette.PhotometricInterpretation = "PALETTE COLOR"
    incomplete = _windowed_xray()
    del incomplete.BitsStored
    for ds, message in [(bomb, "megapixels"), (truncated, "truncated or corrupt"),
                        (unsupported, "'MPEG2 Main Profile / Main Level' is not supported"),
                        (palette, "PALETTE COLOR are not supported"),
                        (incomplete, "lacks elements .*: BitsStored")]:
        start = time.perf_counter()
        with pytest.raises(ImageError, match=message) as error:
            load_image(_dicom_bytes(ds))
        assert time.perf_counter() - start < 1.0
        assert PATIENT_NAME not in str(error.value) and "PID-4711" not in str(error.value)


def test_dicom_multiframe_gives_the_first_frame():
    frames = np.stack([np.arange(20, dtype=np.uint8).reshape(4, 5) * k for k in (1, 3, 7)])
    image = load_image(_dicom_bytes(_dataset(frames)))
    expected = np.rint(frames[0] * (255 / 19)).astype(np.uint8)
    assert np.array_equal(_assert_rgb(image, (5, 4))[..., 0], expected)


def test_dicom_rgb_keeps_its_colours():
    colour = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = load_image(_dicom_bytes(_dataset(colour, "RGB")))
    assert np.array_equal(_assert_rgb(image, (5, 4)), colour)


@pytest.mark.parametrize("name", ["old.dcm", "OLD.DICOM"])
def test_dicom_without_preamble_by_dcm_name_and_by_content(tmp_path, name):
    ds = _windowed_xray()
    expected = np.asarray(load_image(_dicom_bytes(ds)))
    del ds.file_meta
    bare = io.BytesIO()
    ds.save_as(bare, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    path = tmp_path / name
    path.write_bytes(bare.getvalue())
    assert np.array_equal(np.asarray(load_image(path)), expected)
    with pytest.raises(ImageError, match="not an image"):  # without the name it is not recognised
        load_image(bare.getvalue())


def test_dicom_rle_lossless_is_decoded():
    ds = _windowed_xray()
    expected = np.asarray(load_image(_dicom_bytes(ds)))
    ds.compress(uid.RLELossless)  # pydicom's own RLE encoder
    assert np.array_equal(np.asarray(load_image(_dicom_bytes(ds))), expected)


def test_dicom_jpeg_baseline_is_decoded():
    grey = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    jpeg = io.BytesIO()
    Image.fromarray(grey, "L").save(jpeg, format="JPEG", quality=95)
    ds = _dataset(grey)
    ds.file_meta.TransferSyntaxUID = uid.JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.getvalue()])
    pixels = _assert_rgb(load_image(_dicom_bytes(ds)), (32, 16))
    assert np.abs(pixels[..., 0].astype(int) - grey).max() <= 8


def test_dicom_syntax_without_installed_decoder_says_what_to_install():
    syntax = uid.JPEGLosslessSV1  # the usual compressed syntax of CR/DX radiographs
    if get_decoder(syntax).is_available:
        pytest.skip("a JPEG Lossless decoder plugin is installed here")
    ds = _windowed_xray()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(60)])
    with pytest.raises(ImageError, match=r"JPEG Lossless.*pip install pylibjpeg"):
        load_image(_dicom_bytes(ds))


# --- damaged files ----------------------------------------------------------------------------

def _samples() -> dict[str, bytes]:
    """One small valid file per reader: Pillow formats, 16-bit PNG, DICOM plain and RLE."""
    samples = {}
    noise = Image.effect_noise((64, 48), 60)
    for fmt in ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"]:
        buffer = io.BytesIO()
        noise.save(buffer, format=fmt)
        samples[fmt] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(np.arange(3072, dtype=np.uint16).reshape(48, 64)).save(buffer, format="PNG")
    samples["PNG16"] = buffer.getvalue()
    samples["DICOM"] = _dicom_bytes(_windowed_xray())
    rle = _windowed_xray()
    rle.compress(uid.RLELossless)
    samples["DICOM-RLE"] = _dicom_bytes(rle)
    return samples


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about damaged EXIF
def test_damaged_files_give_an_image_or_an_image_error():
    rng = np.random.default_rng(0)
    outcomes = set()
    for data in _samples().values():
        for trial in range(40):
            damaged = bytearray(data[: rng.integers(1, len(data))] if trial % 2 else data)
            for _ in range(0 if trial % 2 else rng.integers(1, 6)):
                damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
            try:
                assert load_image(bytes(damaged)).mode == "RGB"
                outcomes.add("image")
            except ImageError:
                outcomes.add("error")
    assert outcomes == {"image", "error"}
