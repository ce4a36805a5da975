"""An error as people read it: one line, and a library's error without the server's paths."""

from cxrcap.errors import first_line, library_text


def test_the_first_line_is_cut_to_its_limit_and_an_empty_message_is_named_by_its_type():
    assert first_line(RuntimeError("DefaultCPUAllocator: can't allocate memory\nsecond line")) == (
        "DefaultCPUAllocator: can't allocate memory")
    assert first_line(OSError("x" * 400)) == "x" * 300 and first_line(OSError("x" * 400), 200) == "x" * 200
    assert first_line(KeyError()) == "KeyError" and first_line(ValueError("  \n ")) == "ValueError"


def test_a_librarys_error_text_names_files_not_folders_and_is_cut_at_a_word():
    said = "Make sure the folder holds a preprocessor_config.json file. " * 10
    shown = library_text(OSError(f"Can't load image processor for '/srv/models/my-vlm'. {said}"))
    full = f"Can't load image processor for 'my-vlm'. {said}"
    assert shown.endswith(" …") and len(shown) < len(full)
    cut = shown.removesuffix(" …")
    assert full.startswith(cut) and full[len(cut)] == " "  # at a word's end
    assert library_text(OSError("see https://huggingface.co/models")) == "see https://huggingface.co/models"
