"""Command line: `python -m cxrcap caption|data|report|reproduce|reviews ...`.

The top-level parser only: each command's options and what it prints live in `cxrcap.cli.<command>`.
"""

from __future__ import annotations

import argparse
import sys

from .captioner import quiet_library_logs
from .cli import caption, data, report, reproduce, reviews


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxrcap",
        description="Chest X-ray captioning with four models side by side. Captions are research suggestions, "
        "never clinical decisions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    caption_command = commands.add_parser("caption", help="caption X-ray images with each variant")
    caption.add_arguments(caption_command)
    caption_command.set_defaults(run=caption.run)

    data_command = commands.add_parser("data", help="read ROCO, filter chest X-rays, report counts")
    data.add_arguments(data_command)
    data_command.set_defaults(run=data.run)

    report_command = commands.add_parser("report", help="evaluate the variants on a split: table and figures")
    report.add_arguments(report_command)
    report_command.set_defaults(run=report.run)

    reproduce_command = commands.add_parser(
        "reproduce", help="the whole study: data, both fine-tunes, the report (and the hub) into one folder")
    reproduce.add_arguments(reproduce_command)
    reproduce_command.set_defaults(run=reproduce.run)

    reviews_command = commands.add_parser("reviews", help="clinicians' reviews: summary, CSV export, delete a reviewer's")
    reviews.add_arguments(reviews_command)
    reviews_command.set_defaults(run=reviews.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_library_logs()
    try:
        return args.run(args)
    except (ValueError, OSError) as error:  # bad arguments or files: a message, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
