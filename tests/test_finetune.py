"""finetune: the seed's recipe, real runs on real X-rays with tiny models, resume and its checks.

Runs train tiny GIT/BLIP variants for 3 epochs on 4 real chest X-rays of ../shared/data/cxr-examples
(one update per epoch: batch 2 x accumulation 2), validating on 2 more. cxr-examples is an image
folder: GIT trains on it unfiltered (the default), BLIP with `--chest-only true`.
"""

import json
import math
import shutil
from dataclasses import fields

import pytest
import torch
from PIL import Image
from transformers import (AutoConfig, AutoProcessor, BlipForConditionalGeneration, GitForCausalLM, HfArgumentParser,
                          TrainerCallback)

from cxrcap.captioner import Captioner, DecodeSettings
from cxrcap.chest_filter import CHEST_XRAY_RULE
from cxrcap.sources import load_split
from cxrcap.metrics import CORPUS_KEYS
from cxrcap.preprocessing import describe, load_processor
from cxrcap.variants import get_variant
from finetune.__main__ import main, parse
from finetune.collate import IGNORE_INDEX, CaptionCollator, cache_tensors
from finetune.loss import caption_loss_function, label_smoothing
from finetune.recipe import Recipe, make_profile, training_arguments
from finetune.plan import run_identity
from finetune.train import decoder_start_token_id, in_app_precision, run

EPOCHS = 3
PROFILES = {"naive": (), "fast": ("--fast",)}
# Each family's default profile in these tests: BLIP naive (its loss needs care under gradient accumulation), GIT fast.
PROFILE = {"git": "fast", "blip": "naive"}
CHEST_ONLY = {"git": (), "blip": ("--chest-only", "true")}  # an image folder is not filtered unless asked


