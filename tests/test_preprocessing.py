"""Image preprocessing: every variant sees the whole X-ray, with the PIL backend, requested on purpose."""

import pytest
import torch
from PIL import ImageDraw

from cxrcap.captioner import Captioner
from cxrcap.images import load_image
from cxrcap.preprocessing import CENTRE_CROP_ENV, describe, load_processor, released_image_processor
from cxrcap.variants import VARIANT_IDS
from processes import run_python

BAND = 0.08  # the outer band a marker is drawn in: git-base's released centre crop cuts 12.5% off each end


def with_marker_in_the_band(xray, orientation: str):
    """The X-ray as a 3:4 portrait or a 4:3 landscape film, and a copy with a white marker only in the
    outer 8% of its long side (top for a portrait, left for a landscape): where apices and
    costophrenic angles (portrait) or the lateral chest wall (landscape) are."""
    width, height = (600, 800) if orientation == "portrait" else (800, 600)
    plain = xray.resize((width, height))
    marked = plain.copy()
    draw = ImageDraw.Draw(marked)
    if orientation == "portrait":
        draw.rectangle([width // 4, 0, 3 * width // 4, int(BAND * height) - 1], fill="white")
    else:
        draw.rectangle([0, height // 4, int(BAND * width) - 1, 3 * height // 4], fill="white")
    return plain, marked


@pytest.fixture(scope="module")
def xray(cxr_image):
    return load_image(cxr_image)


@pytest.mark.parametrize("orientation", ["portrait", "landscape"])
@pytest.mark.parametrize("variant_id", VARIANT_IDS)
def test_each_variant_sees_the_whole_xray(variant_id, orientation, tiny_sources, xray, monkeypatch):
    monkeypatch.delenv(CENTRE_CROP_ENV, raising=False)
    captioner = Captioner(variant_id, tiny_sources[variant_id], untrained=True)
    plain, marked = with_marker_in_the_band(xray, orientation)
    difference = (captioner.preprocess([marked]) - captioner.preprocess([plain])).abs()
    assert difference.max() > 0.5  # the marker reaches the model's input


def test_the_released_centre_crop_is_one_setting_away(tiny_sources, xray, monkeypatch):
    monkeypatch.setenv(CENTRE_CROP_ENV, "1")
    captioner = Captioner("git-base", tiny_sources["git-base"], untrained=True)
    for orientation in ("portrait", "landscape"):
        plain, marked = with_marker_in_the_band(xray, orientation)
        assert torch.equal(captioner.preprocess([marked]), captioner.preprocess([plain]))  # cropped away
    assert describe(captioner.processor.image_processor)["crop"] == "centre 224 x 224 px"


def test_processors_are_described_in_words(tiny_sources):
    released = released_image_processor("git")
    assert describe(released) == {
        "image_processor": "CLIPImageProcessorPil",
        "backend": "pil",
        "input_size": "224 x 224",
        "resize": "shortest edge to 224 px, aspect ratio kept, bicubic",
        "crop": "centre 224 x 224 px",
    }
    whole = describe(load_processor(tiny_sources["git-base"]).image_processor)
    assert whole["resize"] == "whole image to 224 x 224 px (aspect ratio not kept), bicubic"
    assert whole["crop"] == "none: the model sees the whole image" and whole["input_size"] == "224 x 224"
    assert describe(load_processor(tiny_sources["blip-base"]).image_processor)["input_size"] == "384 x 384"


def test_the_pil_backend_is_requested_and_nothing_is_logged_about_it(tiny_sources):
    """In a fresh process, as the app starts: import what it imports, load each variant's processor."""
    sources = [tiny_sources[variant_id] for variant_id in VARIANT_IDS]
    script = (
        "import sys, cxrcap.tiny, cxrcap.captioner, cxrcap.extra\n"
        "from cxrcap.preprocessing import load_processor\n"
        "print(' '.join(type(load_processor(s).image_processor).__name__ for s in sys.argv[1:]))\n"
    )
    result = run_python("-c", script, *sources, timeout=300)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"CLIPImageProcessorPil", "BlipImageProcessorPil"}
    assert "torchvision" not in result.stderr and "backend" not in result.stderr


def test_the_about_page_says_what_the_models_see(monkeypatch):
    from dataclasses import asdict

    from cxrcap.app.about import about_markdown
    from finetune.recipe import Recipe

    monkeypatch.delenv(CENTRE_CROP_ENV, raising=False)
    about = about_markdown(asdict(Recipe()))
    assert "| GIT | `CLIPImageProcessorPil` | whole image to 224 x 224 px (aspect ratio not kept), bicubic |" in about
    assert "| BLIP | `BlipImageProcessorPil` | whole image to 384 x 384 px" in about
    assert "`pil` backend" in about and f"`{CENTRE_CROP_ENV}=1`" in about and "| `centre_crop` | `False` |" in about
    assert "label smoothing" in about and "whole accumulated batch" in about
    monkeypatch.setenv(CENTRE_CROP_ENV, "1")
    assert "This app runs with" in about_markdown(asdict(Recipe()))
