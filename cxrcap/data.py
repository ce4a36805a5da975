"""Captioned X-rays from ROCO, an image folder or the hub -> one `datasets.Dataset` per split.

Three sources, told apart by what `source` is:
- a ROCO checkout (the repository root, or its `data/` folder): `<split>/radiology/{captions,keywords,
  cuis,licences}.txt`, images at `<split>/radiology/images/<ROCO id>.jpg` as the repository's
  `scripts/fetch.py` names them (older versions of that script named them `<PMC id>_<file>`, the
  second column of `licences.txt`; both are found). Only the `radiology` half of ROCO is read.
- an image folder with one CSV (`metadata.csv`, as `datasets`' imagefolder reads it, or any single
  `*.csv`, or the CSV file itself): a column of image paths relative to the CSV and one of captions,
  detected by name or named by the caller. With a `split` column its rows are split by it; without,
  the folder is one split that is served under whatever split name is asked for.
- a Hugging Face hub dataset: its id (`owner/name`), or a local folder in its layout (parquet
  shards, e.g. `eltorio/ROCO-radiology` or `eltorio/ROCOv2-radiology` as `hf download` leaves
  them). `cxrcap.hub` reads parquet's text columns first, then the images of the kept rows only
  (other formats are streamed once, keeping the kept rows' images), into the cache: a second run
  reads nothing from the source (`SplitData.reading` counts bytes and says if it streamed).

The chest X-ray filter applies by default to ROCO and hub datasets, whose figures mix modalities;
an image folder is taken as the X-rays its owner put there unless `chest_only=True` is asked for.
A source with ROCOv2's curated concepts (a `cui` column) is filtered by `CONCEPT_RULE`, any other
by the caption rule `CHEST_XRAY_RULE` (`SplitData.rule`; `rule_counts` says what each would keep).
Licences: each row's own (ROCO's `licences.txt`, a CSV's `license` column, a hub dataset's
`license` column), else for a hub copy of ROCO the `licences.txt` given by the caller, joined by
ROCO id, else `UNKNOWN_HUB_LICENSE`; `licence=` keeps only rows with the licences named.
Caption cleaning is minimal: surrounding whitespace is stripped (ROCO puts a space after the
tab); the clinical text is kept as written.

Kept rows whose image file is absent are counted and listed (`SplitData.missing_images`), never
dropped silently; the dataset itself holds only rows with an image, decoded lazily from its file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import datasets

from . import hub
from .files import atomic_file, file_sha256

SPLITS = ("train", "validation", "test")
COLUMNS = ("id", "image", "caption", "license", "credit", "split")
FEATURES = datasets.Features(
    {name: datasets.Image() if name == "image" else datasets.Value("string") for name in COLUMNS}
)
UNKNOWN_LICENSE = "unknown"

# ---------------------------------------------------------------------------------------------
# The chest X-ray filter

CHEST_XRAY_RULE = """\
A figure is kept as a chest X-ray when all three hold:
1. Its caption names a chest radiograph, in one of three ways:
   - "CXR";
   - a chest word (chest, thorax, thoracic, lung; French thorax/thoracique) followed by a
     radiograph word (X-ray, radiograph/radiography, roentgenogram, film, skiagram), with only view
     words between (PA, AP, frontal, lateral, plain, portable, erect, supine, view...):
     "chest X-ray", "chest PA radiograph", "thoracic radiograph";
   - a radiograph word followed within six words by a chest word or a finding that only a chest
     film shows (lung, pulmonary, pneumothorax, hemithorax, mediastinum, pleural, cardiomegaly,
     hilar, costophrenic): "X-ray of the chest", "radiographie du thorax", "X-ray showing
     bilateral pulmonary granuloma";
   or its UMLS CUIs include C0039985 (Plain chest X-ray).
   "Thoracic" next to spine, vertebra, curve, kyphosis or scoliosis, and "cervico-thoracic" or
   "thoraco-lumbar", name the spine, not the chest.
2. Neither caption, keywords nor CUIs name another imaging modality: CT (HRCT, CTA, French TDM,
   ...) or any tomography, MRI/MR/magnetic resonance (French IRM), ultrasound/sonography/Doppler,
   echocardiography, PET, SPECT, scintigraphy/radionuclide/isotope/bone scan, angiography/
   arteriography/venography, DSA, fluoroscopy, mammography, barium or contrast swallow/
   esophagography, bronchography, myelography, urography. A caption naming two
   modalities describes a compound figure or leaves the image's modality unknown, so it is
   dropped, even when it says "chest X-ray".
