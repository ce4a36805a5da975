"""The captioning variants: a registry as data.

The study's four, and the optional fifth slot `extra`: any vision-language model transformers
can run (`cxrcap/extra.py`), off unless a model is named. Callers ask for a variant by id and
never branch on the model family; the family's classes live in `captioner.py` and `extra.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GIT_HUB_ID = "microsoft/git-base"
BLIP_HUB_ID = "Salesforce/blip-image-captioning-base"


@dataclass(frozen=True)
class Variant:
    id: str
    family: str  # "git" | "blip" | "vlm" (the extra slot: any image-text-to-text model)
    label: str  # as in the study's table
    default_source: str  # hub id, or a local folder relative to the working directory
    fine_tuned: bool
    env: str = ""  # the variable naming the source, when not the CXRCAP_SOURCE_<ID> rule's
    fix: str = ""  # what to do when it cannot be loaded, when not the rules of `how_to_get`

    @property
    def env_var(self) -> str:
        """The environment variable that overrides this variant's source."""
        return self.env or "CXRCAP_SOURCE_" + self.id.upper().replace("-", "_")

    @property
    def source(self) -> str:
        """Where the weights come from now: the override if set, else the default."""
        return os.environ.get(self.env_var, "").strip() or self.default_source

    @property
    def how_to_get(self) -> str:
        """What a user does when this variant cannot be loaded."""
        if self.fix:
            return self.fix
        if self.fine_tuned:
            return (
                f"run `python -m finetune --family {self.family}` (writes {self.default_source}) "
                f"or set {self.env_var} to a fine-tuned checkpoint (hub id or folder)"
            )
        return (
            f"connect to the Hugging Face hub once to download {self.default_source} "
            f"(or set {self.env_var} to a local copy)"
        )


EXTRA_ID = "extra"
# Every variant, in display order; the extra slot last.
VARIANTS: dict[str, Variant] = {
    v.id: v
    for v in (
        Variant("git-base", "git", "GIT base", GIT_HUB_ID, fine_tuned=False),
        Variant("git-base-ft", "git", "GIT fine-tuned", "checkpoints/git-base-ft", fine_tuned=True),
        Variant("blip-base", "blip", "BLIP base", BLIP_HUB_ID, fine_tuned=False),
        Variant("blip-base-ft", "blip", "BLIP fine-tuned", "checkpoints/blip-base-ft", fine_tuned=True),
        Variant(EXTRA_ID, "vlm", "Extra model", "", fine_tuned=False, env="CXRCAP_EXTRA_MODEL",
                fix="set CXRCAP_EXTRA_MODEL (or --extra-model) to a vision-language model's hub id or folder"),
    )
}
# The study's four: what every entry point runs by default.
VARIANT_IDS: tuple[str, ...] = tuple(vid for vid in VARIANTS if vid != EXTRA_ID)


def get_variant(variant_id: str) -> Variant:
    try:
        return VARIANTS[variant_id]
    except KeyError:
        raise ValueError(
            f"unknown variant {variant_id!r}; choose from {', '.join(VARIANTS)}"
        ) from None


def parse_variant_ids(text: str | None) -> list[str]:
    """'git-base,blip-base' (or None for the study's four) -> validated ids in the given order."""
    if not text:
        return list(VARIANT_IDS)
    ids = [part.strip() for part in text.split(",") if part.strip()]
    for variant_id in ids:
        get_variant(variant_id)
    return ids
