"""What heatmaps cost on the CPU (issue 13): extra seconds per variant for a 30-token caption's
maps, and whether memory stays flat over many requests with heatmaps on.

    python benchmarks/heatmap_cost.py                              # git-base and blip-base, 50 requests
    python benchmarks/heatmap_cost.py --tiny-random --repeats 1 --requests 3   # a smoke test of the script

Base-size random variants (`cxrcap.tiny.tiny_sources(base_size=True)`: git-base and
blip-image-captioning-base shapes and vocabulary size). Random weights almost never emit eos, so
every caption runs its `--max-new-tokens` (30): the caption whose maps are timed has 30 tokens.
The extra time is `compute_heatmaps` alone (the caption is already there), median over repeats
after a warm-up, per method, and for relevance also the naive way (all targets in one batched
backward pass over the whole caption, instead of causal chunks); the base and fine-tuned variants of a family have the same shapes
and cost. The RSS check runs `--requests` requests (caption, then the default method's maps, for
each variant) on one real X-ray after another and prints RSS after the first and the last.
Captioning with heatmaps off is untouched: maps are computed only when asked for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.captioner import Captioner, DecodeSettings, quiet_library_logs  # noqa: E402
from cxrcap import heatmaps  # noqa: E402
from cxrcap.heatmaps import DEFAULT_METHOD, METHODS, compute_heatmaps  # noqa: E402
from cxrcap.images import load_image  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from cxrcap.variants import parse_variant_ids  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples" / "images"
TARGETS = {"git": 1.0, "blip": 2.0}  # seconds of extra time per variant, default method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="git-base,blip-base", help="comma-separated variant ids")
    parser.add_argument("--repeats", type=int, default=3, help="timed map computations per method (default 3)")
    parser.add_argument("--requests", type=int, default=50, help="requests with heatmaps on for the RSS check (0: none)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--tiny-random", action="store_true", help="tiny weights: checks the script, measures nothing")
    args = parser.parse_args()
    quiet_library_logs()
    variant_ids = parse_variant_ids(args.variants)
    sources = tiny_sources(variant_ids, base_size=not args.tiny_random)
    paths = sorted(EXAMPLES.glob("*.jpg"))
    images = [load_image(path) for path in paths]
    settings = DecodeSettings(max_new_tokens=args.max_new_tokens)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}; {'tiny' if args.tiny_random else 'base-size'} random weights; "
          f"{len(images)} X-rays")
    captioners = {vid: Captioner(vid, sources[vid]) for vid in variant_ids}

    print("\n| variant | caption tokens | caption (s) | +relevance, one pass (naive) (s) | "
          + " | ".join(f"+{m} (s)" for m in METHODS) + " | target |")
    print("|---|---|---|---|" + "---|" * len(METHODS) + "---|")
    for vid, captioner in captioners.items():
        start = time.perf_counter()
        ((caption, token_ids),) = captioner.caption_with_ids([images[0]], settings)
        caption_seconds = time.perf_counter() - start

        def median_seconds(method: str) -> float:
            compute_heatmaps(captioner, images[0], caption, method, token_ids)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                compute_heatmaps(captioner, images[0], caption, method, token_ids)
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        chunk = heatmaps.RELEVANCE_CHUNK
        heatmaps.RELEVANCE_CHUNK = len(token_ids)  # the naive way: every target over the whole caption
        one_pass = median_seconds("relevance")
        heatmaps.RELEVANCE_CHUNK = chunk
        medians = [median_seconds(method) for method in METHODS]
        target = TARGETS[captioner.variant.family]
        met = "met" if medians[METHODS.index(DEFAULT_METHOD)] <= target else "MISSED"
        print(f"| {vid} | {len(token_ids)} | {caption_seconds:.2f} | {one_pass:.2f} | "
              + " | ".join(f"{m:.2f}" for m in medians) + f" | <= {target:.1f} s ({DEFAULT_METHOD}): {met} |")
        print(f"  relevance in chunks of {chunk}: {one_pass / medians[METHODS.index('relevance')]:.2f}x "
              "faster than one pass", flush=True)

    if not args.requests:
        return
    process = psutil.Process()
    rss = []
    for request in range(args.requests):
        image = images[request % len(images)]
        for captioner in captioners.values():
            ((caption, token_ids),) = captioner.caption_with_ids([image], settings)
            compute_heatmaps(captioner, image, caption, token_ids=token_ids)
        rss.append(process.memory_info().rss / 2**20)
    print(f"\nRSS over {args.requests} requests with heatmaps on ({', '.join(variant_ids)}): "
          f"{rss[0]:.0f} MiB after the first, {rss[-1]:.0f} MiB after the last "
          f"(growth {rss[-1] - rss[0]:+.0f} MiB; max {max(rss):.0f} MiB)")


if __name__ == "__main__":
    main()
