"""Tiny random-weight vision-language models for the fifth slot: real architectures, no download.

Three image-text-to-text architectures of transformers, each built in code with a real processor
(its image processor, a byte-level BPE tokenizer trained on ROCO captions, `assets/tiny-bpe.json`,
with the family's special tokens, and a chat template of the real models' shape). Where it matters
they behave as the real ones: the tokenizer adds BOS or not, and the template writes it or not, as
the family's real checkpoints do (Gemma 3 both, SmolVLM in its template only, LLaVA in its tokenizer
only), so a prompt reaches the model as it would reach a real one:

- `gemma3`   Gemma 3 (MedGemma's architecture): SigLIP vision tower, pooled image tokens;
- `idefics3` Idefics3 (SmolVLM's): image splitting into tiles plus a global view, pixel shuffle;
- `llava`    LLaVA 1.5: CLIP vision tower, an MLP projector into a Llama decoder.

They are written in the hub folder layout, with a model card (`README.md`), and load through the
same code as a hub id (`cxrcap.extra`). `--tiny-random --extra-model tiny` uses the Gemma 3 one;
`tiny-idefics3` and `tiny-llava` name the others. Their answers are noise by construction.

Regenerate the tokenizer with `python -m cxrcap.tiny_vlm --roco ../shared/data/roco`.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessorPil,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .cache import building, cache_root

BPE_FILE = Path(__file__).resolve().parent.parent / "assets" / "tiny-bpe.json"
BPE_VOCAB_SIZE = 1000
FORMAT_VERSION = "2"  # bump when the builders below change, so caches rebuild
TINY = "tiny"  # --extra-model tiny: the Gemma 3 one
ARCHITECTURES = ("gemma3", "idefics3", "llava")
LABELS = {
    "gemma3": "tiny random Gemma 3 (MedGemma's architecture)",
    "idefics3": "tiny random Idefics3 (SmolVLM's architecture)",
    "llava": "tiny random LLaVA 1.5",
}
# Small but structurally faithful: 2 layers, width 32; images smaller than the real ones'
# (224 px and less) so a caption takes well under a second on a CPU.
LAYERS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
DECODER = dict(LAYERS, num_key_value_heads=1, max_position_embeddings=512)
MODEL_CARD = """---
license: mit
tags: [image-text-to-text, cxrcap, random-weights]
---
# {label}

Random weights built by `cxrcap.tiny_vlm` for tests and the offline trial mode. Its answers are noise.
"""


def train_bpe(roco_dir: Path, out: Path = BPE_FILE, vocab_size: int = BPE_VOCAB_SIZE) -> Path:
    """Train a byte-level BPE tokenizer (GPT-2 style, as the real VLMs' are) on ROCO captions."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    captions = []
    for split in ("validation", "test"):
        for line in (roco_dir / split / "radiology" / "captions.txt").read_text(encoding="utf-8").splitlines():
            captions.append(line.partition("\t")[2].strip())
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(captions, trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    return out


def _tokenizer(*, add_bos_token: bool, **special_tokens: str) -> PreTrainedTokenizerFast:
    """The trained BPE plus a family's special tokens (bos/eos/pad/unk by keyword, the rest named),
    adding BOS to what it tokenizes as the family's real tokenizer does (kept in its post-processor)."""
    from tokenizers import Tokenizer

    core = {key: special_tokens.pop(key) for key in ("bos_token", "eos_token", "pad_token", "unk_token") if key in special_tokens}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(BPE_FILE)), **core, extra_special_tokens=special_tokens,
        add_bos_token=add_bos_token,
    )


