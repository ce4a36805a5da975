"""HTML cards for the app: one per variant, escaped, readable on a projector.

Everything that comes from a user or a model passes through `html.escape`: a ground
truth or a caption containing HTML renders as text.
"""

from __future__ import annotations

from html import escape

from ..captioner import UNTRAINED_NOTE
from .comparison import SCORE_LABELS, Comparison, VariantOutcome, format_score
from ..metrics import SENTENCE_BLEU_LABEL
from ..variants import VARIANTS, Variant

CSS = """
/* Every text at WCAG AA contrast (4.5:1). Gradio 6.31's default theme draws its softer text (the
   info lines under labels, "- or -", the slider's ends, the footer) in neutral-400, 1.9:1 on white,
   and white on its orange primary buttons (2.8:1; 3.6:1 dark), and the selected tab in that orange. */
:root {--body-text-color-subdued: var(--neutral-500); --color-accent: var(--primary-700);
  --button-primary-background-fill: var(--primary-700); --button-primary-background-fill-hover: var(--primary-800);}
.dark {--color-accent: var(--primary-500); --button-primary-background-fill: var(--primary-700);
  --button-primary-background-fill-hover: var(--primary-800);}
.cx-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(250px, 1fr)); gap: 12px;}
.cx-card {border: 1px solid #d0d5dd; border-radius: 10px; padding: 12px 14px; background: var(--block-background-fill);}
.cx-truth {border-color: #7a8699; border-width: 2px;}
/* Gradio 6.31's theme draws weight 600 (its headings, these card titles) with
   SourceSansPro-SemiBold.woff2, a subset holding "A" and "B" and no other letter: those two came
   from it and the rest from a fallback font, so "BLIP" showed an odd, lighter "B". Gradio also
   ships the complete Bold face; declared after the theme's, it draws every letter at 600. */
@font-face {font-family: "Source Sans Pro"; font-weight: 600; font-style: normal;
  src: url("static/fonts/SourceSansPro/SourceSansPro-Bold.woff2") format("woff2");}
.cx-card h3 {margin: 0 0 6px 0; font-size: 1.1rem;}
.cx-empty {padding: 14px; border: 1px dashed #b0b7c3; border-radius: 10px; opacity: 0.8;}
.cx-caption {font-size: 1.05rem; line-height: 1.4; margin: 6px 0; overflow-wrap: anywhere;}
/* Softer text by its colour, not by opacity, which would fade the findings' chips inside it too. */
.cx-meta {font-size: 0.85rem; color: color-mix(in srgb, currentColor 75%, transparent);}
.cx-badge {display: inline-block; font-size: 0.75rem; padding: 1px 7px; border-radius: 8px; margin-left: 6px;}
.cx-untrained {background: #fff3cd; color: #6b4e00;}
.cx-unavailable {background: #fde2e1; color: #8a1c17;}
.cx-waiting {background: #e8eaf0; color: #333;}
.cx-int8 {background: #dbeafe; color: #1e3a8a;}
.cx-scores {width: 100%; font-size: 0.85rem; border-collapse: collapse; margin-top: 6px;}
.cx-scores td {padding: 1px 4px;}
.cx-scores td.v {text-align: right; font-variant-numeric: tabular-nums;}
.cx-chip {display: inline-block; font-size: 0.8rem; padding: 1px 6px; border-radius: 6px; margin: 2px 3px 0 0;}
.cx-agree {background: #d1f0d6; color: #14532d;}
.cx-missing {background: #fff0c2; color: #6b4e00;}
.cx-extra {background: #fde2e1; color: #8a1c17;}
.cx-note {font-size: 0.8rem; color: color-mix(in srgb, currentColor 75%, transparent); margin-top: 6px;}
.cx-full summary {cursor: pointer; font-size: 0.85rem; margin-top: 4px;}
.cx-full-text {font-size: 0.9rem; line-height: 1.35; margin-top: 4px; overflow-wrap: anywhere; white-space: pre-wrap;}
/* Phones: the examples follow the upload box (two ways to start, both on the first screen), then
   the preview, where a tapped example shows, with its credit, then the captions, before the
   ground truth and the settings. The caption row and its input column join the tab's own flow, so
   that the gallery below them and the cards' column can sit between their boxes. */
@media (max-width: 767px) {
  #caption-row, #caption-inputs {display: contents;}
  #caption-inputs > *, #examples-note {order: 7;}
  #upload {order: 1;}
  #examples {order: 2; height: auto !important;}
  #examples .grid-wrap {height: auto !important;}
  #examples-status {order: 3;}
  #preview {order: 4;}
  #credit {order: 5;}
  #caption-outputs {order: 6;}
}
"""
EMPTY = "Upload a chest X-ray (PNG, JPEG or DICOM) or pick an example: its captions appear here."


