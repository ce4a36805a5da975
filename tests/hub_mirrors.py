"""Local mirrors of the hub's ROCO datasets, small and real, for tests.

`write_mirror` lays out parquet shards as `eltorio/ROCO-radiology` and `eltorio/ROCOv2-radiology`
have them on the hub (`README.md` with `dataset_info` and `configs`, `data/<split>-0000N-of-0000M.parquet`),
with the hub's features (`image` Image, `image_id`, `caption`, and for ROCOv2 `cui` a list of
strings), written by `datasets` itself. Rows are real ROCO captions (and their real UMLS concepts)
from ../shared/data/roco; every row's image is a different real X-ray from
../shared/data/cxr-examples. Row groups are small, so that some hold no chosen row.
`write_streamed_mirror` writes the same kind of rows in formats that cannot be read by column.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa

from cxrcap.chest_filter import is_chest_xray, is_chest_xray_by_concepts

ROWS_PER_GROUP = 2


@dataclass
class MirrorRow:
    image_id: str
    caption: str
    cuis: list[str]
    image: Path


def roco_rows(roco_dir: Path, split: str) -> list[tuple[str, str, list[str]]]:
    """(ROCO id, caption, CUIs) of a real ROCO split, in file order."""
    folder = roco_dir / split / "radiology"
    cuis = {}
    for line in (folder / "cuis.txt").read_text(encoding="utf-8").splitlines():
        row_id, *values = line.split("\t")
        cuis[row_id] = [value for value in values if value.strip()]
    rows = []
    for line in (folder / "captions.txt").read_text(encoding="utf-8").splitlines():
        row_id, _, caption = line.partition("\t")
        rows.append((row_id, caption.strip(), cuis.get(row_id, [])))
    return rows


def choose(rows, *, kept: int, dropped: int, concepts: bool, skip: int = 0):
    """`kept` rows the source's rule keeps and `dropped` it drops, interleaved one kept then several dropped."""
    rule = (lambda caption, cuis: is_chest_xray_by_concepts(caption, cuis)) if concepts else \
        (lambda caption, cuis: is_chest_xray(caption, (), cuis))
    yes = [row for row in rows if rule(row[1], row[2])][skip:skip + kept]
    no = [row for row in rows if not rule(row[1], row[2])][skip:skip + dropped]
    per = max(1, dropped // max(1, kept))
    ordered = []
    for index, row in enumerate(yes):
        ordered += [row, *no[index * per:(index + 1) * per]]
    return ordered + no[len(yes) * per:]


def features(concepts: bool) -> datasets.Features:
    columns = {"image": datasets.Image(), "image_id": datasets.Value("string"), "caption": datasets.Value("string")}
    if concepts:
        columns["cui"] = datasets.Sequence(datasets.Value("string"))
    return datasets.Features(columns)


def write_mirror(folder: Path, splits: dict[str, list[MirrorRow]], *, concepts: bool, shards: int = 2) -> Path:
    """Write the mirror; returns `folder`."""
    feats = features(concepts)
    for split, rows in splits.items():
        count = min(shards, len(rows))
        for shard in range(count):
            part = rows[shard * len(rows) // count:(shard + 1) * len(rows) // count]
            columns = {"image": [{"bytes": row.image.read_bytes(), "path": row.image.name} for row in part],
                       "image_id": [row.image_id for row in part], "caption": [row.caption for row in part]}
            if concepts:
                columns["cui"] = [row.cuis for row in part]
            path = folder / "data" / f"{split}-{shard:05d}-of-{count:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_dict(columns, features=feats).to_parquet(str(path), batch_size=ROWS_PER_GROUP)
    feature_yaml = "\n".join(
        f"  - name: {name}\n    {'sequence: string' if name == 'cui' else 'dtype: ' + ('image' if name == 'image' else 'string')}"
        for name in feats
    )
    split_yaml = "\n".join(f"  - split: {split}\n    path: data/{split}-*" for split in splits)
    (folder / "README.md").write_text(
        f"---\ndataset_info:\n  features:\n{feature_yaml}\nconfigs:\n- config_name: default\n  data_files:\n{split_yaml}\n---\n"
        f"# A test mirror of {'eltorio/ROCOv2-radiology' if concepts else 'eltorio/ROCO-radiology'}\n",
        encoding="utf-8",
    )
    return folder


KEPT = {"train": 5, "validation": 2, "test": 3}  # train's last kept row is a copy of a test image: split hygiene drops it


def study_mirror(folder: Path, roco_dir: Path, cxr_examples_dir: Path, *, concepts: bool) -> Path:
    """A mirror with train, validation and test: KEPT rows the rule keeps per split, twice as many it drops."""
    validation, test = roco_rows(roco_dir, "validation"), roco_rows(roco_dir, "test")
    chosen = {
        "train": choose(validation, kept=KEPT["train"], dropped=2 * KEPT["train"], concepts=concepts),
        "validation": choose(validation, kept=KEPT["validation"], dropped=2 * KEPT["validation"], concepts=concepts,
                             skip=KEPT["train"] * 2),
        "test": choose(test, kept=KEPT["test"], dropped=2 * KEPT["test"], concepts=concepts),
    }
    images = iter(sorted((cxr_examples_dir / "images").iterdir(), key=lambda path: path.stat().st_size))
    splits = {name: [MirrorRow(f"ROCOv2_2023_{name}_{index:06d}" if concepts else row_id, caption, cuis, next(images))
                     for index, (row_id, caption, cuis) in enumerate(rows, start=1)]
              for name, rows in chosen.items()}
    kept_train = [row for row in splits["train"] if _kept(row, concepts)]
    kept_train[-1].image = next(row for row in splits["test"] if _kept(row, concepts)).image
    return write_mirror(folder, splits, concepts=concepts)


def _kept(row: MirrorRow, concepts: bool) -> bool:
    return is_chest_xray_by_concepts(row.caption, row.cuis) if concepts else is_chest_xray(row.caption, (), row.cuis)


def write_streamed_mirror(folder: Path, rows: list[MirrorRow], *, kind: str) -> Path:
    """A one-split (train) dataset that is not parquet, so it can only be streamed: `arrow`, the
    rows with their images in an arrow stream file (`data/train-00000-of-00001.arrow`); or
    `imagefolder`, the image files beside a `metadata.jsonl` naming them (`train/`)."""
    if kind == "arrow":
        table = datasets.Dataset.from_dict(
            {"image": [{"bytes": row.image.read_bytes(), "path": row.image.name} for row in rows],
             "image_id": [row.image_id for row in rows], "caption": [row.caption for row in rows]},
            features=features(concepts=False)).data.table
        path = folder / "data" / "train-00000-of-00001.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.ipc.new_stream(str(path), table.schema) as writer:  # the schema carries the features
            writer.write_table(table)
    else:
        (folder / "train").mkdir(parents=True, exist_ok=True)
        lines = []
        for row in rows:
            shutil.copy(row.image, folder / "train" / row.image.name)
            lines.append(json.dumps({"file_name": row.image.name, "image_id": row.image_id, "caption": row.caption}))
        (folder / "train" / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
