"""`report --compare-int8`: agreement with fp32 and each metric's int8 - fp32 difference with a paired interval."""

import csv
import json
import shutil
import weakref

import pytest

from cxrcap import metrics
from cxrcap.__main__ import main
from cxrcap.int8 import FILES, token_agreement

REFERENCES = ["no acute cardiopulmonary abnormality", "left pleural effusion", "right upper lobe consolidation",
              "cardiomegaly with small effusions", "normal chest radiograph"]


def test_token_agreement_counts_equal_tokens_over_the_longer_caption():
    words = str.split
    assert token_agreement(["a b c", "d e"], ["a b c", "d e"], words) == 1.0
    assert token_agreement(["a b c d"], ["a x c"], words) == pytest.approx(2 / 4)
    assert token_agreement(["a b"], ["b a"], words) == 0.0


def test_identical_captions_differ_by_zero_and_a_better_caption_shows_up():
    same = metrics.bootstrap_difference(REFERENCES, REFERENCES, REFERENCES, n_resamples=50)
    assert all(value == (0.0, 0.0, 0.0) for value in same.values())
    worse = ["a photo"] * len(REFERENCES)
    better = metrics.bootstrap_difference(worse, REFERENCES, REFERENCES, n_resamples=200, seed=1)
    expected = metrics.corpus_scores(REFERENCES, REFERENCES)["rouge1"] - metrics.corpus_scores(worse, REFERENCES)["rouge1"]
    difference, low, high = better["rouge1"]
    assert difference == pytest.approx(expected) and 0 < low <= difference <= high


def test_compare_int8_writes_its_table(cxr_examples_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["report", "--data", str(cxr_examples_dir), "--out", str(out), "--tiny-random", "--limit", "4",
                 "--variants", "git-base,blip-base", "--bootstrap", "30", "--max-new-tokens", "6",
                 "--qualitative", "1", "--compare-int8"])
    assert code == 0
    assert all((out / name).exists() for name in FILES)
    table = (out / "int8-comparison.md").read_text()
    assert "Untrained tiny random weights" in table and "METEOR int8 - fp32" in table
    assert "Fast (int8) captions against fp32" in capsys.readouterr().out
    rows = {row["variant_id"]: row for row in json.loads((out / "int8-comparison.json").read_text())["rows"]}
    assert set(rows) == {"git-base", "blip-base"}
    for row in rows.values():
        assert row["n_images"] == 4
        assert 0 <= row["exact_agreement"] <= 1 and 0 <= row["token_agreement"] <= 1
        assert set(row["differences"]) == set(metrics.METRIC_LABELS)
        # finding F1 has no difference (null) when either side names no finding
        assert all(low <= high for _, low, high in row["differences"].values() if low is not None)
    with (out / "int8-comparison.csv").open(newline="") as file:
        assert [r["variant"] for r in csv.DictReader(file)] == ["git-base", "blip-base"]


INT8_REPORT = ["--tiny-random", "--limit", "3", "--variants", "git-base,blip-base", "--bootstrap", "30",
               "--qualitative", "1", "--compare-int8"]


def int8_report(data, out, *extra: str) -> int:
    return main(["report", "--data", str(data), "--out", str(out), *INT8_REPORT, *extra])


def read_int8(out) -> dict:
    return json.loads((out / "int8-comparison.json").read_text())


@pytest.fixture(scope="module")
def six_token_report(cxr_examples_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8-report")
    assert int8_report(cxr_examples_dir, out, "--max-new-tokens", "6") == 0
    return out


def test_from_predictions_int8_captions_are_made_with_the_predictions_settings(six_token_report, cxr_examples_dir,
                                                                               tmp_path, capsys):
    again = tmp_path / "again"
    assert int8_report(cxr_examples_dir, again, "--max-new-tokens", "12", "--beams", "2",
                       "--from-predictions", str(six_token_report / "predictions.csv")) == 0
    assert "decoding: greedy, at most 6 new tokens" in read_int8(again)["about"]

    def agreement(out):  # generation times differ from run to run; what was compared does not
        return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in read_int8(out)["rows"]]

    assert agreement(again) == agreement(six_token_report)


def test_from_predictions_of_unknown_settings_or_other_weights_refuses_to_compare_int8(
    six_token_report, cxr_examples_dir, tmp_path, capsys
):
    bare = tmp_path / "bare" / "predictions.csv"  # no predictions.json beside it: settings unknown
    bare.parent.mkdir()
    shutil.copy(six_token_report / "predictions.csv", bare)
    assert int8_report(cxr_examples_dir, tmp_path / "out", "--from-predictions", str(bare)) == 2
    error = capsys.readouterr().err
    assert "--compare-int8" in error and "decoding settings" in error and "predictions.json" in error
    assert not (tmp_path / "out").exists()  # refused before anything was made

    trained = [arg for arg in INT8_REPORT if arg != "--tiny-random"]  # the predictions' weights were untrained
    code = main(["report", "--data", str(cxr_examples_dir), "--out", str(tmp_path / "out"), *trained,
                 "--from-predictions", str(six_token_report / "predictions.csv")])
    assert code == 2 and "--tiny-random" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_each_variants_fp32_weights_are_released_before_its_int8_copy_loads(cxr_examples_dir, tmp_path, monkeypatch):
    """Peak memory: one variant's weights at a time in the int8 pass, not every fp32 model + every int8 one."""
    from cxrcap.cli import report

    alive_fp32, alive_int8, seen = [], [], []  # weak references: they keep nothing alive
    real_generate, real_build = report.generate_predictions, report.build_captioners

    def generate_predictions(captioners, *args):
        answer = real_generate(captioners, *args)
        for captioner in captioners.values():
            (alive_int8 if captioner.quantize_int8 else alive_fp32).append(weakref.ref(captioner.model))
        return answer

    def build_captioners(variant_ids, **kwargs):
        if kwargs.get("quantize_int8"):  # about to load an int8 copy: nothing else may hold weights
            seen.append([ref() is not None for ref in alive_fp32 + alive_int8])
        return real_build(variant_ids, **kwargs)

    monkeypatch.setattr(report, "generate_predictions", generate_predictions)
    monkeypatch.setattr(report, "build_captioners", build_captioners)
    assert int8_report(cxr_examples_dir, tmp_path / "out", "--max-new-tokens", "4") == 0
    assert len(alive_fp32) == 2 and seen and all(not any(alive) for alive in seen), seen
