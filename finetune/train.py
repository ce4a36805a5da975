"""Fine-tune a base captioner on captioned X-rays with Hugging Face `Trainer`; write an app-ready folder.

`run(options, recipe)` does the whole job: read the splits through `cxrcap.sources`, load the base
model, train with the recipe, evaluate each epoch (validation loss, and captions generated from
the pixels alone scored with `cxrcap.metrics`), keep the best checkpoint by the recipe's
`best_metric`, and write into `options.output_dir`: the model and processor in the hub layout,
`recipe.json`, `training_log.json`, `training_curves.png` and the model card `README.md` (those
four by `finetune.card`).

Several GPUs: the same command under `accelerate launch -m finetune ...` (or
`torchrun --nproc_per_node N -m finetune ...`) trains data-parallel with no code change; the
recipe's batch sizes are per device, so N GPUs update with N x 16 images.

Resuming: every epoch leaves a `checkpoint-<step>` folder with the optimizer, scheduler and RNG
states; `--resume` continues from the latest one and ends on the same global step as an
uninterrupted run. The folders are removed once a run finishes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from transformers import EvalPrediction, PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from cxrcap.captioner import MODEL_CLASSES, pick_dtype
from cxrcap.checkpoints import ConfigUnreadable, FilesUnreadable, load_checkpoint
from cxrcap.sources import DataError, SplitData, check_split_overlap, describe_source, load_split
from cxrcap.errors import first_line
from cxrcap.metrics import corpus_scores, warm_up
from cxrcap.preprocessing import describe, load_processor
from cxrcap.runs import differences, push_folder
from cxrcap.variants import get_variant
from cxrcap.weights import BrokenCheckpoint

from .card import RECIPE_FILE, overlap_note, write_json, write_outputs
from .collate import IGNORE_INDEX, CaptionCollator, cache_tensors, undecoded
from .loss import caption_loss_function, label_smoothing
from .plan import FinetuneError, Plan, Prepared, RunOptions, make_plan
from .recipe import Recipe

FAST_PAD_MULTIPLE = 8  # caption lengths in steps of 8: tensor-core friendly, fewer shapes to compile


# ---------------------------------------------------------------------------------------------
# Data and model


def load_splits(options: RunOptions) -> tuple[SplitData, SplitData]:
    splits = []
    for name, limit in ((options.train_split, options.max_train_samples), (options.eval_split, options.max_eval_samples)):
        try:
            split = load_split(options.data, name, chest_only=options.chest_only,
                               image_column=options.image_column, caption_column=options.caption_column)
        except DataError as error:
            raise FinetuneError(f"cannot read the {name} split: {error}") from None
        if len(split.dataset) == 0:
            raise FinetuneError(
                f"the {name} split of {options.data} has no captioned image to use ({split.rows_read} rows read, "
                f"{split.kept} kept by the filter, {len(split.missing_images)} of those without an image file)"
            )
        if limit is not None:
            split.dataset = split.dataset.select(range(min(limit, len(split.dataset))))
        splits.append(split)
    return splits[0], splits[1]


def load_base_model(family: str, source: str, *, prefer_sdpa: bool, whole_image: bool
                    ) -> tuple[object, torch.nn.Module, str]:
    """Processor (resizing the whole image to a square unless `whole_image=False`: cxrcap.preprocessing),
    model and attention implementation of the base model."""
    def check(config) -> None:
        if config.model_type != family:
            raise FinetuneError(f"the base model {source!r} is a {config.model_type!r} model, not {family!r}")

    def load(**weights) -> tuple[object, torch.nn.Module]:
        return load_checkpoint(source, MODEL_CLASSES[family], check=check,
                               processor=lambda: load_processor(source, whole=whole_image), **weights)

    try:  # load_weights refuses a checkpoint that would leave weights random: training would start from noise
        if prefer_sdpa:
            try:
                return *load(attn_implementation="sdpa"), "sdpa"
            except FilesUnreadable as error:  # a ValueError: transformers 5.24 has no SDPA for GIT or BLIP; a later one may
                if not isinstance(error.__cause__, ValueError):
                    raise
        return *load(), "eager"
    except (ConfigUnreadable, FilesUnreadable) as error:
        raise FinetuneError(
            f"cannot load the base model {source!r} ({first_line(error.__cause__, 200)}); "
            "pass --base-model a local folder, or connect to the Hugging Face hub once to cache it"
        ) from None
    except BrokenCheckpoint as error:
        raise FinetuneError(f"the base model {source!r} {error}") from None


def decoder_start_token_id(family: str, model) -> int | None:
    # BLIP's forward() keeps the tokenizer's [CLS] where generate() puts [DEC]; GIT uses [CLS] both ways.
    return model.config.text_config.bos_token_id if family == "blip" else None


# ---------------------------------------------------------------------------------------------
# Trainer


class CaptionTrainer(Trainer):
    """`Trainer` whose evaluation also captions every validation image from its pixels alone.

    Seq2SeqTrainer's `predict_with_generate` would hand the reference caption to `generate()`;
    here only `pixel_values` go in, as in the app, and in the app's precision (`in_app_precision`).
    The generated ids and the labels reach `compute_metrics` through Trainer's own gathering, so
    several GPUs work unchanged.
    """

    def __init__(self, *args, generation: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.generation = generation
        # Made at the first evaluation and given the current weights at each (`in_app_precision`); in 16-bit
        # it is a copy that stays allocated between evaluations, half the size of the fp32 weights.
        self._captioning_model = None
        if self.compute_loss_func is not None:
            # The loss comes from the logits (finetune.loss): the forward pass gets no loss arguments.
            self.model_accepts_loss_kwargs = False

    def get_train_dataloader(self):
        return self._seeded(super().get_train_dataloader())

    def get_eval_dataloader(self, eval_dataset=None):
        return self._seeded(super().get_eval_dataloader(eval_dataset))

    def _seeded(self, loader):
        """The loader with a random generator of its own, seeded from the recipe.

        Each time a DataLoader starts an iterator it draws its workers' base seed from its generator,
        by default torch's global one. With persistent loader workers (--fast) an uninterrupted run
        starts its iterators once, but a resumed run starts them again after restoring the global
        state, which shifts every later dropout mask. With their own generator the loaders leave the
        global stream alone, whether the run was resumed or not, and the workers' seeds follow the recipe.
        """
        torch_loader = getattr(loader, "base_dataloader", loader)  # accelerate wraps the torch DataLoader
        torch_loader.generator = torch.Generator().manual_seed(self.args.seed)
        return loader

    def evaluate(self, *args, **kwargs):
        self._captioning_model = in_app_precision(self.accelerator.unwrap_model(self.model),
                                                  reuse=self._captioning_model)
        return super().evaluate(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, _, _ = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)
        if prediction_loss_only:
            return loss, None, None
        inputs = self._prepare_inputs(inputs)
        captioner = self._captioning_model
        with torch.no_grad():
            generated = captioner.generate(pixel_values=inputs["pixel_values"].to(captioner.dtype), do_sample=False,
                                           **self.generation)
        return loss, generated, inputs["labels"]


def in_app_precision(model: PreTrainedModel, dtype: torch.dtype | None = None,
                     reuse: PreTrainedModel | None = None) -> PreTrainedModel:
    """The model to caption validation images with: the training weights in the precision the app
    would load them in on this device (`cxrcap.captioner.pick_dtype`: bf16 or fp16 on a GPU, fp32 on a
    CPU, or `CXRCAP_DTYPE`), so the model card's validation captions are the app's. In fp32 that is the
    model itself; else a plain copy in `dtype`: the training model may run under mixed-precision
    autocast, which computes in a mix of precisions that the app never uses. `reuse`: the copy an
    earlier call returned, given the current weights instead of building (and allocating) a new model
    at every evaluation.
    """
    dtype = dtype or pick_dtype(model.device)
    if dtype == model.dtype:
        return model
    copy = reuse
    if copy is None:
        with torch.device(model.device):
            copy = type(model)(model.config).to(dtype).eval()
        copy.generation_config = model.generation_config
    copy.load_state_dict(model.state_dict())  # cast to the copy's dtype
    return copy


def decode(tokenizer, ids: np.ndarray) -> list[str]:
    ids = np.where(ids == IGNORE_INDEX, tokenizer.pad_token_id, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def caption_metrics(tokenizer):
    """compute_metrics: generated captions vs the reference captions, by `cxrcap.metrics`.

    References are the training targets decoded back (lower case, truncated to the recipe's
    caption length): both sides then share the tokenizer's normalisation.
    """

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        return corpus_scores(decode(tokenizer, prediction.predictions), decode(tokenizer, prediction.label_ids))

    return compute


class SaveRecipe(TrainerCallback):
    """Write the run's identity (recipe, profile, data) into every checkpoint, for --resume to check."""

    def __init__(self, identity: dict):
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            write_json(folder / RECIPE_FILE, self.identity)


