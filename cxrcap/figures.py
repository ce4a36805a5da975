"""The report's charts: metric bars with CI whiskers, and the qualitative X-ray figure.

`cxrcap.report` calls these after scoring; matplotlib is imported here only, so the rest of
the report (evaluation, baselines, files) runs without it.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from .metrics import METRIC_LABELS
from .report import (
    CI_LEVEL,
    CONSTANT,
    METRIC_ORDER,
    RANDOM,
    EvaluationSet,
    Row,
)

PROJECTOR_STYLE = {"font.size": 17, "axes.titlesize": 22, "axes.labelsize": 20, "legend.fontsize": 16}
# GIT blues, BLIP reds; base dark, fine-tuned light: the same colour for a variant in every figure.
VARIANT_COLOURS = {"git-base": "#1f4e9c", "git-base-ft": "#5fa2dd", "blip-base": "#b2182b", "blip-base-ft": "#f4845f",
                   "extra": "#4d9221"}
BASELINE_STYLES = {CONSTANT: {"color": "#7f7f7f", "hatch": "//"}, RANDOM: {"color": "#c7c7c7", "hatch": ".."}}


def _save(figure: Figure, stem: Path) -> None:
    # The constrained layout already fits everything in: bbox_inches="tight" would draw twice.
    figure.savefig(stem.with_suffix(".png"), dpi=120)
    figure.savefig(stem.with_suffix(".svg"))


def _nan_if_none(value: float | None) -> float:
    # finding F1 is None where no caption names a finding: NaN draws no bar and no whisker
    return math.nan if value is None else value


def plot_metrics(rows: list[Row], meta: dict, stem: Path) -> None:
    """Grouped bars, one group per metric, with CI whiskers; CIDEr on its own axis (its range is 0-10)."""
    shown = [row for row in rows if row.available]
    groups = [[k for k in METRIC_ORDER if k != "cider"], ["cider"]]
    width = 0.8 / len(shown)
    with rc_context(PROJECTOR_STYLE):
        figure = Figure(figsize=(20, 8), layout="constrained")
        axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [len(groups[0]), 1.6]})
        for i, row in enumerate(shown):
            style = BASELINE_STYLES.get(row.name) or {"color": VARIANT_COLOURS[row.name]}
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
        title = f"{meta['n_images']} images, {meta['split']} split; whiskers: {CI_LEVEL:.0%} bootstrap CI"
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
    evaluation: EvaluationSet, predictions: dict[str, list[str]], rows: list[Row], n: int, stem: Path
) -> None:
    """The first N X-rays, each beside its original caption and every available model's caption."""
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
    with rc_context(PROJECTOR_STYLE):
        figure = Figure(figsize=(16, sum(heights) + 0.6), layout="constrained")
        axes = figure.subplots(n, 2, gridspec_kw={"width_ratios": [1, 1.4], "height_ratios": heights}, squeeze=False)
        for i, ((image_ax, text_ax), blocks) in enumerate(zip(axes, panels)):
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
        if any(row.untrained for row in models):
            figure.suptitle("Captions from UNTRAINED tiny random weights: noise, not real captions", color="#b00000")
        _save(figure, stem)
