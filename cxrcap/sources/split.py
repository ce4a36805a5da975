"""A split after reading: the chest X-ray and licence filters, applied to every format's rows in this
one place (`Filter`, the `choose` each format's `read` is handed), and the `SplitData` they make.

A source with curated concepts (ROCOv2's `cui` column) is filtered by `CONCEPT_RULE`, any other by
the caption rule `CHEST_XRAY_RULE` (`SplitData.rule`; `rule_counts` says what each would keep).
`licence=` keeps only rows with the licences named. Kept rows whose image file is absent are counted
and listed (`SplitData.missing_images`), never dropped silently; the dataset holds only rows with an
image, decoded lazily from its file.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import datasets

from ..chest_filter import is_chest_xray, is_chest_xray_by_concepts
from .base import CAPTION, Read, Row

COLUMNS = ("id", "image", "caption", "license", "credit", "split")
FEATURES = datasets.Features(
    {name: datasets.Image() if name == "image" else datasets.Value("string") for name in COLUMNS}
)


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
    # Where a rule was applied, the rows each rule would keep among the rows read ("caption", and for
    # sources with curated concepts "concept" and "both"): how far the rules agree.
    rule_counts: dict[str, int] = field(default_factory=dict)
    licence_dropped: int = 0  # chest X-rays left out by the licence filter
    reading: dict[str, int | bool] | None = None  # hub sources: bytes read from the source and stored in the cache
    missing_images_advice: str = ""  # what the source says to do about missing images, if anything


def parse_licence_filter(text: str | None) -> frozenset[str] | None:
    """"CC BY, CC BY-SA" -> the licences to keep (compared case-insensitively); None keeps all."""
    if not text:
        return None
    wanted = frozenset(" ".join(part.split()).lower() for part in text.split(",") if part.strip())
    return wanted or None


class Filter:
    """The chest X-ray rule (if `chest_only`) and the licence filter, applied to rows as a source hands
    them over (all at once, or batch by batch), counting what each rule keeps and what is dropped."""

    def __init__(self, chest_only: bool, licences: frozenset[str] | None):
        self.chest_only, self.licences = chest_only, licences
        self.rows_read = 0
        self.rule = "caption" if chest_only else "none"
        self.rule_counts = {"caption": 0} if chest_only else {}
        self.licence_dropped = 0  # chest X-rays left out by the licence filter

    def __call__(self, rows: Sequence[Row]) -> list[Row]:
        self.rows_read += len(rows)
        chest = [row for row, keep in zip(rows, self._chest_xrays(rows)) if keep] if self.chest_only else list(rows)
        kept = [row for row in chest if self._licence_ok(row.license)]
        self.licence_dropped += len(chest) - len(kept)
        return kept

    def _chest_xrays(self, rows: Sequence[Row]) -> list[bool]:
        """Which rows are chest X-rays: by CONCEPT_RULE where they have curated concepts, else by CHEST_XRAY_RULE."""
        by_caption = [is_chest_xray(row.sections[CAPTION], row.keywords, row.cuis) for row in rows]
        self._count("caption", sum(by_caption))
        if not any(row.concepts is not None for row in rows):
            return by_caption
        self.rule = "concept"
        by_concept = [is_chest_xray_by_concepts(row.sections[CAPTION], row.concepts or ()) for row in rows]
        self._count("concept", sum(by_concept))
        self._count("both", sum(map(min, by_concept, by_caption)))
        return by_concept

    def _count(self, rule: str, kept: int) -> None:
        self.rule_counts[rule] = self.rule_counts.get(rule, 0) + kept

    def _licence_ok(self, licence: str) -> bool:
        return self.licences is None or " ".join(licence.split()).lower() in self.licences


def _image_file(row: Row) -> Path | None:
    """The row's image: the first of its first image's candidate files that exists."""
    return next((path for path in row.images[0].files if path.is_file()), None) if row.images else None


def split_data(name: str, read: Read, chosen: Filter) -> SplitData:
    """The SplitData of the rows `chosen` kept: a dataset of those with an image file, the others listed."""
    found, missing = [], []
    for row in read.rows:
        image = _image_file(row)
        if image is None:
            missing.append(row)
        else:
            found.append((row, image))
    columns = {
        "id": [row.study_id for row, _ in found],
        "image": [str(image) for _, image in found],
        "caption": [row.sections[CAPTION] for row, _ in found],
        "license": [row.license for row, _ in found],
        "credit": [row.credit for row, _ in found],
        "split": [name] * len(found),
    }
    return SplitData(
        name=name,
        dataset=datasets.Dataset.from_dict(columns, features=FEATURES),
        rows_read=chosen.rows_read,
        kept=len(read.rows),
        missing_images=[row.study_id for row in missing],
        licences=Counter(row.license for row in read.rows),
        chest_filtered=chosen.chest_only,
        missing_rows=[
            {"id": row.study_id, "caption": row.sections[CAPTION], "license": row.license, "credit": row.credit}
            for row in missing
        ],
        rule=chosen.rule,
        rule_counts=chosen.rule_counts,
        licence_dropped=chosen.licence_dropped,
        reading=read.reading,
        missing_images_advice=read.missing_images_advice,
    )


def _image_digest(image: dict) -> str:
    if image.get("bytes") is not None:
        return hashlib.sha256(image["bytes"]).hexdigest()
    with open(image["path"], "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


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
