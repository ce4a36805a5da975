"""cxrcap.metrics and cxrcap.wordnet against the libraries they wrap, on real ROCO captions.

Hugging Face `evaluate` fetches its metric scripts from the hub (its wheel and sdist ship none),
which fails offline, so corpus BLEU and ROUGE are checked against the computation those scripts
perform (huggingface/evaluate, metrics/bleu/bleu.py and metrics/rouge/rouge.py):
- bleu: tensorflow/nmt's `compute_bleu` (no smoothing, max order 4, shortest reference) over
  tokens of sacrebleu's 13a tokenizer, reproduced here by nltk's independent `corpus_bleu`;
- rouge: `rouge_scorer.RougeScorer(rouge_types, use_stemmer=False)`, aggregated by
  `scoring.BootstrapAggregator().aggregate()[key].mid.fmeasure`.
"""

import json
import re
import time
from pathlib import Path

import nltk
import numpy as np
import pytest
import sacrebleu
from nltk.tokenize import word_tokenize
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import single_meteor_score
from pycocoevalcap.cider.cider import Cider
from rouge_score import rouge_scorer, scoring
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from processes import run_python

from cxrcap import metrics, wordnet
from cxrcap.metrics import (
    CORPUS_KEYS,
    METRIC_IMPLEMENTATIONS,
    METRIC_KEYS,
    SENTENCE_KEYS,
    MetricInputError,
    bootstrap_ci,
    corpus_scores,
    normalise,
    score,
)

REPO = Path(__file__).resolve().parents[1]
CHEST_XRAY = re.compile(r"chest (?:x-?ray|x ray|radiograph|film)|\bcxr\b", re.IGNORECASE)
DONE_MEANS = ("chest x-ray showing a large left pneumothorax", "chest radiograph with left-sided pneumothorax")


