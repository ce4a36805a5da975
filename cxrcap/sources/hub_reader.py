"""Hub datasets in parquet: read every row's text, then the images of the chosen rows only, once.

A source is a hub dataset id (`eltorio/ROCOv2-radiology`) or a local folder in a hub dataset's
layout (what `hf download OWNER/NAME --repo-type dataset --local-dir DIR` leaves): parquet shards
whose split `datasets` infers from the README's `configs` or from the file names
(`data/train-00000-of-00026.parquet`). `datasets.load_dataset_builder` resolves the shards
(`hf://...` URLs for the hub); pyarrow then reads them by column projection:

1. `HubSplit.text`: every column but the image (ids, captions, concepts), for every row:
   a few MB of a 13 GB dataset;
2. the caller chooses rows from the text (`cxrcap.sources`: the chest X-ray rules, licences);
3. `HubSplit.images(rows)`: the image column of the row groups that hold a chosen row, and of no
   other (`read_rows`: `ParquetFile.read_row_group(g, columns=[...])`), each chosen image written
   once as its own file in the cache. A row group is the smallest part pyarrow reads: files with a
   page index (as `datasets` >= 4 writes them) would let a page-level reader skip the unchosen
   images of a group, but the hub copies of ROCO (2024) have none; benchmarks/README.md says what
   such a copy would save.

A source whose files are not all parquet (image files with a metadata file, webdataset tars,
arrow files) cannot be read by column: it is streamed (`datasets.load_dataset(..., streaming=True)`)
in one pass that keeps every row's text and the images of the rows chosen as they stream by
(`HubSplit.read`); every data file is read whole, except image files that rows name by path, of
which only the chosen ones are read.

Everything read is kept under `cache_root()/hub/`: the text as one parquet file per split and the
chosen rows' images as they were stored (JPEG/PNG bytes, not re-encoded), so a second run reads
nothing from the source and a run with another filter fetches only images it has not got yet.
A local folder's data files are checked at every run (names, sizes, modification times): when
any changed, its cache is read afresh. Delete the source's cache folder to read a newer revision
of a hub dataset.

Bytes read are counted at the file object pyarrow reads through (`Reads`); hub files are opened
without read-ahead (fsspec `cache_type="none"`), so for the hub the count is what was downloaded.
A streamed source counts the size of each file streamed, and of each image read by path.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..cache import cache_root
from ..errors import first_line
from ..files import write_atomically

IMAGE_COLUMN = "image"
# Chooses rows from a table of rows' text (all columns but the image) whose first row is row
# `first_row` of the split: returns their positions in the table.
ChooseFromText = Callable[[pa.Table, int], Iterable[int]]
FORMAT_VERSION = "1"  # bump when the cache's layout changes
SHARD_COLUMN = "_shard"  # added to the text: the shard each row is in


class HubError(ValueError):
    """The source cannot be read as a parquet dataset; the message says why."""


@dataclass
class Reads:
    """Bytes read from a source's files, with every (file, offset, length) read."""

    total: int = 0
    ranges: list[tuple[str, int, int]] = field(default_factory=list)

    def add(self, name: str, offset: int, length: int) -> None:
        self.total += length
        self.ranges.append((name, offset, length))


class CountingFile(io.RawIOBase):
    """A readable, seekable file that records each read in a `Reads`."""

    def __init__(self, raw, name: str, reads: Reads):
        self._raw, self._name, self._reads = raw, name, reads

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read_at(self, offset: int, length: int) -> bytes:
        self.seek(offset)
        parts = []
        while length > 0 and (part := self.read(length)):
            parts.append(part)
            length -= len(part)
        return b"".join(parts)

    def readinto(self, buffer) -> int:
        start = self._raw.tell()
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._reads.add(self._name, start, len(data))
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextlib.contextmanager
def open_shard(url: str, reads: Reads) -> Iterator[pq.ParquetFile]:
    """A parquet shard (a local path or an `hf://` URL) read through a counting file: its footer
    read exactly (pyarrow's own footer read takes the last 64 KiB at a guess), then, with no
    buffering or pre-buffering, each column chunk pyarrow needs, exactly."""
    if "://" in url:
        import fsspec  # hf:// is huggingface_hub's HfFileSystem, registered with fsspec

        raw = fsspec.open(url, "rb", cache_type="none").open()  # no read-ahead: bytes read = bytes downloaded
    else:
        raw = open(url, "rb")
    with CountingFile(raw, url, reads) as file:
        size = file.seek(0, io.SEEK_END)
        tail = file.read_at(size - 8, 8) if size >= 12 else b""
        length = int.from_bytes(tail[:4], "little")
        if tail[4:] != b"PAR1" or length > size - 12:
            raise HubError(f"{url}: not a parquet file (no PAR1 footer)")
        footer = file.read_at(size - 8 - length, length) + tail
        try:
            metadata = pq.read_metadata(pa.BufferReader(footer))
        except pa.ArrowException as error:
            raise HubError(f"{url}: {error}") from None
        yield pq.ParquetFile(file, metadata=metadata, buffer_size=0, pre_buffer=False)


