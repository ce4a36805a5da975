"""Command line: `python -m cxrcap caption|data|report|reproduce|reviews ...`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import data, heatmaps, report, reproduce, reviews
from .captioner import (
    UNTRAINED_NOTE,
    CaptionResult,
    DecodeSettings,
    dtype_name,
    quiet_library_logs,
)
from .images import ImageError, load_image
from .lineup import build_captioners
from .scheduler import stream_captions
from .variants import EXTRA_ID, VARIANT_IDS, VARIANTS, parse_variant_ids


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that generates captions."""
    parser.add_argument(
        "--variants", default=None, help=f"comma-separated variant ids (default: all of {', '.join(VARIANT_IDS)})"
    )
    parser.add_argument("--beams", type=int, default=1, help="beam search width; 1 = greedy (default)")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="longest caption in tokens (default 30)")
    parser.add_argument(
        "--tiny-random", action="store_true", help="use tiny untrained models built locally (no download)"
    )
    parser.add_argument(
        "--extra-model", default=VARIANTS[EXTRA_ID].source or None, metavar="ID_OR_FOLDER",
        help="a fifth, vision-language model next to the study's four: hub id or folder (default: $CXRCAP_EXTRA_MODEL; "
        "`tiny` with --tiny-random)",
    )
    parser.add_argument(
        "--extra-prompt", default=None, help="what the extra model is asked (default: a one-sentence findings request)"
    )


def caption_images(args: argparse.Namespace) -> int:
    """Caption each image with each variant; one result row per (image, variant)."""
    settings = DecodeSettings(num_beams=args.beams, max_new_tokens=args.max_new_tokens)
    captioners = build_captioners(parse_variant_ids(args.variants), tiny_random=args.tiny_random,
                                  extra_model=args.extra_model, extra_prompt=args.extra_prompt)
    results = []
    for path in args.images:
        try:
            image = load_image(path)
        except ImageError as error:
            results += [_row(path, vid, c, None, None, str(error), c.notes(settings)) for vid, c in captioners.items()]
            continue
        finished = stream_captions(captioners, image, settings)  # in completion order
        for result in sorted(finished, key=lambda result: list(captioners).index(result.variant_id)):
            results.append(_row(path, result.variant_id, captioners[result.variant_id], result.caption, result.seconds,
                                result.error, result.notes, result.full_text))
            if args.heatmaps and result.caption is not None:
                captioner = captioners[result.variant_id]
                results[-1].update(write_heatmaps(args.heatmaps, path, image, captioner, result, args.heatmap_method))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results, captioners)
    return 1 if any(row["error"] for row in results) else 0


def write_heatmaps(out_dir: Path, path: Path, image, captioner, result: CaptionResult, method: str) -> dict:
    """`OUT_DIR/<image stem>-<variant id>.png|.json` for one caption; the row's heatmap fields."""
    maps = heatmaps.heatmaps_or_reason(captioner, image, result.caption, method, result.token_ids)
    if isinstance(maps, str):
        return {"heatmaps": None, "heatmaps_error": maps}
    from . import figures  # imports matplotlib: only once there is something to draw

    stem = out_dir / f"{path.stem}-{captioner.variant.id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(maps.to_json()), encoding="utf-8")
    figures.plot_word_heatmaps(image, maps, captioner.label, stem.with_suffix(".png"), captioner.untrained)
    return {"heatmaps": str(stem.with_suffix(".png")), "heatmaps_error": None}


def _row(image, variant_id, captioner, caption, seconds, error, notes=(), full_text=None) -> dict:
    return {"image": str(image), "variant": variant_id, "caption": caption, "seconds": seconds,
            "error": error, "untrained": captioner.untrained, "notes": list(notes), "full_text": full_text,
            "dtype": dtype_name(captioner.dtype)}  # what its weights compute in (CXRCAP_DTYPE, else by device)


def print_results(results: list[dict], captioners: dict) -> None:
    current = None
    for row in results:
        if row["image"] != current:
            current = row["image"]
            print(f"\n{current}")
        label = captioners[row["variant"]].label
        if row["error"]:
            print(f"  {label:16} ERROR: {row['error']}")
        else:
            note = f"  [{UNTRAINED_NOTE}]" if row["untrained"] else ""
            print(f"  {label:16} {row['caption']}  ({row['seconds']:.2f} s){note}")
        if row.get("heatmaps"):
            print(f"  {'':16} heatmaps: {row['heatmaps']} (+ .json)")
        elif row.get("heatmaps_error"):
            print(f"  {'':16} no heatmaps: {row['heatmaps_error']}")
        for line in row["notes"]:
            print(f"  {'':16} {line}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxrcap",
        description="Chest X-ray captioning with four models side by side. Captions are research suggestions, "
        "never clinical decisions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    caption = commands.add_parser("caption", help="caption X-ray images with each variant")
    caption.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, DICOM, ...)")
    add_decode_arguments(caption)
    caption.add_argument("--json", action="store_true", help="print a JSON list of {image, variant, caption, ...}")
    caption.add_argument(
        "--heatmaps", type=Path, default=None, metavar="OUT_DIR",
        help="also write where each word looks: OUT_DIR/<image stem>-<variant id>.png|.json",
    )
    caption.add_argument(
        "--heatmap-method", choices=heatmaps.METHODS, default=heatmaps.DEFAULT_METHOD,
        help=f"how the heatmaps are computed (default {heatmaps.DEFAULT_METHOD}; see cxrcap/heatmaps.py)",
    )
    caption.set_defaults(run=caption_images)

    data_command = commands.add_parser("data", help="read ROCO, filter chest X-rays, report counts")
    data.add_arguments(data_command)
    data_command.set_defaults(run=data.run)

    report_command = commands.add_parser("report", help="evaluate the variants on a split: table and figures")
    report.add_arguments(report_command)
    add_decode_arguments(report_command)
    report_command.set_defaults(run=report.run)

    reproduce_command = commands.add_parser(
        "reproduce", help="the whole study: data, both fine-tunes, the report (and the hub) into one folder")
    reproduce.add_arguments(reproduce_command)
    reproduce_command.set_defaults(run=reproduce.main)

    reviews_command = commands.add_parser("reviews", help="clinicians' reviews: summary, CSV export, delete a reviewer's")
    reviews.add_arguments(reviews_command)
    reviews_command.set_defaults(run=reviews.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_library_logs()
    try:
        return args.run(args)
    except (ValueError, OSError) as error:  # bad arguments or files: a message, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
