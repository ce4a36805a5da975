"""Load a model's weights, refusing a checkpoint that would leave some of them random.

`from_pretrained` fills every weight a checkpoint lacks, or holds in another shape, with
random values and only logs a warning: a folder without its word embeddings and LM head
loads and captions noise. `load_weights` works for any `PreTrainedModel` class (or Auto class):
it loads with transformers' loading report (`output_loading_info=True`) and raises
`BrokenCheckpoint`, naming the weights, when any of them would be left random.

What a sound checkpoint may lack (transformers 5.24 already drops these from the report; the
check repeats the tied-weight rule so it does not depend on that bookkeeping):
- a tied weight whose partner is in the checkpoint: the model shares one tensor between them
  (`model.all_tied_weights_keys`, target -> source, read from the model and its config: BLIP
  ties its LM head to its word embeddings, so its checkpoints may store only one of them;
  GIT ties nothing, its LM head `output` is a weight of its own);
- buffers the model computes from its config (e.g. `position_ids`): they are non-persistent,
  so no checkpoint is expected to hold them and they never appear as missing.
Weights the checkpoint holds that the model does not use are logged, not refused.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from safetensors import SafetensorError
from transformers import PreTrainedModel

log = logging.getLogger(__name__)
NAMES_SHOWN = 6  # a message names at most this many weights, then counts the rest


class BrokenCheckpoint(ValueError):
    """A checkpoint that cannot give the model all its weights. The message says which, as a
    predicate to follow the checkpoint's name ("has a damaged ...", "does not hold ...")."""


def load_weights(model_class, source: str, **kwargs) -> PreTrainedModel:
    """`model_class.from_pretrained(source, **kwargs)`, refusing an incomplete or damaged checkpoint."""
    try:
        # ignore_mismatched_sizes: report a wrong-shaped weight (refused below, by name) instead
        # of raising a message that points at a log the entry points silence.
        model, report = model_class.from_pretrained(
            source, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except SafetensorError as error:
        raise BrokenCheckpoint(
            f"has a damaged or incomplete weights file ({error}), e.g. from an interrupted download or copy"
        ) from None
    left_random = weights_left_random(model, report["missing_keys"], report["mismatched_keys"])
    if left_random:
        raise BrokenCheckpoint(
            f"does not hold {len(left_random)} weight(s) the model needs, which would be left random: {_names(left_random)}"
        )
    if report["unexpected_keys"]:
        log.warning(
            "%s: %d weight(s) in the checkpoint are not used by %s and were ignored: %s",
            source, len(report["unexpected_keys"]), type(model).__name__, _names(sorted(report["unexpected_keys"])),
        )  # fmt: skip
    return model


def weights_left_random(
    model: PreTrainedModel, missing_keys: Collection[str], mismatched_keys: Iterable[tuple] = ()
) -> list[str]:
    """The weights of `model` a load left random: missing ones that are not tied to a loaded
    weight, then wrong-shaped ones as 'name (checkpoint shape, model shape)'."""
    restored = set()
    for target, source in (getattr(model, "all_tied_weights_keys", None) or {}).items():
        # Loading ties symmetrically: whichever of the two the checkpoint holds fills both.
        if source not in missing_keys:
            restored.add(target)
        if target not in missing_keys:
            restored.add(source)
    missing = sorted(set(missing_keys) - restored)
    wrong_shape = [
        f"{key} (checkpoint {tuple(in_checkpoint)}, model {tuple(in_model)})"
        for key, in_checkpoint, in_model in sorted(mismatched_keys)
    ]
    return missing + wrong_shape


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"