def read_rows(shard: pq.ParquetFile, column: str, rows: Sequence[int]) -> dict[int, object]:
    """Row (within the shard) -> the value of the top-level `column` there (as pyarrow's `to_pylist`
    gives it), for `rows`, reading that column of only the row groups that hold one of them."""
    starts = [0]  # the first row of each row group, and the end
    for group in range(shard.metadata.num_row_groups):
        starts.append(starts[-1] + shard.metadata.row_group(group).num_rows)
    by_group: dict[int, list[int]] = defaultdict(list)
    for row in sorted(set(rows)):
        if not 0 <= row < starts[-1]:
            raise IndexError(f"row {row} is not in the shard ({starts[-1]} rows)")
        by_group[bisect.bisect_right(starts, row) - 1].append(row)
    values = {}
    for group, group_rows in by_group.items():
        chunk = shard.read_row_group(group, columns=[column]).column(0)
        values.update(zip(group_rows, chunk.take([row - starts[group] for row in group_rows]).to_pylist()))
    return values


def _slug(source: str) -> str:
    name = re.sub(r"[^\w.-]+", "-", source.strip("/")).strip("-")[-60:]
    return f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:10]}"


# Files a hub dataset keeps its rows in, which `datasets` reads: parquet by column, the rest by streaming.
DATA_FILE_SUFFIXES = (".parquet", ".arrow", ".tar", ".jsonl")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".dcm")
STREAM_BATCH = 100  # rows chosen from at a time while streaming


def is_local_layout(path: Path) -> bool:
    """Whether `path` is a folder holding a dataset's data files (a local copy of a hub dataset)."""
    return path.is_dir() and any(file.suffix in DATA_FILE_SUFFIXES for file in path.rglob("*") if file.is_file())


def _resolve_shards(source: str) -> dict[str, list[str]]:
    """Split -> data file paths or URLs (parquet shards, or any files `datasets` reads), as `datasets` resolves them."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(source)
    except Exception as error:  # offline, unknown id, no data files: one message for the user
        raise HubError(f"{source}: cannot resolve its data files ({first_line(error)})") from None
    shards = {str(split): sorted(str(path) for path in paths) for split, paths in (builder.config.data_files or {}).items()}
    if not shards:
        raise HubError(f"{source}: no data files found")
    return shards


def _batches(stream, where: str):
    """The stream's rows, STREAM_BATCH at a time; a failure to read it as a HubError."""
    batches = stream.iter(batch_size=STREAM_BATCH)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:  # a file `datasets` cannot parse, a network failure mid-way
            raise HubError(f"{where}: streaming failed ({first_line(error)})") from None
        yield batch


def _size(url: str) -> int:
    if "://" not in url:
        return os.path.getsize(url)
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(url)
    return filesystem.size(path)


