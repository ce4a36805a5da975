"""`python -m cxrcap data`: read a source's splits, print per split what was kept and why (rule,
licences, missing images, bytes read), any overlap between splits; `--out` writes the kept rows."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import datasets

from ..files import atomic_file
from ..sources import (
    DataError,
    SplitData,
    absent_splits,
    available_splits,
    check_split_overlap,
    describe_source,
    load_split,
)
from ..sources.summary import split_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roco", required=True, metavar="SOURCE",
                        help="a ROCO checkout (repository root or its data/ folder), an image folder "
                             "with a CSV, or a Hugging Face hub dataset id")
    parser.add_argument("--split", metavar="NAMES",
                        help="comma-separated splits, e.g. train,validation,test (default: those present)")
    parser.add_argument("--out", type=Path, metavar="FILE.csv",
                        help="write the kept rows (id, split, caption, license, credit, image path or "
                             "empty when missing) to this CSV")
    parser.add_argument("--chest-only", action=argparse.BooleanOptionalAction, default=None,
                        help="apply the chest X-ray filter (default: yes for ROCO and hub datasets, "
                             "no for image folders)")
    parser.add_argument("--image-column", help="the CSV/hub column holding image paths")
    parser.add_argument("--caption-column", help="the CSV/hub column holding captions")
    parser.add_argument("--licence", metavar="NAMES",
                        help='keep only rows with one of these licences, e.g. "CC BY" or "CC BY,CC BY-SA,CC0"')
    parser.add_argument("--licences", type=Path, metavar="FILE",
                        help="ROCO's licences.txt (or a ROCO checkout): licences of a hub copy of ROCO, by ROCO id")


def _write_csv_atomically(path: Path, splits: Sequence[SplitData]) -> int:
    """Write the kept rows to `path` through a temporary file, so a failure leaves nothing half-written."""
    if not path.parent.is_dir():
        raise DataError(f"{path}: its folder {path.parent} does not exist")
    count = 0
    with atomic_file(path, newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split", "caption", "license", "credit", "image"])
        for split in splits:
            files = split.dataset.cast_column("image", datasets.Image(decode=False))
            for row in files:
                writer.writerow([row["id"], split.name, row["caption"], row["license"], row["credit"],
                                 row["image"]["path"] or "(embedded in the dataset)"])
                count += 1
            for row in split.missing_rows:
                writer.writerow([row["id"], split.name, row["caption"], row["license"], row["credit"], ""])
                count += 1
    return count


def run(args: argparse.Namespace) -> int:
    """Print each split's counts (and any overlap between splits); 0 when every split was read."""
    try:
        print(describe_source(args.roco))
        names = [name.strip() for name in args.split.split(",") if name.strip()] if args.split \
            else available_splits(args.roco)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not names:
        print("error: no splits to read", file=sys.stderr)
        return 1
    if not args.split:
        for name, why in absent_splits(args.roco).items():
            print(f"{name}: absent ({why}); reading {', '.join(names)}")
    loaded, failed = [], False
    for name in names:
        try:
            split = load_split(args.roco, name, chest_only=args.chest_only, image_column=args.image_column,
                               caption_column=args.caption_column, licence=args.licence, licences=args.licences)
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        loaded.append(split)
        print("\n".join(split_report(split)))
    overlap = check_split_overlap(loaded)
    print("\n".join(f"overlap: {line}" for line in overlap) if overlap
          else "overlap: no id or identical image in two splits")
    if args.out is not None:
        if failed:
            print(f"not writing {args.out}: some splits could not be read", file=sys.stderr)
        else:
            try:
                count = _write_csv_atomically(args.out, loaded)
            except (DataError, OSError) as error:
                print(f"error: {args.out} not written: {error}", file=sys.stderr)
                return 1
            print(f"wrote {count} kept rows to {args.out}")
    return 1 if failed or overlap else 0
