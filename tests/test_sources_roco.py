"""cxrcap.sources.roco on the real ROCO captions in ../shared/data, plus small copies: a fixture in
ROCO's layout with images, and broken ones."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from cxrcap import sources
from cxrcap.sources import roco

ROCO_FILES = ("captions.txt", "keywords.txt", "cuis.txt", "licences.txt")


@pytest.fixture(scope="session")
def real_splits(roco_dir):
    return {split: sources.load_split(roco_dir, split) for split in ("validation", "test")}


def test_real_roco_counts(real_splits):
    for name, rows_read, kept in (("validation", 8180, 422), ("test", 8179, 433)):
        split = real_splits[name]
        assert (split.name, split.rows_read, split.kept) == (name, rows_read, kept)
        # the shared folder has captions but no images: every kept row is listed, none dropped
        assert len(split.dataset) == 0 and len(split.missing_images) == kept == len(split.missing_rows)
        assert sum(split.licences.values()) == kept and split.licences["CC BY"] > 0
        assert split.dataset.features == sources.FEATURES
    assert sources.check_split_overlap(list(real_splits.values())) == []


def copy_roco_split(roco_dir: Path, root: Path, split: str) -> Path:
    """A ROCO repository layout (root/data/<split>/radiology) holding the real files of one split."""
    folder = root / "data" / split / "radiology"
    folder.mkdir(parents=True)
    for name in ROCO_FILES:
        shutil.copy(roco_dir / split / "radiology" / name, folder / name)
    return folder


def test_roco_images_by_id_or_pmc_file_name(roco_dir, real_splits, cxr_image, tmp_path):
    folder = copy_roco_split(roco_dir, tmp_path, "validation")
    (folder / "images").mkdir()
    by_id, by_pmc_name = real_splits["validation"].missing_images[:2]
    pmc_name = next(line.split(",")[1] for line in (folder / "licences.txt").read_text().splitlines()
                    if line.startswith(by_pmc_name + ","))
    shutil.copy(cxr_image, folder / "images" / f"{by_id}.jpg")
    shutil.copy(cxr_image, folder / "images" / pmc_name)
    for source in (tmp_path, tmp_path / "data"):  # repository root or its data folder
        split = sources.load_split(source, "validation")
        assert sorted(split.dataset["id"]) == sorted([by_id, by_pmc_name])
        assert split.kept == 422 and len(split.missing_images) == 420
        assert by_id not in split.missing_images
    row = split.dataset[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (1024, 1024)
    assert row["caption"] == row["caption"].strip() and "PubMed Central PMC" in row["credit"]
    assert set(split.dataset.column_names) == set(sources.COLUMNS)


def write_roco_split(folder: Path, captions: bytes) -> None:
    """A small ROCO split: the given captions file and matching keyword/CUI/licence files."""
    folder.mkdir(parents=True)
    (folder / "captions.txt").write_bytes(captions)
    (folder / "keywords.txt").write_text("ROCO_00001\t\tchest\tradiograph\n")
    (folder / "cuis.txt").write_text("ROCO_00001\t\tC0817096\n")
    (folder / "licences.txt").write_text("ROCO_ID,PMC_ID,CC\nROCO_00001,PMC1_fig1.jpg,CC BY\n")


@pytest.mark.parametrize("captions, problem", [
    (b"ROCO_00001\t Chest X-ray.\nROCO_00002 no tab here\n", "line 2: expected '<ROCO id><TAB>"),
    (b"ROCO_00001\t Chest X-ray.\nROCO-2\t Chest X-ray.\n", "line 2: expected a ROCO id"),
    (b"ROCO_00001\t Chest X-ray.\nROCO_00002\t Chest \xff X-ray.\n", "line 2: not UTF-8"),
    (b"ROCO_00001\t Chest X-ray.\nROCO_00001\t Chest X-ray.\n", "line 2: ROCO_00001 appears a second time"),
    (b"ROCO_00001\t \n", "ROCO_00001 has an empty caption"),
])
def test_roco_bad_lines_name_file_and_line(tmp_path, captions, problem):
    write_roco_split(tmp_path / "test" / "radiology", captions)
    with pytest.raises(sources.DataError, match="captions.txt") as error:
        sources.load_split(tmp_path, "test")
    assert problem in str(error.value)


def test_roco_bad_files_and_splits(tmp_path):
    folder = tmp_path / "test" / "radiology"
    write_roco_split(folder, b"ROCO_00001\t Chest X-ray.\n")
    assert sources.load_split(tmp_path, "test").kept == 1
    with pytest.raises(sources.DataError, match="unknown split 'valid'"):
        sources.load_split(tmp_path, "valid")
    with pytest.raises(sources.DataError, match="split 'train' is absent.*present: test"):
        sources.load_split(tmp_path, "train")
    (folder / "licences.txt").write_text("id,file,licence\n")
    with pytest.raises(sources.DataError, match=r"licences.txt, line 1: expected the header"):
        sources.load_split(tmp_path, "test")
    (folder / "licences.txt").unlink()
    with pytest.raises(sources.DataError, match=r"licences.txt: file not found"):
        sources.load_split(tmp_path, "test")


def test_fixture(tmp_path, cxr_image):
    """A ROCO checkout of one split, two figures (a chest X-ray with its image, a CT), read as a user has it."""
    folder = tmp_path / "data" / "test" / "radiology"
    write_roco_split(folder, b"ROCO_00001\t Chest X-ray on admission.\nROCO_00002\t Axial CT of the abdomen.\n")
    (folder / "images").mkdir()
    shutil.copy(cxr_image, folder / "images" / "ROCO_00001.jpg")
    assert isinstance(sources.open_source(tmp_path), roco.RocoCheckout) and sources.filters_chest_xrays(tmp_path)
    assert sources.describe_source(tmp_path) == f"ROCO checkout at {tmp_path / 'data'}"
    assert sources.available_splits(tmp_path) == ["test"]
    assert sources.absent_splits(tmp_path) == {"train": "no train/radiology/captions.txt",
                                               "validation": "no validation/radiology/captions.txt"}
    split = sources.load_split(tmp_path, "test")
    assert (split.rows_read, split.kept, split.rule, split.missing_images) == (2, 1, "caption", [])
    row = split.dataset[0]
    assert (row["id"], row["caption"], row["license"]) == ("ROCO_00001", "Chest X-ray on admission.", "CC BY")
    assert row["credit"] == "CC BY; PubMed Central PMC1, figure fig1.jpg (ROCO)"
    assert row["image"].size == Image.open(cxr_image).size
