"""What the fast CPU mode (dynamic int8 weights) costs in caption quality, measured per variant.

`python -m cxrcap report --compare-int8 ...` captions the images again with int8 copies of the
variants and writes `int8-comparison.md|csv|json` beside the report: per variant

- token agreement: the share of caption tokens (the variant's own word pieces, position by
  position, over the longer caption) equal to the fp32 caption's,
- exact agreement: the share of images whose int8 caption equals the fp32 one,
- each metric's int8 - fp32 difference, with a paired bootstrap interval over images.

An interval that contains 0 means this many images cannot tell int8 from fp32 on that metric;
on untrained (random) weights the agreements show how far int8 moves the tokens, and the
differences say nothing about caption quality.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import metrics

FILES = ("int8-comparison.md", "int8-comparison.csv", "int8-comparison.json")


@dataclass
class Int8Row:
    variant_id: str
    label: str
    n_images: int
    token_agreement: float
    exact_agreement: float
    fp32_seconds: float | None  # generation time of the whole split
    int8_seconds: float | None
    differences: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # key -> (int8 - fp32, low, high)


def token_agreement(fp32: Sequence[str], int8: Sequence[str], tokenize: Callable[[str], list[int]]) -> float:
    """Equal tokens at equal positions over the longer caption of each pair, summed over pairs."""
    same = total = 0
    for first, second in zip(fp32, int8, strict=True):
        a, b = tokenize(first), tokenize(second)
        same += sum(x == y for x, y in zip(a, b))
        total += max(len(a), len(b))
    return same / total if total else 1.0


def compare(
    variant_id: str, label: str, fp32: list[str], int8: list[str], references: list[str],
    tokenize: Callable[[str], list[int]], *, fp32_seconds: float | None, int8_seconds: float | None,
    n_resamples: int, seed: int, confidence: float,
) -> Int8Row:
    return Int8Row(
        variant_id, label, len(fp32),
        token_agreement=token_agreement(fp32, int8, tokenize),
        exact_agreement=sum(a == b for a, b in zip(fp32, int8)) / len(fp32),
        fp32_seconds=fp32_seconds, int8_seconds=int8_seconds,
        differences=metrics.bootstrap_difference(fp32, int8, references, n_resamples=n_resamples, seed=seed,
                                                 confidence=confidence),
    )


def markdown(rows: list[Int8Row], about: str, untrained: bool) -> str:
    keys = list(metrics.METRIC_LABELS)
    lines = ["# Fast (int8) captions against fp32", "", about, ""]
    if untrained:
        lines += ["> **Untrained tiny random weights**: the agreements show how far int8 moves the tokens of these "
                  "models; the metric differences say nothing about caption quality.", ""]
    lines += [
        "| Model | n | tokens equal | captions equal | speed-up | "
        + " | ".join(f"{metrics.METRIC_LABELS[k]} int8 - fp32" for k in keys) + " |",
        "|---|--:|--:|--:|--:|" + "--:|" * len(keys),
    ]
    for row in rows:
        speed = f"{row.fp32_seconds / row.int8_seconds:.2f}x" if row.fp32_seconds and row.int8_seconds else "n/a"
        cells = ["n/a" if d is None else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"  # finding F1 with no finding named
                 for d, lo, hi in (row.differences[k] for k in keys)]
        lines.append(f"| {row.label} | {row.n_images} | {row.token_agreement:.1%} | {row.exact_agreement:.1%} | "
                     f"{speed} | " + " | ".join(cells) + " |")
    lines += ["", "In brackets: paired bootstrap interval over images (the same images drawn for both). "
              "An interval containing 0: no difference this many images can show."]
    return "\n".join(lines) + "\n"


def write(rows: list[Int8Row], out: Path, about: str, untrained: bool) -> str:
    """Write `FILES` into `out`; returns the markdown table."""
    table = markdown(rows, about, untrained)
    (out / FILES[0]).write_text(table, encoding="utf-8")
    keys = list(metrics.METRIC_LABELS)
    with (out / FILES[1]).open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["variant", "label", "n_images", "token_agreement", "exact_agreement", "fp32_seconds",
                         "int8_seconds", *(f"{k}_{part}" for k in keys for part in ("diff", "low", "high"))])
        for row in rows:
            writer.writerow([row.variant_id, row.label, row.n_images, row.token_agreement, row.exact_agreement,
                             row.fp32_seconds, row.int8_seconds, *(v for k in keys for v in row.differences[k])])
    document = {"about": about, "untrained": untrained, "rows": [asdict(row) for row in rows]}
    (out / FILES[2]).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return table
