"""The app's scratch folder: every file the running app writes lives in one folder it removes.

Gradio writes uploads (`<hash of the content>/<name>`, one copy shared by every request that sent
the same file), the preview PNGs it serves and any file an event returns into `GRADIO_TEMP_DIR`;
the app's exports (slides showing the X-ray, CSVs with the ground truth) go there too. `claim()`
makes that a fresh folder of this process's own and removes it when the process ends: on a
normal exit, Ctrl-C (SIGINT) and SIGTERM. While the app runs, Gradio's `delete_cache` deletes
files some minutes after their last use, and `sweep` the folders that leaves empty.

A process killed outright (SIGKILL, out of memory) leaves its folder, uploads included. So the
folder is named after its owner, `cxrcap-<pid>-<start time>-<random>`, and `claim()` first
removes its siblings whose owner is gone: no process with that pid, or one that started at another
time (the pid was reused, as in a restarted container, where the app gets the same small pid).

Plain Python, no Gradio: `claim()` must run before gradio is imported (some of its modules read
`GRADIO_TEMP_DIR` once, at import).
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import psutil

VARIABLE = "GRADIO_TEMP_DIR"
# An empty folder younger than this may be one Gradio has just made for an upload it is moving in.
EMPTY_FOLDER_GRACE_SECONDS = 60
PREFIX = "cxrcap-"


def folder() -> Path:
    """Where Gradio, and so the app, writes files now (Gradio's own default when unclaimed)."""
    return Path(os.environ.get(VARIABLE) or Path(tempfile.gettempdir()) / "gradio")


def claim() -> Path:
    """Make a private folder (inside any `GRADIO_TEMP_DIR` already set) this process's scratch
    folder, removed at exit, on SIGTERM and on SIGINT; first remove dead processes' folders."""
    parent = Path(os.environ.get(VARIABLE) or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    sweep_dead(parent)
    me = psutil.Process()
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{me.pid}-{me.create_time():.0f}-", dir=parent))
    os.environ[VARIABLE] = str(root)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, functools.partial(_remove_and_exit, root))
    return root


def sweep_dead(parent: Path) -> int:
    """Remove the scratch folders in `parent` whose owning process is gone; returns how many.
    Folders not named by `claim()` (an older version's, anyone else's) are left alone."""
    removed = 0
    for path in parent.glob(f"{PREFIX}*"):
        owner = _owner(path.name)
        if owner and path.is_dir() and not _running(*owner):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _owner(name: str) -> tuple[int, int] | None:
    """(pid, start time) from a name `claim()` made, else None."""
    named = re.fullmatch(rf"{PREFIX}(\d+)-(\d+)-.+", name)
    return (int(named[1]), int(named[2])) if named else None


def _running(pid: int, started: int) -> bool:
    """Whether the process `pid` runs and started at `started` (seconds since the epoch, as named);
    a zombie (killed, not yet reaped) never runs again."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) <= 1 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # there but not ours to inspect: never remove a live process's files
        return True


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
