"""Fine-tune GIT and BLIP on captioned chest X-rays with the seed's recipe: `python -m finetune`.

`finetune` uses `cxrcap` (its data, metrics, model classes and variant registry); `cxrcap`
never imports `finetune`.
"""

from .recipe import Recipe
from .train import FinetuneError, RunOptions, run

__all__ = ["FinetuneError", "Recipe", "RunOptions", "run"]
