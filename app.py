"""cxrcap's Gradio app: four captions of one chest X-ray, side by side. Layout and wiring only.

    python app.py [--tiny-random] [--port N]

What the handlers do lives in `cxrcap.app.service` (tested without a browser).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
from cxrcap.app import scratch  # noqa: E402  (plain Python: no torch, no gradio)

if __name__ == "__main__":
    SCRATCH = scratch.claim()  # before gradio is imported: some of its modules read GRADIO_TEMP_DIR then

import cxrcap.app.zerogpu  # noqa: F401, E402  first: ZeroGPU's `spaces` must be imported before torch
import gradio as gr  # noqa: E402

from cxrcap.app.about import NOTICE, about_markdown, heading  # noqa: E402
from cxrcap.app.api_inputs import text_input, whole_number_input  # noqa: E402
from cxrcap.app.cards import CSS, render_cards  # noqa: E402
from cxrcap.app.comparison import Comparison  # noqa: E402
from cxrcap.app.examples import Example, examples_folder, load_examples  # noqa: E402
from cxrcap.app.heatmap_view import HeatmapPanel, HeatmapView  # noqa: E402
from cxrcap.app.review_form import REVIEW_CSS, ReviewDesk, ReviewForm  # noqa: E402
from cxrcap.app.service import BEAMS, NEW_TOKENS, CaptionService, UserError  # noqa: E402
from cxrcap.app.upload import xray_upload  # noqa: E402
from cxrcap.captioner import MAX_PROMPT_CHARS, quiet_library_logs  # noqa: E402
from cxrcap.images import DICOM_SUFFIXES, ImageError  # noqa: E402
from cxrcap.reproduce import use_checkpoints_in  # noqa: E402
from cxrcap.files import file_sha256  # noqa: E402
from cxrcap.results import OUTPUT_FILES  # noqa: E402
from cxrcap.reviews import open_store  # noqa: E402
from cxrcap.variants import EXTRA_ID, VARIANT_IDS, VARIANTS, parse_variant_ids  # noqa: E402
from finetune.recipe import Recipe  # noqa: E402

MAX_UPLOAD = "25mb"  # below cxrcap.images' own limit (for the CLI and reports): a Space's uploads stop at the door
QUEUE_SIZE = 16  # waiting requests beyond this are turned away instead of piling up
# Uploads, previews and exports are deleted this long after their last use: longer than a
# request can wait in a full queue, since identical uploads share one file (see scratch.py).
KEEP_FILES_SECONDS = 600
SWEEP_SECONDS = 60
# In the browser, on a gallery click: the example's captions follow those still coming, if any.
SAY_THE_EXAMPLE_WAITS = """() => [...document.querySelectorAll('#cards .cx-waiting')].some(b => b.textContent === 'working...')
    ? 'Loading the example you picked: it follows the captions in progress.' : 'Loading the example you picked...'"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", default=None, help="address (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--tiny-random", action="store_true", help="tiny untrained models built locally (no download)")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {', '.join(VARIANT_IDS)}")
    parser.add_argument("--extra-model", default=VARIANTS[EXTRA_ID].source or None, metavar="ID_OR_FOLDER",
                        help="a fifth, vision-language model (not part of the study): hub id or folder "
                        "(default: $CXRCAP_EXTRA_MODEL; `tiny` with --tiny-random)")
    parser.add_argument("--extra-prompt", default=None, help="the fifth model's default prompt (editable in the app)")
    parser.add_argument("--results", type=Path, default=Path(os.environ.get("CXRCAP_RESULTS", "results")),
                        help="folder written by `python -m cxrcap report` or `reproduce` (default results/); "
                             "the fine-tuned variants load from its checkpoints/ when it has them")
    return parser.parse_args()


