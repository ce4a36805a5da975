"""Some rows of one parquet column, reading only the data pages that hold them.

A data page is the smallest unit of a parquet column that can be decoded on its own (a row group's
column chunk is a run of pages, after an optional dictionary page). pyarrow reads whole column
chunks: its API (26) selects row groups and columns, never pages. Files that carry an offset index
(the page index: per page its file offset, its size and its first row; `datasets` >= 4 writes one,
with content-defined pages of 256 KiB to 1 MiB) say which pages hold which rows, so this module
reads, for each row group holding a wanted row, only the runs of consecutive pages that hold one,
plus the column's dictionary page if it has one. pyarrow stays the decoder: it is handed a small
parquet file made of the bytes read and a footer written for them (with fastparquet's thrift
classes), one row group per run, whose column metadata is the original chunk's pointed at the
copied pages.

Without an offset index a column chunk is read whole. Files written by `datasets` 2.x and 3.x
(e.g. the 2024 hub copies of ROCO) have none, and nothing smaller to read anyway: their image
chunks (100 rows per row group) are one dictionary page holding every image of the row group and
one small page of indices into it (pyarrow's writer checks its 1 MiB dictionary limit only every
1,024 rows); `benchmarks/hub_read.py` prints the pages it finds in each layout. A leaf under a
list (repeated) is read whole too: its pages' value counts are not in the offset index.

A struct column (an image: `bytes` and `path`) is read leaf by leaf, since each leaf has pages of
its own, and put together per row.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from fastparquet.cencoding import ThriftObject, from_buffer

ReadAt = Callable[[int, int], bytes]  # (offset, length) -> the file's bytes there
REPEATED = 2  # FieldRepetitionType.REPEATED


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
        pieces = [_Piece(dictionary_page + read_at(run.offset, run.length), run.first_row, run.rows, run.rows,
                         len(dictionary_page)) for run in _page_runs(pages, num_rows, rows)]
    return _decode(metadata, leaf, info, pieces, rows)


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
