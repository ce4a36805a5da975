"""`report --compare-int8`: agreement with fp32 and each metric's int8 - fp32 difference with a paired interval."""

import csv
import json

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
