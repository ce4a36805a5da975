"""Some rows of one parquet column, reading only the data pages that hold them.

A data page is the smallest unit of a parquet column that can be decoded on its own (a row group's
column chunk is a run of pages, after an optional dictionary page). pyarrow reads whole column
chunks: its API (26) selects row groups and columns, never pages. Files that carry an offset index
(the page index: per page its file offset, its size and its first row; `datasets` >= 4 writes one,
with content-defined pages of 256 KiB to 1 MiB) say which pages hold which rows, so this module
reads, for each row group holding a wanted row, only the runs of consecutive pages that hold one,
plus the column's dictionary page if it has one. pyarrow decodes the pages read: it is handed a small
parquet file made of the bytes read and a footer written for them (with fastparquet's thrift
classes), one row group per run, whose column metadata is the original chunk's pointed at the
copied pages.

Without an offset index a column chunk is read whole. Files written by `datasets` 2.x and 3.x
(e.g. the 2024 hub copies of ROCO) have none, and nothing smaller to read anyway: their image
chunks (100 rows per row group) are one dictionary page holding every image of the row group and
one small page of indices into it (pyarrow's writer checks its 1 MiB dictionary limit only every
1,024 rows); `benchmarks/hub_read.py` prints the pages it finds in each layout. A leaf under a
list (repeated) is read whole too: its pages' value counts are not in the offset index.

Below a page: a binary leaf (an image's `bytes`) whose pages are PLAIN and uncompressed (v1 or
v2, no dictionary, not under a list; as `datasets` >= 4 writes its images) is read value by
value, since a page of ~5 images holding one kept row would otherwise cost ~4 unkept images. Such
a page is its header, its definition levels, then each value as a 4-byte length and its bytes; the
reader reads the page's first 32 bytes (the header, ~21 bytes, usually with the levels and the
first length; more if the header is longer), the levels, then for each value up to the last
wanted row of the page its length, and the bytes of the wanted values only. Other encodings,
compressed pages and dictionaries keep the page path: their values cannot be found without
decoding what comes before them.

A struct column (an image: `bytes` and `path`) is read leaf by leaf, since each leaf has pages of
its own, and put together per row.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastparquet.cencoding import NumpyIO, ThriftObject, from_buffer, read_rle_bit_packed_hybrid, width_from_max_int

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> the file's bytes there
REQUIRED, REPEATED = 0, 2  # FieldRepetitionType
BYTE_ARRAY, UNCOMPRESSED, DATA_PAGE_V2 = 6, 0, 3  # Type, CompressionCodec, PageType
LEVEL_AND_PLAIN_ENCODINGS = {0, 3, 4}  # Encoding: PLAIN, RLE and BIT_PACKED (the last two for levels only)
FIRST_READ = 32  # bytes read at a page's start: its header (~21 bytes without statistics) and usually its levels


@dataclass
class _Leaf:
    index: int  # the leaf's column chunk within a row group
    schema: list[ThriftObject]  # the root, the leaf's ancestors and the leaf: a schema of this leaf alone
    repeated: bool


@dataclass
class _Piece:
    """Bytes of one column chunk to decode: its dictionary page if any, then consecutive data pages."""

    data: bytes
    first_row: int  # within the row group
    rows: int
    values: int  # the leaf's values in these pages (the rows, outside any list)
    dictionary_length: int  # the dictionary page's length at the start of `data`, or 0


def footer(read_at: ReadAt, size: int) -> bytes:
    """A parquet file's footer (the thrift `FileMetaData`), read exactly: its length is in the last 8 bytes."""
    tail = read_at(size - 8, 8)
    if len(tail) != 8 or tail[4:] != b"PAR1":
        raise ValueError("not a parquet file (no PAR1 footer)")
    length = int.from_bytes(tail[:4], "little")
    return read_at(size - 8 - length, length)


