"""Reading some rows of a parquet column page by page (cxrcap.parquet_pages), on small files of real
X-rays from ../shared/data/cxr-examples in the layouts that matter: as `datasets` >= 4 writes them
(offset index, content-defined pages, no dictionary), as `datasets` 2.x-3.x wrote them (pyarrow's
defaults: no offset index, a dictionary page holding every image), and offset-indexed files with a
dictionary page (pages of dictionary indices; and a dictionary that overflows into plain pages), and
offset-indexed files without a dictionary: data pages v2, and snappy-compressed pages. The images'
values in PLAIN uncompressed pages (`datasets` >= 4, v2) are read one by one, the others page by page."""

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from fastparquet.cencoding import from_buffer

from cxrcap import parquet_pages

ROWS = 40
GROUP = 16  # rows per row group: 16, 16, 8
NULL_ROWS = (3, 21)  # no image at all
PATH_ONLY_ROWS = (9,)  # a path but no bytes


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


class Reader:
    """A file's bytes served by (offset, length), every read recorded."""

    def __init__(self, path: Path):
        self.data, self.reads = path.read_bytes(), []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset:offset + length]


def image_chunks(path: Path) -> list[dict]:
    """Per row group, the `image.bytes` column chunk: its byte span and, if it has an offset index,
    its pages as (first row, offset, size); parsed from the footer, independently of the reader."""
    data = path.read_bytes()
    metadata = pq.ParquetFile(path).metadata
    chunks, first_row = [], 0
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(0)
        assert chunk.path_in_schema == "image.bytes"
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        pages = []
        if chunk.has_offset_index:
            footer = from_buffer(parquet_pages.footer(lambda o, n: data[o:o + n], len(data)), "FileMetaData")
            meta = footer.row_groups[group].columns[0]
            index = from_buffer(data[meta.offset_index_offset:meta.offset_index_offset + meta.offset_index_length],
                                "OffsetIndex")
            pages = [(first_row + page.first_row_index, page.offset, page.compressed_page_size)
                     for page in index.page_locations]
        chunks.append({"rows": range(first_row, first_row + metadata.row_group(group).num_rows),
                       "span": (start, start + chunk.total_compressed_size),
                       "dictionary": chunk.data_page_offset - start if chunk.has_dictionary_page else 0, "pages": pages})
        first_row += metadata.row_group(group).num_rows
    return chunks


def boundary_rows(chunks: list[dict]) -> list[int]:
    """The first and last row of every page (of every chunk without pages), and the file's first and last row."""
    rows = {0, ROWS - 1}
    for chunk in chunks:
        starts = [first for first, _, _ in chunk["pages"]] or [chunk["rows"].start]
        ends = starts[1:] + [chunk["rows"].stop]
        rows |= {*starts, *(end - 1 for end in ends)}
    return sorted(rows)


LAYOUTS = ["datasets", "no page index", "one row group", "dictionary", "dictionary overflow", "plain v2", "compressed"]
PAGED = ["datasets", "dictionary", "dictionary overflow", "plain v2", "compressed"]  # with an offset index
VALUE_BY_VALUE = ["datasets", "plain v2"]  # PLAIN, uncompressed, no dictionary: the image values read one by one


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_read_by_page_equal_a_full_read(files, layout):
    path = files[layout]
    chunks = image_chunks(path)
    full = pq.read_table(path).column("image").to_pylist()
    reader = Reader(path)
    footer = parquet_pages.footer(reader, len(reader.data))
    for rows in ([row] for row in range(ROWS)), [boundary_rows(chunks)], [[*NULL_ROWS, *PATH_ONLY_ROWS, 5]], [range(ROWS)]:
        for some in rows:
            assert parquet_pages.read_rows(reader, footer, "image", some) == {row: full[row] for row in some}
    assert full[NULL_ROWS[0]] is None and full[PATH_ONLY_ROWS[0]] == {"bytes": None, "path": "elsewhere.jpg"}
    ids = parquet_pages.read_rows(reader, footer, "image_id", [0, ROWS - 1])
    assert ids == {0: "id-0", ROWS - 1: f"id-{ROWS - 1}"}
    # The layouts are what their names say.
    assert (len(chunks) == 1) == (layout == "one row group")
    assert all(bool(chunk["pages"]) == (layout in PAGED) for chunk in chunks)
    assert all(len(chunk["pages"]) >= 2 for chunk in chunks if chunk["pages"])
    share = [chunk["dictionary"] / (chunk["span"][1] - chunk["span"][0]) for chunk in chunks]  # of the chunk's bytes
    if layout in ("datasets", "plain v2", "compressed"):
        assert max(share) == 0
    elif layout == "dictionary overflow":  # a dictionary page, then pages of indices, then plain pages
        assert all(0 < part < 0.5 for part in share[:2])
    else:  # every image in the dictionary page
        assert min(share) > 0.99

