"""The example gallery's cache: how long filling it takes, and how fast a cached example answers.

Three numbers, on the shipped examples (`assets/examples/`) with all four variants:

- naive fill: every example captioned as a request is (`stream_captions`, one image at a time);
- the app's fill: `example_cache.caption_examples` as the app runs it after warm-up (on a CPU
  image by image as background work, so about as long as naive; on a GPU every example in one
  batch per variant, where the ratio naive / app is the gain), and whether both give the same
  captions;
- a cached example: what `CaptionService.compare` does for one (`cached_then_live`, then the
  four captions scored against the example's caption): the server's share of a click; the
  browser test (`tests/test_browser.py`) measures the whole click.

    python benchmarks/example_cache_speed.py               # tiny random variants
    python benchmarks/example_cache_speed.py --base-size   # base-size random weights (CPU or GPU)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap import metrics
from cxrcap.app.comparison import Comparison
from cxrcap.app.example_cache import ExampleCache, caption_examples, cached_then_live, image_digest
from cxrcap.app.examples import DEFAULT_FOLDER, load_examples
from cxrcap.captioner import Captioner, DecodeSettings, pick_device, quiet_library_logs
from cxrcap.images import load_image
from cxrcap.scheduler import stream_captions, warm_up
from cxrcap.tiny import tiny_sources
from cxrcap.variants import VARIANT_IDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-size", action="store_true", help="base-size random weights (built once, ~3.2 GB)")
    parser.add_argument("--clicks", type=int, default=20, help="cached answers to time (default 20)")
    args = parser.parse_args()
    quiet_library_logs()
    metrics.warm_up(background=False)  # WordNet for METEOR: the app loads it at start-up too
    sources = tiny_sources(base_size=args.base_size)
    captioners = {vid: Captioner(vid, sources[vid], untrained=True, quantize_int8=False) for vid in VARIANT_IDS}
    assert not any(result.error for result in warm_up(captioners))
    examples = load_examples(DEFAULT_FOLDER)
    images = {image_digest(image): image for image in (load_image(e.path) for e in examples)}
    settings = DecodeSettings()
    print(f"{len(images)} examples x {len(captioners)} variants on {pick_device()}, "
          f"{'base-size' if args.base_size else 'tiny'} random weights, {settings.describe()}")

    start = time.perf_counter()
    naive = {(digest, r.variant_id): r.caption for digest, image in images.items()
             for r in stream_captions(captioners, image, settings)}
    naive_seconds = time.perf_counter() - start
    cache = ExampleCache()
    start = time.perf_counter()
    caption_examples(cache, images, captioners, settings)
    app_seconds = time.perf_counter() - start
    filled = {(digest, vid): r.caption for digest in images for vid, r in cache.lookup(digest, captioners, settings).items()}
    same = sum(filled.get(key) == caption for key, caption in naive.items())
    print(f"fill: naive {naive_seconds:.2f} s, the app's {app_seconds:.2f} s ({naive_seconds / app_seconds:.2f}x); "
          f"captions equal {same}/{len(naive)}")

    example, image = examples[0], next(iter(images.values()))
    times = []
    for _ in range(args.clicks):
        start = time.perf_counter()
        cached, rest = cached_then_live(cache, captioners, image, settings, live=None)
        comparison = Comparison(example.caption, settings)
        for result in [*cached, *rest]:
            comparison.add(result)
        times.append(time.perf_counter() - start)
        assert len(comparison.outcomes) == len(VARIANT_IDS) and all(o.scores for o in comparison.outcomes.values())
    print(f"cached example, four cards with scores: median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms over {args.clicks} (target for the whole click in a browser: <= 300 ms)")


if __name__ == "__main__":
    main()
