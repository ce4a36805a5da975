"""Load a variant's processor and model (hub id or local folder) and caption images.

One factory for both families: callers hold a `Captioner` and never ask whether it is
GIT or BLIP. Loading is lazy, happens once (through `checkpoints.load_checkpoint`), and any
failure becomes `VariantUnavailable` with a message that says what to do, so the other variants
keep working; a checkpoint that would leave weights random (missing, wrong-shaped, damaged file)
is such a failure (`weights.py`). Captions come from `generate()` (the naive path's tokens), in
fp32 on a CPU; who captions when is `scheduler.py`'s concern. Opt-in: `quantize_int8=True` (or
`CXRCAP_INT8=1`), dynamic int8 Linear layers: faster, but captions can differ from fp32 ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    BlipForConditionalGeneration,
    GitForCausalLM,
    PreTrainedModel,
)

from .checkpoints import ConfigUnreadable, FilesUnreadable, is_local, load_checkpoint, looks_like_a_path
from .errors import first_line
from .preprocessing import centre_crop_requested, load_processor
from .variants import Variant, get_variant
from .weights import BrokenCheckpoint

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "git": GitForCausalLM,
    "blip": BlipForConditionalGeneration,
}
UNTRAINED_NOTE = "untrained tiny random weights: not a real caption"


class VariantUnavailable(RuntimeError):
    """A variant could not be loaded; the message says why and what to do."""

    def __init__(self, variant: Variant, reason: str, fix: str | None = None):
        self.variant = variant
        self.reason = reason
        super().__init__(f"{variant.label} ({variant.id}) is unavailable: {reason}. To fix: {fix or variant.how_to_get}.")


class StillLoading(VariantUnavailable):
    """A variant loading in the background: captioning says so at once instead of waiting."""


MAX_PROMPT_CHARS = 1000


@dataclass(frozen=True)
class DecodeSettings:
    num_beams: int = 1  # 1 = greedy, the default
    max_new_tokens: int = 30
    prompt: str | None = None  # what an instructable model (the extra slot) is asked; None: its default

    def __post_init__(self):
        if not 1 <= self.num_beams <= 8:
            raise ValueError("num_beams must be between 1 and 8")
        if not 1 <= self.max_new_tokens <= 128:
            raise ValueError("max_new_tokens must be between 1 and 128")
        if self.prompt is not None and not 0 < len(self.prompt.strip()) <= MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt must have 1 to {MAX_PROMPT_CHARS} characters")

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


DTYPE_VARIABLE = "CXRCAP_DTYPE"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_from_env(variable: str = DTYPE_VARIABLE) -> torch.dtype | None:
    """The dtype an environment variable names (one of `DTYPES`); None when it is unset."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if value not in DTYPES:
        raise ValueError(f"{variable} must be one of {', '.join(DTYPES)}, not {value!r}")
    return DTYPES[value]


