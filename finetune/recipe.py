"""The seed's training recipe, one dataclass, and how it becomes `TrainingArguments`.

The defaults are the values the seed trained `git-base-ft` and `blip-base-ft` with; every field but
the fixed optimizer and loss is a command-line option of `python -m finetune` (`--learning_rate 1e-4`
or `--learning-rate 1e-4`).

Two profiles run the same recipe:
- naive: the recipe as the seed ran it (fp16 on CUDA, batch 8 x accumulation 2, images
  pre-processed in the training loop, no loader workers, plain AdamW);
- fast: the same effective batch and optimisation without the waste: one batch of 16 instead of
  two of 8, bf16 where the GPU has it, fused AdamW, TF32 matmuls, pre-processed tensors cached once,
  loader workers with pinned memory that live across epochs, larger evaluation batches; and, outside
  this file, SDPA attention when transformers has it for the family (5.24 has none for GIT or
  BLIP) and torch.compile on request (`--torch-compile`: it costs about a minute to compile).

The optimizer and the loss are fixed, not options (fields with `init=False`, so the printed recipe,
`recipe.json` and the model card still show them): AdamW (both profiles give Trainer an
`adamw_torch*` optim), and the token-level cross-entropy over the caption tokens with the base
checkpoint's own label smoothing (BLIP's `text_config.label_smoothing`; GIT has none), divided by
the caption tokens of the whole accumulated batch, so both profiles make the same updates
(`finetune/loss.py`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from transformers import TrainingArguments

from cxrcap.captioner import DecodeSettings
from cxrcap.metrics import CORPUS_KEYS

BEST_METRIC_CHOICES = ("loss", *CORPUS_KEYS)
FAST_EVAL_BATCH = 64  # generation is the slow part of evaluation; big batches keep the GPU busy
FAST_MAX_LOADER_WORKERS = 8


@dataclass
class Recipe:
    """Hyperparameters of the fine-tuning; defaults are the seed's."""

    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    # Fixed, not options (init=False: no command-line option, no constructor argument), yet shown and saved.
    optimizer: str = field(default="adamw", init=False)  # AdamW, decoupled weight decay: Profile.optim is adamw_torch*
    weight_decay: float = field(default=1e-8, metadata={"help": "AdamW weight decay"})
    num_train_epochs: float = field(default=10, metadata={"help": "passes over the training split"})
    loss: str = field(default="cross_entropy", init=False)  # the models' own next-token cross-entropy, padding ignored
    mixed_precision: Literal["fp16", "no"] = field(
        default="fp16", metadata={"help": "fp16 autocast with loss scaling; applied on CUDA only"}
    )
    per_device_train_batch_size: int = field(default=8, metadata={"help": "training images per step per device"})
    per_device_eval_batch_size: int = field(default=2, metadata={"help": "validation images per step per device"})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "steps whose gradients add up to one update"})
    # Trainer's defaults, which the seed kept:
    lr_scheduler_type: str = field(default="linear", metadata={"help": "learning-rate schedule (Trainer's names)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    seed: int = field(default=42, metadata={"help": "random seed (weights of new heads, shuffling)"})
    # What the recipe needs beyond the optimiser: caption length, validation and model selection.
    max_caption_tokens: int = field(default=128, metadata={"help": "captions are truncated to this many tokens"})
    centre_crop: bool = field(
        default=False, metadata={"help": "train on the released processor's centre crop (git-base: shortest edge 224, "
                                         "then the centre 224 x 224) instead of the whole image resized to a square "
                                         "(the study's choice, and the default)"}
    )
    eval_max_new_tokens: int = field(
        default=DecodeSettings().max_new_tokens, metadata={"help": "validation captions: most new tokens (as the app)"}
    )
    eval_num_beams: int = field(default=DecodeSettings().num_beams, metadata={"help": "validation captions: beams"})
    best_metric: str = field(
        default="loss",
        metadata={"help": "validation metric that picks the checkpoint kept", "choices": BEST_METRIC_CHOICES},
    )

    def __post_init__(self):
        if self.best_metric not in BEST_METRIC_CHOICES:
            raise ValueError(f"best_metric must be one of {', '.join(BEST_METRIC_CHOICES)}, not {self.best_metric!r}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.learning_rate > 0 or not self.num_train_epochs > 0:
            raise ValueError("learning_rate and num_train_epochs must be positive")

    @property
    def effective_batch_size(self) -> int:
        """Images per optimiser update on one device (times the number of devices when there are several)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return "\n".join(f"  {name:<28} {value}" for name, value in self.to_dict().items())


@dataclass(frozen=True)
class Profile:
    """How the recipe runs on this machine: what the fast profile changes, and nothing else."""

    name: str  # "naive" | "fast"
    per_device_train_batch_size: int
    per_device_eval_batch_size: int
    gradient_accumulation_steps: int
    precision: str  # "fp16" | "bf16" | "fp32"
    optim: str  # a TrainingArguments optimizer name
    loader_workers: int
    cache_tensors: bool
    tf32: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _cuda_precision(recipe: Recipe, fast: bool) -> str:
    if not torch.cuda.is_available():
        return "fp32"  # fp16 autocast is a CUDA feature; bf16 is slower than fp32 on the CPUs we measured
    if recipe.mixed_precision == "no":
        return "fp32"
    if fast and torch.cuda.is_bf16_supported():
        return "bf16"  # same range as fp32: no loss scaling, no overflow skips
    return "fp16"


def make_profile(recipe: Recipe, *, fast: bool) -> Profile:
    if not fast:
        return Profile(
            name="naive",
            per_device_train_batch_size=recipe.per_device_train_batch_size,
            per_device_eval_batch_size=recipe.per_device_eval_batch_size,
            gradient_accumulation_steps=recipe.gradient_accumulation_steps,
            precision=_cuda_precision(recipe, fast=False),
            optim="adamw_torch",
            loader_workers=0,
            cache_tensors=False,
            tf32=False,
        )
    cuda = torch.cuda.is_available()
    return Profile(
        name="fast",
        # One batch of the effective size instead of several accumulated: same update, fewer kernel launches.
        per_device_train_batch_size=recipe.effective_batch_size,
        per_device_eval_batch_size=max(recipe.per_device_eval_batch_size, FAST_EVAL_BATCH),
        gradient_accumulation_steps=1,
        precision=_cuda_precision(recipe, fast=True),
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        loader_workers=min(FAST_MAX_LOADER_WORKERS, max(1, (os.cpu_count() or 2) // 2)),
        cache_tensors=True,
        tf32=cuda and torch.cuda.get_device_capability()[0] >= 8,
    )


def training_arguments(
    recipe: Recipe,
    profile: Profile,
    output_dir: str,
    *,
    logging_steps: int = 10,
    report_to: str = "none",
    torch_compile: bool = False,
    evaluate: bool = True,
    max_steps: int = -1,
) -> TrainingArguments:
    """The recipe under a profile as `TrainingArguments` (names as in transformers 5)."""
    metric = "eval_loss" if recipe.best_metric == "loss" else f"eval_{recipe.best_metric}"
    per_epoch = "epoch" if evaluate else "no"
    return TrainingArguments(
        output_dir=output_dir,
        learning_rate=recipe.learning_rate,
        optim=profile.optim,
        weight_decay=recipe.weight_decay,
        num_train_epochs=recipe.num_train_epochs,
        max_steps=max_steps,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps,
        max_grad_norm=recipe.max_grad_norm,
        seed=recipe.seed,
        per_device_train_batch_size=profile.per_device_train_batch_size,
        per_device_eval_batch_size=profile.per_device_eval_batch_size,
        gradient_accumulation_steps=profile.gradient_accumulation_steps,
        fp16=profile.precision == "fp16",
        bf16=profile.precision == "bf16",
        tf32=profile.tf32 or None,
        torch_compile=torch_compile,
        dataloader_num_workers=profile.loader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned host memory speeds up copies to a GPU only
        dataloader_persistent_workers=profile.loader_workers > 0,
        # GIT and BLIP use every parameter in each step: DDP can skip its search for unused ones.
        ddp_find_unused_parameters=False if profile.name == "fast" else None,
        eval_strategy=per_epoch,
        save_strategy=per_epoch,
        load_best_model_at_end=evaluate,
        metric_for_best_model=metric if evaluate else None,
        greater_is_better=recipe.best_metric != "loss",
        save_total_limit=1,  # with load_best_model_at_end: the best and the latest are kept
        logging_strategy="steps",
        logging_steps=logging_steps,
        logging_first_step=True,
        report_to=report_to,
        remove_unused_columns=False,  # the collator needs the image and caption columns
    )
