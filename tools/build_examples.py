"""Build the app's shipped example gallery (`assets/examples/`) from the shared chest X-rays.

    python tools/build_examples.py [--data ../shared/data/cxr-examples] [--out assets/examples]

The one exception to "never copy shared data into the repository": a few X-rays whose licence
allows redistribution with attribution, re-encoded (JPEG) and downscaled, each with its caption,
licence and source in `metadata.csv` (`file_name,caption,license,source`). The choice below is
by hand, for variety: views (PA, AP, supine AP), findings (normal, COVID-19 pneumonia, ARDS with
tubes, Pneumocystis with a cyst, a pacemaker) and caption kinds (figure captions, metadata).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REDISTRIBUTABLE = ("CC BY", "CC BY 3.0", "CC BY 4.0", "CC BY-SA")  # attribution only: no NC, no ND
LONG_SIDE = 768
JPEG_QUALITY = 85
MAX_TOTAL_BYTES = 2_500_000
# Rows of the shared examples.csv, by file. Two figure-captioned rows are left out on purpose:
# one caption describes other panels and a post-mortem image, the other is a lab report.
CHOSEN = (
    "images/covid_41182_2020_203_Fig3_HTML.jpg",  # PA, "unremarkable" (figure caption)
    "images/covid_41182_2020_203_Fig4_HTML.jpg",  # PA, hazy infiltrates (figure caption)
    "images/covid_ARDSSevere.png",  # PA, severe ARDS, intubated (figure caption)
    "images/covid_X-ray_of_cyst_in_pneumocystis_pneumonia_1.jpg",  # PA, Pneumocystis, a cyst (figure caption)
    "images/covid_cae2c0a9.jpg",  # PA, no finding
    "images/covid_c0f74558.jpg",  # PA, COVID-19
    "images/covid_9d36404d.jpg",  # AP, COVID-19
    "images/covid_b343e657.jpg",  # supine AP, COVID-19
    "images/covid_53c9be49.jpg",  # supine AP, COVID-19, lines and tubes
    "images/covid_19073f37.jpg",  # supine AP, no finding, a pacemaker
)


def caption_of(row: dict[str, str]) -> str:
    """The figure caption where the row's licence lets us share it, else the metadata caption."""
    if row["caption_kind"] == "clinical_notes" and row["license"] in REDISTRIBUTABLE:
        return row["caption"]
    view = row["view"].replace("AP Supine", "supine AP")
    return f"{view} chest X-ray; finding: {row['finding']}"


def build(data: Path, out: Path) -> list[dict[str, str]]:
    """Write the chosen images (re-encoded, downscaled) and metadata.csv into `out`; returns the rows."""
    with open(data / "examples.csv", newline="", encoding="utf-8") as file:
        rows = {row["file"]: row for row in csv.DictReader(file)}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CHOSEN:
        row = rows[name]
        if row["license"] not in REDISTRIBUTABLE:
            raise ValueError(f"{name}: licence {row['license']!r} does not allow redistribution with attribution")
        image = Image.open(data / name).convert("L")  # radiographs are grey; one channel is a third of the bytes
        image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
        file_name = Path(name).stem.removeprefix("covid_") + ".jpg"
        image.save(out / file_name, "JPEG", quality=JPEG_QUALITY, optimize=True)
        written.append({"file_name": file_name, "caption": caption_of(row), "license": row["license"],
                        "source": row["source"]})
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["file_name", "caption", "license", "source"])
        writer.writeheader()
        writer.writerows(written)
    total = sum((out / row["file_name"]).stat().st_size for row in written)
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"the gallery is {total:,} bytes, over {MAX_TOTAL_BYTES:,}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr-examples")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "examples")
    args = parser.parse_args(argv)
    rows = build(args.data, args.out)
    total = sum((args.out / row["file_name"]).stat().st_size for row in rows)
    print(f"{len(rows)} examples, {total / 1e6:.2f} MB, in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
