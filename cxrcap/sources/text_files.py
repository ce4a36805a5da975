"""The text files sources are made of, read as UTF-8 with errors that name the file and line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .base import DataError


def read_text(path: Path) -> str:
    """The file as UTF-8 text; a DataError naming the line of the first bad byte otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x})") from None


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-empty lines; split on newlines only (captions may hold U+2028 and the like)."""
    return [
        (number, line.rstrip("\r"))
        for number, line in enumerate(read_text(path).split("\n"), start=1)
        if line.strip()
    ]


def csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and numbered rows of a CSV, each row as long as the header."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty CSV, expected a header line")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            rows.append((reader.line_num, row))
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({error})") from None
    return [name.strip() for name in header], rows
