"""Hub sources (cxrcap.hub through cxrcap.data) on local mirrors of eltorio/ROCO-radiology and
eltorio/ROCOv2-radiology built from real ROCO captions and real X-rays (tests/hub_mirrors.py)."""

import csv
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from cxrcap import data, hub
from cxrcap.__main__ import main
from cxrcap.cli.data import split_report
from hub_mirrors import KEPT, MirrorRow, choose, features, roco_rows, study_mirror, write_mirror, write_streamed_mirror


@pytest.fixture(scope="module")
def roco_mirror(tmp_path_factory, roco_dir, cxr_examples_dir):
    return study_mirror(tmp_path_factory.mktemp("ROCO-radiology"), roco_dir, cxr_examples_dir, concepts=False)


@pytest.fixture(scope="module")
def rocov2_mirror(tmp_path_factory, roco_dir, cxr_examples_dir):
    return study_mirror(tmp_path_factory.mktemp("ROCOv2-radiology"), roco_dir, cxr_examples_dir, concepts=True)


def test_the_mirrors_load_through_datasets_with_the_hubs_features(roco_mirror, rocov2_mirror):
    for mirror, concepts in ((roco_mirror, False), (rocov2_mirror, True)):
        loaded = datasets.load_dataset(str(mirror))  # offline: HF_HUB_OFFLINE=1 (conftest)
        assert set(loaded) == {"train", "validation", "test"}
        assert loaded["test"].features == features(concepts)
        assert loaded["test"][0]["image"].size[0] > 100  # a real X-ray


def test_image_columns_of_dropped_rows_are_never_read(rocov2_mirror):
    """Every byte range read is either text (any column but the image) or the image column chunk of a row
    group holding a chosen row; every such chunk is read."""
    split = hub.HubSource(rocov2_mirror).split("train")
    text = split.text()
    chosen = [index for index, (caption, cuis) in enumerate(zip(text["caption"].to_pylist(), text["cui"].to_pylist()))
              if data.is_chest_xray_by_concepts(caption, cuis)]
    assert len(chosen) == KEPT["train"]
    split.images(chosen)
    wanted, unwanted, row = [], [], 0
    for shard in split.source.shards["train"]:
        metadata = pq.ParquetFile(shard).metadata
        for group in range(metadata.num_row_groups):
            rows = range(row, row + metadata.row_group(group).num_rows)
            row = rows.stop
            for column in range(metadata.num_columns):
                chunk = metadata.row_group(group).column(column)
                if chunk.path_in_schema.startswith("image."):
                    start = chunk.dictionary_page_offset or chunk.data_page_offset
                    span = (shard, start, start + chunk.total_compressed_size)
                    (wanted if set(rows) & set(chosen) else unwanted).append(span)
    assert unwanted, "the mirror has row groups without a chosen row"
    reads = [(name, offset, offset + length) for name, offset, length in split.reads.ranges if length]
    overlaps = lambda a, b: a[0] == b[0] and a[1] < b[2] and b[1] < a[2]  # noqa: E731
    assert not any(overlaps(read, chunk) for read in reads for chunk in unwanted)
    assert all(any(overlaps(read, chunk) for read in reads) for chunk in wanted)
    image_bytes = sum(end - start for _, start, end in wanted + unwanted)
    print(f"train split of the ROCOv2 mirror: {split.reads.total:,} bytes read; image column chunks "
          f"{image_bytes:,} bytes, of which {sum(end - start for _, start, end in unwanted):,} never read")


def test_concept_rule_where_concepts_exist_and_a_second_run_reads_nothing(rocov2_mirror):
    first = data.load_split(rocov2_mirror, "test")  # each test here reads its own split: the cache is shared
    assert first.rule == "concept" and first.chest_filtered
    assert first.kept == KEPT["test"] == len(first.dataset) and first.rows_read == 3 * KEPT["test"]
    assert set(first.rule_counts) == {"concept", "caption", "both"} and first.rule_counts["concept"] == KEPT["test"]
    assert first.reading["bytes_read"] > first.reading["kept_image_bytes"] > 0
    # ROCOv2 rows carry no licence of their own and no ROCO id to join: unknown, pointing at the card
    assert set(first.dataset["license"]) == {data.UNKNOWN_HUB_LICENSE}
    second = data.load_split(rocov2_mirror, "test")
    assert second.reading["bytes_read"] == 0
    assert second.dataset["id"] == first.dataset["id"] and second.reading["bytes_stored"] == first.reading["bytes_stored"]
    assert second.dataset[0]["image"].size == first.dataset[0]["image"].size


