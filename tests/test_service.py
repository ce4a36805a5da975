"""The app's behaviour without a browser: streaming, scores, uploads, exports, bad input."""

import csv
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cxrcap.captioner import CaptionResult, DecodeSettings
from cxrcap.app.cards import render_cards
from cxrcap.app.comparison import MAX_GROUND_TRUTH_CHARS, Comparison
from cxrcap.metrics import SENTENCE_KEYS
from cxrcap.app.service import CaptionService, UserError
from cxrcap.variants import VARIANT_IDS


@pytest.fixture(scope="module")
def service(tiny_sources):
    return CaptionService(list(VARIANT_IDS), tiny_random=True)


@pytest.fixture(scope="module")
def xray(cxr_image):
    from cxrcap.images import load_image

    return load_image(cxr_image)


def test_compare_streams_one_card_at_a_time_with_scores(service, xray):
    states = [(len(c.outcomes), notice) for c, notice in service.compare(xray, "supine AP chest X-ray", 1, 8)]
    assert states == [(0, None), (1, None), (2, None), (3, None), (4, None)]
    comparison = list(service.compare(xray, "supine AP chest X-ray; finding: pneumothorax", 1, 8))[-1][0]
    for row in comparison.rows():
        assert row["caption"] and row["untrained"] and row["error"] is None
        assert all(0.0 <= row[key] <= 1.0 for key in SENTENCE_KEYS)


def test_without_ground_truth_there_are_captions_but_no_scores(service, xray):
    comparison = list(service.compare(xray, "   ", 1, 6))[-1][0]
    assert all(o.scores is None for o in comparison.outcomes.values())
    assert all(row["bleu"] is None for row in comparison.rows())


def test_huge_ground_truth_is_noticed_once_and_the_rows_say_it_was_cut(service, xray):
    states = list(service.compare(xray, "chest " * 200_000, 1, 5))
    notices = [notice for _, notice in states if notice]
    assert len(notices) == 1 and "only the first" in notices[0]  # one warning, not one per variant
    comparison = states[-1][0]
    assert len(comparison.ground_truth) == MAX_GROUND_TRUTH_CHARS
    assert all(row["ground_truth_notice"] == notices[0] for row in comparison.rows())
    assert all(row["ground_truth_notice"] is None for row in list(service.compare(xray, "chest", 1, 5))[-1][0].rows())


def test_bad_decoding_settings_and_missing_image_are_user_errors(service, xray):
    with pytest.raises(UserError, match="num_beams"):
        next(service.compare(xray, "", 0, 30))
    with pytest.raises(UserError, match="Upload a chest X-ray"):
        next(service.compare(None, "", 1, 30))


def test_export_writes_a_slide_and_a_csv_into_the_scratch_folder(service, xray, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # what scratch.claim() sets in the app
    comparison = list(service.compare(xray, "chest radiograph with left pneumothorax", 1, 6))[-1][0]
    slide, table = service.export(xray, comparison)
    assert Path(slide).parent.parent == tmp_path == Path(table).parent.parent
    assert Image.open(slide).size == (1600, 900)
    rows = list(csv.DictReader(io.StringIO(open(table, encoding="utf-8").read())))
    assert [r["variant"] for r in rows] == list(VARIANT_IDS)
    assert all(r["caption"] and r["ground_truth"] == "chest radiograph with left pneumothorax" for r in rows)
    with pytest.raises(UserError, match="Caption an X-ray first"):
        service.export(None, None)


def test_an_upload_stays_readable_for_every_request_that_sent_it(service, cxr_image, tmp_path, monkeypatch):
    # Gradio stores identical uploads at one path: a request queued behind others that sent the
    # same file (and behind any number of other files) still finds it.
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    shared = tmp_path / "0f0f" / "same.jpg"
    shared.parent.mkdir()
    shutil.copy(cxr_image, shared)
    first = service.receive_upload(str(shared))
    for i in range(6):
        other = tmp_path / f"other{i}" / "x.png"
        other.parent.mkdir()
        first.resize((64 + i, 64)).save(other)
        service.receive_upload(str(other))
    assert service.receive_upload(str(shared)).tobytes() == first.tobytes()


def test_a_rejected_upload_is_named_by_its_file_name_never_its_folder(service, tmp_path):
    bad = tmp_path / "deep" / "report.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    for path, expected in ((bad, "not an image"), (tmp_path / "gone" / "x.png", "No such file: x.png"),
                           (bad.parent, "folder")):
        with pytest.raises(UserError, match=expected) as caught:
            service.receive_upload(str(path))
        assert str(tmp_path) not in str(caught.value)
    with pytest.raises(UserError, match="Upload a chest X-ray"):
        service.receive_upload(None)


def test_captioning_without_an_image_says_why_and_runs_nothing(service, xray):
    with pytest.raises(UserError, match="Upload a chest X-ray"):
        service.check_ready(None)
    with pytest.raises(UserError, match="truncated or corrupt"):  # a rejected upload's own reason
        service.check_ready(None, "The image file is truncated or corrupt and cannot be decoded.")
    service.check_ready(xray)