def read_rows(read_at: ReadAt, footer_bytes: bytes, column: str, rows: Sequence[int]) -> dict[int, object]:
    """Row -> the value of the top-level `column` there (as pyarrow's `to_pylist` gives it), for
    `rows` (indices within the file), reading only the pages that hold them."""
    metadata = from_buffer(footer_bytes, "FileMetaData")
    leaves = _leaves(metadata, column)
    starts = [0]  # first row of each row group
    for group in metadata.row_groups:
        starts.append(starts[-1] + group.num_rows)
    by_group: dict[int, list[int]] = {}
    for row in sorted(set(rows)):
        if not 0 <= row < starts[-1]:
            raise IndexError(f"row {row} is not in the file ({starts[-1]} rows)")
        group = bisect.bisect_right(starts, row) - 1
        by_group.setdefault(group, []).append(row - starts[group])
    values: dict[int, object] = {}
    for group, group_rows in by_group.items():
        per_leaf = [_read_leaf(read_at, metadata, group, leaf, group_rows) for leaf in leaves]
        for row in group_rows:
            values[starts[group] + row] = _merge([leaf_values[row] for leaf_values in per_leaf])
    return values


def _leaves(metadata: ThriftObject, column: str) -> list[_Leaf]:
    """The leaves of the top-level `column`, each with the schema path from the root to it."""
    elements = metadata.schema
    leaves, leaf_index = [], 0
    stack: list[list] = []  # [group, children not yet walked] of the groups above the element (depth-first walk)
    for element in elements[1:]:
        if element.num_children:
            stack.append([element, element.num_children])
            continue
        chain = [group for group, _ in stack] + [element]
        if chain[0].name.decode() == column:
            schema = [_only_child(group) for group in [elements[0], *chain[:-1]]] + [element]
            leaves.append(_Leaf(leaf_index, schema, any(part.repetition_type == REPEATED for part in chain)))
        leaf_index += 1
        while stack:  # the element is walked: so is each group above whose last child it was
            stack[-1][1] -= 1
            if stack[-1][1]:
                break
            stack.pop()
    if not leaves:
        raise KeyError(column)
    return leaves


def _only_child(group: ThriftObject) -> ThriftObject:
    narrowed = group.copy()
    narrowed.num_children = 1
    return narrowed


def _read_leaf(read_at: ReadAt, metadata: ThriftObject, group: int, leaf: _Leaf, rows: list[int]) -> dict[int, object]:
    """Row (within the row group) -> the leaf's value, in its structs, for `rows`."""
    num_rows = metadata.row_groups[group].num_rows
    chunk = metadata.row_groups[group].columns[leaf.index]
    info = chunk.meta_data
    start = min(offset for offset in (info.dictionary_page_offset, info.data_page_offset) if offset)
    if not chunk.offset_index_offset or leaf.repeated:  # the whole chunk
        pieces = [_Piece(read_at(start, info.total_compressed_size), 0, num_rows, info.num_values,
                         info.data_page_offset - start)]
    else:
        pages = from_buffer(read_at(chunk.offset_index_offset, chunk.offset_index_length), "OffsetIndex").page_locations
        # What precedes the first data page is the dictionary page, if any (some writers point only
        # data_page_offset at it); the offset index lists data pages only.
        dictionary_page = read_at(start, pages[0].offset - start) if pages[0].offset > start else b""
        if _values_readable(info, leaf, dictionary_page):
            return _read_values(read_at, leaf, pages, num_rows, rows)
        pieces = [_Piece(dictionary_page + read_at(run.offset, run.length), run.first_row, run.rows, run.rows,
                         len(dictionary_page)) for run in _page_runs(pages, num_rows, rows)]
    return _decode(metadata, leaf, info, pieces, rows)


def _values_readable(info: ThriftObject, leaf: _Leaf, dictionary_page: bytes) -> bool:
    """Whether the chunk's values can be read one by one: binary (not text: pyarrow gives it as
    bytes), PLAIN, uncompressed, without a dictionary, not under a list."""
    element = leaf.schema[-1]
    return (info.type == BYTE_ARRAY and element.converted_type is None and element.logicalType is None
            and info.codec == UNCOMPRESSED and set(info.encodings) <= LEVEL_AND_PLAIN_ENCODINGS
            and not dictionary_page and not leaf.repeated)


