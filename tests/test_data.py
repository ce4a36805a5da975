"""cxrcap.data on the real ROCO captions and chest X-rays in ../shared/data, plus small broken copies."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from cxrcap import data

ROCO_FILES = ("captions.txt", "keywords.txt", "cuis.txt", "licences.txt")


@pytest.fixture(scope="session")
def real_splits(roco_dir):
    return {split: data.load_split(roco_dir, split) for split in ("validation", "test")}


# --- ROCO --------------------------------------------------------------------------------------


def test_real_roco_counts(real_splits):
    for name, rows_read, kept in (("validation", 8180, 422), ("test", 8179, 433)):
        split = real_splits[name]
        assert (split.name, split.rows_read, split.kept) == (name, rows_read, kept)
        # the shared folder has captions but no images: every kept row is listed, none dropped
        assert len(split.dataset) == 0 and len(split.missing_images) == kept == len(split.missing_rows)
        assert sum(split.licences.values()) == kept and split.licences["CC BY"] > 0
        assert split.dataset.features == data.FEATURES
    assert data.check_split_overlap(list(real_splits.values())) == []


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
        split = data.load_split(source, "validation")
        assert sorted(split.dataset["id"]) == sorted([by_id, by_pmc_name])
        assert split.kept == 422 and len(split.missing_images) == 420
        assert by_id not in split.missing_images
    row = split.dataset[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (1024, 1024)
    assert row["caption"] == row["caption"].strip() and "PubMed Central PMC" in row["credit"]
    assert set(split.dataset.column_names) == set(data.COLUMNS)


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
    with pytest.raises(data.DataError, match="captions.txt") as error:
        data.load_split(tmp_path, "test")
    assert problem in str(error.value)


def test_roco_bad_files_and_splits(tmp_path):
    folder = tmp_path / "test" / "radiology"
    write_roco_split(folder, b"ROCO_00001\t Chest X-ray.\n")
    assert data.load_split(tmp_path, "test").kept == 1
    with pytest.raises(data.DataError, match="unknown split 'valid'"):
        data.load_split(tmp_path, "valid")
    with pytest.raises(data.DataError, match="split 'train' is absent.*present: test"):
        data.load_split(tmp_path, "train")
    (folder / "licences.txt").write_text("id,file,licence\n")
    with pytest.raises(data.DataError, match=r"licences.txt, line 1: expected the header"):
        data.load_split(tmp_path, "test")
    (folder / "licences.txt").unlink()
    with pytest.raises(data.DataError, match=r"licences.txt: file not found"):
        data.load_split(tmp_path, "test")


def test_sources_that_are_nothing_known(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset\n")
    with pytest.raises(data.DataError, match="not ROCO.*not an image folder"):
        data.load_split(tmp_path, "test")
    with pytest.raises(data.DataError, match="no such file or folder"):
        data.load_split(tmp_path / "missing", "test")


# --- image folders -----------------------------------------------------------------------------


def test_cxr_examples_folder(cxr_examples_dir):
    split = data.load_split(cxr_examples_dir, "test")  # examples.csv, image column 'file'
    assert (split.rows_read, split.kept, len(split.dataset), split.missing_images) == (98, 98, 98, [])
    row = split.dataset[0]
    assert row["image"].size[0] > 0 and row["license"] in row["credit"]
    assert "covid-chestxray-dataset" in row["credit"]
    # one split served under any name; the chest filter only on request
    assert data.load_split(cxr_examples_dir, "validation").dataset["id"] == split.dataset["id"]
    filtered = data.load_split(cxr_examples_dir, "test", chest_only=True)
    assert 90 <= filtered.kept < 98
    named = data.load_split(cxr_examples_dir, "test", image_column="file", caption_column="caption")
    assert len(named.dataset) == 98
    with pytest.raises(data.DataError, match="examples.csv, line 1: no column 'findings'"):
        data.load_split(cxr_examples_dir, "test", caption_column="findings")


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
    assert data.available_splits(tmp_path) == ["train", "test"]
    train, test = (data.load_split(tmp_path, name) for name in ("train", "test"))
    assert train.dataset["id"] == ["x1"] and train.missing_images == ["x2"] and train.kept == 2
    assert test.dataset["split"] == ["test", "test"]
    reports = data.check_split_overlap([train, test])
    assert any("1 id(s) in both train and test: x1" in line for line in reports)
    assert any("identical image in train (x1), test (x3)" in line for line in reports)
    assert len(reports) == 2
    with pytest.raises(data.DataError, match="no rows for split 'validation'.*train, test"):
        data.load_split(tmp_path, "validation")


def test_image_folder_bad_csv(tmp_path):
    make_image_folder(tmp_path, ["a.png,Chest X-ray,train,x1", "b.png,too,many,fields,here"])
    with pytest.raises(data.DataError, match=r"metadata.csv, line 3: 5 fields, the header has 4"):
        data.load_split(tmp_path, "train")
    (tmp_path / "metadata.csv").write_bytes(b"file_name,caption\na.png,Chest X-ray\nb.png,caf\xe9\n")
    with pytest.raises(data.DataError, match=r"metadata.csv, line 3: not UTF-8"):
        data.load_split(tmp_path, "train")
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.png,\n")
    with pytest.raises(data.DataError, match=r"metadata.csv, line 2: empty caption"):
        data.load_split(tmp_path, "train")
