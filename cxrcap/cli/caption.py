"""`python -m cxrcap caption IMAGE... [--json] [--heatmaps OUT_DIR]`: each image with each variant."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import heatmaps
from ..captioner import UNTRAINED_NOTE, CaptionResult, DecodeSettings, dtype_name
from ..images import ImageError, load_image
from ..lineup import build_captioners
from ..scheduler import stream_captions
from ..variants import parse_variant_ids
from .options import add_decode_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, DICOM, ...)")
    add_decode_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list of {image, variant, caption, ...}")
    parser.add_argument(
        "--heatmaps", type=Path, default=None, metavar="OUT_DIR",
        help="also write where each word looks: OUT_DIR/<image stem>-<variant id>.png|.json",
    )
    parser.add_argument(
        "--heatmap-method", choices=heatmaps.METHODS, default=heatmaps.DEFAULT_METHOD,
        help=f"how the heatmaps are computed (default {heatmaps.DEFAULT_METHOD}; see cxrcap/heatmaps.py)",
    )


def run(args: argparse.Namespace) -> int:
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
    from .. import figures  # imports matplotlib: only once there is something to draw

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
