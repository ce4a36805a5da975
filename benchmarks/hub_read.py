"""Bytes a hub source reads for the chest subset: a local mirror at ROCO's scale and row order.

Builds a mirror of `eltorio/ROCO-radiology`'s layout from ROCO's real validation and test captions,
in ROCO's order (16,359 rows; each row's image a real X-ray from ../shared/data/cxr-examples,
176 KB on average, close to ROCO's 164 KB), 100 rows per parquet row group (what `datasets` writes
for image datasets), in one of two layouts:

- `page-index`: as `datasets` >= 4 writes (`Dataset.to_parquet`): an offset index, content-defined
  pages, the image column not dictionary-encoded;
- `no-page-index`: as `datasets` 2.x-3.x wrote (e.g. the eltorio copies, uploaded in 2024):
  pyarrow's writer with its defaults (no offset index, no content-defined chunking, dictionary).

Then reads both splits through `cxrcap.sources` twice and prints, per layout: the image column's
chunks (size per row group, page index or not, dictionary page), rows, kept chest X-rays, the kept
images' bytes, bytes read (text + the image column of the row groups holding a kept row + footers),
the overhead beyond the kept images, and that overhead extrapolated to the hub copy's image bytes
(the same fraction of ROCO-radiology's 13.4 GB, whose chest rows are spread through the shards as
in ROCO's own order); and that the second read reads nothing. Bytes are counted at the file object
pyarrow reads through (`cxrcap.sources.hub_reader.CountingFile`), so they do not depend on the
machine's load.

    python benchmarks/hub_read.py                                 # both layouts, all 16,359 rows
    python benchmarks/hub_read.py --layout page-index --rows 2000  # a smoke test

Needs ~3 GB of free disk per layout in a temporary folder (removed afterwards).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HUB_IMAGE_BYTES = 13.4e9  # eltorio/ROCO-radiology, all splits (its card's download size)
SHARD_ROWS = 1000
ROW_GROUP_ROWS = 100  # what `datasets` writes for image datasets (2.x to 5.x)


LAYOUTS = ("page-index", "no-page-index")


def build_mirror(folder: Path, roco: Path, images: Path, layout: str, rows: int | None) -> None:
    import datasets
    import pyarrow.parquet as pq

    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                  "caption": datasets.Value("string")})
    files = itertools.cycle(sorted(images.iterdir()))
    for split in ("validation", "test"):
        lines = (roco / split / "radiology" / "captions.txt").read_text(encoding="utf-8").splitlines()[:rows]
        shards = range(0, len(lines), SHARD_ROWS)
        for number, start in enumerate(shards):
            part = [line.partition("\t") for line in lines[start:start + SHARD_ROWS]]
            table = {"image": [{"bytes": next(files).read_bytes(), "path": None} for _ in part],
                     "image_id": [row_id for row_id, _, _ in part], "caption": [caption.strip() for _, _, caption in part]}
            path = folder / "data" / f"{split}-{number:05d}-of-{len(shards):05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            dataset = datasets.Dataset.from_dict(table, features=features)
            if layout == "page-index":
                dataset.to_parquet(str(path), batch_size=ROW_GROUP_ROWS)
            else:
                pq.write_table(dataset.data.table, path, row_group_size=ROW_GROUP_ROWS, write_page_index=False,
                               use_content_defined_chunking=False)


def image_chunks(path: Path) -> str:
    """The image column's chunks in one file, from its footer: per row group their size, whether they
    carry a page index (offset index), and the share of the dictionary page."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    chunks = [metadata.row_group(group).column(0) for group in range(metadata.num_row_groups)]  # image.bytes
    assert all(chunk.path_in_schema == "image.bytes" for chunk in chunks)
    size = sum(chunk.total_compressed_size for chunk in chunks) / len(chunks)
    dictionary = sum(chunk.data_page_offset - chunk.dictionary_page_offset
                     for chunk in chunks if chunk.has_dictionary_page) / len(chunks)
    return (f"image chunks of {size / 1e6:.1f} MB per row group, "
            f"{'with' if all(chunk.has_offset_index for chunk in chunks) else 'without'} a page index, "
            f"dictionary pages {dictionary / size:.0%} of them")


def measure(layout: str, roco: Path, images: Path, rows: int | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["CXRCAP_CACHE"] = str(Path(scratch) / "cache")
        from cxrcap import sources

        mirror = Path(scratch) / "ROCO-radiology"
        build_mirror(mirror, roco, images, layout, rows)
        files = sum(path.stat().st_size for path in (mirror / "data").iterdir())
        totals = {"rows": 0, "kept": 0, "kept_bytes": 0, "read": 0, "second_read": 0}
        for split in ("validation", "test"):
            first = sources.load_split(mirror, split)
            second = sources.load_split(mirror, split)
            totals["rows"] += first.rows_read
            totals["kept"] += first.kept
            totals["kept_bytes"] += first.reading["kept_image_bytes"]
            totals["read"] += first.reading["bytes_read"]
            totals["second_read"] += second.reading["bytes_read"]
        overhead = totals["read"] - totals["kept_bytes"]
        print(f"{layout}, row groups of {ROW_GROUP_ROWS}: {image_chunks(next((mirror / 'data').iterdir()))} in one shard; "
              f"{totals['rows']:,} rows, {totals['kept']:,} kept; parquet files {files / 1e6:,.1f} MB; "
              f"read {totals['read'] / 1e6:,.1f} MB ({totals['read'] / files:.1%} of the files), "
              f"kept images {totals['kept_bytes'] / 1e6:,.1f} MB, overhead {overhead / 1e6:,.1f} MB; "
              f"on the hub (13.4 GB): ~{overhead / files * HUB_IMAGE_BYTES / 1e9:.2f} GB beyond the kept images; "
              f"second read {totals['second_read']} bytes", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roco", type=Path, default=REPO.parent / "shared" / "data" / "roco")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "cxr-examples" / "images")
    parser.add_argument("--layout", choices=LAYOUTS, action="append", help="repeatable; default: both")
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of each split")
    args = parser.parse_args()
    for layout in args.layout or LAYOUTS:
        measure(layout, args.roco, args.images, args.rows)


if __name__ == "__main__":
    main()