3. It names no animal (dog, cat, rabbit, calf, monkey, ...): veterinary thoracic radiographs are not
   human chest X-rays.
Abbreviations (CT, MR, PET, US...) count only in capitals, as radiology writes them; keywords
(lower-cased caption words in ROCO) can add full modality and animal words only."""

_CHEST_WORD = (
    r"(?<![\w-])(?:chest|thorax|thoracic|thoracique|lungs?)\b"
    r"(?![\s-]+(?:spine|spinal|vertebra\w*|curves?|kyphosis|scoliosis))"
)
_RADIOGRAPH_WORD = r"\b(?:x-?rays?|xray|radiograph\w*|roentgenogra\w*|films?|skiagra\w*)\b"
_VIEW_WORD = (
    r"(?:pa|ap|plain|frontal|lateral|portable|erect|supine|upright|bedside|posteroanterior|"
    r"postero-anterior|anteroposterior|antero-posterior|digital|simple|standard|conventional|"
    r"computed|views?|images?|de face)"
)
_CHEST_FINDING = (
    r"(?<![\w-])(?:chest|thorax|thoracique|lungs?|pulmonary|pulmonaire|pneumothora\w*|"
    r"hemi-?\s?thorax|mediastin\w*|pleural|cardiomegaly|hilar|costophrenic)\b"
)
_CHEST_RADIOGRAPH = re.compile(
    rf"\bcxrs?\b"
    rf"|{_CHEST_WORD}(?:\W+{_VIEW_WORD})*\W+{_RADIOGRAPH_WORD}"
    rf"|{_RADIOGRAPH_WORD}(?:\W+\w+){{0,6}}?\W+{_CHEST_FINDING}",
    re.IGNORECASE,
)
_OTHER_MODALITY_WORD = re.compile(
    r"\b(?:\w*tomogra\w*|magnetic resonance|ultraso\w*|sonogra\w*|doppler|echocardiogra\w*|"
    r"[eé]chogra\w*|scintigra\w*|radionuclide|isotope|bone scan|angiogra\w*|arteriogra\w*|"
    r"venogra\w*|aortogra\w*|fluorosc\w*|mammogra\w*|barium (?:swallow|meal|enema|study)|"
    r"(?:contrast|gastrografin) swallow|swallow study|o?esophagogra\w*|bronchography|myelogra\w*|"
    r"urogra\w*)\b",
    re.IGNORECASE,
)
_OTHER_MODALITY_ABBREVIATION = re.compile(
    r"\b(?:CT|HRCT|CECT|MDCT|MSCT|NCCT|CBCT|CTA|CTPA|MR|MRI|MRA|US|USG|PET|SPECT|DSA|TDM|IRM)\b"
)
_ANIMAL = re.compile(
    r"\b(?:dogs?|canine|puppy|cats?|feline|kitten|rabbits?|rats?|mice|mouse|murine|pigs?|piglets?|"
    r"porcine|swine|sheep|lambs?|ovine|goats?|calf|calves|heifers?|cows?|bovine|cattle|horses?|"
    r"equine|foals?|monkeys?|macaques?|primates?|ferrets?|birds?|parrots?|veterinary)\b(?!-)",
    re.IGNORECASE,
)
_CHEST_XRAY_CUIS = frozenset({"C0039985"})  # Plain chest X-ray
_OTHER_MODALITY_CUIS = frozenset({
    "C0040405",  # X-Ray Computed Tomography
    "C0040395",  # Tomography
    "C0024485",  # Magnetic Resonance Imaging
    "C0041618",  # Ultrasonography
    "C0013516",  # Echocardiography
    "C0032743",  # Positron-Emission Tomography
    "C0002978",  # Angiogram
    "C0016356",  # Fluoroscopy
    "C0024671",  # Mammography
})


def _excluded(caption: str, keywords: Sequence[str], cuis: set[str]) -> bool:
    """Rules 2 and 3 of `CHEST_XRAY_RULE`: another modality named, or an animal."""
    words = " ".join([caption, *keywords])
    other_modality = (
        bool(_OTHER_MODALITY_WORD.search(words))
        or bool(_OTHER_MODALITY_ABBREVIATION.search(caption))
        or bool(cuis & _OTHER_MODALITY_CUIS)
    )
    return other_modality or bool(_ANIMAL.search(words))


def is_chest_xray(caption: str, keywords: Sequence[str] = (), cuis: Sequence[str] = ()) -> bool:
    """Whether a figure is a plain human chest radiograph, by `CHEST_XRAY_RULE`."""
    cuis = set(cuis)
    named = bool(_CHEST_RADIOGRAPH.search(caption)) or bool(cuis & _CHEST_XRAY_CUIS)
    return named and not _excluded(caption, keywords, cuis)


CHEST_XRAY_CONCEPTS = ("C1306645", "C0817096")  # ROCOv2's curated "Plain x-ray" and "Chest"
CONCEPT_RULE = f"""\
Where a source has ROCOv2's curated UMLS concepts (a `cui` column), a figure is kept as a chest
X-ray when its concepts include both {CHEST_XRAY_CONCEPTS[0]} (Plain x-ray, the modality) and
{CHEST_XRAY_CONCEPTS[1]} (Chest, the body region), and its caption passes rules 2 and 3 of the
caption rule (no other modality named: a compound figure; no animal). ROCOv2's modality and
region concepts were curated by hand (Rückert et al., Scientific Data 11, 688, 2024), so they
replace rule 1; a source without concepts uses the caption rule."""


def is_chest_xray_by_concepts(caption: str, cuis: Sequence[str]) -> bool:
    """Whether a figure is a plain human chest radiograph, by `CONCEPT_RULE`."""
    cuis = set(cuis)
    return cuis.issuperset(CHEST_XRAY_CONCEPTS) and not _excluded(caption, (), cuis)


# ---------------------------------------------------------------------------------------------
# Results


class DataError(ValueError):
    """Input data that cannot be read as asked; the message names the file (and line)."""


@dataclass
class SplitData:
    """One split after reading and filtering; `dataset` holds the kept rows that have an image."""

    name: str
    dataset: datasets.Dataset
    rows_read: int
    kept: int  # rows that passed the chest X-ray rule and the licence filter
    missing_images: list[str]
    licences: Counter[str]
    chest_filtered: bool  # whether only chest X-rays were kept (by `rule`)
    # The kept rows without an image (id, caption, license, credit): listed in the CLI's --out.
    missing_rows: list[dict[str, str]] = field(default_factory=list)
    rule: str = "caption"  # the chest X-ray rule applied: "caption" (CHEST_XRAY_RULE), "concept" (CONCEPT_RULE), "none"
    # Rows each rule would keep among the rows read ("caption", and for sources with concepts
    # "concept" and "both"), whichever rule was applied: how far the rules agree.
    rule_counts: dict[str, int] = field(default_factory=dict)
    licence_dropped: int = 0  # chest X-rays left out by the licence filter
    reading: dict[str, int | bool] | None = None  # hub sources: bytes read from the source and stored in the cache


@dataclass
class _Row:
    """One captioned figure as read, before filtering; `images` are candidate files, best first."""

    id: str
    caption: str
    license: str
    credit: str
    images: tuple[Path, ...]
    keywords: Sequence[str] = ()
    cuis: Sequence[str] = ()


def parse_licence_filter(text: str | None) -> frozenset[str] | None:
    """"CC BY, CC BY-SA" -> the licences to keep (compared case-insensitively); None keeps all."""
    if not text:
        return None
    wanted = frozenset(" ".join(part.split()).lower() for part in text.split(",") if part.strip())
    return wanted or None


def _licence_ok(licence: str, wanted: frozenset[str] | None) -> bool:
    return wanted is None or " ".join(licence.split()).lower() in wanted


def _split_data(name: str, rows: list[_Row], chest_only: bool, wanted: frozenset[str] | None = None) -> SplitData:
    chest = [row for row in rows if not chest_only or is_chest_xray(row.caption, row.keywords, row.cuis)]
    kept = [row for row in chest if _licence_ok(row.license, wanted)]
    split = _kept_split(name, kept, rows_read=len(rows), chest_filtered=chest_only)
    split.rule = "caption" if chest_only else "none"
    split.rule_counts = {"caption": len(chest)} if chest_only else {}
    split.licence_dropped = len(chest) - len(kept)
    return split


def _kept_split(name: str, kept: list[_Row], *, rows_read: int, chest_filtered: bool) -> SplitData:
    """The SplitData of rows already chosen: a dataset of those with an image file, the others listed."""
    found, missing = [], []
    for row in kept:
        image = next((path for path in row.images if path.is_file()), None)
        if image is None:
            missing.append(row)
        else:
            found.append((row, image))
    columns = {
        "id": [row.id for row, _ in found],
        "image": [str(image) for _, image in found],
        "caption": [row.caption for row, _ in found],
        "license": [row.license for row, _ in found],
        "credit": [row.credit for row, _ in found],
        "split": [name] * len(found),
    }
    return SplitData(
        name=name,
        dataset=datasets.Dataset.from_dict(columns, features=FEATURES),
        rows_read=rows_read,
        kept=len(kept),
        missing_images=[row.id for row in missing],
        licences=Counter(row.license for row in kept),
        chest_filtered=chest_filtered,
        missing_rows=[
            {"id": row.id, "caption": row.caption, "license": row.license, "credit": row.credit}
            for row in missing
        ],
    )


# ---------------------------------------------------------------------------------------------
# Reading text files


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a DataError naming the line of the first bad byte otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x})") from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-empty lines; split on newlines only (captions may hold U+2028 and the like)."""
    return [
        (number, line.rstrip("\r"))
        for number, line in enumerate(_read_text(path).split("\n"), start=1)
        if line.strip()
    ]


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and numbered rows of a CSV, each row as long as the header."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty CSV, expected a header line")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            rows.append((reader.line_num, row))
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({error})") from None
    return [name.strip() for name in header], rows


