"""The app's heatmap view without a browser: maps on request, cached; pictures; a variant
without maps says why while the others have theirs; the slide shows the picture on show."""

import numpy as np
import pytest
from PIL import Image

from cxrcap.app.comparison import Comparison
from cxrcap.app.heatmap_view import (HeatmapPanel, HeatmapView, Pick, legend_font, picture, same_word_pictures,
                                     word_choices)  # fmt: skip
from cxrcap.captioner import CaptionResult, Captioner, DecodeSettings
from cxrcap.heatmaps import DISCLAIMER, Heatmaps
from cxrcap.images import load_image

CAPTIONS = {"git-base": "left pleural effusion", "blip-base": "small effusion", "blip-base-ft": "small effusion"}


@pytest.fixture(scope="module")
def xray(cxr_image) -> Image.Image:
    return load_image(cxr_image)


@pytest.fixture(scope="module")
def captioners(tiny_sources) -> dict[str, Captioner]:
    """blip-base-ft in int8: its layers give no gradients, so the default method cannot run on it;
    git-base-ft is not there at all."""
    made = {vid: Captioner(vid, tiny_sources[vid], untrained=True) for vid in ("git-base", "blip-base")}
    made["blip-base-ft"] = Captioner("blip-base-ft", tiny_sources["blip-base-ft"], untrained=True, quantize_int8=True)
    made["git-base-ft"] = Captioner("git-base-ft", "/no/such/checkpoint")
    return made


def comparison_of(captions: dict[str, str | None]) -> Comparison:
    comparison = Comparison("", DecodeSettings())
    for variant_id, caption in captions.items():
        comparison.add(CaptionResult(variant_id, caption, 0.1, error=None if caption else "unavailable"))
    return comparison


def test_each_variant_has_its_maps_or_says_why(captioners, xray):
    calls = []
    view = HeatmapView(lambda int8: calls.append(int8) or captioners)
    comparison = comparison_of({**CAPTIONS, "git-base-ft": None})
    maps = view.maps_for(xray, comparison, "relevance")
    assert isinstance(maps["git-base"], Heatmaps) and isinstance(maps["blip-base"], Heatmaps)
    assert "int8" in maps["blip-base-ft"] and maps["git-base-ft"] == "no caption, so no heatmaps"
    assert word_choices(maps["git-base"]) == [("left", "0"), ("pleural", "1"), ("effusion", "2")]
    assert word_choices(maps["blip-base-ft"]) == []
    # the raw method runs on int8 layers too
    assert isinstance(view.maps_for(xray, comparison, "attention")["blip-base-ft"], Heatmaps)
    # cached: asking again computes nothing
    calls.clear()
    again = view.maps_for(xray, comparison, "relevance")
    assert calls == [] and again["git-base"] is maps["git-base"]


def test_the_picture_carries_the_word_the_method_the_scale_and_the_disclaimer(captioners, xray):
    view = HeatmapView(lambda int8: captioners)
    maps = view.maps_for(xray, comparison_of(CAPTIONS), "relevance")
    faint, strong = (picture(xray, maps["git-base"], 2, opacity) for opacity in (0.1, 0.9))
    assert faint.size == strong.size and faint.width == 640 and faint.height > 640  # the legend strip below
    assert not np.array_equal(np.asarray(faint), np.asarray(strong))  # the opacity slider changes it
    others = same_word_pictures(xray, maps, Pick("git-base", 2, CAPTIONS["git-base"]), 0.5)
    assert [label for _, label in others] == ['BLIP base: "effusion"']  # blip-base-ft has no maps
    assert DISCLAIMER.startswith("Explanation aid")


def test_heatmaps_off_computes_nothing_and_the_slide_shows_the_picture_on_show(xray):
    view = HeatmapView(lambda int8: pytest.fail("nothing may be computed while heatmaps are off"))
    panel = HeatmapPanel.__new__(HeatmapPanel)  # the handlers, without building the Gradio layout
    panel.view, panel.variant_ids, panel.pickers = view, ["git-base"], [object()]
    visibility, *_ = panel.refresh(False, xray, comparison_of(CAPTIONS), "relevance")
    assert visibility["visible"] is False
    exported = []
    export = HeatmapPanel.exporting(lambda image, comparison, credit: exported.append(image))
    shown = Image.new("RGB", (10, 10))
    export(xray, "comparison", "", shown)
    export(xray, "comparison", "", None)
    assert exported == [shown, xray]


def test_a_word_picked_in_the_previous_captions_is_ignored_not_drawn_on_the_new_ones(captioners, xray):
    """A word picked in one image's captions, then the opacity slider moved while the next
    image's captions come in (some variants not done yet, others with other words): nothing is
    drawn for that word and nothing raises; a word picked in the new captions is drawn."""
    view = HeatmapView(lambda int8: captioners)
    panel = HeatmapPanel.__new__(HeatmapPanel)  # the handlers, without building the Gradio layout
    panel.view, panel.variant_ids, panel.pickers = view, list(CAPTIONS), [object()] * len(CAPTIONS)
    effusion, small = Pick("git-base", 2, CAPTIONS["git-base"]), Pick("blip-base", 1, CAPTIONS["blip-base"])
    assert panel.redraw(effusion, xray, comparison_of(CAPTIONS), "relevance", 0.5)[0] is not None

    other = xray.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    coming = comparison_of({"git-base": "effusion"})  # blip-base not done yet; git-base says one word
    assert panel.redraw(small, other, coming, "relevance", 0.5) == (None, [])
    assert panel.redraw(effusion, other, coming, "relevance", 0.5) == (None, [])
    same_length = comparison_of({"git-base": "right apical pneumothorax", "blip-base": "no effusion"})
    assert panel.redraw(effusion, other, same_length, "relevance", 0.5) == (None, [])  # not "pneumothorax"
    listed = panel.refresh(True, other, same_length, "relevance")[-1]  # the new captions' words are listed
    *_, shown, others, pick = panel._on_pick("git-base")("2", listed, other, same_length, "relevance", 0.5)
    assert pick == Pick("git-base", 2, "right apical pneumothorax") and shown is not None


@pytest.mark.parametrize("glyph", ["μ", "β", "→", "≥", "×", "Δ"])
def test_the_legend_font_draws_the_letters_captions_use(glyph):
    font = legend_font(20)
    missing = font.getmask("\U000F0000")  # a private-use code point: drawn as the missing-glyph box
    assert bytes(font.getmask(glyph)) != bytes(missing)
