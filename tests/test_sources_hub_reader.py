"""cxrcap.sources.hub_reader on local mirrors of the hub's ROCO datasets (tests/hub_mirrors.py): the
image column of row groups without a chosen row is never read; sources not in parquet are streamed
once; a newer download under the same names is read afresh. Then `read_rows` on small files of real
X-rays from ../shared/data/cxr-examples in the layouts that matter: as `datasets` >= 4 writes them
(offset index, content-defined pages, no dictionary), as `datasets` 2.x-3.x wrote them (pyarrow's
defaults: no offset index, a dictionary page holding every image), offset-indexed files with a
dictionary page (one that overflows into plain pages too), data pages v2, and snappy-compressed
pages: whatever the layout, whole row groups are read."""

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from cxrcap import sources
from cxrcap.chest_filter import is_chest_xray, is_chest_xray_by_concepts
from cxrcap.sources.summary import split_report
from cxrcap.sources import hub_reader
from hub_mirrors import KEPT, MirrorRow, choose, roco_rows, write_mirror, write_streamed_mirror

ROWS = 40
GROUP = 16  # rows per row group: 16, 16, 8
NULL_ROWS = (3, 21)  # no image at all
PATH_ONLY_ROWS = (9,)  # a path but no bytes
LAYOUTS = ["datasets", "no page index", "one row group", "dictionary", "dictionary overflow", "plain v2", "compressed"]
PAGED = ["datasets", "dictionary", "dictionary overflow", "plain v2", "compressed"]  # with an offset index


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


# --- read_rows: row groups, in every layout ---------------------------------------------------

@pytest.fixture(scope="module")
def table(cxr_examples_dir):
    images = sorted((cxr_examples_dir / "images").iterdir())[:ROWS]
    column = [None if row in NULL_ROWS else {"bytes": None, "path": "elsewhere.jpg"} if row in PATH_ONLY_ROWS
              else {"bytes": path.read_bytes(), "path": path.name} for row, path in enumerate(images)]
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string")})
    return datasets.Dataset.from_dict({"image": column, "image_id": [f"id-{row}" for row in range(ROWS)]},
                                      features=features)


@pytest.fixture(scope="module")
def files(table, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pages")
    arrow = table.data.table
    layouts = {
        "datasets": lambda path: table.to_parquet(str(path), batch_size=GROUP),
        "no page index": lambda path: pq.write_table(arrow, path, row_group_size=GROUP, write_page_index=False,
                                                     use_content_defined_chunking=False),
        "one row group": lambda path: pq.write_table(arrow, path, write_page_index=False),
        "dictionary": lambda path: pq.write_table(arrow, path, row_group_size=GROUP, write_page_index=True,
                                                  data_page_size=1, write_batch_size=3, dictionary_pagesize_limit=10**9),
        "dictionary overflow": lambda path: pq.write_table(arrow, path, row_group_size=GROUP, write_page_index=True,
                                                           data_page_size=1, write_batch_size=3,
                                                           dictionary_pagesize_limit=600_000),
        "plain v2": lambda path: pq.write_table(arrow, path, row_group_size=GROUP, write_page_index=True,
                                                use_dictionary=False, compression="none", data_page_version="2.0",
                                                data_page_size=1, write_batch_size=3),
        "compressed": lambda path: pq.write_table(arrow, path, row_group_size=GROUP, write_page_index=True,
                                                  use_dictionary=False, compression="snappy", data_page_size=1,
                                                  write_batch_size=3),
    }
    paths = {}
    for name, write in layouts.items():
        paths[name] = folder / f"{name.replace(' ', '-')}.parquet"
        write(paths[name])
    return paths


def image_chunks(path: Path) -> list[dict]:
    """Per row group, its rows and the byte spans of its image column chunks (`image.bytes`,
    `image.path`), and whether the `image.bytes` chunk has an offset index and a dictionary page
    (its share of the chunk); from the footer, independently of the reader."""
    metadata = pq.ParquetFile(path).metadata
    chunks, first_row = [], 0
    for group in range(metadata.num_row_groups):
        spans = []
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            if chunk.path_in_schema.startswith("image."):
                start = chunk.dictionary_page_offset or chunk.data_page_offset
                spans.append((start, start + chunk.total_compressed_size))
        image_bytes = metadata.row_group(group).column(0)
        assert image_bytes.path_in_schema == "image.bytes"
        start = image_bytes.dictionary_page_offset or image_bytes.data_page_offset
        dictionary = image_bytes.data_page_offset - start if image_bytes.has_dictionary_page else 0
        chunks.append({"rows": range(first_row, first_row + metadata.row_group(group).num_rows), "spans": spans,
                       "offset_index": image_bytes.has_offset_index,
                       "dictionary_share": dictionary / image_bytes.total_compressed_size})
        first_row += metadata.row_group(group).num_rows
    return chunks


def read(path: Path, column: str, rows) -> tuple[dict, hub_reader.Reads]:
    reads = hub_reader.Reads()
    with hub_reader.open_shard(str(path), reads) as shard:
        return hub_reader.read_rows(shard, column, rows), reads


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_read_by_row_group_equal_a_full_read(files, layout):
    """Byte-identical images (and nulls, and path-only values) in every layout `datasets` and pyarrow write."""
    path = files[layout]
    chunks = image_chunks(path)
    full = pq.read_table(path).column("image").to_pylist()
    edges = sorted({0, ROWS - 1, *(row for chunk in chunks for row in (chunk["rows"].start, chunk["rows"].stop - 1))})
    for rows in ([row] for row in range(ROWS)), [edges], [[*NULL_ROWS, *PATH_ONLY_ROWS, 5]], [range(ROWS)]:
        for some in rows:
            assert read(path, "image", some)[0] == {row: full[row] for row in some}
    assert full[NULL_ROWS[0]] is None and full[PATH_ONLY_ROWS[0]] == {"bytes": None, "path": "elsewhere.jpg"}
    assert read(path, "image_id", [0, ROWS - 1])[0] == {0: "id-0", ROWS - 1: f"id-{ROWS - 1}"}
    # The layouts are what their names say.
    assert (len(chunks) == 1) == (layout == "one row group")
    assert all(chunk["offset_index"] == (layout in PAGED) for chunk in chunks)
    share = [chunk["dictionary_share"] for chunk in chunks]
    if layout in ("datasets", "plain v2", "compressed"):
        assert max(share) == 0
    elif layout == "dictionary overflow":  # a dictionary page, then pages of indices, then plain pages
        assert all(0 < part < 0.5 for part in share[:2])
    else:  # every image in the dictionary page
        assert min(share) > 0.99


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "one row group"])
def test_row_groups_without_a_wanted_row_are_never_read(files, layout):
    """Of the image column, the chunks of the row groups holding a wanted row are read, whole, and no others."""
    path = files[layout]
    chunks = image_chunks(path)
    wanted = [chunks[0]["rows"][3], chunks[-1]["rows"][-1]]  # rows in the first and last group, none in between
    _, reads = read(path, "image", wanted)
    ranges = [(offset, offset + length) for _, offset, length in reads.ranges if length]
    for chunk in chunks:
        holds = any(row in chunk["rows"] for row in wanted)
        for start, stop in chunk["spans"]:
            overlapping = [(a, b) for a, b in ranges if a < stop and start < b]
            if holds:
                assert sum(min(b, stop) - max(a, start) for a, b in overlapping) == stop - start
            else:
                assert overlapping == [], (chunk["rows"], start, stop)
    assert len(chunks) >= 3
