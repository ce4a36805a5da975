"""Caption metrics: the field's libraries, offline, with their settings stated.

Two levels:

- `score(prediction, reference)`: one pair, for the app's live scores. Its `bleu` is **smoothed
  sentence BLEU** (`SENTENCE_BLEU_LABEL`): unsmoothed BLEU is 0 for any pair without a shared
  4-gram, which says nothing about a single caption.
- `corpus_scores(predictions, references)`: a test set, for tables. Corpus BLEU is not smoothed
  and equals Hugging Face `evaluate`'s `bleu` on the same (normalised) inputs; ROUGE uses
  `evaluate`'s `rouge` settings; `cider` is added. `bootstrap_ci` gives confidence intervals.

`METRIC_IMPLEMENTATIONS` names the library and settings behind every key.

Text normalisation, applied to every caption before every metric (`normalise`):

1. Unicode NFKC (ligatures, full-width and compatibility characters folded; accents kept).
2. Sentences split at line breaks and after `.`, `!` or `?` followed by white space and a
   capital letter ("Fig. 3" stays whole, "Dr. Smith" would split); they are joined with "\\n",
   which ROUGE-Lsum needs and which the other metrics read as a space.
3. Lowercased (the models' tokenisers are uncased; ROCO captions are not), white space collapsed.

Punctuation and numbers are kept in the text; each metric tokenises as its library does:
BLEU's 13a tokeniser splits punctuation into tokens that count (as in `evaluate`); rouge_score
drops everything but [a-z0-9] (so punctuation and non-ASCII letters are ignored, "4.5" becomes
"4 5"); METEOR reads nltk Treebank tokens, punctuation included (as `evaluate`'s meteor does);
CIDEr reads Treebank tokens without punctuation (as COCO's PTB tokenisation leaves them).
Numbers are not rewritten: "4.5 cm" and "45 mm" differ.

ROUGE aggregation: the corpus value is the plain mean of per-pair F1. `evaluate`'s rouge default
reports instead the median of 1,000 bootstrap means (rouge_score's BootstrapAggregator, unseeded),
which differs from the mean only by resampling noise (under 1e-3 on 60 and 200 ROCO pairs).

WordNet (for METEOR) takes seconds to load: `warm_up()` loads it in a background thread at
start-up; `score` waits for it when called early instead of failing.
"""

import functools
import re
import threading
import unicodedata
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from nltk.tokenize import word_tokenize
from nltk.translate.meteor_score import single_meteor_score
from pycocoevalcap.cider.cider import Cider
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from cxrcap import findings
from cxrcap.wordnet import load_wordnet

METRIC_KEYS = ("bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "meteor")
SENTENCE_KEYS = METRIC_KEYS + ("finding_f1",)
CORPUS_KEYS = METRIC_KEYS + ("cider", "finding_f1")
# How tables and cards name each score (the cards' sentence BLEU is smoothed: they call it
# "BLEU*" and footnote it with SENTENCE_BLEU_LABEL).
METRIC_LABELS = {
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum",
    "bleu": "BLEU", "meteor": "METEOR", "cider": "CIDEr", "finding_f1": "Finding F1",
}
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

SENTENCE_BLEU_LABEL = "BLEU (smoothed sentence BLEU: sacrebleu, exponential smoothing)"

METRIC_IMPLEMENTATIONS = {
    "bleu": "sacrebleu BLEU, 13a tokenizer, n-grams 1-4 on normalised text; corpus: no smoothing "
    "(equals evaluate's bleu); score(): sentence BLEU with sacrebleu's 'exp' smoothing "
    "(Chen & Cherry 2014 method 3) and effective order, as sacrebleu.sentence_bleu",
    "rouge1": "rouge_score unigram F1, default tokenizer (lowercase, [a-z0-9] tokens), no stemmer "
    "(evaluate's rouge default); corpus: mean over pairs",
    "rouge2": "rouge_score bigram F1, same settings as rouge1; corpus: mean over pairs",
    "rougeL": "rouge_score sentence-level LCS F1, same settings as rouge1; corpus: mean over pairs",
    "rougeLsum": "rouge_score summary-level LCS F1 over newline-split sentences, same settings as "
    "rouge1; corpus: mean over pairs",
    "meteor": "nltk single_meteor_score (alpha 0.9, beta 3, gamma 0.5; exact, Porter-stem and "
    "WordNet 3.0 synonym matches) on nltk Treebank tokens, as evaluate's meteor; corpus: mean over "
    "pairs; not the Java METEOR 1.5 of pycocoevalcap",
    "cider": "pycocoevalcap Cider (CIDEr-D: n-grams 1-4, sigma 6, 0-10 scale, IDF from the corpus's "
    "references) on nltk Treebank tokens without punctuation in place of COCO's Java PTB tokenizer; "
    "corpus only",
    "finding_f1": "cxrcap.findings: F1 of the chest findings (name, negation, side) in prediction vs "
    "reference; corpus: micro-F1 of the counts summed over pairs; none (n/a) when neither caption "
    "names a finding, and such pairs add no counts",
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])|\s*\n\s*")
_BLEU_SENTENCE = BLEU(tokenize="13a", smooth_method="exp", effective_order=True)
_ROUGE = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)
_BLEU_ORDER = 4


