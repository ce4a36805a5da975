"""Heatmaps on the tiny variants of both families: shapes, a hand computation, range, determinism,
beam search, and the processor's geometry undone."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import CLIPImageProcessor

from cxrcap.captioner import Captioner, DecodeSettings
from cxrcap.extra import ExtraCaptioner
from cxrcap import heatmaps
from cxrcap.heatmaps import (
    METHODS,
    RAW_LAYERS,
    HeatmapsUnavailable,
    compute_heatmaps,
    finding_word_indices,
    group_word_pieces,
    heat_layer,
    input_geometry,
)
from cxrcap.images import load_image
from cxrcap.scheduler import stream_captions

FAMILIES = ["git-base", "blip-base"]
CAPTION = "left pleural effusion with cardiomegaly"


@pytest.fixture(scope="module")
def captioners(tiny_sources) -> dict[str, Captioner]:
    return {vid: Captioner(vid, tiny_sources[vid], untrained=True) for vid in FAMILIES}


@pytest.fixture(scope="module")
def xray(cxr_image) -> Image.Image:
    return load_image(cxr_image)


@pytest.mark.parametrize("variant_id", FAMILIES)
def test_grid_matches_the_processor_and_the_patch_size(captioners, xray, variant_id):
    captioner = captioners[variant_id]
    maps = compute_heatmaps(captioner, xray, CAPTION, "attention")
    height, width = captioner.preprocess([xray]).shape[-2:]
    patch = captioner.model.config.vision_config.patch_size
    assert maps.grid == (height // patch, width // patch)
    assert maps.token_maps.shape == (len(maps.tokens), *maps.grid)
    assert maps.word_maps.shape == (len(maps.words), *maps.grid)
    assert " ".join(maps.words) == "left pleural effusion with cardiomegaly"


def _plain_forward_attention(captioner: Captioner, image: Image.Image, caption: str) -> np.ndarray:
    """Raw attention by hand: one plain forward pass with output_attentions=True, the text rows
    predicting each token, the mean over heads of the last RAW_LAYERS layers, CLS dropped."""
    model, tokenizer = captioner.model, captioner.processor.tokenizer
    token_ids = tokenizer(caption, add_special_tokens=False).input_ids
    pixel_values = captioner.preprocess([image])
    with torch.no_grad():
        if captioner.variant.family == "git":
            input_ids = torch.tensor([[model.config.bos_token_id, *token_ids]])
            attentions = model(input_ids=input_ids, pixel_values=pixel_values, output_attentions=True).attentions
            n_image = attentions[0].shape[-1] - input_ids.shape[1]
            rows, columns = slice(n_image, n_image + len(token_ids)), slice(1, n_image)
        else:
            input_ids = torch.tensor([[model.config.text_config.bos_token_id, *token_ids]])
            image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
            attentions = model.text_decoder(
                input_ids=input_ids, encoder_hidden_states=image_embeds, output_attentions=True
            ).cross_attentions
            rows, columns = slice(0, len(token_ids)), slice(1, None)
    mean = torch.stack([layer[0] for layer in attentions[-RAW_LAYERS:]]).mean(dim=(0, 1))
    maps = mean[rows, columns].numpy()
    side = int(round(maps.shape[1] ** 0.5))
    maps = maps.reshape(len(token_ids), side, side)
    return maps / maps.max(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize("variant_id", FAMILIES)
def test_raw_attention_equals_a_hand_computation_from_a_plain_forward(captioners, xray, variant_id):
    maps = compute_heatmaps(captioners[variant_id], xray, CAPTION, "attention")
    np.testing.assert_allclose(maps.token_maps, _plain_forward_attention(captioners[variant_id], xray, CAPTION),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("variant_id", FAMILIES)
def test_maps_are_in_zero_one_with_maximum_one_and_deterministic(captioners, xray, variant_id, method):
    first = compute_heatmaps(captioners[variant_id], xray, CAPTION, method)
    second = compute_heatmaps(captioners[variant_id], xray, CAPTION, method)
    for maps in (first.token_maps, first.word_maps):
        assert maps.min() >= 0.0 and maps.max() <= 1.0
        assert np.allclose(maps.max(axis=(1, 2)), 1.0)  # random weights still look somewhere
    np.testing.assert_array_equal(first.word_maps, second.word_maps)
    # a word is the mean of its word pieces, renormalised
    for word, indices in zip(first.word_maps, first.word_tokens):
        mean = first.token_maps[indices].mean(axis=0)
        np.testing.assert_allclose(word, mean / mean.max(), rtol=1e-5)


@pytest.mark.parametrize("variant_id", FAMILIES)
def test_relevance_in_causal_chunks_equals_one_pass_over_the_whole_caption(captioners, xray, variant_id, monkeypatch):
    caption = "left pleural effusion with cardiomegaly and a small right apical pneumothorax"
    chunked = compute_heatmaps(captioners[variant_id], xray, caption, "relevance")
    assert len(chunked.tokens) > heatmaps.RELEVANCE_CHUNK  # more than one chunk
    monkeypatch.setattr(heatmaps, "RELEVANCE_CHUNK", 1000)
    whole = compute_heatmaps(captioners[variant_id], xray, caption, "relevance")
    np.testing.assert_allclose(chunked.token_maps, whole.token_maps, atol=1e-5)


def _blip_relevance_by_the_papers_rules(captioner: Captioner, image: Image.Image, caption: str) -> np.ndarray:
    """Chefer et al. (2021) by hand, one target at a time, from a plain forward pass and its logits:
    R_tt = I, R_ti = 0; per decoder layer R_tt += Ā_s·R_tt, R_ti += Ā_s·R_ti (eq. 6-7), then
    R_ti += (R̄_tt)ᵀ·Ā_c·R̄_ii (eq. 10) with R̄_ii = I (the ViT's mixing taken as the identity)."""
    model, tokenizer = captioner.model, captioner.processor.tokenizer
    token_ids = tokenizer(caption, add_special_tokens=False).input_ids
    input_ids = torch.tensor([[model.config.text_config.bos_token_id, *token_ids]])
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=captioner.preprocess([image])).last_hidden_state
    n, maps = input_ids.shape[1], []
    eye = torch.eye(n)

    def head_mean(attention, gradient):  # eq. 5
        return (gradient * attention)[0].clamp(min=0).mean(dim=0)

    def residual_normalised(relevance):  # eq. 8-9: R - I with rows summing to 1 (empty rows stay 0), plus I
        mixed = relevance - eye
        sums = mixed.sum(dim=1, keepdim=True)
        return torch.where(sums > 0, mixed / sums.clamp(min=1e-12), mixed) + eye

    for t in range(len(token_ids)):
        output = model.text_decoder(input_ids=input_ids, encoder_hidden_states=image_embeds, output_attentions=True)
        attentions = [*output.attentions, *output.cross_attentions]
        gradients = torch.autograd.grad(output.logits[0, t, token_ids[t]], attentions)
        layers = len(output.attentions)
        r_tt, r_ti = eye.clone(), torch.zeros(n, image_embeds.shape[1])
        for layer in range(layers):
            a_self = head_mean(attentions[layer].detach(), gradients[layer])
            r_tt, r_ti = r_tt + a_self @ r_tt, r_ti + a_self @ r_ti
            a_cross = head_mean(attentions[layers + layer].detach(), gradients[layers + layer])
            r_ti = r_ti + residual_normalised(r_tt).T @ a_cross  # @ R̄_ii = I
        maps.append(r_ti[t, 1:].numpy())
    maps = np.clip(np.stack(maps), 0, None)
    side = int(round(maps.shape[1] ** 0.5))
    return (maps / maps.max(axis=1, keepdims=True)).reshape(len(token_ids), side, side)


