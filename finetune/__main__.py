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
from typing import NoReturn

from transformers import HfArgumentParser

from cxrcap.images import ImageError

from .plan import FinetuneError, RefusedValue, RunOptions
from .recipe import Recipe
from .train import run

PROG = "python -m finetune"


def parse(argv: list[str] | None = None) -> tuple[RunOptions, Recipe]:
    """The options and the recipe; a value refused exits with one line and status 2, as argparse does."""
    parser = HfArgumentParser((RunOptions, Recipe), prog=PROG, description=__doc__.split("\n\n")[0])
    try:
        options, recipe = parser.parse_args_into_dataclasses(args=argv)  # e.g. a batch size of 0
    except ValueError as error:
        usage_error(error)
    return options, recipe


def usage_error(error: ValueError) -> NoReturn:
    """One line and status 2, as argparse's own errors."""
    message = " ".join(str(error).split())
    print(f"{PROG}: error: {message} (see --help)", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    options, recipe = parse(argv)
    try:
        run(options, recipe)
    except RefusedValue as error:  # e.g. an unknown scheduler, refused before any data or model is read
        usage_error(error)
    except (FinetuneError, ImageError) as error:  # an ImageError names the row whose image is unreadable
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
