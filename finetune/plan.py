"""What a fine-tuning run is, built once: its options, the recipe, and what they make on this machine.

`RunOptions` says what to train, on which data and where to; `make_plan` turns the options and
the recipe into a `Plan`: the profile this machine runs the recipe with (`recipe.make_profile`),
the `TrainingArguments`, and the run's identity that `--resume` checks, each built once per run.
`Prepared` is a trainer ready to train and what the outputs describe. `train` builds them and
`card` writes them up; both import this module, never each other.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from transformers import Trainer, TrainingArguments
from transformers.integrations import get_reporting_integration_callbacks

from cxrcap.sources import DataError, SplitData, filters_chest_xrays
from cxrcap.variants import get_variant

from .recipe import Profile, Recipe, make_profile, training_arguments


class FinetuneError(RuntimeError):
    """The run cannot start or continue; the message says why and what to do."""


@dataclass
class RunOptions:
    """What to train, on which data, and where the results go (the recipe is separate)."""

    family: Literal["git", "blip"] = field(metadata={"help": "model family to fine-tune"})
    data: str = field(
        metadata={"help": "a ROCO checkout, an image folder with a captions CSV, or a hub dataset id"}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "where the model goes; if not given, checkpoints/<family>-base-ft, where the app looks"}
    )
    base_model: str | None = field(
        default=None, metadata={"help": "hub id or folder of the model to start from; if not given, the family's base variant"}
    )
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_split: str = field(default="validation", metadata={"help": "split to validate on each epoch"})
    chest_only: bool | None = field(
        default=None, metadata={"help": "keep only chest X-rays (cxrcap.chest_filter's rule): true or false; if not given, "
                                        "true for ROCO and hub datasets, false for image folders"}
    )
    image_column: str | None = field(default=None, metadata={"help": "CSV/hub column of image paths"})
    caption_column: str | None = field(default=None, metadata={"help": "CSV/hub column of captions"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N training rows"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use only the first N validation rows"})
    max_steps: int = field(default=-1, metadata={"help": "stop after N updates (overrides the epochs; for trials)"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})
    fast: bool = field(default=False, metadata={"help": "same recipe without the waste (see finetune/recipe.py)"})
    torch_compile: bool = field(
        default=False, metadata={"help": "compile the model (pays off only for long runs: ~1 min to compile)"}
    )
    push_to_hub: str | None = field(default=None, metadata={"help": "also upload the result to this hub repo"})
    logging_steps: int = field(default=10, metadata={"help": "log the training loss every N updates"})
    report_to: str = field(default="none", metadata={"help": "experiment trackers (Trainer's names), or none"})

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        self.base_model = self.base_model or get_variant(f"{self.family}-base").source
        self.output_dir = self.output_dir or get_variant(f"{self.family}-base-ft").default_source

    @property
    def variant_id(self) -> str:
        return f"{self.family}-base-ft"


class RefusedValue(ValueError):
    """A value `TrainingArguments` refuses (e.g. an unknown scheduler): the message names it."""


@dataclass(frozen=True)
class Plan:
    """The options and the recipe, with the profile and the `TrainingArguments` they make here."""

    options: RunOptions
    recipe: Recipe
    profile: Profile
    args: TrainingArguments
    evaluate: bool = True  # validation each epoch (benchmarks of training alone turn it off)

    @functools.cached_property
    def identity(self) -> dict:
        """`run_identity`, read once (it resolves the data source)."""
        return run_identity(self.options, self.recipe, self.profile)


def make_plan(options: RunOptions, recipe: Recipe, *, evaluate: bool = True) -> Plan:
    """The run's plan; a `RefusedValue` says which value Trainer refuses, before any work is done."""
    profile = make_profile(recipe, fast=options.fast)
    try:
        args = training_arguments(recipe, profile, options.output_dir, logging_steps=options.logging_steps,
                                  report_to=options.report_to, torch_compile=options.torch_compile, evaluate=evaluate,
                                  max_steps=options.max_steps)
        get_reporting_integration_callbacks(args.report_to)  # an unknown tracker would fail only once Trainer is built
    except ValueError as error:
        raise RefusedValue(str(error)) from error
    return Plan(options, recipe, profile, args, evaluate)


def run_identity(options: RunOptions, recipe: Recipe, profile: Profile) -> dict:
    """Everything that shapes the training trajectory: a resumed run must match it exactly.
    The chest filter as applied, not as asked (`--chest_only` unset means the source's default)."""
    shaping = ("family", "base_model", "data", "train_split", "eval_split", "image_column",
               "caption_column", "max_train_samples", "max_eval_samples", "max_steps")
    try:
        chest_only = filters_chest_xrays(options.data) if options.chest_only is None else options.chest_only
    except DataError as error:
        raise FinetuneError(f"cannot read the data: {error}") from None
    return {
        "run": {name: getattr(options, name) for name in shaping} | {"chest_only": chest_only},
        "recipe": recipe.to_dict(),
        "profile": profile.to_dict(),
    }


@dataclass
class Prepared:
    """A trainer ready to train, and what the outputs describe."""

    trainer: Trainer  # train.CaptionTrainer
    options: RunOptions
    recipe: Recipe
    profile: Profile
    identity: dict
    train_split: SplitData
    eval_split: SplitData
    overlap: list[str]  # ids or identical images in both splits (cxrcap.sources' check)
    attention: str
    cache_seconds: float
    preprocessing: dict[str, str]  # what the processor does to an image (cxrcap.preprocessing.describe)
    label_smoothing: float  # the loss's, from the base checkpoint (finetune.loss)
