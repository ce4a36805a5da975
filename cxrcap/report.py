"""Evaluate the variants on a split: the images, every variant's captions, two baselines, the scores.

`cxrcap.cli.report` (`python -m cxrcap report`) runs these in order and `cxrcap.results` writes
what they return into the report's files; `cxrcap.figures` draws them.

Two baselines that never look at the image are always in the table, because a constant
caption can outscore real models on n-gram metrics:
- constant caption: the pool caption with the highest mean ROUGE-1 F1 against the pool, one
  prediction for every image (see `best_matching_caption` for the exact, cheap definition);
- random caption: for each image a pool caption drawn with a fixed seed (never the image's own).
The pool is the source's train split, else its validation split; a source without splits
(an image folder) uses the evaluated captions themselves, and the report says so.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import heatmaps, metrics, sources
from .captioner import Captioner, DecodeSettings, VariantUnavailable, cap_caption
from .images import ImageError, load_image

CONSTANT, RANDOM = "constant-caption", "random-caption"
UNKNOWN_DECODING = "decoding settings unknown"
CI_LEVEL = 0.95
PREPROCESS_CHUNK = 32
# Sizes of the samples that choose the constant caption: candidates x references pairs,
# each pair a Counter intersection (~5 us), so a few seconds at most for any pool.
CONSTANT_CANDIDATES, CONSTANT_REFERENCES = 500, 1000


class ReportError(ValueError):
    """The report cannot be made as asked; the message says why and what to do."""


@dataclass
class Row:
    """One line of the results table: a variant or a baseline."""

    name: str  # variant id, or CONSTANT / RANDOM
    label: str
    kind: str  # "model" | "baseline"
    untrained: bool = False
    reason: str | None = None  # why there are no scores
    n_images: int = 0
    settings: str = ""  # decoding settings, or how the baseline predicts
    seconds: float | None = None  # generation time, models only
    preprocess_seconds: float | None = None  # None: pixel values shared with an earlier variant
    scores: dict[str, float | None] = field(default_factory=dict)  # finding_f1 None: no finding named
    ci: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    pairs_without_findings: int | None = None  # pairs naming no finding: they add nothing to finding F1
    notes: tuple[str, ...] = ()  # `Captioner.notes`: the extra slot's model, licence, prompt

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def display_label(self) -> str:
        return f"{self.label} (untrained)" if self.untrained else self.label


@dataclass
class EvaluationSet:
    """The images that could be read, in split order, plus what could not be evaluated."""

    ids: list[str]
    references: list[str]
    images: list[Image.Image]
    credits: list[str]
    missing: list[str]  # rows whose image file does not exist
    unreadable: dict[str, str]  # id -> why the image could not be read


@dataclass
class PredictionsRecord:
    """How the variants' captions were made: generated now, or read back beside a predictions CSV."""

    settings: DecodeSettings | None  # None: unknown (an older or hand-made CSV); why_unknown says why
    why_unknown: str | None = None

    def describe(self) -> str:
        if self.settings:
            return self.settings.describe()
        return f"{UNKNOWN_DECODING} ({self.why_unknown}); the untrained labels follow this command's --tiny-random"


@dataclass
class BaselinePool:
    captions: list[str]
    ids: list[str]
    description: str  # where the captions come from, for the table's notes


# ---------------------------------------------------------------- images and captions


MAX_FINDING_WORDS = 3  # overlays per model and X-ray in the qualitative figure


def finding_word_overlays(
    captioners: dict[str, Captioner], evaluation: EvaluationSet, predictions: dict[str, list[str]],
    rows: list[Row], n: int, method: str,
) -> list[dict[str, list[tuple[str, Image.Image]] | str]]:
    """For the qualitative figure's first N X-rays: each model's finding words with the X-ray under
    that word's heatmap, or why there are none."""
    models = [row for row in rows if row.kind == "model" and row.available]
    panels = []
    for i in range(min(n, len(evaluation.ids))):
        image, panel = evaluation.images[i], {}
        for row in models:
            maps = heatmaps.heatmaps_or_reason(captioners[row.name], image, predictions[row.name][i], method)
            if isinstance(maps, str):
                panel[row.name] = f"no heatmaps: {maps}"
                continue
            words = heatmaps.finding_word_indices(maps.words)[:MAX_FINDING_WORDS]
            panel[row.name] = [
                (maps.words[w], heatmaps.overlay(image, maps.word_maps[w], maps.geometry)) for w in words
            ] or "the caption names no finding"
        panels.append(panel)
    return panels


