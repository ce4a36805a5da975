"""Real weights give transformers' own known answers through our `Captioner` (opt-in: needs the hub).

    CXRCAP_HUB_TESTS=1 python -m pytest -q tests/test_hub.py

downloads microsoft/git-base and Salesforce/blip-image-captioning-base (into the Hugging Face
cache) and the two images transformers' integration tests caption, then checks those tests'
answers token by token, for every dtype the app picks: fp32 on a CPU, and bf16 and fp16 on a
CUDA GPU when there is one. Without the variable only the checks' own machinery runs, on a tiny
model, so a wrong caption cannot pass unnoticed.

Like transformers' tests, the images go to the processor as Pillow opens them (no
`cxrcap.images.load_image`, whose EXIF rotation and alpha handling the tests do not apply) and
the processors are the released ones, unmodified (git-base's with its centre crop); decoding is
the app's default (greedy).
"""

import json
import os
import urllib.request
from dataclasses import dataclass

import pytest
import torch
from transformers import AutoProcessor

from processes import run_python

from cxrcap.captioner import MODEL_CLASSES, DecodeSettings
from cxrcap.variants import VARIANTS

HUB_TESTS = os.environ.get("CXRCAP_HUB_TESTS") == "1"
# The transformers commit whose integration tests were read for these answers.
TRANSFORMERS_COMMIT = "ad80364920ee4accfb7e68edd2973e1cf7e60cc7"


@dataclass(frozen=True)
class KnownAnswer:
    variant_id: str
    image_url: str
    caption: str  # the decoded text, special tokens dropped
    token_ids: tuple[int, ...] | None = None  # when the upstream test pins every id
    length: int | None = None  # when it pins only the length (special tokens included)


KNOWN_ANSWERS = [
    # transformers tests/models/git/test_modeling_git.py, GitModelIntegrationTest.
    # test_inference_image_captioning: the PNG copy of COCO val2017 000000039769 in its test
    # fixtures, greedy, sequences of shape (1, 9).
    KnownAnswer(
        "git-base",
        f"https://raw.githubusercontent.com/huggingface/transformers/{TRANSFORMERS_COMMIT}"
        "/tests/fixtures/tests_samples/COCO/000000039769.png",
        "two cats laying on a pink blanket",
        length=9,
    ),
    # transformers tests/models/blip/test_modeling_blip.py, BlipModelIntegrationTest.
    # test_inference_image_captioning (fp32) and test_inference_image_captioning_fp16: BLIP's
    # demo image, no text prompt, greedy.
    KnownAnswer(
        "blip-base",
        "https://huggingface.co/hf-internal-testing/blip-test-image/resolve/main/demo.jpg",
        "a woman sitting on the beach with her dog",
        token_ids=(30522, 1037, 2450, 3564, 2006, 1996, 3509, 2007, 2014, 3899, 102),
    ),
]
# What the app runs on each device (captioner.pick_dtype): fp32 on a CPU; bf16, or fp16 where
# the GPU has no bf16, on CUDA. Upstream pins fp32 for both models and fp16 for BLIP; GIT in
# fp16 and both in bf16 are this project's own expectation: a failure there means the app's GPU
# dtype changes the real captions.
DEVICE_DTYPES = [("cpu", "float32"), ("cuda", "bfloat16"), ("cuda", "float16")]

# A fresh process: it reads HF_HUB_OFFLINE anew, and holds one real model at a time.
CAPTION = """
import json, sys, torch
from PIL import Image
from cxrcap.captioner import Captioner
variant_id, source, image, device, dtype = sys.argv[1:]
captioner = Captioner(variant_id, source, device=torch.device(device), dtype=getattr(torch, dtype))
ids = captioner.generate_ids(captioner.preprocess([Image.open(image)]))
print(json.dumps({"ids": ids[0].tolist(), "caption": captioner.decode(ids)[0]}))
"""


def caption_in_a_fresh_process(variant_id: str, source: str, image, *, device="cpu", dtype="float32", **env) -> dict:
    """{"ids": [...], "caption": "..."} of one image through `Captioner` (default settings), with
    the released processors as shipped: CXRCAP_CENTRE_CROP=1 keeps git-base's centre crop, which
    the app otherwise replaces by a whole-image resize (issue 19)."""
    done = run_python(
        "-c", CAPTION, variant_id, source, str(image), device, dtype, timeout=1800, CXRCAP_CENTRE_CROP="1", **env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_known_answer(output: dict, answer: KnownAnswer) -> None:
    assert output["caption"] == answer.caption
    if answer.token_ids is not None:
        assert output["ids"] == list(answer.token_ids)
    if answer.length is not None:
        assert len(output["ids"]) == answer.length


def test_the_check_passes_the_right_answer_and_fails_wrong_ones(tiny_sources, cxr_image, tmp_path):
    """The opt-in test's machinery on a tiny model: fresh-process captioning, then the check,
    against an answer computed here independently (the released processor unmodified +
    generate, no Captioner), on a landscape image like the cats (640 x 480), where a centre
    crop and a whole-image resize differ."""
    from PIL import Image

    image = tmp_path / "landscape.png"
    Image.open(cxr_image).convert("RGB").resize((640, 480)).save(image)
    source = tiny_sources["git-base"]
    output = caption_in_a_fresh_process("git-base", source, image)
    processor = AutoProcessor.from_pretrained(source)
    model = MODEL_CLASSES["git"].from_pretrained(source).eval()
    settings = DecodeSettings()
    with torch.inference_mode():
        ids = model.generate(
            pixel_values=processor(images=[Image.open(image)], return_tensors="pt").pixel_values,
            max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams, do_sample=False,
        )[0].tolist()  # fmt: skip
    caption = processor.decode(ids, skip_special_tokens=True).strip()
    assert_known_answer(output, KnownAnswer("git-base", "", caption, token_ids=tuple(ids), length=len(ids)))

    wrong = [
        KnownAnswer("git-base", "", caption, token_ids=tuple(ids[:-1]) + (ids[-1] + 1,)),
        KnownAnswer("git-base", "", caption, length=len(ids) + 1),
        KnownAnswer("git-base", "", caption + " more"),
        *KNOWN_ANSWERS,
    ]
    for answer in wrong:
        with pytest.raises(AssertionError):
            assert_known_answer(output, answer)


@pytest.fixture(scope="session")
def known_images(tmp_path_factory) -> dict[str, str]:
    """The upstream tests' images, downloaded (only when a hub test runs)."""
    folder = tmp_path_factory.mktemp("known-images")
    images = {}
    for answer in KNOWN_ANSWERS:
        path = folder / f"{answer.variant_id}-{answer.image_url.rsplit('/', 1)[1]}"
        urllib.request.urlretrieve(answer.image_url, path)
        images[answer.variant_id] = str(path)
    return images


@pytest.mark.skipif(not HUB_TESTS, reason="needs the Hugging Face hub: set CXRCAP_HUB_TESTS=1")
@pytest.mark.parametrize("device, dtype", DEVICE_DTYPES, ids=[f"{d}-{t}" for d, t in DEVICE_DTYPES])
@pytest.mark.parametrize("answer", KNOWN_ANSWERS, ids=[a.variant_id for a in KNOWN_ANSWERS])
def test_real_weights_give_the_known_answer(answer, device, dtype, known_images):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    if dtype == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    source = VARIANTS[answer.variant_id].default_source  # the released weights, whatever CXRCAP_SOURCE_* says
    output = caption_in_a_fresh_process(
        answer.variant_id, source, known_images[answer.variant_id], device=device, dtype=dtype, HF_HUB_OFFLINE="0"
    )
    assert_known_answer(output, answer)
