"""The command lines of `python -m cxrcap`, one module per command.

Each `cxrcap/cli/<command>.py` holds `add_arguments(parser)` and `run(args) -> int`: argparse and
printing only. The library modules (`cxrcap/<thing>.py`) compute and return data, and are tested
without parsing arguments; `cxrcap/__main__.py` builds the top-level parser and dispatches here.
"""