def read_evaluation_set(split: sources.SplitData, limit: int | None) -> EvaluationSet:
    """Read the split's images once (every variant captions the same decoded images).

    The images stay in memory (about 3 MB per 1024-px X-ray): use --limit for very large splits.
    """
    dataset = split.dataset
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    # Decode with cxrcap.images (DICOM, 16-bit, size limits, clear errors), not with datasets.
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    evaluation = EvaluationSet([], [], [], [], list(split.missing_images), {})
    for row in tqdm(dataset, desc="reading images", unit="img"):
        stored = row["image"]
        try:
            image = load_image(stored["bytes"] if stored.get("bytes") else stored["path"])
        except ImageError as error:
            evaluation.unreadable[row["id"]] = str(error)
            continue
        evaluation.ids.append(row["id"])
        evaluation.references.append(row["caption"])
        evaluation.images.append(image)
        evaluation.credits.append(row.get("credit") or "")
    return evaluation


def default_batch_size(device: torch.device) -> int:
    if device.type == "cuda":
        # Measured on one H200 (bf16, base size): batch 100 gives GIT 160 and BLIP 115 images/s.
        memory_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
        return 100 if memory_gib >= 40 else 32
    return 8  # on a CPU larger batches gain little and cost memory


def generate_predictions(
    captioners: dict[str, Captioner], images: Sequence[Image.Image], settings: DecodeSettings, batch_size: int
) -> tuple[dict[str, list[str]], list[Row]]:
    """Caption every image with every variant, in batches; one Row per variant.

    Variants with the same image processor (GIT base and fine-tuned; BLIP base and fine-tuned)
    share one pre-processing of the images, done on the CPU before generation starts.
    """
    predictions, rows = {}, []
    pixels: dict[str, torch.Tensor] = {}  # preprocessing_key -> pixel values of every image
    for variant_id, captioner in captioners.items():
        row = _model_row(variant_id, captioner, settings)
        rows.append(row)
        try:
            captioner.load()
        except VariantUnavailable as error:
            row.reason = str(error)
            continue
        key = captioner.preprocessing_key
        if key not in pixels:
            start = time.perf_counter()
            pixels[key] = preprocess(captioner, images, desc=f"{row.display_label}: preprocessing")
            row.preprocess_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predictions[variant_id], batch_size = generate_in_batches(
            captioner, pixels[key], settings, batch_size, desc=row.display_label
        )
        row.seconds = time.perf_counter() - start
        row.notes = captioner.notes(settings)  # now with what loading found (the extra slot's licence, prompt)
    return predictions, rows


def preprocess(
    captioner: Captioner, images: Sequence[Image.Image], desc: str = "", progress: bool = True
) -> torch.Tensor | list:
    """Every image's pixel values for this captioner's model, in chunks (for the progress bar).

    Pixel tensors are concatenated; the extra slot prepares per batch (its processor needs the
    prompt too), so its `preprocess` hands back the images as a list, joined as one.
    """
    chunks = [
        captioner.preprocess(images[i : i + PREPROCESS_CHUNK])
        for i in tqdm(range(0, len(images), PREPROCESS_CHUNK), desc=desc, unit="chunk", disable=not progress)
    ]
    return torch.cat(chunks) if isinstance(chunks[0], torch.Tensor) else [item for chunk in chunks for item in chunk]


def generate_in_batches(
    captioner: Captioner,
    pixel_values: torch.Tensor | list,
    settings: DecodeSettings,
    batch_size: int,
    desc: str = "",
    progress: bool = True,
) -> tuple[list[str], int]:
    """Caption pre-processed images batch by batch; halves the batch when the GPU runs out of memory.

    Returns the captions (each cut to the caption length, `cap_caption`, as the app shows and
    scores them) and the batch size that worked, for the next variant to start from.
    """
    captions: list[str] = []
    with tqdm(total=len(pixel_values), desc=desc, unit="img", disable=not progress) as bar:
        while len(captions) < len(pixel_values):
            batch = pixel_values[len(captions) : len(captions) + batch_size]
            try:
                answers = captioner.decode(captioner.generate_ids(batch, settings))
                captions += [cap_caption(answer, settings.max_new_tokens)[0] for answer in answers]
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size //= 2
                torch.cuda.empty_cache()
                tqdm.write(f"out of GPU memory: going on with batches of {batch_size}")
                continue
            bar.update(len(batch))
    return captions, batch_size


def _model_row(variant_id: str, captioner: Captioner, settings: DecodeSettings) -> Row:
    return Row(
        variant_id, captioner.label, "model", untrained=captioner.untrained, settings=settings.describe(),
        notes=captioner.notes(settings),
    )


