"""Caption latency on the CPU: all four variants for one X-ray, naive vs optimised (issue 6).

    python benchmarks/caption_latency.py                  # 4 X-rays x 3 repeats, RSS over 20 requests
    python benchmarks/caption_latency.py --requests 200   # the issue's RSS-is-flat check (~20 min)
    python benchmarks/caption_latency.py --profile        # where one caption's time goes, per family

Base-size random variants are built locally once (`cxrcap.tiny.tiny_sources(base_size=True)`:
git-base and blip-base shapes, a 30,522-token vocabulary, one folder of its own weights per
variant in ~/.cache/cxrcap, as the real four are four weight files). Random
weights rarely emit eos, so every caption runs to --max-new-tokens (the worst case). All paths
caption the same real X-rays from ../shared/data/cxr-examples:

- naive: the captioner before issue 6 (processor, then greedy fp32 `generate()`, one variant
  after another on all torch threads), each model freshly loaded;
- optimised: `stream_captions` as the app and the CLI call it (two variants at a time on one
  core each, shared pre-processing), and the same with one variant at a time;
- int8 (opt-in, `Captioner(quantize_int8=True)`): its own line; its captions may differ.

"agree" is the share of caption tokens equal to the naive fp32 ones, "same" the captions equal
as text, and max|dlogit| the largest logit difference from the naive run over the positions
where both had the same prefix. Times are medians over X-rays x repeats (after a warm-up). The
machine may be shared: the load average is printed, and two torch threads on one model suffer
most from other work (each operation waits for both threads).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.captioner import (  # noqa: E402
    MODEL_CLASSES,
    Captioner,
    DecodeSettings,
    quiet_library_logs,
    to_dynamic_int8,
)
from cxrcap.images import load_image  # noqa: E402
from cxrcap.preprocessing import load_processor  # noqa: E402
from cxrcap.scheduler import stream_captions, warm_up  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from app_process import running_app  # noqa: E402  (same folder)
from cxrcap.variants import VARIANT_IDS, VARIANTS  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples" / "images"
TARGETS = "all four <= 3.0 s, first card <= 0.6 s, >= 2.5x naive, int8 all four <= 2.0 s, max|dlogit| <= 1e-4"
THREADS = torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="real X-rays to caption (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the X-rays (default 3)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--requests", type=int, default=20, help="requests for the RSS-is-flat check (issue: 200)")
    parser.add_argument("--skip-int8", action="store_true", help="leave out the opt-in int8 lines")
    parser.add_argument("--profile", action="store_true", help="only print where one caption's time goes")
    args = parser.parse_args()
    quiet_library_logs()
    settings = DecodeSettings(max_new_tokens=args.max_new_tokens)
    sources = tiny_sources(base_size=True)
    paths = sorted(EXAMPLES.glob("*.jpg"))
    images = [load_image(paths[i * len(paths) // args.images]) for i in range(args.images)]
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} on {THREADS} threads; {len(images)} X-rays from "
          f"{EXAMPLES}; greedy, {settings.max_new_tokens} new tokens; load average {_load()}")  # fmt: skip
    if args.profile:
        profile(sources, images[0], settings)
        return

    naive = time_naive(sources, images, settings, args.repeats)
    captioners = {vid: Captioner(vid, sources[vid], untrained=True) for vid in VARIANT_IDS}
    _warmed(warm_up(captioners))
    quality = compare_with_naive(captioners, images, settings, naive)
    lines = [("naive: fp32 generate(), one after another", naive, None)]
    for workers in (2, 1):
        timed = time_streamed(captioners, images, settings, args.repeats, workers)
        lines.append((f"optimised, {workers} variant{'s' * (workers > 1)} at a time", timed, quality | _same_text(timed, naive)))
    if not args.skip_int8:
        del captioners
        gc.collect()
        int8 = {vid: Captioner(vid, sources[vid], untrained=True, quantize_int8=True) for vid in VARIANT_IDS}
        _warmed(warm_up(int8))
        quality = compare_with_naive(int8, images, settings, naive)
        for workers in (2, 1):
            timed = time_streamed(int8, images, settings, args.repeats, workers)
            lines.append((f"opt-in int8, {workers} variant{'s' * (workers > 1)} at a time", timed, quality | _same_text(timed, naive)))
    print_latency(lines, naive)
    print_serving(serve_in_a_fresh_process(sources, paths[0], settings, args.requests))
    print_app_cold_start(app_cold_start(sources, paths[0], settings))


def _warmed(results) -> None:
    failed = [result.error for result in results if result.error]
    if failed:
        raise SystemExit("; ".join(failed))


def time_naive(sources: dict[str, str], images, settings: DecodeSettings, repeats: int) -> dict:
    """The pre-issue-6 path on freshly loaded models: processor + greedy fp32 generate(), each
    variant in turn. Keeps each caption's tokens, logits and text as the reference."""
    per_variant, ids, logits, texts = {vid: [] for vid in VARIANT_IDS}, {}, {}, {}
    for vid in VARIANT_IDS:  # one model in memory at a time
        processor = load_processor(sources[vid])
        model = MODEL_CLASSES[VARIANTS[vid].family].from_pretrained(sources[vid]).eval()
        for repeat in range(repeats + 1):  # pass 0 warms up
            for index, image in enumerate(images):
                start = time.perf_counter()
                with torch.inference_mode():
                    pixel_values = processor(images=[image], return_tensors="pt").pixel_values
                    out = model.generate(
                        pixel_values=pixel_values, max_new_tokens=settings.max_new_tokens, do_sample=False,
                        output_logits=True, return_dict_in_generate=True,
                    )  # fmt: skip
                if repeat:
                    per_variant[vid].append(time.perf_counter() - start)
                ids[vid, index], logits[vid, index] = out.sequences[0, 1:].tolist(), torch.stack(out.logits, dim=1)[0]
                texts[vid, index] = processor.batch_decode(out.sequences, skip_special_tokens=True)[0].strip()
        del model
        gc.collect()
    # One request runs the four in turn: its time is the sum of its four captions' times.
    totals = [sum(times) for times in zip(*per_variant.values())]
    return _summary(per_variant, totals, per_variant[VARIANT_IDS[0]], {}) | {"ids": ids, "logits": logits, "texts": texts}


