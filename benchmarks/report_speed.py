"""Report generation speed: batched, as `python -m cxrcap report` runs it, vs the naive loop.

The naive loop captions one image at a time (`Captioner.caption([image])`: pre-processing and
generation per image). The report pre-processes all images once per image processor (shared by
a base variant and its fine-tuned twin: `cxrcap.report.preprocess`) and generates a batch per
call (`cxrcap.report.generate_in_batches`). Both run the same captioner on the same real X-rays
from ../shared/data/cxr-examples, after a warm-up call. Prints images/s per variant (naive;
batched with its pre-processing; batched generation alone), the ratio batched/naive, how many
captions the two ways agree on, and the totals of all variants (target on one H100/H200: four
base-size variants, 200 images, <= 10 s of generation).

    python benchmarks/report_speed.py                        # tiny random variants, 16 images
    python benchmarks/report_speed.py --base-size --images 8 # base-size random weights
    python benchmarks/report_speed.py --base-size --images 200 --naive-images 20   # on a GPU

Base size: `cxrcap.tiny.tiny_sources(base_size=True)`, four folders built once into the cache
(~3.2 GB): `GitConfig()` and `BlipConfig()` defaults (git-base and blip-base shapes, 177M and
224M parameters) with random weights, one seed per variant, and a 30,522-token vocabulary (the
tiny WordPiece vocabulary padded with [unused] tokens, so the output layer costs what
bert-base-uncased's does). Random weights rarely stop early, so every caption runs to
--max-new-tokens: a worst case for speed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.captioner import Captioner, DecodeSettings, pick_device, quiet_library_logs
from cxrcap.images import load_image
from cxrcap.lineup import build_captioners
from cxrcap.report import default_batch_size, generate_in_batches, preprocess
from cxrcap.tiny import tiny_sources
from cxrcap.variants import parse_variant_ids

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples" / "images"
TARGET_SECONDS, TARGET_IMAGES = 10.0, 200


def real_xrays(n: int):
    files = sorted(EXAMPLES.glob("*.jpg")) + sorted(EXAMPLES.glob("*.png"))
    if not files:
        sys.exit(f"no X-rays in {EXAMPLES} (see ../shared/data/README.md)")
    return [load_image(path) for path in itertools.islice(itertools.cycle(files), n)]


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def measure(captioner: Captioner, images, naive_images, pixels: dict, settings: DecodeSettings, batch_size: int):
    """(naive captions, naive s, batched captions, pre-processing s, batched generation s) for one variant."""
    captioner.caption(images[:1], settings)  # load and warm up
    naive, naive_s = timed(lambda: [captioner.caption([image], settings)[0] for image in naive_images])
    key = captioner.preprocessing_key
    preprocess_s = 0.0
    if key not in pixels:  # the report pre-processes once per image processor
        pixels[key], preprocess_s = timed(lambda: preprocess(captioner, images, progress=False))
    generate_in_batches(captioner, pixels[key][:batch_size], settings, batch_size, progress=False)  # warm up
    (batched, _), generation_s = timed(
        lambda: generate_in_batches(captioner, pixels[key], settings, batch_size, progress=False)
    )
    return naive, naive_s, batched, preprocess_s, generation_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images captioned in batches (default 16)")
    parser.add_argument("--naive-images", type=int, default=None,
                        help="images for the one-by-one loop (default: the same as --images)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: what the report picks for the device")
    parser.add_argument("--base-size", action="store_true", help="base-size random weights instead of tiny ones")
    parser.add_argument("--variants", default=None, help="comma-separated ids (default: all four)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    args = parser.parse_args()
    quiet_library_logs()

    device = pick_device()
    batch_size = args.batch_size or default_batch_size(device)
    settings = DecodeSettings(max_new_tokens=args.max_new_tokens)
    ids = parse_variant_ids(args.variants)
    if args.base_size:
        sources = tiny_sources(ids, base_size=True)
        captioners = {vid: Captioner(vid, sources[vid], untrained=True) for vid in ids}
    else:
        captioners = build_captioners(ids, tiny_random=True)
    images = real_xrays(args.images)
    naive_images = images[: args.naive_images or args.images]
    size = "base-size" if args.base_size else "tiny"
    print(f"{size} random weights, {device}, threads {torch.get_num_threads()}, {settings.describe()}; "
          f"batched: {len(images)} images at batch {batch_size}; naive: {len(naive_images)} images one by one")
    print(f"{'variant':14} {'dtype':>9} {'naive':>8} {'batched':>8} {'generation':>11} {'ratio':>6} "
          f"{'same captions':>14}   (images/s; batched includes its pre-processing)")

    pixels: dict[str, torch.Tensor] = {}  # per image processor, as the report shares them
    total_generation = total_preprocessing = 0.0
    for variant_id, captioner in captioners.items():
        naive, naive_s, batched, preprocess_s, generation_s = measure(captioner, images, naive_images, pixels,
                                                                      settings, batch_size)
        total_generation += generation_s
        total_preprocessing += preprocess_s
        same = sum(a == b for a, b in zip(naive, batched))
        naive_rate = len(naive_images) / naive_s
        batched_rate = len(images) / (preprocess_s + generation_s)
        print(f"{variant_id:14} {str(captioner.dtype).removeprefix('torch.'):>9} {naive_rate:8.2f} "
              f"{batched_rate:8.2f} {len(images) / generation_s:11.2f} {batched_rate / naive_rate:6.2f} "
              f"{same:>8}/{len(naive):<5}")
    print(f"all {len(captioners)} variants on {len(images)} images: generation {total_generation:.1f} s, "
          f"pre-processing {total_preprocessing:.1f} s (once per image processor)")
    if args.base_size and device.type == "cuda":
        met = total_generation <= TARGET_SECONDS and len(images) >= TARGET_IMAGES and len(captioners) == 4
        print(f"target: four variants on {TARGET_IMAGES} images in <= {TARGET_SECONDS:.0f} s of generation -> "
              f"{'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