def read_captions(roco_dir: Path, split: str) -> list[str]:
    lines = (roco_dir / split / "radiology" / "captions.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1].strip() for line in lines]


@pytest.fixture(scope="module")
def chest_pairs(roco_dir) -> tuple[list[str], list[str]]:
    """60 pairs of different real chest X-ray captions of the test split.

    Neighbours in alphabetical order, so that pairs share openings ("chest x-ray showing a ...")
    as a model's caption and its reference do.
    """
    captions = sorted({c for c in read_captions(roco_dir, "test") if CHEST_XRAY.search(c)}, key=str.lower)[:120]
    return captions[0::2], captions[1::2]


@pytest.fixture(scope="module")
def wordnet_reader():
    return wordnet.load_wordnet()


def test_warm_up_returns_at_once_and_an_early_score_waits_for_it():
    # A fresh process, so that WordNet is still loading when score() is called (in this one,
    # other tests may have loaded it already).
    code = f"""
import json, time
from cxrcap import metrics
started = time.perf_counter()
metrics.warm_up()
returned = time.perf_counter() - started
loading = not metrics._wordnet_loading().done()
scores = metrics.score(*{DONE_MEANS!r})
print(json.dumps(dict(returned=returned, loading=loading, scored=time.perf_counter() - started, scores=scores)))
"""
    done = run_python("-c", code, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    print(f"\nwarm_up() returned in {result['returned'] * 1000:.1f} ms; first score after {result['scored']:.1f} s")
    assert result["returned"] < 0.5
    assert result["loading"]  # score() was called while WordNet was still loading, and waited for it
    assert result["scores"] == pytest.approx(score(*DONE_MEANS))  # the same as with WordNet loaded


def test_score_gives_every_sentence_key_in_unit_interval():
    scores = score(*DONE_MEANS)
    assert set(scores) == set(SENTENCE_KEYS)
    assert all(isinstance(value, float) and 0.0 <= value <= 1.0 for value in scores.values())
    assert scores["finding_f1"] == 1.0  # both say: left pneumothorax


def test_every_key_names_its_implementation():
    assert set(METRIC_IMPLEMENTATIONS) == set(CORPUS_KEYS)
    assert "smooth" in metrics.SENTENCE_BLEU_LABEL


def test_normalise_lowercases_and_puts_one_sentence_per_line():
    caption = "Chest X-ray (Fig. 3) shows a 4.5 cm mass.  No effusion!\nRight  lung ﬁne."
    assert normalise(caption) == "chest x-ray (fig. 3) shows a 4.5 cm mass.\nno effusion!\nright lung fine."


def test_corpus_bleu_equals_sacrebleu_and_evaluates_computation(chest_pairs):
    tokenize = Tokenizer13a()
    # nltk counts a hypothesis shorter than n tokens as 1 possible n-gram where nmt counts 0;
    # with hypotheses of 4+ tokens (real captions) the two computations are the same.
    pairs = [(p, r) for p, r in zip(*chest_pairs) if len(tokenize(normalise(p)).split()) >= 4]
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    ours = corpus_scores(predictions, references)["bleu"]
    hypotheses, targets = [normalise(p) for p in predictions], [normalise(r) for r in references]
    direct = sacrebleu.corpus_bleu(hypotheses, [targets], tokenize="13a", smooth_method="none").score / 100
    evaluate_way = corpus_bleu([[tokenize(t).split()] for t in targets], [tokenize(h).split() for h in hypotheses])
    print(
        f"\ncorpus BLEU, {len(pairs)} ROCO pairs: ours {ours:.6f}, sacrebleu {direct:.6f}, nmt way {evaluate_way:.6f}"
    )
    assert ours > 0
    assert ours == pytest.approx(direct, abs=1e-12)
    assert ours == pytest.approx(evaluate_way, abs=1e-12)


def test_sentence_bleu_is_sacrebleus_smoothed_sentence_bleu(chest_pairs):
    for prediction, reference in zip(*chest_pairs):
        expected = sacrebleu.sentence_bleu(normalise(prediction), [normalise(reference)]).score / 100
        assert score(prediction, reference)["bleu"] == pytest.approx(expected, abs=1e-12)
    unsmoothed = sacrebleu.sentence_bleu(normalise(DONE_MEANS[0]), [normalise(DONE_MEANS[1])], smooth_method="none")
    assert unsmoothed.score == 0.0 < score(*DONE_MEANS)["bleu"]  # no shared 4-gram: smoothing matters


def test_rouge_equals_rouge_score_and_evaluates_aggregate(chest_pairs):
    predictions, references = chest_pairs
    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_KEYS), use_stemmer=False)
    per_pair = [scorer.score(normalise(r), normalise(p)) for p, r in zip(predictions, references)]
    ours = corpus_scores(predictions, references)
    aggregator = scoring.BootstrapAggregator()
    for pair in per_pair:
        aggregator.add_scores(pair)
    aggregated = aggregator.aggregate()
    for key in metrics.ROUGE_KEYS:
        mean = float(np.mean([pair[key].fmeasure for pair in per_pair]))
        evaluate_default = aggregated[key].mid.fmeasure
        print(f"\n{key}: ours {ours[key]:.6f}, mean of rouge_score {mean:.6f}, evaluate default {evaluate_default:.6f}")
        assert ours[key] == pytest.approx(mean, abs=1e-12)
        assert ours[key] == pytest.approx(evaluate_default, abs=0.01)  # bootstrap median vs mean
    first = score(predictions[0], references[0])
    assert [first[k] for k in metrics.ROUGE_KEYS] == pytest.approx(
        [per_pair[0][k].fmeasure for k in metrics.ROUGE_KEYS]
    )


def test_rouge_lsum_reads_sentences_where_rouge_l_reads_one_sequence():
    reference = "Cardiomegaly is present. There is a small left pleural effusion."
    prediction = "There is a small left pleural effusion. Cardiomegaly is present."
    scores = score(prediction, reference)
    assert scores["rouge1"] == 1.0
    assert scores["rougeLsum"] == 1.0 > scores["rougeL"]


def test_meteor_equals_nltk_with_its_own_wordnet_reader_on_treebank_tokens(chest_pairs, wordnet_reader):
    # nltk's own reader (slow to load: it builds a WordNet 3.0 map that cxrcap's reader skips).
    from nltk.corpus import wordnet as nltk_wordnet

    for prediction, reference in zip(*chest_pairs):
        # evaluate's meteor: word_tokenize = sentence split, then Treebank tokens per sentence
        tokens = [
            [token for line in normalise(text).splitlines() for token in word_tokenize(line, preserve_line=True)]
            for text in (reference, prediction)
        ]
        expected = single_meteor_score(*tokens, wordnet=nltk_wordnet)
        assert score(prediction, reference)["meteor"] == pytest.approx(expected, abs=1e-12)


