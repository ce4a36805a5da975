"""Data sources: every format cxrcap reads, behind one interface, to one `SplitData` per split.

What the caller names (a path, or a hub id) is handed to each format of `FORMATS` in turn; the
first that recognises it reads it:
- `roco`: a ROCO checkout (`<split>/radiology/captions.txt` and the files beside it);
- `folder`: an image folder with one CSV (image paths, captions, optional split column);
- `hub`: a Hugging Face hub dataset by id, or a local folder in its layout (parquet shards),
  read through `hub_reader` (text first, then only the kept rows' images, cached).

A format is a module with `NOT_THIS_FORMAT` (what it looked for, for the error when no format
recognises a path) and `detect(source) -> Source | None`, returning a `base.Source`: it describes
itself, lists its splits (and why any of cxrcap's is absent), and reads a split's `base.Row`s
(a study id, its text by section, its images with their views, licence and credit), handing them
to the `choose` it is given and returning the rows kept with their image files. The chest X-ray
rule (`cxrcap.chest_filter`) and the licence filter are that `choose` (`split.Filter`): applied
here, in one place, never by a format. Whether a source is filtered by default is the format's
`chest_filter`: yes for ROCO and hub datasets, whose figures mix modalities; no for an image
folder, taken as the X-rays its owner put there.

Adding a format is one module here, one line in `FORMATS` (before any format that would also
recognise its folders) and one fixture test (`tests/test_sources_<module>.py::test_fixture`: a
small folder in its layout, read through `load_split`).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import folder, hub, roco
from .base import SPLITS, DataError, ReadOptions, Source
from .split import COLUMNS, FEATURES, Filter, SplitData, check_split_overlap, parse_licence_filter, split_data

FORMATS = (roco, folder, hub)  # tried in this order

__all__ = ["COLUMNS", "FEATURES", "FORMATS", "SPLITS", "DataError", "SplitData", "absent_splits", "available_splits",
           "check_split_overlap", "describe_source", "filters_chest_xrays", "load_split", "open_source"]


def open_source(source: str | os.PathLike) -> Source:
    """The source as the first format that recognises it reads it; a DataError naming what each looked for."""
    for module in FORMATS:
        if (opened := module.detect(source)) is not None:
            return opened
    path = Path(source).expanduser()
    if path.exists():
        *others, last = (module.NOT_THIS_FORMAT for module in FORMATS)
        raise DataError(f"{path}: {', '.join(others)} and {last}")
    raise DataError(f"{path}: no such file or folder (and not a hub id of the form owner/name)")


def describe_source(source: str | os.PathLike) -> str:
    """What kind of source this is, in words."""
    return open_source(source).describe()


def available_splits(source: str | os.PathLike) -> list[str]:
    """The splits `source` has. A split-less image folder answers ["test"]: it serves the same rows under any name."""
    return open_source(source).splits()


def absent_splits(source: str | os.PathLike) -> dict[str, str]:
    """Those of cxrcap's splits (train, validation, test) that `source` lacks, each with why."""
    return open_source(source).absent_splits()


def filters_chest_xrays(source: str | os.PathLike) -> bool:
    """Whether `source` is filtered for chest X-rays by default (its format's `chest_filter`)."""
    return open_source(source).chest_filter


def load_split(source: str | os.PathLike, split: str, *, chest_only: bool | None = None,
               image_column: str | None = None, caption_column: str | None = None,
               licence: str | None = None, licences: str | os.PathLike | None = None) -> SplitData:
    """Read one split of `source` (see the module docstring) into a `SplitData`.

    `chest_only=None` means the source's default (`filters_chest_xrays`). `licence` keeps only rows
    with one of these licences ("CC BY, CC BY-SA"). `licences` (ROCO's licences.txt, or a ROCO
    checkout) gives the rows of a hub copy of ROCO their licences by ROCO id.
    """
    opened = open_source(source)
    chosen = Filter(opened.chest_filter if chest_only is None else chest_only, parse_licence_filter(licence))
    read = opened.read(split, chosen, ReadOptions(image_column, caption_column, licences))
    return split_data(split, read, chosen)
