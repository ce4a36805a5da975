"""The app's heatmap view: click a word of a caption, see where that variant looked for it.

Off by default ("Show heatmaps"): with it off nothing is computed and captioning is untouched.
With it on, once the captions are in, each variant's maps are computed once (`cxrcap.heatmaps`,
one teacher-forced pass per caption) and kept in a small cache, so clicks and the opacity slider
only redraw. A click shows the word's map over the X-ray, with a colour scale, the method and
the explanation-aid disclaimer drawn into the picture (so a downloaded slide carries them too),
and the same word's map for every other variant that also said it. A variant without maps (not
loaded, no caption, or a method it cannot run) says why under its name.
"""

from __future__ import annotations

import hashlib
import textwrap
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..captioner import CaptionResult, VariantUnavailable
from ..heatmaps import (
    COLOUR_MAP,
    DEFAULT_METHOD,
    DISCLAIMER,
    METHOD_LABELS,
    METHODS,
    Heatmaps,
    heatmaps_or_reason,
    overlay,
)
from ..variants import VARIANTS
from . import zerogpu
from .comparison import Comparison

CACHE_ENTRIES = 64  # one per (image, variant, caption, method, weights): a few people's recent clicks
SHOWN_SIZE = 640  # the overlay's longer side in pixels: sharp on a projector, quick to redraw
LEGEND = "0 = not relevant ... 1 = this word's most relevant patch"


@dataclass(frozen=True)
class Pick:
    """The word whose map is on show: a variant, the index of the word in its caption, and that
    caption (a word picked in other captions than those on show is not drawn)."""

    variant_id: str
    word_index: int
    caption: str


class HeatmapView:
    """Maps for the captions on show, computed on request and cached; pictures of them."""

    def __init__(self, captioners_for):
        self._captioners_for = captioners_for  # int8 -> {variant id: Captioner}, as the service captions
        self._cache: OrderedDict[tuple, Heatmaps | str] = OrderedDict()
        self._lock = threading.Lock()
        # On ZeroGPU this runs in a process lent a GPU for the call (only picklable values cross over).
        self._compute = zerogpu.gpu(self._compute, zerogpu.heatmap_seconds)

    def maps_for(self, image: Image.Image, comparison: Comparison, method: str) -> dict[str, Heatmaps | str]:
        """Every variant of the comparison: its maps, or a sentence saying why there are none."""
        fingerprint = hashlib.sha1(image.tobytes()).hexdigest()
        shown = {}
        for variant_id, outcome in comparison.ordered():
            result = outcome.result
            if result.caption is None:
                shown[variant_id] = "no caption, so no heatmaps"
                continue
            key = (fingerprint, variant_id, result.caption, method, result.int8)
            with self._lock:
                known = self._cache.get(key)
            if known is None:
                known = self._compute(variant_id, image, result, method)
                with self._lock:
                    self._cache[key] = known
                    while len(self._cache) > CACHE_ENTRIES:
                        self._cache.popitem(last=False)
            shown[variant_id] = known
        return shown

    def _compute(self, variant_id: str, image: Image.Image, result: CaptionResult, method: str) -> Heatmaps | str:
        try:
            captioner = self._captioners_for(result.int8)[variant_id]
        except VariantUnavailable as error:
            return f"no heatmaps: {error}"
        maps = heatmaps_or_reason(captioner, image, result.caption, method, result.token_ids)
        return maps if isinstance(maps, Heatmaps) else f"no heatmaps: {maps}"


def word_choices(maps: Heatmaps | str) -> list[tuple[str, str]]:
    """(word, index) pairs for a variant's clickable words; none when it has no maps."""
    return [] if isinstance(maps, str) else [(word, str(i)) for i, word in enumerate(maps.words)]


def describe(maps: Heatmaps, word_index: int) -> str:
    """Which map a picture shows: the word, the variant and the method."""
    return f'"{maps.words[word_index]}" - {VARIANTS[maps.variant_id].label} - {METHOD_LABELS[maps.method]}'


def alt_text(maps: Heatmaps, word_index: int) -> str:
    """The picture in words, for a screen reader (what is drawn into it, but for the colours)."""
    return f"Heatmap over the chest X-ray of the word {describe(maps, word_index)}. {LEGEND}. {DISCLAIMER}"


