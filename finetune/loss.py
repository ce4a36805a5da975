"""BLIP's caption loss, normalised over the whole accumulated batch.

BLIP's `forward()` averages its cross-entropy over the tokens of one micro-batch, so batch 8 x
accumulation 2 would average two token means instead of taking one mean over the tokens of all 16
captions (a 12% different gradient on real ROCO captions: benchmarks/accumulation_gradient.py).
Here the loss is the token cross-entropy *summed* over the micro-batch, with the checkpoint's own
label smoothing, divided by the caption tokens of the whole accumulated batch, which Trainer counts
and passes as `num_items_in_batch`: 8 x 2 and 16 x 1 then give the same gradient. GIT's own loss
already works this way (transformers' `ForCausalLMLoss`), so GIT trains with its model's loss.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from .collate import IGNORE_INDEX


def label_smoothing(family: str, model) -> float:
    """The label smoothing the family's loss applies: BLIP's text decoder reads it from its config; GIT has none."""
    return float(model.config.text_config.label_smoothing) if family == "blip" else 0.0


def caption_loss_function(family: str, model):
    """Trainer's `compute_loss_func` for the family: BLIP's summed loss, or None (GIT's own loss is already right)."""
    if family != "blip":
        return None
    smoothing = label_smoothing(family, model)

    def blip_caption_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None):
        # Logits at position i predict the token at i + 1 (the collator masks label 0, the start token).
        logits = outputs.logits[:, :-1, :]
        targets = labels[:, 1:].to(logits.device)
        total = functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                         label_smoothing=smoothing, reduction="sum")
        tokens = targets.ne(IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
        return total / tokens

    return blip_caption_loss
