"""The app's About page, written from the code's own definitions so it cannot drift."""

from __future__ import annotations

from collections.abc import Mapping

from ..chest_filter import CHEST_XRAY_RULE
from ..metrics import METRIC_IMPLEMENTATIONS, SENTENCE_BLEU_LABEL
from ..preprocessing import (
    BACKEND,
    CENTRE_CROP_ENV,
    centre_crop_requested,
    describe,
    released_image_processor,
    whole_image,
)
from ..variants import VARIANTS

NOTICE = (
    "**Research demo.** Captions are machine-generated suggestions for teaching and research, "
    "**never clinical decisions**. Do not use them for diagnosis or treatment. Do not upload "
    "images that identify a patient."
)


NUMBERS = ("no", "one", "two", "three", "four", "five")  # the four and the fifth, or a subset


def heading(models: int) -> str:
    """The page's title line, counting the models on show."""
    return ("# cxrcap: chest X-ray captions, one model" if models == 1
            else f"# cxrcap: chest X-ray captions, {NUMBERS[models]} models side by side")  # fmt: skip


def _source(default_source: str) -> str:
    return f"`{default_source}`" if default_source else "none: off unless the variable names a model"


def about_markdown(recipe: Mapping[str, object]) -> str:
    models = "\n".join(
        f"| {v.label} | `{v.id}` | {v.family.upper()} | {_source(v.default_source)} | `{v.env_var}` |" for v in VARIANTS.values()
    )
    recipe_rows = "\n".join(f"| `{name}` | `{value}` |" for name, value in recipe.items())
    metric_rows = "\n".join(f"| `{key}` | {text} |" for key, text in METRIC_IMPLEMENTATIONS.items())
    inputs = {family: describe(whole_image(released_image_processor(family))) for family in ("git", "blip")}
    crop_note = (f"**This app runs with `{CENTRE_CROP_ENV}=1`: its base variants use their released processors.**"
                 if centre_crop_requested() else "")
    input_rows = "\n".join(
        f"| {family.upper()} | `{d['image_processor']}` | {d['resize']} | {d['crop']} | {d['input_size']} px |"
        for family, d in inputs.items()
    )
    return f"""\
## Models
Four variants: two captioning models, each as released (base) and fine-tuned on chest X-rays; and an
optional fifth, any vision-language model the owner names (not part of the study; README).

| Variant | Id | Family | Default source | Override with |
|---|---|---|---|---|
{models}

## Data
ROCO (Radiology Objects in COntext): radiology figures from PubMed Central with their captions
(~65k train / ~8.2k validation / ~8.2k test), filtered to plain chest radiographs.

**Chest X-ray filter.** {CHEST_XRAY_RULE}

## What the models see
Every variant gets the whole X-ray, resized to a square without cropping, as the study did, by
transformers' image processors with the `{BACKEND}` backend, chosen on purpose so that every install
feeds the models the same pixels:

| Family | Image processor | Resize | Crop | Model input |
|---|---|---|---|---|
{input_rows}

git-base's released processor would crop the centre instead (a portrait film loses its top and
bottom, a landscape one its sides): set `{CENTRE_CROP_ENV}=1` to use it for the base variants. A
fine-tuned checkpoint uses the processor saved with it, which records what it was trained on.
{crop_note}

## Fine-tuning recipe (the study's values; `python -m finetune`)
| Setting | Value |
|---|---|
{recipe_rows}

The loss is the cross-entropy over the caption tokens, with the base checkpoint's own label
smoothing (BLIP's `text_config.label_smoothing`; GIT's loss has none), divided by the caption
tokens of the whole accumulated batch, so batch 8 x accumulation 2 makes the update of one batch of
16. Each fine-tuned folder's `recipe.json` and model card record the processor, input size, crop and
label smoothing its run used.

## Metrics
Live scores compare one caption with the ground truth you give; tables are corpus-level.
The live BLEU is {SENTENCE_BLEU_LABEL}.

| Key | Implementation |
|---|---|
{metric_rows}

{deploy_markdown()}

## The study's own results (as reported by the study, not measured here)
The study reports, for its fine-tuned models, ROUGE-1 about 0.35, ROUGE-2 0.22, ROUGE-L 0.33 and METEOR 0.14.
Its table also shows ROUGE-L 0.8 for a model it did not train and BLEU 0 in three rows, which is why
this project recomputes every metric with documented implementations and compares with baselines
that need no image (see the Results tab).
"""


def deploy_markdown() -> str:
    """For whoever runs this app as a Hugging Face Space: hardware choices and variables."""
    fine_tuned = ", ".join(f"`{v.env_var}`" for v in VARIANTS.values() if v.fine_tuned)
    base = ", ".join(f"`{v.env_var}`" for v in VARIANTS.values() if not v.fine_tuned)
    return f"""\
## Running your own copy (a Hugging Face Space)
**Hardware.** *CPU basic* (free): four captions take several seconds; "Fast (int8) captions" are
faster, and may differ from full-precision ones. *ZeroGPU*: a GPU is lent for
each request (examples are captioned on first use). *A dedicated GPU*: fast for everyone. On a
CPU or a dedicated GPU the examples are captioned in the background after start-up (a visitor's
request always goes first), so a click on one answers at once.

| Space variable | What it does |
|---|---|
| {fine_tuned} | the fine-tuned checkpoints (hub ids, e.g. pushed by `python -m finetune ... --push-to-hub you/name`) |
| {base} | other base models |
| `CXRCAP_EXAMPLES` | a folder of your own examples (images + `metadata.csv`: `file_name,caption,license,source`) |
| `CXRCAP_INT8` | `1`: fast int8 captions by default on a CPU |
| `CXRCAP_CACHE` | where the example captions are kept across restarts (e.g. `/data/cxrcap` with persistent storage) |
"""
