"""An image folder with one CSV: `metadata.csv` (as `datasets`' imagefolder reads it), any single
`*.csv`, or the CSV file itself.

A column of image paths relative to the CSV and one of captions, found by their usual names or
named by the caller; optional `id`, `license` (or `licence`) and `source` (the credit) columns.
With a `split` column its rows are split by it; without, the folder is one split that is served
under whatever split name is asked for. Its images are taken as the X-rays its owner put there:
not filtered for chest X-rays unless the caller asks.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import (
    CAPTION,
    CAPTION_COLUMNS,
    LICENSE_COLUMNS,
    UNKNOWN_LICENSE,
    Choose,
    DataError,
    Image,
    Read,
    ReadOptions,
    Row,
    Source,
    pick_column,
)
from .text_files import csv_rows

NOT_THIS_FORMAT = "not an image folder (no metadata.csv or other CSV)"
_IMAGE_COLUMNS = ("file_name", "file", "image", "path", "filename")


def detect(source: str | os.PathLike) -> ImageFolder | None:
    csv_path = _find_csv(Path(source).expanduser())
    return ImageFolder(csv_path) if csv_path is not None else None


def _find_csv(source: Path) -> Path | None:
    """The CSV describing an image folder: the file itself, `metadata.csv`, or the only `*.csv`."""
    if source.is_file() and source.suffix.lower() == ".csv":
        return source
    if not source.is_dir():
        return None
    if (source / "metadata.csv").is_file():
        return source / "metadata.csv"
    candidates = sorted(source.glob("*.csv"))
    if len(candidates) > 1:
        names = ", ".join(path.name for path in candidates)
        raise DataError(f"{source}: several CSV files ({names}); name one, or call it metadata.csv")
    return candidates[0] if candidates else None


def _split_names(header: list[str], rows) -> list[str] | None:
    """The values of the CSV's `split` column in first-seen order, or None when it has none."""
    if "split" not in header:
        return None
    index = header.index("split")
    return list(dict.fromkeys(row[index].strip() for _, row in rows))


class ImageFolder(Source):
    chest_filter = False  # chosen by its owner

    def __init__(self, csv_path: Path):
        self.csv_path = csv_path

    def describe(self) -> str:
        where = self.csv_path
        if _split_names(*csv_rows(where)) is None:
            return f"image folder {where.parent} ({where.name}; no split column: one split, served under any name)"
        return f"image folder {where.parent} ({where.name}, split by its split column)"

    def splits(self) -> list[str]:
        """Its split column's values; ["test"] without one (the same rows are served under any name)."""
        return _split_names(*csv_rows(self.csv_path)) or ["test"]

    def read(self, split: str, choose: Choose, options: ReadOptions) -> Read:
        csv_path = self.csv_path
        header, rows = csv_rows(csv_path)
        where = f"{csv_path}, line 1"
        image_at = header.index(pick_column(where, header, options.image_column, _IMAGE_COLUMNS, "image"))
        caption_at = header.index(pick_column(where, header, options.caption_column, CAPTION_COLUMNS, "caption"))
        license_at = next((header.index(name) for name in LICENSE_COLUMNS if name in header), None)
        source_at = header.index("source") if "source" in header else None
        id_at = header.index("id") if "id" in header else image_at
        names = _split_names(header, rows)
        if names is not None:
            if split not in names:
                raise DataError(f"{csv_path}: no rows for split {split!r}; its split column has {', '.join(names)}")
            split_at = header.index("split")
            rows = [(number, row) for number, row in rows if row[split_at].strip() == split]
        parsed, seen = [], set()
        for number, row in rows:
            row_id, file_name, caption = row[id_at].strip(), row[image_at].strip(), row[caption_at].strip()
            if not file_name or not caption:
                raise DataError(f"{csv_path}, line {number}: empty {'image path' if not file_name else 'caption'}")
            if row_id in seen:
                raise DataError(f"{csv_path}, line {number}: id {row_id!r} appears a second time")
            seen.add(row_id)
            licence = row[license_at].strip() if license_at is not None else UNKNOWN_LICENSE
            credit = "; ".join(part for part in (licence, row[source_at].strip() if source_at is not None else "") if part)
            parsed.append(Row(row_id, {CAPTION: caption}, licence, credit, (Image((csv_path.parent / file_name,)),),
                              position=len(parsed)))
        return Read(choose(parsed))
