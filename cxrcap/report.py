"""Evaluate the variants on a split: predictions, a results table and figures.

`python -m cxrcap report --data SOURCE` reads a split with `cxrcap.sources`, captions every image
with every variant in batches, and writes into `--out` (default `results/`):

- `predictions.csv`  id, reference, one column per variant and per baseline: the table can be
                     recomputed from it (`--from-predictions`) without generating again;
- `predictions.json` how those captions were made (decoding settings, untrained weights or
                     not): `--from-predictions` labels the rows with it, not with its own flags
                     (without one, the settings show as unknown and the untrained labels
                     follow `--tiny-random`);
- `results.md|csv|json`  one row per variant plus the two baselines, every metric with its
                     bootstrap 95% CI, the number of images, the decoding settings, the metric
                     implementations, unavailable variants with their reason, and the images
                     that could not be evaluated (missing file, unreadable) by id;
- `metrics.png|svg`  grouped bar chart with CI whiskers; `qualitative.png|svg` X-rays with the
                     original caption and each model's caption (the study's slides, generated),
                     drawn by `cxrcap.figures`; with `--heatmaps`, also each model's finding
                     words' heatmaps (`cxrcap.heatmaps`) on the X-ray.

Two baselines that never look at the image are always in the table, because a constant
caption can outscore real models on n-gram metrics:
- constant caption: the pool caption with the highest mean ROUGE-1 F1 against the pool, one
  prediction for every image (see `best_matching_caption` for the exact, cheap definition);
- random caption: for each image a pool caption drawn with a fixed seed (never the image's own).
The pool is the source's train split, else its validation split; a source without splits
(an image folder) uses the evaluated captions themselves, and the report says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import datasets
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import __version__, heatmaps, int8, metrics, sources
from .captioner import (
    UNTRAINED_NOTE,
    Captioner,
    DecodeSettings,
    VariantUnavailable,
    cap_caption,
    pick_device,
    pick_dtype,
)
from .images import ImageError, load_image
from .lineup import build_captioners
from .variants import VARIANT_IDS, parse_variant_ids

PREDICTIONS_FILE = "predictions.csv"
PREDICTIONS_RECORD = "predictions.json"  # beside any predictions CSV: `record_path`
OUTPUT_FILES = (PREDICTIONS_FILE, PREDICTIONS_RECORD, "results.md", "results.csv", "results.json",
                "metrics.png", "metrics.svg", "qualitative.png", "qualitative.svg")
CONSTANT, RANDOM = "constant-caption", "random-caption"
UNKNOWN_DECODING = "decoding settings unknown"
CI_LEVEL = 0.95
PREPROCESS_CHUNK = 32
METRIC_ORDER = tuple(metrics.METRIC_LABELS)  # the study's six first, in its order, then ours
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


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m cxrcap report` (the decoding options are added by the CLI)."""
    parser.add_argument("--data", required=True, help="what cxrcap.sources reads: ROCO folder, image folder, hub id")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images of the split")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per generate() call (default: chosen for the device)"
    )
    parser.add_argument(
        "--from-predictions", type=Path, default=None, metavar="CSV",
        help="take the variants' captions from an earlier predictions.csv instead of generating them",
    )
    parser.add_argument("--qualitative", type=int, default=4, metavar="N", help="X-rays in the qualitative figure")
    parser.add_argument(
        "--heatmaps", action="store_true",
        help="add each model's finding words' heatmaps to the qualitative figure (needs the models)",
    )
    parser.add_argument(
        "--heatmap-method", choices=heatmaps.METHODS, default=heatmaps.DEFAULT_METHOD,
        help=f"how the heatmaps are computed (default {heatmaps.DEFAULT_METHOD})",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baselines and the bootstrap (default 0)")
    parser.add_argument(
        "--compare-int8", action="store_true",
        help="also caption with int8 copies of the variants (CPU) and write int8-comparison.md|csv|json: "
        "token and caption agreement with fp32, each metric's int8 - fp32 difference with a bootstrap interval",
    )


def run(args: argparse.Namespace) -> int:
    """Make every file of the report; exit code 1 when a requested variant was unavailable."""
    for name in ("limit", "batch_size", "bootstrap", "qualitative"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ReportError(f"--{name.replace('_', '-')} must be at least 1")
    settings = DecodeSettings(num_beams=args.beams, max_new_tokens=args.max_new_tokens)
    if args.compare_int8 and pick_device().type != "cpu":
        raise ReportError("--compare-int8 measures the CPU's fast mode: run it on a CPU (e.g. CUDA_VISIBLE_DEVICES= )")
    if args.compare_int8 and pick_dtype(pick_device()) != torch.float32:
        raise ReportError("--compare-int8 compares int8 with float32 captions: unset CXRCAP_DTYPE (or set it to float32)")
    metrics.warm_up()  # WordNet (for METEOR) loads in the background while the models caption
    captioners = build_captioners(parse_variant_ids(args.variants), tiny_random=args.tiny_random,
                                  quantize_int8=False if args.compare_int8 else None,  # int8 is compared with fp32
                                  extra_model=args.extra_model, extra_prompt=args.extra_prompt)
    split = sources.load_split(args.data, args.split)  # a DataError is a message for the user
    evaluation = read_evaluation_set(split, args.limit)
    if not evaluation.ids:
        raise ReportError(
            f"no readable image in split {args.split!r} of {args.data} ({len(split.missing_images)} rows have no "
            f"image file, {len(evaluation.unreadable)} unreadable): nothing to evaluate"
        )

    batch_size = args.batch_size or default_batch_size(pick_device())
    if args.from_predictions:  # labelled with how the captions were made, not with this command's flags
        predictions, rows, record = predictions_from_csv(args.from_predictions, evaluation.ids, captioners)
        if args.compare_int8:
            _check_int8_comparable(args, record, rows)
        _note_ignored_flags(args, settings, record, rows)
    else:
        predictions, rows = generate_predictions(captioners, evaluation.images, settings, batch_size)
        record = PredictionsRecord(settings)

    pool = baseline_pool(args.data, split)
    baselines = baseline_predictions(pool, evaluation.ids, seed=args.seed)
    predictions.update({name: captions for name, (captions, _) in baselines.items()})
    rows += [
        Row(CONSTANT, "Constant caption (baseline)", "baseline", settings=baselines[CONSTANT][1]),
        Row(RANDOM, "Random caption (baseline)", "baseline", settings=baselines[RANDOM][1]),
    ]
    for row in rows:
        if row.available:
            score_row(row, predictions[row.name], evaluation.references, args.bootstrap, args.seed)

    meta = report_meta(args, evaluation, pool, record, rows, batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(args.out / PREDICTIONS_FILE, evaluation, predictions, rows, record)
    write_json(args.out / "results.json", rows, meta)
    write_csv(args.out / "results.csv", rows)
    markdown = results_markdown(rows, meta)
    (args.out / "results.md").write_text(markdown, encoding="utf-8")
    from . import figures  # imports matplotlib: only once there is something to draw

    figures.plot_metrics(rows, meta, args.out / "metrics")
    overlays = None
    if args.heatmaps:
        overlays = finding_word_overlays(captioners, evaluation, predictions, rows, args.qualitative, args.heatmap_method)
    figures.plot_qualitative(
        evaluation, predictions, rows, args.qualitative, args.out / "qualitative", overlays, args.heatmap_method
    )
    print(markdown)
    if args.compare_int8:
        captioners.clear()  # the fp32 weights go before the int8 copies load: one variant's weights at a time
        print(compare_int8(args, evaluation, predictions, rows, record.settings, batch_size))
    print(f"wrote {', '.join(OUTPUT_FILES)} to {args.out}/", file=sys.stderr)
    return 0 if all(row.available for row in rows) else 1


def compare_int8(args, evaluation: EvaluationSet, predictions: dict[str, list[str]], rows: list[Row],
                 settings: DecodeSettings, batch_size: int) -> str:
    """Caption again with an int8 copy of each available variant, made with `settings` (those of the
    fp32 captions); write and return `int8.FILES`' table. Compared with the fp32 captions of this
    report (or of --from-predictions). One int8 copy at a time: each is released before the next loads."""
    models = [row for row in rows if row.kind == "model" and row.available and row.name in VARIANT_IDS]  # not the extra
    compared = [_compare_int8_variant(args, evaluation, predictions[row.name], row, settings, batch_size)
                for row in models]
    compared = [row for row in compared if row is not None]
    about = (f"{len(evaluation.ids)} images of {args.data} ({args.split} split); decoding: {settings.describe()}; "
             f"CPU, {torch.get_num_threads()} threads; speed-up: fp32 generation time / int8 generation time.")
    table = int8.write(compared, args.out, about, untrained=any(row.untrained for row in models))
    print(f"wrote {', '.join(int8.FILES)} to {args.out}/", file=sys.stderr)
    return table


def _compare_int8_variant(args, evaluation: EvaluationSet, fp32: list[str], row: Row, settings: DecodeSettings,
                          batch_size: int) -> int8.Int8Row | None:
    """One variant's int8 row (None when its int8 copy cannot load); its captioner dies on return."""
    captioner = build_captioners([row.name], tiny_random=args.tiny_random, quantize_int8=True)[row.name]
    int8_predictions, (int8_row,) = generate_predictions({row.name: captioner}, evaluation.images, settings, batch_size)
    if not int8_row.available:
        return None
    tokenizer = captioner.processor.tokenizer
    return int8.compare(
        row.name, row.display_label, fp32, int8_predictions[row.name], evaluation.references,
        lambda text: tokenizer(text, add_special_tokens=False).input_ids,
        fp32_seconds=row.seconds, int8_seconds=int8_row.seconds,
        n_resamples=args.bootstrap, seed=args.seed, confidence=CI_LEVEL,
    )


def _check_int8_comparable(args, record: PredictionsRecord, rows: list[Row]) -> None:
    """int8 copies are compared with fp32 captions made as they are: the same decoding settings
    (read from the predictions' record) and the same weights, trained or tiny random."""
    if record.settings is None:
        raise ReportError(
            f"--compare-int8 makes its int8 captions with the decoding settings of the fp32 ones it compares "
            f"against, and those of {args.from_predictions} are unknown ({record.why_unknown}): keep the "
            f"{record_path(args.from_predictions).name} written beside it, or run without --from-predictions"
        )
    other = [row.name for row in rows if row.kind == "model" and row.name in VARIANT_IDS
             and row.untrained != args.tiny_random]
    if other:
        made = "untrained tiny random weights" if not args.tiny_random else "trained weights"
        fix = "add --tiny-random" if not args.tiny_random else "drop --tiny-random"
        raise ReportError(f"--compare-int8: the {', '.join(other)} captions in {args.from_predictions} were made "
                          f"with {made}; their int8 copies would not be: {fix}")


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


def record_path(predictions_csv: Path) -> Path:
    """Where the record of how a predictions CSV was made lives: beside it, same stem, `.json`."""
    return predictions_csv.with_suffix(".json")


def read_record(predictions_csv: Path, variant_ids: Sequence[str]) -> tuple[PredictionsRecord, dict[str, bool]]:
    """How an earlier predictions CSV's captions were made, and which variants' weights were untrained.

    Without a record that describes every one of `variant_ids` (an older or hand-made CSV), the
    settings are unknown and no variant's training is known: the caller says so, never guesses.
    """
    path = record_path(predictions_csv)
    if not path.is_file():
        return PredictionsRecord(None, f"{predictions_csv} has no {path.name} beside it"), {}
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
        if written["num_beams"] is None:
            return PredictionsRecord(None, f"{path} records them as unknown"), {}
        settings = DecodeSettings(num_beams=written["num_beams"], max_new_tokens=written["max_new_tokens"])
        untrained = {str(name): bool(value) for name, value in written["untrained"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return PredictionsRecord(None, f"{path} cannot be read: {error!r}"), {}
    undescribed = [variant_id for variant_id in variant_ids if variant_id not in untrained]
    if undescribed:
        return PredictionsRecord(None, f"{path} does not describe the {', '.join(undescribed)} column(s)"), {}
    return PredictionsRecord(settings), untrained


def predictions_from_csv(
    path: Path, ids: list[str], captioners: dict[str, Captioner]
) -> tuple[dict[str, list[str]], list[Row], PredictionsRecord]:
    """The variants' captions from an earlier predictions CSV, aligned to `ids`, labelled by its record.

    Decoding settings and untrained weights come from the record beside the CSV (`record_path`);
    without one, the rows say the settings are unknown and `untrained` follows --tiny-random.
    """
    try:
        with path.open(newline="", encoding="utf-8") as file:
            table = {row["id"]: row for row in csv.DictReader(file)}
    except (OSError, KeyError) as error:
        raise ReportError(f"cannot read predictions from {path}: {error}") from None
    absent = [image_id for image_id in ids if image_id not in table]
    if absent:
        raise ReportError(
            f"{path} has no predictions for {len(absent)} of the {len(ids)} images to evaluate "
            f"(first: {absent[0]}); use the same --data, --split and --limit as when it was made"
        )
    columns = next(iter(table.values())).keys()
    record, untrained = read_record(path, [variant_id for variant_id in captioners if variant_id in columns])
    predictions, rows = {}, []
    for variant_id, captioner in captioners.items():
        row = Row(
            variant_id, captioner.label, "model", untrained=untrained.get(variant_id, captioner.untrained),
            settings=record.settings.describe() if record.settings else UNKNOWN_DECODING,
        )
        rows.append(row)
        if variant_id in columns:
            predictions[variant_id] = [table[image_id][variant_id] for image_id in ids]
        else:
            row.reason = f"{path} has no {variant_id!r} column (the variant was unavailable or not asked for)"
    return predictions, rows, record


def _note_ignored_flags(
    args: argparse.Namespace, asked: DecodeSettings, record: PredictionsRecord, rows: list[Row]
) -> None:
    """Tell the user when the rows' labels do not follow this command's decoding flags."""
    if record.settings is None:
        print(f"note: {record.describe()}", file=sys.stderr)
        return
    untrained = any(row.untrained for row in rows if row.kind == "model")
    if record.settings != asked or untrained != args.tiny_random:
        weights = "untrained tiny random weights" if untrained else "trained weights"
        print(f"note: the captions in {args.from_predictions} were made with {weights}, {record.settings.describe()}: "
              "the table says so, whatever --beams, --max-new-tokens and --tiny-random say now", file=sys.stderr)


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


def report_meta(
    args, evaluation: EvaluationSet, pool: BaselinePool, record: PredictionsRecord, rows: list[Row], batch_size: int
) -> dict:
    generated = not args.from_predictions
    settings = record.settings
    device = pick_device()
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cxrcap_version": __version__,
        "data": args.data,
        "data_description": sources.describe_source(args.data),
        "split": args.split,
        "limit": args.limit,
        "n_images": len(evaluation.ids),
        "missing_images": evaluation.missing,
        "unreadable_images": evaluation.unreadable,
        "decoding": record.describe(),
        "num_beams": settings.num_beams if settings else None,
        "max_new_tokens": settings.max_new_tokens if settings else None,
        "device": str(device) if generated else None,
        "dtype": str(pick_dtype(device)).removeprefix("torch.") if generated else None,
        "batch_size": batch_size if generated else None,
        "predictions_from": str(args.from_predictions) if args.from_predictions else None,
        "baseline_pool": pool.description,
        "metric_implementations": dict(metrics.METRIC_IMPLEMENTATIONS),
        "bootstrap": {"resamples": args.bootstrap, "seed": args.seed, "level": CI_LEVEL, "unit": "image"},
        "untrained_note": UNTRAINED_NOTE if any(row.untrained for row in rows if row.kind == "model") else None,
    }


# ---------------------------------------------------------------- files


def write_predictions(
    path: Path, evaluation: EvaluationSet, predictions: dict[str, list[str]], rows: list[Row], record: PredictionsRecord
) -> None:
    """The captions as a CSV, and beside it the record of how they were made (`read_record` reads it)."""
    columns = [row.name for row in rows if row.name in predictions]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "reference", *columns])
        for i, (image_id, reference) in enumerate(zip(evaluation.ids, evaluation.references)):
            writer.writerow([image_id, reference, *(predictions[name][i] for name in columns)])
    settings = record.settings
    written = {
        "about": f"How the model captions in {path.name} were made; "
        "`python -m cxrcap report --from-predictions` labels its rows with this (null: unknown).",
        "num_beams": settings.num_beams if settings else None,
        "max_new_tokens": settings.max_new_tokens if settings else None,
        "untrained": {row.name: row.untrained for row in rows if row.kind == "model" and row.name in predictions}
        if settings else None,
    }
    record_path(path).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")


def _row_record(row: Row) -> dict:
    record = asdict(row)
    record["label"] = row.display_label
    record["status"] = "ok" if row.available else "unavailable"
    record["images_per_second"] = row.n_images / row.seconds if row.seconds else None
    return record


def write_json(path: Path, rows: list[Row], meta: dict) -> None:
    document = {**meta, "rows": [_row_record(row) for row in rows]}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: list[Row]) -> None:
    metric_columns = [f"{key}{suffix}" for key in METRIC_ORDER for suffix in ("", "_ci_low", "_ci_high")]
    columns = ["name", "label", "kind", "status", "untrained", "n_images", "settings", *metric_columns,
               "pairs_without_findings", "reason"]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            record = {key: value for key, value in _row_record(row).items() if key in columns}
            for key in row.scores:
                record[key] = row.scores[key]
                record[f"{key}_ci_low"], record[f"{key}_ci_high"] = row.ci[key]
            writer.writerow(record)


def _score_cell(value: float | None, interval: tuple[float | None, float | None]) -> str:
    if value is None:
        return "n/a"  # finding F1 of a corpus in which no caption names a finding
    low, high = interval
    return f"{value:.3f} [{low:.2f}, {high:.2f}]"


def results_markdown(rows: list[Row], meta: dict) -> str:
    lines = [f"# Chest X-ray captioning: {meta['data']} ({meta['split']} split)", "",
             f"Source: {meta['data_description']}.", ""]
    if meta["untrained_note"]:
        warning = "> **The model rows come from untrained tiny random weights**: they show that the pipeline works"
        lines += [warning + " and say nothing about the models.", ""]
    skipped = len(meta["missing_images"]) + len(meta["unreadable_images"])
    bootstrap = meta["bootstrap"]
    summary = (
        f"{meta['n_images']} images evaluated ({skipped} not evaluated: {len(meta['missing_images'])} missing, "
        f"{len(meta['unreadable_images'])} unreadable). Decoding: {meta['decoding']}. In brackets: bootstrap "
        f"{bootstrap['level']:.0%} CI over images ({bootstrap['resamples']} resamples, seed {bootstrap['seed']})."
    )
    lines += [
        summary,
        "",
        "| Model | n | " + " | ".join(metrics.METRIC_LABELS[key] for key in METRIC_ORDER) + " |",
        "|---|--:|" + "--:|" * len(METRIC_ORDER),
    ]
    for row in rows:
        if row.available:
            cells = [_score_cell(row.scores[k], row.ci[k]) for k in METRIC_ORDER]
        else:
            cells = ["unavailable"] + [""] * (len(METRIC_ORDER) - 1)
        n = row.n_images if row.available else "–"
        lines.append(f"| {row.display_label} | {n} | " + " | ".join(cells) + " |")
    unavailable = [row for row in rows if not row.available]
    if unavailable:
        lines += ["", "## Unavailable", ""] + [f"- **{row.label}**: {row.reason}" for row in unavailable]
    for row in rows:  # the extra slot: which model, its licence, what it was asked
        if row.notes:
            lines += ["", f"## {row.label}", ""] + [f"- {note}" for note in row.notes]
    lines += ["", "## Baselines (they never look at the image)", "", f"Pool: {meta['baseline_pool']}.", ""]
    lines += [f"- **{row.label}**: {row.settings}" for row in rows if row.kind == "baseline"]
    lines += ["", "## Metrics", ""]
    lines += [f"- {metrics.METRIC_LABELS[key]}: {meta['metric_implementations'][key]}" for key in METRIC_ORDER]
    counted = [row for row in rows if row.available]
    if counted:
        lines += ["", "Finding F1 sums agreeing, extra and missing findings over all pairs before taking F1. "
                  "Pairs where neither caption names a finding add nothing: "
                  + "; ".join(f"{row.display_label} {row.pairs_without_findings} of {row.n_images}" for row in counted)
                  + "."]
    speeds = [row for row in rows if row.seconds]
    if speeds:
        device = f"Device {meta['device']} ({meta['dtype']}), batch size {meta['batch_size']}."
        lines += ["", "## Generation", "", device, ""]
        for row in speeds:
            preprocessing = (f"{row.preprocess_seconds:.1f} s" if row.preprocess_seconds is not None
                             else "shared (same image processor as an earlier variant)")
            lines.append(f"- {row.display_label}: generation {row.seconds:.1f} s "
                         f"({row.n_images / row.seconds:.1f} images/s); preprocessing {preprocessing}")
    if skipped:
        lines += ["", "## Images not evaluated", ""]
        lines += [f"- {image_id}: image file missing" for image_id in meta["missing_images"]]
        lines += [f"- {image_id}: {why}" for image_id, why in meta["unreadable_images"].items()]
    lines += ["", f"Generated {meta['generated_at']} by cxrcap {meta['cxrcap_version']}. "
              + "Captions are research suggestions, never clinical decisions.", ""]
    return "\n".join(lines)
