"""The figures: the report's metric bars with CI whiskers and qualitative X-ray figure, and the
word heatmap grid of `caption --heatmaps`.

The report and caption commands (`cxrcap.cli`) call these once there is something to draw;
matplotlib is imported here only, so the rest (evaluation, baselines, files) runs without it. The
dependency runs one way: this module draws what it is given and imports nothing of the report's.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure
from PIL import Image

from . import heatmaps
from .metrics import METRIC_LABELS

PROJECTOR_STYLE = {"font.size": 17, "axes.titlesize": 22, "axes.labelsize": 20, "legend.fontsize": 16}
# GIT blues, BLIP reds; base dark, fine-tuned light: the same colour for a variant in every figure.
VARIANT_COLOURS = {"git-base": "#1f4e9c", "git-base-ft": "#5fa2dd", "blip-base": "#b2182b", "blip-base-ft": "#f4845f",
                   "extra": "#4d9221"}
# The baselines in the table's order (constant caption, random caption): greys with hatching.
BASELINE_STYLES = ({"color": "#7f7f7f", "hatch": "//"}, {"color": "#c7c7c7", "hatch": ".."})


def _save(figure: Figure, stem: Path) -> None:
    # The constrained layout already fits everything in: bbox_inches="tight" would draw twice.
    figure.savefig(stem.with_suffix(".png"), dpi=120)
    figure.savefig(stem.with_suffix(".svg"))


def _nan_if_none(value: float | None) -> float:
    # finding F1 is None where no caption names a finding: NaN draws no bar and no whisker
    return math.nan if value is None else value


def plot_metrics(rows: list, meta: dict, stem: Path) -> None:
    """Grouped bars, one group per metric, with CI whiskers; CIDEr on its own axis (its range is 0-10).

    rows: the report's table rows (`cxrcap.report.Row`), models first, then the baselines.
    """
    shown = [row for row in rows if row.available]
    baselines = [row.name for row in shown if row.kind == "baseline"]
    groups = [[k for k in METRIC_LABELS if k != "cider"], ["cider"]]
    width = 0.8 / len(shown)
    with rc_context(PROJECTOR_STYLE):
        figure = Figure(figsize=(20, 8), layout="constrained")
        axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [len(groups[0]), 1.6]})
        for i, row in enumerate(shown):
            is_baseline = row.kind == "baseline"
            style = BASELINE_STYLES[baselines.index(row.name)] if is_baseline else {"color": VARIANT_COLOURS[row.name]}
            for ax, keys in zip(axes, groups):
                x = [j + (i - (len(shown) - 1) / 2) * width for j in range(len(keys))]
                values = [_nan_if_none(row.scores[k]) for k in keys]
                errors = [[v - _nan_if_none(row.ci[k][0]) for k, v in zip(keys, values)],
                          [_nan_if_none(row.ci[k][1]) - v for k, v in zip(keys, values)]]
                ax.bar(x, values, width, yerr=errors, capsize=3, edgecolor="black", linewidth=0.6,
                       label=row.display_label, **style)
        for ax, keys in zip(axes, groups):
            ax.set_xticks(range(len(keys)), [METRIC_LABELS[k] for k in keys])
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
        axes[0].set_ylim(0, 1.05)
        axes[0].set_ylabel("score (higher is better)")
        axes[0].tick_params(axis="x", labelrotation=20)
        title = f"{meta['n_images']} images, {meta['split']} split; whiskers: {meta['bootstrap']['level']:.0%} bootstrap CI"
        if meta["untrained_note"]:
            title = "UNTRAINED tiny random weights: pipeline check only\n" + title
        figure.suptitle(title, color="#b00000" if meta["untrained_note"] else "black")
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(shown), 3))
        _save(figure, stem)


def _wrapped(text: str, width: int, max_chars: int = 260) -> str:
    text = " ".join(text.split())
    if len(text) > max_chars:
        text = text[: max_chars - 1].rsplit(" ", 1)[0] + " …"
    return textwrap.fill(text, width)


def plot_qualitative(
    evaluation, predictions: dict[str, list[str]], rows: list, n: int, stem: Path,
    word_overlays: list[dict[str, list[tuple[str, Image.Image]] | str]] | None = None, method: str = "",
) -> None:
    """The first N X-rays, each beside its original caption and every available model's caption.

    evaluation: the report's `EvaluationSet` (ids, references, images, credits); rows: its table
    rows. word_overlays (optional, per X-ray): variant id -> [(finding word, the X-ray with that
    word's map)], or a sentence saying why there is none; drawn in a third column, labelled with
    the heatmap `method` and the explanation-aid disclaimer.
    """
    models = [row for row in rows if row.kind == "model" and row.available]
    n = min(n, len(evaluation.ids))
    font = PROJECTOR_STYLE["font.size"]
    line = font * 1.4  # points per text line, spacing included
    panels = []  # per X-ray: [(heading, wrapped caption, colour)]
    for i in range(n):
        blocks = [(f"Original caption ({evaluation.ids[i]})", evaluation.references[i], "black")]
        blocks += [(row.display_label, predictions[row.name][i], VARIANT_COLOURS[row.name]) for row in models]
        panels.append([(_wrapped(heading, 56), _wrapped(text or "(empty caption)", 56), colour)
                       for heading, text, colour in blocks])
    # Each row is as tall as its X-ray or its text, whichever needs more (inches).
    line_counts = [sum(head.count("\n") + body.count("\n") + 2.5 for head, body, _ in blocks) for blocks in panels]
    heights = [max(5.0, count * line / 72) + 0.6 for count in line_counts]
    if word_overlays:  # the overlays column needs room for a row of thumbnails per model
        heights = [max(height, 2.6 * len(models) + 0.6) for height in heights]
    widths = [1, 1.4] + ([1.5] if word_overlays else [])
    with rc_context(PROJECTOR_STYLE):
        figure = Figure(figsize=(16 + 9 * bool(word_overlays), sum(heights) + 1.2), layout="constrained")
        # With overlays, a last thin row holds their colour scale under the overlays' column.
        rows_heights = heights + ([0.5] if word_overlays else [])
        grid = figure.add_gridspec(len(rows_heights), len(widths), width_ratios=widths, height_ratios=rows_heights)
        for i, blocks in enumerate(panels):
            image_ax, text_ax = figure.add_subplot(grid[i, 0]), figure.add_subplot(grid[i, 1])
            thumbnail = evaluation.images[i].copy()
            thumbnail.thumbnail((768, 768))  # keeps the SVG small; sharp enough on a projector
            image_ax.imshow(thumbnail)
            image_ax.set_anchor("N")
            image_ax.set_xticks([])
            image_ax.set_yticks([])
            if evaluation.credits[i]:
                image_ax.set_xlabel(_wrapped(evaluation.credits[i], 50), fontsize=12, color="#444444")
            text_ax.axis("off")
            # Offsets in points from the panel's top, so the spacing follows the font, not the panel.
            offset = 0.0
            for heading, body, colour in blocks:
                for text, indent, style in ((heading, 0, {"color": colour, "fontweight": "bold"}), (body, 12, {})):
                    text_ax.annotate(text, (0, 1), xycoords="axes fraction", xytext=(indent, -offset),
                                     textcoords="offset points", va="top", linespacing=1.2, **style)
                    offset += line * (text.count("\n") + 1)
                offset += line / 2
            if word_overlays:
                _draw_word_overlays(figure, grid[i, 2], models, word_overlays[i])
        titles = []
        if any(row.untrained for row in models):
            titles.append("Captions from UNTRAINED tiny random weights: noise, not real captions")
        if word_overlays:
            titles.append(f"Finding words' heatmaps: {heatmaps.METHOD_LABELS[method]}. {heatmaps.DISCLAIMER}")
        if titles:
            figure.suptitle("\n".join(titles), color="#b00000")
        if word_overlays:
            _colour_bar(figure, cax=figure.add_subplot(grid[n, 2]), orientation="horizontal")
        _save(figure, stem)


def _draw_word_overlays(figure: Figure, cell, models: list, overlays: dict) -> None:
    """One row per model in `cell`: its finding words' overlays, or why there are none."""
    columns = max([len(value) for value in overlays.values() if not isinstance(value, str)] + [1])
    cells = cell.subgridspec(len(models), columns)
    for r, row in enumerate(models):
        shown = overlays.get(row.name, "no caption")
        if isinstance(shown, str):
            ax = figure.add_subplot(cells[r, :])
            ax.axis("off")
            ax.text(0, 0.5, f"{row.display_label}: {shown}", color=VARIANT_COLOURS[row.name], fontsize=13, va="center")
            continue
        for c, (word, image) in enumerate(shown):
            ax = figure.add_subplot(cells[r, c])
            thumbnail = image.copy()
            thumbnail.thumbnail((256, 256))
            ax.imshow(thumbnail)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{row.display_label}: {word}", fontsize=12, color=VARIANT_COLOURS[row.name])


def _colour_bar(figure: Figure, **placement) -> None:
    """The overlays' colour scale (each map relative to its own maximum), placed as
    `Figure.colorbar`'s keyword arguments say."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(Normalize(0, 1), colormaps[heatmaps.COLOUR_MAP])
    bar = figure.colorbar(mappable, **placement)
    bar.set_label("patch relevance for the word (1 = its maximum)")


def plot_word_heatmaps(image: Image.Image, maps: heatmaps.Heatmaps, label: str, path: Path, untrained: bool) -> None:
    """`caption --heatmaps`: the X-ray with one overlay per word of the caption, in a grid."""
    columns = min(5, len(maps.words))
    grid_rows = -(-len(maps.words) // columns)
    thumbnail = image.copy()
    thumbnail.thumbnail((384, 384))
    with rc_context({"font.size": 12}):
        figure = Figure(figsize=(3.2 * columns, 3.4 * grid_rows + 1.6), layout="constrained")
        axes = figure.subplots(grid_rows, columns, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, word, word_map in zip(axes.flat, maps.words, maps.word_maps):
            ax.imshow(heatmaps.overlay(thumbnail, word_map, maps.geometry))
            ax.set_title(word)
        title = f"{label}: where each word looks ({heatmaps.METHOD_LABELS[maps.method]})\n{heatmaps.DISCLAIMER}"
        if untrained:
            title += "\nUNTRAINED tiny random weights: noise, not a real caption"
        figure.suptitle(title, color="#b00000" if untrained else "black")
        _colour_bar(figure, ax=axes, location="bottom", shrink=0.5, aspect=40)
        figure.savefig(path, dpi=100)