def time_streamed(captioners: dict[str, Captioner], images, settings: DecodeSettings, repeats: int, workers: int):
    """What the app does: stream_captions; each card's time counts from the request's start."""
    per_variant, totals, firsts, texts = {vid: [] for vid in captioners}, [], [], {}
    for _ in range(repeats):
        for index, image in enumerate(images):
            start, done = time.perf_counter(), []
            for result in stream_captions(captioners, image, settings, workers=workers):
                assert result.error is None, result.error
                done.append(time.perf_counter() - start)
                per_variant[result.variant_id].append(done[-1])
                texts[result.variant_id, index] = result.caption
            totals.append(done[-1])
            firsts.append(done[0])
    return _summary(per_variant, totals, firsts, texts)


def _summary(per_variant: dict, totals: list, firsts: list, texts: dict) -> dict:
    median = statistics.median
    return {"variants": {vid: median(times) for vid, times in per_variant.items()}, "total": median(totals),
            "first": median(firsts), "spread": (min(totals), max(totals)), "texts": texts}  # fmt: skip


def _same_text(timed: dict, naive: dict) -> dict:
    same = sum(text == naive["texts"][key] for key, text in timed["texts"].items())
    return {"same": f"{same}/{len(timed['texts'])}"}


def compare_with_naive(captioners: dict[str, Captioner], images, settings: DecodeSettings, naive: dict) -> dict:
    """Tokens and logits of the captioners' generate(), run as the workers run it (one torch
    thread), against the naive run's."""
    same = total = 0
    max_diff = 0.0

    def caption(captioner, pixel_values):
        torch.set_num_threads(max(1, THREADS // 2))
        with torch.inference_mode():
            return captioner.model.generate(
                pixel_values=pixel_values, max_new_tokens=settings.max_new_tokens, do_sample=False,
                output_logits=True, return_dict_in_generate=True,
            )  # fmt: skip

    for vid, captioner in captioners.items():
        for index, image in enumerate(images):
            out = _in_new_thread(caption, captioner, captioner.preprocess([image]))
            got, reference = out.sequences[0, 1:].tolist(), naive["ids"][vid, index]
            same += sum(a == b for a, b in zip(reference, got))
            total += max(len(reference), len(got))
            # Up to and including the first disagreement both had the same prefix: comparable logits.
            shared = next((i for i, (a, b) in enumerate(zip(reference, got)) if a != b), min(len(reference), len(got)) - 1)
            logits = torch.stack(out.logits, dim=1)[0]
            max_diff = max(max_diff, (naive["logits"][vid, index][: shared + 1] - logits[: shared + 1]).abs().max().item())
    return {"agreement": same / total, "max_logit_diff": max_diff}


def _in_new_thread(fn, *args):
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)))
    thread.start()
    thread.join()
    return result[0]


