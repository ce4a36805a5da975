"""ZeroGPU on Hugging Face Spaces: a GPU lent per call, through the `spaces` package.

Hugging Face's recipe: import `spaces` before anything initialises CUDA (`app.py` imports this
module first), load the models and move them to CUDA at start-up (in the main process), and run
the GPU work inside a function decorated with `@spaces.GPU(duration=...)`. That function runs in
a forked process holding the GPU for the call: generators work, async functions do not, and the
main process's threads (our CPU caption workers) do not exist there, so on a GPU the variants
caption one after another on the calling thread (`stream_captions` with one worker). Two things
run there: a request's captions (`CaptionService._caption_now`) and one variant's heatmaps
(`HeatmapView._compute`), each asking for the GPU time its inputs need (`caption_seconds`,
`heatmap_seconds`) instead of the 60 s default.

Anywhere else (`SPACES_ZERO_GPU` unset, or `spaces` not installed) `gpu()` returns the function
unchanged: the app behaves exactly as without this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

try:
    import spaces
except ImportError:  # not on a Space, and not installed: nothing to adapt to
    spaces = None

from ..variants import EXTRA_ID

ON_ZERO_GPU: bool = spaces is not None and bool(spaces.config.Config.zero_gpu)

# How long a call holds the GPU, asked per request: ZeroGPU queues a visitor by the duration asked
# for (a shorter one is let in sooner, and counts less against the daily quota) and stops the call
# when it runs out. Estimates, not measurements (no GPU here), with a margin: the CPU timings and
# the H200 throughputs in benchmarks/README.md, and ~0.1 s per token of a few-billion-parameter VLM.
ATTACH_SECONDS = 10  # a call's fixed cost: the worker's start, the weights' first move onto the GPU
STEP_SECONDS = 0.02  # one decoding step of one base-size GIT or BLIP (eager attention, batch of one)
EXTRA_STEP_SECONDS = 0.1  # the same for the fifth slot's vision-language model
BEAM_COST = 0.15  # each beam beyond the first: beams decode as one batch, so a step costs a little more
MAP_SECONDS = {"relevance": 3.0, "attention": 1.5}  # one variant's maps of a 30-token caption
MAX_SECONDS = 120  # beyond what any request here needs; ZeroGPU refuses what exceeds a visitor's limit


def caption_seconds(variant_ids, image, settings, int8: bool = False) -> int:
    """GPU seconds for captioning `image` with `variant_ids` under `settings` (`DecodeSettings`):
    the inputs of `CaptionService._caption_now`, as `spaces.GPU(duration=...)` passes them."""
    steps = settings.max_new_tokens * (1 + BEAM_COST * (settings.num_beams - 1))
    per_step = sum(EXTRA_STEP_SECONDS if variant_id == EXTRA_ID else STEP_SECONDS for variant_id in variant_ids)
    return min(MAX_SECONDS, math.ceil(ATTACH_SECONDS + steps * per_step))


def heatmap_seconds(variant_id, image, result, method: str) -> int:
    """GPU seconds for one variant's maps of its caption (`result`, a `CaptionResult`) by `method`:
    the inputs of `HeatmapView._compute`."""
    tokens = max(30, len(result.token_ids) or len((result.caption or "").split()))
    return min(MAX_SECONDS, math.ceil(ATTACH_SECONDS + MAP_SECONDS[method] * tokens / 30))


def gpu(function: Callable, duration: Callable[..., int]) -> Callable:
    """`function` run with a ZeroGPU GPU for `duration(*its arguments)` seconds; unchanged elsewhere."""
    if spaces is None:
        return function
    return spaces.GPU(duration=duration)(function)
