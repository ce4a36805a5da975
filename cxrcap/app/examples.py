"""The app's examples gallery: real X-rays with their captions and credit lines.

Read from an image folder with a CSV (the same reader as the data, `sources.load_split`):
`$CXRCAP_EXAMPLES`, else `assets/examples/`: ten credited chest X-rays shipped with the
repository (`tools/build_examples.py` makes them); a Space owner may point the variable at theirs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from ..sources import DataError, load_split

log = logging.getLogger(__name__)
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "assets" / "examples"


@dataclass(frozen=True)
class Example:
    path: str
    caption: str
    credit: str


def examples_folder() -> Path:
    return Path(os.environ.get("CXRCAP_EXAMPLES") or DEFAULT_FOLDER).expanduser()


def load_examples(folder: Path | None = None) -> list[Example]:
    """The examples whose image file exists; none when the folder is absent or unreadable
    (the app still starts; the log says why)."""
    folder = folder or examples_folder()
    if not folder.exists():
        return []
    try:
        split = load_split(folder, "examples", chest_only=False)
    except DataError as error:
        log.warning("No examples gallery: %s", error)
        return []
    rows = split.dataset.cast_column("image", datasets.Image(decode=False))
    return [Example(row["image"]["path"], row["caption"], row["credit"]) for row in rows]
