"""Do the study's four slow down while the fifth slot loads, or while it captions? (issue 15)

    python benchmarks/extra_loading.py                       # base-size four, a ~1B-parameter random Gemma 3
    python benchmarks/extra_loading.py --tiny --requests 3   # smoke test: tiny models, seconds

The four study variants (base-size random weights, `cxrcap.tiny.tiny_sources(base_size=True)`)
caption one real X-ray through `stream_captions`, as the app does, in three phases:
1. alone (the baseline);
2. while a random Gemma 3 vision-language model (MedGemma's architecture, scaled up from
   `cxrcap.tiny_vlm`'s to --params-millions) loads as the app loads the extra slot
   (`ExtraCaptioner.load_in_background`: its own thread, lower CPU priority, then a two-token
   warm-up), its files first dropped from the OS page cache so that it reads them from disk, as on
   a first start; only requests that ran wholly inside the load count;
3. with the fifth loaded: every request also asks it, and its answer runs on its own
   low-priority lane (`Captioner.low_priority`), as in the app.
A request's time is until the four's captions are in (the fifth may still be answering). Printed:
the four's median time in each phase and the ratios to the baseline. The app's rule is that the
four never *wait* for the fifth (tested in tests/test_extra.py); this measures what sharing two
cores with it costs them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.cache import building, cache_root  # noqa: E402
from cxrcap.captioner import DecodeSettings, quiet_library_logs  # noqa: E402
from cxrcap.extra import ExtraCaptioner  # noqa: E402
from cxrcap.images import load_image  # noqa: E402
from cxrcap.lineup import build_captioners  # noqa: E402
from cxrcap.scheduler import stream_captions, warm_up  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from cxrcap.tiny_vlm import tiny_vlm_source  # noqa: E402
from cxrcap.variants import VARIANT_IDS  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples" / "images"


def large_gemma3(params_millions: int) -> str:
    """A random Gemma 3 with about `params_millions` decoder parameters, built once into the cache."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    folder = cache_root() / f"bench-gemma3-{params_millions}m"
    if (folder / "config.json").exists():
        return str(folder)
    tiny = tiny_vlm_source("gemma3")
    config = AutoConfig.from_pretrained(tiny)
    hidden = 1024
    layers = max(1, round(params_millions * 1e6 / (12 * hidden * hidden)))  # 4h^2 attention + 8h^2 MLP per layer
    config.text_config.update(dict(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                                   num_attention_heads=8, num_key_value_heads=4, head_dim=128,
                                   query_pre_attn_scalar=128, layer_types=["full_attention"] * layers))
    with building(folder) as staging:
        torch.manual_seed(0)
        AutoModelForImageTextToText.from_config(config).save_pretrained(staging)
        AutoProcessor.from_pretrained(tiny).save_pretrained(staging)
        (staging / "README.md").write_text((Path(tiny) / "README.md").read_text())
    return str(folder)


def time_four(captioners, image, settings) -> float:
    """Seconds until the study's four captions are in (a request for the fifth may still run on)."""
    start = time.perf_counter()
    four = []
    for result in stream_captions(captioners, image, settings):
        if result.variant_id in VARIANT_IDS:
            four.append(result)
            if len(four) == len(VARIANT_IDS):
                break
    assert all(r.caption is not None for r in four), four
    return time.perf_counter() - start


def evict_from_page_cache(folder: str) -> None:
    """Drop the folder's files from the OS page cache (Linux), so the load reads from disk as a
    first start does, instead of from memory right after the files were written."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            with open(path, "rb") as file:
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (a smoke test of the benchmark itself)")
    parser.add_argument("--params-millions", type=int, default=1000, help="size of the loading VLM (default 1000)")
    parser.add_argument("--requests", type=int, default=10, help="baseline requests (default 10)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    args = parser.parse_args()
    quiet_library_logs()
    settings = DecodeSettings(max_new_tokens=args.max_new_tokens)
    image = load_image(sorted(EXAMPLES.glob("*.jpg"))[0])
    if args.tiny:
        four = build_captioners(list(VARIANT_IDS), tiny_random=True)
        vlm = tiny_vlm_source("gemma3")
    else:
        sources = tiny_sources(base_size=True)
        from cxrcap.captioner import Captioner

        four = {vid: Captioner(vid, sources[vid], untrained=True) for vid in VARIANT_IDS}
        vlm = large_gemma3(args.params_millions)
    warm_up(four)
    alone = [time_four(four, image, settings) for _ in range(args.requests)]

    evict_from_page_cache(vlm)
    extra = ExtraCaptioner(vlm, name="random Gemma 3", untrained=True)
    captioners = {**four, "extra": extra}
    loader = extra.load_in_background()
    started = time.perf_counter()
    during = []
    while loader.is_alive():
        seconds = time_four(captioners, image, settings)
        if loader.is_alive():  # only requests that ran wholly inside the load
            during.append(seconds)
    load_seconds = time.perf_counter() - started
    # Loaded: each request now also asks the fifth, whose answers run on their own low-priority lane.
    beside = [time_four(captioners, image, settings) for _ in range(args.requests)]
    alone_median = statistics.median(alone)
    summary = {
        "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "vlm": vlm, "vlm_load_seconds": round(load_seconds, 2),
        "four_alone_median_s": round(alone_median, 3),
        "four_during_load_median_s": round(statistics.median(during), 3) if during else None,
        "requests_during_load": len(during),
        "four_during_load_s": [round(seconds, 2) for seconds in during],
        "four_beside_the_fifth_median_s": round(statistics.median(beside), 3),
        "ratio_beside_the_fifth": round(statistics.median(beside) / alone_median, 3),
    }
    if during:
        summary["ratio_during_load"] = round(statistics.median(during) / alone_median, 3)
    print(json.dumps(summary, indent=2))
    # Wait for the fifth's last answer: a daemon thread stopped inside torch at exit aborts the process.
    list(stream_captions({"extra": extra}, image, settings))


if __name__ == "__main__":
    main()
