"""cxrcap.sources.hub_reader on local mirrors of the hub's ROCO datasets (tests/hub_mirrors.py): the
image column of row groups without a chosen row is never read; sources not in parquet are streamed
once; a newer download under the same names is read afresh."""

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from cxrcap import sources
from cxrcap.chest_filter import is_chest_xray, is_chest_xray_by_concepts
from cxrcap.cli.data import split_report
from cxrcap.sources import hub_reader
from hub_mirrors import KEPT, MirrorRow, choose, roco_rows, write_mirror, write_streamed_mirror


def test_image_columns_of_dropped_rows_are_never_read(rocov2_mirror):
    """Every byte range read is either text (any column but the image) or the image column chunk of a row
    group holding a chosen row; every such chunk is read."""
    split = hub_reader.HubReader(rocov2_mirror).split("train")
    text = split.text()
    chosen = [index for index, (caption, cuis) in enumerate(zip(text["caption"].to_pylist(), text["cui"].to_pylist()))
              if is_chest_xray_by_concepts(caption, cuis)]
    assert len(chosen) == KEPT["train"]
    split.images(chosen)
    wanted, unwanted, row = [], [], 0
    for shard in split.reader.shards["train"]:
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


@pytest.mark.parametrize("kind", ["arrow", "imagefolder"])
def test_a_source_not_in_parquet_is_streamed_once_keeping_the_chosen_images(kind, tmp_path, roco_dir, cxr_examples_dir,
                                                                             monkeypatch):
    monkeypatch.setattr(hub_reader, "STREAM_BATCH", 5)  # rows chosen batch by batch, across batches
    images = sorted((cxr_examples_dir / "images").iterdir())
    rows = [MirrorRow(row_id, caption, cuis, image) for (row_id, caption, cuis), image
            in zip(choose(roco_rows(roco_dir, "test"), kept=3, dropped=9, concepts=False), images)]
    mirror = write_streamed_mirror(tmp_path / kind, rows, kind=kind)
    kept = [row for row in rows if is_chest_xray(row.caption, (), row.cuis)]
    assert len(kept) == 3 and len(rows) == 12

    first = sources.load_split(mirror, "train")
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

    second = sources.load_split(mirror, "train")
    assert second.reading["bytes_read"] == 0 and second.dataset["id"] == first.dataset["id"]
    everything = sources.load_split(mirror, "train", chest_only=False)  # another filter: the images not kept yet
    assert everything.dataset["id"] == [row.image_id for row in rows] and everything.reading["bytes_read"] > 0


def test_a_newer_download_under_the_same_shard_names_is_read_afresh(tmp_path, roco_dir, cxr_examples_dir):
    images = sorted((cxr_examples_dir / "images").iterdir())

    def revision(skip, pictures):
        chosen = choose(roco_rows(roco_dir, "test"), kept=3, dropped=3, concepts=False, skip=skip)
        rows = [MirrorRow(row_id, caption, cuis, image) for (row_id, caption, cuis), image in zip(chosen, pictures)]
        write_mirror(tmp_path / "mirror", {"test": rows}, concepts=False)  # the same shard names each time
        return [row for row in rows if is_chest_xray(row.caption, (), row.cuis)]

    first = revision(0, images[:6])
    assert sources.load_split(tmp_path / "mirror", "test").dataset["id"] == [row.image_id for row in first]
    newer = revision(3, images[6:12])
    again = sources.load_split(tmp_path / "mirror", "test")
    assert again.dataset["id"] == [row.image_id for row in newer] != [row.image_id for row in first]
    stored = again.dataset.cast_column("image", datasets.Image(decode=False))["image"]
    assert [Path(image["path"]).read_bytes() for image in stored] == [row.image.read_bytes() for row in newer]
