"""cxrcap.clinical: the field's clinical metrics through the real libraries, offline, on random weights.

RadEval's six test report pairs (jbdel/RadEval, tests/test_basics.py of the 2.2.1 release) are
scored three ways:
- weight-free, in the base install: cxrcap's ROUGE equals RadEval's pinned values; cxrcap's
  sacrebleu BLEU does not, and the R2Gen lineage's pycocoevalcap BLEU-4 does;
- with the `clinical` extra, on the random copies of every scorer model that
  `cxrcap.clinical_tiny` writes under the real hub ids and cache layouts, with the hub off, in a
  fresh process (huggingface_hub reads HF_HUB_* once): every line of the libraries' path runs,
  the numbers are noise;
- opt-in, with the hub (`CXRCAP_HUB_TESTS=1`): the libraries' own published values, through
  cxrcap's adapter.

Without the extra the second group skips, except under CI (`CI` set), where it fails: CI installs
requirements-clinical.txt and requirements-clinical-nodeps.txt.
"""

import importlib.util
import json
import math
import os
import sys

import pytest

from processes import run_python

from cxrcap import clinical, metrics

# jbdel/RadEval tests/test_basics.py (release 2.2.1): references, hypotheses and pinned values.
REFS = [
    "No acute cardiopulmonary process.",
    "No radiographic findings to suggest pneumonia.",
    "1.Status post median sternotomy for CABG with stable cardiac enlargement and calcification of the aorta "
    "consistent with atherosclerosis.Relatively lower lung volumes with no focal airspace consolidation "
    "appreciated.Crowding of the pulmonary vasculature with possible minimal perihilar edema, but no overt "
    "pulmonary edema.No pleural effusions or pneumothoraces.",
    "1. Left PICC tip appears to terminate in the distal left brachiocephalic vein.2. Mild pulmonary vascular "
    "congestion.3. Interval improvement in aeration of the lung bases with residual streaky opacity likely "
    "reflective of atelectasis.Interval resolution of the left pleural effusion.",
    "No definite acute cardiopulmonary process.Enlarged cardiac silhouette could be accentuated by patient's "
    "positioning.",
    "Increased mild pulmonary edema and left basal atelectasis.",
]
HYPS = [
    "No acute cardiopulmonary process.",
    "No radiographic findings to suggest pneumonia.",
    "Status post median sternotomy for CABG with stable cardiac enlargement and calcification of the aorta "
    "consistent with atherosclerosis.",
    "Relatively lower lung volumes with no focal airspace consolidation appreciated.",
    "Crowding of the pulmonary vasculature with possible minimal perihilar edema, but no overt pulmonary edema.",
    "No pleural effusions or pneumothoraces.",
]
RADEVAL_ROUGE = {"rouge1": 0.44681719607092746, "rouge2": 0.4205128205128205, "rougeL": 0.44681719607092746}
RADEVAL_BLEU = 0.16681006823938177  # its `bleu`: pycocoevalcap corpus BLEU-4
LEXICAL_KEYS = ("bleu1_coco", "bleu2_coco", "bleu3_coco", "bleu4_coco")
EXTRA_MODULES = ("radeval", "fast_bleu", "medspacy", "sklearn", "dotmap")
HUB_TESTS = os.environ.get("CXRCAP_HUB_TESTS") == "1"


def test_cxrcap_rouge_equals_radevals_pinned_values():
    scores = metrics.corpus_scores(HYPS, REFS)
    for key, pinned in RADEVAL_ROUGE.items():
        assert scores[key] == pytest.approx(pinned, abs=5e-5), key