class MetricInputError(ValueError):
    """Captions the metrics cannot score; the message says what to fix."""


def normalise(caption: str) -> str:
    """The caption every metric sees: NFKC, one lowercased sentence per line (see module doc)."""
    text = unicodedata.normalize("NFKC", caption)
    sentences = (" ".join(part.split()).lower() for part in _SENTENCE_END.split(text))
    return "\n".join(sentence for sentence in sentences if sentence)


def warm_up(background: bool = True) -> None:
    """Start loading WordNet (once per process) in a background thread; wait for it unless `background`."""
    loading = _wordnet_loading()
    if not background:
        loading.result()


def score(prediction: str, reference: str) -> dict[str, float | None]:
    """Scores of one predicted caption against its reference: `SENTENCE_KEYS`, each in [0, 1]
    (`finding_f1` None when neither caption names a finding)."""
    _check_captions([prediction], [reference])
    pair = _score_pair(prediction, reference, _wordnet())
    return {
        "bleu": pair.bleu_sentence,
        **dict(zip(ROUGE_KEYS, pair.rouge)),
        "meteor": pair.meteor,
        "finding_f1": findings.f1_or_none(*pair.finding_counts),
    }


def corpus_scores(predictions: list[str], references: list[str]) -> dict[str, float | None]:
    """Corpus scores of paired captions: `CORPUS_KEYS` (cider on its 0-10 scale, others in [0, 1];
    `finding_f1` None when no pair names a finding)."""
    stats = _checked_corpus_stats(predictions, references)
    return {key: _number_or_none(values[0]) for key, values in stats.aggregate(np.arange(stats.size)[None]).items()}


def pairs_without_findings(predictions: list[str], references: list[str]) -> int:
    """How many pairs name no finding in either caption: they add nothing to corpus finding F1."""
    stats = _checked_corpus_stats(predictions, references)
    return int((stats.finding_counts.sum(axis=1) == 0).sum())


