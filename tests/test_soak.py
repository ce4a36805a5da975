"""The app under real use, as one process: a browser session with an export, then 200 mixed API
requests from several clients at once, then SIGTERM, as a service manager stops it. Nothing may
go wrong, no message may name a server folder, memory stays flat, and nothing stays on disk."""

import os
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect, sync_playwright

from benchmarks.app_process import start_app, stop_app
from cxrcap.app.comparison import MAX_GROUND_TRUTH_CHARS

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SERVER_PATH = re.compile(rf"{re.escape(str(REPO))}|/tmp/|/home/|/root/|/work/|/private/var/")
REQUESTS, CLIENTS = 200, 6
# What each bad file must be told, in words a user understands.
BAD_FILES = {
    "notes.png": (b"these are my notes, not an image", "not an image in a format we can read"),
    "empty.jpg": (b"", "The file is empty"),
    "scan.dcm": (b"\x00" * 132 + b"garbage that is not a DICOM data set" * 20, "DICOM"),
}


@pytest.fixture(scope="module")
def app(tiny_sources, tmp_path_factory):
    """The app with its own GRADIO_TEMP_DIR parent, so that everything it writes can be listed."""
    temp = tmp_path_factory.mktemp("gradio-temp")
    env = dict(os.environ, GRADIO_TEMP_DIR=str(temp), CXRCAP_EXAMPLES=str(temp.parent / "no-examples"),
               CXRCAP_RESULTS=str(temp.parent / "no-results"))
    process, url = start_app(["--tiny-random"], env, tmp_path_factory.mktemp("soak-log") / "app.log")
    yield process, url, temp
    stop_app(process)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, cxr_image):
    folder = tmp_path_factory.mktemp("bad-files")
    files = {}
    for name, (data, expected) in BAD_FILES.items():
        (folder / name).write_bytes(data)
        files[folder / name] = expected
    truncated = folder / "half.jpg"
    truncated.write_bytes(cxr_image.read_bytes()[: cxr_image.stat().st_size // 2])
    files[truncated] = "truncated or corrupt"
    return files


def litter(temp: Path) -> list[str]:
    """0-byte files and empty folders under the app's temporary folder, but for the empty file
    the test sent and the folder Gradio makes once at start-up."""
    found = []
    for path in temp.rglob("*"):
        if path.name in ("empty.jpg", "vibe_edit_history"):
            continue
        if (path.is_file() and path.stat().st_size == 0) or (path.is_dir() and not any(path.iterdir())):
            found.append(str(path.relative_to(temp)))
    return found


def test_browser_session_with_an_export(app, cxr_image):
    _, url, temp = app
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url)
        page.locator("input[type=file]").first.set_input_files(str(cxr_image))
        expect(page.locator("#cards .cx-caption")).to_have_count(4, timeout=60_000)
        page.get_by_role("button", name="Download this comparison").click()
        expect(page.locator("a[download$='.png'], a[download$='.csv']")).to_have_count(2, timeout=30_000)
        text = page.locator("body").inner_text()
        assert "assets/examples/" in text or "$CXRCAP_EXAMPLES" in text
        assert SERVER_PATH.findall(text) == []  # "No examples: put X-rays ... in" names no server folder
        browser.close()
    exports = list(temp.rglob("cxrcap-comparison.*"))
    assert len(exports) == 2 and all(path.stat().st_size > 0 for path in exports)


def test_200_mixed_requests_from_several_clients(app, cxr_examples_dir, bad_files):
    process, url, temp = app
    xrays = sorted((cxr_examples_dir / "images").glob("*.jpg"))[:12]
    shared = xrays[0]  # sent by every client, often at the same moment
    rng = random.Random(0)
    jobs = []
    for i in range(REQUESTS):
        kind = rng.choice(["shared", "shared", "xray", "xray", "bad"])
        path = shared if kind == "shared" else rng.choice(xrays) if kind == "xray" else rng.choice(list(bad_files))
        ground_truth = "x" * (MAX_GROUND_TRUTH_CHARS + 10) if i % 50 == 7 else "chest x-ray, no pneumothorax"
        jobs.append((path, ground_truth))
    memory = psutil.Process(process.pid)
    rss, unexpected, told = {}, [], []
    done = threading.Semaphore(0)
    local = threading.local()

    def send(job):
        path, ground_truth = job
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False)
        try:
            rows = local.client.predict(handle_file(str(path)), ground_truth, 1, 5, api_name="/caption")
        except Exception as error:  # noqa: BLE001 (every failure is inspected below)
            message = str(error)
            told.append(message)
            if path not in bad_files or bad_files[path] not in message:
                unexpected.append(f"{path.name}: {message}")
        else:
            if path in bad_files or len(rows) != 4 or not all(row["caption"] for row in rows):
                unexpected.append(f"{path.name}: {rows}")
            cut = len(ground_truth) > MAX_GROUND_TRUTH_CHARS
            if any((row["ground_truth_notice"] is not None) != cut for row in rows):
                unexpected.append(f"{path.name}: notice {rows[0]['ground_truth_notice']!r}")
        done.release()

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(send, job) for job in jobs]
        for n in range(1, REQUESTS + 1):
            done.acquire()
            if n in (50, REQUESTS):
                rss[n] = memory.memory_info().rss
        for future in futures:
            future.result()
    growth = (rss[REQUESTS] - rss[50]) / 2**20
    print(f"\nsoak: {REQUESTS} requests, {len(told)} refused as bad files; RSS after 50 {rss[50] / 2**20:.0f} MiB, "
          f"after {REQUESTS} {rss[REQUESTS] / 2**20:.0f} MiB ({growth:+.1f} MiB)")
    assert unexpected == []
    assert len(told) == sum(path in bad_files for path, _ in jobs)
    assert [message for message in told if SERVER_PATH.search(message)] == []
    assert growth < 40, f"RSS grew {growth:.1f} MiB over {REQUESTS - 50} requests"
    assert litter(temp) == []  # no 0-byte file, no empty folder


def test_sigterm_leaves_nothing_behind(app):
    process, _, temp = app
    assert any(temp.rglob("*.jpg")), "the uploads are there while the app runs"
    stop_app(process)
    assert process.returncode is not None
    assert sorted(str(path.relative_to(temp)) for path in temp.rglob("*")) == []
