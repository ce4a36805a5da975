"""ZeroGPU: with `spaces` installed and SPACES_ZERO_GPU unset (never set here), nothing changes."""

import os

from processes import run_python

from cxrcap.app import zerogpu
from cxrcap.variants import EXTRA_ID, VARIANT_IDS


def captions():
    yield "a caption"


def test_spaces_installed_and_not_on_zero_gpu_leaves_functions_unchanged():
    assert "SPACES_ZERO_GPU" not in os.environ
    assert zerogpu.spaces is not None, "the spaces package is in requirements.txt: pip install -r requirements.txt"
    assert not zerogpu.ON_ZERO_GPU
    assert zerogpu.gpu(captions, zerogpu.caption_seconds) is captions and zerogpu.gpu(len, len) is len


def test_without_spaces_the_same():
    code = ("import sys; sys.modules['spaces'] = None\n"  # as if it were not installed
            "from cxrcap.app import zerogpu\n"
            "def f(): yield 1\n"
            "print(zerogpu.spaces is None, zerogpu.ON_ZERO_GPU, zerogpu.gpu(f, len) is f)")
    done = run_python("-c", code)
    assert done.stdout.split() == ["True", "False", "True"], done.stderr


def test_the_app_imports_spaces_before_torch():
    """Hugging Face's rule for ZeroGPU: `spaces` first, before anything can initialise CUDA."""
    done = run_python("-c", "import sys, app; names = list(sys.modules); print(names.index('spaces') < names.index('torch'))")
    assert done.stdout.strip() == "True", done.stderr


def test_a_request_asks_for_gpu_time_by_its_variants_beams_tokens_and_heatmaps():
    from cxrcap.captioner import CaptionResult, DecodeSettings

    four = list(VARIANT_IDS)
    default = zerogpu.caption_seconds(four, None, DecodeSettings())
    heaviest = zerogpu.caption_seconds([*four, EXTRA_ID], None, DecodeSettings(num_beams=8, max_new_tokens=100))
    assert isinstance(default, int) and zerogpu.ATTACH_SECONDS < default < 60  # less than the 60 s default
    assert default < zerogpu.caption_seconds(four, None, DecodeSettings(num_beams=8)) < heaviest <= zerogpu.MAX_SECONDS
    assert default < zerogpu.caption_seconds(four, None, DecodeSettings(max_new_tokens=100))
    assert zerogpu.caption_seconds(four[:1], None, DecodeSettings()) < default < zerogpu.caption_seconds([*four, EXTRA_ID], None, DecodeSettings())

    short, long = (CaptionResult("git-base", "word " * n, 0.1, token_ids=tuple(range(n))) for n in (10, 90))
    relevance = zerogpu.heatmap_seconds("git-base", None, short, "relevance")
    assert zerogpu.ATTACH_SECONDS < zerogpu.heatmap_seconds("git-base", None, short, "attention") < relevance
    assert relevance < zerogpu.heatmap_seconds("git-base", None, long, "relevance") < 60


def test_the_durations_take_the_arguments_the_gpu_functions_get(tiny_sources, cxr_image, monkeypatch):
    """`spaces.GPU(duration=f)` calls `f(*args, **kwargs)` with the decorated function's own arguments
    (`static_duration` in spaces/zero/wrappers.py, which imports only with a CUDA build of torch):
    record what the service and the heatmap view pass their GPU functions, and size each call so."""
    from cxrcap.app.heatmap_view import HeatmapView
    from cxrcap.app.service import CaptionService
    from cxrcap.images import load_image

    calls = []

    def recording_gpu(function, duration):
        def run(*args, **kwargs):
            calls.append(duration(*args, **kwargs))
            return function(*args, **kwargs)
        return run

    monkeypatch.setattr(zerogpu, "gpu", recording_gpu)
    service = CaptionService(list(VARIANT_IDS), tiny_random=True)
    image = load_image(cxr_image)
    comparison = list(service.compare(image, "", 2, 8))[-1][0]
    maps = HeatmapView(service.captioners_for).maps_for(image, comparison, "relevance")
    assert len(maps) == 4 and len(calls) == 1 + 4  # one captioning call, one per variant's maps
    assert all(isinstance(seconds, int) and 0 < seconds <= zerogpu.MAX_SECONDS for seconds in calls)