def test_meteor_matches_synonyms_through_wordnet(wordnet_reader):
    # nltk matches WordNet synonyms of Porter stems: "ill" and "sick" are their own stems.
    assert "sick" in {lemma.name() for synset in wordnet_reader.synsets("ill") for lemma in synset.lemmas()}
    reference = "the patient is sick"
    synonym = score("the patient is ill", reference)["meteor"]
    unrelated = score("the patient is tall", reference)["meteor"]
    print(f"\nMETEOR vs '{reference}': synonym 'ill' {synonym:.4f}, unrelated 'tall' {unrelated:.4f}")
    assert synonym > 0.95 and unrelated < 0.8


def test_cider_equals_pycocoevalcap_where_tokenisation_is_moot(chest_pairs):
    # Lowercase words without punctuation tokenise the same in every tokenizer.
    def plain(caption):
        return " ".join(re.findall(r"[a-z]+", caption.lower()))

    predictions, references = ([plain(c) for c in side] for side in chest_pairs)
    ours = corpus_scores(predictions, references)["cider"]
    direct, _ = Cider().compute_score(
        {i: [r] for i, r in enumerate(references)}, {i: [p] for i, p in enumerate(predictions)}
    )
    print(f"\nCIDEr-D: ours {ours:.6f}, pycocoevalcap {direct:.6f}")
    assert ours == pytest.approx(direct, abs=1e-12)
    # 10 for each caption of four words or more (a shorter one has no 4-grams to match)
    assert 9.5 < corpus_scores(references, references)["cider"] <= 10.0


def test_corpus_finding_f1_is_micro_averaged():
    predictions = ["left pneumothorax", "normal chest x-ray", "right pleural effusion"]
    references = ["left-sided pneumothorax", "cardiomegaly", "bilateral pleural effusions"]
    # agree 1 + 0 + 0; extra 0 + 1 + 1; missing 0 + 1 + 1 -> 2 / (2 + 2 + 2)
    assert corpus_scores(predictions, references)["finding_f1"] == pytest.approx(2 / 6)


def test_pairs_naming_no_finding_add_nothing_to_corpus_finding_f1_and_are_counted():
    predictions = ["left pneumothorax", "a photo of a dog", "chest x-ray"]
    references = ["left-sided pneumothorax", "Severe ARDS.", "PA view"]
    assert score(predictions[1], references[1])["finding_f1"] is None
    assert corpus_scores(predictions, references)["finding_f1"] == 1.0  # summed counts: the one pair with findings
    assert metrics.pairs_without_findings(predictions, references) == 2
    assert corpus_scores(predictions[1:], references[1:])["finding_f1"] is None  # none named anywhere: no F1
    low, high = bootstrap_ci(predictions, references, n_resamples=50)["finding_f1"]
    assert low == high == 1.0  # resamples without a finding are left out, not counted as 1.0 or 0.0
    assert bootstrap_ci(predictions[1:], references[1:], n_resamples=20)["finding_f1"] == (None, None)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("", "Chest radiograph showing right pleural effusion."),
        ("   \n ", "Chest radiograph showing right pleural effusion."),
    ],
    ids=["empty", "white space"],
)
def test_empty_prediction_scores_zero(prediction, reference):
    scores = score(prediction, reference)
    assert all(scores[key] == 0.0 for key in METRIC_KEYS)
    assert scores["finding_f1"] == 0.0  # the reference names a finding the prediction lacks