def test_blips_relevance_follows_the_papers_rules_computed_by_hand(captioners, xray):
    maps = compute_heatmaps(captioners["blip-base"], xray, CAPTION, "relevance")
    np.testing.assert_allclose(maps.token_maps, _blip_relevance_by_the_papers_rules(captioners["blip-base"], xray, CAPTION),
                               atol=1e-5)


def test_relevance_differs_from_raw_attention(captioners, xray):
    relevance = compute_heatmaps(captioners["blip-base"], xray, CAPTION, "relevance")
    attention = compute_heatmaps(captioners["blip-base"], xray, CAPTION, "attention")
    assert not np.allclose(relevance.token_maps, attention.token_maps)


@pytest.mark.parametrize("variant_id", FAMILIES)
def test_a_beam_search_caption_has_a_map_per_word(captioners, xray, variant_id):
    captioner = captioners[variant_id]
    (caption,) = captioner.caption([xray], DecodeSettings(num_beams=3, max_new_tokens=12))
    maps = compute_heatmaps(captioner, xray, caption)
    assert maps.tokens == captioner.processor.tokenizer.tokenize(caption)
    assert len(maps.words) == len(maps.word_maps) >= 1
    payload = maps.to_json()
    assert set(payload) == {"variant", "method", "dtype", "grid", "tokens", "words", "maps"}
    assert payload["method"] == "relevance" and payload["grid"] == list(maps.grid) and payload["dtype"] == "float32"
    assert np.array(payload["maps"]).shape == (len(payload["words"]), *maps.grid)


