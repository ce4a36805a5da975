"""Reviews through the running app: the `/review` API, load, a crash, and a real browser."""

import os
import re
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client, handle_file
from playwright.sync_api import expect
from test_browser import SCREENSHOTS, browser  # noqa: F401  (the browser fixture)

from benchmarks.app_process import running_app, start_app
from cxrcap.reviews import MAX_COMMENT_CHARS, ReviewStore, make_review

TRUTH = "Left pleural effusion and cardiomegaly."
HTML_COMMENT = '<img src=x onerror="window.__xss = 1"> misses the heart'
# What image files start with: none may be in the database (reviews know an image by its sha256).
IMAGE_MAGIC = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff", "DICOM": b"DICM"}


def stored(db) -> dict[int, dict]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in connection.execute("SELECT * FROM reviews")}


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_review_api_returns_the_id_and_refuses_bad_values_storing_nothing(client, reviews_db, cxr_image, tmp_path):
    review_id = client.predict(handle_file(str(cxr_image)), TRUTH, "blip-base", "left effusion", "partly",
                               "x" * 1_000_000, "Dr API", api_name="/review")  # fmt: skip
    row = stored(reviews_db)[review_id]
    assert (row["variant"], row["rating"], row["reviewer"]) == ("blip-base", "partly", "Dr API")
    assert len(row["comment"]) == MAX_COMMENT_CHARS  # a 1 MB comment is cut to the stated limit
    html_id = client.predict(handle_file(str(cxr_image)), "", "git-base", "c", "wrong", HTML_COMMENT, "",
                             api_name="/review")  # fmt: skip
    assert stored(reviews_db)[html_id]["comment"] == HTML_COMMENT  # stored as text, as typed

    before = len(stored(reviews_db))
    fake = tmp_path / "scan.png"
    fake.write_text("<html>not an x-ray</html>")
    for image, variant, rating, message in [
        (cxr_image, "gpt-4", "correct", "Unknown variant 'gpt-4'; choose one of git-base"),
        (cxr_image, "git-base", "excellent", "Rating must be one of correct, partly, wrong"),
        (fake, "git-base", "correct", "not an image"),
    ]:
        with pytest.raises(Exception) as caught:
            client.predict(handle_file(str(image)), TRUTH, variant, "c", rating, "", "", api_name="/review")
        assert message in str(caught.value) and "Traceback" not in str(caught.value)
    assert len(stored(reviews_db)) == before


def test_review_api_with_a_submission_id_stores_a_retried_call_once(client, reviews_db, cxr_image):
    sent = (handle_file(str(cxr_image)), TRUTH, "git-base", "left effusion", "correct", "", "Dr Retry")
    first = client.predict(*sent, "7c1e-retry", api_name="/review")
    assert client.predict(*sent, "7c1e-retry", api_name="/review") == first  # the answer the first call got
    assert [row["id"] for row in stored(reviews_db).values() if row["idempotency_key"] == "7c1e-retry"] == [first]
    before = len(stored(reviews_db))
    for variant, caption, message in [("git-base", "  ", "The caption is empty"),
                                      ("extra", "c", "This app does not run Extra model (extra)")]:
        with pytest.raises(Exception) as caught:
            client.predict(handle_file(str(cxr_image)), TRUTH, variant, caption, "correct", "", "", "",
                           api_name="/review")
        assert message in str(caught.value) and "Traceback" not in str(caught.value)
    assert len(stored(reviews_db)) == before


def test_eight_clients_25_reviews_each_all_stored_none_locked(app_url, reviews_db, cxr_image):
    def reviewer(worker):
        client = Client(app_url, verbose=False)
        ids = []
        for index in range(25):
            ids.append(client.predict(handle_file(str(cxr_image)), TRUTH, "git-base", f"caption {worker}-{index}",
                                      ("correct", "partly", "wrong")[index % 3], "", f"load {worker}",
                                      api_name="/review"))  # fmt: skip
        return ids

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = [review_id for worker_ids in pool.map(reviewer, range(8)) for review_id in worker_ids]  # raises any error
    print(f"\nreviews load: 8 clients x 25 /review calls in {time.perf_counter() - start:.1f} s")
    assert len(set(ids)) == 200
    rows = stored(reviews_db)
    assert all(review_id in rows for review_id in ids)
    assert {rows[i]["caption"] for i in ids} == {f"caption {w}-{i}" for w in range(8) for i in range(25)}


def test_app_killed_during_a_burst_keeps_every_acknowledged_review(tiny_sources, cxr_examples_dir, cxr_image, tmp_path):
    db = tmp_path / "reviews.sqlite"
    env = dict(os.environ, CXRCAP_REVIEWS=str(db), CXRCAP_EXAMPLES=str(cxr_examples_dir))
    process, url = start_app(["--tiny-random"], env, tmp_path / "app.log")
    acknowledged, enough, stop = [], threading.Event(), threading.Event()

    def burst(worker):
        client = Client(url, verbose=False)
        while not stop.is_set():
            try:
                review_id = client.predict(handle_file(str(cxr_image)), TRUTH, "git-base", f"burst {worker}",
                                           "correct", "", "", api_name="/review")  # fmt: skip
            except Exception:  # the app is gone
                return
            acknowledged.append(review_id)
            if len(acknowledged) >= 40:
                enough.set()

    threads = [threading.Thread(target=burst, args=(worker,), daemon=True) for worker in range(8)]
    try:
        for thread in threads:
            thread.start()
        assert enough.wait(timeout=180), "the burst did not get going"
        os.kill(process.pid, signal.SIGKILL)  # mid-burst: requests are in flight
        process.wait(timeout=30)
    finally:
        stop.set()
        process.kill()
    for thread in threads:
        thread.join(timeout=60)

    with running_app(["--tiny-random"], env, tmp_path / "restarted.log") as restarted:
        with sqlite3.connect(db) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = stored(db)
        assert set(acknowledged) <= set(rows), "a review acknowledged before the kill is missing"
        after = Client(restarted, verbose=False).predict(handle_file(str(cxr_image)), "", "blip-base", "c", "wrong",
                                                         "", "", api_name="/review")  # fmt: skip
        assert after > max(acknowledged)
    print(f"\nkill: {len(acknowledged)} acknowledged, {len(rows)} stored before the restart")


