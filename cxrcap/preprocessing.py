"""How an image becomes model input, for every variant: the whole X-ray, resized to a square, by PIL.

Two choices are made here on purpose, once, for captioning (`captioner`), fine-tuning (`finetune`)
and the tiny variants (`tiny`):

- **The whole image.** git-base's released processor resizes the shortest edge to 224 px and crops
  the centre, so a portrait chest film loses its apices and costophrenic angles and a landscape one
  its sides. The study resized its images to a square without cropping; so does every variant here
  (`whole_image`): GIT 224 x 224, BLIP 384 x 384 (BLIP's released processor already does this).
  A fine-tuned checkpoint's own processor records what it was trained on and is used as saved.
  The released centre crop stays available: `CXRCAP_CENTRE_CROP=1` for the base variants in the
  app, `--centre-crop true` for `python -m finetune`.
- **The PIL backend.** transformers 5 uses torchvision-backed image processors when torchvision
  is installed and PIL ones otherwise, so two installs could feed the models different pixels.
  Every processor is loaded with `backend="pil"`: PyPI's torchvision does not import beside this
  project's pinned torch 2.13.0 CPU wheel, and where a matching pair is installed the torchvision
  backend was slower per image on a CPU and differed by at most one grey level
  (benchmarks/image_backend.py; numbers in benchmarks/README.md).
"""

from __future__ import annotations

import os

from transformers import AutoProcessor, BlipImageProcessorPil, CLIPImageProcessorPil, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import PILImageResampling, SizeDict

BACKEND = "pil"
CENTRE_CROP_ENV = "CXRCAP_CENTRE_CROP"
# The image processor each family's released checkpoint ships (git-base: CLIP's; BLIP's own),
# whose defaults are those checkpoints' settings.
RELEASED_IMAGE_PROCESSORS: dict[str, type[BaseImageProcessor]] = {
    "git": CLIPImageProcessorPil,
    "blip": BlipImageProcessorPil,
}


def centre_crop_requested() -> bool:
    """Whether `CXRCAP_CENTRE_CROP` asks the base variants for their released centre crop."""
    return os.environ.get(CENTRE_CROP_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def released_image_processor(family: str) -> BaseImageProcessor:
    """The image processor of the family's released checkpoint (PIL backend), as shipped."""
    return RELEASED_IMAGE_PROCESSORS[family]()


def whole_image(image_processor: BaseImageProcessor) -> BaseImageProcessor:
    """Make the processor resize the whole image to its square input size, without cropping (in place)."""
    side = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else image_processor.size
    height = side.get("height") or side.get("shortest_edge")
    width = side.get("width") or side.get("shortest_edge")
    image_processor.size = SizeDict(height=height, width=width)
    image_processor.do_center_crop = False
    return image_processor


def load_processor(source: str, *, whole: bool = True) -> ProcessorMixin:
    """The processor (tokenizer + image processor) of a hub id or folder, with the PIL backend;
    `whole=True` makes it resize the whole image to the square input (see `whole_image`)."""
    processor = AutoProcessor.from_pretrained(source, backend=BACKEND)
    if whole:
        whole_image(processor.image_processor)
    return processor


def describe(image_processor: BaseImageProcessor) -> dict[str, str]:
    """What the processor does to an image, in words: recorded in recipe.json and the model card."""
    size = image_processor.size
    cropped = getattr(image_processor, "do_center_crop", False)
    if size.get("shortest_edge"):
        resize = f"shortest edge to {size['shortest_edge']} px, aspect ratio kept"
    else:
        resize = f"whole image to {size['width']} x {size['height']} px (aspect ratio not kept)"
    if cropped:
        crop = image_processor.crop_size
        crop_text = f"centre {crop['width']} x {crop['height']} px"
        input_size = f"{crop['width']} x {crop['height']}"
    else:
        crop_text = "none: the model sees the whole image"
        input_size = f"{size['width']} x {size['height']}"
    return {
        "image_processor": type(image_processor).__name__,
        "backend": BACKEND,
        "input_size": input_size,
        "resize": f"{resize}, {PILImageResampling(image_processor.resample).name.lower()}",
        "crop": crop_text,
    }
