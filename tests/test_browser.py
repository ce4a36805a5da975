"""End to end in a real browser: Debian's Chromium driven by Playwright (no browser download)."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "screenshots"
XSS = '<img src=x onerror="window.__xss = 1"> left pneumothorax'
REPO = Path(__file__).resolve().parents[1]
# An absolute path on the server: the repository, a home or a temporary folder.
SERVER_PATH = re.compile(rf"{re.escape(str(REPO))}|/tmp/|/home/|/root/|/work/|/private/var/")


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


# Returns {seconds: Promise} (evaluate_handle would wait for a bare promise, before the click).
TIME_A_CLICK = """expected => ({seconds: new Promise(resolve => {
    let clicked = null;
    document.addEventListener('mousedown', () => { clicked = performance.now(); }, {capture: true, once: true});
    const filled = () => document.querySelector('#cards .cx-truth .cx-caption')?.textContent === expected
        && document.querySelectorAll('#cards .cx-scores').length === 4;
    new MutationObserver((_, observer) => {
        if (clicked !== null && filled()) { observer.disconnect(); resolve((performance.now() - clicked) / 1000); }
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
})})"""


@pytest.mark.parametrize("width, height, name", [(1366, 900, "laptop"), (1920, 1080, "projector")])
def test_a_cached_example_fills_four_cards_with_scores_within_0_3_s(browser, app_url, width, height, name):
    """Timed in the page, from the click to the fourth card with scores. The first example, then
    the second, then the first again: the best of three must be within 0.3 s, so that a host busy
    with other jobs for a moment does not fail it, while a cache that does not answer (a second
    or more with live captions) still does."""
    from cxrcap.app.examples import DEFAULT_FOLDER, load_examples

    examples = load_examples(DEFAULT_FOLDER)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(app_url)
    thumbnails = page.locator("button.thumbnail-item")
    expect(thumbnails).to_have_count(len(examples), timeout=30_000)
    wait_for_the_example_cache(len(examples))
    seconds = []
    for index in (0, 1, 0):
        timing = page.evaluate_handle(TIME_A_CLICK, examples[index].caption)
        thumbnails.nth(index).click()
        seconds.append(page.evaluate("timing => timing.seconds", timing))
        expect(page.get_by_text(f"Example credit: {examples[index].credit}").first).to_be_visible()
        if index == 0 and len(seconds) == 1:
            page.screenshot(path=str(SCREENSHOTS / f"cached-example-{name}.png"), full_page=True)
    print(f"\n{name}: cached example -> four cards with scores in " + ", ".join(f"{s:.3f}" for s in seconds) + " s")
    assert min(seconds) <= 0.3
    page.close()


def set_decoding(page, beams: int, tokens: int) -> None:
    page.get_by_text("Decoding settings").click()
    for label, value in (("Beams (1 = greedy)", beams), ("Longest caption (tokens)", tokens)):
        box = page.get_by_label(f"number input for {label}")
        box.fill(str(value))
        box.press("Enter")


# Whether the page ever said, after the next click, that the example picked is on its way.
SAYS_IT_WAITS = """() => ({said: new Promise(resolve => {
    new MutationObserver((_, observer) => {
        if (document.querySelector('#examples-status')?.innerText.includes('example you picked')) {
            observer.disconnect(); resolve(true); }
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
})})"""


def test_an_example_clicked_while_another_captions_is_shown_not_dropped(browser, app_url):
    """Beams 8 and 100 tokens (nothing cached): a second example clicked while the first one's
    captions are still coming shows, with its own ground truth and scores; meanwhile the page
    says that it is on its way."""
    from cxrcap.app.examples import DEFAULT_FOLDER, load_examples

    examples = load_examples(DEFAULT_FOLDER)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    thumbnails = page.locator("button.thumbnail-item")
    expect(thumbnails).to_have_count(len(examples), timeout=30_000)
    set_decoding(page, beams=8, tokens=100)
    truth = page.get_by_label("Ground-truth caption")
    thumbnails.nth(0).click()
    expect(truth).to_have_value(examples[0].caption, timeout=30_000)
    expect(page.locator("#cards .cx-waiting", has_text="working").first).to_be_visible()  # still captioning
    waits = page.evaluate_handle(SAYS_IT_WAITS)
    thumbnails.nth(8).click()
    expect(truth).to_have_value(examples[8].caption, timeout=60_000)
    expect(page.get_by_text(f"Example credit: {examples[8].credit}").first).to_be_visible()
    expect(page.locator("#cards .cx-truth .cx-caption")).to_have_text(examples[8].caption)
    expect(page.locator("#cards .cx-scores")).to_have_count(4, timeout=60_000)
    assert page.evaluate("waits => waits.said", waits)
    expect(page.locator("#examples-status")).to_have_text("")  # said no longer once it is shown
    page.screenshot(path=str(SCREENSHOTS / "second-example.png"), full_page=True)
    page.close()


def cards_state(page) -> dict:
    return page.evaluate("""() => ({
        empty: document.querySelectorAll('#cards .cx-empty').length,
        captions: document.querySelectorAll('#cards .cx-caption').length,
        working: document.querySelector('#cards').innerText.includes('working'),
        preview: document.querySelectorAll('#preview img').length,
    })""")


def test_a_rejected_upload_clears_the_previous_image_and_keeps_the_ground_truth(browser, app_url, cxr_image, tmp_path):
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes(cxr_image.read_bytes()[: cxr_image.stat().st_size // 2])
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    expect(page.locator("#cards .cx-empty")).to_contain_text("Upload a chest X-ray", timeout=30_000)
    assert cards_state(page)["working"] is False  # nothing runs before an upload
    page.get_by_label("Ground-truth caption").fill("left pneumothorax")
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-scores")).to_have_count(4, timeout=60_000)

    page.locator("#upload").get_by_label("Clear").click()  # as a user replaces the file
    page.locator("#upload input[type=file]").set_input_files(str(truncated))
    expect(page.locator(".toast-body").filter(has_text="truncated or corrupt").first).to_be_visible(timeout=30_000)
    expect(page.locator("#cards .cx-empty")).to_have_count(1)
    assert cards_state(page) == {"empty": 1, "captions": 0, "working": False, "preview": 0}
    expect(page.get_by_label("Ground-truth caption")).to_have_value("left pneumothorax")
    assert page.locator("#preview, #component-0").get_by_text("Error", exact=True).count() == 0  # no red badge
    page.screenshot(path=str(SCREENSHOTS / "rejected-upload.png"), full_page=True)

    page.get_by_role("button", name="Caption", exact=True).click()
    expect(page.locator(".toast-body").filter(has_text="pick an example first").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1_000)
    assert cards_state(page) == {"empty": 1, "captions": 0, "working": False, "preview": 0}
    toasts = page.locator(".toast-body").all_inner_texts()
    assert toasts and not any(SERVER_PATH.search(text) for text in toasts)
    page.close()


def test_no_server_path_on_any_tab(browser, app_url):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    expect(page.get_by_text("never clinical decisions").first).to_be_visible(timeout=30_000)
    texts = [page.locator("body").inner_text()]
    for tab in ("Results", "About"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
        texts.append(page.locator("body").inner_text())
    assert "No results in the results folder" in texts[1]
    assert [SERVER_PATH.findall(text) for text in texts] == [[], [], []]
    page.close()


def test_on_a_phone_the_cards_follow_the_preview(browser, app_url, cxr_image):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(app_url)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-caption")).to_have_count(4, timeout=60_000)
    preview_bottom, cards_top = page.evaluate("""() => [
        document.querySelector('#preview').getBoundingClientRect().bottom + window.scrollY,
        document.querySelector('#cards .cx-card').getBoundingClientRect().top + window.scrollY]""")
    page.screenshot(path=str(SCREENSHOTS / "phone-390.png"), full_page=True)
    assert 0 <= cards_top - preview_bottom < 60, (preview_bottom, cards_top)
    assert cards_top < 844 * 1.5  # within the second screen, not below two screens of controls
    page.close()


def test_on_a_phone_the_examples_are_on_the_first_screen_and_a_tap_shows_its_x_ray_below_them(browser, app_url):
    from cxrcap.app.examples import DEFAULT_FOLDER, load_examples

    examples = load_examples(DEFAULT_FOLDER)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(app_url)
    thumbnails = page.locator("button.thumbnail-item")
    expect(thumbnails.first).to_be_visible(timeout=30_000)
    assert thumbnails.first.bounding_box()["y"] + thumbnails.first.bounding_box()["height"] < 844  # no scrolling to find them
    thumbnails.first.tap()
    expect(page.get_by_text(f"Example credit: {examples[0].credit}").first).to_be_visible(timeout=30_000)
    expect(page.locator("#cards .cx-scores")).to_have_count(4, timeout=60_000)
    tapped, preview, cards = (page.locator(selector).first.bounding_box() for selector in
                              ("button.thumbnail-item", "#preview img", "#cards .cx-card"))  # fmt: skip
    page.screenshot(path=str(SCREENSHOTS / "phone-example-tapped.png"))
    page.screenshot(path=str(SCREENSHOTS / "phone-example-tapped-full.png"), full_page=True)
    # The tapped example's X-ray shows right below the examples, within the screen; its credit and
    # captions next.
    assert 0 < preview["y"] - (tapped["y"] + tapped["height"]) < 200 and preview["y"] + 100 < 844, (tapped, preview)
    assert 0 < cards["y"] - (preview["y"] + preview["height"]) < 200, (preview, cards)
    page.close()


@pytest.mark.parametrize("width, height", [(1366, 900), (1920, 1080)])
def test_card_titles_are_drawn_in_one_font(browser, app_url, cxr_image, width, height):
    page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=2)
    page.goto(app_url)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-caption")).to_have_count(4, timeout=60_000)
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    titles = cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": "#cards .cx-card h3"})["nodeIds"]
    assert len(titles) == 4
    for node in titles:
        # the title's own text node: the badge beside it has its own size
        text = cdp.send("DOM.describeNode", {"nodeId": node, "depth": 1})["node"]["children"][0]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        assert len(fonts) == 1, (text.get("nodeValue"), fonts)  # one face for every letter of "BLIP base"
    page.locator("#cards .cx-card h3").nth(2).screenshot(path=str(SCREENSHOTS / f"card-title-{width}.png"))
    page.close()


def test_clicking_a_word_overlays_its_heatmap(browser, app_url, cxr_image):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    expect(page.get_by_text("never clinical decisions").first).to_be_visible(timeout=30_000)
    expect(page.locator("#heatmaps")).to_be_hidden()  # the default view stays as simple as before
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-caption")).to_have_count(4, timeout=60_000)

    page.locator("#show-heatmaps input[type=checkbox]").check()
    first_word = page.locator("#words-git-base label").first
    expect(first_word).to_be_visible(timeout=120_000)
    expect(page.locator("#heatmap-overlay img")).to_have_count(0)
    first_word.click()
    expect(page.locator("#heatmap-overlay img")).to_have_count(1, timeout=60_000)
    expect(page.get_by_text("not evidence of a finding").first).to_be_visible()
    # What the pictures show is said in words too, for a screen reader.
    word = first_word.inner_text()
    expect(page.locator("#heatmap-overlay img")).to_have_attribute(
        "alt", re.compile(rf'"{re.escape(word)}" - GIT base - gradient-weighted relevance'))
    expect(page.locator("#preview img")).to_have_attribute("alt", re.compile("chest X-ray"))
    page.locator("#heatmap-overlay").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "heatmap-1366.png"), full_page=True)
    page.close()


def words_of(page, variant_id: str) -> list[str]:
    return page.locator(f"#words-{variant_id} label").all_inner_texts()


def drag_the_opacity_slider(page, start: float, end: float) -> None:
    slider = page.get_by_label("range slider for Overlay opacity")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.mouse.move(box["x"] + box["width"] * start, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def test_a_new_image_replaces_the_words_and_the_picked_word_of_the_previous_one(browser, app_url, cxr_image,
                                                                                cxr_examples_dir):
    """A word picked, then another X-ray uploaded with slow settings and the opacity slider moved
    while it captions: the old words and map go at once, nothing fails, and the new captions'
    words follow."""
    other = next(path for path in sorted((cxr_examples_dir / "images").glob("*.jpg")) if path.name != cxr_image.name)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(app_url)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-caption")).to_have_count(4, timeout=60_000)
    page.locator("#show-heatmaps input[type=checkbox]").check()
    expect(page.locator("#words-git-base label").first).to_be_visible(timeout=120_000)
    old_words = words_of(page, "git-base")
    page.locator("#words-blip-base-ft label").last.click()
    expect(page.locator("#heatmap-overlay img")).to_have_count(1, timeout=60_000)

    set_decoding(page, beams=8, tokens=100)
    page.locator("#upload").get_by_label("Clear").click()
    page.locator("#upload input[type=file]").set_input_files(str(other))
    expect(page.locator("#cards .cx-waiting", has_text="working").first).to_be_visible(timeout=30_000)
    for variant_id in ("git-base", "blip-base-ft"):
        expect(page.locator(f"#words-{variant_id} label")).to_have_count(0)  # not the old image's words
    expect(page.locator("#heatmap-overlay img")).to_have_count(0)
    drag_the_opacity_slider(page, 0.2, 0.8)
    expect(page.locator("#cards .cx-scores, #cards .cx-caption")).to_have_count(4, timeout=60_000)
    expect(page.locator("#cards .cx-waiting", has_text="working")).to_have_count(0, timeout=60_000)
    expect(page.locator("#words-git-base label").first).to_be_visible(timeout=120_000)
    new_words = words_of(page, "git-base")
    caption = page.locator("#cards .cx-card[data-variant='git-base'] .cx-caption").inner_text().lower()
    assert new_words != old_words and all(word.lower() in caption for word in new_words), (new_words, caption)
    drag_the_opacity_slider(page, 0.8, 0.6)
    page.wait_for_timeout(1_000)
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
    page.locator("#words-git-base label").first.click()
    overlay = page.locator("#heatmap-overlay img")
    expect(overlay).to_have_count(1, timeout=60_000)
    drawn = overlay.get_attribute("src")
    drag_the_opacity_slider(page, 0.6, 0.3)  # the drags above did reach the app: here one redraws
    expect(overlay).not_to_have_attribute("src", drawn, timeout=60_000)
    page.locator("#heatmaps").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "heatmap-new-image.png"), full_page=True)
    page.close()


# Every visible text on the page: its colour (with the opacity of it and its ancestors) over the
# colour behind it (the ancestors' backgrounds, composited), and the WCAG contrast ratio of the two.
CONTRASTS = """() => {
    const rgba = css => {  // rgb(a) in 0-255, or color(srgb ...) in 0-1 (what color-mix computes to)
        const v = css.match(/[\\d.]+/g).map(Number), scale = css.startsWith('color(srgb') ? 255 : 1;
        return [v[0] * scale, v[1] * scale, v[2] * scale, v.length > 3 ? v[3] : 1];
    };
    const over = (top, below) => [0, 1, 2].map(i => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
    const luminance = c => { const [r, g, b] = c.slice(0, 3).map(x => { x /= 255;
        return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const behind = element => {
        const layers = [];
        for (let e = element; e; e = e.parentElement) {
            const colour = rgba(getComputedStyle(e).backgroundColor);
            if (colour[3] > 0) { layers.push(colour); if (colour[3] === 1) break; }
        }
        return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
    };
    const opacity = element => { let o = 1; for (let e = element; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
    const found = new Map();
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const element = walker.currentNode.parentElement;
        if (!walker.currentNode.textContent.trim() || found.has(element)) continue;
        const box = element.getBoundingClientRect(), style = getComputedStyle(element);
        if (!box.width || !box.height || style.visibility === 'hidden') continue;
        const background = behind(element), colour = rgba(style.color);
        const text = over([...colour.slice(0, 3), colour[3] * opacity(element)], background);
        const [light, dark] = [luminance(text), luminance(background)].sort((a, b) => b - a);
        const size = parseFloat(style.fontSize), large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        found.set(element, {text: walker.currentNode.textContent.trim().slice(0, 60), ratio: (light + 0.05) / (dark + 0.05),
                            needed: large ? 3 : 4.5, colour: style.color, background: `rgb(${background.slice(0, 3).map(Math.round)})`});
    }
    return [...found.values()];
}"""


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_on_the_caption_tab_meets_wcag_aa_contrast(browser, app_url, theme):
    """With the captions of an example, the review form and the heatmap words on show: every
    visible text against what is behind it, at least 4.5:1 (3:1 for large text)."""
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(f"{app_url}?__theme={theme}")
    thumbnails = page.locator("button.thumbnail-item")
    expect(thumbnails.first).to_be_visible(timeout=30_000)
    thumbnails.first.click()
    expect(page.locator("#cards .cx-scores")).to_have_count(4, timeout=60_000)
    expect(page.locator("#review-git-base").first).to_be_visible(timeout=30_000)
    page.locator("#show-heatmaps input[type=checkbox]").check()
    expect(page.locator("#words-git-base label").first).to_be_visible(timeout=120_000)
    texts = page.evaluate(CONTRASTS)
    page.screenshot(path=str(SCREENSHOTS / f"contrast-{theme}.png"), full_page=True)
    said = " ".join(text["text"] for text in texts)
    for named in ("Optional. Stored exactly as typed", "Where each word of a caption looks", "no chest findings", "in both"):
        assert named in said  # the texts the issue names, and the cards' own, were among those checked
    low = [f"{t['text']!r}: {t['ratio']:.2f} ({t['colour']} on {t['background']})" for t in texts if t["ratio"] < t["needed"]]
    assert low == []
    page.close()
