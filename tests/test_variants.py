"""The registry, source overrides, and what happens when a variant cannot load."""

import pytest
from transformers import BlipForConditionalGeneration, BlipProcessor, GitForCausalLM, GitProcessor

from processes import run_python

from cxrcap.captioner import MODEL_CLASSES, Captioner, VariantUnavailable
from cxrcap.lineup import build_captioners
from cxrcap.variants import VARIANT_IDS, VARIANTS, get_variant, parse_variant_ids


def test_ids_sources_and_labels_are_the_contract():
    assert VARIANT_IDS == ("git-base", "git-base-ft", "blip-base", "blip-base-ft")
    assert {v.id: v.default_source for v in VARIANTS.values()} == {
        "git-base": "microsoft/git-base",
        "git-base-ft": "checkpoints/git-base-ft",
        "blip-base": "Salesforce/blip-image-captioning-base",
        "blip-base-ft": "checkpoints/blip-base-ft",
        "extra": "",  # the optional fifth slot: off until a model is named
    }
    assert [v.label for v in VARIANTS.values()] == ["GIT base", "GIT fine-tuned", "BLIP base", "BLIP fine-tuned", "Extra model"]
    assert VARIANTS["extra"].env_var == "CXRCAP_EXTRA_MODEL" and VARIANTS["git-base-ft"].env_var == "CXRCAP_SOURCE_GIT_BASE_FT"
    assert parse_variant_ids(None) == list(VARIANT_IDS)  # the four by default
    assert MODEL_CLASSES == {"git": GitForCausalLM, "blip": BlipForConditionalGeneration}


@pytest.mark.parametrize(
    "variant_id, model_class, processor_class",
    [
        ("git-base", GitForCausalLM, GitProcessor),
        ("git-base-ft", GitForCausalLM, GitProcessor),
        ("blip-base", BlipForConditionalGeneration, BlipProcessor),
        ("blip-base-ft", BlipForConditionalGeneration, BlipProcessor),
    ],
)
def test_each_variant_loads_its_family_through_the_real_path(tiny_sources, variant_id, model_class, processor_class):
    captioner = Captioner(variant_id, tiny_sources[variant_id])
    captioner.load()
    processor, model = captioner._loaded
    assert type(model) is model_class
    assert type(processor) is processor_class


def test_environment_variable_overrides_the_source(monkeypatch):
    variant = get_variant("git-base-ft")
    assert variant.env_var == "CXRCAP_SOURCE_GIT_BASE_FT"
    monkeypatch.setenv("CXRCAP_SOURCE_GIT_BASE_FT", "someone/git-chest")
    assert variant.source == "someone/git-chest"
    assert Captioner("git-base-ft").source == "someone/git-chest"
    monkeypatch.setenv("CXRCAP_SOURCE_GIT_BASE_FT", "  ")
    assert variant.source == "checkpoints/git-base-ft"


def test_unknown_variant_ids_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown variant 'gpt-4'.*git-base"):
        parse_variant_ids("git-base,gpt-4")
    assert parse_variant_ids(None) == list(VARIANT_IDS)
    assert parse_variant_ids(" blip-base , git-base ") == ["blip-base", "git-base"]


def test_missing_finetuned_folder_says_which_command_makes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VariantUnavailable) as caught:
        Captioner("git-base-ft").load()
    message = str(caught.value)
    assert "checkpoints/git-base-ft" in message and "does not exist" in message
    assert "python -m finetune --family git" in message and "CXRCAP_SOURCE_GIT_BASE_FT" in message


def test_hub_model_offline_and_not_cached_gives_the_clear_error(tmp_path):
    code = """
from huggingface_hub import constants
from cxrcap.captioner import Captioner, VariantUnavailable
print("offline", constants.HF_HUB_OFFLINE, "cache", constants.HF_HUB_CACHE)
try:
    Captioner("blip-base").load()
except VariantUnavailable as error:
    print(error)
"""
    done = run_python("-c", code, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"offline True cache {tmp_path}\n" in done.stdout  # the hub library saw both settings
    assert "not in the local cache and the Hugging Face hub cannot be reached" in done.stdout


def test_folder_of_the_wrong_model_type_is_refused(tiny_sources):
    with pytest.raises(VariantUnavailable, match="holds a 'blip' model, not a 'git' model"):
        Captioner("git-base", tiny_sources["blip-base"]).load()


def test_corrupt_weights_give_the_clear_error_and_others_keep_working(tiny_sources, tmp_path, cxr_image):
    import shutil

    from cxrcap.images import load_image

    broken = tmp_path / "broken"
    shutil.copytree(tiny_sources["blip-base-ft"], broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    captioners = {
        "blip-base-ft": Captioner("blip-base-ft", str(broken)),
        "blip-base": Captioner("blip-base", tiny_sources["blip-base"]),
    }
    with pytest.raises(VariantUnavailable, match="damaged or incomplete weights file"):
        captioners["blip-base-ft"].load()
    with pytest.raises(VariantUnavailable):  # remembered, not retried
        captioners["blip-base-ft"].load()
    caption, seconds = captioners["blip-base"].caption_one(load_image(cxr_image))
    assert caption and seconds > 0


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(VariantUnavailable, match="has no readable model config"):
        Captioner("git-base", str(tmp_path)).load()


def test_build_captioners_tiny_random_marks_every_variant_untrained(tiny_sources):
    captioners = build_captioners(list(VARIANT_IDS), tiny_random=True)
    assert all(c.untrained for c in captioners.values())
    assert {vid: c.source for vid, c in captioners.items()} == tiny_sources
    assert not any(c.untrained for c in build_captioners(["git-base"]).values())

