"""The report's files: the predictions and how they were made, and the results table.

Into the report's folder (`python -m cxrcap report --out`, default `results/`):

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
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from . import metrics
from .captioner import Captioner, DecodeSettings
from .report import UNKNOWN_DECODING, EvaluationSet, PredictionsRecord, ReportError, Row

PREDICTIONS_FILE = "predictions.csv"
PREDICTIONS_RECORD = "predictions.json"  # beside any predictions CSV: `record_path`
OUTPUT_FILES = (PREDICTIONS_FILE, PREDICTIONS_RECORD, "results.md", "results.csv", "results.json",
                "metrics.png", "metrics.svg", "qualitative.png", "qualitative.svg")
METRIC_ORDER = tuple(metrics.METRIC_LABELS)  # the study's six first, in its order, then ours


# ---------------------------------------------------------------- predictions


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


# ---------------------------------------------------------------- results


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