# ---------------------------------------------------------------------------------------------
# ROCO

_ROCO_ID = re.compile(r"ROCO_\d+")
_ROCO_FILES = ("captions.txt", "keywords.txt", "cuis.txt", "licences.txt")


def _roco_data_dir(source: Path) -> Path | None:
    """The folder holding `<split>/radiology/`: the repository's `data/` or `source` itself."""
    for base in (source / "data", source):
        if any((base / split / "radiology").is_dir() for split in SPLITS):
            return base
    return None


def _roco_present_splits(data_dir: Path) -> list[str]:
    return [split for split in SPLITS if (data_dir / split / "radiology" / "captions.txt").is_file()]


def _roco_id(path: Path, number: int, text: str) -> str:
    if not _ROCO_ID.fullmatch(text):
        raise DataError(f"{path}, line {number}: expected a ROCO id (ROCO_<digits>), got {text[:40]!r}")
    return text


def _roco_table(path: Path) -> dict[str, list[str]]:
    """A tab-separated ROCO file: id, then values (ROCO leaves an empty column after the id)."""
    table: dict[str, list[str]] = {}
    for number, line in _lines(path):
        if "\t" not in line:
            raise DataError(f"{path}, line {number}: expected '<ROCO id><TAB>...', found no tab")
        first, *values = line.split("\t")
        row_id = _roco_id(path, number, first.strip())
        if row_id in table:
            raise DataError(f"{path}, line {number}: {row_id} appears a second time")
        table[row_id] = [value.strip() for value in values if value.strip()]
    return table


