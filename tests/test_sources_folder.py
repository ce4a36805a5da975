"""cxrcap.sources.folder on the real chest X-rays of ../shared/data/cxr-examples, plus small image
folders: splits, missing images, overlap between splits, broken CSVs."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from cxrcap import sources
from cxrcap.sources import folder


def test_cxr_examples_folder(cxr_examples_dir):
    split = sources.load_split(cxr_examples_dir, "test")  # examples.csv, image column 'file'
    assert (split.rows_read, split.kept, len(split.dataset), split.missing_images) == (98, 98, 98, [])
    row = split.dataset[0]
    assert row["image"].size[0] > 0 and row["license"] in row["credit"]
    assert "covid-chestxray-dataset" in row["credit"]
    # one split served under any name; the chest filter only on request
    assert sources.load_split(cxr_examples_dir, "validation").dataset["id"] == split.dataset["id"]
    filtered = sources.load_split(cxr_examples_dir, "test", chest_only=True)
    assert 90 <= filtered.kept < 98
    named = sources.load_split(cxr_examples_dir, "test", image_column="file", caption_column="caption")
    assert len(named.dataset) == 98
    with pytest.raises(sources.DataError, match="examples.csv, line 1: no column 'findings'"):
        sources.load_split(cxr_examples_dir, "test", caption_column="findings")


def make_image_folder(root: Path, rows: list[str]) -> None:
    """metadata.csv with a split column; a.png and b.png hold identical bytes, c.png differs."""
    root.mkdir(exist_ok=True)
    Image.new("L", (16, 16), 10).save(root / "a.png")
    shutil.copy(root / "a.png", root / "b.png")
    Image.new("L", (16, 16), 200).save(root / "c.png")
    (root / "metadata.csv").write_text("\n".join(["file_name,caption,split,id", *rows]) + "\n")


def test_image_folder_splits_missing_images_and_overlap(tmp_path):
    make_image_folder(tmp_path, [
        "a.png,Chest X-ray one,train,x1",
        "gone.png,Chest X-ray two,train,x2",
        "b.png,Chest X-ray three,test,x3",
        "c.png,Chest X-ray four,test,x1",
    ])
    assert sources.available_splits(tmp_path) == ["train", "test"]
    train, test = (sources.load_split(tmp_path, name) for name in ("train", "test"))
    assert train.dataset["id"] == ["x1"] and train.missing_images == ["x2"] and train.kept == 2
    assert test.dataset["split"] == ["test", "test"]
    reports = sources.check_split_overlap([train, test])
    assert any("1 id(s) in both train and test: x1" in line for line in reports)
    assert any("identical image in train (x1), test (x3)" in line for line in reports)
    assert len(reports) == 2
    with pytest.raises(sources.DataError, match="no rows for split 'validation'.*train, test"):
        sources.load_split(tmp_path, "validation")


def test_image_folder_bad_csv(tmp_path):
    make_image_folder(tmp_path, ["a.png,Chest X-ray,train,x1", "b.png,too,many,fields,here"])
    with pytest.raises(sources.DataError, match=r"metadata.csv, line 3: 5 fields, the header has 4"):
        sources.load_split(tmp_path, "train")
    (tmp_path / "metadata.csv").write_bytes(b"file_name,caption\na.png,Chest X-ray\nb.png,caf\xe9\n")
    with pytest.raises(sources.DataError, match=r"metadata.csv, line 3: not UTF-8"):
        sources.load_split(tmp_path, "train")
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.png,\n")
    with pytest.raises(sources.DataError, match=r"metadata.csv, line 2: empty caption"):
        sources.load_split(tmp_path, "train")


def test_fixture(tmp_path, cxr_examples_dir):
    """An image folder as its owner lays it out: two real X-rays and a metadata.csv with licence and source."""
    images = sorted((cxr_examples_dir / "images").iterdir())[:2]
    for image in images:
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "metadata.csv").write_text(
        "file_name,caption,license,source\n"
        f"{images[0].name},Chest X-ray: clear lungs.,CC BY 4.0,Example hospital\n"
        f"{images[1].name},Abdominal CT.,CC BY-SA,Example hospital\n")
    assert isinstance(sources.open_source(tmp_path), folder.ImageFolder) and not sources.filters_chest_xrays(tmp_path)
    assert sources.available_splits(tmp_path) == ["test"] and sources.absent_splits(tmp_path) == {}
    split = sources.load_split(tmp_path, "train")  # no split column: served under any name
    assert (split.rows_read, split.kept, split.rule, split.missing_images) == (2, 2, "none", [])
    row = split.dataset[0]
    assert (row["id"], row["caption"], row["license"]) == (images[0].name, "Chest X-ray: clear lungs.", "CC BY 4.0")
    assert row["credit"] == "CC BY 4.0; Example hospital" and row["image"].size == Image.open(images[0]).size
    assert sources.load_split(tmp_path, "test", chest_only=True).dataset["id"] == [images[0].name]