@pytest.mark.parametrize("variant_id", FAMILIES)
def test_maps_are_of_the_generated_tokens_not_the_text_tokenised_again(captioners, xray, variant_id):
    captioner = captioners[variant_id]
    tokenizer = captioner.processor.tokenizer
    (result,) = stream_captions({variant_id: captioner}, xray, DecodeSettings(max_new_tokens=12))
    assert result.token_ids and tokenizer.decode(result.token_ids).strip() == result.caption
    maps = compute_heatmaps(captioner, xray, result.caption, "attention", result.token_ids)
    assert maps.tokens == tokenizer.convert_ids_to_tokens(list(result.token_ids))
    # ids whose decoded text tokenises into other pieces (as an untrained model's often do)
    ids = tokenizer.convert_tokens_to_ids(["##1", "left"])
    text = tokenizer.decode(ids)
    assert tokenizer(text, add_special_tokens=False).input_ids != ids
    for method in METHODS:
        assert compute_heatmaps(captioner, xray, text, method, ids).tokens == ["##1", "left"]


def test_what_cannot_have_maps_says_why(captioners, xray, tiny_sources):
    with pytest.raises(HeatmapsUnavailable, match="empty"):
        compute_heatmaps(captioners["git-base"], xray, "   ")
    int8 = Captioner("git-base", tiny_sources["git-base"], untrained=True, quantize_int8=True)
    with pytest.raises(HeatmapsUnavailable, match="int8"):
        compute_heatmaps(int8, xray, CAPTION, "relevance")
    assert compute_heatmaps(int8, xray, CAPTION, "attention").word_maps.shape[0] == 5
    extra = ExtraCaptioner.named("tiny", tiny_random=True)  # the fifth slot: a family without maps
    with pytest.raises(HeatmapsUnavailable, match="not implemented for vlm models"):
        compute_heatmaps(extra, xray, CAPTION)
    with pytest.raises(ValueError, match="unknown heatmap method"):
        compute_heatmaps(captioners["git-base"], xray, CAPTION, "saliency")