def shows_user_errors(handler):
    """Errors the user can fix become a Gradio message (no traceback); the app stays up."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except (UserError, ImageError) as error:
                raise gr.Error(str(error), print_exception=False) from None
        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (UserError, ImageError) as error:
            raise gr.Error(str(error), print_exception=False) from None
    return call


def results_tab(results_dir: Path) -> None:
    table = results_dir / "results.md"
    if not table.exists():
        shown = "the results folder" if results_dir.is_absolute() else f"`{results_dir}/`"  # no server path on the page
        gr.Markdown(
            f"No results in {shown} yet. Make them with\n\n"
            "```\npython -m cxrcap report --data PATH_TO_ROCO --split test --out results/\n```\n\n"
            "(or `--data ../shared/data/cxr-examples --tiny-random` to try it), then restart the app."
        )
        return
    gr.Markdown(table.read_text(encoding="utf-8"))
    for name, label in (("metrics.png", "Metrics with 95% bootstrap intervals"), ("qualitative.png", "Examples")):
        if (results_dir / name).exists():
            gr.Image(str(results_dir / name), label=label, interactive=False, buttons=["download", "fullscreen"])
    files = [str(results_dir / name) for name in OUTPUT_FILES if (results_dir / name).exists()]
    gr.File(files, label="Download (tables, figures, predictions)", file_count="multiple", interactive=False)


def build_demo(service: CaptionService, examples: list[Example], results_dir: Path, desk: ReviewDesk) -> gr.Blocks:
    def show(comparison: Comparison | None) -> str:
        return render_cards(service.variant_ids, comparison)

    def captions_shown(comparison: Comparison | None) -> tuple:
        """For `caption_outputs`: the cards, the rows, the comparison, and no heatmap words of other captions."""
        return show(comparison), comparison.rows() if comparison else None, comparison, *heatmaps.reset()

    def new_image(image, ground_truth, problem="", digest=None):
        """An upload, accepted or not (None and why): nothing of the previous image stays."""
        return image, image, ground_truth, "", "", False, digest, *captions_shown(None), None, problem

    def on_upload(path, ground_truth, showing_example):
        if showing_example:  # the box holds the previous gallery example's caption, not this image's
            ground_truth = ""
        try:
            image = service.receive_upload(path)
        except UserError as error:
            return new_image(None, ground_truth, str(error))
        return new_image(image, ground_truth, digest=file_sha256(path))

    @shows_user_errors
    def on_example(gallery: gr.Gallery, num_beams, max_new_tokens, int8, prompt, event: gr.SelectData):
        # One event shows the example and its captions (no second round trip): a cached example
        # answers at once. The preview shows the file itself: nothing to re-encode. The example is
        # the gallery's own selection: a click deferred while another example captions is re-sent
        # by Gradio with the first click's event data.
        example = examples[event.index if gallery.selected_index is None else gallery.selected_index]
        image = service.receive_upload(example.path)
        shown = (example.path, image, example.caption, f"Example credit: {example.credit}", example.credit, True,
                 file_sha256(example.path), None, "", "")  # no export of the previous image, no rejected upload
        for captions in on_caption(image, example.caption, num_beams, max_new_tokens, int8, prompt):
            yield *shown, *captions

    @shows_user_errors
    def on_caption(image, ground_truth, num_beams, max_new_tokens, int8, prompt):
        for comparison, notice in service.compare(image, ground_truth, num_beams, max_new_tokens, int8, prompt):
            if notice:
                gr.Warning(notice)
            yield captions_shown(comparison)

    with gr.Blocks(title="cxrcap: chest X-ray captions side by side", fill_width=True,
                   delete_cache=(SWEEP_SECONDS, KEEP_FILES_SECONDS)) as demo:
        image_state = gr.State(None)
        comparison_state = gr.State(None)
        credit_state = gr.State("")  # licence and source of a gallery example, for the slide
        showing_example = gr.State(False)  # the ground-truth box holds a gallery example's caption
        problem_state = gr.State("")  # why the last upload was rejected, said by the step after it
        image_digest = gr.State(None)  # the shown image's sha256: what its reviews know it by
        gr.Markdown(heading(len(service.variant_ids)))
        gr.Markdown(NOTICE, elem_id="notice")
        if service.tiny_random:
            gr.Markdown("**Trial mode:** every model here has tiny *untrained* random weights; its captions are noise.")
        with gr.Tab("Caption"):
            with gr.Row(equal_height=False, elem_id="caption-row"):
                with gr.Column(scale=1, min_width=300, elem_id="caption-inputs"):
                    upload = xray_upload(label="Chest X-ray (PNG, JPEG or DICOM)", file_types=["image", *DICOM_SUFFIXES],
                                         elem_id="upload")
                    preview = gr.Image(label="X-ray", type="pil", interactive=False, height=320, elem_id="preview",
                                       alt_text="The chest X-ray being captioned")
                    ground_truth = gr.Textbox(label="Ground-truth caption (optional: enables the scores)", lines=3)
                    credit = gr.Markdown(elem_id="credit")
                    with gr.Accordion("Decoding settings", open=False):
                        num_beams = gr.Slider(*BEAMS, value=1, step=1, label="Beams (1 = greedy)")
                        max_new_tokens = gr.Slider(*NEW_TOKENS, value=30, step=1, label="Longest caption (tokens)")
                        int8 = gr.Checkbox(service.int8_default, label="Fast (int8) captions", visible=service.int8_available,
                                           info="int8 weights: faster on a CPU; captions may differ from full precision")
                        prompt = gr.Textbox(service.extra_prompt or "", label="Prompt of the extra model (not in the study)",
                                            visible=service.extra_prompt is not None, lines=2, max_length=MAX_PROMPT_CHARS)
                    with gr.Row():
                        run = gr.Button("Caption", variant="primary")
                        export = gr.Button("Download this comparison")
                    exported = gr.File(label="Comparison (slide PNG and CSV)", file_count="multiple", interactive=False)
                with gr.Column(scale=3, elem_id="caption-outputs"):
                    cards = gr.HTML(show(None), elem_id="cards")
                    review_form = ReviewForm(desk, service.variant_ids)
                    heatmaps = HeatmapPanel(HeatmapView(service.captioners_for), service.variant_ids,
                                            image_state, comparison_state)
                    with gr.Accordion("Raw results (JSON)", open=False):
                        raw = gr.JSON(label="Rows")
            if examples:
                gallery = gr.Gallery([(e.path, e.caption) for e in examples], label="Examples: click one to caption it",
                                     columns=10, height=260, allow_preview=False, elem_id="examples")
                examples_status = gr.Markdown(elem_id="examples-status")  # says that a clicked example waits
                gr.Markdown("Real chest X-rays shared under their licences; each image's licence and source show when chosen.",
                            elem_id="examples-note")
            else:
                gallery = None
                gr.Markdown("No examples: put X-rays with a CSV of captions in `assets/examples/`, or point "
                            "`CXRCAP_EXAMPLES` at such a folder (see README); if there is one, the app's log says why it was not used.",
                            elem_id="examples-note")
        with gr.Tab("Results"):
            results_tab(results_dir)
            review_form.results_section()
        with gr.Tab("About"):
            gr.Markdown(about_markdown(asdict(Recipe())))

        caption_inputs = [image_state, ground_truth, num_beams, max_new_tokens, int8, prompt]
        caption_outputs = [cards, raw, comparison_state, *heatmaps.reset_outputs]
        # An upload, accepted or not, replaces everything shown for the previous image; a rejection
        # is then said by a step with no outputs, so that no box wears an "Error" badge for it.
        image_outputs = [preview, image_state, ground_truth, credit, credit_state, showing_example, image_digest]
        check_ready = shows_user_errors(service.check_ready)
        captioned = [
            upload.upload(on_upload, [upload, ground_truth, showing_example],
                          [*image_outputs, *caption_outputs, exported, problem_state], api_visibility="private").then(
                check_ready, [image_state, problem_state], None, api_visibility="private").success(
                on_caption, caption_inputs, caption_outputs, api_visibility="private"),
            run.click(check_ready, [image_state], None, api_visibility="private").success(
                on_caption, caption_inputs, caption_outputs, api_visibility="private"),
        ]
        if gallery is not None:
            # A click while an example still captions runs once that one is done (only the last of
            # several; Gradio's default for a select, "once", would drop it): in the browser, at
            # once, the page says so. This listener comes first: Gradio runs a click's listeners in turn.
            gallery.select(None, None, [examples_status], js=SAY_THE_EXAMPLE_WAITS, trigger_mode="multiple", queue=False)
            captioned.append(gallery.select(on_example, [gallery, num_beams, max_new_tokens, int8, prompt],
                                            [*image_outputs, exported, problem_state, examples_status, *caption_outputs],
                                            api_visibility="private", trigger_mode="always_last"))
        review_form.close_on([upload.upload, run.click])  # a gallery example's (cached) captions replace it at once
        review_form.follow(captioned, comparison_state, image_digest)
        for event in captioned:
            heatmaps.after(event)
        export.click(shows_user_errors(heatmaps.exporting(service.export)),
                     [image_state, comparison_state, credit_state, heatmaps.picture], [exported], api_visibility="private")
        # The API for gradio_client: one file in, one row per variant out (no browser state):
        # Client(url).predict(handle_file(path), ground_truth, 1, 30, api_name="/caption")
        with gr.Row(visible=False):  # its own inputs, which check what a client sends (api_inputs.py)
            api_inputs = [xray_upload(), text_input("ground_truth", value=""), whole_number_input("num_beams", *BEAMS, value=1),
                          whole_number_input("max_new_tokens", *NEW_TOKENS, value=30)]
            api_rows, api_trigger = gr.JSON(), gr.Button()
        api_trigger.click(shows_user_errors(service.caption_rows), api_inputs, [api_rows], api_name="caption")
        # Client(url).predict(handle_file(path), ground_truth, variant, caption, rating, comment, reviewer,
        #                     submission_id, api_name="/review") -> the stored review's id
        with gr.Row(visible=False):
            review_api_inputs = [xray_upload(), *map(text_input, ("ground_truth", "variant", "caption", "rating", "comment",
                                                                   "reviewer", "submission_id"))]
            review_api_id, review_api_trigger = gr.Number(precision=0), gr.Button()
        review_api_trigger.click(shows_user_errors(review_form.api_review), review_api_inputs, [review_api_id], api_name="review",
                                 concurrency_limit=4)  # SQLite queues the writers; decoding runs beside captioning
    return demo


def main() -> None:
    args = parse_args()
    quiet_library_logs()
    # The Space's log tab: our own progress (the example cache, the extra slot ready), others' warnings.
    logging.basicConfig()  # a handler on the root logger, unless an imported library has set one up already
    logging.getLogger("cxrcap").setLevel(logging.INFO)
    examples = load_examples()
    use_checkpoints_in(args.results)  # a `reproduce` folder: its fine-tuned checkpoints, unless a variable says otherwise
    service = CaptionService(parse_variant_ids(args.variants), tiny_random=args.tiny_random,
                             public_files=[example.path for example in examples],
                             extra_model=args.extra_model, extra_prompt=args.extra_prompt)
    service.start()
    desk = ReviewDesk(open_store(), service.captioners_for(service.int8_default), service.receive_upload,
                      [e.path for e in examples])
    print(f"Reviews are stored in {desk.store.path}")
    demo = build_demo(service, examples, args.results, desk)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)  # 2 vCPU: one caption job at a time
    scratch.keep_swept(SCRATCH, every_seconds=SWEEP_SECONDS)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(examples_folder()), str(args.results)],
        css=CSS + REVIEW_CSS,
        ssr_mode=False,
    )


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # a bad setting (CXRCAP_DTYPE, --variants, ...): its message, not a traceback
        sys.exit(f"error: {error}")