def serve_in_a_fresh_process(sources: dict[str, str], image_path: Path, settings: DecodeSettings, requests: int) -> dict:
    """A fresh Python as the app starts: import, load the first variant from its local folder and
    caption one X-ray (the app loads variants in the background, so its first caption waits for
    no more), load the other three, then serve `requests` requests, sampling the RSS."""
    script = textwrap.dedent(f"""
        import time; start = time.perf_counter()
        import json, sys; sys.path.insert(0, {str(REPO)!r})
        import psutil
        from cxrcap.captioner import Captioner, DecodeSettings, quiet_library_logs
        from cxrcap.images import load_image
        from cxrcap.scheduler import stream_captions, warm_up
        quiet_library_logs(); imported = time.perf_counter()
        settings = DecodeSettings(max_new_tokens={settings.max_new_tokens})
        captioners = {{vid: Captioner(vid, src, untrained=True) for vid, src in {sources!r}.items()}}
        first = next(iter(captioners.values()))
        first.load(); loaded = time.perf_counter()
        image = load_image({str(image_path)!r})
        first.caption_one(image, settings); captioned = time.perf_counter()
        assert not any(result.error for result in warm_up(captioners))
        rss = lambda: psutil.Process().memory_info().rss / 2**30
        out = dict(imported=imported - start, loaded=loaded - imported, first=captioned - loaded,
                   rss_loaded=rss(), samples=[])
        for request in range({requests}):
            for _ in stream_captions(captioners, image, settings):
                pass
            if (request + 1) % max(1, {requests} // 10) == 0:
                out["samples"].append(rss())
        # /proc, not getrusage: a child's ru_maxrss starts from its parent's RSS at the fork.
        status = open("/proc/self/status").read()
        kib = lambda key: int(status.split(key + ":")[1].split()[0]) / 2**20
        out.update(anon=kib("RssAnon"), file=kib("RssFile"), peak=kib("VmHWM"))
        print(json.dumps(out))
    """)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def app_cold_start(sources: dict[str, str], image_path: Path, settings: DecodeSettings) -> dict:
    """`python app.py` on the local base-size folders (CXRCAP_SOURCE_*), as a Space starts it:
    seconds until the page answers, then until its first request's four captions are back
    (the app loads and warms the variants in the background meanwhile)."""
    from gradio_client import Client, handle_file

    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               **{VARIANTS[vid].env_var: source for vid, source in sources.items()})  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, running_app([], env, Path(folder) / "app.log") as url:
        page = time.perf_counter() - start
        client = Client(url, verbose=False)
        client.predict(handle_file(str(image_path)), "", 1, settings.max_new_tokens, api_name="/caption")
        return {"page": page, "captions": time.perf_counter() - start}


def profile(sources: dict[str, str], image, settings: DecodeSettings) -> None:
    """Phase times of one caption per family against a memory-bandwidth floor. On one torch
    thread and in this thread's CPU time (medians of 3), so other work on a shared machine
    moves the numbers less."""
    torch.set_num_threads(1)
    bandwidth = _bandwidth_gb_s()
    print(f"one torch thread, CPU time; a 94 MB matrix-vector product streams {bandwidth:.1f} GB/s")
    rows = {vid: _profile_family(sources[vid], vid, image, settings, bandwidth) for vid in ("git-base", "blip-base")}
    print(f"{'':40} {'git-base':>10} {'blip-base':>10}")
    for label in rows["git-base"]:
        print(f"{label:40} {rows['git-base'][label] * 1000:8.1f}ms {rows['blip-base'][label] * 1000:8.1f}ms")


def _profile_family(source: str, vid: str, image, settings: DecodeSettings, bandwidth: float) -> dict:
    processor = load_processor(source)
    model = MODEL_CLASSES[VARIANTS[vid].family].from_pretrained(source).eval()
    encoder = model.git.image_encoder if vid.startswith("git") else model.vision_model
    step_bytes, n = _decoder_bytes_per_step(model), settings.max_new_tokens
    print(f"{vid}: a decoding step reads {step_bytes / 1e6:.0f} MB of weights")

    def generate(tokens: int):
        return model.generate(pixel_values=pixel_values, max_new_tokens=tokens, do_sample=False)

    with torch.inference_mode():
        pre = _cpu_median(lambda: processor(images=[image], return_tensors="pt"))
        pixel_values = processor(images=[image], return_tensors="pt").pixel_values
        generate(2)  # warm-up
        vision, one, full = _cpu_median(lambda: encoder(pixel_values)), _cpu_median(lambda: generate(1)), _cpu_median(lambda: generate(n))
        step_1, step_4 = _cached_forward_times(model, pixel_values)
        to_dynamic_int8(model)  # as Captioner(quantize_int8=True) does
        int8 = _cpu_median(lambda: generate(n))
    return {
        "pre-processing (processor)": pre,
        "vision encoder": vision,
        "prefill (generate 1 token - encoder)": one - vision,
        f"decode step (generate, {n} tokens)": (full - one) / (n - 1),
        "  floor: weights read / bandwidth": step_bytes / bandwidth / 1e9,
        "cached decoder forward, 1 new token": step_1,
        "cached decoder forward, 4 new tokens": step_4,
        f"caption, fp32 ({n} tokens)": full,
        "caption, int8 (opt-in)": int8,
    }