def _read_values(read_at: ReadAt, leaf: _Leaf, pages: list[ThriftObject], num_rows: int,
                 rows: list[int]) -> dict[int, object]:
    """Row (within the row group) -> the leaf's value, in its structs, for `rows`, reading of each
    page holding one only its header, its levels, the lengths of its values up to the last wanted
    row and the wanted values."""
    chain = leaf.schema[1:]  # the column's element down to the leaf
    max_level = sum(element.repetition_type != REQUIRED for element in chain)
    firsts = [page.first_row_index for page in pages] + [num_rows]
    by_page: dict[int, list[int]] = {}
    for row in rows:
        by_page.setdefault(bisect.bisect_right(firsts, row) - 1, []).append(row)
    values = {}
    for number, page_rows in by_page.items():
        page = _Page(read_at, pages[number].offset, pages[number].compressed_page_size, max_level)
        wanted = {row - firsts[number] for row in page_rows}
        for row, (level, value) in page.values(wanted).items():
            values[firsts[number] + row] = _nested(chain, level, value)
    return values


class _Page:
    """A PLAIN, uncompressed data page (v1 or v2) of a leaf outside any list, read in parts."""

    def __init__(self, read_at: ReadAt, offset: int, size: int, max_level: int):
        self._read_at, self._offset, self._max_level = read_at, offset, max_level
        self._start = read_at(offset, min(size, FIRST_READ))
        header = self._header(size)
        # The page's size (from the offset index) is its header's plus the size the header gives for
        # the rest, so the header's exact length needs no thrift walk.
        header_length = size - header.compressed_page_size
        if header_length > len(self._start):  # a long header (e.g. with statistics): read it whole
            self._start = read_at(offset, header_length)
            header = self._header(size)
        if header.type == DATA_PAGE_V2:  # levels without a length prefix, repetition levels (none here) first
            v2 = header.data_page_header_v2
            levels_at = header_length + v2.repetition_levels_byte_length
            levels_length, count = v2.definition_levels_byte_length, v2.num_values
        else:  # v1: the definition levels (if any) after their 4-byte length
            levels_at = header_length + 4 if max_level else header_length
            levels_length = int.from_bytes(self._take(header_length, 4), "little") if max_level else 0
            count = header.data_page_header.num_values
        self._values_at = levels_at + levels_length
        self._levels = np.full(count, max_level, np.uint8)  # every value present unless levels say otherwise
        if max_level:
            encoded = np.frombuffer(self._take(levels_at, levels_length), np.uint8)
            read_rle_bit_packed_hybrid(NumpyIO(encoded), width_from_max_int(max_level), levels_length,
                                       NumpyIO(self._levels), itemsize=1)

    def _header(self, size: int) -> ThriftObject:
        # Parsed from the bytes read, followed by zeros to the page's size: a field cut off by the
        # end of the read cannot send the parser out of the buffer (zeros end a struct).
        padded = np.zeros(size, np.uint8)
        padded[:len(self._start)] = np.frombuffer(self._start, np.uint8)
        return from_buffer(NumpyIO(padded), "PageHeader")

    def _take(self, position: int, length: int) -> bytes:
        """The page's bytes at `position`: from the first read where it holds them, else read."""
        known = self._start[position:position + length]
        if len(known) == length:
            return known
        return known + self._read_at(self._offset + position + len(known), length - len(known))

    def values(self, wanted: set[int]) -> dict[int, tuple[int, bytes | None]]:
        """Row in the page -> (its definition level, its value or None) for the `wanted` rows."""
        found, position = {}, self._values_at
        for row in range(max(wanted) + 1):
            value = None
            if self._levels[row] == self._max_level:  # a value: its 4-byte length, then its bytes
                length = int.from_bytes(self._take(position, 4), "little")
                if row in wanted:
                    value = self._take(position + 4, length)
                position += 4 + length
            if row in wanted:
                found[row] = (int(self._levels[row]), value)
        return found


