"""Checkpoints that would leave weights random are refused by name; sound ones load as before.

Each damaged checkpoint is a real copy of a tiny variant's folder with its safetensors file
edited (a tensor removed, renamed, reshaped, added) or cut short.
"""

import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from cxrcap.app.service import CaptionService
from cxrcap.captioner import MODEL_CLASSES, Captioner, DecodeSettings, VariantUnavailable
from cxrcap.images import load_image
from cxrcap.scheduler import stream_captions
from cxrcap.variants import VARIANTS
from cxrcap.weights import BrokenCheckpoint, load_weights, weights_left_random

SETTINGS = DecodeSettings(max_new_tokens=8)

# What each family ties, read from transformers 5.24's models and the released checkpoints:
# - GIT ties nothing. git-base's LM head `output` (weight and bias) is a weight of its own: the
#   original checkpoint's `textual.output.*` become `output.*` (models/git/convert_git_to_pytorch.py)
#   and GitConfig's tie_word_embeddings defaults to False. A checkpoint without it is refused.
# - BLIP ties its LM head to the word embeddings and the head's bias to the prediction bias, as
#   BERT does (BlipForConditionalGeneration._tied_weights_keys; BlipConfig's tie_word_embeddings
#   defaults to True and the converted Salesforce checkpoint keeps it): either one of each pair
#   may be absent from a checkpoint, not both.
# - Buffers: both families' `position_ids` (an arange built from the config) are non-persistent,
#   so no checkpoint is expected to hold them.
TIED = {
    "git": {},
    "blip": {
        "text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight",
        "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias",
    },
}
BUFFERS = {
    "git": {"git.embeddings.position_ids", "git.image_encoder.vision_model.embeddings.position_ids"},
    "blip": {"text_decoder.bert.embeddings.position_ids"},
}
BLIP_EMBEDDINGS = "text_decoder.bert.embeddings.word_embeddings.weight"
BLIP_HEAD = "text_decoder.cls.predictions.decoder.weight"


def damaged_copy(source: str, folder, edit) -> str:
    """A copy of the checkpoint folder `source` whose weights dict went through `edit`."""
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    edit(tensors)
    save_file(tensors, weights, metadata={"format": "pt"})
    return str(folder)


def truncated_copy(source: str, folder) -> str:
    """A copy whose safetensors file stops half-way, like an interrupted download."""
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return str(folder)


@pytest.fixture(scope="module")
def xray(cxr_image):
    return load_image(cxr_image)


@pytest.mark.parametrize("family", ["git", "blip"])
def test_each_family_ties_and_rebuilds_what_the_list_says(tiny_sources, family):
    variant_id = f"{family}-base"
    model = load_weights(MODEL_CLASSES[family], tiny_sources[variant_id])
    assert model.all_tied_weights_keys == TIED[family]
    buffers = {name for name, _ in model.named_buffers()}
    assert buffers == BUFFERS[family] and not buffers & set(model.state_dict())  # non-persistent


def test_a_checkpoint_without_word_embeddings_and_lm_head_is_refused_by_name(tiny_sources, tmp_path):
    def drop_embeddings_and_head(tensors):
        del tensors["git.embeddings.word_embeddings.weight"], tensors["output.weight"]

    broken = damaged_copy(tiny_sources["git-base-ft"], tmp_path / "git", drop_embeddings_and_head)
    with pytest.raises(VariantUnavailable) as caught:
        Captioner("git-base-ft", broken).load()
    message = str(caught.value)
    assert "does not hold 2 weight(s) the model needs, which would be left random" in message
    assert "git.embeddings.word_embeddings.weight, output.weight" in message
    assert "To fix: run `python -m finetune --family git`" in message


def test_blip_without_both_tied_weights_is_refused_but_either_one_is_enough(tiny_sources, tmp_path, xray):
    source = tiny_sources["blip-base-ft"]
    broken = damaged_copy(source, tmp_path / "none", lambda tensors: tensors.pop(BLIP_EMBEDDINGS))
    with pytest.raises(VariantUnavailable, match=f"does not hold 2 weight.*{BLIP_EMBEDDINGS}, {BLIP_HEAD}"):
        Captioner("blip-base-ft", broken).load()

    def keep_only_the_head(tensors):  # the tied pair stored under its other name
        tensors[BLIP_HEAD] = tensors.pop(BLIP_EMBEDDINGS)

    head_only = damaged_copy(source, tmp_path / "head", keep_only_the_head)
    expected = Captioner("blip-base-ft", source).caption([xray], SETTINGS)
    assert Captioner("blip-base-ft", head_only).caption([xray], SETTINGS) == expected