class HubReader:
    """One dataset's shards and its cache folder; the shard list is resolved once and kept."""

    def __init__(self, source: str | os.PathLike):
        local = Path(source).expanduser()
        self.source = str(local.resolve()) if local.exists() else str(source)
        self.folder = cache_root() / "hub" / f"{_slug(self.source)}-v{FORMAT_VERSION}"
        manifest = self.folder / "manifest.json"
        described = {}
        if local.exists():
            self.shards = _resolve_shards(self.source)  # local listing: cheap, and follows edits
            described = {"files": _stamps(self.shards)}
            known = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None
            if known is not None and (known["shards"] != self.shards or known.get("files") != described["files"]):
                # the folder's files changed (a newer download under the same names too): what is
                # cached describes other files, and would pair their text with these images
                _clear(self.folder)
        elif manifest.is_file():
            self.shards = json.loads(manifest.read_text(encoding="utf-8"))["shards"]  # no network on a rerun
        else:
            self.shards = _resolve_shards(self.source)
        if not manifest.is_file():
            written = {"source": self.source, "shards": self.shards, **described}
            write_atomically(manifest, json.dumps(written, indent=2).encode(), permissions=0o644)

    @property
    def splits(self) -> list[str]:
        return list(self.shards)

    @property
    def streamed(self) -> bool:
        """Whether the source is read by streaming: not all its files are parquet."""
        return any(not path.endswith(".parquet") for paths in self.shards.values() for path in paths)

    def split(self, name: str) -> HubSplit:
        if name not in self.shards:
            raise HubError(f"{self.source}: no split {name!r}; its splits are {', '.join(self.shards)}")
        return HubSplit(self, name)


def _stamps(shards: dict[str, list[str]]) -> dict[str, list[int]]:
    """Each local data file's size and modification time: a file re-written under its name changes them."""
    stamps = {}
    for path in (path for paths in shards.values() for path in paths):
        status = os.stat(path)
        stamps[path] = [status.st_size, status.st_mtime_ns]
    return stamps


