"""A Hugging Face hub dataset: its id (`owner/name`), or a local folder in its layout (parquet shards,
e.g. `eltorio/ROCO-radiology` or `eltorio/ROCOv2-radiology` as `hf download` leaves them).

`hub_reader` reads parquet's text columns first, then the images of the kept rows only (other
formats are streamed once, keeping the kept rows' images), into the cache: a second run reads
nothing from the source (`SplitData.reading` counts bytes and says if it streamed). Its figures mix
modalities, so they are filtered for chest X-rays; a `cui` (or `cuis`) column is taken as ROCOv2's
curated concepts. Licences: each row's own (a `license` column), else for a hub copy of ROCO the
`licences.txt` given by the caller, joined by ROCO id, else `UNKNOWN_HUB_LICENSE`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from .base import (
    CAPTION,
    CAPTION_COLUMNS,
    LICENSE_COLUMNS,
    Choose,
    DataError,
    Image,
    Read,
    ReadOptions,
    Row,
    Source,
    pick_column,
)
from .hub_reader import IMAGE_COLUMN, SHARD_COLUMN, HubError, HubReader, is_local_layout
from .roco import ROCO_ID, figure_credit, read_licences

NOT_THIS_FORMAT = "not a copy of a hub dataset (no parquet, arrow, webdataset .tar or .jsonl files)"
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
UNKNOWN_HUB_LICENSE = "unknown (see the dataset card)"
_ID_COLUMNS = ("id", "image_id", "roco_id")
_KEYWORD_COLUMNS = ("keywords",)
_CUI_COLUMNS = ("cuis", "cui")


def detect(source: str | os.PathLike) -> HubDataset | None:
    path = Path(source).expanduser()
    if is_local_layout(path):
        return HubDataset(str(path.resolve()))
    if not path.exists() and HUB_ID.fullmatch(str(source)):
        return HubDataset(str(source))
    return None


def _terms(value) -> tuple[str, ...]:
    """A list column as is; a string column split on whitespace, commas and semicolons."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(term for term in re.split(r"[\s,;]+", value) if term)
    return tuple(str(term) for term in value)


class HubDataset(Source):
    chest_filter = True  # figures of all of radiology

    def __init__(self, where: str):
        self.where = where  # the hub id, or the resolved path of a local copy

    def describe(self) -> str:
        if HUB_ID.fullmatch(self.where) and not Path(self.where).exists():
            return f"Hugging Face hub dataset {self.where}"
        return f"local copy of a hub dataset at {self.where}"

    def splits(self) -> list[str]:
        try:
            return HubReader(self.where).splits
        except HubError as error:
            raise DataError(str(error)) from None

    def read(self, split: str, choose: Choose, options: ReadOptions) -> Read:
        licences = read_licences(options.licences) if options.licences is not None else None
        kept: list[Row] = []

        def choose_from_text(text: pa.Table, first_row: int) -> list[int]:
            chosen = choose(self._rows(split, text, first_row, options.caption_column, licences))
            kept.extend(chosen)
            return [row.position - first_row for row in chosen]

        try:
            hub_split = HubReader(self.where).split(split)
            _, files = hub_split.read(choose_from_text, options.image_column or IMAGE_COLUMN)
        except HubError as error:
            raise DataError(str(error)) from None
        found = {position: (Image((path,)),) for position, path in files.items() if path is not None}
        rows = [dataclasses.replace(row, images=found.get(row.position, ())) for row in kept]
        return Read(rows, reading={
            "bytes_read": hub_split.reads.total,  # this call only: 0 when everything came from the cache
            "bytes_stored": hub_split.stored_bytes(),
            "kept_image_bytes": sum(path.stat().st_size for path in files.values() if path is not None),
            "streamed": hub_split.reader.streamed,  # not parquet: streamed in one pass, every data file read
        })

    def _rows(self, split: str, text: pa.Table, first_row: int, caption_column: str | None,
              licences: dict[str, tuple[str, str]] | None) -> list[Row]:
        """The rows of `text` (a table of a hub split's rows but their images, from row `first_row` of
        the split on)."""
        header = [name for name in text.column_names if name != SHARD_COLUMN]
        where = f"hub dataset {self.where} ({split})"
        caption_name = pick_column(where, header, caption_column, CAPTION_COLUMNS, "caption")

        def column(usual: Sequence[str]) -> list | None:
            name = next((name for name in usual if name in header), None)
            return text.column(name).to_pylist() if name else None

        ids = [str(value) for value in column(_ID_COLUMNS)
               or [f"{split}-{first_row + index}" for index in range(text.num_rows)]]
        captions = [str(value or "").strip() for value in text.column(caption_name).to_pylist()]
        if "" in captions:
            raise DataError(f"{where}, row {first_row + captions.index('')}: empty caption")
        concepts = column(_CUI_COLUMNS)
        none = [None] * text.num_rows
        rows = []
        for index, (keywords, cuis, given) in enumerate(zip(column(_KEYWORD_COLUMNS) or none, concepts or none,
                                                             column(LICENSE_COLUMNS) or none)):
            licence, credit = self._licence(ids[index], given, licences)
            cuis = _terms(cuis)
            rows.append(Row(ids[index], {CAPTION: captions[index]}, licence, credit, keywords=_terms(keywords),
                            cuis=cuis, concepts=cuis if concepts is not None else None, position=first_row + index))
        return rows

    def _licence(self, row_id: str, given, licences: dict[str, tuple[str, str]] | None) -> tuple[str, str]:
        """(licence, credit) of a row: its own licence column, else ROCO's licences.txt by ROCO id, else unknown."""
        if given:
            return str(given), f"{given}; {self._where_credited}"
        roco_id = ROCO_ID.search(row_id)
        if licences is not None and roco_id and roco_id.group() in licences:
            licence, pmc_file = licences[roco_id.group()]
            return licence, figure_credit(licence, pmc_file)
        return UNKNOWN_HUB_LICENSE, f"{UNKNOWN_HUB_LICENSE}; {self._where_credited}"

    @functools.cached_property
    def _where_credited(self) -> str:
        """Where a row's credit says it comes from."""
        if HUB_ID.fullmatch(self.where):
            return f"{self.where} on the Hugging Face hub"
        return f"{Path(self.where).name} (a copy of a hub dataset)"
