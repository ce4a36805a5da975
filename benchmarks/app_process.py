"""`python app.py` in a child process, as a user starts it (shared by the tests and the benchmarks)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_app(args: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start the app on a free loopback port; return the process and its URL once the page answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", *args, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the app did not start; see {log_path}") from None
            time.sleep(0.2)


def stop_app(process: subprocess.Popen) -> None:
    """SIGTERM, as a service manager stops it; SIGKILL if it has not gone after 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def running_app(args: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float = 120) -> Iterator[str]:
    """Start the app on a free loopback port and yield its URL once the page answers; stop it after."""
    process, url = start_app(args, env, log_path, timeout)
    try:
        yield url
    finally:
        stop_app(process)
