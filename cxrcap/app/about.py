"""The app's About page, written from the code's own definitions so it cannot drift."""

from __future__ import annotations

from collections.abc import Mapping

from ..data import CHEST_XRAY_RULE
from ..metrics import METRIC_IMPLEMENTATIONS, SENTENCE_BLEU_LABEL
from ..variants import VARIANTS

NOTICE = (
    "**Research demo.** Captions are machine-generated suggestions for teaching and research, "
    "**never clinical decisions**. Do not use them for diagnosis or treatment. Do not upload "
    "images that identify a patient."
)


def about_markdown(recipe: Mapping[str, object]) -> str:
    models = "\n".join(
        f"| {v.label} | `{v.id}` | {v.family.upper()} | `{v.default_source}` | `{v.env_var}` |" for v in VARIANTS.values()
    )
    recipe_rows = "\n".join(f"| `{name}` | `{value}` |" for name, value in recipe.items())
    metric_rows = "\n".join(f"| `{key}` | {text} |" for key, text in METRIC_IMPLEMENTATIONS.items())
    return f"""\
## Models
Four variants: two captioning models, each as released (base) and fine-tuned on chest X-rays.

| Variant | Id | Family | Default source | Override with |
|---|---|---|---|---|
{models}

## Data
ROCO (Radiology Objects in COntext): radiology figures from PubMed Central with their captions
(~65k train / ~8.2k validation / ~8.2k test), filtered to plain chest radiographs.

**Chest X-ray filter.** {CHEST_XRAY_RULE}

## Fine-tuning recipe (the study's values; `python -m finetune`)
| Setting | Value |
|---|---|
{recipe_rows}

## Metrics
Live scores compare one caption with the ground truth you give; tables are corpus-level.
The live BLEU is {SENTENCE_BLEU_LABEL}.

| Key | Implementation |
|---|---|
{metric_rows}

## The study's own results (as reported by the study, not measured here)
The study reports, for its fine-tuned models, ROUGE-1 about 0.35, ROUGE-2 0.22, ROUGE-L 0.33 and METEOR 0.14.
Its table also shows ROUGE-L 0.8 for a model it did not train and BLEU 0 in three rows, which is why
this project recomputes every metric with documented implementations and compares with baselines
that need no image (see the Results tab).
"""