def test_a_failure_inside_the_maps_is_a_message_in_the_view_the_report_and_the_cli(captioners, xray, monkeypatch,
                                                                                  caplog, tmp_path):
    """Maps come after the captions: whatever goes wrong computing one variant's (here GIT's, as
    16-bit once did), the view, the report and the CLI say so and go on, and the log has the traceback."""
    from pathlib import Path

    from cxrcap.cli.caption import write_heatmaps
    from cxrcap.app.comparison import Comparison
    from cxrcap.app.heatmap_view import HeatmapView
    from cxrcap.captioner import CaptionResult
    from cxrcap.report import EvaluationSet, Row, finding_word_overlays

    def broken(*args):
        raise RuntimeError("expected scalar type BFloat16 but found Float")

    monkeypatch.setitem(heatmaps._TOKEN_MAPS, "git", broken)
    reason = "GIT base: computing them failed (RuntimeError: expected scalar type BFloat16 but found Float)"
    comparison = Comparison("", DecodeSettings())
    for variant_id in FAMILIES:
        comparison.add(CaptionResult(variant_id, CAPTION, 0.1))
    shown = HeatmapView(lambda int8: captioners).maps_for(xray, comparison, "relevance")
    assert shown["git-base"] == f"no heatmaps: {reason}" and isinstance(shown["blip-base"], heatmaps.Heatmaps)

    evaluation = EvaluationSet(["x"], ["reference"], [xray], [""], [], {})
    rows = [Row(vid, vid, "model") for vid in FAMILIES]
    (panel,) = finding_word_overlays(captioners, evaluation, dict.fromkeys(FAMILIES, [CAPTION]), rows, 1, "relevance")
    assert panel["git-base"] == f"no heatmaps: {reason}" and [word for word, _ in panel["blip-base"]] == ["effusion", "cardiomegaly"]

    row = write_heatmaps(tmp_path, Path("x.png"), xray, captioners["git-base"], CaptionResult("git-base", CAPTION, 0.1),
                         "relevance")
    assert row == {"heatmaps": None, "heatmaps_error": reason}
    failures = [record for record in caplog.records if record.name == "cxrcap.heatmaps"]
    assert len(failures) == 3 and all(record.exc_info for record in failures)


def test_word_pieces_group_into_words_and_findings_are_found():
    assert group_word_pieces(["card", "##iom", "##egaly", "left"]) == (["cardiomegaly", "left"], [[0, 1, 2], [3]])
    assert finding_word_indices(["left", "effusion", "and", "cardiomegaly", "effusion"]) == [1, 3]


def _brightest_patch(pixel_values: torch.Tensor, patch: int) -> tuple[int, int]:
    brightness = torch.nn.functional.avg_pool2d(pixel_values[0].mean(0, keepdim=True), patch)[0]
    row, col = divmod(int(brightness.argmax()), brightness.shape[1])
    return row, col


@pytest.mark.parametrize("processor", [
    CLIPImageProcessor(),  # git-base: shortest edge 224, centre crop 224
    CLIPImageProcessor(size={"height": 224, "width": 224}, do_center_crop=False),  # square resize, no crop
    CLIPImageProcessor(size={"height": 384, "width": 384}, do_center_crop=False),  # blip-base's geometry
], ids=["centre-crop", "square-224", "square-384"])
@pytest.mark.parametrize("size", [(640, 400), (300, 500)])
def test_a_patch_lands_on_the_pixels_it_came_from(processor, size):
    """A white square on a wide or tall image: the patch the processor put it in, mapped back
    through the geometry, covers the square."""
    width, height = size
    image = Image.new("RGB", size)
    box = (int(width * 0.40), int(height * 0.30), int(width * 0.40) + 48, int(height * 0.30) + 48)
    ImageDraw.Draw(image).rectangle(box, fill="white")
    geometry = input_geometry(processor, size, patch_size=16)
    pixel_values = processor(images=[image], return_tensors="pt").pixel_values
    assert geometry.grid == (pixel_values.shape[-2] // 16, pixel_values.shape[-1] // 16)
    one_hot = np.zeros(geometry.grid, dtype=np.float32)
    one_hot[_brightest_patch(pixel_values, 16)] = 1.0
    layer = np.nan_to_num(heat_layer(one_hot, geometry, size))
    y, x = np.unravel_index(layer.argmax(), layer.shape)
    assert box[0] - 8 <= x <= box[2] + 8 and box[1] - 8 <= y <= box[3] + 8


def test_the_centre_crop_leaves_the_sides_of_a_wide_image_unmapped():
    geometry = input_geometry(CLIPImageProcessor(), (640, 400), patch_size=16)
    assert geometry.box == pytest.approx((120 / 640, 0.0, 520 / 640, 1.0), abs=1 / 640)
    layer = heat_layer(np.ones(geometry.grid, dtype=np.float32), geometry, (640, 400))
    assert np.isnan(layer[:, :110]).all() and np.isnan(layer[:, 530:]).all() and not np.isnan(layer[:, 130:510]).any()
