"""The commands of `python -m cxrcap`, one module each: `add_arguments(parser)` declares its options,
`run(args) -> int` calls the library (which returns data) and prints; `cxrcap/__main__.py` names them."""