def _nested(chain: list[ThriftObject], level: int, value: bytes | None) -> object:
    """The leaf's value in its structs, as pyarrow gives it, from its definition level: each
    optional element on the way down is null if the level stops above it."""
    element, *inner = chain
    if element.repetition_type != REQUIRED:
        if level == 0:
            return None
        level -= 1
    return {inner[0].name.decode(): _nested(inner, level, value)} if inner else value


class _Run(NamedTuple):
    offset: int
    length: int
    first_row: int
    rows: int


def _page_runs(pages: list[ThriftObject], num_rows: int, rows: list[int]) -> list[_Run]:
    """The runs of consecutive pages (an offset index's `PageLocation`s) that hold one of `rows`."""
    firsts = [page.first_row_index for page in pages] + [num_rows]
    runs: list[_Run] = []
    for number in sorted({bisect.bisect_right(firsts, row) - 1 for row in rows}):
        page, page_rows = pages[number], firsts[number + 1] - firsts[number]
        if runs and runs[-1].offset + runs[-1].length == page.offset:  # right after the run: extend it
            runs[-1] = runs[-1]._replace(length=runs[-1].length + page.compressed_page_size, rows=runs[-1].rows + page_rows)
        else:
            runs.append(_Run(page.offset, page.compressed_page_size, firsts[number], page_rows))
    return runs


def _decode(metadata: ThriftObject, leaf: _Leaf, info: ThriftObject, pieces: list[_Piece],
            rows: list[int]) -> dict[int, object]:
    """Row -> value of the pieces' rows among `rows`, decoded by pyarrow from a parquet file made of the
    pieces (one row group each) and a footer describing them with the chunk's own metadata (`info`)."""
    body, row_groups, offset = [b"PAR1"], [], 4
    for piece in pieces:
        fields = dict(type=info.type, encodings=info.encodings, path_in_schema=info.path_in_schema, codec=info.codec,
                      num_values=piece.values, total_uncompressed_size=len(piece.data),  # not used to read
                      total_compressed_size=len(piece.data), data_page_offset=offset + piece.dictionary_length)
        if piece.dictionary_length:
            fields["dictionary_page_offset"] = offset
        chunk = ThriftObject.from_fields(
            "ColumnChunk", file_offset=offset, meta_data=ThriftObject.from_fields("ColumnMetaData", i32list=[1, 4], **fields))
        row_groups.append(ThriftObject.from_fields("RowGroup", columns=[chunk], total_byte_size=len(piece.data),
                                                   num_rows=piece.rows))
        body.append(piece.data)
        offset += len(piece.data)
    fields = dict(version=metadata.version, schema=leaf.schema, num_rows=sum(piece.rows for piece in pieces),
                  row_groups=row_groups, created_by=metadata.created_by)  # pyarrow works around known writers' bugs by it
    if metadata.column_orders:
        fields["column_orders"] = [metadata.column_orders[leaf.index]]
    tail = bytes(ThriftObject.from_fields("FileMetaData", i32list=[1], **fields).to_bytes())
    file = pq.ParquetFile(pa.BufferReader(b"".join(body) + tail + len(tail).to_bytes(4, "little") + b"PAR1"))
    values = {}
    for number, piece in enumerate(pieces):
        decoded = file.read_row_group(number).column(0).to_pylist()
        values.update({row: decoded[row - piece.first_row] for row in rows
                       if piece.first_row <= row < piece.first_row + piece.rows})
    return values


def _merge(parts: list[object]) -> object:
    """A value from its leaves' values (each in the column's structs): structs put together field by
    field, lists item by item; a null struct or list is null in every leaf."""
    if len(parts) == 1:
        return parts[0]
    if any(part is None for part in parts):
        return None
    if isinstance(parts[0], list):
        return [_merge(list(items)) for items in zip(*parts)]
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            merged[key] = _merge([merged[key], value]) if key in merged else value
    return merged
