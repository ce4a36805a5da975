"""The captioner: captions equal to the naive generate(), streamed or batched, int8 opt-in (who waits for whom: test_scheduler.py)."""

import pytest
import torch

from cxrcap.captioner import MODEL_CLASSES, Captioner, DecodeSettings, VariantUnavailable
from cxrcap.images import load_image
from cxrcap.preprocessing import load_processor
from cxrcap.scheduler import stream_captions
from cxrcap.variants import VARIANT_IDS, VARIANTS


@pytest.fixture(scope="module")
def captioners(tiny_sources) -> dict[str, Captioner]:
    return {vid: Captioner(vid, tiny_sources[vid], untrained=True) for vid in VARIANT_IDS}


@pytest.fixture(scope="module")
def xrays(cxr_examples_dir):
    return [load_image(path) for path in sorted((cxr_examples_dir / "images").glob("*.jpg"))[:3]]


def naive_captions(source: str, variant_id: str, images, settings: DecodeSettings) -> list[str]:
    """The captioner before the speed work: a freshly loaded model, its whole-image processor, generate()."""
    processor = load_processor(source)
    model = MODEL_CLASSES[VARIANTS[variant_id].family].from_pretrained(source).eval()
    with torch.inference_mode():
        ids = model.generate(
            pixel_values=processor(images=images, return_tensors="pt").pixel_values,
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            do_sample=False,
        )
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


@pytest.mark.parametrize("workers", [2, 1])
def test_streamed_captions_equal_the_naive_generate(captioners, tiny_sources, xrays, workers):
    settings = DecodeSettings(max_new_tokens=20)
    results = list(stream_captions(captioners, xrays[0], settings, workers=workers))
    assert sorted(r.variant_id for r in results) == sorted(VARIANT_IDS)
    for result in results:
        assert result.error is None and result.untrained and result.seconds > 0
        assert [result.caption] == naive_captions(tiny_sources[result.variant_id], result.variant_id, xrays[:1], settings)


@pytest.mark.parametrize("variant_id", ["git-base", "blip-base"])
def test_batches_and_beam_search_equal_the_naive_generate(captioners, tiny_sources, xrays, variant_id):
    for settings in (DecodeSettings(max_new_tokens=12), DecodeSettings(num_beams=3, max_new_tokens=8)):
        expected = naive_captions(tiny_sources[variant_id], variant_id, xrays, settings)
        assert captioners[variant_id].caption(xrays, settings) == expected


def test_int8_is_opt_in_and_still_captions(tiny_sources, xrays, monkeypatch):
    def quantized_layers(captioner):
        return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in captioner.model.modules())

    assert quantized_layers(Captioner("blip-base", tiny_sources["blip-base"])) == 0
    int8 = Captioner("blip-base", tiny_sources["blip-base"], quantize_int8=True)
    assert quantized_layers(int8) > 0
    assert all(int8.caption(xrays[:2], DecodeSettings(max_new_tokens=8)))
    monkeypatch.setenv("CXRCAP_INT8", "1")
    assert Captioner("git-base", tiny_sources["git-base"]).quantize_int8
    with pytest.raises(ValueError, match="CPU only"):
        Captioner("git-base", tiny_sources["git-base"], device=torch.device("cuda"), quantize_int8=True)


@pytest.mark.parametrize("settings", [dict(num_beams=0), dict(num_beams=9), dict(max_new_tokens=0), dict(max_new_tokens=129)])
def test_decode_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        DecodeSettings(**settings)


@pytest.mark.parametrize("source", ["/no/such/checkpoint", "./runs/git-ft", "~/missing", "runs/git/ft"])
def test_a_mistyped_folder_is_named_as_a_folder_not_a_hub_id(source):
    with pytest.raises(VariantUnavailable, match=f"the folder '{source}' does not exist"):
        Captioner("git-base", source).load()
