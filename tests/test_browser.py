"""End to end in a real browser: Debian's Chromium driven by Playwright (no browser download)."""

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
XSS = '<img src=x onerror="window.__xss = 1"> left pneumothorax'


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed: apt-get install chromium (see .ci/run)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.mark.parametrize("width, height, name", [(1366, 900, "laptop"), (1920, 1080, "projector")])
def test_upload_shows_four_cards_and_escapes_the_ground_truth(browser, app_url, cxr_image, width, height, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(app_url)
    expect(page.get_by_text("never clinical decisions").first).to_be_visible(timeout=30_000)

    page.get_by_label("Ground-truth caption").fill(XSS)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    captions = page.locator("#cards .cx-card[data-variant$='base'] .cx-caption, #cards .cx-card[data-variant$='ft'] .cx-caption")
    expect(captions).to_have_count(4, timeout=60_000)
    for variant in ("GIT base", "GIT fine-tuned", "BLIP base", "BLIP fine-tuned"):
        expect(page.locator("#cards h3", has_text=variant)).to_be_visible()
    expect(page.locator("#cards .cx-untrained")).to_have_count(4)
    expect(page.locator("#cards").get_by_text("ROUGE-Lsum").first).to_be_visible()

    truth = page.locator("#cards .cx-truth .cx-caption")
    expect(truth).to_have_text(XSS)  # shown as text, not as an element
    assert page.locator("#cards img").count() == 0
    assert page.evaluate("window.__xss") is None
    page.screenshot(path=str(SCREENSHOTS / f"caption-{name}.png"), full_page=True)
    page.close()


def test_bad_upload_shows_a_message_not_a_traceback(browser, app_url, tmp_path):
    fake = tmp_path / "scan.png"
    fake.write_text("this is a text file")
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    page.locator("input[type=file]").first.set_input_files(str(fake))
    expect(page.get_by_text("not an image", exact=False).first).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "bad-upload.png"), full_page=True)
    page.close()


def test_choosing_an_example_fills_the_ground_truth_and_captions_it(browser, app_url, cxr_image):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    # Thumbnails still load after earlier uploads of the same image (shared Gradio cache).
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('button.thumbnail-item img')].slice(0, 8);"
        " return imgs.length === 8 && imgs.every(img => img.complete && img.naturalWidth > 0); }",
        timeout=30_000,
    )
    page.locator("button.thumbnail-item").first.click()
    expect(page.locator("#cards .cx-truth")).to_have_count(1, timeout=60_000)
    expect(page.locator("#cards .cx-scores")).to_have_count(4, timeout=60_000)
    expect(page.get_by_text("Example credit").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "example.png"), full_page=True)

    # An upload after an example is not scored against the example's caption.
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.get_by_label("Ground-truth caption")).to_have_value("", timeout=30_000)
    expect(page.get_by_text("Example credit")).to_have_count(0)
    expect(page.locator("#cards .cx-caption")).to_have_count(4, timeout=60_000)
    expect(page.locator("#cards .cx-truth")).to_have_count(0)
    expect(page.locator("#cards .cx-scores")).to_have_count(0)
    page.close()


def wait_for_the_example_cache(examples: int, variants: int = 4, timeout: float = 300) -> None:
    """The app writes one row per (example, variant) to the disk cache once captioned in the background."""
    import os
    import time

    rows = Path(os.environ["CXRCAP_CACHE"]) / "example-captions"
    deadline = time.monotonic() + timeout
    while len(list(rows.glob("*.json"))) < examples * variants:
        assert time.monotonic() < deadline, "the examples were not cached in the background"
        time.sleep(0.5)


@pytest.mark.parametrize("width, height, name", [(1366, 900, "laptop"), (1920, 1080, "projector")])
def test_a_cached_example_fills_four_cards_with_scores_within_0_3_s(browser, app_url, width, height, name):
    from cxrcap.app.examples import DEFAULT_FOLDER, load_examples

    examples = load_examples(DEFAULT_FOLDER)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(app_url)
    thumbnails = page.locator("button.thumbnail-item")
    expect(thumbnails).to_have_count(len(examples), timeout=30_000)
    wait_for_the_example_cache(len(examples))
    # Timed in the page: from the click to the fourth card with scores (the ground truth is the example's caption).
    page.evaluate("""() => {
        window.__clicked = null; window.__filled = null;
        document.addEventListener('mousedown', () => { window.__clicked = performance.now(); }, {capture: true, once: true});
        new MutationObserver((_, observer) => {
            if (window.__clicked !== null && document.querySelectorAll('#cards .cx-scores').length === 4) {
                window.__filled = performance.now(); observer.disconnect();
            }
        }).observe(document.body, {childList: true, subtree: true});
    }""")
    thumbnails.first.click()
    page.wait_for_function("() => window.__filled !== null", timeout=30_000)
    seconds = page.evaluate("() => (window.__filled - window.__clicked) / 1000")
    print(f"\n{name}: cached example -> four cards with scores in {seconds:.3f} s")
    assert seconds <= 0.3
    expect(page.get_by_text(f"Example credit: {examples[0].credit}").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / f"cached-example-{name}.png"), full_page=True)
    page.close()
