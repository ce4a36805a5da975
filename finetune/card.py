"""What a run writes for people to read: `training_log.json`, `training_curves.png`, the model card.

`write_outputs` is called once a run has trained (by `finetune.train.run`, on the main process);
it also writes `recipe.json`, the run's identity that `--resume` checks.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxrcap.captioner import DecodeSettings, pick_device, pick_dtype
from cxrcap.chest_filter import CHEST_XRAY_RULE
from cxrcap.sources import describe_source
from cxrcap.metrics import CORPUS_KEYS
from cxrcap.variants import get_variant

from .plan import Prepared

RECIPE_FILE = "recipe.json"
LOG_FILE = "training_log.json"
PLOT_FILE = "training_curves.png"
CARD_FILE = "README.md"
LOSS_NORMALISATION = "the caption tokens of the whole accumulated batch (Trainer's num_items_in_batch)"


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def overlap_note(prepared: Prepared) -> str:
    return (f"the {prepared.eval_split.name} split shares rows or images with the {prepared.train_split.name} "
            "split: its scores are not held-out scores")


def epoch_evaluations(log_history: list[dict]) -> list[dict]:
    """One entry per validation: epoch, step, loss and caption metrics (keys without the eval_ prefix)."""
    rows = []
    for entry in log_history:
        if "eval_loss" in entry:
            row = {"epoch": entry["epoch"], "step": entry["step"], "loss": entry["eval_loss"]}
            row.update({key: entry[f"eval_{key}"] for key in CORPUS_KEYS if f"eval_{key}" in entry})
            rows.append(row)
    return rows


def run_record(prepared: Prepared) -> dict:
    """The run's identity, and what training did to the images and the loss (read from the base checkpoint)."""
    return {
        **prepared.identity,
        "preprocessing": prepared.preprocessing,
        "loss": {"label_smoothing": prepared.label_smoothing, "normalised_by": LOSS_NORMALISATION},
        "validation_captions_dtype": validation_dtype(),
    }


def write_outputs(prepared: Prepared, output_dir: Path, seconds: float) -> None:
    state = prepared.trainer.state
    evaluations = epoch_evaluations(state.log_history)
    best = next((row for row in evaluations if row["step"] == state.best_global_step), None)
    write_json(output_dir / RECIPE_FILE, run_record(prepared))
    write_json(output_dir / LOG_FILE, {
        **run_record(prepared),
        "global_step": state.global_step,
        "epochs": state.epoch,
        "train_seconds_this_invocation": round(seconds, 1),  # a resumed run counts only its own part
        "best": best,
        "evaluations": evaluations,
        "log_history": state.log_history,
    })
    plot_curves(state.log_history, evaluations, output_dir / PLOT_FILE)
    (output_dir / CARD_FILE).write_text(model_card(prepared, evaluations, best, seconds), encoding="utf-8")


