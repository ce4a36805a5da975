"""The fifth slot: any vision-language model on the hub, captioning next to the study's four.

`ExtraCaptioner` is a `Captioner` (the same interface `stream_captions`, the report and the app
use), loaded through transformers' own classes: `AutoConfig`, `AutoProcessor` and
`AutoModelForImageTextToText`, which in transformers 5 serves both chat-template VLMs (Gemma 3 /
MedGemma, Qwen-VL, SmolVLM, LLaVA...) and plain image-to-text captioners (GIT, BLIP,
vision-encoder-decoder...). How a model is asked follows from its processor:

- it has a chat template: one user turn with the image and the prompt (`DEFAULT_PROMPT`, or
  `--extra-prompt`), answered after the template's generation prompt;
- its family needs a task prompt instead (`TASK_PROMPTS`, e.g. Florence-2's caption token);
- neither: a plain captioner, given the image alone.

Only the generated tokens are decoded (never the echoed prompt or chat markup); the caption shown
and scored is the answer's first words (`captioner.cap_caption`), the full answer stays one click
away. Before loading, the weights' size is read from the checkpoint (safetensors headers, locally
or on the hub) and a model that would not fit the memory left is refused, naming hardware that
would; so is a model not downloaded yet whose size the hub cannot tell. Remote code is refused
unless the owner sets `CXRCAP_TRUST_REMOTE_CODE=1`. Every failure is a `VariantUnavailable` whose
message says what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from .captioner import (
    Captioner,
    DecodeSettings,
    StillLoading,
    VariantUnavailable,
    dtype_from_env,
    env_flag,
    pick_device,
    pick_dtype,
)
from .checkpoints import ConfigUnreadable, FilesUnreadable, is_local, load_checkpoint, looks_like_a_path
from .errors import library_text
from .preprocessing import BACKEND
from .scheduler import lower_this_threads_priority
from .variants import EXTRA_ID, VARIANTS
from .weights import BrokenCheckpoint

log = logging.getLogger(__name__)
EXTRA = VARIANTS[EXTRA_ID]
DEFAULT_PROMPT = "Describe the findings of this chest X-ray in one sentence."
ANSWER_TOKENS = 96  # a VLM's full answer: longer than a caption; the caption is cut from it
TRUST_REMOTE_CODE = "CXRCAP_TRUST_REMOTE_CODE"  # the owner's explicit choice, never a default
DTYPE = "CXRCAP_EXTRA_DTYPE"  # float32 | bfloat16 | float16: the owner's choice over the default
# Families whose processor has no chat template but which need a task prompt (from their model cards).
TASK_PROMPTS = {
    "florence2": "<CAPTION>",  # Florence-2 captions on its task token; other text is not an instruction
    "paligemma": "caption en",  # PaliGemma (mix checkpoints) captions on this prefix
}
MEMORY_MARGIN = 1.2  # weights x this: room for activations, the KV cache and the processor
# Memory of common hardware, for "it would fit on ..." (GiB of GPU memory, per vendor specs).
GPUS = (("a 16 GB GPU (e.g. T4)", 16), ("a 24 GB GPU (e.g. L4, A10G)", 24), ("a 48 GB GPU (e.g. L40S)", 48),
        ("an 80 GB GPU (e.g. A100 80 GB, H100)", 80), ("a 141 GB GPU (H200)", 141))
_SAVE_PROCESSOR = ("save the model's processor into the folder (processor.save_pretrained writes its files), or copy "
                   "them from the model's hub page")
# What a model folder holds, each as one of these files: (what, the files, the fix when none is there).
MODEL_FILES = (
    ("model config", ("config.json",), "point it at a folder saved with save_pretrained, or a hub id"),
    ("image processor", ("preprocessor_config.json", "processor_config.json"), _SAVE_PROCESSOR),
    ("tokenizer", ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"), _SAVE_PROCESSOR),
    ("weights", ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"),
     "save the model into the folder with save_pretrained, or copy its weights from its hub page"),
)
DTYPE_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2, "F16": 2, "I16": 2,
               "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}  # safetensors' dtype names


@dataclass(frozen=True)
class WeightsSize:
    parameters: int

    def bytes_as(self, dtype: torch.dtype) -> int:
        return self.parameters * dtype.itemsize


def hub_parameters(repo_id: str) -> int | None:
    """Parameters of a hub model's safetensors weights, from the hub's metadata (their headers
    only, no download); None when it has none. Raises when the hub cannot be asked."""
    from huggingface_hub import get_safetensors_metadata
    from huggingface_hub.errors import NotASafetensorsRepoError

    try:
        metadata = get_safetensors_metadata(repo_id)
    except NotASafetensorsRepoError:
        return None
    return sum(metadata.parameter_count.values())


def weights_size(source: str, ask_hub: Callable[[str], int | None] = hub_parameters) -> WeightsSize | None:
    """How many parameters the checkpoint holds, read without loading it; None when unknowable
    (no safetensors weights: the load goes on without the memory check).

    A folder: the headers of the safetensors files transformers loads (`model.safetensors`, else
    the shards the index's `weight_map` names; a consolidated copy beside them is not counted).
    A hub id: the same from its snapshot in the local cache when all its weights are there, else
    the hub's answer (`ask_hub`): `AutoConfig` caches config.json first, so a snapshot may hold
    nothing else yet. When the hub cannot be asked either, this raises `VariantUnavailable`:
    loading would start a download whose size nothing has checked.
    """
    folder = _cached_folder(source)
    parameters = _local_parameters(folder) if folder is not None else None
    if parameters is not None:
        return WeightsSize(parameters)
    if is_local(source) or (folder is not None and any(folder.glob("pytorch_model*.bin"))):
        return None  # its weights are here, not as safetensors
    try:
        parameters = ask_hub(source)
    except Exception as error:  # offline, unreachable, timed out: nothing says it would fit
        raise _size_unknown(source, error) from None
    return None if parameters is None else WeightsSize(parameters)


def _size_unknown(repo_id: str, error: Exception) -> VariantUnavailable:
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        reason, fix = "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE, so that its size is checked before it downloads"
    else:
        reason, fix = f"the hub did not answer: {library_text(error)}", "try again when the hub can be reached"
    return VariantUnavailable(
        EXTRA, f"{repo_id!r} is not downloaded yet and the size of its weights cannot be read from the hub ({reason}), "
        "so it is not loaded: it might not fit in memory",
        f"{fix}; or download it first (hf download {repo_id}), then its size is read from its files",
    )


def _local_parameters(folder: Path) -> int | None:
    """Parameters in the safetensors weights transformers would load from `folder` (which it tries
    in this order); None when they are not all there, or unreadable (the load then says why)."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    try:
        if single.is_file():
            files = [single]
        elif index.is_file():
            files = [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        else:
            return None
        if not all(path.is_file() for path in files):
            return None  # a download under way or cut short
        return sum(_header_parameters(path) for path in files)
    except (OSError, ValueError, KeyError, struct.error):
        return None


def _cached_folder(source: str) -> Path | None:
    """The folder holding `source`'s files: itself, or a hub id's snapshot in the local cache."""
    if is_local(source):
        return Path(source).expanduser()
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(source, "config.json")
    return Path(config).parent if isinstance(config, str) else None


def _header_parameters(path: Path) -> int:
    """Parameters in one safetensors file, from its header (8-byte length, then JSON) alone."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    total = 0
    for name, tensor in header.items():
        if name != "__metadata__":
            count = 1
            for dimension in tensor["shape"]:
                count *= dimension
            total += count
    return total


def free_memory(device: torch.device) -> int:
    """Bytes free now: on the GPU for CUDA, else the RAM available to new allocations."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def check_fits(name: str, size: WeightsSize, device: torch.device, dtype: torch.dtype, free: int) -> None:
    """Refuse, before loading, a model whose weights (with MEMORY_MARGIN) exceed `free` bytes."""
    needed = size.bytes_as(dtype) * MEMORY_MARGIN
    if needed <= free:
        return
    gib = 2**30
    where = "this GPU" if device.type == "cuda" else "this machine's RAM"
    half = size.bytes_as(torch.bfloat16) * MEMORY_MARGIN / gib
    gpu = next((gpu for gpu, memory in GPUS if half <= memory), None)
    would_fit = f"{gpu} in 16-bit" if gpu else "several GPUs (beyond one 141 GB GPU)"
    raise VariantUnavailable(
        EXTRA,
        f"{name} has {size.parameters / 1e9:.2f}B parameters: about {needed / gib:.1f} GB in "
        f"{str(dtype).removeprefix('torch.')} with room to run, and {where} has {free / gib:.1f} GB free",
        f"run it on {would_fit} (about {half:.1f} GB), or on a CPU machine with {needed / gib:.0f} GB of free RAM; "
        "or choose a smaller model",
    )


def read_licence(source: str) -> str | None:
    """The licence named in the model card's metadata (`license`, `license_name`), if any."""
    from huggingface_hub import ModelCard

    folder = _cached_folder(source)
    try:
        card = ModelCard.load(folder / "README.md" if folder else source, ignore_metadata_errors=True)
    except Exception:  # no card, or not reachable: the card says "not stated"
        return None
    licence = card.data.get("license_name") or card.data.get("license")
    return ", ".join(licence) if isinstance(licence, list) else licence


def _dtype_for(device: torch.device) -> torch.dtype:
    """The owner's choice for this slot (CXRCAP_EXTRA_DTYPE), else the four's (`pick_dtype`:
    CXRCAP_DTYPE, else bf16 on GPUs that support it, fp32 on a CPU)."""
    return dtype_from_env(DTYPE) or pick_dtype(device)


class ExtraCaptioner(Captioner):
    """The extra slot: one image-text-to-text model from a hub id or folder, asked with a prompt."""

    low_priority = True  # see Captioner: the study's four never wait for this slot

    def __init__(
        self,
        source: str,
        *,
        name: str | None = None,
        prompt: str | None = None,
        untrained: bool = False,
        device: torch.device | None = None,
        trust_remote_code: bool | None = None,
    ):
        device = device or pick_device()
        super().__init__(EXTRA, source, untrained=untrained, device=device, dtype=_dtype_for(device), quantize_int8=False)
        self.source = source  # '' (no model named) stays '': the load says how to name one
        self.name = name or (Path(source).name if looks_like_a_path(source) or is_local(source) else source)
        self.prompt = (prompt or "").strip() or DEFAULT_PROMPT
        self.trust_remote_code = env_flag(TRUST_REMOTE_CODE, False) if trust_remote_code is None else trust_remote_code
        self.licence: str | None = None
        self.size: WeightsSize | None = None
        self._instructable = False  # has a chat template: asked the prompt (known once loaded)
        self._task_prompt: str | None = None  # else its family's task prompt, if it needs one
        self._loader: threading.Thread | None = None

    @classmethod
    def named(cls, model: str, *, prompt: str | None = None, tiny_random: bool = False) -> ExtraCaptioner:
        """The extra slot for `--extra-model` / `CXRCAP_EXTRA_MODEL`: a hub id, a folder, or `tiny...`."""
        from . import tiny_vlm  # only when asked: it imports every tiny family's classes

        architecture = tiny_vlm.architecture_of(model)
        if architecture is None:
            return cls(model, prompt=prompt)
        if not tiny_random:
            raise ValueError(f"--extra-model {model} is a tiny random model: it needs --tiny-random")
        return cls(tiny_vlm.tiny_vlm_source(architecture), name=tiny_vlm.LABELS[architecture], prompt=prompt,
                   untrained=True)

    @property
    def label(self) -> str:
        return f"{self.name} (extra)"

    def notes(self, settings: DecodeSettings | None = None) -> tuple[str, ...]:
        """Not part of the study; the model; its licence (once loaded: read from its model card); the prompt."""
        if not self.is_loaded:
            return "Not part of the study", f"Model: {self.name or '(none named)'}", f"Prompt: {self._prompt(settings)}"
        asked = self._asked(settings)
        return (
            "Not part of the study",
            f"Model: {self.name}",
            f"Licence: {self.licence or 'not stated in its model card'}",
            f"Prompt: {asked}" if asked else "Prompt: none (a plain captioner, given the image alone)",
        )

    # ------------------------------------------------------------ loading

    def load_in_background(self, before: Callable[[], None] | None = None) -> threading.Thread:
        """Load on a thread of its own (after `before`, e.g. the study's warm-up) at low CPU priority.
        Until it is done, captioning raises `StillLoading` at once: nothing waits for this slot."""
        def run():
            if before is not None:
                before()
            lower_this_threads_priority()
            torch.set_num_threads(1)  # this thread's torch work (the warm-up) leaves the cores to captions
            start = time.perf_counter()
            try:
                self.load()
            except VariantUnavailable as error:  # its card says so, with the fix
                log.warning("%s", error)
                return
            try:
                with torch.inference_mode():  # two tokens: first-call costs paid, the cores soon free
                    self.model.generate(**self._inputs([Image.new("RGB", (64, 64))]), max_new_tokens=2, do_sample=False)
            except Exception:  # a caption will fail too, and its card will say why
                log.exception("%s: the warm-up caption failed", self.name)
                return
            log.info("%s is ready (loaded and warmed up in %.1f s)", self.label, time.perf_counter() - start)

        self._loader = threading.Thread(target=run, name="cxrcap-extra-load", daemon=True)
        self._loader.start()
        return self._loader

    def load(self) -> None:
        loader = self._loader
        if loader is not None and loader.is_alive() and threading.current_thread() is not loader and not self.is_loaded:
            size = f" ({self.size.bytes_as(self.dtype) / 2**30:.1f} GB of weights)" if self.size else ""
            raise StillLoading(EXTRA, f"{self.name} is still loading in the background{size}; the study's "
                               "four do not wait for it", "caption again in a moment")
        super().load()

    def _load(self):
        if not self.source:
            raise VariantUnavailable(EXTRA, "no model is named")
        where = f"{self.name!r}"
        if not is_local(self.source) and looks_like_a_path(self.source):
            raise VariantUnavailable(EXTRA, f"the folder {where} does not exist", "name an existing folder or a hub id")
        try:
            processor, model = load_checkpoint(
                self.source, AutoModelForImageTextToText, check=lambda config: self._check(config, where),
                processor=lambda: AutoProcessor.from_pretrained(self.source, trust_remote_code=self.trust_remote_code,
                                                                backend=BACKEND),  # as the four: cxrcap.preprocessing
                dtype=self.dtype, trust_remote_code=self.trust_remote_code,
            )
        except ConfigUnreadable as error:
            raise _config_error(error.__cause__, where, self.source) from None
        except BrokenCheckpoint as error:  # missing, wrong-shaped or damaged weights, named
            raise VariantUnavailable(EXTRA, f"{where} {error}", "download it again, or choose another model") from None
        except FilesUnreadable as error:  # a file missing or unreadable, a processor this version lacks, ...
            problem = _folder_problem(Path(self.source).expanduser()) if is_local(self.source) else None
            reason, fix = problem or (f"could not be loaded ({library_text(error.__cause__)})",
                                      "check the model's files, or choose another model")
            raise VariantUnavailable(EXTRA, f"{where} {reason}", fix) from None
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise VariantUnavailable(EXTRA, f"{where} has no tokenizer in its processor", "choose another model")
        tokenizer.padding_side = "left"  # decoder-only models continue each prompt from its end
        self._instructable = bool(getattr(processor, "chat_template", None))
        self._task_prompt = TASK_PROMPTS.get(model.config.model_type)
        model.to(self.device).eval()
        return processor, model

    def _check(self, config, where: str) -> None:
        """Before the weights load: a model transformers runs for image-text-to-text, that fits in memory."""
        model_type = config.model_type
        auto_map = getattr(config, "auto_map", None) or {}
        if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and "AutoModelForImageTextToText" not in auto_map:
            raise VariantUnavailable(
                EXTRA, f"{where} is a {model_type!r} model, not a vision-language model transformers can run for "
                "image-text-to-text", "choose a model whose hub page lists the image-text-to-text (or image-to-text) task",
            )
        self.size = weights_size(self.source)
        if self.size is None:
            log.warning("%s: the size of its weights is unknown (no safetensors weights found), so it loads "
                        "without the memory check", self.name)
        else:
            check_fits(self.name, self.size, self.device, self.dtype, free_memory(self.device))
        self.licence = read_licence(self.source)

    # ------------------------------------------------------------ captioning

    @property
    def preprocessing_key(self) -> str:
        return f"{EXTRA_ID}:{self.source}"  # never shared: the processor needs the prompt too

    def preprocess(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """The images themselves: the processor runs per batch, with the prompt, in `generate_ids`."""
        return list(images)

    def _prompt(self, settings: DecodeSettings | None) -> str:
        return (settings.prompt if settings and settings.prompt else self.prompt).strip()

    def own_settings(self, settings: DecodeSettings) -> DecodeSettings:
        """The prompt as asked: none given and the default written out are the same request."""
        return dataclasses.replace(settings, prompt=self._prompt(settings))

    def _asked(self, settings: DecodeSettings | None) -> str | None:
        """What the loaded model is given as text: the prompt, its family's task prompt, or nothing."""
        return self._prompt(settings) if self._instructable else self._task_prompt

    def _inputs(self, images: list[Image.Image], settings: DecodeSettings | None = None):
        processor = self.processor
        asked = self._asked(settings)
        if self._instructable:
            # Tokenized by the processor's own chat path: a template that writes the BOS (Gemma 3)
            # turns the tokenizer's off; rendering text, then tokenizing it, gave such models two.
            turns = [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": asked}]}]
                     for image in images]
            inputs = processor.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                   return_tensors="pt", processor_kwargs={"padding": True})
        elif asked:
            inputs = processor(images=images, text=[asked] * len(images), padding=True, return_tensors="pt")
        else:
            inputs = processor(images=images, return_tensors="pt")
        return inputs.to(self.device, dtype=self.dtype)

    @torch.inference_mode()
    def generate_ids(self, images: list[Image.Image], settings: DecodeSettings = DecodeSettings()) -> torch.Tensor:
        """The answer's token ids only: what a decoder-only model echoes of its prompt is cut off."""
        inputs = self._inputs(images, settings)
        # An asked model answers at length (the caption is cut from it); a plain captioner captions.
        tokens = max(settings.max_new_tokens, ANSWER_TOKENS) if self._asked(settings) else settings.max_new_tokens
        output = self.model.generate(
            **inputs,
            max_new_tokens=tokens,
            num_beams=settings.num_beams,
            do_sample=False,
        )
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            output = output[:, inputs["input_ids"].shape[1]:]
        return output


def _config_error(error: Exception, where: str, source: str) -> VariantUnavailable:
    """What went wrong reading a model's config, and the fix, from transformers' and the hub's errors."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    causes, cause = [], error
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(cause) for cause in causes)
    if any(isinstance(cause, GatedRepoError) for cause in causes) or "gated repo" in text:
        return VariantUnavailable(
            EXTRA, f"{where} is gated: its authors ask each user to accept its licence first",
            f"accept it on https://huggingface.co/{source}, then set HF_TOKEN to an access token of that account",
        )
    if "trust_remote_code" in text:
        return VariantUnavailable(
            EXTRA, f"{where} needs its own Python code from the hub to run, which is refused by default "
            "because that code would run on this machine with the app's rights",
            f"choose a model transformers supports natively; or, if you have read and trust its code, set "
            f"{TRUST_REMOTE_CODE}=1",
        )
    if any(isinstance(cause, RepositoryNotFoundError) for cause in causes):
        return VariantUnavailable(EXTRA, f"no model {where} on the hub (or it is private)",
                                  "check the id; for a private model set HF_TOKEN")
    if is_local(source):
        reason, fix = _folder_problem(Path(source).expanduser()) or (
            f"has no readable model config ({library_text(error)})",
            "point it at a folder saved with save_pretrained, or a hub id")
        return VariantUnavailable(EXTRA, f"the folder {where} {reason}", fix)
    if "model_type" in text or "Unrecognized model" in text:
        return VariantUnavailable(EXTRA, f"{where} is a model type this transformers version does not know",
                                  "upgrade transformers, or choose another model")
    return VariantUnavailable(
        EXTRA, f"{where} is not in the local cache and the Hugging Face hub cannot be reached",
        "connect to the hub once to download it (or name a local copy)",
    )


def _folder_problem(folder: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) with a model folder's files, named by file name: a JSON file that
    does not parse, or a part of the model (`MODEL_FILES`) none of whose files is there; None
    when its files look whole (the library's own error is then all there is to say)."""
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_bytes())
        except ValueError as error:  # JSONDecodeError, or bytes that are not text
            detail = f"{error.msg} at line {error.lineno}, column {error.colno}" \
                if isinstance(error, json.JSONDecodeError) else "it is not text"
            return (f"has a {path.name} that is not valid JSON ({detail})",
                    f"replace {path.name} with the model's own copy (download it again, or save the model again)")
    for what, names, fix in MODEL_FILES:
        if not any((folder / name).is_file() for name in names):
            return f"has no {what} ({' or '.join(names)})", fix
    return None
