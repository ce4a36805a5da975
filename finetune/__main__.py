"""`python -m finetune --family git|blip --data SOURCE [options]`: fine-tune a base captioner.

Every recipe value but the fixed optimizer (AdamW) and loss (cross-entropy) is an option
(`--learning-rate 1e-4`, `--num-train-epochs 3`, ...); `--help` lists them with the seed's defaults.
Examples:

    python -m finetune --family git --data ~/roco-dataset              # the seed's recipe
    python -m finetune --family blip --data ~/roco-dataset --fast      # same recipe, faster
    python -m finetune --family git --data ~/roco-dataset --resume     # continue after a crash
    accelerate launch -m finetune --family git --data ~/roco-dataset --fast   # several GPUs
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser

from cxrcap.images import ImageError

from .recipe import Recipe, make_profile
from .train import FinetuneError, RunOptions, run, trainer_arguments


def parse(argv: list[str] | None = None) -> tuple[RunOptions, Recipe]:
    """The options and the recipe; a value refused exits with one line and status 2, as argparse does."""
    parser = HfArgumentParser((RunOptions, Recipe), prog="python -m finetune", description=__doc__.split("\n\n")[0])
    try:
        options, recipe = parser.parse_args_into_dataclasses(args=argv)  # e.g. a batch size of 0
        trainer_arguments(options, recipe, make_profile(recipe, fast=options.fast))  # e.g. an unknown scheduler
    except ValueError as error:
        message = " ".join(str(error).split())
        parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")
    return options, recipe


def main(argv: list[str] | None = None) -> int:
    options, recipe = parse(argv)
    try:
        run(options, recipe)
    except (FinetuneError, ImageError) as error:  # an ImageError names the row whose image is unreadable
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
