"""What every format gives: a `Source` that lists its splits and reads a split's `Row`s.

A row is one study as the source has it, before any filter: an id, its text by section, its
images (each with candidate files and a view), its licence and credit. A figure (ROCO, an image
folder, a hub copy of ROCO) is one image and one section, its caption; a report dataset has
several images per study with their views, and findings and impression sections.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")  # cxrcap's split names: a format maps its own to them
CAPTION = "caption"  # the section a figure has: its caption
UNKNOWN_LICENSE = "unknown"
# Columns tables (a CSV, a hub dataset) usually keep captions and licences in, the first present wins.
CAPTION_COLUMNS = ("caption", "text", "report")
LICENSE_COLUMNS = ("license", "licence")


class DataError(ValueError):
    """Input data that cannot be read as asked; the message names the file (and line)."""


@dataclass(frozen=True)
class Image:
    """One image of a study: candidate files, best first (the first that exists is the image)."""

    files: tuple[Path, ...]
    view: str | None = None  # as the source names it ("PA", "lateral", ...); None where it does not say


@dataclass(frozen=True)
class Row:
    """One study as read, before the chest X-ray and licence filters."""

    study_id: str
    sections: Mapping[str, str]  # text by section: CAPTION for a figure; a report's "findings", "impression"
    license: str
    credit: str
    images: tuple[Image, ...] = ()  # in the source's order; a hub row's only once fetched (after choosing)
    keywords: tuple[str, ...] = ()
    cuis: tuple[str, ...] = ()  # UMLS CUIs, automatic or curated: the caption rule reads both
    concepts: tuple[str, ...] | None = None  # curated UMLS concepts (ROCOv2's): judged by CONCEPT_RULE instead
    position: int = 0  # the row's place in its split as read


# Chooses the rows to keep from those a source hands over (all, or one batch of them).
Choose = Callable[[Sequence[Row]], list[Row]]


@dataclass(frozen=True)
class ReadOptions:
    """What the caller may tell a format about its columns and licences (ignored where it does not apply)."""

    image_column: str | None = None  # tables: the column of images or image paths
    caption_column: str | None = None  # tables: the column of captions
    licences: str | os.PathLike | None = None  # ROCO's licences.txt (or a checkout), for a hub copy of ROCO


@dataclass
class Read:
    """What a source's `read` gives back."""

    rows: list[Row]  # the rows `choose` kept, in the source's order, each with its image files
    reading: dict[str, int | bool] | None = None  # read through a cache: bytes read and stored (hub)
    missing_images_advice: str = ""  # what to do about kept rows whose image file is absent


class Source(ABC):
    """One dataset in one format, as its module's `detect` found it."""

    chest_filter = True  # whether its rows are filtered for chest X-rays unless the caller says otherwise

    @abstractmethod
    def describe(self) -> str:
        """What the source is and where, in words."""

    @abstractmethod
    def splits(self) -> list[str]:
        """The splits it has, in its order."""

    def absent_splits(self) -> dict[str, str]:
        """Those of SPLITS it lacks, each with why (e.g. the file not found); {} where it does not say."""
        return {}

    @abstractmethod
    def read(self, split: str, choose: Choose, options: ReadOptions) -> Read:
        """Read every row of `split`, hand them to `choose` (at once, or batch by batch as they stream
        past), and give back the rows it keeps with their images; a DataError for input it cannot read."""


def pick_column(where: str, header: Sequence[str], asked: str | None, usual: Sequence[str], what: str) -> str:
    """The column named `asked`, else the first usual name present; `where` starts the error message."""
    if asked is not None:
        if asked not in header:
            raise DataError(f"{where}: no column {asked!r} for the {what}; columns: {', '.join(header)}")
        return asked
    found = next((name for name in usual if name in header), None)
    if found is None:
        raise DataError(
            f"{where}: no {what} column (looked for {', '.join(usual)}); columns: {', '.join(header)}; "
            f"name it with --{what}-column"
        )
    return found
