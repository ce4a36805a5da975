"""Every path a GPU runs in 16-bit, run on the CPU in bf16 and fp16 on the tiny models.

On a GPU the code picks bf16 (fp16 where a GPU lacks it); `CXRCAP_DTYPE` selects that choice on
any machine, so these tests set the variable and run the entry points' own code, unforked: the
four variants' and the fifth slot's captions, heatmaps by both methods (and in the app's view and
the report), the report's batched generation, fine-tuning's validation captions, the example cache.
torch 2.13 has CPU kernels for every op these paths use in both dtypes (checked by these tests).
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cxrcap import heatmaps
from cxrcap.__main__ import main
from cxrcap.app.comparison import Comparison
from cxrcap.app.example_cache import ExampleCache, caption_examples, image_digest
from cxrcap.app.heatmap_view import HeatmapView
from cxrcap.captioner import Captioner, DecodeSettings, pick_dtype
from cxrcap.extra import ExtraCaptioner
from cxrcap.images import load_image
from cxrcap.lineup import build_captioners
from cxrcap.report import EvaluationSet, Row, finding_word_overlays, generate_predictions
from cxrcap.scheduler import stream_captions
from cxrcap.variants import VARIANT_IDS

DTYPES = ["bfloat16", "float16"]
FAMILIES = ["git-base", "blip-base"]
TINY_VLMS = ["tiny", "tiny-idefics3", "tiny-llava"]  # Gemma 3, Idefics3, LLaVA
SHORT = DecodeSettings(max_new_tokens=6)
CAPTION = "left pleural effusion with cardiomegaly"
TINY_BLIP_IN_FP16 = (
    "the tiny random BLIP's ViT has weights of ~1e-10 (BlipVisionConfig's initializer_range), so its activations "
    "lie below fp16's range and its image features are exactly 0 in fp16: no gradient reaches the cross-attention "
    "and every relevance map is 0. A trained checkpoint's features are O(1); bf16 has fp32's range and passes."
)


@pytest.fixture(params=DTYPES)
def dtype(request, monkeypatch) -> torch.dtype:
    """The dtype a GPU would get, chosen through the one switch the code reads."""
    monkeypatch.setenv("CXRCAP_DTYPE", request.param)
    monkeypatch.delenv("CXRCAP_EXTRA_DTYPE", raising=False)
    monkeypatch.delenv("CXRCAP_INT8", raising=False)
    return getattr(torch, request.param)


@pytest.fixture(scope="module")
def xrays(cxr_examples_dir) -> list[Image.Image]:
    return [load_image(path) for path in sorted((cxr_examples_dir / "images").glob("*.jpg"))[:3]]


def loaded_in(captioner: Captioner, dtype: torch.dtype) -> bool:
    return captioner.dtype == dtype and captioner.model.dtype == dtype


def test_the_switch_is_read_once_and_a_bad_value_names_the_allowed_ones(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("CXRCAP_DTYPE", raising=False)
    assert pick_dtype(cpu) == torch.float32  # unset: the device decides
    monkeypatch.setenv("CXRCAP_DTYPE", "bfloat16")
    assert pick_dtype(cpu) == torch.bfloat16
    monkeypatch.setenv("CXRCAP_DTYPE", "fp16")
    with pytest.raises(ValueError, match="CXRCAP_DTYPE must be one of float32, bfloat16, float16, not 'fp16'"):
        pick_dtype(cpu)


def test_a_bad_switch_stops_the_app_with_the_message_not_a_traceback():
    from processes import run_python

    done = run_python("app.py", "--tiny-random", timeout=300, CXRCAP_DTYPE="half")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "error: CXRCAP_DTYPE must be one of float32, bfloat16, float16, not 'half'" in done.stderr


def test_int8_captioners_compute_in_float32_whatever_the_switch_says(tiny_sources, xrays, monkeypatch):
    """Dynamic int8 layers take float32 inputs: the CPU's fast mode stays float32 (and says so)."""
    monkeypatch.setenv("CXRCAP_DTYPE", "bfloat16")
    int8 = Captioner("git-base", tiny_sources["git-base"], quantize_int8=True)
    assert int8.dtype == torch.float32 and int8.caption(xrays[:1], SHORT)
    with pytest.raises(ValueError, match="float32"):
        Captioner("git-base", tiny_sources["git-base"], quantize_int8=True, dtype=torch.bfloat16)


