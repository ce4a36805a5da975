"""ZeroGPU on Hugging Face Spaces: a GPU lent per call, through the `spaces` package.

Hugging Face's recipe: import `spaces` before anything initialises CUDA (`app.py` imports this
module first), load the models and move them to CUDA at start-up (in the main process), and run
the GPU work inside a function decorated with `@spaces.GPU(duration=...)`. That function runs in
a forked process holding the GPU for the call: generators work, async functions do not, and the
main process's threads (our CPU caption workers) do not exist there, so on a GPU the variants
caption one after another on the calling thread (`stream_captions` with one worker).

Anywhere else (`SPACES_ZERO_GPU` unset, or `spaces` not installed) `gpu()` returns the function
unchanged: the app behaves exactly as without this module.
"""

from __future__ import annotations

from collections.abc import Callable

try:
    import spaces
except ImportError:  # not on a Space, and not installed: nothing to adapt to
    spaces = None

ON_ZERO_GPU: bool = spaces is not None and bool(spaces.config.Config.zero_gpu)
# Four base-size captions on a GPU take about a second (unmeasured here: no GPU); the margin
# covers 8 beams and 100 tokens. A shorter duration gets a visitor through ZeroGPU's queue sooner.
CAPTION_SECONDS = 30


def gpu(function: Callable) -> Callable:
    """`function` run with a ZeroGPU GPU for at most CAPTION_SECONDS; unchanged elsewhere."""
    if spaces is None:
        return function
    return spaces.GPU(duration=CAPTION_SECONDS)(function)
