"""The shipped example gallery: real, credited, redistributable X-rays, small, and rebuilt by one command."""

import csv
import hashlib

from PIL import Image

from cxrcap.app.examples import DEFAULT_FOLDER, load_examples
from tools.build_examples import LONG_SIDE, MAX_TOTAL_BYTES, REDISTRIBUTABLE, build


def read_metadata(folder) -> list[dict]:
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_the_shipped_gallery_is_credited_redistributable_and_small():
    rows = read_metadata(DEFAULT_FOLDER)
    assert 8 <= len(rows) <= 12
    assert all(row["license"] in REDISTRIBUTABLE and row["source"] and row["caption"] for row in rows)
    assert sum((DEFAULT_FOLDER / row["file_name"]).stat().st_size for row in rows) <= MAX_TOTAL_BYTES
    assert all(max(Image.open(DEFAULT_FOLDER / row["file_name"]).size) <= LONG_SIDE for row in rows)
    examples = load_examples(DEFAULT_FOLDER)
    assert len(examples) == len(rows)
    assert all(e.credit.startswith(row["license"]) and row["source"] in e.credit for e, row in zip(examples, rows))
    views = {row["caption"].split(" chest")[0] for row in rows if "; finding:" in row["caption"]}
    assert {"PA", "AP", "supine AP"} <= views


def test_the_gallery_is_rebuilt_from_the_shared_data_and_copies_no_file(cxr_examples_dir, tmp_path):
    build(cxr_examples_dir, tmp_path)
    assert read_metadata(tmp_path) == read_metadata(DEFAULT_FOLDER)
    for row in read_metadata(tmp_path):
        assert Image.open(tmp_path / row["file_name"]).size == Image.open(DEFAULT_FOLDER / row["file_name"]).size
    shared = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (cxr_examples_dir / "images").iterdir()}
    assert not shared & {hashlib.sha256(p.read_bytes()).hexdigest() for p in DEFAULT_FOLDER.glob("*.jpg")}