def pick_dtype(device: torch.device) -> torch.dtype:
    """`CXRCAP_DTYPE` when set (so a CPU can run what a GPU would: the tests run every 16-bit path
    so), else by device: bf16 on a GPU that supports it, fp16 on an older one, fp32 elsewhere."""
    chosen = dtype_from_env()
    if chosen is not None:
        return chosen
    # fp32 on CPU: bf16 is slower on the CPUs we measured, and fp32 keeps outputs exact.
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> "bfloat16", as `CXRCAP_DTYPE` and the JSON files name it."""
    return str(dtype).removeprefix("torch.")


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in ("0", "false", "no", "off")


class Captioner:
    """One variant's processor + model, loaded on first use.

    quantize_int8: run every Linear layer in dynamic int8 (CPU only; opt-in, default from the
    environment variable `CXRCAP_INT8`): faster, but captions may differ from fp32 ones. Its layers
    take float32 inputs, so an int8 captioner computes in float32 whatever `CXRCAP_DTYPE` says.
    """

    # Captions on a lane of its own at low CPU priority, never on the study's workers (the extra
    # slot: a large model's caption must not hold a worker the study's four are waiting for).
    low_priority = False

    def __init__(
        self,
        variant: Variant | str,
        source: str | None = None,
        *,
        untrained: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        quantize_int8: bool | None = None,
    ):
        self.variant = get_variant(variant) if isinstance(variant, str) else variant
        self.source = source or self.variant.source
        self.untrained = untrained
        self.device = device or pick_device()
        self.quantize_int8 = env_flag("CXRCAP_INT8", False) if quantize_int8 is None else quantize_int8
        if self.quantize_int8 and self.device.type != "cpu":
            raise ValueError("quantize_int8 runs on the CPU only (dynamic int8 quantisation)")
        if self.quantize_int8 and dtype not in (None, torch.float32):
            raise ValueError("quantize_int8 computes in float32 (dynamic int8 layers take float32 inputs)")
        self.dtype = dtype or (torch.float32 if self.quantize_int8 else pick_dtype(self.device))
        self._lock = threading.Lock()
        self._loaded: tuple[object, PreTrainedModel] | None = None
        self._error: VariantUnavailable | None = None
        self._fingerprint = ""

    def __repr__(self) -> str:
        return f"Captioner({self.variant.id!r}, source={self.source!r})"

    @property
    def label(self) -> str:
        """How tables and printouts name this captioner."""
        return self.variant.label

    def notes(self, settings: DecodeSettings | None = None) -> tuple[str, ...]:
        """Lines a card shows under the caption (the study's variants need none)."""
        return ()

    def own_settings(self, settings: DecodeSettings) -> DecodeSettings:
        """The decoding settings as they decide this captioner's caption (caches key on them):
        the study's variants are asked no prompt, so one meant for the extra slot is dropped."""
        return dataclasses.replace(settings, prompt=None)

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
                processor, model = self._load()
            except VariantUnavailable as error:
                self._error = error
                raise
            if self.quantize_int8:
                to_dynamic_int8(model)
            self._fingerprint = self._fingerprint_of_loaded(model)
            self._loaded = processor, model

    def _load(self) -> tuple[object, PreTrainedModel]:
        variant, source = self.variant, self.source
        if not is_local(source) and (looks_like_a_path(source) or variant.fine_tuned and source == variant.default_source):
            raise VariantUnavailable(variant, f"the folder {source!r} does not exist")
        where = f"folder {source!r}" if is_local(source) else f"hub id {source!r}"

        def check(config) -> None:
            if config.model_type != variant.family:
                raise VariantUnavailable(
                    variant, f"{where} holds a {config.model_type!r} model, not a {variant.family!r} model"
                )

        # a fine-tuned checkpoint's processor is what it was trained with; a base one is made whole
        whole = not variant.fine_tuned and not centre_crop_requested()
        try:
            processor, model = load_checkpoint(source, MODEL_CLASSES[variant.family], check=check, dtype=self.dtype,
                                               processor=lambda: load_processor(source, whole=whole))
        except ConfigUnreadable as error:
            if is_local(source):
                raise VariantUnavailable(variant, f"{where} has no readable model config ({first_line(error.__cause__)})") from None
            raise VariantUnavailable(
                variant, f"{where} is not in the local cache and the Hugging Face hub cannot be reached"
            ) from None
        except BrokenCheckpoint as error:  # missing, wrong-shaped or damaged weights, named
            raise VariantUnavailable(variant, f"{where} {error}") from None
        except FilesUnreadable as error:  # other unreadable files surface as many types
            raise VariantUnavailable(variant, f"{where} could not be loaded ({first_line(error.__cause__)})") from None
        model.to(self.device).eval()
        return processor, model

    @property
    def fingerprint(self) -> str:
        """Says which weights answer, as loaded: the source, the hub revision or the folder's files
        (names, sizes, modification times) when they were loaded, and int8 or not. A changed
        source, a re-written checkpoint folder or a new hub revision gives a new fingerprint
        (caches key on it)."""
        self.load()
        return self._fingerprint

    def _fingerprint_of_loaded(self, model: PreTrainedModel) -> str:
        if is_local(self.source):
            folder = Path(self.source).expanduser()
            files = sorted(path for path in folder.rglob("*") if path.is_file())
            revision = "\n".join(f"{path.relative_to(folder)} {path.stat().st_size} {path.stat().st_mtime_ns}" for path in files)
        else:
            revision = str(getattr(model.config, "_commit_hash", None))
        what = f"{self.variant.id}\n{self.source}\n{revision}\nint8={self.quantize_int8}\n{self.dtype}"
        return hashlib.sha256(what.encode()).hexdigest()[:16]

    @property
    def processor(self):
        self.load()
        return self._loaded[0]

    @property
    def model(self) -> PreTrainedModel:
        self.load()
        return self._loaded[1]

    @property
    def preprocessing_key(self) -> str:
        """Equal for captioners whose processors turn an image into the same pixel values."""
        return self.processor.image_processor.to_json_string()

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> the model's pixel values (batch, 3, size, size)."""
        return self.processor(images=list(images), return_tensors="pt").pixel_values

    @torch.inference_mode()
    def generate_ids(self, pixel_values: torch.Tensor, settings: DecodeSettings = DecodeSettings()) -> torch.Tensor:
        """Token ids from `generate()` (bos first, padded after eos), one row per image."""
        return self.model.generate(
            pixel_values=pixel_values.to(self.device, self.dtype),
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            do_sample=False,
        )

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        """Token ids -> caption texts, special tokens dropped."""
        return [text.strip() for text in self.processor.batch_decode(token_ids, skip_special_tokens=True)]

    def content_ids(self, token_ids: torch.Tensor) -> list[tuple[int, ...]]:
        """Per row, the caption's own token ids: the ones `decode` keeps (special tokens dropped)."""
        special = set(self.processor.tokenizer.all_special_ids)
        return [tuple(i for i in row.tolist() if i not in special) for row in token_ids]

    def caption_with_ids(
        self, images: Sequence[Image.Image], settings: DecodeSettings = DecodeSettings()
    ) -> list[tuple[str, tuple[int, ...]]]:
        """Caption a batch of RGB images; per image, the caption and its token ids (`content_ids`)."""
        token_ids = self.generate_ids(self.preprocess(images), settings)
        return list(zip(self.decode(token_ids), self.content_ids(token_ids)))

    def caption(self, images: Sequence[Image.Image], settings: DecodeSettings = DecodeSettings()) -> list[str]:
        """Caption a batch of RGB images; returns one caption per image."""
        return [text for text, _ in self.caption_with_ids(images, settings)]

    def caption_one(self, image: Image.Image, settings: DecodeSettings = DecodeSettings()) -> tuple[str, float]:
        """Caption one image; returns (caption, seconds taken)."""
        start = time.perf_counter()
        (text,) = self.caption([image], settings)
        return text, time.perf_counter() - start


def to_dynamic_int8(model: PreTrainedModel) -> None:
    """Dynamic int8 quantisation of every Linear layer, in place (CPU only; changes outputs)."""
    with warnings.catch_warnings():  # torch 2.13 announces that this API will move to torchao
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        from torch.ao.quantization import quantize_dynamic

        quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


CHARS_PER_WORD = 16  # with max_words, the caption's length in characters (runs without spaces)


def cap_caption(text: str, max_words: int) -> tuple[str, str | None]:
    """(the caption shown and scored, the full answer when it was longer): the first `max_words`
    words, and at most `max_words * CHARS_PER_WORD` characters.

    The study's captions stay within it (a word is at least one token, and tokens are short); a
    chatty VLM's answer is cut to a caption-sized text, and the full answer stays one click away.
    """
    words = text.split()
    shown = " ".join(words[:max_words])[: max_words * CHARS_PER_WORD]
    if shown == " ".join(words):
        return text, None
    return shown.rstrip(), text


@dataclass(frozen=True)
class CaptionResult:
    variant_id: str
    caption: str | None  # None when the variant is unavailable
    seconds: float
    error: str | None = None
    untrained: bool = False
    int8: bool = False  # made by dynamic int8 weights (faster on a CPU, may differ from fp32)
    unavailable: bool = False  # the variant could not be loaded (error says why), rather than failed to caption
    full_text: str | None = None  # the whole answer, when the caption was cut from it (`cap_caption`)
    notes: tuple[str, ...] = ()  # `Captioner.notes`: the extra slot's model, licence, prompt
    loading: bool = False  # still loading in the background: ask again later
    token_ids: tuple[int, ...] = ()  # the caption's generated token ids (`Captioner.content_ids`), for heatmaps

    def __post_init__(self):  # read back from JSON (the app's example cache), these come as lists
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "token_ids", tuple(self.token_ids))
