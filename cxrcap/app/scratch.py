"""The app's scratch folder: every file the running app writes lives in one folder it removes.

Gradio writes uploads (`<hash of the content>/<name>`, one copy shared by every request that sent
the same file), the preview PNGs it serves and any file an event returns into `GRADIO_TEMP_DIR`;
the app's exports (slides showing the X-ray, CSVs with the ground truth) go there too. `claim()`
makes that a fresh folder of this process's own and removes it when the process ends: on a
normal exit, Ctrl-C (SIGINT) and SIGTERM. While the app runs, Gradio's `delete_cache` deletes
files some minutes after their last use, and `sweep` the folders that leaves empty.

Plain Python, no Gradio: `claim()` must run before gradio is imported (some of its modules read
`GRADIO_TEMP_DIR` once, at import).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

VARIABLE = "GRADIO_TEMP_DIR"
# An empty folder younger than this may be one Gradio has just made for an upload it is moving in.
EMPTY_FOLDER_GRACE_SECONDS = 60


def folder() -> Path:
    """Where Gradio, and so the app, writes files now (Gradio's own default when unclaimed)."""
    return Path(os.environ.get(VARIABLE) or Path(tempfile.gettempdir()) / "gradio")


def claim() -> Path:
    """Make a private folder (inside any `GRADIO_TEMP_DIR` already set) this process's scratch
    folder, removed at exit, on SIGTERM and on SIGINT."""
    parent = os.environ.get(VARIABLE)
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="cxrcap-", dir=parent or None))
    os.environ[VARIABLE] = str(root)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, functools.partial(_remove_and_exit, root))
    return root


def _remove_and_exit(root: Path, signum: int, frame) -> None:
    # At once, not through Gradio's close (which waits up to 5 s for open connections) and the
    # interpreter's teardown (seconds more with torch loaded): together longer than the grace a
    # container gets between SIGTERM and SIGKILL, which would leave every file behind.
    shutil.rmtree(root, ignore_errors=True)
    os._exit(128 + signum)


def sweep(root: Path, grace_seconds: float = EMPTY_FOLDER_GRACE_SECONDS) -> int:
    """Remove the empty folders under `root` (not root itself) older than `grace_seconds`;
    returns how many. Gradio's `delete_cache` deletes files and leaves their folders."""
    removed = 0
    cutoff = time.time() - grace_seconds
    for path, folders, files in os.walk(root, topdown=False):
        if Path(path) == root or files:
            continue
        try:
            if os.stat(path).st_mtime < cutoff:
                os.rmdir(path)  # fails, harmlessly, if not empty (a subfolder, or something just arrived)
                removed += 1
        except OSError:
            continue
    return removed


def keep_swept(root: Path, every_seconds: float) -> threading.Thread:
    """Sweep `root` every `every_seconds` in a daemon thread, for as long as the app runs."""

    def loop() -> None:
        while True:
            time.sleep(every_seconds)
            sweep(root)

    thread = threading.Thread(target=loop, name="cxrcap-sweep", daemon=True)
    thread.start()
    return thread
