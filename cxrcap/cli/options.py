"""Options shared by several commands."""

from __future__ import annotations

import argparse

from ..variants import EXTRA_ID, VARIANT_IDS, VARIANTS


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that generates captions."""
    parser.add_argument(
        "--variants", default=None, help=f"comma-separated variant ids (default: all of {', '.join(VARIANT_IDS)})"
    )
    parser.add_argument("--beams", type=int, default=1, help="beam search width; 1 = greedy (default)")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="longest caption in tokens (default 30)")
    parser.add_argument(
        "--tiny-random", action="store_true", help="use tiny untrained models built locally (no download)"
    )
    parser.add_argument(
        "--extra-model", default=VARIANTS[EXTRA_ID].source or None, metavar="ID_OR_FOLDER",
        help="a fifth, vision-language model next to the study's four: hub id or folder (default: $CXRCAP_EXTRA_MODEL; "
        "`tiny` with --tiny-random)",
    )
    parser.add_argument(
        "--extra-prompt", default=None, help="what the extra model is asked (default: a one-sentence findings request)"
    )