@pytest.mark.parametrize("layout", PAGED)
def test_pages_without_a_wanted_row_are_never_read(files, layout):
    path = files[layout]
    chunks = image_chunks(path)
    wanted = [chunks[0]["pages"][1][0], chunks[1]["pages"][-1][0], ROWS - 1]  # rows in some pages, in each group
    reader = Reader(path)
    parquet_pages.read_rows(reader, parquet_pages.footer(reader, len(reader.data)), "image", wanted)
    pages_read = pages_skipped = 0
    for chunk in chunks:
        ends = [first for first, _, _ in chunk["pages"][1:]] + [chunk["rows"].stop]
        for (first, offset, size), end in zip(chunk["pages"], ends):
            holds = any(first <= row < end for row in wanted)
            read = [(o, n) for o, n in reader.reads if o < offset + size and offset < o + n]
            if not holds:
                assert read == [], (first, offset, size)
            elif layout in VALUE_BY_VALUE:  # parts of the page (the next test says which)
                assert all(offset <= o and o + n <= offset + size for o, n in read)
            else:
                assert read == [(offset, size)], (first, offset, size)
            pages_read, pages_skipped = pages_read + holds, pages_skipped + (not holds)
    assert pages_read >= 3 and pages_skipped > pages_read


@pytest.mark.parametrize("layout", VALUE_BY_VALUE)
def test_only_the_wanted_values_of_a_page_are_read(files, layout):
    """One wanted row in a page: of the page, only its start (header, levels), the lengths of the
    values up to that row and that row's value are read; no other value's bytes, beyond the first
    read of the page's start."""
    path = files[layout]
    full = pq.read_table(path).column("image").to_pylist()
    reader = Reader(path)
    footer = parquet_pages.footer(reader, len(reader.data))
    checked = 0
    for chunk in image_chunks(path):
        ends = [first for first, _, _ in chunk["pages"][1:]] + [chunk["rows"].stop]
        for (first, offset, size), end in zip(chunk["pages"], ends):
            # Where each value lies in the page, found by its bytes (independently of the reader).
            spans, position = {}, offset
            for row in range(first, end):
                if full[row] and full[row]["bytes"]:
                    position = reader.data.index(full[row]["bytes"], position)
                    spans[row] = (position, position + len(full[row]["bytes"]))
            values_start = min(start for start, _ in spans.values()) - 4  # the first value's length
            wanted = list(spans)[len(spans) // 2]  # a row in the middle of the page
            reader.reads = []
            assert parquet_pages.read_rows(reader, footer, "image", [wanted])[wanted] == full[wanted]
            in_page = [(o, n) for o, n in reader.reads if o < offset + size and offset < o + n]
            before = [row for row in spans if row < wanted]
            slack = parquet_pages.FIRST_READ
            needed = (values_start - offset) + 4 * (len(before) + 1) + len(full[wanted]["bytes"])  # header, levels, lengths
            assert sum(n for _, n in in_page) <= needed + slack
            for row, (start, stop) in spans.items():
                if row != wanted:
                    for o, n in in_page:
                        overlap = (max(o, start), min(o + n, stop))
                        assert overlap[0] >= overlap[1] or overlap[1] <= offset + slack, (row, o, n)
            checked += 1
    assert checked >= 6