def test_compare_int8_refuses_a_16_bit_switch(cxr_examples_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXRCAP_DTYPE", "bfloat16")
    assert main(["report", "--data", str(cxr_examples_dir), "--out", str(tmp_path), "--tiny-random", "--compare-int8"]) == 2
    assert "--compare-int8 compares int8 with float32 captions: unset CXRCAP_DTYPE" in capsys.readouterr().err


def test_the_four_variants_caption_in_16_bit(dtype, xrays):
    captioners = build_captioners(VARIANT_IDS, tiny_random=True)
    for settings in (SHORT, DecodeSettings(num_beams=2, max_new_tokens=6)):
        results = list(stream_captions(captioners, xrays[0], settings))
        assert sorted(result.variant_id for result in results) == sorted(VARIANT_IDS)
        assert all(result.error is None and result.caption and result.token_ids for result in results)
    assert all(loaded_in(captioner, dtype) for captioner in captioners.values())


@pytest.mark.parametrize("model", TINY_VLMS)
def test_the_fifth_slot_captions_in_16_bit(dtype, xrays, model):
    extra = ExtraCaptioner.named(model, tiny_random=True)
    (result,) = stream_captions({"extra": extra}, xrays[0], SHORT)
    assert result.error is None and result.caption
    assert loaded_in(extra, dtype)
    # a batch of two: left padding, as the report runs it
    assert len(extra.decode(extra.generate_ids(xrays[:2], SHORT))) == 2


@pytest.mark.parametrize("method", heatmaps.METHODS)
@pytest.mark.parametrize("variant_id", FAMILIES)
def test_heatmaps_in_16_bit(dtype, xrays, variant_id, method):
    (captioner,) = build_captioners([variant_id], tiny_random=True).values()
    maps = heatmaps.compute_heatmaps(captioner, xrays[0], CAPTION, method)
    assert loaded_in(captioner, dtype)
    assert maps.word_maps.shape == (len(CAPTION.split()), *maps.grid) and np.isfinite(maps.token_maps).all()
    assert maps.to_json()["dtype"] == str(dtype).removeprefix("torch.")
    if dtype == torch.float16 and variant_id == "blip-base" and method == "relevance":
        pytest.skip(TINY_BLIP_IN_FP16)  # it ran; its maps are all 0
    assert np.allclose(maps.word_maps.max(axis=(1, 2)), 1.0)


def test_the_apps_heatmap_view_and_the_reports_overlays_in_16_bit(dtype, xrays):
    captioners = build_captioners(FAMILIES, tiny_random=True)
    comparison = Comparison("", SHORT)
    for result in stream_captions(captioners, xrays[0], SHORT):
        comparison.add(result)
    shown = HeatmapView(lambda int8: captioners).maps_for(xrays[0], comparison, heatmaps.DEFAULT_METHOD)
    assert all(isinstance(maps, heatmaps.Heatmaps) for maps in shown.values()), shown

    evaluation = EvaluationSet(["x"], ["reference"], xrays[:1], [""], [], {})
    rows = [Row(vid, vid, "model") for vid in FAMILIES]
    predictions = {vid: [CAPTION] for vid in FAMILIES}
    (panel,) = finding_word_overlays(captioners, evaluation, predictions, rows, 1, heatmaps.DEFAULT_METHOD)
    assert {vid: [word for word, _ in panel[vid]] for vid in FAMILIES} == dict.fromkeys(FAMILIES, ["effusion", "cardiomegaly"])


def test_the_caption_cli_says_the_dtype_in_its_rows_and_heatmap_files(dtype, cxr_image, tmp_path, capsys):
    """`CXRCAP_DTYPE=bfloat16 python -m cxrcap caption X --tiny-random --heatmaps OUT --json`"""
    assert main(["caption", str(cxr_image), "--tiny-random", "--max-new-tokens", "6", "--heatmaps", str(tmp_path),
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    name = str(dtype).removeprefix("torch.")
    assert [row["variant"] for row in rows] == list(VARIANT_IDS)
    assert all(row["dtype"] == name and row["heatmaps"] and row["heatmaps_error"] is None for row in rows)
    for variant_id in VARIANT_IDS:
        written = json.loads((tmp_path / f"{cxr_image.stem}-{variant_id}.json").read_text())
        assert written["dtype"] == name and written["method"] == heatmaps.DEFAULT_METHOD


def test_the_reports_batched_generation_in_16_bit(dtype, xrays):
    captioners = build_captioners(VARIANT_IDS, tiny_random=True, extra_model="tiny")
    predictions, rows = generate_predictions(captioners, xrays, SHORT, batch_size=2)  # a full batch and one more
    assert [row.name for row in rows] == [*VARIANT_IDS, "extra"] and all(row.available for row in rows)
    assert all(len(predictions[row.name]) == len(xrays) for row in rows)
    assert all(loaded_in(captioner, dtype) for captioner in captioners.values())


def test_the_example_cache_in_16_bit(dtype, xrays):
    captioners = build_captioners(FAMILIES, tiny_random=True)
    images = {image_digest(image): image for image in xrays[:2]}
    for batched in (True, False):  # a GPU's one batch per variant, a CPU's image by image
        cache = ExampleCache()
        assert caption_examples(cache, images, captioners, SHORT, batched=batched) == len(images) * len(FAMILIES)
        for digest in images:
            assert set(cache.lookup(digest, captioners, SHORT)) == set(FAMILIES)
        fp32 = {vid: Captioner(vid, captioner.source, dtype=torch.float32) for vid, captioner in captioners.items()}
        assert cache.lookup(next(iter(images)), fp32, SHORT) == {}  # another dtype's captions are never served


def test_finetunes_validation_captions_in_16_bit_reuse_one_copy(dtype, tiny_sources, cxr_examples_dir, tmp_path,
                                                                monkeypatch):
    """Validation captions come from the training weights in the app's precision, every epoch from the
    same copy (on a GPU a fresh model per evaluation would cost its building and its memory each time)."""
    from transformers import GitForCausalLM

    from finetune.__main__ import main as finetune

    generating = []
    plain_generate = GitForCausalLM.generate

    def recording_generate(model, *args, **kwargs):
        generating.append(model)  # kept: distinct ids mean distinct models
        return plain_generate(model, *args, **kwargs)

    monkeypatch.setattr(GitForCausalLM, "generate", recording_generate)
    out = tmp_path / "ft"
    assert finetune(["--family", "git", "--data", str(cxr_examples_dir), "--base-model", tiny_sources["git-base"],
                     "--output-dir", str(out), "--max-train-samples", "2", "--max-eval-samples", "2",
                     "--num-train-epochs", "2", "--per-device-train-batch-size", "2",
                     "--gradient-accumulation-steps", "1", "--eval-max-new-tokens", "4"]) == 0
    assert generating and {model.dtype for model in generating} == {dtype}
    assert len({id(model) for model in generating}) == 1
    log = json.loads((out / "training_log.json").read_text())
    assert len(log["evaluations"]) == 2 and log["validation_captions_dtype"] == str(dtype).removeprefix("torch.")
