"""`python -m cxrcap reproduce` end to end on a local mirror of eltorio/ROCO-radiology (real ROCO
captions and licences, real X-rays), with tiny models on the CPU: data, both fine-tunes (real
`python -m finetune` subprocesses, one update each), the report, the model cards; then what the
app loads from the folder, a rerun, and pushing up to the network call."""

import json

import pytest

from cxrcap import reproduce
from cxrcap.__main__ import main
from cxrcap.captioner import DecodeSettings
from cxrcap.images import load_image
from cxrcap.lineup import build_captioners
from cxrcap.variants import VARIANT_IDS, get_variant
from hub_mirrors import KEPT, study_mirror

FINE_TUNED = ("git-base-ft", "blip-base-ft")


@pytest.fixture(scope="module")
def study(tmp_path_factory, roco_dir, cxr_examples_dir, tiny_sources):
    mirror = study_mirror(tmp_path_factory.mktemp("ROCO-radiology"), roco_dir, cxr_examples_dir, concepts=False)
    out = tmp_path_factory.mktemp("study")
    argv = ["reproduce", "--data", str(mirror), "--licences", str(roco_dir), "--out", str(out),
            "--tiny-random", "--max-steps", "1"]
    assert main(argv) == 0
    return argv, out


def test_one_command_makes_the_whole_study(study):
    _, out = study
    summary = json.loads((out / "data.json").read_text())
    used = {name: split["used"] for name, split in summary["splits"].items()}
    assert used == {"train": KEPT["train"] - 1, "validation": KEPT["validation"], "test": KEPT["test"]}
    assert summary["splits"]["train"]["removed_by_hygiene"] == 1  # a copy of a test image
    assert all(split["rule"] == "caption" for split in summary["splits"].values())
    assert all("unknown" not in licence for split in summary["splits"].values() for licence in split["licences"])
    results = json.loads((out / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == [*VARIANT_IDS, "constant-caption", "random-caption"]
    assert all(row["reason"] is None and row["n_images"] == KEPT["test"] for row in rows.values())
    for variant_id in FINE_TUNED:
        folder = reproduce.checkpoint_dir(out, variant_id)
        assert (folder / "training_log.json").is_file() and not list(folder.glob("checkpoint-*"))
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and "license: other" in card
        assert "## Reproduction (python -m cxrcap reproduce)" in card and "non-commercial" in card
        assert "### Test scores" in card and "| bleu |" in card
        assert "## Training recipe" in card  # finetune's own card is kept
    assert (out / "results.md").is_file() and (out / "data" / "metadata.csv").is_file()


def test_the_app_loads_the_fine_tuned_variants_from_the_folder(study, monkeypatch, cxr_image):
    _, out = study
    for variant_id in FINE_TUNED:  # empty counts as unset; monkeypatch removes what use_checkpoints_in sets
        monkeypatch.setenv(get_variant(variant_id).env_var, "")
    used = reproduce.use_checkpoints_in(out)  # what app.py does with --results
    assert used == {variant_id: str(reproduce.checkpoint_dir(out, variant_id)) for variant_id in FINE_TUNED}
    captioners = build_captioners(list(VARIANT_IDS), tiny_random=True)
    image = load_image(cxr_image)
    for variant_id in FINE_TUNED:
        assert captioners[variant_id].source == used[variant_id]
        caption = captioners[variant_id].caption([image], DecodeSettings(max_new_tokens=5))[0]
        assert isinstance(caption, str)


def test_a_rerun_reads_nothing_and_redoes_nothing(study, capsys):
    argv, out = study
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("bytes: 0 read from the source now") == 3
    assert printed.count("done already") == 3  # two fine-tunes and the report


def test_other_options_in_the_same_folder_are_refused(study, capsys):
    argv, out = study
    assert main([*argv[:-1], "2"]) == 1
    assert "holds a run with other options (max_steps was 1, now 2)" in capsys.readouterr().err


def test_push_to_hub_goes_as_far_as_the_network(study, monkeypatch, capsys):
    argv, out = study
    assert main([*argv, "--push-to-hub", "not a prefix"]) == 1
    assert "expected OWNER/PREFIX" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")  # HF_HUB_OFFLINE=1: the first request is refused
    assert main([*argv, "--push-to-hub", "you/cxrcap"]) == 1
    error = capsys.readouterr().err
    assert "pushing git-base-ft to you/cxrcap-git-base-ft failed" in error and "Traceback" not in error
    assert reproduce.hub_repos("you/cxrcap") == {
        "git-base-ft": ("you/cxrcap-git-base-ft", "model"), "blip-base-ft": ("you/cxrcap-blip-base-ft", "model"),
        "results": ("you/cxrcap-results", "dataset")}
    assert reproduce.space_variables("you/cxrcap") == [
        "CXRCAP_SOURCE_GIT_BASE_FT=you/cxrcap-git-base-ft", "CXRCAP_SOURCE_BLIP_BASE_FT=you/cxrcap-blip-base-ft"]
    card = reproduce.results_card("you/cxrcap", json.loads((out / "data.json").read_text()))
    assert "non-commercial" in card and "hf download you/cxrcap-results --repo-type dataset" in card