def _roco_licences(path: Path) -> dict[str, tuple[str, str]]:
    """ROCO id -> (licence, PMC file name `PMC<id>_<figure file>`) from `licences.txt`."""
    header, rows = _csv_rows(path)
    if header != ["ROCO_ID", "PMC_ID", "CC"]:
        raise DataError(f"{path}, line 1: expected the header ROCO_ID,PMC_ID,CC, got {','.join(header)}")
    licences = {}
    for number, (row_id, pmc_file, licence) in rows:
        licences[_roco_id(path, number, row_id.strip())] = (licence.strip(), pmc_file.strip())
    return licences


def _roco_credit(licence: str, pmc_file: str) -> str:
    pmc_id, _, figure = pmc_file.partition("_")
    return f"{licence}; PubMed Central {pmc_id}, figure {figure} (ROCO)" if figure else f"{licence}; ROCO"


def _load_roco(data_dir: Path, split: str, chest_only: bool, wanted: frozenset[str] | None) -> SplitData:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: ROCO's splits are {', '.join(SPLITS)}")
    folder = data_dir / split / "radiology"
    if not (folder / "captions.txt").is_file():
        present = ", ".join(_roco_present_splits(data_dir)) or "none"
        raise DataError(f"split {split!r} is absent: no {folder / 'captions.txt'} (present: {present})")
    for name in _ROCO_FILES:
        if not (folder / name).is_file():
            raise DataError(f"{folder / name}: file not found (a ROCO split needs {', '.join(_ROCO_FILES)})")
    captions_path = folder / "captions.txt"
    captions = _roco_table(captions_path)
    keywords = _roco_table(folder / "keywords.txt")
    cuis = _roco_table(folder / "cuis.txt")
    licences = _roco_licences(folder / "licences.txt")
    rows = []
    for row_id, parts in captions.items():
        caption = " ".join(parts)  # a tab inside a caption is read as a space
        if not caption:
            raise DataError(f"{captions_path}: {row_id} has an empty caption")
        licence, pmc_file = licences.get(row_id, (UNKNOWN_LICENSE, ""))
        images = tuple(folder / "images" / name for name in (f"{row_id}.jpg", pmc_file) if name)
        rows.append(_Row(row_id, caption, licence, _roco_credit(licence, pmc_file), images,
                         keywords.get(row_id, ()), cuis.get(row_id, ())))
    return _split_data(split, rows, chest_only, wanted)