def reviews_count(page) -> int:
    text = page.locator("#reviews-summary").inner_text()
    found = re.search(r"([\d,]+) reviews? of captions", text)
    return int(found.group(1).replace(",", "")) if found else 0


def test_browser_caption_rate_two_cards_submit_and_the_summary_changes(browser, app_url, cxr_image):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    page.get_by_role("tab", name="Results").click()
    expect(page.locator("#reviews-summary")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(6_000)  # one refresh period: the summary is current
    before = reviews_count(page)

    page.get_by_role("tab", name="Caption").click()
    page.get_by_label("Ground-truth caption").fill(TRUTH)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-scores")).to_have_count(4, timeout=60_000)
    expect(page.locator("#review-git-base").first).to_be_visible(timeout=30_000)
    page.locator("#review-git-base").first.get_by_label("correct", exact=True).check()
    page.locator("#review-git-base").first.get_by_label("wrong", exact=True).check()  # changed my mind: editing is easy
    blip = page.locator("#review-blip-base").first
    blip.get_by_label("partly correct", exact=True).check()
    blip.locator("textarea").fill(HTML_COMMENT)
    page.locator("#reviewer textarea, #reviewer input").first.fill("Dr Browser")
    page.locator("#submit-reviews").click()

    status = page.locator("#review-status")
    expect(status).to_contain_text("2 reviews stored", timeout=30_000)
    expect(status.locator(".cx-review-comment")).to_have_text(HTML_COMMENT)  # shown as text
    assert status.locator("img").count() == 0 and page.evaluate("window.__xss") is None
    expect(page.locator("#submit-reviews")).to_be_disabled()  # no second submission
    page.screenshot(path=str(SCREENSHOTS / "reviews-submitted.png"), full_page=True)

    page.get_by_role("tab", name="Results").click()
    expect(page.locator("#reviews-summary")).to_contain_text(f"{before + 2:,} reviews of captions", timeout=30_000)
    expect(page.locator("#reviews-summary")).to_contain_text("Kendall")
    page.screenshot(path=str(SCREENSHOTS / "reviews-summary.png"), full_page=True)
    page.close()


def test_a_fresh_page_shows_the_reviews_stored_by_now_not_at_server_start(browser, app_url, reviews_db):  # noqa: F811
    ReviewStore(reviews_db).add(make_review(variant="git-base", caption="stored after the app started",
                                            rating="correct", image_sha256="f" * 64)[0])
    count = len(stored(reviews_db))
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.clock.install()
    page.clock.pause_at(time.time() * 1000)  # the page's timers are stopped: no refresh tick can fill the summary
    page.goto(app_url)
    page.get_by_role("tab", name="Results").click()
    expect(page.locator("#reviews-summary")).to_contain_text(f"{count:,} review{'s' * (count != 1)} of captions",
                                                                 timeout=30_000)
    page.close()


def test_browser_a_refused_submission_leaves_the_form_usable(browser, app_url, reviews_db, cxr_image):  # noqa: F811
    """Nothing rated, then a note without a rating: each is said in a toast, and no box of the
    form wears an "Error" badge or a cover that takes the pointer; the form still submits."""
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    card = page.locator("#review-git-base").first
    expect(card).to_be_visible(timeout=60_000)
    before = len(stored(reviews_db))

    page.locator("#submit-reviews").click()
    expect(page.locator(".toast-body").filter(has_text="Rate at least one caption").first).to_be_visible(timeout=30_000)
    card.locator("textarea").fill("the heart is missed")
    page.locator("#submit-reviews").click()
    expect(page.locator(".toast-body").filter(has_text="GIT base: choose correct").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "review-refused.png"), full_page=True)
    assert page.locator("[id^=review-]").get_by_text("Error", exact=True).count() == 0  # no red badge
    card.get_by_label("partly correct", exact=True).check(timeout=5_000)  # a covered radio cannot be clicked
    page.locator("#submit-reviews").click()
    expect(page.locator("#review-status")).to_contain_text("1 review stored", timeout=30_000)
    assert len(stored(reviews_db)) == before + 1
    page.close()


def test_no_image_bytes_anywhere_in_the_database(reviews_db):
    assert stored(reviews_db), "the tests above stored reviews of real X-rays"
    for path in [reviews_db, *reviews_db.parent.glob(reviews_db.name + "-*")]:  # the WAL too
        content = path.read_bytes()
        for kind, magic in IMAGE_MAGIC.items():
            assert magic not in content, f"{kind} bytes in {path.name}"
