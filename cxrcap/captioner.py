"""Load a variant's processor and model (hub id or local folder) and caption images.

One factory for both families: callers hold a `Captioner` and never ask whether it is
GIT or BLIP. Loading is lazy, happens once, and any failure becomes `VariantUnavailable`
with a message that says what to do, so the other variants keep working.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoProcessor,
    BlipForConditionalGeneration,
    GitForCausalLM,
    PreTrainedModel,
)

from .variants import Variant, get_variant

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "git": GitForCausalLM,
    "blip": BlipForConditionalGeneration,
}
UNTRAINED_NOTE = "untrained tiny random weights: not a real caption"


class VariantUnavailable(RuntimeError):
    """A variant could not be loaded; the message says why and what to do."""

    def __init__(self, variant: Variant, reason: str):
        self.variant = variant
        self.reason = reason
        super().__init__(f"{variant.label} ({variant.id}) is unavailable: {reason}. To fix: {variant.how_to_get}.")


@dataclass(frozen=True)
class DecodeSettings:
    num_beams: int = 1  # 1 = greedy, the default
    max_new_tokens: int = 30

    def __post_init__(self):
        if not 1 <= self.num_beams <= 8:
            raise ValueError("num_beams must be between 1 and 8")
        if not 1 <= self.max_new_tokens <= 128:
            raise ValueError("max_new_tokens must be between 1 and 128")

    def describe(self) -> str:
        search = "greedy" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)"
        return f"{search}, at most {self.max_new_tokens} new tokens"


def quiet_library_logs() -> None:
    """Keep entry points' output for people: no download/progress bars or fallback notices."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    # fp32 on CPU: bf16 is slower on the CPUs we measured, and fp32 keeps outputs exact.
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _is_local(source: str) -> bool:
    return Path(source).expanduser().exists()


class Captioner:
    """One variant's processor + model, loaded on first use."""

    def __init__(
        self,
        variant: Variant | str,
        source: str | None = None,
        *,
        untrained: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        self.variant = get_variant(variant) if isinstance(variant, str) else variant
        self.source = source or self.variant.source
        self.untrained = untrained
        self.device = device or pick_device()
        self.dtype = dtype or pick_dtype(self.device)
        self._lock = threading.Lock()
        self._loaded: tuple[object, PreTrainedModel] | None = None
        self._error: VariantUnavailable | None = None

    def __repr__(self) -> str:
        return f"Captioner({self.variant.id!r}, source={self.source!r})"

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> None:
        """Load once; a failure is remembered and raised again without retrying."""
        with self._lock:
            if self._loaded is not None:
                return
            if self._error is not None:
                raise self._error
            try:
                self._loaded = self._load()
            except VariantUnavailable as error:
                self._error = error
                raise

    def _load(self) -> tuple[object, PreTrainedModel]:
        variant, source = self.variant, self.source
        if not _is_local(source) and (variant.fine_tuned and source == variant.default_source):
            raise VariantUnavailable(variant, f"the checkpoint folder {source!r} does not exist")
        where = f"folder {source!r}" if _is_local(source) else f"hub id {source!r}"
        try:
            config = AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as error:
            if _is_local(source):
                raise VariantUnavailable(variant, f"{where} has no readable model config ({_first_line(error)})") from None
            raise VariantUnavailable(
                variant, f"{where} is not in the local cache and the Hugging Face hub cannot be reached"
            ) from None
        if config.model_type != variant.family:
            raise VariantUnavailable(
                variant, f"{where} holds a {config.model_type!r} model, not a {variant.family!r} model"
            )
        try:
            processor = AutoProcessor.from_pretrained(source)
            model = MODEL_CLASSES[variant.family].from_pretrained(source, dtype=self.dtype)
        except Exception as error:  # corrupt or partial weights surface as many types
            raise VariantUnavailable(variant, f"{where} could not be loaded ({_first_line(error)})") from None
        model.to(self.device).eval()
        return processor, model

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image], settings: DecodeSettings = DecodeSettings()) -> list[str]:
        """Caption a batch of RGB images; returns one caption per image."""
        self.load()
        processor, model = self._loaded
        pixel_values = processor(images=list(images), return_tensors="pt").pixel_values
        output_ids = model.generate(
            pixel_values=pixel_values.to(self.device, self.dtype),
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            do_sample=False,
        )
        return [text.strip() for text in processor.batch_decode(output_ids, skip_special_tokens=True)]

    def caption_one(self, image: Image.Image, settings: DecodeSettings = DecodeSettings()) -> tuple[str, float]:
        """Caption one image; returns (caption, seconds taken)."""
        start = time.perf_counter()
        (text,) = self.caption([image], settings)
        return text, time.perf_counter() - start


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def build_captioners(variant_ids: Sequence[str], *, tiny_random: bool = False) -> dict[str, Captioner]:
    """Captioners for the given ids (not loaded yet). With tiny_random, from tiny untrained weights."""
    if tiny_random:
        from .tiny import tiny_sources  # builds the tiny folders once, on first use

        sources = tiny_sources()
        return {vid: Captioner(vid, sources[vid], untrained=True) for vid in variant_ids}
    return {vid: Captioner(vid) for vid in variant_ids}


@dataclass(frozen=True)
class CaptionResult:
    variant_id: str
    caption: str | None  # None when the variant is unavailable
    seconds: float
    error: str | None = None
    untrained: bool = False


def stream_captions(
    captioners: dict[str, Captioner], image: Image.Image, settings: DecodeSettings = DecodeSettings()
) -> Iterator[CaptionResult]:
    """Caption one image with every variant, yielding each result as soon as it is ready."""
    for variant_id, captioner in captioners.items():
        try:
            text, seconds = captioner.caption_one(image, settings)
            yield CaptionResult(variant_id, text, seconds, untrained=captioner.untrained)
        except VariantUnavailable as error:
            yield CaptionResult(variant_id, None, 0.0, error=str(error), untrained=captioner.untrained)