def prepare(plan: Plan, *, callbacks=()) -> Prepared:
    """Everything up to `trainer.train()`: data, model, collator, checks."""
    options, recipe, profile, args, evaluate = plan.options, plan.recipe, plan.profile, plan.args, plan.evaluate
    if evaluate:
        warm_up()  # METEOR's WordNet loads in the background while the model trains its first epoch
    identity = plan.identity
    train_split, eval_split = load_splits(options)
    overlap = check_split_overlap([train_split, eval_split]) if evaluate else []
    processor, model, attention = load_base_model(options.family, options.base_model, prefer_sdpa=options.fast,
                                                  whole_image=not recipe.centre_crop)
    collator = CaptionCollator(processor, recipe.max_caption_tokens, decoder_start_token_id(options.family, model),
                               pad_to_multiple_of=FAST_PAD_MULTIPLE if options.fast else None)
    train_set, eval_set, cache_seconds = undecoded(train_split.dataset), undecoded(eval_split.dataset), 0.0
    if profile.cache_tensors:
        start = time.perf_counter()
        dtype = "float32" if profile.precision == "fp32" else "float16"
        with args.main_process_first(desc="pre-processing"):
            train_set = cache_tensors(train_set, processor, recipe.max_caption_tokens, dtype=dtype,
                                      num_proc=profile.loader_workers if len(train_set) >= 1000 else None)
            eval_set = cache_tensors(eval_set, processor, recipe.max_caption_tokens, dtype=dtype) if evaluate else eval_set
        cache_seconds = time.perf_counter() - start
    trainer = CaptionTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train_set,
        eval_dataset=eval_set if evaluate else None,
        processing_class=processor,
        compute_metrics=caption_metrics(processor.tokenizer),
        callbacks=[SaveRecipe(identity), *callbacks],
        compute_loss_func=caption_loss_function(options.family, model),
        generation={"max_new_tokens": recipe.eval_max_new_tokens, "num_beams": recipe.eval_num_beams},
    )
    return Prepared(trainer, options, recipe, profile, identity, train_split, eval_split, overlap, attention,
                    cache_seconds, describe(processor.image_processor), label_smoothing(options.family, model))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoints_in(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return sorted((p for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir()), key=lambda p: p.name)


def resume_checkpoint(output_dir: Path, identity: dict) -> Path:
    """The latest checkpoint in `output_dir`, checked to be whole and to belong to this run."""
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        raise FinetuneError(f"--resume: no {PREFIX_CHECKPOINT_DIR}-* folder in {output_dir} to continue from; "
                            "run without --resume to start training")
    check_checkpoint(Path(last), identity)
    return Path(last)


def check_checkpoint(folder: Path, identity: dict) -> None:
    fix = f"delete {folder} to resume from the checkpoint before it, or start again without --resume"
    state_file, recipe_file = folder / "trainer_state.json", folder / RECIPE_FILE
    if not state_file.is_file():
        raise FinetuneError(f"{folder} is incomplete: no trainer_state.json (the run stopped while saving it?); {fix}")
    for path in (state_file, recipe_file, folder / "config.json"):
        if path.is_file():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise FinetuneError(f"{path} is corrupt (not JSON); {fix}") from None
    if not recipe_file.is_file():
        raise FinetuneError(f"{folder} was not written by `python -m finetune` (no {RECIPE_FILE}); "
                            "resume only in the output folder of the same run")
    saved = json.loads(recipe_file.read_text(encoding="utf-8"))
    changed = differences(saved, identity)  # run, recipe, profile: most telling first
    if changed:
        raise FinetuneError(f"{folder} belongs to a different run ({'; '.join(changed[:5])}); "
                            "resume with the options it was started with, or use another --output-dir")
    _check_weights(folder, fix)


def _check_weights(folder: Path, fix: str) -> None:
    from safetensors import safe_open

    weights = list(folder.glob("*.safetensors"))
    if not weights:
        raise FinetuneError(f"{folder} has no model weights (*.safetensors); {fix}")
    for path in weights:
        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception as error:  # safetensors raises its own error type for truncated/garbled headers
            raise FinetuneError(f"{path} is corrupt ({error}); {fix}") from None
    for path in [*folder.glob("*.pt"), *folder.glob("*.pth")]:
        # torch.save writes zip archives with the directory at the end: a cut-off file has none
        if not zipfile.is_zipfile(path):
            raise FinetuneError(f"{path} is corrupt (truncated or not a torch file); {fix}")


# ---------------------------------------------------------------------------------------------
# The run


def run(options: RunOptions, recipe: Recipe, *, callbacks=()) -> Path:
    """Train and write the output folder; returns its path. A `RefusedValue` (before any work) names
    a value Trainer refuses."""
    plan = make_plan(options, recipe)
    output_dir = Path(options.output_dir)
    if options.push_to_hub:
        check_can_push()
    checkpoint = None
    if options.resume:  # checked before any data is read: a wrong checkpoint fails fast
        checkpoint = resume_checkpoint(output_dir, plan.identity)
    elif checkpoints_in(output_dir):
        raise FinetuneError(f"{output_dir} holds checkpoints of an interrupted run: pass --resume to continue it, "
                            "or delete them (or choose another --output-dir) to start again")
    main_process = os.environ.get("RANK", "0") == "0"  # set by accelerate launch and torchrun; absent: one process
    if main_process:
        print(describe_recipe(plan), flush=True)
    prepared = prepare(plan, callbacks=callbacks)
    trainer = prepared.trainer
    if main_process:
        print(describe_data(prepared, checkpoint), flush=True)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    trainer.save_model(str(output_dir))  # the best checkpoint's weights (load_best_model_at_end) + processor
    if main_process:
        write_outputs(prepared, output_dir, seconds)
        for folder in checkpoints_in(output_dir):
            shutil.rmtree(folder)  # only needed to resume; the run is complete
        if options.push_to_hub:
            push(output_dir, options.push_to_hub)
        print(f"wrote {output_dir} (load it in the app as {options.variant_id}: it is the default folder, "
              f"or set {get_variant(options.variant_id).env_var}={output_dir})")
    return output_dir


def describe_recipe(plan: Plan) -> str:
    options, profile = plan.options, plan.profile
    return "\n".join([
        f"fine-tuning {options.family} from {options.base_model} -> {options.output_dir}",
        "recipe (effective):",
        plan.recipe.describe(),
        f"profile: {profile.name}: {profile.precision}, batch {profile.per_device_train_batch_size} x accumulation "
        f"{profile.gradient_accumulation_steps} per device, eval batch {profile.per_device_eval_batch_size}, "
        f"optimizer {profile.optim}, {profile.loader_workers} loader workers, tensors cached: {profile.cache_tensors}, "
        f"torch.compile: {options.torch_compile}",
    ])


def describe_data(prepared: Prepared, checkpoint: Path | None) -> str:
    options, args = prepared.options, prepared.trainer.args
    lines = [
        f"data: {describe_source(options.data)}",
        *(f"  {split.name}: {len(split.dataset)} images ({split.rows_read} rows read, {split.kept} kept"
          f"{' as chest X-rays' if prepared.train_split.chest_filtered else ' with no chest X-ray filter'}, "
          f"{len(split.missing_images)} without an image file)"
          for split in (prepared.train_split, prepared.eval_split)),
        f"devices: {args.device} x{args.world_size}; attention: {prepared.attention}",
    ]
    if prepared.overlap:
        lines.append(f"warning: {overlap_note(prepared)}")
        lines += [f"  {report}" for report in prepared.overlap[:3]]
    if prepared.cache_seconds:
        lines.append(f"pre-processed both splits once in {prepared.cache_seconds:.1f} s")
    if checkpoint:
        lines.append(f"resuming from {checkpoint}")
    return "\n".join(lines)


def check_can_push() -> None:
    """Before training, not after it: pushing needs a Hugging Face token."""
    from huggingface_hub import get_token

    if get_token() is None:
        raise FinetuneError("--push-to-hub needs a Hugging Face token: log in with `hf auth login` "
                            "or set HF_TOKEN, then run again")


def push(output_dir: Path, repo_id: str) -> None:
    try:
        push_folder(output_dir, repo_id, message="fine-tuned with python -m finetune")
    except Exception as error:  # no token, no network, no rights: the local result stands either way
        raise FinetuneError(f"the model is saved in {output_dir} but pushing it to {repo_id} failed ({error}); "
                            "log in with `hf auth login` and retry with huggingface_hub's upload_folder") from None
    print(f"pushed {output_dir} to https://huggingface.co/{repo_id}")