def test_sacrebleu_bleu_differs_from_pycocoevalcaps_bleu4_which_equals_radevals():
    assert metrics.corpus_scores(HYPS, REFS)["bleu"] == pytest.approx(0.1535, abs=5e-5)
    results = clinical.score(HYPS, REFS, LEXICAL_KEYS)  # weight-free: no extra needed
    assert results["bleu4_coco"].value == pytest.approx(RADEVAL_BLEU, abs=1e-12)
    values = [results[key].value for key in LEXICAL_KEYS]
    assert values == sorted(values, reverse=True)  # BLEU-n falls as n grows on these pairs
    assert all(result.metric.direction == clinical.HIGHER for result in results.values())


def test_a_resample_reaggregates_the_pairs_it_draws():
    bleu = clinical.score(HYPS, REFS, ["bleu4_coco"])["bleu4_coco"]
    assert bleu.resample(range(6)) == pytest.approx(bleu.value)
    # The first two pairs are identical texts: BLEU-4 of a corpus of them is 1.
    assert bleu.resample([0, 1, 1, 0]) == pytest.approx(1.0)


def test_bad_input_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="choose from"):
        clinical.score(HYPS, REFS, ["bleu"])
    with pytest.raises(ValueError, match="one prediction per reference"):
        clinical.score(HYPS[:2], REFS)


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch):
    for name in [name for name in sys.modules if name == "radeval" or name.startswith("radeval.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "radeval", None)  # as if not installed
    with pytest.raises(clinical.ClinicalMetricsUnavailable, match="requirements-clinical.txt"):
        clinical.score(HYPS, REFS, ["bertscore"])


def _require_extra() -> None:
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"the clinical extra is not installed ({', '.join(missing)} missing): {clinical.INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


SCORE_SCRIPT = """
import json, sys
from cxrcap import clinical
hyps, refs = json.loads(sys.argv[1])
results = clinical.score(hyps, refs)
print("RESULTS " + json.dumps({key: dict(value=r.value, per_sample=r.per_sample, seconds=r.seconds,
      unavailable=r.unavailable, direction=r.metric.direction, models=[m.hub_id for m in r.metric.models],
      resampled=None if r.unavailable else r.resample([0, 2, 2, 5]))
      for key, r in results.items()}))
# A caption can be empty: the third here.
empty = clinical.score(hyps[:2] + [""] + hyps[3:], refs, ["ratescore"])["ratescore"]
print("EMPTY " + json.dumps(empty.per_sample))
"""


@pytest.fixture(scope="module")
def tiny_env():
    _require_extra()
    from cxrcap.clinical_tiny import tiny_scorer_env

    return tiny_scorer_env()


@pytest.fixture(scope="module")
def tiny_results(tiny_env):
    """Every clinical metric on the six pairs, in a fresh process that sees only the random copies."""
    done = run_python("-c", SCORE_SCRIPT, json.dumps([HYPS, REFS]), timeout=300, **tiny_env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
             if line.startswith(("RESULTS ", "EMPTY "))}
    return dict(lines["RESULTS"], empty_ratescore=lines["EMPTY"])


def test_every_cpu_metric_runs_the_real_libraries_offline(tiny_results):
    assert set(tiny_results) == set(clinical.CLINICAL_KEYS) | {"empty_ratescore"}
    for key, result in tiny_results.items():
        if key in ("green", "empty_ratescore"):
            continue
        assert result["unavailable"] is None, key
        assert math.isfinite(result["value"]), key
        assert len(result["per_sample"]) == len(REFS), key
        assert math.isfinite(result["resampled"]), key
        assert result["direction"] in (clinical.HIGHER, clinical.LOWER)
    assert tiny_results["radcliq_v1"]["direction"] == clinical.LOWER
    model_metrics = [key for key, metric in clinical.METRICS.items() if metric.models and key != "green"]
    assert all(tiny_results[key]["seconds"] > 0 for key in model_metrics)


def test_green_is_unavailable_on_a_cpu_and_says_why(tiny_results):
    green = tiny_results["green"]
    assert green["value"] is None and "GPU" in green["unavailable"] and "7B" in green["unavailable"]


def test_scores_of_identical_texts_are_what_the_definitions_guarantee(tiny_results):
    # The first two pairs are identical texts: whatever the weights, BERTScore rescaled, the
    # cosine of two equal embeddings and BLEU-2 are 1 (RadGraph and RaTEScore depend on what the
    # random model tags, so nothing is asserted of them).
    for key in ("bertscore", "semb_score", "bleu2_rexrank"):
        assert tiny_results[key]["per_sample"][:2] == pytest.approx([1.0, 1.0], abs=1e-5), key
    radcliq = tiny_results["radcliq_v1"]["per_sample"]
    assert tiny_results["radcliq_v1_inv"]["value"] == pytest.approx(1 / (sum(radcliq) / len(radcliq)))


def test_an_empty_caption_gets_ratescores_no_entity_score_and_shifts_no_other_pair(tiny_results):
    # RaTEScore lines up the texts' sentences by position: a text without one moved every later
    # pair's score up by one place and dropped the last.
    empty = tiny_results["empty_ratescore"]
    assert len(empty) == len(REFS)
    assert empty[2] == 0.5  # RaTEScore's score when one side has no entities
    assert empty[3:] == pytest.approx(tiny_results["ratescore"]["per_sample"][3:])


def test_the_radgraph_archives_came_from_the_cache_the_library_downloads_into(tiny_results, tiny_env):
    # RadEval's vendored RadGraph extracts StanfordAIMI/RRG_scorers' archive beside its download.
    radgraph = os.path.join(tiny_env["XDG_CACHE_HOME"], "radgraph", "0.1.18")
    for model_type in ("radgraph", "radgraph-xl"):
        assert os.path.isfile(os.path.join(radgraph, model_type, "weights.th")), model_type


@pytest.mark.skipif(not HUB_TESTS, reason="needs the hub: CXRCAP_HUB_TESTS=1 (downloads the scorer models)")
def test_the_libraries_published_values_through_cxrcaps_adapter():
    """RadEval 2.2.1's tests/test_basics.py values, with its tolerances, through cxrcap.clinical:
    RadEval's radcliq_v1 is 1/mean RadCliQ-v1 with idf BERTScore (radcliq_idf=True); its
    bertscore is distilbert-base-uncased's (ReXrank's is distilroberta-base's)."""
    _require_extra()
    script = """
import json, sys
from cxrcap import clinical
hyps, refs = json.loads(sys.argv[1])
r = clinical.score(hyps, refs, ["radgraph_partial", "chexbert_micro_f1_5", "chexbert_micro_f1_14",
    "chexbert_macro_f1_5", "chexbert_macro_f1_14", "ratescore", "radcliq_v1_inv"], radcliq_idf=True)
values = {key: result.value for key, result in r.items()}
f1 = clinical.bertscore_f1(hyps, refs, model_type="distilbert-base-uncased", num_layers=5)
values["radeval_bertscore"] = sum(f1) / len(f1)
print("VALUES " + json.dumps(values))
"""
    done = run_python("-c", script, json.dumps([HYPS, REFS]), timeout=1800, HF_HUB_OFFLINE="0")
    assert done.returncode == 0, done.stderr[-3000:]
    values = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("VALUES "))[7:])
    expected = {
        "radgraph_partial": pytest.approx(0.41111111111111115, rel=0.01),
        "radeval_bertscore": pytest.approx(0.6327474117279053, rel=0.01),
        "chexbert_micro_f1_5": pytest.approx(0.2857142857142857, rel=0.01),
        "chexbert_micro_f1_14": pytest.approx(0.3333333333333333, rel=0.01),
        "chexbert_macro_f1_5": pytest.approx(0.13333333333333333, rel=0.01),
        "chexbert_macro_f1_14": pytest.approx(0.08333333333333333, rel=0.01),
        "ratescore": pytest.approx(0.5877872073859466, rel=0.01),
        "radcliq_v1_inv": pytest.approx(1.4997, rel=0.05),
    }
    assert values == expected
