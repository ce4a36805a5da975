"""Where cxrcap keeps what it builds once: the WordNet corpus and the random-weight variants."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """`$CXRCAP_CACHE` (`~` expanded; empty counts as unset), else `~/.cache/cxrcap`."""
    return Path(os.environ.get("CXRCAP_CACHE", "").strip() or Path.home() / ".cache" / "cxrcap").expanduser()


@contextmanager
def building(folder: Path) -> Iterator[Path]:
    """A staging folder beside `folder`; what the block writes there becomes `folder` at once, or
    not at all (interrupted, or failed). Another process building the same folder may win the
    race: its copy is kept. Everything is readable by other users of a shared cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp's folder is private, and some writers make private files
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(folder)
        except OSError:
            if not folder.is_dir():  # not merely lost the race to another process
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