def _chips(findings, css_class: str, title: str) -> str:
    return "".join(f'<span class="cx-chip {css_class}" title="{title}">{escape(str(f))}</span>' for f in findings)


def _scores_table(outcome: VariantOutcome) -> str:
    if outcome.scores is None:
        return ""
    findings = outcome.findings
    values = {key: format_score(value) for key, value in outcome.scores.items()}
    rows = "".join(
        f'<tr><td>{label}</td><td class="v">{values[key]}</td></tr>' for key, label in SCORE_LABELS.items() if key in values
    )
    chips = ""
    if findings is not None:
        chips = (
            _chips(findings.agree, "cx-agree", "in both captions")
            + _chips(findings.missing, "cx-missing", "in the ground truth only")
            + _chips(findings.extra, "cx-extra", "in this caption only")
        ) or '<span class="cx-meta">no chest findings named in either caption</span>'
    return f'<table class="cx-scores">{rows}</table><div>{chips}</div>'


def unavailable_note(variant: Variant) -> str:
    """For the visitor, what is missing; for the Space's owner, the one variable that fixes it.
    The technical reason is in the app's log and the raw results, not on the card."""
    if variant.source == variant.default_source:
        missing = (f"No fine-tuned {variant.family.upper()} checkpoint is set up here." if variant.fine_tuned
                   else f"The {variant.label} model could not be downloaded here.")
        fix = f"set the variable <code>{variant.env_var}</code> to a {'fine-tuned ' if variant.fine_tuned else ''}" \
              f"{variant.family.upper()} checkpoint (a hub id) and restart."
    else:
        missing = f"The checkpoint this app was given for {escape(variant.label)} could not be loaded."
        fix = f"check <code>{variant.env_var}</code> (the app's log says what went wrong)."
    return f'<div class="cx-caption">{missing}</div><div class="cx-meta">Space owner: {fix}</div>'


def render_card(variant_id: str, outcome: VariantOutcome | None) -> str:
    label = escape(VARIANTS[variant_id].label)
    if outcome is None:
        return (
            f'<div class="cx-card" data-variant="{variant_id}"><h3>{label}'
            '<span class="cx-badge cx-waiting">working...</span></h3></div>'
        )
    result = outcome.result
    badge = '<span class="cx-badge cx-untrained">untrained</span>' if result.untrained else ""
    badge += '<span class="cx-badge cx-int8" title="int8 weights: faster on a CPU; may differ from full precision">int8</span>' \
        if result.int8 else ""
    notes = "".join(f'<div class="cx-note">{escape(line)}</div>' for line in result.notes)
    if result.caption is None:
        # The extra slot (it has notes) says its own reason and fix: which model, gated, remote code...
        body = unavailable_note(VARIANTS[variant_id]) if result.unavailable and not result.notes else \
            f'<div class="cx-meta">{escape(result.error or "")}</div>'
        state = '<span class="cx-badge cx-waiting">loading</span>' if result.loading else \
            '<span class="cx-badge cx-unavailable">unavailable</span>'
        return f'<div class="cx-card" data-variant="{variant_id}"><h3>{label}{state}{badge}</h3>{body}{notes}</div>'
    note = f'<div class="cx-note">{escape(UNTRAINED_NOTE)}</div>' if result.untrained else ""
    full = (f'<details class="cx-full"><summary>Full answer (the caption is its first words)</summary>'
            f'<div class="cx-full-text">{escape(result.full_text)}</div></details>') if result.full_text else ""
    return (
        f'<div class="cx-card" data-variant="{variant_id}"><h3>{label}{badge}</h3>'
        f'<div class="cx-caption">{escape(result.caption) or "<em>(empty caption)</em>"}</div>{full}'
        f'<div class="cx-meta">{result.seconds:.2f} s</div>{_scores_table(outcome)}{notes}{note}</div>'
    )


def render_cards(variant_ids: list[str], comparison: Comparison | None) -> str:
    """The grid of cards while a caption job runs or after it (variants not finished yet show as
    working); without a comparison, one line saying what to do."""
    if comparison is None:
        return f'<div class="cx-empty">{EMPTY}</div>'
    outcomes = comparison.outcomes
    cards = "".join(render_card(vid, outcomes.get(vid)) for vid in variant_ids)
    footer = ""
    if comparison.ground_truth:
        cards = (
            '<div class="cx-card cx-truth" data-variant="ground-truth"><h3>Ground truth</h3>'
            f'<div class="cx-caption">{escape(comparison.ground_truth)}</div></div>'
        ) + cards
        footer = (
            f'<div class="cx-note">* {escape(SENTENCE_BLEU_LABEL)}. Findings: '
            '<span class="cx-chip cx-agree">in both</span><span class="cx-chip cx-missing">missed</span>'
            '<span class="cx-chip cx-extra">extra</span></div>'
        )
    return f'<div class="cx-grid">{cards}</div>{footer}'
