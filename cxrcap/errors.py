"""An error as people read it: its first line, and a library's error without the server's paths.

A card or a command's message shows one line of an error (the whole of it goes to the log):
`first_line`. A library's error about files the reader never sees (the fifth slot's cards) is
shown by `library_text`: each absolute path by its last name, cut at a word's end.
"""

from __future__ import annotations

import re
from pathlib import Path

FIRST_LINE_CHARS = 300
LIBRARY_TEXT_CHARS = 200  # a library's error on a card: its first line, at most this long
# An absolute path in a library's error (a URL's "//host/..." is not one): shown by its last name.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/[^\s'\"`,;()]+")


def first_line(error: BaseException, limit: int | None = FIRST_LINE_CHARS) -> str:
    """The error's first line (its type's name when it has no message), at most `limit` characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if limit is None else text[:limit]


def library_text(error: BaseException) -> str:
    """A library's error for a card: its first line, each absolute path shown by its last name
    (a server's paths are not for its visitors), cut at a word's end."""
    text = _ABSOLUTE_PATH.sub(lambda path: Path(path[0]).name, first_line(error, limit=None))
    if len(text) <= LIBRARY_TEXT_CHARS:
        return text
    return text[:LIBRARY_TEXT_CHARS + 1].rsplit(" ", 1)[0] + " …"
