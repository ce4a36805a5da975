"""The app's examples gallery: read from a real folder; a bad folder never stops the app."""

import logging

from cxrcap.app.examples import load_examples


def test_examples_from_the_shared_chest_x_rays(cxr_examples_dir):
    examples = load_examples(cxr_examples_dir)
    assert len(examples) == 98
    assert all(e.caption and e.credit for e in examples)


def test_a_folder_without_captions_gives_no_gallery_and_says_why(tmp_path, cxr_image, caplog):
    (tmp_path / cxr_image.name).write_bytes(cxr_image.read_bytes())  # an image, but no CSV
    with caplog.at_level(logging.WARNING, logger="cxrcap.app.examples"):
        assert load_examples(tmp_path) == []
    assert "No examples gallery" in caplog.text


def test_no_folder_no_gallery(tmp_path):
    assert load_examples(tmp_path / "absent") == []
