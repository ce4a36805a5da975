"""Gradient accumulation check: does batch 8 x accumulation 2 give the gradient of one batch of 16?

The naive profile (8 x 2) and `--fast` (16 x 1) must run the same optimisation. For each family
this builds both trainers with `finetune.train.prepare`, exactly as `python -m finetune` does, on
16 real ROCO chest X-ray captions (the validation split's chest rows, whose images ROCO does not
ship) paired with 16 real chest X-rays of ../shared/data/cxr-examples, and compares the gradient
of one optimiser update through Trainer's own `training_step` (dropout off, so both see the same
network; no clipping, no optimiser step). Printed: the relative difference of the gradient
vectors, ||g_2x8 - g_1x16|| / ||g_1x16||, and of their norms.

    python benchmarks/accumulation_gradient.py                 # tiny random models (CPU, seconds)
    python benchmarks/accumulation_gradient.py --base-size     # base-size random models (~4 GB RAM each)
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.sources import load_split  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from finetune.recipe import Recipe  # noqa: E402
from cxrcap.captioner import quiet_library_logs  # noqa: E402
from finetune.plan import RunOptions, make_plan  # noqa: E402
from finetune.train import prepare  # noqa: E402

DATA = REPO.parent / "shared" / "data"
BATCH = 16


def roco_chest_pairs(folder: Path, count: int = BATCH) -> Path:
    """An image folder of `count` real chest X-rays captioned with real ROCO chest X-ray captions."""
    captions = [row["caption"] for row in load_split(DATA / "roco", "validation").missing_rows[:count]]
    images = sorted((DATA / "cxr-examples" / "images").glob("*.jpg"))[:count]
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["file_name", "caption"])
        writer.writerows(zip(map(str, images), captions))
    return folder


def update_gradient(trainer) -> torch.Tensor:
    """The gradient of the trainer's first optimiser update, as its training loop accumulates it
    (Trainer's `get_batch_samples` and `training_step`), flattened; dropout is switched off."""
    model = trainer.model
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.zero_grad(set_to_none=True)
    batches, num_items_in_batch = trainer.get_batch_samples(
        iter(trainer.get_train_dataloader()), trainer.args.gradient_accumulation_steps, trainer.args.device
    )
    trainer.current_gradient_accumulation_steps = len(batches)  # as Trainer's loop sets it
    for batch in batches:
        trainer.training_step(model, batch, num_items_in_batch)
    return torch.cat([parameter.grad.flatten() for parameter in model.parameters() if parameter.grad is not None])


def accumulation_difference(family: str, base_model: str, data: Path, output_dir: Path,
                            micro_batch: int, examples: int) -> tuple[float, float]:
    """(relative gradient difference, relative norm difference) of micro_batch x k vs one batch of `examples`."""
    gradients = []
    for batch, accumulation in ((micro_batch, examples // micro_batch), (examples, 1)):
        options = RunOptions(family=family, data=str(data), base_model=base_model, output_dir=str(output_dir),
                             chest_only=False, max_train_samples=examples)
        recipe = Recipe(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation)
        trainer = prepare(make_plan(options, recipe, evaluate=False)).trainer
        gradients.append(update_gradient(trainer).double())
        del trainer
    accumulated, whole = gradients
    return ((accumulated - whole).norm() / whole.norm()).item(), abs(accumulated.norm() / whole.norm() - 1).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-size", action="store_true", help="base-size random models instead of tiny ones")
    parser.add_argument("--family", nargs="+", choices=("git", "blip"), default=["git", "blip"])
    args = parser.parse_args()
    quiet_library_logs()
    sources = tiny_sources([f"{family}-base" for family in args.family], base_size=args.base_size)
    print(f"{'base-size' if args.base_size else 'tiny'} random models; 16 real ROCO chest captions on 16 real "
          f"chest X-rays; 8 x 2 vs 16 x 1, dropout off, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        data = roco_chest_pairs(Path(scratch))
        for family in args.family:
            gradient, norm = accumulation_difference(family, sources[f"{family}-base"], data, Path(scratch, "out"),
                                                     micro_batch=8, examples=BATCH)
            print(f"{family}: gradient vector differs by {gradient:.3g} (relative), its norm by {norm:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
