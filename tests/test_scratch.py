"""The app's scratch folder: empty folders swept once old, never the fresh or the full ones."""

import os
import time

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
