"""Tiny random-weight variants mirror the real ones and caption real X-rays."""

import json
from pathlib import Path

import pytest
import torch
from transformers import BlipConfig, GitConfig

from cxrcap.captioner import MODEL_CLASSES, Captioner, DecodeSettings
from cxrcap.images import load_image
from cxrcap.tiny import VOCAB_FILE, random_variant, train_vocab
from cxrcap.variants import VARIANT_IDS


def test_vocab_is_reproducible_from_the_roco_captions(roco_dir, tmp_path):
    rebuilt = train_vocab(roco_dir, tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens = VOCAB_FILE.read_text(encoding="utf-8").splitlines()
    assert len(rebuilt) == len(tokens) == 2000
    # WordPiece training breaks near-ties through a randomly seeded hash map: a token or two may differ.
    assert len(set(rebuilt) ^ set(tokens)) <= 10
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"chest", "pneumothorax", "radiograph"} <= set(tokens)


@pytest.mark.parametrize(
    "variant_id, model_type, image_size",
    [("git-base", "git", 224), ("git-base-ft", "git", 224), ("blip-base", "blip", 384), ("blip-base-ft", "blip", 384)],
)
def test_folders_use_the_hub_layout_and_the_real_image_sizes(tiny_sources, variant_id, model_type, image_size):
    folder = Path(tiny_sources[variant_id])
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == model_type
    assert config["vision_config"]["image_size"] == image_size
    assert config["vision_config"]["patch_size"] == 16


def test_each_tiny_variant_captions_a_real_xray(tiny_sources, cxr_image):
    image = load_image(cxr_image)
    captions = {}
    for variant_id in VARIANT_IDS:
        caption, seconds = Captioner(variant_id, tiny_sources[variant_id], untrained=True).caption_one(image)
        assert caption.strip() and seconds > 0
        captions[variant_id] = caption
    # Different seeds: base and fine-tuned tiny variants must not be the same model.
    assert captions["git-base"] != captions["git-base-ft"]
    assert captions["blip-base"] != captions["blip-base-ft"]


@pytest.mark.parametrize("variant_id", VARIANT_IDS)
def test_batch_equals_single_and_beam_search_works(tiny_sources, cxr_examples_dir, variant_id):
    images = [load_image(p) for p in sorted((cxr_examples_dir / "images").glob("*.jpg"))[:3]]
    captioner = Captioner(variant_id, tiny_sources[variant_id])
    short = DecodeSettings(max_new_tokens=12)
    assert captioner.caption(images, short) == [captioner.caption([image], short)[0] for image in images]
    beams = captioner.caption(images[:2], DecodeSettings(num_beams=3, max_new_tokens=12))
    assert len(beams) == 2 and all(text.strip() for text in beams)


def test_tiny_build_is_cached(tiny_sources):
    from cxrcap.tiny import tiny_sources as build_again

    before = {vid: Path(src, "model.safetensors").stat().st_mtime_ns for vid, src in tiny_sources.items()}
    assert build_again() == tiny_sources
    assert {vid: Path(src, "model.safetensors").stat().st_mtime_ns for vid, src in tiny_sources.items()} == before


@pytest.mark.parametrize(
    "variant_id, real_config, parameters, vocab_size",
    [("git-base", GitConfig, 176.6e6, 30522), ("blip-base-ft", BlipConfig, 224.0e6, 30524)],
)
def test_base_size_variants_have_the_real_models_shapes(variant_id, real_config, parameters, vocab_size):
    # What the speed benchmarks time: every weight shaped as in GitConfig() / BlipConfig(), the
    # defaults that are git-base's and blip-image-captioning-base's. Built on the meta device:
    # shapes only, no memory.
    with torch.device("meta"):
        processor, model = random_variant(variant_id, base_size=True)
        real = MODEL_CLASSES[model.config.model_type](real_config())
    assert {name: weight.shape for name, weight in model.state_dict().items()} == {
        name: weight.shape for name, weight in real.state_dict().items()
    }
    assert sum(weight.numel() for weight in model.parameters()) == pytest.approx(parameters, rel=1e-3)
    assert len(processor.tokenizer) == vocab_size  # BERT's 30,522 (+ BLIP's [DEC] and [ENC])
