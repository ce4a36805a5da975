"""cxrcap.sources: the registry of formats, and what it says of a source no format recognises."""

from pathlib import Path

import pytest

from cxrcap import sources


def test_sources_that_are_nothing_known(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset\n")
    with pytest.raises(sources.DataError, match="not ROCO.*not an image folder"):
        sources.load_split(tmp_path, "test")
    with pytest.raises(sources.DataError, match="no such file or folder"):
        sources.load_split(tmp_path / "missing", "test")


def test_every_format_has_a_fixture_test():
    """The package's rule for a new format: one module, one line in FORMATS, one fixture test."""
    tests = Path(__file__).parent
    for module in sources.FORMATS:
        name = module.__name__.rsplit(".", 1)[-1]
        test_file = tests / f"test_sources_{name}.py"
        assert test_file.is_file() and "\ndef test_fixture(" in test_file.read_text(), f"{test_file.name}::test_fixture"
        assert module.NOT_THIS_FORMAT.startswith("not ") and callable(module.detect)