def argv(family, tiny_sources, data, out, *extra, profile=None):
    return [*PROFILES[profile or PROFILE[family]], *CHEST_ONLY[family],
        "--family", family, "--data", str(data), "--base-model", tiny_sources[f"{family}-base"],
        "--output-dir", str(out), "--max-train-samples", "4", "--max-eval-samples", "2",
        "--num-train-epochs", str(EPOCHS), "--per-device-train-batch-size", "2", "--learning-rate", "5e-3",
        "--eval-max-new-tokens", "8", "--logging-steps", "1", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and lose a lot when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train(tmp_path_factory, tiny_sources, cxr_examples_dir):
    """train(family, profile) -> output folder of a finished run (each trains once per module)."""
    done = {}

    def train_once(family, profile=None):
        profile = profile or PROFILE[family]
        if (family, profile) not in done:
            out = tmp_path_factory.mktemp(f"{family}-{profile}-ft")
            assert main(argv(family, tiny_sources, cxr_examples_dir, out, profile=profile)) == 0
            done[family, profile] = out
        return done[family, profile]

    return train_once


def training_log(out):
    return json.loads((out / "training_log.json").read_text())


def tiny_sources_base(out):
    return training_log(out)["run"]["base_model"]


# --- the recipe ---------------------------------------------------------------------------


def test_recipe_defaults_are_the_seeds():
    recipe = Recipe()
    assert recipe.learning_rate == 5e-5
    assert recipe.optimizer == "adamw"
    assert recipe.weight_decay == 1e-8
    assert recipe.num_train_epochs == 10
    assert recipe.loss == "cross_entropy"
    assert {"optimizer": "adamw", "loss": "cross_entropy"}.items() <= recipe.to_dict().items()  # printed and saved
    assert recipe.mixed_precision == "fp16"
    assert (recipe.per_device_train_batch_size, recipe.per_device_eval_batch_size) == (8, 2)
    assert recipe.gradient_accumulation_steps == 2
    assert recipe.effective_batch_size == 16
    # the command line starts from the same values, and overrides any of them
    options, parsed = parse(["--family", "git", "--data", "x"])
    assert parsed == recipe
    assert options.output_dir == "checkpoints/git-base-ft" == get_variant("git-base-ft").default_source
    _, overridden = parse(["--family", "blip", "--data", "x", "--learning-rate", "1e-4", "--weight_decay", "0.01"])
    assert (overridden.learning_rate, overridden.weight_decay) == (1e-4, 0.01)
    with pytest.raises(SystemExit):
        parse(["--family", "git", "--data", "x", "--per-device-train-batch-size", "0"])
    with pytest.raises(SystemExit):  # fixed, not options: training uses AdamW whatever is asked
        parse(["--family", "git", "--data", "x", "--optimizer", "sgd"])


def test_the_chest_filter_defaults_to_the_sources_default(roco_dir, cxr_examples_dir):
    """As `cxrcap.sources.load_split` (and `python -m cxrcap data`): ROCO and hub filtered, image folders not."""
    def filtered(data, *extra):
        options = parse(["--family", "git", "--data", str(data), *extra])[0]
        return load_split(options.data, "validation" if data == roco_dir else "train", chest_only=options.chest_only).chest_filtered

    assert parse(["--family", "git", "--data", str(cxr_examples_dir)])[0].chest_only is None
    assert not filtered(cxr_examples_dir)
    assert filtered(roco_dir)
    assert filtered(cxr_examples_dir, "--chest_only", "true")
    assert not filtered(roco_dir, "--chest-only", "false")


def test_resume_compares_the_chest_filter_as_applied_not_as_typed(roco_dir, cxr_examples_dir):
    def identity(data, *extra):
        options, recipe = parse(["--family", "git", "--data", str(data), *extra])
        return run_identity(options, recipe, make_profile(recipe, fast=options.fast))

    assert identity(roco_dir) == identity(roco_dir, "--chest_only", "true")
    assert identity(cxr_examples_dir) == identity(cxr_examples_dir, "--chest_only", "false")
    assert identity(roco_dir) != identity(roco_dir, "--chest_only", "false")


def test_a_value_trainer_refuses_is_a_one_line_usage_error(tiny_sources, cxr_examples_dir, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(argv("git", tiny_sources, cxr_examples_dir, out, "--lr_scheduler_type", "nonsense"))
    assert exit_.value.code == 2  # as argparse's own errors, before any data or model is read
    error = capsys.readouterr().err
    assert error.startswith("python -m finetune: error: nonsense is not a valid SchedulerType")
    assert error.count("\n") == 1 and "Traceback" not in error and not out.exists()


def test_every_recipe_value_reaches_the_trainer(tmp_path):
    recipe = Recipe(learning_rate=3e-5, weight_decay=0.5, num_train_epochs=4, warmup_steps=7, seed=3)
    args = training_arguments(recipe, make_profile(recipe, fast=False), str(tmp_path))
    assert (args.learning_rate, args.weight_decay, args.num_train_epochs, args.warmup_steps, args.seed) == (
        3e-5, 0.5, 4, 7, 3)
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size, args.gradient_accumulation_steps) == (
        8, 2, 2)
    assert args.optim == "adamw_torch" and args.lr_scheduler_type == "linear"
    assert args.fp16 == torch.cuda.is_available()  # fp16 on CUDA only
    assert args.remove_unused_columns is False
    assert args.metric_for_best_model == "eval_loss" and args.load_best_model_at_end


def test_fast_profile_keeps_the_effective_batch_and_optimisation():
    recipe = Recipe()
    naive, fast = make_profile(recipe, fast=False), make_profile(recipe, fast=True)
    assert naive.per_device_train_batch_size * naive.gradient_accumulation_steps == 16
    assert (fast.per_device_train_batch_size, fast.gradient_accumulation_steps) == (16, 1)
    assert fast.optim.startswith("adamw_torch") and fast.cache_tensors and fast.loader_workers >= 1
    if not torch.cuda.is_available():
        assert naive.precision == fast.precision == "fp32"


# --- the collator ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["git", "blip"])
def test_labels_are_the_caption_ids_with_padding_ignored(family, tiny_sources, cxr_examples_dir):
    processor = AutoProcessor.from_pretrained(tiny_sources[f"{family}-base"])
    rows = list(load_split(cxr_examples_dir, "train").dataset.select(range(3)))
    dec = processor.tokenizer.convert_tokens_to_ids("[DEC]") if family == "blip" else None
    batch = CaptionCollator(processor, 128, dec)(rows)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    targets = mask[:, 1:] == 1
    assert torch.equal(labels[:, 1:][targets], ids[:, 1:][targets])
    assert (labels[mask == 0] == IGNORE_INDEX).all() and (mask == 0).any()  # captions differ in length
    assert (labels[:, 0] == IGNORE_INDEX).all()  # the start token is never predicted: not counted as a target
    first = dec if family == "blip" else processor.tokenizer.cls_token_id  # what generate() starts from
    assert (ids[:, 0] == first).all()
    # the fast profile's cached tensors give the same batch
    cached = cache_tensors(load_split(cxr_examples_dir, "train").dataset.select(range(3)), processor, 128)
    again = CaptionCollator(processor, 128, dec)(list(cached))
    assert torch.equal(again["labels"], labels) and torch.equal(again["input_ids"], ids)
    assert torch.allclose(again["pixel_values"], batch["pixel_values"])


# --- the loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["git", "blip"])
def test_accumulated_batches_give_the_gradient_of_one_batch(family, tiny_sources, tmp_path):
    """The naive profile (8 x 2) and --fast (16 x 1) make the same update: 16 real ROCO chest captions
    of different lengths, dropout off, no clipping (benchmarks/accumulation_gradient.py)."""
    from benchmarks.accumulation_gradient import accumulation_difference, roco_chest_pairs

    gradient, norm = accumulation_difference(family, tiny_sources[f"{family}-base"], roco_chest_pairs(tmp_path),
                                             tmp_path / "out", micro_batch=8, examples=16)
    assert gradient < 1e-5 and norm < 1e-6  # float precision; BLIP's per-micro-batch mean differed by 12%


def test_blips_loss_is_its_token_mean_with_the_checkpoints_label_smoothing(tiny_sources, cxr_examples_dir):
    source = tiny_sources["blip-base"]
    processor, model = load_processor(source), BlipForConditionalGeneration.from_pretrained(source)
    model.config.text_config.label_smoothing = model.text_decoder.label_smoothing = 0.1  # as a checkpoint may set it
    batch = CaptionCollator(processor, 128, decoder_start_token_id("blip", model))(
        list(load_split(cxr_examples_dir, "train").dataset.select(range(3))))
    assert label_smoothing("blip", model) == 0.1 and label_smoothing("git", None) == 0.0
    with torch.no_grad():
        own = model(**batch).loss  # BLIP's own mean over this batch's caption tokens, smoothed
        outputs = model(**{key: value for key, value in batch.items() if key != "labels"})
        ours = caption_loss_function("blip", model)(outputs, batch["labels"])
        tokens = int(batch["labels"].ne(IGNORE_INDEX).sum())
        summed = caption_loss_function("blip", model)(outputs, batch["labels"], num_items_in_batch=2 * tokens)
    assert ours.item() == pytest.approx(own.item(), rel=1e-6)
    assert summed.item() == pytest.approx(own.item() / 2, rel=1e-6)  # a sum, divided by the accumulated batch's tokens
    assert caption_loss_function("git", model) is None  # GIT's own loss already divides by num_items_in_batch


# --- real runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["git", "blip"])
def test_a_run_learns_and_writes_what_the_app_loads(family, train, cxr_image, monkeypatch):
    out = train(family)
    log = training_log(out)
    assert log["global_step"] == EPOCHS and log["profile"]["name"] == PROFILE[family]
    losses = [entry["loss"] for entry in log["log_history"] if "loss" in entry]
    vocabulary = len(AutoProcessor.from_pretrained(out).tokenizer)
    # An untrained model's loss is about ln(vocabulary); twice that would mean a loss not averaged
    # over the accumulated batches.
    assert abs(losses[0] - math.log(vocabulary)) < 1.0
    assert losses[-1] < losses[0]
    evaluations = log["evaluations"]
    assert len(evaluations) == EPOCHS and evaluations[-1]["loss"] < evaluations[0]["loss"]
    assert set(CORPUS_KEYS) <= set(evaluations[0])
    record = json.loads((out / "recipe.json").read_text())
    assert record["recipe"]["learning_rate"] == 5e-3 and record["recipe"]["centre_crop"] is False
    # what training did to the images and the loss is recorded, and the saved processor does the same
    side = {"git": 224, "blip": 384}[family]
    saved = describe(AutoProcessor.from_pretrained(out).image_processor)
    assert record["preprocessing"] == saved and saved["crop"] == "none: the model sees the whole image"
    assert saved["input_size"] == f"{side} x {side}" and saved["backend"] == "pil"
    assert record["loss"]["label_smoothing"] == 0.0 and "accumulated batch" in record["loss"]["normalised_by"]
    assert record["validation_captions_dtype"] == "float32"  # the app's precision on a CPU
    assert not list(out.glob("checkpoint-*"))
    # model card and plot
    card = (out / "README.md").read_text()
    for text in ("Research use only", "## Base model", tiny_sources_base(out), "learning_rate", "0.005",
                 "| optimizer | adamw |", "| loss | cross_entropy |", "Intended use", "training_curves.png",
                 "not held-out scores",  # cxr-examples has one split: validation = training rows
                 "## Images and loss", f"whole image to {side} x {side} px (aspect ratio not kept)",
                 "crop: none: the model sees the whole image", "label smoothing 0 (",
                 "divided by the caption tokens of the whole accumulated batch",
                 "Validation captions are generated in float32"):
        assert text in card
    # the card says whether the chest filter ran: asked for BLIP, not by default on an image folder (GIT)
    filtered = family == "blip"
    assert (CHEST_XRAY_RULE.splitlines()[0] in card) == filtered
    assert ("No chest X-ray filter was applied (the default for an image folder)" in card) == (not filtered)
    assert log["run"]["chest_only"] == filtered  # as applied: an image folder is not filtered by default
    with Image.open(out / "training_curves.png") as plot:
        assert plot.format == "PNG" and plot.width > 800
    # the app's captioner loads it as the fine-tuned variant
    variant = get_variant(f"{family}-base-ft")
    monkeypatch.setenv(variant.env_var, str(out))
    captioner = Captioner(variant.id)
    assert captioner.source == str(out)
    (caption,) = captioner.caption([Image.open(cxr_image).convert("RGB")])
    assert isinstance(caption, str)


def test_validation_captions_use_the_apps_precision(tiny_sources, cxr_image):
    """On a GPU the app loads bf16 (or fp16) weights: validation captions come from such a copy."""
    model = GitForCausalLM.from_pretrained(tiny_sources["git-base"]).eval()
    assert in_app_precision(model) is model  # fp32 on a CPU, as the app
    copy = in_app_precision(model, torch.bfloat16)
    assert copy.dtype == torch.bfloat16 and model.dtype == torch.float32
    assert torch.equal(copy.state_dict()["output.weight"], model.state_dict()["output.weight"].bfloat16())
    app = Captioner("git-base", tiny_sources["git-base"], dtype=torch.bfloat16)
    pixels = app.preprocess([Image.open(cxr_image).convert("RGB")])
    with torch.no_grad():
        ids = copy.generate(pixel_values=pixels.bfloat16(), max_new_tokens=8, do_sample=False)
    assert torch.equal(ids, app.generate_ids(pixels, DecodeSettings(max_new_tokens=8)))
    with torch.no_grad():  # a training step later, the next evaluation refreshes the same copy
        model.output.weight.mul_(2)
    assert in_app_precision(model, torch.bfloat16, reuse=copy) is copy
    assert torch.equal(copy.state_dict()["output.weight"], model.state_dict()["output.weight"].bfloat16())


class SimulatedKill(Exception):
    pass


class KillAfterFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise SimulatedKill(state.global_step)


@pytest.fixture(scope="module")
def killed(tmp_path_factory, tiny_sources, cxr_examples_dir):
    """killed(family, profile) -> the folder of a run killed right after its first checkpoint
    (made once per module; tests work on copies)."""
    done = {}

    def kill_once(family, profile=None):
        profile = profile or PROFILE[family]
        if (family, profile) not in done:
            out = tmp_path_factory.mktemp(f"killed-{family}-{profile}") / "run"
            options, recipe = parse(argv(family, tiny_sources, cxr_examples_dir, out, profile=profile))
            with pytest.raises(SimulatedKill):
                run(options, recipe, callbacks=[KillAfterFirstCheckpoint()])
            assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"] and not (out / "README.md").exists()
            done[family, profile] = out
        return done[family, profile]

    return kill_once


@pytest.mark.parametrize("profile", ["naive", "fast"])  # fast: loader workers, which draw their seeds anew on resume
@pytest.mark.parametrize("family", ["git", "blip"])  # tiny GIT has dropout: a lost random state changes its masks
def test_kill_and_resume_reaches_the_same_step_and_losses(family, profile, train, killed, tiny_sources,
                                                          cxr_examples_dir, tmp_path, capsys):
    if family == "git":
        assert AutoConfig.from_pretrained(tiny_sources["git-base"]).hidden_dropout_prob > 0
    out = shutil.copytree(killed(family, profile), tmp_path / "run")
    # starting again over an interrupted run is refused
    assert main(argv(family, tiny_sources, cxr_examples_dir, out, profile=profile)) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(argv(family, tiny_sources, cxr_examples_dir, out, "--resume", profile=profile)) == 0
    resumed, uninterrupted = training_log(out), training_log(train(family, profile))
    assert resumed["global_step"] == uninterrupted["global_step"] == EPOCHS
    for key in ("loss", "eval_loss"):
        before = [entry[key] for entry in uninterrupted["log_history"] if key in entry]
        after = [entry[key] for entry in resumed["log_history"] if key in entry]
        assert after == pytest.approx(before, rel=1e-6)


def test_resume_refuses_corrupt_or_foreign_checkpoints(killed, tiny_sources, cxr_examples_dir, tmp_path, capsys):
    out = shutil.copytree(killed("blip"), tmp_path / "run")
    checkpoint = out / "checkpoint-1"

    def resume_error(*extra, family="blip"):
        assert main(argv(family, tiny_sources, cxr_examples_dir, out, *extra, "--resume")) == 1
        return capsys.readouterr().err

    error = resume_error("--learning-rate", "1e-4")
    assert "different run" in error and "recipe.learning_rate was 0.005, now 0.0001" in error
    assert "family was 'blip', now 'git'" in resume_error(family="git")
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "model.safetensors is corrupt" in resume_error()
    (checkpoint / "recipe.json").unlink()
    assert "not written by `python -m finetune`" in resume_error()
    (checkpoint / "trainer_state.json").unlink()
    assert "incomplete" in resume_error()
    shutil.rmtree(checkpoint)
    assert "no checkpoint-* folder" in resume_error()


def test_unreadable_data_is_a_clear_error(tiny_sources, tmp_path, capsys):
    assert main(argv("git", tiny_sources, tmp_path / "nowhere", tmp_path / "out")) == 1
    error = capsys.readouterr().err
    assert "cannot read the data" in error and "nowhere: no such file or folder" in error


def test_a_base_model_missing_weights_is_refused_before_training(tiny_sources, cxr_examples_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    base = shutil.copytree(tiny_sources["git-base"], tmp_path / "damaged-git")
    tensors = load_file(base / "model.safetensors")
    del tensors["output.weight"]  # GIT's LM head is its own weight: without it, training starts from noise
    save_file(tensors, base / "model.safetensors", metadata={"format": "pt"})
    assert main(argv("git", {**tiny_sources, "git-base": str(base)}, cxr_examples_dir, tmp_path / "out")) == 1
    error = capsys.readouterr().err
    assert "would be left random: output.weight" in error and not (tmp_path / "out").exists()


def test_an_unreadable_training_image_is_named(tiny_sources, cxr_image, tmp_path, capsys):
    folder = tmp_path / "xrays"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(cxr_image.read_bytes()[:2000])  # a cut-off JPEG
    (folder / "metadata.csv").write_text(
        f"file_name,caption\n{cxr_image},chest X-ray without findings\nbroken.jpg,chest X-ray with effusion\n"
    )
    assert main(argv("git", tiny_sources, folder, tmp_path / "out")) == 1
    assert "the image of row 'broken.jpg'" in capsys.readouterr().err


def test_pushing_without_a_token_fails_before_training(tiny_sources, cxr_examples_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no stored login
    out = tmp_path / "out"
    assert main(argv("git", tiny_sources, cxr_examples_dir, out, "--push-to-hub", "someone/cxr-git")) == 1
    assert "needs a Hugging Face token" in capsys.readouterr().err and not out.exists()


def test_every_recipe_field_but_the_fixed_ones_is_an_option():
    options = {option for action in HfArgumentParser(Recipe)._actions for option in action.option_strings}
    fixed = {field.name for field in fields(Recipe) if not field.init}
    assert fixed == {"optimizer", "loss"} and not {f"--{name}" for name in fixed} & options
    assert all(f"--{field.name}" in options for field in fields(Recipe) if field.init)
