"""Bytes a hub source reads for the chest subset: a local mirror at ROCO's scale and row order.

Builds a mirror of `eltorio/ROCO-radiology`'s layout from ROCO's real validation and test captions,
in ROCO's order (16,359 rows; each row's image a real X-ray from ../shared/data/cxr-examples,
176 KB on average, close to ROCO's 164 KB), written by `datasets` with --row-group-size rows per
parquet row group (100: what `datasets` 2.x-3.x wrote for image datasets, e.g. the eltorio
copies, uploaded in 2024). Then reads both splits through `cxrcap.data` twice and prints, per
row-group size: rows, kept chest X-rays, the kept images' bytes, bytes read (text + image row
groups + footers), the overhead beyond the kept images, and that overhead extrapolated to the
hub copy's image bytes (the same fraction of ROCO-radiology's 13.4 GB, whose chest rows are
spread through the shards as in ROCO's own order); and that the second read reads nothing.

    python benchmarks/hub_read.py                                # row groups of 100 and 10
    python benchmarks/hub_read.py --row-group-size 100 --rows 4000

Needs ~3 GB of free disk per row-group size in a temporary folder (removed afterwards).
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


def build_mirror(folder: Path, roco: Path, images: Path, row_group_size: int, rows: int | None) -> None:
    import datasets

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
            datasets.Dataset.from_dict(table, features=features).to_parquet(str(path), batch_size=row_group_size)


def measure(row_group_size: int, roco: Path, images: Path, rows: int | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["CXRCAP_CACHE"] = str(Path(scratch) / "cache")
        from cxrcap import data

        mirror = Path(scratch) / "ROCO-radiology"
        build_mirror(mirror, roco, images, row_group_size, rows)
        files = sum(path.stat().st_size for path in (mirror / "data").iterdir())
        totals = {"rows": 0, "kept": 0, "kept_bytes": 0, "read": 0, "second_read": 0}
        for split in ("validation", "test"):
            first = data.load_split(mirror, split)
            second = data.load_split(mirror, split)
            totals["rows"] += first.rows_read
            totals["kept"] += first.kept
            totals["kept_bytes"] += first.reading["kept_image_bytes"]
            totals["read"] += first.reading["bytes_read"]
            totals["second_read"] += second.reading["bytes_read"]
        overhead = totals["read"] - totals["kept_bytes"]
        print(f"row groups of {row_group_size}: {totals['rows']:,} rows, {totals['kept']:,} kept; parquet files "
              f"{files / 1e6:,.1f} MB; read {totals['read'] / 1e6:,.1f} MB ({totals['read'] / files:.1%} of the files), "
              f"kept images {totals['kept_bytes'] / 1e6:,.1f} MB, overhead {overhead / 1e6:,.1f} MB; "
              f"on the hub (13.4 GB): ~{overhead / files * HUB_IMAGE_BYTES / 1e9:.1f} GB beyond the kept images; "
              f"second read {totals['second_read']} bytes", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roco", type=Path, default=REPO.parent / "shared" / "data" / "roco")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "cxr-examples" / "images")
    parser.add_argument("--row-group-size", type=int, action="append",
                        help="rows per parquet row group (repeatable; default 100 and 10)")
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows of each split")
    args = parser.parse_args()
    for size in args.row_group_size or [100, 10]:
        measure(size, args.roco, args.images, args.rows)


if __name__ == "__main__":
    main()
