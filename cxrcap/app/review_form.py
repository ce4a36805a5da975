"""Clinicians review the captions in the app: a compact review under each caption card, one
"Submit reviews" per image, the Results tab's Reviews section, and the `/review` API.

`ReviewDesk` is the logic (plain Python, tested without a browser); `ReviewForm` lays out the
Gradio components and translates between them and the desk. Storing goes through
`cxrcap.reviews` (checks, the database); everything shown back passes through `html.escape`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

import gradio as gr
from PIL import Image

from ..captioner import Captioner, env_flag
from ..files import file_sha256, write_atomically
from ..review_summary import summarise, summary_markdown
from ..reviews import (MAX_COMMENT_CHARS, RATING_LABELS, RATINGS, ReviewError, ReviewStore,
                       make_review, to_csv)  # fmt: skip
from ..variants import VARIANTS
from . import scratch
from .comparison import Comparison
from .service import UserError

log = logging.getLogger(__name__)

RATING_CHOICES = [(RATING_LABELS[rating], rating) for rating in RATINGS]
REQUIRE_LOGIN = "CXRCAP_REVIEWS_REQUIRE_LOGIN"  # set: reviews (form and API) only from a Space's logged-in users
LOGIN_NEEDED = ("This app stores reviews from logged-in users only: sign in with Hugging Face (the button beside "
                "'Your name' on the review form), then send the review.")
REFRESH_SECONDS = 5  # how often an open Results tab looks for new reviews
REVIEW_CSS = """
.cx-review {border-top: 3px solid #d0d5dd; padding-top: 4px;}
.cx-review-done {border: 1px solid #14532d; background: #d1f0d6; color: #14532d; border-radius: 8px; padding: 8px 12px;}
.cx-review-done ul {margin: 4px 0 0 18px;}
.cx-review-comment {white-space: pre-wrap; overflow-wrap: anywhere;}
"""
NAME_NOTE = "Optional. Stored exactly as typed and shown in the reviews download; leave empty to stay anonymous."


@dataclass(frozen=True)
class Answer:
    """What the form holds for one card."""

    rating: str | None = None
    missed: tuple[str, ...] = ()
    invented: tuple[str, ...] = ()
    comment: str = ""


@dataclass(frozen=True)
class ReviewTarget:
    """The captioned image the form is about (kept in the browser session's state)."""

    submission: str  # one id per captioned image: the database stores its reviews once
    image_sha256: str
    ground_truth: str
    decoding: str
    captions: dict[str, str]  # variant -> caption, for the variants that made one
    truth_findings: dict[str, tuple[str, ...]]  # what a caption can miss: the ground truth's findings
    caption_findings: dict[str, tuple[str, ...]]  # what it can invent: its own findings
    submitted: bool = False


class ReviewDesk:
    """Reviews in and summaries out, for the form, the Results tab and the API."""

    def __init__(
        self,
        store: ReviewStore,
        captioners: dict[str, Captioner],
        receive_upload: Callable[[str], Image.Image],
        examples: Iterable[str | os.PathLike] = (),
        require_login: bool | None = None,
    ):
        self.store = store
        self.require_login = env_flag(REQUIRE_LOGIN, False) if require_login is None else require_login
        if self.require_login and not hf_login_enabled():
            log.warning("%s is set but this app offers no login (a Space with `hf_oauth: true` in its README): "
                        "every review will be refused", REQUIRE_LOGIN)
        # An untrained tiny model's folder is a server path: name what it is instead.
        self.sources = {vid: "tiny random weights" if c.untrained else c.source for vid, c in captioners.items()}
        self.receive_upload = receive_upload  # decodes, refusing what is not an image
        self.examples = {file_sha256(path): Path(path).name for path in examples}
        self.exports = scratch.folder() / f"reviews-{uuid.uuid4().hex[:8]}"  # removed with the app's scratch folder
        self._summary_lock = threading.Lock()
        self._summary: tuple[tuple[int, int], str] | None = None

    def target(self, comparison: Comparison | None, image_sha256: str | None) -> ReviewTarget | None:
        """What the form reviews once a comparison is complete; None if there is nothing to review."""
        if comparison is None or not image_sha256:
            return None
        captions, truth_findings, caption_findings = {}, {}, {}
        for variant_id, outcome in comparison.ordered():
            if not (outcome.result.caption or "").strip():  # no caption (or an empty one): nothing to review
                continue
            captions[variant_id] = outcome.result.caption
            found = outcome.findings
            truth_findings[variant_id] = tuple(sorted(map(str, found.agree | found.missing))) if found else ()
            caption_findings[variant_id] = tuple(sorted(map(str, found.agree | found.extra))) if found else ()
        if not captions:
            return None
        return ReviewTarget(
            submission=uuid.uuid4().hex, image_sha256=image_sha256, ground_truth=comparison.ground_truth,
            decoding=comparison.settings.describe(), captions=captions,
            truth_findings=truth_findings, caption_findings=caption_findings,
        )  # fmt: skip

    def check(self, target: ReviewTarget | None, answers: dict[str, Answer], logged_in: str | None = None,
              ) -> dict[str, Answer]:
        """What a submission would store (the rated cards' answers); raises `UserError` saying what
        to fix when the form is not ready (login included, where the Space requires it)."""
        if target is None:
            raise UserError("Caption an X-ray first; then its captions can be reviewed.")
        if target.submitted:
            raise UserError("This image's reviews were submitted already. Caption another X-ray to review more.")
        self._reviewer(None, logged_in)
        for variant_id, answer in answers.items():
            if answer.rating is None and (answer.missed or answer.invented or answer.comment.strip()):
                raise UserError(f"{VARIANTS[variant_id].label}: choose correct, partly correct or wrong, "
                                "or clear its notes.")  # fmt: skip
        rated = {vid: answer for vid, answer in answers.items() if answer.rating and vid in target.captions}
        if not rated:
            raise UserError("Rate at least one caption (correct, partly correct or wrong) before submitting.")
        return rated

    def submit(self, target: ReviewTarget | None, answers: dict[str, Answer], reviewer: str, role: str,
               logged_in: str | None = None) -> str:
        """Store the rated cards' reviews of one image in one go; returns the confirmation (HTML).
        `logged_in`: the Space's logged-in user name, if any (it wins over the typed `reviewer`)."""
        rated = self.check(target, answers, logged_in)
        reviewer = self._reviewer(reviewer, logged_in)
        checked, notices = [], []
        try:
            for variant_id, answer in rated.items():
                review, notes = make_review(
                    variant=variant_id, caption=target.captions[variant_id], rating=answer.rating,
                    image_sha256=target.image_sha256, ground_truth=target.ground_truth,
                    example=self.examples.get(target.image_sha256), source=self.sources.get(variant_id),
                    decoding=target.decoding, missed=answer.missed, invented=answer.invented,
                    comment=answer.comment, reviewer=reviewer, role=role, submission=target.submission,
                )  # fmt: skip
                checked.append(review)
                notices += [f"{VARIANTS[variant_id].label}: {note}" for note in notes]
            ids = self.store.add(checked)
        except ReviewError as error:
            raise UserError(str(error)) from None
        return _confirmation(checked, ids, notices)

    def api_review(self, path, ground_truth, variant, caption, rating, comment, reviewer, submission_id=None,
                   logged_in: str | None = None) -> int:
        """The `/review` endpoint: one review of one caption of an uploaded image; returns its id.

        `submission_id` (optional, any text up to 100 characters): a call sent again with the same
        id (a client retrying after a lost answer) stores nothing new and returns the first id.
        The caption is stored as sent: the app keeps no record of the captions it made for an
        upload, so it cannot tell whether this is one of them (the review is of the text it names).
        """
        reviewer = self._reviewer(reviewer, logged_in)
        if not path:
            raise UserError("Send the X-ray the caption is about (PNG, JPEG or DICOM).")
        self.receive_upload(path)
        image_sha256 = file_sha256(path)
        try:
            review, _ = make_review(
                variant=variant, caption=caption, rating=rating, image_sha256=image_sha256,
                ground_truth=ground_truth, example=self.examples.get(image_sha256),
                source=self.sources.get(str(variant).strip()), comment=comment,
                reviewer=reviewer, idempotency_key=submission_id,
            )  # fmt: skip
            if review.variant not in self.sources:
                raise ReviewError(f"This app does not run {VARIANTS[review.variant].label} ({review.variant}); "
                                  f"its models are {', '.join(self.sources)}.")
            return self.store.add(review)[0]
        except ReviewError as error:
            raise UserError(str(error)) from None

    def _reviewer(self, typed: str | None, logged_in: str | None) -> str | None:
        """A Space's logged-in user name wins over a typed one; with login required there must be one."""
        if logged_in:
            return logged_in
        if self.require_login:
            raise UserError(LOGIN_NEEDED)
        return typed

    def summary(self) -> tuple[tuple[int, int], str]:
        """(the database's version, the summary as Markdown); recomputed only when reviews changed."""
        version = self.store.version()
        with self._summary_lock:
            if self._summary is None or self._summary[0] != version:
                self._summary = (version, summary_markdown(summarise(self.store.rows())))
            return self._summary

    def export_csv(self) -> str:
        """All reviews as a CSV file, written afresh (a download in flight never reads a half-written file)."""
        path = self.exports / "cxrcap-reviews.csv"
        write_atomically(path, to_csv(self.store.rows()))  # its folder made again: the scratch sweep may have removed it
        return str(path)


def _confirmation(reviews, ids: list[int], notices: list[str]) -> str:
    items = "".join(
        f"<li><b>{escape(VARIANTS[review.variant].label)}</b>: {escape(RATING_LABELS[review.rating])}"
        + (f"; missed: {escape(', '.join(review.missed))}" if review.missed else "")
        + (f"; invented: {escape(', '.join(review.invented))}" if review.invented else "")
        + (f'; comment: <span class="cx-review-comment">{escape(review.comment)}</span>' if review.comment else "")
        + "</li>"
        for review in reviews
    )
    noted = "".join(f'<div class="cx-note">{escape(note)}</div>' for note in notices)
    return (
        f'<div class="cx-review-done"><b>Thank you: {len(ids)} review{"s" * (len(ids) != 1)} stored</b> '
        f'(id {", ".join(map(str, ids))}).<ul>{items}</ul>{noted}</div>'
    )


def hf_login_enabled() -> bool:
    """A Space with `hf_oauth: true` in its README sets OAUTH_CLIENT_ID: offer the login button."""
    return bool(os.environ.get("OAUTH_CLIENT_ID"))


@dataclass
class _CardInputs:
    column: gr.Column
    rating: gr.Radio
    missed: gr.CheckboxGroup
    invented: gr.CheckboxGroup
    comment: gr.Textbox

    def all(self) -> list:
        return [self.rating, self.missed, self.invented, self.comment]


class ReviewForm:
    """The Gradio side: build inside a Blocks context (`ReviewForm(desk, variant_ids)`), then wire
    with `follow` (after captioning) and `results_section` (on the Results tab)."""

    def __init__(self, desk: ReviewDesk, variant_ids: list[str]):
        self.desk = desk
        self.target = gr.State(None)
        # No elem_id: Gradio 6.31's Group writes it on two nested elements, and an id names one.
        with gr.Group(visible=False) as self.group:
            gr.Markdown("### Review the captions\nRate each caption you read (optional: the findings it "
                        "missed or invented, a comment), then submit once for this image.")  # fmt: skip
            with gr.Row(equal_height=False):
                self.cards = {vid: self._card(vid) for vid in variant_ids}
            with gr.Row():
                self.reviewer = gr.Textbox(label="Your name", info=NAME_NOTE, max_length=100, elem_id="reviewer")
                self.role = gr.Textbox(label="Your role (e.g. radiologist)", info=NAME_NOTE, max_length=100)
                if hf_login_enabled():
                    gr.LoginButton()
            with gr.Row():
                self.submit_button = gr.Button("Submit reviews", variant="primary", elem_id="submit-reviews")
                self.clear_button = gr.Button("Clear ratings")
            self.status = gr.HTML(elem_id="review-status")
        # A form that is not ready is said by a step with no outputs: an error in the step that
        # updates the boxes would cover each of them with an "Error" badge that takes the pointer.
        form = {self.target, self.reviewer, self.role, *self._inputs()}
        self.submit_button.click(self._check, form, None, api_visibility="private").success(
            self._submit, form, [self.target, self.status, self.submit_button, self.clear_button, *self._inputs()],
            api_visibility="private")  # fmt: skip
        self.clear_button.click(self._clear, None, self._inputs(), api_visibility="private")

    def _card(self, variant_id: str) -> _CardInputs:
        label = VARIANTS[variant_id].label
        with gr.Column(min_width=200, elem_classes="cx-review", elem_id=f"review-{variant_id}") as column:
            rating = gr.Radio(RATING_CHOICES, label=f"{label}: this caption is", elem_classes="cx-rating")
            missed = gr.CheckboxGroup([], label="Findings it missed", visible=False)
            invented = gr.CheckboxGroup([], label="Findings it invented", visible=False)
            comment = gr.Textbox(label=f"Comment (optional, up to {MAX_COMMENT_CHARS:,} characters)", lines=2,
                                 max_length=MAX_COMMENT_CHARS)  # fmt: skip
        return _CardInputs(column, rating, missed, invented, comment)

    def _inputs(self) -> list:
        return [component for card in self.cards.values() for component in card.all()]

    def follow(self, caption_events: Iterable, comparison: gr.State, image_sha256: gr.State) -> None:
        """Open the form for the image just captioned, once all its captions are in."""
        outputs = [self.group, self.target, self.status, self.submit_button, self.clear_button,
                   *(card.column for card in self.cards.values()), *self._inputs()]  # fmt: skip
        for event in caption_events:
            event.success(self._open, [comparison, image_sha256], outputs, api_visibility="private")

    def close_on(self, triggers: Iterable) -> None:
        """Hide the form as soon as a new image is on its way (its reviews would be of the old one)."""
        for trigger in triggers:
            trigger(lambda: gr.Group(visible=False), None, [self.group], api_visibility="private")

    def _open(self, comparison, image_sha256):
        target = self.desk.target(comparison, image_sha256)
        updates = [gr.Group(visible=target is not None), target, "", gr.Button(interactive=True),
                   gr.Button(interactive=True)]  # fmt: skip
        captions = target.captions if target else {}
        updates += [gr.Column(visible=vid in captions) for vid in self.cards]
        for vid in self.cards:
            missed = target.truth_findings.get(vid, ()) if target else ()
            invented = target.caption_findings.get(vid, ()) if target else ()
            updates += [gr.Radio(value=None, interactive=True),
                        gr.CheckboxGroup(choices=list(missed), value=[], visible=bool(missed), interactive=True),
                        gr.CheckboxGroup(choices=list(invented), value=[], visible=bool(invented), interactive=True),
                        gr.Textbox(value="", interactive=True)]  # fmt: skip
        return updates

    def _clear(self):
        return [update for _ in self.cards for update in
                (gr.Radio(value=None), gr.CheckboxGroup(value=[]), gr.CheckboxGroup(value=[]), gr.Textbox(value=""))]  # fmt: skip

    def _answers(self, values: dict) -> dict[str, Answer]:
        return {
            vid: Answer(values[card.rating], tuple(values[card.missed] or ()), tuple(values[card.invented] or ()),
                        values[card.comment] or "")
            for vid, card in self.cards.items()
        }  # fmt: skip

    def _check(self, values: dict, profile: gr.OAuthProfile | None = None) -> None:
        try:
            self.desk.check(values[self.target], self._answers(values), _username(profile))
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from None

    def _submit(self, values: dict, profile: gr.OAuthProfile | None = None):
        try:
            confirmation = self.desk.submit(values[self.target], self._answers(values), values[self.reviewer],
                                            values[self.role], logged_in=_username(profile))
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from None
        locked = [gr.update(interactive=False) for _ in self._inputs()]
        return [dataclasses.replace(values[self.target], submitted=True), confirmation,
                gr.Button(interactive=False), gr.Button(interactive=False), *locked]  # fmt: skip

    def api_review(self, path, ground_truth, variant, caption, rating, comment, reviewer, submission_id=None,
                   profile: gr.OAuthProfile | None = None) -> int:
        """The `/review` endpoint as app.py wires it: the desk's, given the Space's logged-in user (if any)."""
        return self.desk.api_review(path, ground_truth, variant, caption, rating, comment, reviewer, submission_id,
                                    logged_in=_username(profile))

    def results_section(self) -> None:
        """The Results tab's "Reviews" section; call inside that tab. Filled when a page loads (a
        summary made at server start would be stale by then), refreshed when reviews arrive."""
        gr.Markdown("## Clinicians' reviews")
        summary = gr.Markdown(elem_id="reviews-summary")
        download = gr.DownloadButton("Download reviews (CSV)", elem_id="reviews-csv")
        seen = gr.State(None)  # the database version this page shows

        def current():
            version, text = self.desk.summary()
            return text, self.desk.export_csv(), version

        def refresh(seen_version):
            version, _ = self.desk.summary()
            return (gr.skip(), gr.skip(), seen_version) if version == seen_version else current()

        # No triggers and no inputs: on every page load (the app's `demo.load`); not queued behind captions.
        gr.on(None, current, None, [summary, download, seen], api_visibility="private", queue=False)
        gr.Timer(REFRESH_SECONDS).tick(refresh, seen, [summary, download, seen], api_visibility="private",
                                       queue=False)  # fmt: skip


def _username(profile: gr.OAuthProfile | None) -> str | None:
    """The Space's logged-in user name (None without a login button or before signing in)."""
    return profile.username if profile is not None else None
