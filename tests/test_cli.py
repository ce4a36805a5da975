"""`python -m cxrcap caption` as a user runs it: a real process on real X-rays."""

import json
import subprocess
from pathlib import Path

from processes import REPO, run_python


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return run_python("-m", "cxrcap", *args, cwd=cwd, timeout=300, HF_HUB_OFFLINE="1")


def test_tiny_random_json_gives_four_captions_per_image(cxr_examples_dir):
    images = [str(p) for p in sorted((cxr_examples_dir / "images").glob("*.png"))[:1]] + [
        str(cxr_examples_dir / "images" / "covid_b343e657.jpg")
    ]
    done = run_cli("caption", *images, "--tiny-random", "--json", "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["image"], r["variant"]) for r in rows] == [
        (image, variant) for image in images for variant in ("git-base", "git-base-ft", "blip-base", "blip-base-ft")
    ]
    for row in rows:
        assert row["caption"].strip() and row["seconds"] > 0 and row["error"] is None and row["untrained"] is True


def test_text_output_labels_untrained_captions(cxr_image):
    done = run_cli("caption", str(cxr_image), "--tiny-random", "--variants", "blip-base", "--beams", "2")
    assert done.returncode == 0, done.stderr
    assert "BLIP base" in done.stdout and "untrained tiny random weights" in done.stdout


def test_without_weights_four_clear_errors_and_a_nonzero_exit(cxr_image, tmp_path):
    done = run_cli("caption", str(cxr_image), "--json", cwd=tmp_path)
    assert done.returncode == 1
    rows = json.loads(done.stdout)
    assert len(rows) == 4 and all(r["caption"] is None for r in rows)
    assert "hub cannot be reached" in rows[0]["error"]
    assert "python -m finetune --family blip" in rows[3]["error"]
    assert "Traceback" not in done.stderr


def test_bad_image_is_a_clear_error_not_a_traceback(tmp_path, cxr_image):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    done = run_cli("caption", str(fake), str(cxr_image), "--tiny-random", "--variants", "git-base", "--json")
    assert done.returncode == 1
    bad, good = json.loads(done.stdout)
    assert bad["error"] and bad["caption"] is None
    assert good["caption"] and good["error"] is None
    assert "Traceback" not in done.stderr


def test_bad_arguments_are_refused_with_a_message(cxr_image):
    done = run_cli("caption", str(cxr_image), "--variants", "gpt-4")
    assert done.returncode == 2 and "unknown variant 'gpt-4'" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("caption", str(cxr_image), "--beams", "0")
    assert done.returncode == 2 and "num_beams" in done.stderr


def test_extra_model_adds_a_fifth_row_with_its_notes(cxr_image):
    done = run_cli("caption", str(cxr_image), "--tiny-random", "--extra-model", "tiny", "--json", "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [row["variant"] for row in rows] == ["git-base", "git-base-ft", "blip-base", "blip-base-ft", "extra"]
    extra = rows[-1]
    assert extra["caption"] and extra["error"] is None and extra["untrained"] is True
    assert len(extra["caption"].split()) <= 8 and "Describe the findings" not in extra["caption"]
    assert extra["notes"] == ["Not part of the study", "Model: tiny random Gemma 3 (MedGemma's architecture)",
                              "Licence: mit", "Prompt: Describe the findings of this chest X-ray in one sentence."]
def test_heatmaps_writes_a_png_and_the_issues_json_per_image_and_variant(cxr_image, tmp_path):
    done = run_cli("caption", str(cxr_image), "--tiny-random", "--variants", "git-base,blip-base",
                   "--max-new-tokens", "6", "--beams", "2", "--heatmaps", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    for row, grid in zip(json.loads(done.stdout), ([14, 14], [24, 24])):
        stem = tmp_path / f"{cxr_image.stem}-{row['variant']}"
        assert row["heatmaps"] == str(stem.with_suffix(".png")) and row["heatmaps_error"] is None
        assert stem.with_suffix(".png").stat().st_size > 10_000
        maps = json.loads(stem.with_suffix(".json").read_text())
        assert list(maps) == ["variant", "method", "dtype", "grid", "tokens", "words", "maps"]
        assert maps["dtype"] == row["dtype"] == "float32"  # what a CPU runs in unless CXRCAP_DTYPE says otherwise
        assert maps["variant"] == row["variant"] and maps["method"] == "relevance" and maps["grid"] == grid
        assert len(maps["maps"]) == len(maps["words"]) >= 1 and len(maps["tokens"]) >= len(maps["words"])
        for word_map in maps["maps"]:
            assert [len(word_map), len(word_map[0])] == grid
            assert max(max(line) for line in word_map) == 1.0 and min(min(line) for line in word_map) >= 0.0