def _gemma3():
    tokenizer = _tokenizer(
        add_bos_token=True,  # as GemmaTokenizer (google/gemma-3-4b-it, medgemma-4b-it); the template writes one too
        bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        boi_token="<start_of_image>", eoi_token="<end_of_image>", image_token="<image_soft_token>",
        start_of_turn="<start_of_turn>", end_of_turn="<end_of_turn>",
    )
    template = (
        "{{ bos_token }}{% for message in messages %}<start_of_turn>"
        "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    # 224 px in 16-px patches = 14 x 14, pooled to 7 x 7 = 49 image tokens (MedGemma: 896 px, 256 tokens).
    processor = Gemma3Processor(
        Gemma3ImageProcessorPil(size={"height": 224, "width": 224}), tokenizer, chat_template=template,
        image_seq_length=49,
    )
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    config = Gemma3Config(
        text_config=dict(
            DECODER, head_dim=16, query_pre_attn_scalar=16, sliding_window=64, vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=[tokenizer.eos_token_id, end_of_turn],
        ),
        vision_config=dict(LAYERS, model_type="siglip_vision_model", image_size=224, patch_size=16),
        mm_tokens_per_image=49,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    return processor, Gemma3ForConditionalGeneration(config)


def _idefics3():
    tokenizer = _tokenizer(
        add_bos_token=False,  # as SmolVLM's GPT-2 style BPE; its template writes the BOS, <|im_start|>
        bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        fake_image_token="<fake_token_around_image>", image_token="<image>", global_image_token="<global-img>",
        end_of_utterance_token="<end_of_utterance>",
    )
    template = (
        "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
        "{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    )
    # Tiles of 64 px (SmolVLM: 512) from an image resized to 128 px at most, plus the global view;
    # 64 px / 16 = 4 x 4 patches, pixel-shuffled by 2 = 4 tokens per tile.
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 128}, max_image_size={"longest_edge": 64})
    processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=4, chat_template=template)
    config = Idefics3Config(
        image_token_id=tokenizer.image_token_id,
        scale_factor=2,
        vision_config=dict(LAYERS, image_size=64, patch_size=16),
        text_config=dict(
            DECODER, model_type="llama", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
    )
    return processor, Idefics3ForConditionalGeneration(config)


def _llava():
    tokenizer = _tokenizer(  # as llava-1.5-7b-hf's LlamaTokenizer: it adds the BOS; its template writes none
        add_bos_token=True, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", image_token="<image>",
    )
    template = (
        "{% for message in messages %}{{ message['role'] | upper }}: {% for item in message['content'] %}"
        "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
        "{% endfor %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    # 64 px in 16-px patches = 16 image tokens after dropping CLS (llava-1.5: 336 px, 576 tokens).
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    processor = LlavaProcessor(
        image_processor, tokenizer, patch_size=16, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=template,
    )
    config = LlavaConfig(
        image_token_id=tokenizer.image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        vision_config=dict(LAYERS, model_type="clip_vision_model", image_size=64, patch_size=16, projection_dim=32),
        text_config=dict(
            DECODER, model_type="llama", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
    )
    return processor, LlavaForConditionalGeneration(config)


BUILDERS = {"gemma3": _gemma3, "idefics3": _idefics3, "llava": _llava}


def save_tiny_vlm(architecture: str, folder: Path, seed: int = 0) -> Path:
    """Write one tiny random VLM (model, processor, model card; hub layout) into `folder`."""
    torch.manual_seed(seed)
    processor, model = BUILDERS[architecture]()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "README.md").write_text(MODEL_CARD.format(label=LABELS[architecture]), encoding="utf-8")
    return folder


def architecture_of(name: str) -> str | None:
    """`tiny` -> gemma3, `tiny-llava` -> llava; None when `name` names no tiny VLM."""
    if name == TINY:
        return ARCHITECTURES[0]
    architecture = name.removeprefix(f"{TINY}-")
    return architecture if name.startswith(f"{TINY}-") and architecture in BUILDERS else None


def tiny_vlm_source(architecture: str) -> str:
    """The folder of one tiny VLM, built once into the cache, atomically."""
    key = hashlib.sha256(BPE_FILE.read_bytes() + FORMAT_VERSION.encode()).hexdigest()[:12]
    folder = cache_root() / f"tiny-vlm-{key}" / architecture
    if not (folder / "config.json").exists():
        with building(folder) as staging:
            save_tiny_vlm(architecture, staging)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the tiny VLMs' BPE tokenizer.")
    parser.add_argument("--roco", type=Path, required=True, help="ROCO data folder with validation/ and test/")
    args = parser.parse_args()
    print(f"wrote {train_bpe(args.roco)}")


if __name__ == "__main__":
    main()