# ---------------------------------------------------------------- baselines


def baseline_pool(source: str, evaluated: sources.SplitData) -> BaselinePool:
    """Captions the baselines draw from: train, else validation, else the evaluated split.

    Captions need no image, so rows whose image is missing count too.
    """
    evaluated_ids = set(_all_ids(evaluated))
    for name in ("train", "validation"):
        try:
            candidate = sources.load_split(source, name) if name != evaluated.name else None
        except sources.DataError:  # the source has no such split
            continue
        if candidate is not None and set(_all_ids(candidate)) - evaluated_ids:
            return _pool(candidate, f"the {name} split")
    return _pool(
        evaluated,
        f"the evaluated {evaluated.name} split itself: the source has no other split, so the constant "
        "caption was chosen among the very captions it is scored against",
    )


def _all_ids(split: sources.SplitData) -> list[str]:
    return list(split.dataset["id"]) + [row["id"] for row in split.missing_rows]


def _pool(split: sources.SplitData, where: str) -> BaselinePool:
    captions = list(split.dataset["caption"]) + [row["caption"] for row in split.missing_rows]
    return BaselinePool(captions, _all_ids(split), f"{len(captions)} captions of {where}")


def best_matching_caption(captions: Sequence[str], seed: int = 0) -> str:
    """The caption that best matches the others: highest mean ROUGE-1 F1 against them.

    Precisely: up to CONSTANT_CANDIDATES distinct captions (a seeded sample when there are more)
    are each scored against up to CONSTANT_REFERENCES captions (a seeded sample), leaving out one
    occurrence of the candidate itself; the score is the table's ROUGE-1 F1 (`metrics.normalise`,
    then rouge_score's default tokenizer, no stemmer): 2 * shared unigrams / (len(a) + len(b)),
    computed here on Counters tokenised once, because rouge_score re-tokenises on every call.
    Ties go to the shorter caption, then the alphabetically first.
    """
    from rouge_score.tokenizers import DefaultTokenizer

    if not captions:
        raise ReportError("no captions to choose a constant caption from")
    rng = random.Random(seed)
    distinct = sorted(set(captions))
    candidates = rng.sample(distinct, min(len(distinct), CONSTANT_CANDIDATES))
    references = rng.sample(list(captions), min(len(captions), CONSTANT_REFERENCES))
    tokenizer = DefaultTokenizer(use_stemmer=False)
    counts = {text: Counter(tokenizer.tokenize(metrics.normalise(text))) for text in set(candidates) | set(references)}
    sizes = {text: sum(count.values()) for text, count in counts.items()}

    def mean_f1(candidate: str) -> float:
        total, n = 0.0, 0
        own_skipped = False
        for reference in references:
            if reference == candidate and not own_skipped:
                own_skipped = True
                continue
            size = sizes[candidate] + sizes[reference]
            total += 2 * sum((counts[candidate] & counts[reference]).values()) / size if size else 0.0
            n += 1
        return total / n if n else 0.0

    return min(candidates, key=lambda text: (-mean_f1(text), len(text), text))


def baseline_predictions(pool: BaselinePool, ids: list[str], seed: int = 0) -> dict[str, tuple[list[str], str]]:
    """Both baselines' predictions for `ids`, each with a sentence saying how they were made."""
    constant = best_matching_caption(pool.captions, seed)
    rng = random.Random(seed)
    drawn = []
    for image_id in ids:
        index = rng.randrange(len(pool.ids))
        while pool.ids[index] == image_id and len(pool.ids) > 1:  # never the image's own caption
            index = rng.randrange(len(pool.ids))
        drawn.append(pool.captions[index])
    constant_how = f"always {constant!r}, the pool caption with the highest mean ROUGE-1 F1 against the others"
    return {
        CONSTANT: ([constant] * len(ids), f"{constant_how} (seed {seed})"),
        RANDOM: (drawn, f"a pool caption drawn at random for each image, never the image's own (seed {seed})"),
    }


# ---------------------------------------------------------------- scores


def score_row(row: Row, predictions: list[str], references: list[str], n_resamples: int, seed: int) -> None:
    row.n_images = len(predictions)
    row.scores = metrics.corpus_scores(predictions, references)
    row.ci = metrics.bootstrap_ci(predictions, references, n_resamples=n_resamples, seed=seed, confidence=CI_LEVEL)
    row.pairs_without_findings = metrics.pairs_without_findings(predictions, references)
