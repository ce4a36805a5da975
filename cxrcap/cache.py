"""Where cxrcap keeps what it builds once: the WordNet corpus and the random-weight variants."""

import os
from pathlib import Path


def cache_root() -> Path:
    """`$CXRCAP_CACHE` (`~` expanded; empty counts as unset), else `~/.cache/cxrcap`."""
    return Path(os.environ.get("CXRCAP_CACHE", "").strip() or Path.home() / ".cache" / "cxrcap").expanduser()