def test_identical_captions_score_one(chest_pairs):
    caption = chest_pairs[1][0]
    scores = score(caption, caption)
    assert all(scores[key] == 1.0 for key in ("bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "finding_f1"))
    assert scores["bleu"] <= 1.0  # sacrebleu's own arithmetic can overshoot 1 by 4e-16
    assert scores["meteor"] > 0.99  # METEOR's fragmentation penalty never quite reaches 0
    corpus = corpus_scores(chest_pairs[1], chest_pairs[1])
    assert corpus["bleu"] == pytest.approx(1.0) and corpus["meteor"] > 0.99


def test_unicode_and_numbers_follow_the_libraries():
    prediction = "Röntgen: 4.5 cm Raumforderung rechts – Pneumothorax ≥ 30 %"
    reference = "Röntgen thorax: 45 mm mass, right pneumothorax ≥30%"
    scores = score(prediction, reference)
    hypothesis, target = normalise(prediction), normalise(reference)
    assert scores["bleu"] == pytest.approx(sacrebleu.sentence_bleu(hypothesis, [target]).score / 100)
    direct = rouge_scorer.RougeScorer(["rouge1"]).score(target, hypothesis)["rouge1"].fmeasure
    assert scores["rouge1"] == pytest.approx(direct)
    # rouge_score keeps [a-z0-9] only: "röntgen" -> "r ntgen", "4.5" -> "4 5"; 4.5 cm is not 45 mm
    assert score("4.5 cm nodule", "45 mm nodule")["rouge1"] < 1.0


def test_a_2000_word_caption_is_scored(chest_pairs):
    words = " ".join(chest_pairs[0]).split()
    long_caption = " ".join((words * (2000 // len(words) + 1))[:2000])
    started = time.perf_counter()
    scores = score(long_caption, chest_pairs[1][0])
    elapsed = time.perf_counter() - started
    print(f"\n2,000-word caption scored in {elapsed:.2f} s")
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    assert elapsed < 10


def test_bad_input_gets_a_clear_error():
    with pytest.raises(MetricInputError, match="reference caption is empty"):
        score("left pneumothorax", "  ")
    with pytest.raises(MetricInputError, match="prediction is a NoneType, not a string"):
        score(None, "left pneumothorax")
    with pytest.raises(MetricInputError, match="reference caption of pair 1 is empty"):
        corpus_scores(["a", "b"], ["a", ""])
    with pytest.raises(MetricInputError, match="2 predictions but 1 references"):
        corpus_scores(["a", "b"], ["a"])
    with pytest.raises(MetricInputError, match="no captions"):
        corpus_scores([], [])


def test_bootstrap_ci_brackets_every_corpus_metric_and_is_reproducible(chest_pairs):
    predictions, references = chest_pairs
    started = time.perf_counter()
    intervals = bootstrap_ci(predictions, references, n_resamples=1000, seed=0)
    elapsed = time.perf_counter() - started
    print(f"\nbootstrap (1000 resamples, {len(predictions)} pairs) in {elapsed:.2f} s")
    point = corpus_scores(predictions, references)
    assert set(intervals) == set(CORPUS_KEYS)
    for key, (low, high) in intervals.items():
        assert low <= point[key] <= high, key
        assert low < high, key
    assert bootstrap_ci(predictions, references, n_resamples=200, seed=0) == bootstrap_ci(
        predictions, references, n_resamples=200, seed=0
    )
    same = bootstrap_ci(references, references, n_resamples=50)
    assert same["bleu"] == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize(
    "cache, where", [("{tmp}/cache", "cache"), ("~/cache", "cache"), ("", ".cache/cxrcap")], ids=["path", "~", "empty"]
)
def test_wordnet_corpus_is_built_from_the_debian_files(cache, where, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # `~` and the default cache are under it
    monkeypatch.setenv("CXRCAP_CACHE", cache.format(tmp=tmp_path))
    monkeypatch.setattr(nltk.data, "path", [])
    wordnet.ensure_wordnet()
    corpus = tmp_path / where / "nltk_data" / "corpora" / "wordnet"
    files = sorted(corpus.iterdir())
    assert all(path.is_file() and not path.is_symlink() for path in files)
    assert {"data.noun", "index.sense", "lexnames"} <= {path.name for path in files}
    assert nltk.data.find("corpora/wordnet")
    built = (corpus / "lexnames").stat().st_mtime_ns
    wordnet.ensure_wordnet()
    assert (corpus / "lexnames").stat().st_mtime_ns == built  # built once


def test_lexnames_agree_with_the_wordnet_database(tmp_path):
    # Every synset's lexicographer file (field 2 of data.*) must name its own part of speech.
    corpus = tmp_path / "wordnet"
    wordnet.build_corpus(wordnet.DEBIAN_WORDNET_DIR, corpus)
    lexnames = [line.split("\t") for line in (corpus / "lexnames").read_text().splitlines()]
    assert len(lexnames) == 45 and [int(number) for number, _, _ in lexnames] == list(range(45))
    for pos in ("noun", "verb", "adj", "adv"):
        with open(corpus / f"data.{pos}", encoding="utf-8") as data:
            numbers = {int(line.split(" ", 2)[1]) for line in data if not line.startswith(" ")}
        assert {lexnames[number][1].split(".")[0] for number in numbers} == {pos}


def test_loaded_wordnet_knows_lexicographer_files(wordnet_reader):
    assert wordnet_reader.synset("dog.n.01").lexname() == "noun.animal"
    assert wordnet_reader.synset("run.v.01").lexname() == "verb.motion"


def test_missing_wordnet_names_the_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRCAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [])
    with pytest.raises(wordnet.WordNetMissingError, match="apt-get install wordnet-base wordnet-sense-index"):
        wordnet.ensure_wordnet(debian_dir=tmp_path / "no-wordnet")
