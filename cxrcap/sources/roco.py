"""ROCO (github.com/razorx89/roco-dataset): a checkout, the repository root or its `data/` folder.

Each split is `<split>/radiology/{captions,keywords,cuis,licences}.txt`, its images at
`<split>/radiology/images/<ROCO id>.jpg` as the repository's `scripts/fetch.py` names them (older
versions of that script named them `<PMC id>_<file>`, the second column of `licences.txt`; both are
found). Only the `radiology` half of ROCO is read. Its CUIs are automatic (extracted from the
caption), so the caption rule judges its figures. Captions are stripped of surrounding whitespace
(ROCO puts a space after the tab); the clinical text is kept as written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import CAPTION, SPLITS, UNKNOWN_LICENSE, Choose, DataError, Image, Read, ReadOptions, Row, Source
from .text_files import csv_rows, numbered_lines

NOT_THIS_FORMAT = "not ROCO (no <split>/radiology/captions.txt in it or in its data/ folder)"
ROCO_ID = re.compile(r"ROCO_\d+")
FILES = ("captions.txt", "keywords.txt", "cuis.txt", "licences.txt")


def detect(source: str | os.PathLike) -> RocoCheckout | None:
    data_dir = _data_folder(Path(source).expanduser())
    return RocoCheckout(data_dir) if data_dir is not None else None


def _data_folder(source: Path) -> Path | None:
    """The folder holding `<split>/radiology/`: the repository's `data/` or `source` itself."""
    for base in (source / "data", source):
        if any((base / split / "radiology").is_dir() for split in SPLITS):
            return base
    return None


class RocoCheckout(Source):
    chest_filter = True  # ROCO's radiology figures mix every modality

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def describe(self) -> str:
        return f"ROCO checkout at {self.data_dir}"

    def splits(self) -> list[str]:
        return [split for split in SPLITS if (self.data_dir / split / "radiology" / "captions.txt").is_file()]

    def absent_splits(self) -> dict[str, str]:
        present = self.splits()
        return {name: f"no {name}/radiology/captions.txt" for name in SPLITS if name not in present}

    def read(self, split: str, choose: Choose, options: ReadOptions) -> Read:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}: ROCO's splits are {', '.join(SPLITS)}")
        folder = self.data_dir / split / "radiology"
        if not (folder / "captions.txt").is_file():
            present = ", ".join(self.splits()) or "none"
            raise DataError(f"split {split!r} is absent: no {folder / 'captions.txt'} (present: {present})")
        for name in FILES:
            if not (folder / name).is_file():
                raise DataError(f"{folder / name}: file not found (a ROCO split needs {', '.join(FILES)})")
        captions_path = folder / "captions.txt"
        captions = _table(captions_path)
        keywords = _table(folder / "keywords.txt")
        cuis = _table(folder / "cuis.txt")
        licences = _licences_file(folder / "licences.txt")
        rows = []
        for position, (row_id, parts) in enumerate(captions.items()):
            caption = " ".join(parts)  # a tab inside a caption is read as a space
            if not caption:
                raise DataError(f"{captions_path}: {row_id} has an empty caption")
            licence, pmc_file = licences.get(row_id, (UNKNOWN_LICENSE, ""))
            files = tuple(folder / "images" / name for name in (f"{row_id}.jpg", pmc_file) if name)
            rows.append(Row(row_id, {CAPTION: caption}, licence, figure_credit(licence, pmc_file), (Image(files),),
                            tuple(keywords.get(row_id, ())), tuple(cuis.get(row_id, ())), position=position))
        advice = ("ROCO ships download links, not images: run the ROCO repository's scripts/fetch.py "
                  f"to put them in {split}/radiology/images/")
        return Read(choose(rows), missing_images_advice=advice)


def _roco_id(path: Path, number: int, text: str) -> str:
    if not ROCO_ID.fullmatch(text):
        raise DataError(f"{path}, line {number}: expected a ROCO id (ROCO_<digits>), got {text[:40]!r}")
    return text


def _table(path: Path) -> dict[str, list[str]]:
    """A tab-separated ROCO file: id, then values (ROCO leaves an empty column after the id)."""
    table: dict[str, list[str]] = {}
    for number, line in numbered_lines(path):
        if "\t" not in line:
            raise DataError(f"{path}, line {number}: expected '<ROCO id><TAB>...', found no tab")
        first, *values = line.split("\t")
        row_id = _roco_id(path, number, first.strip())
        if row_id in table:
            raise DataError(f"{path}, line {number}: {row_id} appears a second time")
        table[row_id] = [value.strip() for value in values if value.strip()]
    return table


def _licences_file(path: Path) -> dict[str, tuple[str, str]]:
    """ROCO id -> (licence, PMC file name `PMC<id>_<figure file>`) from `licences.txt`."""
    header, rows = csv_rows(path)
    if header != ["ROCO_ID", "PMC_ID", "CC"]:
        raise DataError(f"{path}, line 1: expected the header ROCO_ID,PMC_ID,CC, got {','.join(header)}")
    licences = {}
    for number, (row_id, pmc_file, licence) in rows:
        licences[_roco_id(path, number, row_id.strip())] = (licence.strip(), pmc_file.strip())
    return licences


def read_licences(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """ROCO id -> (licence, PMC file) from ROCO's `licences.txt`, or from every split's one in a ROCO checkout."""
    path = Path(path)
    if path.is_file():
        return _licences_file(path)
    data_dir = _data_folder(path) if path.is_dir() else None
    files = [data_dir / split / "radiology" / "licences.txt" for split in SPLITS] if data_dir else []
    files = [file for file in files if file.is_file()]
    if not files:
        raise DataError(f"{path}: not ROCO's licences.txt, nor a ROCO checkout with <split>/radiology/licences.txt")
    return {row_id: value for file in files for row_id, value in _licences_file(file).items()}


def figure_credit(licence: str, pmc_file: str) -> str:
    """The credit of a ROCO figure: its licence, and its article and figure in PubMed Central."""
    pmc_id, _, figure = pmc_file.partition("_")
    return f"{licence}; PubMed Central {pmc_id}, figure {figure} (ROCO)" if figure else f"{licence}; ROCO"