def bootstrap_ci(
    predictions: list[str],
    references: list[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence interval of every corpus metric, resampling pairs (images).

    Per-pair statistics are computed once (and shared with `corpus_scores` on the same captions);
    each resample re-aggregates them (BLEU from summed n-gram counts, CIDEr per pair with the IDF
    of the full corpus, finding F1 from summed counts; resamples that name no finding have no
    finding F1 and are left out of its interval, which is (None, None) when none names one).
    """
    if n_resamples < 1 or not 0 < confidence < 1:
        raise MetricInputError("bootstrap needs n_resamples >= 1 and 0 < confidence < 1")
    stats = _checked_corpus_stats(predictions, references)
    resamples = np.random.default_rng(seed).integers(0, stats.size, size=(n_resamples, stats.size))
    tail = (1 - confidence) / 2 * 100
    return {key: _interval(values, tail) for key, values in stats.aggregate(resamples).items()}


def _interval(values: np.ndarray, tail: float) -> tuple[float | None, float | None]:
    """Percentile interval of resampled values; NaN ones (finding F1 of resamples that name no
    finding) are left out, and with none left there is no interval."""
    values = values[~np.isnan(values)]
    if not values.size:
        return None, None
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def _number_or_none(value) -> float | None:
    return None if np.isnan(value) else float(value)


def bootstrap_difference(
    baseline: list[str],
    other: list[str],
    references: list[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float | None, float | None, float | None]]:
    """Every corpus metric of `other` minus that of `baseline` (captions of the same images), with
    a paired percentile bootstrap interval: each resample draws the same images for both.
    Returns {key: (difference, low, high)}; finding F1's are None where either side has none."""
    if n_resamples < 1 or not 0 < confidence < 1:
        raise MetricInputError("bootstrap needs n_resamples >= 1 and 0 < confidence < 1")
    first, second = _checked_corpus_stats(baseline, references), _checked_corpus_stats(other, references)
    everything = np.arange(first.size)[None]
    resamples = np.random.default_rng(seed).integers(0, first.size, size=(n_resamples, first.size))
    whole = _difference(first, second, everything)
    resampled = _difference(first, second, resamples)
    tail = (1 - confidence) / 2 * 100
    return {key: (_number_or_none(whole[key][0]), *_interval(values, tail)) for key, values in resampled.items()}


def _difference(first: "_CorpusStats", second: "_CorpusStats", resamples: np.ndarray) -> dict[str, np.ndarray]:
    first_values, second_values = first.aggregate(resamples), second.aggregate(resamples)
    return {key: second_values[key] - first_values[key] for key in first_values}


@dataclass(frozen=True)
class _PairScores:
    bleu_sentence: float
    bleu_stats: tuple[float, ...]  # sys_len, ref_len, matches 1-4, totals 1-4: corpus BLEU sums these
    rouge: tuple[float, ...]  # F1 in ROUGE_KEYS order
    meteor: float
    finding_counts: tuple[int, int, int]  # agree, extra, missing


def _score_pair(prediction: str, reference: str, wordnet) -> _PairScores:
    hypothesis, target = normalise(prediction), normalise(reference)
    bleu = _BLEU_SENTENCE.sentence_score(hypothesis, [target])
    rouge = _ROUGE.score(target, hypothesis)
    return _PairScores(
        bleu_sentence=_unit(bleu.score),
        bleu_stats=(bleu.sys_len, bleu.ref_len, *bleu.counts, *bleu.totals),
        rouge=tuple(rouge[key].fmeasure for key in ROUGE_KEYS),
        meteor=single_meteor_score(_tokens(target), _tokens(hypothesis), wordnet=wordnet),
        finding_counts=findings.finding_counts(prediction, reference),
    )


@dataclass(frozen=True)
class _CorpusStats:
    """Per-pair statistics of a corpus, from which any resample's corpus metrics follow."""

    bleu: np.ndarray  # (n, 2 + 2 * order)
    rouge: np.ndarray  # (n, 4)
    meteor: np.ndarray  # (n,)
    cider: np.ndarray  # (n,)
    finding_counts: np.ndarray  # (n, 3)

    @property
    def size(self) -> int:
        return len(self.meteor)

    @classmethod
    def compute(cls, predictions: list[str], references: list[str]) -> "_CorpusStats":
        wordnet = _wordnet()
        pairs = [_score_pair(p, r, wordnet) for p, r in zip(predictions, references)]
        return cls(
            bleu=np.array([pair.bleu_stats for pair in pairs], dtype=float),
            rouge=np.array([pair.rouge for pair in pairs]),
            meteor=np.array([pair.meteor for pair in pairs]),
            cider=_cider_per_pair(predictions, references),
            finding_counts=np.array([pair.finding_counts for pair in pairs], dtype=float),
        )

    def aggregate(self, resamples: np.ndarray) -> dict[str, np.ndarray]:
        """Corpus metrics for each row of pair indices in `resamples` (shape (r, n)) -> (r,) arrays."""
        bleu_sums = self.bleu[resamples].sum(axis=1)
        rouge_means = self.rouge[resamples].mean(axis=1)
        return {
            "bleu": np.array([_corpus_bleu(sums) for sums in bleu_sums]),
            **{key: rouge_means[:, column] for column, key in enumerate(ROUGE_KEYS)},
            "meteor": self.meteor[resamples].mean(axis=1),
            "cider": self.cider[resamples].mean(axis=1),
            "finding_f1": findings.micro_f1(*self.finding_counts[resamples].sum(axis=1).T),
        }


def _checked_corpus_stats(predictions: list[str], references: list[str]) -> _CorpusStats:
    _check_captions(predictions, references)
    return _corpus_stats(tuple(predictions), tuple(references))


@functools.lru_cache(maxsize=8)  # a report asks for corpus_scores and bootstrap_ci of each variant
def _corpus_stats(predictions: tuple[str, ...], references: tuple[str, ...]) -> _CorpusStats:
    return _CorpusStats.compute(list(predictions), list(references))


def _corpus_bleu(sums: np.ndarray) -> float:
    sys_len, ref_len = sums[:2]
    matches, totals = sums[2 : 2 + _BLEU_ORDER], sums[2 + _BLEU_ORDER :]
    result = BLEU.compute_bleu(
        correct=[int(value) for value in matches],
        total=[int(value) for value in totals],
        sys_len=int(sys_len),
        ref_len=int(ref_len),
        smooth_method="none",
    )
    return _unit(result.score)


def _unit(sacrebleu_score: float) -> float:
    # sacrebleu scores 0-100 via exp(log(100 * precision)), so a perfect match can be 100.00000000000004
    return min(sacrebleu_score / 100, 1.0)


def _cider_per_pair(predictions: list[str], references: list[str]) -> np.ndarray:
    # CIDEr's IDF comes from all references, so per-pair values only exist within a corpus.
    references_by_id = {i: [_cider_text(reference)] for i, reference in enumerate(references)}
    predictions_by_id = {i: [_cider_text(prediction)] for i, prediction in enumerate(predictions)}
    _, per_pair = Cider().compute_score(references_by_id, predictions_by_id)
    return np.asarray(per_pair, dtype=float)


def _tokens(normalised: str) -> list[str]:
    # word_tokenize would split sentences with punkt (not installed offline); the lines already are.
    return [token for line in normalised.splitlines() for token in word_tokenize(line, preserve_line=True)]


def _cider_text(caption: str) -> str:
    words = (token for token in _tokens(normalise(caption)) if not _is_punctuation(token))
    return " ".join(words)


def _is_punctuation(token: str) -> bool:
    return all(unicodedata.category(char).startswith("P") for char in token)


def _check_captions(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise MetricInputError(
            f"{len(predictions)} predictions but {len(references)} references: they must pair up one to one"
        )
    if not predictions:
        raise MetricInputError("no captions to score: give at least one prediction and reference")
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        where = f" of pair {index}" if len(references) > 1 else ""
        for role, caption in (("prediction", prediction), ("reference", reference)):
            if not isinstance(caption, str):
                raise MetricInputError(f"the {role}{where} is a {type(caption).__name__}, not a string")
        if not normalise(reference):
            raise MetricInputError(
                f"the reference caption{where} is empty: a prediction can only be scored against a reference"
            )


_wordnet_lock = threading.Lock()
_wordnet_load: Future | None = None


def _wordnet_loading() -> Future:
    """The one WordNet load of this process, started by the first caller in a daemon thread."""
    global _wordnet_load
    with _wordnet_lock:
        if _wordnet_load is None:
            _wordnet_load = Future()
            threading.Thread(target=_load_wordnet_into, args=(_wordnet_load,), daemon=True).start()
        return _wordnet_load


def _wordnet():
    """The loaded WordNet reader, waiting for the load if it is still running."""
    return _wordnet_loading().result()


def _load_wordnet_into(future: Future) -> None:
    try:
        future.set_result(load_wordnet())
    except BaseException as error:  # handed to whoever waits for WordNet
        future.set_exception(error)