def test_a_weight_of_the_wrong_shape_is_refused_with_both_shapes(tiny_sources, tmp_path):
    key = "vision_model.encoder.layers.0.self_attn.qkv.weight"

    def reshape(tensors):
        tensors[key] = torch.zeros(96, 16)

    broken = damaged_copy(tiny_sources["blip-base"], tmp_path / "blip", reshape)
    with pytest.raises(VariantUnavailable, match=rf"does not hold 1 weight.*{key} \(checkpoint \(96, 16\), model \(96, 32\)\)"):
        Captioner("blip-base", broken).load()


@pytest.mark.parametrize("variant_id", ["git-base-ft", "blip-base-ft"])
def test_a_truncated_weights_file_is_refused_as_damaged(tiny_sources, tmp_path, variant_id):
    broken = truncated_copy(tiny_sources[variant_id], tmp_path / variant_id)
    with pytest.raises(VariantUnavailable, match="has a damaged or incomplete weights file .*interrupted download"):
        Captioner(variant_id, broken).load()


def test_unused_weights_are_logged_and_the_model_still_loads(tiny_sources, tmp_path, caplog, xray):
    source = tiny_sources["git-base"]
    extra = damaged_copy(source, tmp_path / "extra", lambda tensors: tensors.update(unused=torch.zeros(3)))
    with caplog.at_level(logging.WARNING, logger="cxrcap.weights"):
        captions = Captioner("git-base", extra).caption([xray], SETTINGS)
    assert "1 weight(s) in the checkpoint are not used by GitForCausalLM and were ignored: unused" in caplog.text
    assert captions == Captioner("git-base", source).caption([xray], SETTINGS)


def test_the_rule_counts_a_tied_weight_as_loaded_only_when_its_partner_is(tiny_sources):
    model = load_weights(MODEL_CLASSES["blip"], tiny_sources["blip-base"])
    assert weights_left_random(model, {BLIP_HEAD}) == []
    assert weights_left_random(model, {BLIP_EMBEDDINGS}) == []
    assert weights_left_random(model, {BLIP_HEAD, BLIP_EMBEDDINGS}) == [BLIP_EMBEDDINGS, BLIP_HEAD]
    assert weights_left_random(model, {"vision_model.post_layernorm.bias"}, [("a.b", (2,), (3,))]) == [
        "vision_model.post_layernorm.bias", "a.b (checkpoint (2,), model (3,))",
    ]  # fmt: skip
    git = load_weights(MODEL_CLASSES["git"], tiny_sources["git-base"])
    assert weights_left_random(git, {"output.weight"}) == ["output.weight"]  # GIT's head is its own


def test_load_weights_refuses_for_any_model_class(tiny_sources, tmp_path):
    from transformers import AutoModelForImageTextToText

    broken = damaged_copy(tiny_sources["blip-base"], tmp_path / "blip", lambda tensors: tensors.pop(BLIP_EMBEDDINGS))
    with pytest.raises(BrokenCheckpoint, match=BLIP_EMBEDDINGS):
        load_weights(AutoModelForImageTextToText, broken)


def test_damaged_variants_get_cards_saying_why_and_the_others_still_caption(tiny_sources, tmp_path, xray):
    def drop_embeddings(tensors):
        del tensors["git.embeddings.word_embeddings.weight"]

    sources = {
        "git-base": tiny_sources["git-base"],
        "git-base-ft": damaged_copy(tiny_sources["git-base-ft"], tmp_path / "git", drop_embeddings),
        "blip-base": tiny_sources["blip-base"],
        "blip-base-ft": truncated_copy(tiny_sources["blip-base-ft"], tmp_path / "blip"),
    }
    service = CaptionService(list(sources), tiny_random=True)
    for variant_id, captioner in service.captioners.items():
        captioner.source = sources[variant_id]
    comparison = list(service.compare(xray, "", 1, 5))[-1][0]
    results = {variant_id: outcome.result for variant_id, outcome in comparison.outcomes.items()}
    assert "git.embeddings.word_embeddings.weight" in results["git-base-ft"].error
    assert "damaged or incomplete weights file" in results["blip-base-ft"].error
    assert results["git-base-ft"].caption is None and results["blip-base-ft"].caption is None
    assert results["git-base"].caption and results["blip-base"].caption

    # stream_captions alone (the CLI's and report's path) gives the same outcome.
    captioners = {vid: Captioner(vid, source) for vid, source in sources.items()}
    streamed = {r.variant_id: r for r in stream_captions(captioners, xray, SETTINGS)}
    assert streamed["git-base-ft"].error.startswith(f"{VARIANTS['git-base-ft'].label} (git-base-ft) is unavailable")
    assert streamed["blip-base-ft"].caption is None and streamed["git-base"].caption and streamed["blip-base"].caption
