"""Load a checkpoint, the one way: its config, the caller's check of it, its processor and weights.

The study's variants (`captioner`), the fifth slot (`extra`) and fine-tuning's base model
(`finetune.train`) all load through `load_checkpoint`; what differs is passed in: the model class
(a family's own, or an Auto class), the check the config must pass (its family, or a task), and
how the processor is made. A step that fails raises an error of its own type with the library's
error as its cause (`BrokenCheckpoint` for weights that would be left random, from `weights`), so
each caller words it for its readers: a card's reason and fix, or a command's message.

A source is a hub id (`name` or `owner/name`) or a folder (`is_local`, `looks_like_a_path`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from .weights import BrokenCheckpoint, load_weights

# from_pretrained is not thread-safe (it builds models under process-wide init contexts, e.g.
# on the meta device): checkpoints load one at a time even when requests and workers race.
_LOADING = threading.Lock()


class ConfigUnreadable(RuntimeError):
    """No config could be read from the source (absent, not valid JSON, not cached while the hub
    cannot be reached, gated, ...); the library's error is the `__cause__`."""


class FilesUnreadable(RuntimeError):
    """The processor or the weights could not be loaded, for a reason other than a
    `BrokenCheckpoint`; the library's error is the `__cause__`."""


def is_local(source: str) -> bool:
    return Path(source).expanduser().exists()


def looks_like_a_path(source: str) -> bool:
    """A hub id is `name` or `owner/name`; anything else was meant as a folder."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def load_checkpoint(
    source: str,
    model_class,
    *,
    check: Callable[[PretrainedConfig], None],
    processor: Callable[[], object],
    trust_remote_code: bool = False,
    **weights,
) -> tuple[object, PreTrainedModel]:
    """(processor, model) of a hub id or folder, the model by `load_weights(model_class, ...)`
    with `weights` (dtype, attn_implementation, ...), on the CPU.

    check: given the config before anything else is read; it refuses the checkpoint by raising
    the caller's own error (a model of another family, too large for this machine, ...).
    Raises `ConfigUnreadable`, what `check` raises, `BrokenCheckpoint` (weights missing,
    wrong-shaped or damaged, named) or `FilesUnreadable`, in that order of the steps.
    """
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as error:  # transformers and the hub raise many types here
        raise ConfigUnreadable(f"cannot read the config of {source!r}") from error
    check(config)
    try:
        with _LOADING:
            return processor(), load_weights(model_class, source, trust_remote_code=trust_remote_code, **weights)
    except BrokenCheckpoint:
        raise
    except Exception as error:  # other unreadable files surface as many types
        raise FilesUnreadable(f"cannot load the processor or the weights of {source!r}") from error
