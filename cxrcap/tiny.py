"""Tiny random-weight variants: the whole product with no download.

Each tiny variant mirrors its real model's structure (GIT: a CLIP vision tower at 224 px
feeding a BERT-style causal decoder; BLIP: a ViT at 384 px with a cross-attending BERT
decoder), the real processors' image sizes and normalisation, and a real WordPiece
vocabulary trained on ROCO captions (`assets/tiny-vocab.txt`). They are written in the
hub folder layout and loaded through exactly the same code as real weights. Their
captions are noise and are always labelled as coming from untrained weights.

With `base_size=True` the same builders make random variants at the real models' size
(`GitConfig()` / `BlipConfig()` defaults: the shapes, compute and memory of git-base and
blip-image-captioning-base, 176.6M and 224.0M parameters) with the vocabulary padded to BERT's
30,522 entries, so the language-model head costs what the real one does. Each of the four has
its own weights (~3.2 GB in all), as the real base and fine-tuned checkpoints do. The speed
benchmarks (`benchmarks/`) use them.

Regenerate the vocabulary with `python -m cxrcap.tiny --roco ../shared/data/roco`.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipProcessor,
    GitConfig,
    GitForCausalLM,
    GitProcessor,
)

from .cache import building, cache_root
from .preprocessing import released_image_processor, whole_image
from .variants import VARIANT_IDS, VARIANTS

VOCAB_FILE = Path(__file__).resolve().parent.parent / "assets" / "tiny-vocab.txt"
VOCAB_SIZE = 2000
FORMAT_VERSION = "3"  # bump when the configs or processors below change, so caches rebuild

# Small but structurally faithful: 2 layers, width 32, the real patch size and image sizes.
# Base size passes none of these: the configs' defaults are the real base models' sizes.
TINY_LAYERS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY_GIT_POSITIONS = 512  # git-base (and GitConfig's default) has 1,024
BASE_VOCAB_SIZE = 30522  # bert-base-uncased, which both real tokenizers are
SEEDS = {"git-base": 1, "git-base-ft": 2, "blip-base": 3, "blip-base-ft": 4}


def train_vocab(roco_dir: Path, out: Path = VOCAB_FILE, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train a lowercase WordPiece vocabulary on ROCO's validation and test captions."""
    from tokenizers import BertWordPieceTokenizer

    captions = []
    for split in ("validation", "test"):
        for line in (roco_dir / split / "radiology" / "captions.txt").read_text(encoding="utf-8").splitlines():
            _, _, caption = line.partition("\t")
            captions.append(caption.strip())
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(captions, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The trainer lists tokens in an arbitrary order and breaks frequency ties through a
    # randomly seeded hash map, so a rebuild can swap a near-tie token or two: keep the special
    # tokens first and sort the rest, so rebuilds differ only in those few tokens.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + sorted(set(tokenizer.get_vocab()) - set(specials))
    out.write_text("".join(token + "\n" for token in tokens), encoding="utf-8")
    return out


def _git_processor(vocab_file: Path) -> GitProcessor:
    # The released image processor's defaults are git-base's: shortest edge 224, centre crop 224, CLIP mean/std.
    return GitProcessor(released_image_processor("git"), BertTokenizer(vocab=str(vocab_file)))


def _blip_processor(vocab_file: Path) -> BlipProcessor:
    # The released image processor's defaults are blip-image-captioning-base's: 384 px, CLIP mean/std.
    tokenizer = BertTokenizer(vocab=str(vocab_file), bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    return BlipProcessor(released_image_processor("blip"), tokenizer)


def _git_model(tokenizer: BertTokenizer, *, base_size: bool) -> GitForCausalLM:
    layers = {} if base_size else TINY_LAYERS
    text = {} if base_size else dict(TINY_LAYERS, max_position_embeddings=TINY_GIT_POSITIONS)
    config = GitConfig(
        vision_config=dict(layers, image_size=224, patch_size=16),
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **text,
    )
    return GitForCausalLM(config)


def _blip_model(tokenizer: BertTokenizer, *, base_size: bool) -> BlipForConditionalGeneration:
    # BlipConfig sets the decoder's encoder_hidden_size to the vision width itself.
    layers = {} if base_size else TINY_LAYERS
    config = BlipConfig(
        vision_config=dict(layers, image_size=384, patch_size=16),
        text_config=dict(
            layers,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.sep_token_id,
            sep_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
    )
    return BlipForConditionalGeneration(config)


BUILDERS = {"git": (_git_processor, _git_model), "blip": (_blip_processor, _blip_model)}


def _write_base_vocab(path: Path) -> Path:
    """The tiny vocabulary padded with BERT-style `[unusedN]` entries to BERT's size."""
    tokens = VOCAB_FILE.read_text(encoding="utf-8").splitlines()
    tokens += [f"[unused{i}]" for i in range(BASE_VOCAB_SIZE - len(tokens))]
    path.write_text("".join(token + "\n" for token in tokens), encoding="utf-8")
    return path


def random_variant(variant_id: str, *, base_size: bool = False):
    """(processor, model) of one random variant, tiny or at base size, seeded per variant.

    Base variants carry their released checkpoint's processor (git-base's crops the centre; the
    captioner makes it take the whole image); fine-tuned ones the whole-image processor that
    `python -m finetune` saves with its checkpoints.
    """
    variant = VARIANTS[variant_id]
    make_processor, make_model = BUILDERS[variant.family]
    with tempfile.TemporaryDirectory() as scratch:
        vocab = _write_base_vocab(Path(scratch, "vocab.txt")) if base_size else VOCAB_FILE
        processor = make_processor(vocab)  # keeps the vocabulary in memory
    if variant.fine_tuned:
        whole_image(processor.image_processor)
    torch.manual_seed(SEEDS[variant_id])
    return processor, make_model(processor.tokenizer, base_size=base_size)


def save_tiny_variant(variant_id: str, folder: Path, *, base_size: bool = False) -> Path:
    """Write one random variant (model + processor, hub layout) into `folder`: tiny, or at base size."""
    processor, model = random_variant(variant_id, base_size=base_size)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _cache_key() -> str:
    digest = hashlib.sha256(VOCAB_FILE.read_bytes() + FORMAT_VERSION.encode()).hexdigest()
    return digest[:12]


def tiny_sources(variant_ids: Iterable[str] = VARIANT_IDS, *, base_size: bool = False) -> dict[str, str]:
    """Folders of the random variants (default: all four), each built once into the cache, atomically.

    base_size=True builds them at the real models' size (~0.7 GB per GIT, ~0.9 GB per BLIP
    variant: ~3.2 GB and a minute or two for all four).
    """
    root = cache_root() / f"{'base' if base_size else 'tiny'}-{_cache_key()}"
    sources = {}
    for variant_id in variant_ids:
        folder = root / variant_id
        if not (folder / "config.json").exists():
            with building(folder) as staging:
                save_tiny_variant(variant_id, staging, base_size=base_size)
        sources[variant_id] = str(folder)
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the tiny variants' WordPiece vocabulary.")
    parser.add_argument("--roco", type=Path, required=True, help="ROCO data folder with validation/ and test/")
    args = parser.parse_args()
    path = train_vocab(args.roco)
    print(f"wrote {path} ({len(path.read_text().splitlines())} tokens)")


if __name__ == "__main__":
    main()
