"""`python -m cxrcap report --data SOURCE`: evaluate the variants on a split, write the report.

Reads a split with `cxrcap.sources`, captions every image with every variant in batches
(`cxrcap.report`), scores them and the two baselines, and writes the files that `cxrcap.results`
describes into `--out` (default `results/`); with `--compare-int8`, also `cxrcap.int8`'s comparison.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import __version__, heatmaps, int8, metrics, sources
from ..captioner import UNTRAINED_NOTE, DecodeSettings, pick_device, pick_dtype
from ..lineup import build_captioners
from ..report import (
    CI_LEVEL,
    CONSTANT,
    RANDOM,
    BaselinePool,
    EvaluationSet,
    PredictionsRecord,
    ReportError,
    Row,
    baseline_pool,
    baseline_predictions,
    default_batch_size,
    finding_word_overlays,
    generate_predictions,
    read_evaluation_set,
    score_row,
)
from ..results import (
    OUTPUT_FILES,
    PREDICTIONS_FILE,
    predictions_from_csv,
    record_path,
    results_markdown,
    write_csv,
    write_json,
    write_predictions,
)
from ..variants import VARIANT_IDS, parse_variant_ids
from .options import add_decode_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m cxrcap report`, then the decoding options every captioning command has."""
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
    add_decode_arguments(parser)


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
    from .. import figures  # imports matplotlib: only once there is something to draw

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
