"""Fine-tuning speed: the seed's recipe as-is (naive) vs `--fast`, in one run, through `finetune` itself.

Both profiles train the same model from the same random weights on the same real X-rays
(../shared/data/cxr-examples, 96 images: six updates of 16 per epoch) with the same seed, for
--steps updates, validation off. Each is built by `finetune.train.prepare`, exactly as
`python -m finetune` builds it, and timed from the end of update --warmup to the end of the last
one (loading, pre-processing, forward, backward and optimiser steps included). Printed per family
and profile: samples/s and the ratio to naive, peak GPU memory, the loss of every update (the
curves must agree within noise), and the estimated time of 10 epochs of 1.7k images
(steady samples/s, plus the one-off costs: caching the tensors, scaled to 1.7k images, and the
warm-up steps' extra time, which holds torch.compile's compilation).

    python benchmarks/finetune_speed.py --tiny                 # CPU: tiny random models, a few updates
    python benchmarks/finetune_speed.py                        # GPU: base-size random models
    python benchmarks/finetune_speed.py --family git --steps 60

Base size: `GitConfig()` / `BlipConfig()` defaults with random weights and a 30,522-token
vocabulary, built once by `cxrcap.tiny.tiny_sources(base_size=True)` (same shapes and compute as
git-base and blip-image-captioning-base). On CUDA a third profile, fast + torch.compile, is timed
unless --no-compile. Target (issue 7): fast >= 5x naive samples/s for both families on one GPU.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.tiny import tiny_sources  # noqa: E402
from finetune.recipe import Recipe  # noqa: E402
from finetune.plan import RunOptions, make_plan  # noqa: E402
from finetune.train import prepare  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples"
TRAIN_IMAGES = 96  # a multiple of 16: every update sees a full batch
TEN_EPOCHS_IMAGES = 10 * 1700
TARGET_RATIO = 5.0


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every update (after the GPU has finished it)."""

    def __init__(self):
        self.start = 0.0
        self.ends: list[float] = []

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(self._now())


@dataclass
class Result:
    name: str
    samples_per_s: float
    warmup_extra_s: float  # time of the warm-up updates beyond steady-state pace (compilation, first batches)
    cache_s: float  # pre-processing the training images once (fast profile)
    peak_gpu_gib: float | None
    losses: list[float] = field(default_factory=list)

    def ten_epochs_minutes(self) -> float:
        cache = self.cache_s * TEN_EPOCHS_IMAGES / 10 / TRAIN_IMAGES  # cached once, for 1.7k images
        return (TEN_EPOCHS_IMAGES / self.samples_per_s + self.warmup_extra_s + cache) / 60


def measure(family: str, base_model: str, name: str, *, fast: bool, compile_model: bool, steps: int,
            warmup: int) -> Result:
    with tempfile.TemporaryDirectory() as output_dir:
        options = RunOptions(family=family, data=str(EXAMPLES), base_model=base_model, output_dir=output_dir,
                             chest_only=False, max_train_samples=TRAIN_IMAGES, max_steps=steps, fast=fast,
                             torch_compile=compile_model, logging_steps=1)
        recipe = Recipe()
        clock = StepClock()
        prepared = prepare(make_plan(options, recipe, evaluate=False), callbacks=[clock])
        trainer = prepared.trainer
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        per_update = (clock.ends[-1] - clock.ends[warmup - 1]) / (steps - warmup)
        effective_batch = prepared.profile.per_device_train_batch_size * prepared.profile.gradient_accumulation_steps
        result = Result(
            name=name,
            samples_per_s=effective_batch / per_update,
            warmup_extra_s=max(0.0, clock.ends[warmup - 1] - clock.start - warmup * per_update),
            cache_s=prepared.cache_seconds,
            peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        )
        del trainer, prepared
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models (CPU check) instead of base size")
    parser.add_argument("--family", nargs="+", choices=("git", "blip"), default=["git", "blip"])
    parser.add_argument("--steps", type=int, default=None, help="updates per profile (default: 30 on GPU, 6 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="updates not timed (default: 5 on GPU, 2 on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the fast + torch.compile profile on CUDA")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    steps = args.steps or (30 if cuda else 6)
    warmup = args.warmup or (5 if cuda else 2)
    if not 0 < warmup < steps:
        parser.error("need 0 < --warmup < --steps")
    sources = tiny_sources([f"{family}-base" for family in args.family], base_size=not args.tiny)
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device}; {'tiny' if args.tiny else 'base-size'} random models; {steps} updates of 16 "
          f"({warmup} warm-up) on {TRAIN_IMAGES} real X-rays; torch {torch.__version__}")

    failures = []
    for family in args.family:
        base_model = sources[f"{family}-base"]
        profiles = [("naive", False, False), ("fast", True, False)]
        if cuda and not args.no_compile:
            profiles.append(("fast+compile", True, True))
        results = [measure(family, base_model, name, fast=fast, compile_model=compiled, steps=steps, warmup=warmup)
                   for name, fast, compiled in profiles]
        naive = results[0]
        print(f"\n{family}: {'profile':<13} {'samples/s':>9} {'x naive':>7} {'peak GPU':>9} {'one-off s':>9} "
              f"{'10 ep x 1.7k':>12}")
        for result in results:
            memory = f"{result.peak_gpu_gib:.1f} GiB" if result.peak_gpu_gib is not None else "-"
            print(f"{'':<{len(family) + 2}}{result.name:<13} {result.samples_per_s:>9.1f} "
                  f"{result.samples_per_s / naive.samples_per_s:>6.2f}x {memory:>9} "
                  f"{result.cache_s + result.warmup_extra_s:>9.1f} {result.ten_epochs_minutes():>9.1f} min")
        for result in results[1:]:
            gap = max(abs(a - b) for a, b in zip(naive.losses, result.losses))
            print(f"  loss per update, {result.name} vs naive: max |difference| {gap:.4f} "
                  f"(naive {naive.losses[0]:.3f} -> {naive.losses[-1]:.3f}, "
                  f"{result.name} {result.losses[0]:.3f} -> {result.losses[-1]:.3f})")
            if len(result.losses) != len(naive.losses):
                failures.append(f"{family} {result.name}: {len(result.losses)} updates logged, naive {len(naive.losses)}")
        best = max(results[1:], key=lambda result: result.samples_per_s)
        ratio = best.samples_per_s / naive.samples_per_s
        if cuda:
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            print(f"  target >= {TARGET_RATIO:g}x naive on a GPU: {verdict} it ({best.name}: {ratio:.2f}x)")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