def plot_curves(log_history: list[dict], evaluations: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    train = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry]
    fig, (loss_ax, metric_ax, cider_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    if train:
        loss_ax.plot(*zip(*train), label="training", alpha=0.8)
    if evaluations:
        loss_ax.plot([row["epoch"] for row in evaluations], [row["loss"] for row in evaluations], "o-", label="validation")
    loss_ax.set(title="Cross-entropy loss", xlabel="epoch", ylabel="loss")
    loss_ax.legend()
    for key in (key for key in CORPUS_KEYS if key != "cider"):
        points = [(row["epoch"], row[key]) for row in evaluations if key in row]
        if points:
            metric_ax.plot(*zip(*points), "o-", label=key)
    metric_ax.set(title="Validation caption metrics", xlabel="epoch", ylabel="score (0-1)")
    metric_ax.legend(fontsize="small")
    cider = [(row["epoch"], row["cider"]) for row in evaluations if "cider" in row]
    if cider:
        cider_ax.plot(*zip(*cider), "o-", color="tab:purple")
    cider_ax.set(title="Validation CIDEr", xlabel="epoch", ylabel="CIDEr")
    for axis in (loss_ax, metric_ax, cider_ax):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def images_and_loss(prepared: Prepared) -> list[str]:
    pre, profile = prepared.preprocessing, prepared.profile
    crop_choice = ("`--centre-crop true`: the released processor's centre crop" if prepared.recipe.centre_crop
                   else "as the study did; `--centre-crop true` would use the released centre crop")
    smoothing_source = ("the base checkpoint's `text_config.label_smoothing`" if prepared.options.family == "blip"
                        else "GIT's loss has none")
    micro, steps = profile.per_device_train_batch_size, profile.gradient_accumulation_steps
    return [
        f"- Images: `{pre['image_processor']}` ({pre['backend']} backend), resize: {pre['resize']}; crop: {pre['crop']}; "
        f"model input {pre['input_size']} px ({crop_choice}). The processor saved in this folder does the same, so "
        "the app captions an image as training saw it.",
        f"- Loss: cross-entropy over the caption tokens (padding and the start token ignored), label smoothing "
        f"{prepared.label_smoothing:g} ({smoothing_source}), summed over each batch of {micro} and divided by "
        f"{LOSS_NORMALISATION}: {micro} x {steps} accumulated makes the update of one batch of {micro * steps}.",
    ]


def validation_dtype() -> str:
    """The precision of the validation captions: the app's on this machine (finetune.train.in_app_precision)."""
    return str(pick_dtype(pick_device())).removeprefix("torch.")


def validation_precision() -> str:
    return (f"Validation captions are generated in {validation_dtype()}, the precision the app loads these weights "
            "in on the machine that trained them (bfloat16, or float16 where a GPU lacks it; float32 on a CPU), so "
            "they are the captions the app gives there.")


def model_card(prepared: Prepared, evaluations: list[dict], best: dict | None, seconds: float) -> str:
    options, recipe, profile = prepared.options, prepared.recipe, prepared.profile
    variant = get_variant(options.variant_id)
    hub_base = not Path(options.base_model).exists()
    front = ["---", "library_name: transformers", "pipeline_tag: image-to-text",
             "tags: [image-captioning, chest-x-ray, radiology, research-only]"]
    if hub_base:
        front.append(f"base_model: {options.base_model}")
    front.append("---")
    licences = "; ".join(
        f"{split.name}: " + ", ".join(f"{name} ({count})" for name, count in split.licences.most_common())
        for split in (prepared.train_split, prepared.eval_split)
    )
    if prepared.train_split.chest_filtered:
        filter_text = f"Only chest X-rays were kept, by this rule of `cxrcap.chest_filter`:\n\n```text\n{CHEST_XRAY_RULE}\n```"
    else:
        why = "`--chest_only false`" if options.chest_only is False else "the default for an image folder"
        filter_text = f"No chest X-ray filter was applied ({why}): no image was left out for what its caption says."
    metric_columns = ["epoch", "step", "loss", *(key for key in CORPUS_KEYS if evaluations and key in evaluations[0])]
    best_text = (f"The weights kept are those of epoch {best['epoch']:g} (step {best['step']}), the best by validation "
                 f"`{recipe.best_metric}`." if best else "No validation ran.")
    recipe_rows = [{"setting": name, "value": value} for name, value in recipe.to_dict().items()]
    decoding = DecodeSettings(num_beams=recipe.eval_num_beams, max_new_tokens=recipe.eval_max_new_tokens)
    return "\n".join([
        *front,
        f"# {options.variant_id}: {variant.label} on chest X-ray captions",
        "",
        "> **Research use only.** This model writes captions for chest X-rays as a research demonstration. "
        "It is not a medical device, it has not been validated clinically, and its captions can be wrong, "
        "incomplete or invented. Never use them for diagnosis, treatment or any decision about a patient.",
        "",
        "## Base model",
        f"`{options.base_model}` ({options.family.upper()}), fine-tuned with `python -m finetune --family "
        f"{options.family}` from the cxrcap project.",
        "",
        "## Data",
        f"- Source: {describe_source(options.data)}",
        *(f"- {split.name} split: {len(split.dataset)} images used ({split.rows_read} rows read, {split.kept} kept, "
          f"{len(split.missing_images)} without an image file)" for split in (prepared.train_split, prepared.eval_split)),
        f"- Image licences: {licences}. Credit each image's source as its licence requires.",
        "",
        filter_text,
        "",
        *([f"**Warning:** {overlap_note(prepared)}.", ""] if prepared.overlap else []),
        "## Training recipe",
        _table(recipe_rows, ["setting", "value"]),
        "",
        f"Run profile `{profile.name}`: {profile.precision}, batch {profile.per_device_train_batch_size} x "
        f"accumulation {profile.gradient_accumulation_steps} per device on {prepared.trainer.args.world_size} "
        f"device(s), {prepared.trainer.state.global_step} updates in {seconds / 60:.1f} min.",
        "",
        "## Images and loss",
        *images_and_loss(prepared),
        "",
        "## Validation metrics",
        "Per epoch on the validation split: the loss, and captions generated from the image alone "
        f"({decoding.describe()}) scored by `cxrcap.metrics` against the "
        f"reference captions as tokenised for training (lower case, at most {recipe.max_caption_tokens} tokens).",
        validation_precision(),
        "",
        _table(evaluations, metric_columns) if evaluations else "(none)",
        "",
        best_text,
        "",
        f"![loss and validation metrics per epoch]({PLOT_FILE})",
        "",
        "## Intended use",
        "Comparing captioning models on chest X-rays in the cxrcap app and its reports, for research and teaching. "
        f"The app loads this folder as `{options.variant_id}` (default folder `{variant.default_source}`, or set "
        f"`{variant.env_var}` to this folder or a hub id).",
        "",
        "## Limitations",
        "- Trained on figure captions from publications, which describe what an article discusses, not a full "
        "radiology report.",
        "- Scores above are on the validation split the checkpoint was chosen with: they are optimistic; "
        "report results on a held-out test split.",
        "- The training data's biases (sources, populations, findings, languages) carry into the captions.",
        "",
    ])