# ---------------------------------------------------------------------------------------------
# Image folder with a CSV

_IMAGE_COLUMNS = ("file_name", "file", "image", "path", "filename")
_CAPTION_COLUMNS = ("caption", "text", "report")
_LICENSE_COLUMNS = ("license", "licence")


def _folder_csv(source: Path) -> Path | None:
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


def _pick_column(where: str, header: list[str], asked: str | None, usual: Sequence[str], what: str) -> str:
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


def _folder_split_names(csv_path: Path) -> list[str] | None:
    """The values of the CSV's `split` column in first-seen order, or None when it has none."""
    return _split_names(*_csv_rows(csv_path))


def _split_names(header: list[str], rows) -> list[str] | None:
    if "split" not in header:
        return None
    index = header.index("split")
    return list(dict.fromkeys(row[index].strip() for _, row in rows))


def _load_folder(csv_path: Path, split: str, chest_only: bool, image_column: str | None,
                 caption_column: str | None, wanted: frozenset[str] | None) -> SplitData:
    header, rows = _csv_rows(csv_path)
    where = f"{csv_path}, line 1"
    image_at = header.index(_pick_column(where, header, image_column, _IMAGE_COLUMNS, "image"))
    caption_at = header.index(_pick_column(where, header, caption_column, _CAPTION_COLUMNS, "caption"))
    license_at = next((header.index(name) for name in _LICENSE_COLUMNS if name in header), None)
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
        parsed.append(_Row(row_id, caption, licence, credit, (csv_path.parent / file_name,)))
    return _split_data(split, parsed, chest_only, wanted)


# ---------------------------------------------------------------------------------------------
# Hugging Face hub datasets: by id, or a local copy in the hub's layout (read by cxrcap.hub)

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_HUB_ID_COLUMNS = ("id", "image_id", "roco_id")
_HUB_KEYWORD_COLUMNS = ("keywords",)
_HUB_CUI_COLUMNS = ("cuis", "cui")
UNKNOWN_HUB_LICENSE = "unknown (see the dataset card)"


def _terms(value) -> list[str]:
    """A list column as is; a string column split on whitespace, commas and semicolons."""
    if value is None:
        return []
    if isinstance(value, str):
        return [term for term in re.split(r"[\s,;]+", value) if term]
    return [str(term) for term in value]


