"""The captioner: captions equal to the naive generate(), streamed in completion order, int8 opt-in."""

import pytest
import torch

from cxrcap.captioner import MODEL_CLASSES, Captioner, DecodeSettings, VariantUnavailable, stream_captions, warm_up
from cxrcap.images import load_image
from cxrcap.preprocessing import load_processor
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


def test_variants_with_the_same_processor_share_the_preprocessing(captioners, xrays, monkeypatch):
    calls = []
    for variant_id, captioner in captioners.items():
        real = captioner.preprocess
        monkeypatch.setattr(captioner, "preprocess", lambda images, real=real, vid=variant_id: calls.append(vid) or real(images))
    assert captioners["git-base"].preprocessing_key == captioners["git-base-ft"].preprocessing_key
    assert captioners["git-base"].preprocessing_key != captioners["blip-base"].preprocessing_key
    list(stream_captions(captioners, xrays[1], DecodeSettings(max_new_tokens=5)))
    assert sorted(VARIANTS[vid].family for vid in calls) == ["blip", "git"]  # one pre-processing per family


def test_cards_arrive_in_completion_order_and_a_broken_variant_does_not_stop_the_others(tiny_sources, xrays, tmp_path):
    # The slow variant comes first in the request; the broken one (an empty folder) fails at once.
    captioners = {"git-base": Captioner("git-base", tiny_sources["git-base"]), "blip-base": Captioner("blip-base", str(tmp_path))}
    results = list(stream_captions(captioners, xrays[0], DecodeSettings(max_new_tokens=64), workers=2))
    assert [r.variant_id for r in results] == ["blip-base", "git-base"]
    assert results[0].caption is None and "no readable model config" in results[0].error
    assert results[1].error is None and results[1].caption
    with pytest.raises(VariantUnavailable):
        captioners["blip-base"].load()  # remembered, not retried


@pytest.mark.parametrize("workers", [2, 1])
def test_a_variant_that_fails_while_captioning_gets_an_error_card_and_the_others_still_caption(tiny_sources, xrays, monkeypatch, workers):
    captioners = {vid: Captioner(vid, tiny_sources[vid]) for vid in ("git-base", "blip-base")}

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory\nsecond line")

    monkeypatch.setattr(captioners["git-base"], "generate_ids", out_of_memory)
    results = {r.variant_id: r for r in stream_captions(captioners, xrays[0], DecodeSettings(max_new_tokens=5), workers=workers)}
    assert results["git-base"].caption is None
    assert results["git-base"].error == "captioning failed (RuntimeError: DefaultCPUAllocator: can't allocate memory)"
    assert results["blip-base"].error is None and results["blip-base"].caption


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


def test_warm_up_loads_each_model_and_reports_the_unavailable(tiny_sources, tmp_path):
    captioners = {"git-base-ft": Captioner("git-base-ft", tiny_sources["git-base-ft"]), "blip-base": Captioner("blip-base", str(tmp_path))}
    assert not captioners["git-base-ft"].is_loaded
    results = {r.variant_id: r for r in warm_up(captioners)}
    assert captioners["git-base-ft"].is_loaded and results["git-base-ft"].error is None
    assert "no readable model config" in results["blip-base"].error


@pytest.mark.parametrize("settings", [dict(num_beams=0), dict(num_beams=9), dict(max_new_tokens=0), dict(max_new_tokens=129)])
def test_decode_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        DecodeSettings(**settings)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_workers_setting_is_refused_with_a_clear_message(captioners, xrays, monkeypatch, value):
    monkeypatch.setenv("CXRCAP_WORKERS", value)
    with pytest.raises(ValueError, match="CXRCAP_WORKERS must be a whole number"):
        list(stream_captions(captioners, xrays[0]))


@pytest.mark.parametrize("source", ["/no/such/checkpoint", "./runs/git-ft", "~/missing", "runs/git/ft"])
def test_a_mistyped_folder_is_named_as_a_folder_not_a_hub_id(source):
    with pytest.raises(VariantUnavailable, match=f"the folder '{source}' does not exist"):
        Captioner("git-base", source).load()
