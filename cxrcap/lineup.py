"""The line-up: the captioners an entry point asks for (the study's variants, and the extra slot).

Its own module because the extra slot (`cxrcap.extra`) builds on `cxrcap.captioner`: building
both kinds here keeps the dependency one way (captioner <- extra <- lineup).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .captioner import Captioner
from .extra import ExtraCaptioner
from .variants import EXTRA_ID, get_variant


def build_captioners(
    variant_ids: Sequence[str], *, tiny_random: bool = False, quantize_int8: bool | None = None,
    extra_model: str | None = None, extra_prompt: str | None = None,
) -> dict[str, Captioner]:
    """Captioners for the given ids (not loaded yet). With tiny_random, from tiny untrained weights,
    except a variant whose `CXRCAP_SOURCE_<ID>` is set (e.g. a checkpoint fine-tuned from a tiny model
    by `reproduce --tiny-random`); all are labelled untrained. quantize_int8 as in `Captioner`
    (None: `CXRCAP_INT8`).

    Naming an extra model (entry points default to `CXRCAP_EXTRA_MODEL`) adds the fifth slot,
    `extra`, which asks it `extra_prompt` (see `cxrcap.extra`; it runs unquantised).
    """
    extra_model = (extra_model or "").strip()
    if extra_model and EXTRA_ID not in variant_ids:
        variant_ids = [*variant_ids, EXTRA_ID]
    study_ids = [vid for vid in variant_ids if vid != EXTRA_ID]
    sources: dict[str, str | None] = dict.fromkeys(study_ids)
    if tiny_random:
        from .tiny import tiny_sources  # builds the tiny folders once, on first use

        sources = tiny_sources(study_ids)
        sources |= {vid: get_variant(vid).source for vid in study_ids
                    if os.environ.get(get_variant(vid).env_var, "").strip()}
    captioners = {}
    for vid in variant_ids:
        if vid == EXTRA_ID:
            captioners[vid] = ExtraCaptioner.named(extra_model, prompt=extra_prompt, tiny_random=tiny_random)
        else:
            captioners[vid] = Captioner(vid, sources[vid], untrained=tiny_random, quantize_int8=quantize_int8)
    return captioners
