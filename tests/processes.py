"""Python in a fresh process, as a user runs it: at the repository root, cxrcap importable."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_python(*args: str, cwd: Path = REPO, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python ARGS` with `env` added to this environment (a fresh process also re-reads
    settings that libraries read once, at import, such as huggingface_hub's HF_HUB_*)."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO), **env),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
