"""Clinicians' reviews (`cxrcap.reviews`) summarised, and set against the metrics.

`summarise`: per variant the share of each rating with a Wilson 95% interval over
reviews; per metric Kendall's tau-b between the rating (wrong < partly < correct) and the
caption's score against its ground truth, with a percentile bootstrap interval that resamples
images (reviews of one image move together). `summary_markdown` shows it (the app's Results tab
and `reviews summary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from . import metrics
from .reviews import RATING_LABELS, RATINGS
from .variants import VARIANTS

RATING_RANK = {"wrong": 0, "partly": 1, "correct": 2}  # the order Kendall's tau compares scores with
WILSON_Z = 1.959963984540054  # two-sided 95%
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CHUNK = 100  # resamples computed at once: bounds memory to 100 x reviews floats


@dataclass(frozen=True)
class Share:
    count: int
    share: float
    low: float
    high: float


@dataclass(frozen=True)
class VariantSummary:
    variant: str
    n_reviews: int
    n_reviewers: int  # distinct names; unnamed reviews are not counted as reviewers
    n_images: int
    shares: dict[str, Share]  # by rating


@dataclass(frozen=True)
class Agreement:
    metric: str
    n_reviews: int  # reviews with this score (a ground truth; for finding F1 also a finding named)
    tau_b: float  # nan when undefined (fewer than two reviews, or all ratings or all scores equal)
    low: float
    high: float


@dataclass(frozen=True)
class Summary:
    n_reviews: int
    n_reviewers: int
    n_images: int
    variants: list[VariantSummary]
    agreements: list[Agreement]


def wilson_interval(count: int, total: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (stays inside [0, 1], sensible for small n)."""
    if total == 0:
        return math.nan, math.nan
    p = count / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def kendall_tau_b(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Kendall's tau-b of x (few distinct values, e.g. ratings) against y, for each row of
    `weights` (how many times each observation counts: a bootstrap resample). Without weights,
    a 1-element array: the plain tau-b (equal to `scipy.stats.kendalltau(x, y, variant="b")`).

    O(levels² · n log n) per row, not O(n²): pairs are counted level against level with sorted
    cumulative weights, so a thousand resamples of thousands of reviews take milliseconds.
    """
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    weights = np.ones((1, len(x))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    total = weights.sum(axis=1)
    pairs = total * (total - 1) / 2
    levels = np.unique(x)
    level_weights = np.stack([weights[:, x == level].sum(axis=1) for level in levels], axis=1)
    ties_x = (level_weights * (level_weights - 1) / 2).sum(axis=1)
    by_y = np.argsort(y, kind="stable")
    group_starts = np.flatnonzero(np.r_[True, np.diff(y[by_y]) != 0])
    y_weights = np.add.reduceat(weights[:, by_y], group_starts, axis=1)  # weight of each distinct y
    ties_y = (y_weights * (y_weights - 1) / 2).sum(axis=1)
    concordant_minus_discordant = np.zeros(len(weights))
    for low_index, low in enumerate(levels):
        below = np.flatnonzero(x == low)
        order = np.argsort(y[below], kind="stable")
        y_low = y[below][order]
        cumulative = np.concatenate([np.zeros((len(weights), 1)), weights[:, below][:, order].cumsum(axis=1)], axis=1)
        for high in levels[low_index + 1:]:
            above = np.flatnonzero(x == high)
            smaller = cumulative[:, np.searchsorted(y_low, y[above], side="left")]  # y_i < y_j: concordant
            larger = cumulative[:, -1:] - cumulative[:, np.searchsorted(y_low, y[above], side="right")]
            concordant_minus_discordant += ((smaller - larger) * weights[:, above]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return concordant_minus_discordant / np.sqrt((pairs - ties_x) * (pairs - ties_y))


def summarise(rows: Sequence[dict], *, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Summary:
    """Per-variant shares of each rating and per-metric agreement with the ratings (see module doc)."""
    variants = []
    for variant in [v for v in VARIANTS if any(row["variant"] == v for row in rows)]:
        own = [row for row in rows if row["variant"] == variant]
        shares = {}
        for rating in RATINGS:
            count = sum(row["rating"] == rating for row in own)
            shares[rating] = Share(count, count / len(own), *wilson_interval(count, len(own)))
        variants.append(VariantSummary(variant, len(own), _reviewers(own), len({r["image_sha256"] for r in own}), shares))
    return Summary(len(rows), _reviewers(rows), len({row["image_sha256"] for row in rows}), variants,
                   _agreements(rows, n_resamples, seed))  # fmt: skip


def _reviewers(rows: Iterable[dict]) -> int:
    return len({row["reviewer"].casefold() for row in rows if row["reviewer"]})


def _agreements(rows: Sequence[dict], n_resamples: int, seed: int) -> list[Agreement]:
    scored = [row for row in rows if row["scores"]]
    image_index = {sha: index for index, sha in enumerate(sorted({row["image_sha256"] for row in scored}))}
    image_of = np.array([image_index[row["image_sha256"]] for row in scored], dtype=int)
    ranks = np.array([RATING_RANK[row["rating"]] for row in scored])
    values = {key: np.array([row["scores"].get(key, math.nan) for row in scored], dtype=float)
              for key in metrics.SENTENCE_KEYS}  # fmt: skip
    resampled = {key: [] for key in values}
    # Resample images, not reviews: reviews of one X-ray are not independent of each other.
    # In chunks: a resample's weights are one row of (resamples x reviews) floats.
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples if len(image_index) > 1 else 0, BOOTSTRAP_CHUNK):  # one image: no interval
        size = min(BOOTSTRAP_CHUNK, n_resamples - start)
        # How often each image is drawn when drawing as many images as there are, with replacement.
        image_counts = rng.multinomial(len(image_index), np.full(len(image_index), 1 / len(image_index)), size=size)
        weights = image_counts[:, image_of].astype(float)
        for key, scores in values.items():
            keep = ~np.isnan(scores)
            if keep.sum() >= 2:
                resampled[key].append(kendall_tau_b(ranks[keep], scores[keep], weights[:, keep]))
    agreements = []
    for key, scores in values.items():
        keep = ~np.isnan(scores)
        if keep.sum() < 2:
            agreements.append(Agreement(key, int(keep.sum()), math.nan, math.nan, math.nan))
            continue
        tau = float(kendall_tau_b(ranks[keep], scores[keep])[0])
        taus = np.concatenate(resampled[key]) if resampled[key] else np.array([])
        taus = taus[~np.isnan(taus)]
        low, high = np.percentile(taus, [2.5, 97.5]) if len(taus) else (math.nan, math.nan)
        agreements.append(Agreement(key, int(keep.sum()), tau, float(low), float(high)))
    return agreements


def summary_markdown(summary: Summary) -> str:
    """The summary as Markdown tables (the app's Results tab and `reviews summary`)."""
    if not summary.n_reviews:
        return "No reviews yet. Rate the captions on the Caption tab (or through the `/review` API)."
    lines = [
        f"**{_count(summary.n_reviews, 'review')}** of captions of {_count(summary.n_images, 'image')} by "
        f"{_count(summary.n_reviewers, 'named reviewer')}.",
        "",
        "| Variant | Reviews | Reviewers | " + " | ".join(RATING_LABELS[r].capitalize() for r in RATINGS) + " |",
        "|---|---:|---:|" + "---:|" * len(RATINGS),
    ]
    for variant in summary.variants:
        cells = [f"{s.share:.0%} ({s.low:.0%}-{s.high:.0%})" for s in variant.shares.values()]
        lines.append(f"| {VARIANTS[variant.variant].label} | {variant.n_reviews} | {variant.n_reviewers} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += [
        "",
        "Share of reviews with each rating, with its Wilson 95% interval over reviews.",
        "",
        "| Metric | Reviews scored | Kendall's tau-b vs rating | 95% interval |",
        "|---|---:|---:|---|",
    ]
    for agreement in summary.agreements:
        tau = "n/a" if math.isnan(agreement.tau_b) else _signed(agreement.tau_b)
        interval = "n/a" if math.isnan(agreement.low) else f"{_signed(agreement.low)} to {_signed(agreement.high)}"
        lines.append(f"| {metrics.METRIC_LABELS[agreement.metric]} | {agreement.n_reviews} | {tau} | {interval} |")
    lines += [
        "",
        "Rank agreement between each caption's score against its ground truth and the clinician's rating "
        "(wrong < partly < correct): +1 means the metric orders captions as clinicians do. Interval: "
        f"percentile bootstrap over images ({BOOTSTRAP_RESAMPLES:,} resamples; n/a for a single image); n/a where "
        "all ratings or all scores are equal.",
    ]
    return "\n".join(lines)


def _signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"  # + 0.0: a rounded -0.0 shows as +0.00


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"
