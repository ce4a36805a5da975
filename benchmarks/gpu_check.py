"""Every path a GPU runs in 16-bit, once each, on the tiny and the base-size random models: pass or
fail per path and the dtype it ran in; exit status 1 if any failed (issue 24).

    python benchmarks/gpu_check.py                                  # on a GPU: well under a minute
    CXRCAP_DTYPE=bfloat16 python benchmarks/gpu_check.py --tiny-only  # a quick check on a CPU

The dtype is the code's own choice (`cxrcap.captioner.pick_dtype`: bf16 on a GPU, fp16 on one without
bf16, fp32 on a CPU) unless `CXRCAP_DTYPE` names another: `CXRCAP_DTYPE=float16` checks a T4's
choice on any GPU. Base size (`cxrcap.tiny`, git-base and blip-base shapes; ~1.6 GB written to the
cache once) has the two families' base variants; the fifth slot has tiny VLMs only.
tests/test_16bit.py asserts what these paths give, on the CPU; this runs them where they will run.
The X-rays are the app's examples (assets/examples/).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.app.example_cache import ExampleCache, caption_examples, image_digest  # noqa: E402
from cxrcap.captioner import (  # noqa: E402
    MODEL_CLASSES, Captioner, DecodeSettings, dtype_name, pick_device, pick_dtype, quiet_library_logs,
)
from cxrcap.errors import first_line  # noqa: E402
from cxrcap.extra import ExtraCaptioner  # noqa: E402
from cxrcap.heatmaps import compute_heatmaps  # noqa: E402
from cxrcap.images import load_image  # noqa: E402
from cxrcap.report import generate_predictions  # noqa: E402
from cxrcap.scheduler import stream_captions  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from cxrcap.variants import VARIANT_IDS  # noqa: E402
from finetune.train import in_app_precision  # noqa: E402

EXAMPLES = REPO / "assets" / "examples"
SHORT = DecodeSettings(max_new_tokens=8)
CAPTION = "left pleural effusion with cardiomegaly"
TINY_VLMS = ("tiny", "tiny-idefics3", "tiny-llava")  # Gemma 3, Idefics3, LLaVA


class Models:
    """One size's captioners (loaded on first use, shared by the checks) and the X-rays."""

    def __init__(self, size: str, images):
        self.size, self.images = size, images
        variant_ids = VARIANT_IDS if size == "tiny" else ("git-base", "blip-base")
        self.sources = tiny_sources(variant_ids, base_size=size == "base")

    @functools.cached_property
    def study(self) -> dict[str, Captioner]:
        return {vid: Captioner(vid, source, untrained=True) for vid, source in self.sources.items()}

    @functools.cached_property
    def extra(self) -> dict[str, Captioner]:
        return {name: ExtraCaptioner.named(name, tiny_random=True) for name in TINY_VLMS} if self.size == "tiny" else {}

    def families(self) -> list[Captioner]:
        return [self.study[vid] for vid in ("git-base", "blip-base")]


def _captioned(captioners: dict[str, Captioner], image, settings: DecodeSettings) -> None:
    for result in stream_captions(captioners, image, settings):  # it turns failures into results: raise them
        if result.error:
            raise RuntimeError(f"{result.variant_id}: {result.error}")


def captions(models: Models):
    for settings in (SHORT, DecodeSettings(num_beams=2, max_new_tokens=8)):
        _captioned(models.study, models.images[0], settings)
    return models.study.values()


def fifth_slot(models: Models):
    for name, extra in models.extra.items():
        _captioned({name: extra}, models.images[0], SHORT)
    return models.extra.values()


def heatmaps(method: str):
    def check(models: Models):
        for captioner in models.families():
            maps = compute_heatmaps(captioner, models.images[0], CAPTION, method)
            if not np.isfinite(maps.token_maps).all():
                raise ValueError(f"{captioner.variant.id}: maps that are not finite")
        return models.families()

    return check


def report_batches(models: Models):
    captioners = {**models.study, **dict(list(models.extra.items())[:1])}
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars: this prints one line per path
        _, rows = generate_predictions(captioners, models.images, SHORT, batch_size=2)  # a full batch and one more
    if unavailable := [row.reason for row in rows if not row.available]:
        raise RuntimeError("; ".join(unavailable))
    return captioners.values()


def finetune_validation(models: Models):
    """As `finetune.train.CaptionTrainer` captions: the fp32 training weights' copy in the app's precision."""
    copies = []
    for captioner in models.families():
        training = MODEL_CLASSES[captioner.variant.family].from_pretrained(captioner.source).to(captioner.device)
        copy = in_app_precision(training)
        if in_app_precision(training, reuse=copy) is not copy:
            raise RuntimeError("the second evaluation built another copy")
        pixels = captioner.preprocess(models.images).to(captioner.device, copy.dtype)
        with torch.no_grad():
            copy.generate(pixel_values=pixels, max_new_tokens=8, do_sample=False)
        copies.append(copy)
    return copies


def example_cache(models: Models):
    images = {image_digest(image): image for image in models.images}
    added = caption_examples(ExampleCache(), images, models.study, SHORT, batched=True)  # a GPU's way, anywhere
    if added != len(images) * len(models.study):
        raise RuntimeError(f"{added} of {len(images) * len(models.study)} rows cached (the log says why)")
    return models.study.values()


CHECKS = {
    "captions (greedy, 2 beams)": captions,
    "fifth slot (tiny VLMs)": fifth_slot,
    "heatmaps, relevance": heatmaps("relevance"),
    "heatmaps, raw attention": heatmaps("attention"),
    "report's batched generation": report_batches,
    "finetune's validation captions": finetune_validation,
    "example cache, batched": example_cache,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-only", action="store_true", help="the tiny models only (seconds; no base-size build)")
    args = parser.parse_args()
    quiet_library_logs()
    device = pick_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    dtype = pick_dtype(device)
    hint = " (CXRCAP_DTYPE=bfloat16 picks what a GPU would)" if dtype == torch.float32 else ""
    print(f"{device} ({name}), torch {torch.__version__}; the code picks {dtype_name(dtype)}{hint}")
    images = [load_image(path) for path in sorted(EXAMPLES.glob("*.jpg"))[:3]]
    failed, start = 0, time.perf_counter()
    for size in ("tiny",) if args.tiny_only else ("tiny", "base"):
        models = Models(size, images)
        for label, check in CHECKS.items():
            began = time.perf_counter()
            try:
                used = list(check(models))
            except Exception as error:  # every path is reported, whatever fails
                failed += 1
                print(f"{size:5} {label:32} FAIL  {type(error).__name__}: {first_line(error)}", flush=True)
                continue
            ran_in = ", ".join(sorted({dtype_name(model.dtype) for model in used})) or "-"
            outcome = "pass" if used else "n/a "
            print(f"{size:5} {label:32} {outcome}  {ran_in:10} {time.perf_counter() - began:5.1f} s", flush=True)
    print(f"{'all passed' if not failed else f'{failed} failed'} in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