def _cached_forward_times(model, pixel_values) -> tuple[float, float]:
    """One decoder forward over 1 and over 4 new tokens after a 10-token caption (4 tokens at
    once is what speculative decoding's check of 3 draft tokens costs)."""
    git = hasattr(model, "git")
    tokens = model.generate(pixel_values=pixel_values, max_new_tokens=10, do_sample=False)
    decoder = model if git else model.text_decoder
    image = {"pixel_values": pixel_values} if git else {"encoder_hidden_states": model.vision_model(pixel_values)[0]}
    cache = decoder(input_ids=tokens, use_cache=True, logits_to_keep=1, **image).cache
    step_inputs = {} if git else image

    def forward(count: int) -> None:
        decoder(input_ids=tokens[:, :count], cache=cache, use_cache=True, logits_to_keep=count, **step_inputs)
        cache.crop(-count)

    return _cpu_median(lambda: forward(1), 5), _cpu_median(lambda: forward(4), 5)


def _decoder_bytes_per_step(model) -> int:
    """Weight bytes one decoding step reads: the text decoder's Linear layers and output layer
    (BLIP's cross-attention keys/values are computed once per caption, not per step)."""
    decoder = model.git.encoder if hasattr(model, "git") else model.text_decoder
    linears = [m for name, m in decoder.named_modules() if isinstance(m, torch.nn.Linear) and "crossattention.self.key" not in name and "crossattention.self.value" not in name]  # fmt: skip
    if hasattr(model, "git"):
        linears.append(model.output)
    return sum(m.weight.numel() * m.weight.element_size() for m in linears)


def _bandwidth_gb_s() -> float:
    weight, x = torch.randn(30522, 768), torch.randn(1, 768)
    return weight.numel() * 4 / _cpu_median(lambda: torch.nn.functional.linear(x, weight), 9) / 1e9


def _cpu_median(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def print_latency(lines, naive) -> None:
    print(f"\nload average at the end: {_load()} (a quiet 2-core machine shows < 0.1 before the run)\n")
    print(f"{'path':40} " + " ".join(f"{vid:>12}" for vid in VARIANT_IDS)
          + f" {'all four':>9} {'(min-max)':>11} {'first':>6} {'ratio':>6} {'agree':>6} {'same':>6} {'max|dlogit|':>11}")  # fmt: skip
    for label, timed, quality in lines:
        cells = " ".join(f"{timed['variants'][vid]:11.2f}s" for vid in VARIANT_IDS)
        low, high = timed["spread"]
        q = quality or {"agreement": 1.0, "same": "ref", "max_logit_diff": 0.0}
        print(f"{label:40} {cells} {timed['total']:8.2f}s {low:5.1f}-{high:4.1f}s {timed['first']:5.2f}s "
              f"{naive['total'] / timed['total']:5.2f}x {q['agreement']:6.1%} {q['same']:>6} {q['max_logit_diff']:11.1e}")  # fmt: skip
    print("per-variant columns: naive = that caption alone; optimised = when its card arrived (from the request's start)")
    print(f"targets (issue 6): {TARGETS}")


def print_serving(served: dict) -> None:
    samples = " ".join(f"{x:.2f}" for x in served["samples"])
    print(f"RSS, fresh process with the four loaded and warm: {served['rss_loaded']:.2f} GiB; after each tenth of "
          f"the requests: {samples} GiB (at the end: anonymous {served['anon']:.2f} + weights mapped from their files {served['file']:.2f}); "
          f"peak {served['peak']:.2f} GiB = {served['peak'] * 2**30 / 1e9:.2f} GB (target <= 3.5 GB, flat)")  # fmt: skip
    to_first = served["imported"] + served["loaded"] + served["first"]
    print(f"cold start, fresh process, local weights: imports {served['imported']:.1f} s + load one variant "
          f"{served['loaded']:.1f} s + its first caption {served['first']:.1f} s = {to_first:.1f} s to the first "
          f"caption (target <= 8 s)")  # fmt: skip


def print_app_cold_start(cold: dict) -> None:
    print(f"app cold start, `python app.py` on the local weights: page answers after {cold['page']:.1f} s; "
          f"the first request's four captions (API /caption) after {cold['captions']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
