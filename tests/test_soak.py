"""The app under real use, as one process: a browser session with an export, then 200 mixed API
requests from several clients at once, then SIGTERM, as a service manager stops it. Nothing may
go wrong, no message may name a server folder, memory stays flat, and nothing stays on disk.
Twice: with the study's four, and with the fifth slot beside them and heatmaps on in the browser."""

import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect, sync_playwright

from benchmarks.app_process import start_app, stop_app
from cxrcap.app.comparison import MAX_GROUND_TRUTH_CHARS
from test_browser import drag_the_opacity_slider, set_decoding

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


@dataclass(frozen=True)
class Lineup:
    args: tuple[str, ...]  # beside --tiny-random
    variants: int
    heatmaps: bool  # the browser session shows heatmaps, picks words, uploads a second X-ray meanwhile


LINEUPS = {"four": Lineup((), 4, False), "five-with-heatmaps": Lineup(("--extra-model", "tiny"), 5, True)}


@pytest.fixture(scope="module", params=list(LINEUPS))
def lineup(request) -> Lineup:
    return LINEUPS[request.param]


@pytest.fixture(scope="module")
def app(lineup, tiny_sources, tmp_path_factory):
    """The app with its own GRADIO_TEMP_DIR parent, so that everything it writes can be listed."""
    temp = tmp_path_factory.mktemp("gradio-temp")
    env = dict(os.environ, GRADIO_TEMP_DIR=str(temp), CXRCAP_EXAMPLES=str(temp.parent / "no-examples"),
               CXRCAP_RESULTS=str(temp.parent / "no-results"))
    log = tmp_path_factory.mktemp("soak-log") / "app.log"
    process, url = start_app(["--tiny-random", *lineup.args], env, log)
    if lineup.variants == 5:  # a request made while the fifth loads gets its "loading" row
        deadline = time.monotonic() + 180
        while "(extra) is ready" not in log.read_text():
            assert time.monotonic() < deadline, f"the fifth did not load; see {log}"
            time.sleep(0.2)
    yield process, url, temp, log
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


def test_browser_session_with_an_export(app, lineup, cxr_image, cxr_examples_dir):
    _, url, temp, _ = app
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url)
        page.locator("input[type=file]").first.set_input_files(str(cxr_image))
        expect(page.locator("#cards .cx-caption")).to_have_count(lineup.variants, timeout=90_000)
        if lineup.heatmaps:
            other = next(path for path in sorted((cxr_examples_dir / "images").glob("*.jpg")) if path != cxr_image)
            heatmaps_while_another_xray_captions(page, other, lineup)
        page.get_by_role("button", name="Download this comparison").click()
        expect(page.locator("a[download$='.png'], a[download$='.csv']")).to_have_count(2, timeout=30_000)
        text = page.locator("body").inner_text()
        assert "assets/examples/" in text or "$CXRCAP_EXAMPLES" in text
        assert SERVER_PATH.findall(text) == []  # "No examples: put X-rays ... in" names no server folder
        browser.close()
    exports = list(temp.rglob("cxrcap-comparison.*"))
    assert len(exports) == 2 and all(path.stat().st_size > 0 for path in exports)


def heatmaps_while_another_xray_captions(page, other: Path, lineup: Lineup) -> None:
    """Heatmaps on, a word picked, another X-ray uploaded with slower settings and the opacity
    moved while it captions; then a word of the new captions picked (the slide shows its map)."""
    page.locator("#show-heatmaps input[type=checkbox]").check()
    expect(page.locator("#words-git-base label").first).to_be_visible(timeout=120_000)
    page.locator("#words-git-base label").last.click()
    expect(page.locator("#heatmap-overlay img")).to_have_count(1, timeout=60_000)
    set_decoding(page, beams=4, tokens=40)
    page.locator("#upload").get_by_label("Clear").click()
    page.locator("#upload input[type=file]").set_input_files(str(other))
    drag_the_opacity_slider(page, 0.2, 0.8)
    expect(page.locator("#cards .cx-caption")).to_have_count(lineup.variants, timeout=120_000)
    expect(page.locator("#cards .cx-waiting", has_text="working")).to_have_count(0, timeout=120_000)
    expect(page.locator("#words-git-base label").first).to_be_visible(timeout=120_000)
    page.locator("#words-git-base label").first.click()
    expect(page.locator("#heatmap-overlay img")).to_have_count(1, timeout=60_000)
    drag_the_opacity_slider(page, 0.8, 0.4)
    assert page.locator(".toast-body").all_inner_texts() == []


def test_200_mixed_requests_from_several_clients(app, lineup, cxr_examples_dir, bad_files):
    process, url, temp, _ = app
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
            if path in bad_files or len(rows) != lineup.variants or not all(row["caption"] for row in rows):
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
    process, _, temp, log = app
    assert any(temp.rglob("*.jpg")), "the uploads are there while the app runs"
    stop_app(process)
    assert process.returncode is not None
    assert "Traceback" not in log.read_text()  # no handler failed on the way
    assert sorted(str(path.relative_to(temp)) for path in temp.rglob("*")) == []
