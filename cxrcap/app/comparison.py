"""One X-ray compared across the variants: captions, live scores, findings, exports.

The app builds a `Comparison` as captions stream in, renders it as cards (`cards.py`),
returns it as JSON to API clients, and exports it as a CSV and a one-slide PNG.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from PIL import Image

from ..captioner import CaptionResult, DecodeSettings
from ..findings import FindingComparison, compare_findings
from ..metrics import METRIC_LABELS, SENTENCE_KEYS, score
from ..reviews import spreadsheet_safe
from ..variants import VARIANTS
from .slide import draw_slide

MAX_GROUND_TRUTH_CHARS = 5_000  # a long figure caption is ~1,000; anything far beyond is not a caption
SCORE_LABELS = {key: "BLEU*" if key == "bleu" else METRIC_LABELS[key] for key in SENTENCE_KEYS}  # * = smoothed, footnoted


def format_score(value: float | None, digits: int = 3) -> str:
    """A live score as cards and slides show it: "n/a" for a finding F1 with no finding named."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def clean_ground_truth(text: str | None) -> tuple[str, str | None]:
    """Strip and bound a user's ground-truth caption; returns (text, notice or None)."""
    text = (text or "").strip()
    if len(text) > MAX_GROUND_TRUTH_CHARS:
        notice = (
            f"The ground-truth caption was {len(text):,} characters; only the first "
            f"{MAX_GROUND_TRUTH_CHARS:,} are used for scoring."
        )
        return text[:MAX_GROUND_TRUTH_CHARS], notice
    return text, None


@dataclass
class VariantOutcome:
    result: CaptionResult
    scores: dict[str, float | None] | None = None  # None without a ground truth or a caption
    findings: FindingComparison | None = None


@dataclass
class Comparison:
    ground_truth: str
    settings: DecodeSettings
    outcomes: dict[str, VariantOutcome] = field(default_factory=dict)
    ground_truth_notice: str | None = None  # e.g. that the ground truth was cut to MAX_GROUND_TRUTH_CHARS

    def add(self, result: CaptionResult) -> VariantOutcome:
        """Record a variant's caption and score it against the ground truth, if both exist."""
        outcome = VariantOutcome(result)
        if self.ground_truth and result.caption is not None:
            outcome.scores = score(result.caption, self.ground_truth)
            outcome.findings = compare_findings(result.caption, self.ground_truth)
        self.outcomes[result.variant_id] = outcome
        return outcome

    def ordered(self) -> list[tuple[str, VariantOutcome]]:
        """Outcomes in the registry's order, whatever order the variants finished in."""
        return sorted(self.outcomes.items(), key=lambda item: list(VARIANTS).index(item[0]))

    def rows(self) -> list[dict]:
        """One plain dict per variant: what API clients and the CSV get (`finding_f1` None, an
        empty CSV cell, when neither caption names a finding; `ground_truth_notice` says when the
        ground truth was cut)."""
        rows = []
        for variant_id, outcome in self.ordered():
            result = outcome.result
            rows.append(
                {
                    "variant": variant_id,
                    "label": VARIANTS[variant_id].label,
                    "caption": result.caption,
                    "seconds": round(result.seconds, 3),
                    "error": result.error,
                    "untrained": result.untrained,
                    "int8": result.int8,
                    "ground_truth": self.ground_truth,
                    "ground_truth_notice": self.ground_truth_notice,
                    "decoding": self.settings.describe(),
                    **{key: (outcome.scores or {}).get(key) for key in SENTENCE_KEYS},
                    "notes": "; ".join(result.notes),  # the extra slot: model, licence, prompt
                    "full_text": result.full_text,  # the whole answer, when the caption was cut from it
                }
            )
        return rows

    def to_csv(self, credit: str = "") -> str:
        """The rows as CSV, with the image's credit (licence and source) on each; text a spreadsheet
        would run as a formula (a caption or ground truth starting with =, +, -, @) is defused."""
        rows = [{**row, "image_credit": credit} for row in self.rows()]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["variant", "image_credit"])
        writer.writeheader()
        writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
        return buffer.getvalue()

    def slide_lines(self) -> list[tuple[str, str, str]]:
        """The slide's text: (title, caption, scores) for the ground truth and each variant."""
        lines = [("Ground truth", self.ground_truth or "(none given)", "")]
        for _, outcome in self.ordered():
            result = outcome.result
            text = result.caption if result.caption is not None else result.error or "unavailable"
            note = (" [untrained weights]" if result.untrained else "") + (" [int8]" if result.int8 else "")
            scores = outcome.scores or {}
            detail = " · ".join(
                f"{SCORE_LABELS[k]} {format_score(scores[k], 2)}" for k in ("bleu", "rougeL", "meteor", "finding_f1")
                if k in scores
            )
            lines.append((VARIANTS[result.variant_id].label + note, text, detail))
        return lines

    def slide_footer(self) -> str:
        """The slide's last line: the disclaimer and how the captions were made."""
        return ("Research demo: captions are suggestions, never clinical decisions. " + self.settings.describe()
                + (". *BLEU is smoothed sentence BLEU." if self.ground_truth else "."))

    def to_slide(self, image: Image.Image, credit: str = "") -> Image.Image:
        """The X-ray beside its ground truth and every variant's caption with scores: one slide."""
        return draw_slide(image, self.slide_lines(), f"Image: {credit}" if credit else "", self.slide_footer())
