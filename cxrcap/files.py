"""Files written whole or not at all, and files known by their content.

`write_atomically` (and `atomic_file`, to write as you go) gives a reader the old file or the
whole new one, never a part: the new content goes into a temporary file beside the target, which
then replaces it in one step (`os.replace`); a failure removes the temporary file and leaves the
target as it was. Caches shared by several processes and downloads served while they are
rewritten rely on it. `file_sha256` names a file by its bytes (reviews, split hygiene).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: Path, mode: str = "w", *, permissions: int | None = None, **open_args) -> Iterator[IO]:
    """An open temporary file beside `path` (its folder made if missing) that replaces `path` when
    the block ends, or is removed when it fails. `open_args` as `open` takes them (encoding,
    newline); permissions: the file's mode bits, else the temporary file's own (owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
                                         **open_args)
    try:
        with handle:
            yield handle
        if permissions is not None:
            os.chmod(handle.name, permissions)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: str | bytes, *, permissions: int | None = None) -> None:
    """Write `data` (text as UTF-8) to `path` through `atomic_file`."""
    text = isinstance(data, str)
    with atomic_file(path, "w" if text else "wb", permissions=permissions, **({"encoding": "utf-8"} if text else {})) as file:
        file.write(data)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 hex digits."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