def test_missing_wordnet_is_a_message_saying_how_to_fix_it(service, xray, monkeypatch):
    from cxrcap.wordnet import WordNetMissingError

    def no_wordnet(*args, **kwargs):
        raise WordNetMissingError("METEOR needs WordNet: apt-get install wordnet-base wordnet-sense-index")

    monkeypatch.setattr("cxrcap.app.comparison.score", no_wordnet)
    with pytest.raises(UserError, match="apt-get install wordnet-base"):
        list(service.compare(xray, "chest x-ray", 1, 4))


def test_unavailable_variant_shows_why_and_the_others_work(tiny_sources, xray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    service = CaptionService(["git-base-ft", "blip-base"])
    service.captioners["blip-base"].source = tiny_sources["blip-base"]
    comparison = list(service.compare(xray, "", 1, 5))[-1][0]
    missing, working = comparison.outcomes["git-base-ft"].result, comparison.outcomes["blip-base"].result
    assert missing.caption is None and "python -m finetune --family git" in missing.error
    assert working.caption
    html = render_cards(service.variant_ids, comparison)  # what is missing and the one variable; no stack
    assert "unavailable" in html and "No fine-tuned GIT checkpoint" in html and "CXRCAP_SOURCE_GIT_BASE_FT" in html
    assert "python -m finetune" not in html and "folder" not in html


def test_cards_escape_captions_and_label_untrained_weights():
    comparison = Comparison("<b>no</b> pneumothorax", DecodeSettings())
    comparison.add(CaptionResult("git-base", '<img src=x onerror="alert(1)"> pneumothorax', 0.5, untrained=True))
    html = render_cards(list(VARIANT_IDS), comparison)
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "untrained" in html and "smoothed" in html.lower()
    assert html.count("working...") == 3  # a job is running: three variants have not finished


def test_finding_f1_is_none_everywhere_when_neither_caption_names_a_finding():
    comparison = Comparison("Severe ARDS.", DecodeSettings())
    comparison.add(CaptionResult("blip-base", "a photo of a dog", 0.1))
    comparison.add(CaptionResult("git-base", "left pneumothorax", 0.1))
    rows = {row["variant"]: row for row in comparison.rows()}
    assert rows["blip-base"]["finding_f1"] is None and rows["git-base"]["finding_f1"] == 0.0
    table = {row["variant"]: row for row in csv.DictReader(io.StringIO(comparison.to_csv()))}
    assert table["blip-base"]["finding_f1"] == "" and float(table["git-base"]["finding_f1"]) == 0.0
    slide = {title: detail for title, _, detail in comparison.slide_lines()}
    assert slide["BLIP base"].endswith("Finding F1 n/a") and slide["GIT base"].endswith("Finding F1 0.00")
    html = render_cards(["git-base", "blip-base"], comparison)
    assert "<td>Finding F1</td><td class=\"v\">n/a</td>" in html
    assert "<td>Finding F1</td><td class=\"v\">0.000</td>" in html
    assert "no chest findings named in either caption" in html


def test_cards_before_any_caption_job_say_what_to_do_not_working():
    html = render_cards(list(VARIANT_IDS), None)
    assert "Upload a chest X-ray" in html and "working" not in html


def test_the_comparison_csv_defuses_formulas_and_credits_the_image(service, xray, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    comparison = Comparison('=HYPERLINK("http://example.com", "open")', DecodeSettings())
    comparison.add(CaptionResult("git-base", "+cmd|' /C calc'!A0", 0.1))
    comparison.add(CaptionResult("blip-base", "@SUM(1+1)", 0.1))
    credit = "CC BY 4.0; ieee8023/covid-chestxray-dataset (images/x.jpg)"
    _, table = service.export(xray, comparison, credit)
    rows = {row["variant"]: row for row in csv.DictReader(io.StringIO(open(table, encoding="utf-8").read()))}
    assert rows["git-base"]["caption"] == "'+cmd|' /C calc'!A0" and rows["blip-base"]["caption"] == "'@SUM(1+1)"
    assert {row["ground_truth"] for row in rows.values()} == {"'=HYPERLINK(\"http://example.com\", \"open\")"}
    assert {row["image_credit"] for row in rows.values()} == {credit}
    assert comparison.rows()[0]["caption"] == "+cmd|' /C calc'!A0"  # the API's rows stay as made


def test_the_heading_and_the_empty_cards_count_the_models_on_show():
    from cxrcap.app.about import heading

    assert heading(4) == "# cxrcap: chest X-ray captions, four models side by side"
    assert heading(5) == "# cxrcap: chest X-ray captions, five models side by side"
    assert heading(1) == "# cxrcap: chest X-ray captions, one model"
    assert "four" not in render_cards(["git-base", "extra"], None)
