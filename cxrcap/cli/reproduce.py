"""`python -m cxrcap reproduce --data SOURCE --out DIR`: the whole study into one folder (`cxrcap.reproduce`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import sources
from ..runs import differences
from ..reproduce import (
    FAMILIES,
    OPTIONS_FILE,
    ReproduceError,
    check_can_push,
    finetune,
    prepare_data,
    push,
    report,
    report_is_current,
    space_variables,
    write_cards,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="SOURCE",
                        help="a hub dataset id (e.g. eltorio/ROCOv2-radiology), a local copy of one, a ROCO "
                             "checkout or an image folder with a CSV")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where everything goes")
    parser.add_argument("--fast", action="store_true", help="fine-tune with the fast profile (same recipe)")
    parser.add_argument("--push-to-hub", metavar="OWNER/PREFIX",
                        help="push the checkpoints (OWNER/PREFIX-git-base-ft, ...-blip-base-ft) and the results "
                             "(dataset OWNER/PREFIX-results)")
    parser.add_argument("--tiny-random", action="store_true",
                        help="tiny random models instead of the real base models (CPU, minutes; for trials)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each fine-tune after N updates (trials)")
    parser.add_argument("--licence", metavar="NAMES", help='keep only images with these licences, e.g. "CC BY"')
    parser.add_argument("--licences", type=Path, metavar="FILE",
                        help="ROCO's licences.txt (or a ROCO checkout): licences of a hub copy of ROCO, by ROCO id")


def run(args: argparse.Namespace) -> int:
    """`python -m cxrcap reproduce`: a failed step is a message, not a traceback."""
    try:
        return _run_steps(args)
    except (ReproduceError, sources.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run_steps(args: argparse.Namespace) -> int:
    if args.max_steps is not None and args.max_steps < 1:
        raise ReproduceError("--max-steps must be at least 1")
    if args.push_to_hub:
        check_can_push(args.push_to_hub)
    _check_options(args)
    print(f"== data: {sources.describe_source(args.data)}", flush=True)
    summary = prepare_data(args)
    base_sources = {}
    if args.tiny_random:
        from ..tiny import tiny_sources

        base_sources = tiny_sources(["git-base", "blip-base"])
    for family in FAMILIES:
        finetune(args, family, base_sources)
    if report_is_current(args.out):
        print(f"\n== report: done already ({args.out / 'results.md'})")
    else:
        report(args)
    write_cards(args.out, summary)
    if args.push_to_hub:
        push(args.out, args.push_to_hub, summary)
        print("\nSpace variables (Settings -> Variables of your Space):")
        print("\n".join(space_variables(args.push_to_hub)))
    print(f"\ndone: python app.py --results {args.out}  (shows the results; loads the fine-tuned variants from "
          f"{args.out / 'checkpoints'})")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """A rerun into the same DIR must be the same run: its steps' outputs are reused."""
    options = {"data": str(args.data), "fast": args.fast, "tiny_random": args.tiny_random,
               "max_steps": args.max_steps, "licence": args.licence,
               "licences": str(args.licences) if args.licences else None}
    path = args.out / OPTIONS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = differences(saved, options)
        if changed:
            raise ReproduceError(f"{args.out} holds a run with other options ({'; '.join(changed)}): "
                                 "rerun with the same options to continue it, or choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
