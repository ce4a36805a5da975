"""The app's review logic without a browser: targets, submissions, the API handler, summaries."""

import dataclasses

import pytest

from cxrcap.app.comparison import Comparison
from cxrcap.app.review_form import Answer, ReviewDesk
from cxrcap.app.service import CaptionService, UserError
from cxrcap.captioner import CaptionResult, DecodeSettings
from cxrcap.files import file_sha256
from cxrcap.reviews import MAX_COMMENT_CHARS, ReviewStore

TRUTH = "Left pleural effusion and cardiomegaly."


@pytest.fixture(scope="module")
def service(tiny_sources):
    return CaptionService(["git-base", "blip-base", "blip-base-ft"], tiny_random=True)


@pytest.fixture
def desk(service, tmp_path, cxr_image):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    return ReviewDesk(store, service.captioners, service.receive_upload, examples=[cxr_image])


@pytest.fixture
def target(desk, cxr_image):
    comparison = Comparison(TRUTH, DecodeSettings())
    comparison.add(CaptionResult("blip-base", "right pneumothorax", 0.2, untrained=True))
    comparison.add(CaptionResult("git-base", "left pleural effusion", 0.1, untrained=True))
    comparison.add(CaptionResult("blip-base-ft", None, 0.0, error="the folder does not exist"))
    return desk.target(comparison, file_sha256(cxr_image))


def test_target_holds_the_captions_and_each_cards_findings(target):
    assert target.captions == {"git-base": "left pleural effusion", "blip-base": "right pneumothorax"}
    assert target.truth_findings["git-base"] == ("cardiomegaly", "left pleural effusion")
    assert target.caption_findings["blip-base"] == ("right pneumothorax",)
    assert target.decoding == DecodeSettings().describe() and len(target.submission) == 32


def test_no_target_without_a_comparison_or_an_image(desk, target):
    assert desk.target(None, "a" * 64) is None
    assert desk.target(Comparison("", DecodeSettings()), "a" * 64) is None  # no caption yet


def test_submit_stores_the_rated_cards_once_and_confirms_escaped(desk, target, cxr_image):
    answers = {
        "git-base": Answer("partly", missed=("cardiomegaly",), comment="<script>alert(1)</script> heart"),
        "blip-base": Answer("wrong", invented=("right pneumothorax",)),
        "blip-base-ft": Answer(),  # no caption, no rating: skipped
    }
    confirmation = desk.submit(target, answers, "Dr <b>A</b>", "radiologist")
    assert "2 reviews stored" in confirmation
    assert "&lt;script&gt;alert(1)&lt;/script&gt; heart" in confirmation and "<script>" not in confirmation
    rows = desk.store.rows()
    assert [(r["variant"], r["rating"]) for r in rows] == [("git-base", "partly"), ("blip-base", "wrong")]
    git = rows[0]
    assert git["comment"] == "<script>alert(1)</script> heart" and git["reviewer"] == "Dr <b>A</b>"
    assert git["missed"] == ["cardiomegaly"] and git["example"] == cxr_image.name
    assert git["source"] == "tiny random weights" and git["ground_truth"] == TRUTH
    assert git["image_sha256"] == file_sha256(cxr_image) and git["scores"]["bleu"] > 0
    with pytest.raises(UserError, match="submitted already"):  # the same form sent again (e.g. two tabs)
        desk.submit(target, answers, "", "")
    with pytest.raises(UserError, match="submitted already"):  # the form knows it was sent
        desk.submit(dataclasses.replace(target, submitted=True), answers, "", "")
    assert len(desk.store.rows()) == 2


@pytest.mark.parametrize("answers, message", [
    ({"git-base": Answer(comment="missed the heart")}, "GIT base: choose correct, partly correct or wrong"),
    ({"git-base": Answer(), "blip-base": Answer()}, "Rate at least one caption"),
])  # fmt: skip
def test_submit_refuses_incomplete_forms_and_stores_nothing(desk, target, answers, message):
    with pytest.raises(UserError, match=message):
        desk.submit(target, answers, "", "")
    with pytest.raises(UserError, match="Caption an X-ray first"):
        desk.submit(None, {"git-base": Answer("correct")}, "", "")
    assert desk.store.rows() == []


def test_a_long_comment_is_cut_and_the_confirmation_says_so(desk, target):
    confirmation = desk.submit(target, {"git-base": Answer("correct", comment="x" * 5000)}, "", "")
    assert f"its first {MAX_COMMENT_CHARS:,} are stored" in confirmation
    assert len(desk.store.rows()[0]["comment"]) == MAX_COMMENT_CHARS