def picture(image: Image.Image, maps: Heatmaps, word_index: int, opacity: float) -> Image.Image:
    """The X-ray under one word's map, with the word, the variant, the method, the colour scale
    and the disclaimer drawn below it."""
    shown = image.convert("RGB")
    shown.thumbnail((SHOWN_SIZE, SHOWN_SIZE))
    blended = overlay(shown, maps.word_maps[word_index], maps.geometry, opacity)
    return _with_legend(blended, [describe(maps, word_index), DISCLAIMER])


def same_word_pictures(
    image: Image.Image, all_maps: dict[str, Heatmaps | str], pick: Pick, opacity: float
) -> list[tuple[Image.Image, str]]:
    """The picked word's map for every other variant that also said it, captioned by variant."""
    picked = all_maps[pick.variant_id]
    word = picked.words[pick.word_index]
    pictures = []
    for variant_id, maps in all_maps.items():
        if variant_id == pick.variant_id or isinstance(maps, str):
            continue
        index = next((i for i, said in enumerate(maps.words) if said.lower() == word.lower()), None)
        if index is not None:
            pictures.append((picture(image, maps, index, opacity), f'{VARIANTS[variant_id].label}: "{maps.words[index]}"'))
    return pictures


def legend_font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, which matplotlib ships: Pillow's default font has no Greek letters or arrows,
    which captions use ("μ", "β", "→"), and would draw each as a box."""
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def _wrap(line: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """The line in parts that each fit the width as drawn (a word too long for it is split)."""
    for chars in range(max(1, int(width // font.getlength("n"))), 0, -1):
        parts = textwrap.wrap(line, chars)
        if all(font.getlength(part) <= width for part in parts):
            break
    return parts


def _with_legend(blended: Image.Image, lines: list[str]) -> Image.Image:
    """The picture with a strip below: the colour scale (0 to 1) and the given lines of text."""
    from matplotlib import colormaps

    width, height = blended.size
    font = legend_font(20)
    bar_height, line_height, margin = 18, 26, 10
    lines = [part for line in lines for part in _wrap(line, font, width - 2 * margin)]
    strip = Image.new("RGB", (width, margin * 3 + bar_height + line_height * (len(lines) + 1)), "white")
    draw = ImageDraw.Draw(strip)
    ramp = (colormaps[COLOUR_MAP](np.linspace(0, 1, width - 2 * margin))[:, :3] * 255).astype(np.uint8)
    strip.paste(Image.fromarray(np.repeat(ramp[None], bar_height, axis=0)), (margin, margin))
    y = margin + bar_height + 2
    draw.text((margin, y), LEGEND, fill="black", font=font)
    for i, line in enumerate(lines):
        colour = "#a00000" if line in DISCLAIMER else "black"  # the disclaimer in red
        draw.text((margin, y + line_height * (i + 1)), line, fill=colour, font=font)
    combined = Image.new("RGB", (width, height + strip.height), "white")
    combined.paste(blended, (0, 0))
    combined.paste(strip, (0, height))
    return combined


# ---------------------------------------------------------------- the panel in the app


class HeatmapPanel:
    """The heatmap controls under the cards (built inside the app's Blocks) and their handlers."""

    def __init__(self, view: HeatmapView, variant_ids: list[str], image_state, comparison_state):
        import gradio as gr

        self.view, self.variant_ids = view, list(variant_ids)
        self.show = gr.Checkbox(False, label="Show heatmaps", elem_id="show-heatmaps",
                                info="Where each word of a caption looks on the X-ray: click a word (computed on request).")
        with gr.Column(visible=False, elem_id="heatmaps") as self.panel:
            gr.Markdown(f"**{DISCLAIMER}** Each map is relative to its own maximum; it is not a detection.")
            self.method = gr.Radio([(METHOD_LABELS[m], m) for m in METHODS], value=DEFAULT_METHOD, label="Method")
            with gr.Row():
                self.pickers = [gr.Radio([], label=f"{VARIANTS[vid].label}: click a word", elem_classes="cx-words",
                                         elem_id=f"words-{vid}") for vid in self.variant_ids]
            self.opacity = gr.Slider(0.1, 0.9, value=0.5, step=0.05, label="Overlay opacity")
            with gr.Row():
                self.picture = gr.Image(label="Heatmap of the clicked word", type="pil", interactive=False,
                                        elem_id="heatmap-overlay", height=520)
                self.others = gr.Gallery(label="The same word, other variants that said it", columns=3, height=520,
                                         object_fit="contain", elem_id="heatmap-others")
        self.pick = gr.State(None)
        self.listed = gr.State({})  # variant -> the caption whose words its list shows
        # What belongs to one set of captions: replaced together, by `reset` when new captions start.
        self.reset_outputs = [*self.pickers, self.picture, self.others, self.pick, self.listed]
        self.refresh_inputs = [self.show, image_state, comparison_state, self.method]
        self.refresh_outputs = [self.panel, *self.reset_outputs]
        for control in (self.show, self.method):
            control.change(self.refresh, self.refresh_inputs, self.refresh_outputs, api_visibility="private")
        for variant_id, picker in zip(self.variant_ids, self.pickers):
            picker.select(self._on_pick(variant_id),
                          [picker, self.listed, image_state, comparison_state, self.method, self.opacity],
                          [*self.pickers, self.picture, self.others, self.pick], api_visibility="private")
        self.opacity.release(self.redraw, [self.pick, image_state, comparison_state, self.method, self.opacity],
                             [self.picture, self.others], api_visibility="private")

    def refresh(self, show: bool, image, comparison: Comparison | None, method: str):
        """Hidden and idle when off; when on, every variant's words (or why it has none)."""
        import gradio as gr

        cleared = [None, [], None]
        if not show:
            return gr.update(visible=False), *[gr.update() for _ in self.pickers], *cleared, {}
        all_maps = self.view.maps_for(image, comparison, method) if image is not None and comparison else {}
        updates = []
        for variant_id in self.variant_ids:
            maps = all_maps.get(variant_id, "caption an X-ray first")
            reason = maps if isinstance(maps, str) else None
            updates.append(gr.update(choices=word_choices(maps), value=None, info=reason))
        listed = {vid: comparison.outcomes[vid].result.caption for vid, maps in all_maps.items()
                  if isinstance(maps, Heatmaps)}  # fmt: skip
        return gr.update(visible=True), *updates, *cleared, listed

    def reset(self) -> list:
        """For `reset_outputs` when new captions start: no word lists, no word picked, no map."""
        import gradio as gr

        return [*(gr.update(choices=[], value=None, info=None) for _ in self.pickers), None, [], None, {}]

    def _on_pick(self, variant_id: str):
        def on_pick(word_index, listed, image, comparison, method, opacity):
            import gradio as gr

            pick = Pick(variant_id, int(word_index), listed[variant_id]) if variant_id in listed else None
            shown, others = self.redraw(pick, image, comparison, method, opacity)
            cleared = [gr.update() if vid == variant_id else gr.update(value=None) for vid in self.variant_ids]
            return *cleared, shown, others, pick

        return on_pick

    def redraw(self, pick: Pick | None, image, comparison, method, opacity):
        if pick is None or image is None or comparison is None:
            return None, []
        return self._pictures(pick, image, comparison, method, opacity)

    def _pictures(self, pick: Pick, image, comparison, method, opacity):
        outcome = comparison.outcomes.get(pick.variant_id)
        if outcome is None or outcome.result.caption != pick.caption:
            return None, []  # picked in other captions (the previous image's, or new ones coming in)
        all_maps = self.view.maps_for(image, comparison, method)
        maps = all_maps[pick.variant_id]
        if isinstance(maps, str):
            return None, []
        import gradio as gr

        shown = gr.Image(picture(image, maps, pick.word_index, opacity), alt_text=alt_text(maps, pick.word_index))
        return shown, same_word_pictures(image, all_maps, pick, opacity)

    def after(self, event) -> None:
        """Once a caption event has finished: the new captions' words (nothing when heatmaps are off)."""
        event.then(self.refresh, self.refresh_inputs, self.refresh_outputs, api_visibility="private")

    @staticmethod
    def exporting(export):
        """`export(image, comparison, credit)` with the heatmap picture on show, if any, as the slide's
        X-ray (it carries its word, method, colour scale and disclaimer)."""

        def export_shown(image, comparison, credit, shown):
            return export(shown if image is not None and shown is not None else image, comparison, credit)

        return export_shown
