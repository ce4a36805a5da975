"""Captioned images -> model inputs with labels, for both families.

`encode` turns images and captions into pixel values and caption token ids; `CaptionCollator`
pads a batch and makes the labels. The naive profile encodes each batch in the collator, as
the seed did; the fast profile encodes the whole split once (`cache_tensors`) and the collator
only pads. Both go through the same `encode`, so both train on the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import torch
from PIL import Image

from cxrcap.images import ImageError, load_image

IGNORE_INDEX = -100  # label value cross-entropy skips


def encode(processor, rows: Sequence[dict], max_caption_tokens: int) -> dict:
    """Rows (id, image, caption) -> pixel values (a float tensor) and unpadded caption ids ([CLS] ... [SEP])."""
    rgb = [_rgb(row) for row in rows]  # X-rays come grey or 16-bit; the app sees the same RGB
    pixel_values = processor.image_processor(images=rgb, return_tensors="pt").pixel_values
    captions = [row["caption"] for row in rows]
    input_ids = processor.tokenizer(captions, truncation=True, max_length=max_caption_tokens).input_ids
    return {"pixel_values": pixel_values, "input_ids": input_ids}


def undecoded(dataset: datasets.Dataset) -> datasets.Dataset:
    """The image column as file paths/bytes: `encode` reads them with cxrcap's reader, naming bad rows."""
    return dataset.cast_column("image", datasets.Image(decode=False))


def _rgb(row: dict) -> Image.Image:
    image = row["image"]
    if isinstance(image, dict):  # an undecoded datasets.Image: its bytes, or a path to read
        image = image["bytes"] or image["path"]
    try:
        return load_image(image)
    except ImageError as error:
        raise ImageError(f"the image of row {row['id']!r}: {error}") from None


@dataclass
class CaptionCollator:
    """Rows of a split (raw: image + caption; cached: pixel_values + input_ids) -> one training batch.

    Labels are the caption ids with padding and the start token set to -100 (the start token is
    never predicted: the models shift labels by one position themselves, GIT also skipping its
    image tokens), so Trainer's count of label tokens (`num_items_in_batch`) is the number of
    tokens the loss is taken over, for both families. `decoder_start_token_id` is BLIP's [DEC]: BLIP's
    `generate()` starts captions with it but `forward()` does not put it in place of the
    tokenizer's [CLS], so training must (None for GIT, which starts from [CLS] both ways).
    """

    processor: object
    max_caption_tokens: int
    decoder_start_token_id: int | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if "pixel_values" in rows[0]:
            pixel_values = torch.stack([torch.as_tensor(row["pixel_values"]) for row in rows]).float()
            input_ids = [row["input_ids"] for row in rows]
        else:
            encoded = encode(self.processor, rows, self.max_caption_tokens)
            pixel_values, input_ids = encoded["pixel_values"], encoded["input_ids"]
        text = self.processor.tokenizer.pad(
            {"input_ids": input_ids}, padding="longest", pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"
        )
        ids = text.input_ids
        if self.decoder_start_token_id is not None:
            ids[:, 0] = self.decoder_start_token_id
        labels = ids.masked_fill(text.attention_mask == 0, IGNORE_INDEX)
        labels[:, 0] = IGNORE_INDEX
        return {"pixel_values": pixel_values, "input_ids": ids, "attention_mask": text.attention_mask, "labels": labels}


def cache_tensors(
    dataset: datasets.Dataset, processor, max_caption_tokens: int, *, dtype: str = "float32", num_proc: int | None = None
) -> datasets.Dataset:
    """Encode every row once (the recipe has no augmentation, so every epoch sees the same tensors).

    `dtype="float16"` halves the cache when training runs in half precision anyway (autocast casts
    the pixels down at the first layer).
    """
    probe = encode(processor, [dataset[0]], max_caption_tokens)
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D(shape=tuple(probe["pixel_values"].shape[1:]), dtype=dtype),
            "input_ids": datasets.List(datasets.Value("int32")),
        }
    )

    def encode_batch(batch: dict) -> dict:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        encoded = encode(processor, rows, max_caption_tokens)
        return {"pixel_values": encoded["pixel_values"].numpy().astype(dtype), "input_ids": encoded["input_ids"]}

    cached = dataset.map(
        encode_batch,
        batched=True,
        batch_size=32,
        remove_columns=dataset.column_names,
        features=features,
        num_proc=num_proc,
        desc="pre-processing images once",
    )
    # Pixels as tensors (zero-copy from Arrow); ids stay lists for the tokenizer's padding.
    return cached.with_format("torch", columns=["pixel_values"], output_all_columns=True)
