"""ZeroGPU: with `spaces` installed and SPACES_ZERO_GPU unset (never set here), nothing changes."""

import os

from processes import run_python

from cxrcap.app import zerogpu


def captions():
    yield "a caption"


def test_spaces_installed_and_not_on_zero_gpu_leaves_functions_unchanged():
    assert "SPACES_ZERO_GPU" not in os.environ
    assert zerogpu.spaces is not None, "the spaces package is in requirements.txt: pip install -r requirements.txt"
    assert not zerogpu.ON_ZERO_GPU
    assert zerogpu.gpu(captions) is captions and zerogpu.gpu(len) is len


def test_without_spaces_the_same():
    code = ("import sys; sys.modules['spaces'] = None\n"  # as if it were not installed
            "from cxrcap.app import zerogpu\n"
            "def f(): yield 1\n"
            "print(zerogpu.spaces is None, zerogpu.ON_ZERO_GPU, zerogpu.gpu(f) is f)")
    done = run_python("-c", code)
    assert done.stdout.split() == ["True", "False", "True"], done.stderr


def test_the_app_imports_spaces_before_torch():
    """Hugging Face's rule for ZeroGPU: `spaces` first, before anything can initialise CUDA."""
    done = run_python("-c", "import sys, app; names = list(sys.modules); print(names.index('spaces') < names.index('torch'))")
    assert done.stdout.strip() == "True", done.stderr