def test_roco_copy_gets_licences_by_roco_id_and_the_licence_filter(roco_mirror, roco_dir):
    plain = data.load_split(roco_mirror, "test")
    assert plain.rule == "caption" and set(plain.licences) == {data.UNKNOWN_HUB_LICENSE}
    joined = data.load_split(roco_mirror, "test", licences=roco_dir)
    truth = {row["ROCO_ID"]: row["CC"] for row in csv.DictReader(
        (roco_dir / "test" / "radiology" / "licences.txt").open(encoding="utf-8"))}
    assert joined.dataset["license"] == [truth[row_id] for row_id in joined.dataset["id"]]
    assert all("PubMed Central" in credit for credit in joined.dataset["credit"])
    only = data.load_split(roco_mirror, "test", licences=roco_dir / "test" / "radiology" / "licences.txt",
                           licence="cc by")
    assert set(only.dataset["license"]) == {"CC BY"}
    assert only.licence_dropped == joined.kept - only.kept > 0


def test_data_cli_names_the_rule_and_counts_per_rule(rocov2_mirror, capsys):
    assert main(["data", "--roco", str(rocov2_mirror), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    assert f"local copy of a hub dataset at {rocov2_mirror}" in out
    assert "rule: concept (CONCEPT_RULE); concept rule 2, caption rule" in out and "agreement" in out
    assert "bytes:" in out and "stored in the cache" in out


@pytest.mark.parametrize("kind", ["arrow", "imagefolder"])
def test_a_source_not_in_parquet_is_streamed_once_keeping_the_chosen_images(kind, tmp_path, roco_dir, cxr_examples_dir,
                                                                             monkeypatch):
    monkeypatch.setattr(hub, "STREAM_BATCH", 5)  # rows chosen batch by batch, across batches
    images = sorted((cxr_examples_dir / "images").iterdir())
    rows = [MirrorRow(row_id, caption, cuis, image) for (row_id, caption, cuis), image
            in zip(choose(roco_rows(roco_dir, "test"), kept=3, dropped=9, concepts=False), images)]
    mirror = write_streamed_mirror(tmp_path / kind, rows, kind=kind)
    kept = [row for row in rows if data.is_chest_xray(row.caption, (), row.cuis)]
    assert len(kept) == 3 and len(rows) == 12

    first = data.load_split(mirror, "train")
    assert first.reading["streamed"] and first.rule == "caption" and first.rows_read == 12
    assert first.dataset["id"] == [row.image_id for row in kept]
    stored = first.dataset.cast_column("image", datasets.Image(decode=False))["image"]
    assert [Path(image["path"]).read_bytes() for image in stored] == [row.image.read_bytes() for row in kept]
    if kind == "arrow":  # streamed whole, every image in it
        assert first.reading["bytes_read"] == (mirror / "data" / "train-00000-of-00001.arrow").stat().st_size
    else:  # the metadata streamed; of the image files, only the kept ones read
        metadata = (mirror / "train" / "metadata.jsonl").stat().st_size
        assert first.reading["bytes_read"] == metadata + sum(row.image.stat().st_size for row in kept)
    assert any("streamed" in line for line in split_report(first, advice=False))

    second = data.load_split(mirror, "train")
    assert second.reading["bytes_read"] == 0 and second.dataset["id"] == first.dataset["id"]
    everything = data.load_split(mirror, "train", chest_only=False)  # another filter: the images not kept yet
    assert everything.dataset["id"] == [row.image_id for row in rows] and everything.reading["bytes_read"] > 0


def test_a_newer_download_under_the_same_shard_names_is_read_afresh(tmp_path, roco_dir, cxr_examples_dir):
    images = sorted((cxr_examples_dir / "images").iterdir())

    def revision(skip, pictures):
        chosen = choose(roco_rows(roco_dir, "test"), kept=3, dropped=3, concepts=False, skip=skip)
        rows = [MirrorRow(row_id, caption, cuis, image) for (row_id, caption, cuis), image in zip(chosen, pictures)]
        write_mirror(tmp_path / "mirror", {"test": rows}, concepts=False)  # the same shard names each time
        return [row for row in rows if data.is_chest_xray(row.caption, (), row.cuis)]

    first = revision(0, images[:6])
    assert data.load_split(tmp_path / "mirror", "test").dataset["id"] == [row.image_id for row in first]
    newer = revision(3, images[6:12])
    again = data.load_split(tmp_path / "mirror", "test")
    assert again.dataset["id"] == [row.image_id for row in newer] != [row.image_id for row in first]
    stored = again.dataset.cast_column("image", datasets.Image(decode=False))["image"]
    assert [Path(image["path"]).read_bytes() for image in stored] == [row.image.read_bytes() for row in newer]


def test_unreachable_hub_id_is_a_clear_error(capsys):
    assert main(["data", "--roco", "someone/not-here"]) == 1  # offline (HF_HUB_OFFLINE=1)
    error = capsys.readouterr().err
    assert error.startswith("error: someone/not-here: cannot resolve its data files") and "Traceback" not in error