def read_licences(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """ROCO id -> (licence, PMC file) from ROCO's `licences.txt`, or from every split's one in a ROCO checkout."""
    path = Path(path)
    if path.is_file():
        return _roco_licences(path)
    data_dir = _roco_data_dir(path) if path.is_dir() else None
    files = [data_dir / split / "radiology" / "licences.txt" for split in SPLITS] if data_dir else []
    files = [file for file in files if file.is_file()]
    if not files:
        raise DataError(f"{path}: not ROCO's licences.txt, nor a ROCO checkout with <split>/radiology/licences.txt")
    return {row_id: value for file in files for row_id, value in _roco_licences(file).items()}


def _load_hub(source: str, split: str, chest_only: bool, image_column: str | None, caption_column: str | None,
              wanted: frozenset[str] | None, licences: dict[str, tuple[str, str]] | None) -> SplitData:
    chosen: dict[tuple[int, int], tuple] = {}  # (first row, rows) -> _hub_rows: the whole split is chosen once

    def rows_of(text, first_row: int) -> tuple:
        key = (first_row, text.num_rows)
        if key not in chosen:
            chosen[key] = _hub_rows(source, split, text, first_row, chest_only, caption_column, wanted, licences)
        return chosen[key]

    try:
        hub_split = hub.HubSource(source).split(split)
        text, files = hub_split.read(lambda text, first_row: rows_of(text, first_row)[0], image_column or hub.IMAGE_COLUMN)
    except hub.HubError as error:
        raise DataError(str(error)) from None
    rows, rule, rule_counts, dropped = rows_of(text, 0)
    for index, row in rows.items():
        row.images = (files[index],) if files[index] is not None else ()
    split_data = _kept_split(split, list(rows.values()), rows_read=text.num_rows, chest_filtered=chest_only)
    split_data.rule, split_data.rule_counts, split_data.licence_dropped = rule, rule_counts, dropped
    split_data.reading = {
        "bytes_read": hub_split.reads.total,  # this call only: 0 when everything came from the cache
        "bytes_stored": hub_split.stored_bytes(),
        "kept_image_bytes": sum(path.stat().st_size for path in files.values() if path is not None),
        "streamed": hub_split.source.streamed,  # not parquet: streamed in one pass, every data file read
    }
    return split_data


def _hub_rows(source: str, split: str, text, first_row: int, chest_only: bool, caption_column: str | None,
              wanted: frozenset[str] | None, licences: dict[str, tuple[str, str]] | None
              ) -> tuple[dict[int, _Row], str, dict[str, int], int]:
    """The rows of `text` (a table of a hub split's rows but their images, from row `first_row` of
    the split on) that the chest rule and the licence filter keep, by position in `text`; the rule
    used, what each rule would keep, and how many the licence filter dropped."""
    header = [name for name in text.column_names if name != "_shard"]
    where = f"hub dataset {source} ({split})"
    caption_name = _pick_column(where, header, caption_column, _CAPTION_COLUMNS, "caption")

    def column(usual: Sequence[str]) -> list | None:
        name = next((name for name in usual if name in header), None)
        return text.column(name).to_pylist() if name else None

    ids = [str(value) for value in column(_HUB_ID_COLUMNS)
           or [f"{split}-{first_row + index}" for index in range(text.num_rows)]]
    captions = [str(value or "").strip() for value in text.column(caption_name).to_pylist()]
    if "" in captions:
        raise DataError(f"{where}, row {first_row + captions.index('')}: empty caption")
    keywords = [_terms(value) for value in column(_HUB_KEYWORD_COLUMNS) or [None] * text.num_rows]
    concepts = column(_HUB_CUI_COLUMNS)
    cuis = [_terms(value) for value in concepts or [None] * text.num_rows]
    by_caption = [is_chest_xray(*row) for row in zip(captions, keywords, cuis)]
    rule_counts = {"caption": sum(by_caption)}
    if concepts is not None:
        by_concept = [is_chest_xray_by_concepts(caption, row_cuis) for caption, row_cuis in zip(captions, cuis)]
        rule_counts |= {"concept": sum(by_concept), "both": sum(map(min, by_concept, by_caption))}
    rule = "none" if not chest_only else "concept" if concepts is not None else "caption"
    chosen = {"none": [True] * text.num_rows, "caption": by_caption}.get(rule) or by_concept

    row_licences = column(_LICENSE_COLUMNS)
    rows: dict[int, _Row] = {}
    dropped = 0
    for index in (index for index, keep in enumerate(chosen) if keep):
        row_licence, credit = _hub_licence(source, ids[index], row_licences and row_licences[index], licences)
        if not _licence_ok(row_licence, wanted):
            dropped += 1
            continue
        rows[index] = _Row(ids[index], captions[index], row_licence, credit, (), keywords[index], cuis[index])
    return rows, rule, rule_counts, dropped


def _hub_licence(source: str, row_id: str, given, licences: dict[str, tuple[str, str]] | None) -> tuple[str, str]:
    """(licence, credit) of a hub row: its own licence column, else ROCO's licences.txt by ROCO id, else unknown."""
    where = f"{source} on the Hugging Face hub" if _HUB_ID.fullmatch(source) else f"{Path(source).name} (a copy of a hub dataset)"
    if given:
        return str(given), f"{given}; {where}"
    roco_id = _ROCO_ID.search(row_id)
    if licences is not None and roco_id and roco_id.group() in licences:
        licence, pmc_file = licences[roco_id.group()]
        return licence, _roco_credit(licence, pmc_file)
    return UNKNOWN_HUB_LICENSE, f"{UNKNOWN_HUB_LICENSE}; {where}"


# ---------------------------------------------------------------------------------------------
# Entry points


def _resolve(source: str | os.PathLike) -> tuple[str, Path | str]:
    """("roco", data folder), ("folder", CSV path), ("hub", a dataset id or the folder of a local copy);
    a DataError for anything else."""
    path = Path(source).expanduser()
    if (data_dir := _roco_data_dir(path)) is not None:
        return "roco", data_dir
    if (csv_path := _folder_csv(path)) is not None:
        return "folder", csv_path
    if hub.is_local_layout(path):
        return "hub", str(path.resolve())
    if path.exists():
        raise DataError(f"{path}: not ROCO (no <split>/radiology/captions.txt in it or in its data/ folder), "
                        "not an image folder (no metadata.csv or other CSV) and not a copy of a hub dataset "
                        "(no parquet, arrow, webdataset .tar or .jsonl files)")
    if _HUB_ID.fullmatch(str(source)):
        return "hub", str(source)
    raise DataError(f"{path}: no such file or folder (and not a hub id of the form owner/name)")


def describe_source(source: str | os.PathLike) -> str:
    """What kind of source this is, in words."""
    kind, where = _resolve(source)
    if kind == "roco":
        return f"ROCO checkout at {where}"
    if kind == "hub":
        return f"Hugging Face hub dataset {where}" if _HUB_ID.fullmatch(where) and not Path(where).exists() \
            else f"local copy of a hub dataset at {where}"
    if _folder_split_names(where) is None:
        return f"image folder {where.parent} ({where.name}; no split column: one split, served under any name)"
    return f"image folder {where.parent} ({where.name}, split by its split column)"


def available_splits(source: str | os.PathLike) -> list[str]:
    """The splits `source` has: ROCO's present ones, a CSV's split values, or the hub's splits.

    A split-less image folder answers ["test"]: it serves the same rows under any name.
    """
    kind, where = _resolve(source)
    if kind == "roco":
        return _roco_present_splits(where)
    if kind == "folder":
        return _folder_split_names(where) or ["test"]
    try:
        return hub.HubSource(where).splits
    except hub.HubError as error:
        raise DataError(str(error)) from None


def load_split(source: str | os.PathLike, split: str, *, chest_only: bool | None = None,
               image_column: str | None = None, caption_column: str | None = None,
               licence: str | None = None, licences: str | os.PathLike | None = None) -> SplitData:
    """Read one split of `source` (see the module docstring) into a `SplitData`.

    `chest_only=None` means the source's default (`filters_chest_xrays`). `licence` keeps only rows
    with one of these licences ("CC BY, CC BY-SA"). `licences` (ROCO's licences.txt, or a ROCO
    checkout) gives the rows of a hub copy of ROCO their licences by ROCO id.
    """
    kind, where = _resolve(source)
    chest_only = filters_chest_xrays(source) if chest_only is None else chest_only
    wanted = parse_licence_filter(licence)
    if kind == "roco":
        return _load_roco(where, split, chest_only, wanted)
    if kind == "folder":
        return _load_folder(where, split, chest_only, image_column, caption_column, wanted)
    table = read_licences(licences) if licences is not None else None
    return _load_hub(where, split, chest_only, image_column, caption_column, wanted, table)


def filters_chest_xrays(source: str | os.PathLike) -> bool:
    """Whether `source` is filtered for chest X-rays by default: ROCO and hub datasets (all of
    radiology) yes, an image folder (chosen by its owner) no."""
    return _resolve(source)[0] != "folder"


def _image_digest(image: dict) -> str:
    if image.get("bytes") is not None:
        return hashlib.sha256(image["bytes"]).hexdigest()
    return file_sha256(image["path"])


def check_split_overlap(splits: Sequence[SplitData]) -> list[str]:
    """Human-readable reports of ids, and of identical images (SHA-256 of the file's bytes), in two splits."""
    reports = []
    ids = {split.name: set(split.dataset["id"]) | set(split.missing_images) for split in splits}
    for first, second in combinations(splits, 2):
        shared = sorted(ids[first.name] & ids[second.name])
        if shared:
            shown = ", ".join(shared[:10]) + (", ..." if len(shared) > 10 else "")
            reports.append(f"{len(shared)} id(s) in both {first.name} and {second.name}: {shown}")
    holders: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for split in splits:
        files = split.dataset.select_columns(["id", "image"]).cast_column("image", datasets.Image(decode=False))
        for row in files:  # row by row: a hub dataset's embedded images need not fit in memory at once
            holders[_image_digest(row["image"])].append((split.name, row["id"]))
    for digest, where in holders.items():
        if len({name for name, _ in where}) > 1:
            places = ", ".join(f"{name} ({row_id})" for name, row_id in where)
            reports.append(f"identical image in {places}: sha256 {digest[:12]}")
    return reports


# ---------------------------------------------------------------------------------------------
# CLI: python -m cxrcap data


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


def split_report(split: SplitData, roco: bool) -> list[str]:
    found = len(split.dataset)
    lines = [f"{split.name}: {split.rows_read} rows read, {split.kept} kept"
             f"{' as chest X-rays' if split.kept != split.rows_read else ''}; "
             f"images: {found} found, {len(split.missing_images)} missing"]
    if split.missing_images:
        shown = ", ".join(split.missing_images[:5]) + (", ..." if len(split.missing_images) > 5 else "")
        lines.append(f"  missing images: {shown}" + (" (--out lists them all)" if len(split.missing_images) > 5 else ""))
        if roco:
            lines.append("  ROCO ships download links, not images: run the ROCO repository's scripts/fetch.py "
                         f"to put them in {split.name}/radiology/images/")
    licences = ", ".join(f"{name} {count}" for name, count in split.licences.most_common())
    lines.append(f"  licences: {licences or 'none kept'}")
    if split.licence_dropped:
        lines.append(f"  licence filter: {split.licence_dropped} chest X-rays left out")
    lines += rule_report(split)
    if split.reading is not None:
        reading = split.reading
        lines.append(f"  bytes: {reading['bytes_read']:,} read from the source now (0: all from the cache), "
                     f"{reading['bytes_stored']:,} stored in the cache ({reading['kept_image_bytes']:,} of them "
                     "the kept images)")
        if reading["streamed"] and reading["bytes_read"]:
            lines.append("  streamed: not parquet, so read in one pass, every data file whole "
                         "(image files that rows name by path only when chosen)")
    return lines


def rule_report(split: SplitData) -> list[str]:
    """Which chest X-ray rule was applied, and how many rows each rule keeps among the rows read."""
    if split.rule == "none":
        return ["  rule: none (no chest X-ray filter)"]
    counts = split.rule_counts
    if "concept" not in counts:
        return [f"  rule: caption (CHEST_XRAY_RULE): {counts['caption']} of {split.rows_read} rows"]
    either = counts["concept"] + counts["caption"] - counts["both"]
    agreement = (split.rows_read - either + counts["both"]) / split.rows_read if split.rows_read else 1.0
    return [f"  rule: {split.rule} ({'CONCEPT_RULE' if split.rule == 'concept' else 'CHEST_XRAY_RULE'}); "
            f"concept rule {counts['concept']}, caption rule {counts['caption']}, both {counts['both']} "
            f"of {split.rows_read} rows (agreement {agreement:.1%}, Jaccard "
            f"{counts['both'] / either if either else 1.0:.2f})"]


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
    roco = _resolve(args.roco)[0] == "roco"
    if roco and not args.split:
        for name in SPLITS:
            if name not in names:
                print(f"{name}: absent (no {name}/radiology/captions.txt); reading {', '.join(names)}")
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
        print("\n".join(split_report(split, roco)))
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
