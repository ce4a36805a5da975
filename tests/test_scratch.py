"""The app's scratch folder: empty folders swept once old, never the fresh or the full ones; a
start sweeps the folders of dead processes, never a live one's."""

import os
import subprocess
import sys
import time
from pathlib import Path

from processes import REPO, run_python

from cxrcap.app.scratch import sweep


def test_sweep_removes_old_empty_folders_only(tmp_path):
    old_empty, fresh_empty, full = tmp_path / "old", tmp_path / "fresh", tmp_path / "full"
    for folder in (old_empty, fresh_empty, full):
        folder.mkdir()
    (full / "x.png").write_bytes(b"png")
    an_hour_ago = time.time() - 3600
    for folder in (old_empty, full):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    assert sweep(tmp_path, grace_seconds=60) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fresh", "full"]
    assert tmp_path.exists()  # the root itself stays


CLAIM_AND_WAIT = ("import sys, time\n"
                  "from cxrcap.app import scratch\n"
                  "root = scratch.claim()\n"
                  "(root / 'upload.png').write_bytes(b'an x-ray')\n"
                  "print(root, flush=True)\n"
                  "time.sleep(600)\n")


def claiming_process(parent):
    """A process that claims a scratch folder in `parent`, puts an upload in it and waits."""
    process = subprocess.Popen([sys.executable, "-c", CLAIM_AND_WAIT], cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(REPO), GRADIO_TEMP_DIR=str(parent)))
    return process, Path(process.stdout.readline().strip())


def test_a_start_sweeps_the_folders_of_killed_processes_only(tmp_path):
    killed, killed_root = claiming_process(tmp_path)
    alive, alive_root = claiming_process(tmp_path)
    try:
        killed.kill()  # SIGKILL: no handler runs, its folder and upload stay behind
        killed.wait()
        assert (killed_root / "upload.png").exists()
        # Named `cxrcap-<pid>-<start time>-...` with the live process's pid but a start time in
        # 2001: a process long gone whose pid was reused.
        reused = tmp_path / f"cxrcap-{alive.pid}-1000000000-x"
        reused.mkdir()
        stranger = tmp_path / "cxrcap-notours"  # not a name claim() makes: kept
        stranger.mkdir()
        done = run_python("-c", "from cxrcap.app import scratch; print(scratch.claim())", GRADIO_TEMP_DIR=str(tmp_path))
        own = Path(done.stdout.strip())
        assert own.parent == tmp_path, done.stderr
        assert not killed_root.exists() and not reused.exists()
        assert (alive_root / "upload.png").exists() and stranger.exists()
    finally:
        alive.kill()
        alive.wait()
