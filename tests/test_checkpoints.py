"""The one checkpoint loader: the config first, the caller's check, then processor and weights, each
failure of its own type with the library's error as its cause."""

import shutil

import pytest
from transformers import GitForCausalLM

from cxrcap.checkpoints import ConfigUnreadable, FilesUnreadable, is_local, load_checkpoint, looks_like_a_path
from cxrcap.preprocessing import load_processor
from cxrcap.weights import BrokenCheckpoint


class Refused(Exception):
    pass


def test_the_callers_check_sees_the_config_before_anything_else_loads(tiny_sources):
    source, loaded = tiny_sources["git-base"], []

    def refuse(config):
        raise Refused(config.model_type)

    with pytest.raises(Refused, match="git"):
        load_checkpoint(source, GitForCausalLM, check=refuse, processor=lambda: loaded.append("processor"))
    assert loaded == []
    processor, model = load_checkpoint(source, GitForCausalLM, check=lambda config: None,
                                       processor=lambda: load_processor(source))
    assert isinstance(model, GitForCausalLM) and processor.tokenizer is not None


def test_each_step_fails_with_its_own_error_and_the_librarys_as_its_cause(tiny_sources, tmp_path):
    with pytest.raises(ConfigUnreadable) as raised:
        load_checkpoint(str(tmp_path), GitForCausalLM, check=lambda config: None, processor=lambda: None)
    assert isinstance(raised.value.__cause__, ValueError) and "model_type" in str(raised.value.__cause__)  # an empty folder
    folder = shutil.copytree(tiny_sources["git-base"], tmp_path / "git")
    with pytest.raises(FilesUnreadable) as raised:
        load_checkpoint(str(folder), GitForCausalLM, check=lambda config: None, processor=lambda: {}["tokenizer"])
    assert isinstance(raised.value.__cause__, KeyError)
    next(folder.glob("*.safetensors")).write_bytes(b"not a weights file")
    with pytest.raises(BrokenCheckpoint, match="damaged or incomplete weights file"):
        load_checkpoint(str(folder), GitForCausalLM, check=lambda config: None, processor=lambda: None)


@pytest.mark.parametrize("source, local, path", [("microsoft/git-base", False, False), ("git-base", False, False),
                                                 ("./runs/git-ft", False, True), ("runs/git/ft", False, True),
                                                 ("~/missing", False, True), (".", True, True)])
def test_a_source_is_a_hub_id_or_a_folder(source, local, path):
    assert (is_local(source), looks_like_a_path(source)) == (local, path)
