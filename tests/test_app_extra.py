"""The fifth slot in the app: its card (caption, scores, notes, full answer, errors with their fix),
without a browser, and in a real browser against `python app.py --tiny-random --extra-model tiny`."""

import os
import shutil
import time

import pytest
from playwright.sync_api import expect

from cxrcap import checkpoints
from cxrcap.app.cards import render_cards
from cxrcap.app.service import CaptionService
from cxrcap.images import load_image
from cxrcap.variants import VARIANT_IDS
from test_browser import SCREENSHOTS, browser  # noqa: F401  (the Chromium fixture)

FIVE = [*VARIANT_IDS, "extra"]


@pytest.fixture(scope="module")
def xray(cxr_image):
    return load_image(cxr_image)


def test_the_fifth_card_has_caption_scores_notes_and_the_full_answer(tiny_sources, xray):
    service = CaptionService(["git-base"], tiny_random=True, extra_model="tiny")
    assert service.variant_ids == ["git-base", "extra"]
    comparison = list(service.compare(xray, "PA chest X-ray: no acute findings", 1, 8))[-1][0]
    extra = comparison.outcomes["extra"]
    assert extra.result.caption and extra.scores is not None and extra.result.full_text
    html = render_cards(service.variant_ids, comparison)
    card = html[html.index('data-variant="extra"'):]
    assert "Not part of the study" in card and "Licence: mit" in card and "Full answer" in card
    assert "Prompt: Describe the findings of this chest X-ray in one sentence." in card
    rows = {row["variant"]: row for row in comparison.rows()}
    assert rows["extra"]["full_text"] == extra.result.full_text and rows["extra"]["bleu"] is not None


def test_a_prompt_from_the_decoding_settings_is_used_and_shown(tiny_sources, xray):
    service = CaptionService([], tiny_random=True, extra_model="tiny-idefics3")
    comparison = list(service.compare(xray, "", 1, 8, prompt="Is there a pneumothorax?"))[-1][0]
    html = render_cards(service.variant_ids, comparison)
    assert "Prompt: Is there a pneumothorax?" in html
    assert "Is there a pneumothorax" not in (comparison.outcomes["extra"].result.full_text or "")


def test_while_the_fifth_loads_its_card_says_so_and_the_four_answer(tiny_sources, xray):
    service = CaptionService(list(VARIANT_IDS), tiny_random=True, extra_model="tiny-llava")
    for captioner in service.captioners.values():
        if captioner.variant.id != "extra":
            captioner.load()
    with checkpoints._LOADING:  # the fifth's load cannot finish meanwhile: a long load
        service.start()
        comparison = list(service.compare(xray, "", 1, 6))[-1][0]
    assert all(comparison.outcomes[vid].result.caption for vid in VARIANT_IDS)
    html = render_cards(service.variant_ids, comparison)
    assert "still loading" in html and "cx-waiting" in html[html.index('data-variant="extra"'):]


def test_an_error_is_the_fifth_card_with_its_fix(tiny_sources, xray, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(
        tmp_path / "text-only"
    )
    service = CaptionService([], extra_model=str(tmp_path / "text-only"))
    comparison = list(service.compare(xray, "", 1, 6))[-1][0]
    html = render_cards(service.variant_ids, comparison)
    assert "unavailable" in html and "not a vision-language model" in html and "To fix: choose a model" in html
    assert str(tmp_path) not in html


def test_a_broken_folders_card_names_the_file_and_its_fix_not_the_servers_path(tiny_sources, xray, tmp_path):
    from cxrcap.tiny_vlm import tiny_vlm_source

    folder = tmp_path / "my-vlm"
    shutil.copytree(tiny_vlm_source("gemma3"), folder)
    (folder / "config.json").write_text('{"model_type": "gemma3",')  # cut short
    service = CaptionService([], extra_model=str(folder))
    comparison = list(service.compare(xray, "", 1, 6))[-1][0]
    html = render_cards(service.variant_ids, comparison)
    assert "has a config.json that is not valid JSON" in html and "To fix: replace config.json" in html
    assert str(tmp_path) not in html


@pytest.fixture(scope="module")
def extra_app_url(tiny_sources, cxr_examples_dir, tmp_path_factory):
    from benchmarks.app_process import running_app

    env = dict(os.environ, CXRCAP_EXAMPLES=str(cxr_examples_dir), CXRCAP_RESULTS=str(tmp_path_factory.mktemp("none")))
    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app(["--tiny-random", "--extra-model", "tiny"], env, log) as url:
        # An upload made before the fifth has loaded gets its "loading" card (tested above without a
        # browser): wait for the line the app logs when it is ready, so this test is not a race.
        deadline = time.monotonic() + 180
        while "(extra) is ready" not in log.read_text():
            assert time.monotonic() < deadline, f"the fifth did not load; see {log}"
            time.sleep(0.2)
        yield url


def test_browser_shows_the_fifth_card_with_scores_and_the_full_answer_one_click_away(browser, extra_app_url, cxr_image):  # noqa: F811
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(extra_app_url)
    page.get_by_label("Ground-truth caption").fill("PA chest X-ray: no acute cardiopulmonary findings")
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    card = page.locator("#cards .cx-card[data-variant='extra']")
    expect(card.locator(".cx-caption")).to_have_count(1, timeout=90_000)
    expect(page.locator("#cards .cx-scores")).to_have_count(5, timeout=90_000)
    expect(card.get_by_text("Not part of the study")).to_be_visible()
    expect(card.get_by_text("Licence: mit")).to_be_visible()
    caption = card.locator(".cx-caption").inner_text()
    assert caption.strip() and "Describe the findings" not in caption and "<start_of_turn>" not in caption
    full = card.locator("details.cx-full")
    expect(full.locator(".cx-full-text")).not_to_be_visible()
    full.locator("summary").click()
    expect(full.locator(".cx-full-text")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "extra-card.png"), full_page=True)
    page.close()


def test_browser_the_heading_counts_five_models_and_every_element_id_is_unique(browser, extra_app_url, cxr_image):  # noqa: F811
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(extra_app_url)
    expect(page.locator("h1")).to_have_text("cxrcap: chest X-ray captions, five models side by side", timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(str(cxr_image))
    expect(page.locator("#cards .cx-caption")).to_have_count(5, timeout=90_000)
    expect(page.locator("#review-extra").first).to_be_visible(timeout=30_000)  # the review form is open
    repeated = page.evaluate("""() => { const seen = {};
        document.querySelectorAll('[id]').forEach(e => { if (e.id) seen[e.id] = (seen[e.id] || 0) + 1; });
        return Object.entries(seen).filter(([, count]) => count > 1); }""")
    assert repeated == []  # an empty id attribute (Gradio writes some) names nothing
    page.close()
