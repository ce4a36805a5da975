"""Image-processor backends: PIL vs torchvision on real chest X-rays, speed and pixel difference.

transformers 5 has two backends for each image processor: PIL (numpy) and torchvision (torch
tensors). This times both on the real X-rays of ../shared/data/cxr-examples (one image per call,
as the app pre-processes an upload) with each family's processor as cxrcap uses it (the whole image
resized to a square: GIT 224 px, BLIP 384 px; and git-base's released centre crop), and compares
their pixel values: the largest and the mean absolute difference of the model inputs, in units of
the 0-255 input scale (a difference of 1 = one grey level).

    python benchmarks/image_backend.py                 # all 98 X-rays, 3 timed passes
    python benchmarks/image_backend.py --images 10 --repeats 1

torchvision must be importable for the comparison; PyPI's torchvision does not import beside this
project's torch 2.13.0 CPU wheel, so run it in a separate environment that has a matching pair,
e.g. `python -m venv --system-site-packages /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1
torchvision==0.29.1 && /tmp/tv/bin/python benchmarks/image_backend.py`. Without torchvision only
the PIL timings are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoImageProcessor
from transformers.utils import is_torchvision_available

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.captioner import quiet_library_logs  # noqa: E402
from cxrcap.images import load_image  # noqa: E402
from cxrcap.preprocessing import describe, released_image_processor, whole_image  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples" / "images"
SETTINGS = {  # name -> (family, whole image?)
    "git, whole image 224": ("git", True),
    "git, released centre crop 224": ("git", False),
    "blip, whole image 384": ("blip", True),
}


def processors(family: str, whole: bool, folder: Path) -> dict[str, object]:
    """The same saved processor loaded with each available backend."""
    image_processor = released_image_processor(family)
    if whole:
        whole_image(image_processor)
    image_processor.save_pretrained(folder)
    backends = ["pil", "torchvision"] if is_torchvision_available() else ["pil"]
    return {backend: AutoImageProcessor.from_pretrained(folder, backend=backend) for backend in backends}


def seconds_per_image(processor, images, repeats: int) -> float:
    processor(images=images[:1], return_tensors="pt")  # warm-up
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for image in images:
            processor(images=[image], return_tensors="pt")
        passes.append((time.perf_counter() - start) / len(images))
    return statistics.median(passes)


def pixels(processor, images) -> torch.Tensor:
    return torch.cat([processor(images=[image], return_tensors="pt").pixel_values for image in images])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="use the first N X-rays (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the images (median reported)")
    args = parser.parse_args()
    quiet_library_logs()
    paths = sorted(path for path in EXAMPLES.iterdir() if path.suffix in (".jpg", ".png"))[: args.images]
    images = [load_image(path) for path in paths]
    portrait, landscape = (sum(compare(*image.size) for image in images) for compare in (int.__lt__, int.__gt__))
    print(f"{len(images)} real chest X-rays ({portrait} portrait, {landscape} landscape); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; torchvision "
          f"{'installed' if is_torchvision_available() else 'not installed'}")
    print(f"{'processor':<32} {'PIL ms/img':>10} {'tv ms/img':>10} {'tv/PIL':>7} {'max |diff|':>10} {'mean |diff|':>11}")
    with tempfile.TemporaryDirectory() as scratch:
        for name, (family, whole) in SETTINGS.items():
            loaded = processors(family, whole, Path(scratch, name.replace(" ", "_").replace(",", "")))
            pil = loaded["pil"]
            assert describe(pil)["backend"] == "pil"
            pil_ms = seconds_per_image(pil, images, args.repeats) * 1000
            row = f"{name:<32} {pil_ms:>10.2f}"
            if "torchvision" in loaded:
                tv = loaded["torchvision"]
                tv_ms = seconds_per_image(tv, images, args.repeats) * 1000
                std = torch.tensor(pil.image_std).view(1, 3, 1, 1)
                grey_levels = (pixels(tv, images) - pixels(pil, images)).abs() * std * 255  # back to the 0-255 scale
                row += (f" {tv_ms:>10.2f} {tv_ms / pil_ms:>6.2f}x {grey_levels.max().item():>10.2f} "
                        f"{grey_levels.mean().item():>11.3f}")
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