def _clear(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _is_media(kind: pa.DataType) -> bool:
    """An image (or audio) column as `datasets` stores it: a struct of bytes and path, or plain bytes."""
    if pa.types.is_struct(kind):
        return {kind.field(i).name for i in range(kind.num_fields)} >= {"bytes", "path"}
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _image_suffix(stored_path: str | None, data: bytes) -> str:
    suffix = Path(stored_path or "").suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return suffix
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    return ".img"


@dataclass
class HubSplit:
    """One split: its rows' text from the cache (read once), its chosen images on demand."""

    reader: HubReader
    name: str
    reads: Reads = field(default_factory=Reads)  # what this object read from the source

    @property
    def _text_file(self) -> Path:
        return self.reader.folder / f"{self.name}.text.parquet"

    @property
    def _image_folder(self) -> Path:
        return self.reader.folder / "images" / self.name

    def read(self, choose: ChooseFromText, column: str = IMAGE_COLUMN) -> tuple[pa.Table, dict[int, Path | None]]:
        """Every row's text (`text()`), and row -> the cached file of its image (None: no image) for
        the rows `choose` picks. A streamed source not read before is read in one pass."""
        if self.reader.streamed and not self._text_file.is_file():
            return self._stream(choose, column)
        text = self.text()
        return text, self.images(choose(text, 0), column)

    def text(self) -> pa.Table:
        """Every row's columns but the image, in shard order (row i of the split is row i here)."""
        if not self._text_file.is_file() and self.reader.streamed:
            return self._stream(lambda text, first_row: [], None)[0]
        if not self._text_file.is_file():
            tables = []
            for url in self.reader.shards[self.name]:
                with open_shard(url, self.reads) as parquet:
                    schema = parquet.schema_arrow
                    names = [name for name in schema.names if not _is_media(schema.field(name).type)]
                    tables.append(parquet.read(columns=names))
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            table = table.append_column(SHARD_COLUMN, pa.array(
                [index for index, part in enumerate(tables) for _ in range(part.num_rows)], pa.int32()))
            self._keep_text(table)
        return pq.read_table(self._text_file)

    def _keep_text(self, table: pa.Table) -> None:
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        write_atomically(self._text_file, buffer.getvalue().to_pybytes(), permissions=0o644)

    def _cached(self) -> dict[int, Path | None]:
        """Row -> its cached image file, or None for a row known to have no image (a `.none` marker)."""
        if not self._image_folder.is_dir():
            return {}
        return {int(path.stem): None if path.suffix == ".none" else path
                for path in self._image_folder.iterdir() if path.stem.isdigit()}

    def images(self, rows: Iterable[int], column: str = IMAGE_COLUMN) -> dict[int, Path | None]:
        """Row -> the cached file of its image (None: the row has no image); fetches what is missing."""
        cached = self._cached()
        files = {row: cached[row] for row in rows if row in cached}
        missing = sorted(set(rows) - set(files))
        if missing:
            files.update(self._fetch(missing, column))
        return files

    def _fetch(self, rows: Sequence[int], column: str) -> dict[int, Path | None]:
        if self.reader.streamed:
            wanted = set(rows)
            return self._stream(lambda text, first_row: [index for index in range(text.num_rows)
                                                         if first_row + index in wanted], column)[1]
        shard_of = self.text().column(SHARD_COLUMN).to_pylist()
        starts = {}  # shard -> its first row's index in the split
        for index, shard in enumerate(shard_of):
            starts.setdefault(shard, index)
        wanted: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            wanted[shard_of[row]].append(row)
        fetched: dict[int, Path | None] = {}
        for shard, shard_rows in sorted(wanted.items()):
            with open_shard(self.reader.shards[self.name][shard], self.reads) as parquet:
                if column not in parquet.schema_arrow.names:
                    raise HubError(f"{self.reader.source} ({self.name}): no {column!r} column in its parquet shards")
                images = read_rows(parquet, column, [row - starts[shard] for row in shard_rows])
            fetched.update({row: self._store(row, images[row - starts[shard]]) for row in shard_rows})
        return fetched

    def _stream(self, choose: ChooseFromText, column: str | None) -> tuple[pa.Table, dict[int, Path | None]]:
        """One pass over the split with `datasets` streaming: every row's text (kept in the cache),
        and the images in `column` (None: the text only) of the rows `choose` picks, batch by batch,
        that are not cached yet."""
        import datasets

        where = f"{self.reader.source} ({self.name})"
        try:
            stream = datasets.load_dataset(self.reader.source, split=self.name, streaming=True)
        except Exception as error:  # offline, or files `datasets` cannot read: one message for the user
            raise HubError(f"{where}: cannot stream it ({first_line(error)})") from None
        features = stream.features or datasets.Features()
        if column is not None and column not in features:
            raise HubError(f"{where}: no {column!r} column (its columns: {', '.join(features) or 'unknown'})")
        if column is not None and isinstance(features[column], datasets.Image):
            stream = stream.cast_column(column, datasets.Image(decode=False))  # the stored bytes, not decoded images
        text_features = datasets.Features({name: feature for name, feature in features.items()
                                           if name != column and not isinstance(feature, (datasets.Image, datasets.Audio))})
        cached, files, tables, first_row = self._cached(), {}, [], 0
        for batch in _batches(stream, where):
            text = pa.Table.from_pydict({name: batch[name] for name in text_features}, schema=text_features.arrow_schema)
            for index in choose(text, first_row):
                row = first_row + index
                files[row] = cached[row] if row in cached else self._store(row, self._with_bytes(batch[column][index]))
            tables.append(text)
            first_row += text.num_rows
        for url in self.reader.shards[self.name]:  # streamed whole; image files only as rows name them
            if Path(url).suffix.lower() not in IMAGE_SUFFIXES:
                self.reads.add(url, 0, _size(url))
        text = pa.concat_tables(tables) if tables else text_features.arrow_schema.empty_table()
        if not self._text_file.is_file():
            self._keep_text(text)
        return text, files

    def _with_bytes(self, image: dict | bytes | None) -> dict | bytes | None:
        """An image value with its bytes: those stored in the row, else the file it names, read (and counted)."""
        if not isinstance(image, dict) or image.get("bytes") or not image.get("path"):
            return image
        from datasets.utils.file_utils import xopen  # local paths and URLs (hf://, zip://...) alike

        try:
            with xopen(image["path"], "rb") as file:
                data = file.read()
        except OSError as error:
            raise HubError(f"{self.reader.source} ({self.name}): cannot read the image {Path(image['path']).name} "
                           f"({first_line(error)})") from None
        self.reads.add(image["path"], 0, len(data))
        return {"bytes": data, "path": image["path"]}

    def _store(self, row: int, image: dict | bytes | None) -> Path | None:
        data = image.get("bytes") if isinstance(image, dict) else image
        if not data:  # no image in the source (a path-only value cannot be fetched from elsewhere)
            write_atomically(self._image_folder / f"{row:07d}.none", b"", permissions=0o644)
            return None
        stored_path = image.get("path") if isinstance(image, dict) else None
        path = self._image_folder / f"{row:07d}{_image_suffix(stored_path, data)}"
        write_atomically(path, data, permissions=0o644)
        return path

    def stored_bytes(self) -> int:
        """Bytes the cache holds for this split: its text and the images fetched so far."""
        files = [self._text_file, *(path for path in self._cached().values() if path is not None)]
        return sum(path.stat().st_size for path in files if path.is_file())