def test_api_review_stores_one_review_and_refuses_bad_values(desk, cxr_image, tmp_path):
    review_id = desk.api_review(str(cxr_image), TRUTH, "blip-base", "left effusion", "correct", "fine", "Dr B")
    [row] = desk.store.rows()
    assert row["id"] == review_id and row["example"] == cxr_image.name and cxr_image.exists()
    bad_file = tmp_path / "scan.png"
    bad_file.write_text("not an x-ray")
    for args, message in [
        ((str(cxr_image), TRUTH, "gpt-4", "c", "correct", "", ""), "Unknown variant"),
        ((str(cxr_image), TRUTH, "git-base", "c", "good", "", ""), "Rating must be one of"),
        ((None, TRUTH, "git-base", "c", "correct", "", ""), "Send the X-ray"),
        ((str(bad_file), TRUTH, "git-base", "c", "correct", "", ""), "not an image"),
    ]:
        with pytest.raises(UserError, match=message):
            desk.api_review(*args)
    assert len(desk.store.rows()) == 1


def test_summary_is_recomputed_only_when_reviews_change(desk, target):
    version, text = desk.summary()
    assert text.startswith("No reviews yet") and desk.summary()[1] is text
    desk.submit(target, {"git-base": Answer("correct")}, "Dr C", "")
    new_version, new_text = desk.summary()
    assert new_version != version and "**1 review** of captions of 1 image by 1 named reviewer." in new_text and "| GIT base | 1 | 1 |" in new_text
    assert open(desk.export_csv(), encoding="utf-8").read().count("\n") == 2


def test_the_forms_submit_uses_a_spaces_logged_in_user_name_over_the_typed_one(desk, target):
    import gradio as gr

    from cxrcap.app.review_form import ReviewForm

    with gr.Blocks():
        form = ReviewForm(desk, ["git-base", "blip-base"])
    values = {form.target: target, form.reviewer: "typed name", form.role: "radiologist"}
    for vid, card in form.cards.items():
        values.update({card.rating: "correct" if vid == "git-base" else None, card.missed: [], card.invented: [],
                       card.comment: ""})  # fmt: skip
    profile = gr.OAuthProfile({"name": "A B", "preferred_username": "hf-user", "profile": "", "picture": ""})
    new_target, confirmation, *_ = form._submit(values, profile)
    assert new_target.submitted and "1 review stored" in confirmation
    assert [(row["reviewer"], row["role"]) for row in desk.store.rows()] == [("hf-user", "radiologist")]
    with pytest.raises(gr.Error, match="submitted already"):
        form._submit({**values, form.target: new_target}, None)


def test_api_review_with_a_submission_id_stores_once_and_answers_as_the_first_time(desk, cxr_image):
    sent = (str(cxr_image), TRUTH, "git-base", "left effusion", "partly", "", "Dr R")
    first = desk.api_review(*sent, "retry-1")
    assert desk.api_review(*sent, "retry-1") == first  # the client did not hear the first answer and retried
    assert desk.api_review(*sent, "") != first  # no key: every call is a review of its own
    assert len(desk.store.rows()) == 2
    with pytest.raises(UserError, match="sent before with another review"):
        desk.api_review(str(cxr_image), TRUTH, "git-base", "left effusion", "wrong", "", "Dr R", "retry-1")


def test_api_review_refuses_an_empty_caption_and_a_model_this_app_does_not_run(desk, cxr_image):
    with pytest.raises(UserError, match="The caption is empty"):
        desk.api_review(str(cxr_image), TRUTH, "git-base", "  ", "correct", "", "")
    for variant in ("git-base-ft", "extra"):  # real variant ids, but not among this app's models
        with pytest.raises(UserError, match="This app does not run"):
            desk.api_review(str(cxr_image), TRUTH, variant, "c", "correct", "", "")
    assert desk.store.rows() == []


def test_with_login_required_reviews_without_a_logged_in_user_are_refused(service, tmp_path, cxr_image, target,
                                                                       monkeypatch):
    monkeypatch.setenv("CXRCAP_REVIEWS_REQUIRE_LOGIN", "1")
    desk = ReviewDesk(ReviewStore(tmp_path / "login.sqlite"), service.captioners, service.receive_upload)
    with pytest.raises(UserError, match="sign in with Hugging Face"):
        desk.api_review(str(cxr_image), TRUTH, "git-base", "c", "correct", "", "typed name")
    with pytest.raises(UserError, match="sign in with Hugging Face"):
        desk.submit(target, {"git-base": Answer("correct")}, "typed name", "")
    assert desk.store.rows() == []
    desk.api_review(str(cxr_image), TRUTH, "git-base", "c", "correct", "", "typed name", logged_in="hf-user")
    desk.submit(target, {"git-base": Answer("correct")}, "typed name", "", logged_in="hf-user")
    assert [row["reviewer"] for row in desk.store.rows()] == ["hf-user", "hf-user"]


def test_an_empty_caption_gets_no_review(desk, cxr_image):
    comparison = Comparison(TRUTH, DecodeSettings())
    comparison.add(CaptionResult("git-base", "", 0.1, untrained=True))  # a model that said nothing
    comparison.add(CaptionResult("blip-base", "right pneumothorax", 0.2, untrained=True))
    assert desk.target(comparison, file_sha256(cxr_image)).captions == {"blip-base": "right pneumothorax"}
