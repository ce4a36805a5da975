"""Fine-tune GIT and BLIP on captioned chest X-rays with the seed's recipe: `python -m finetune`.

`finetune` uses `cxrcap` (its data, metrics, model classes and variant registry); `cxrcap`
never imports `finetune`.
"""

from .plan import FinetuneError, RunOptions
from .recipe import Recipe
from .train import run

__all__ = ["FinetuneError", "Recipe", "RunOptions", "run"]
