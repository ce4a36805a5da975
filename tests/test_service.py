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


def test_huge_ground_truth_is_truncated_with_a_notice(service, xray):
    comparison, notice = list(service.compare(xray, "chest " * 200_000, 1, 5))[-1]
    assert len(comparison.ground_truth) == MAX_GROUND_TRUTH_CHARS
    assert "only the first" in notice


def test_bad_decoding_settings_and_missing_image_are_user_errors(service, xray):
    with pytest.raises(UserError, match="num_beams"):
        next(service.compare(xray, "", 0, 30))
    with pytest.raises(UserError, match="Upload a chest X-ray"):
        next(service.compare(None, "", 1, 30))


def test_uploads_are_deleted_after_decoding_but_other_files_are_not(service, cxr_image, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    upload = tmp_path / "gradio" / "abc123" / "scan.jpg"
    upload.parent.mkdir(parents=True)
    shutil.copy(cxr_image, upload)
    assert service.receive_upload(str(upload)).mode == "RGB"
    assert not upload.exists()
    assert service.receive_upload(str(cxr_image)).mode == "RGB"
    assert cxr_image.exists()


def test_bad_upload_is_a_user_error_and_still_deleted(service, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    bad = tmp_path / "x" / "report.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    with pytest.raises(UserError):
        service.receive_upload(str(bad))
    assert not bad.exists()
    with pytest.raises(UserError, match="Upload a chest X-ray"):
        service.receive_upload(None)


def test_export_writes_a_slide_and_a_csv(service, xray):
    comparison = list(service.compare(xray, "chest radiograph with left pneumothorax", 1, 6))[-1][0]
    slide, table = service.export(xray, comparison)
    assert Image.open(slide).size == (1600, 900)
    rows = list(csv.DictReader(io.StringIO(open(table, encoding="utf-8").read())))
    assert [r["variant"] for r in rows] == list(VARIANT_IDS)
    assert all(r["caption"] and r["ground_truth"] == "chest radiograph with left pneumothorax" for r in rows)
    with pytest.raises(UserError, match="Caption an X-ray first"):
        service.export(None, None)


def test_exported_slides_do_not_pile_up(service, xray, monkeypatch):
    comparison = list(service.compare(xray, "", 1, 4))[-1][0]
    old_slide, _ = service.export(xray, comparison)
    monkeypatch.setattr("cxrcap.app.service.EXPORT_SECONDS", 0)  # everything earlier counts as old
    new_slide, _ = service.export(xray, comparison)
    assert not Path(old_slide).exists() and Path(new_slide).exists()


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
    assert html.count("working...") == 3


def test_identical_uploads_queued_together_both_decode(service, cxr_image, tmp_path, monkeypatch):
    # Gradio stores identical uploads at one path; the first request deletes the file.
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    upload = tmp_path / "0f0f" / "same.jpg"
    upload.parent.mkdir()
    shutil.copy(cxr_image, upload)
    first = service.receive_upload(str(upload))
    assert not upload.exists()
    assert service.receive_upload(str(upload)).tobytes() == first.tobytes()


def test_an_upload_identical_to_a_gallery_example_is_not_deleted(tiny_sources, cxr_image, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    service = CaptionService(["git-base"], tiny_random=True, public_files=[str(cxr_image)])
    cached_copy = tmp_path / "abcd" / cxr_image.name  # where Gradio keeps the gallery's copy
    cached_copy.parent.mkdir()
    shutil.copy(cxr_image, cached_copy)
    service.receive_upload(str(cached_copy))
    assert cached_copy.exists()


def test_finding_f1_reads_na_when_neither_caption_names_a_finding():
    comparison = Comparison("Severe ARDS.", DecodeSettings())
    comparison.add(CaptionResult("blip-base", "a photo of a dog", 0.1))
    html = render_cards(["blip-base"], comparison)
    assert "<td>Finding F1</td><td class=\"v\">n/a</td>" in html
    assert "no chest findings named in either caption" in html
