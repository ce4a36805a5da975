"""Clinical metrics of report generation, as the field computes them (the `clinical` extra).

`score(predictions, references)` returns, per metric, the per-pair scores and the corpus value,
with the metric's direction, the models it needs and the seconds it took. The metrics are
ReXrank's (rajpurkarlab/ReXrank, which scores with rajpurkarlab/CXR-Report-Metric, RaTEScore's and
GREEN's own code), computed by the field's libraries, never re-implemented here: RadEval 2.2.1
(`radeval`: its vendored BERTScore, CheXbert, RadGraph, RaTEScore and GREEN), fast_bleu (ReXrank's
BLEU-2) and pycocoevalcap (the R2Gen lineage's BLEU-1..4). What each key means:

| key | what | corpus value | ReXrank's definition? |
|---|---|---|---|
| `bleu2_rexrank` | BLEU-2 per report: fast_bleu, weights (1/2, 1/2), text lowercased, "." split off, split at spaces (CXR-Report-Metric's `prep_reports`) | mean | yes |
| `bleu1_coco` .. `bleu4_coco` | pycocoevalcap corpus BLEU-n on the texts as given (split at white space), as RadEval's `bleu` | corpus BLEU ("closest" reference length) | not ReXrank's: the R2Gen lineage's |
| `bertscore` | BERTScore F1, `distilroberta-base`, layer 5, baseline rescaling, no idf | mean | yes |
| `semb_score` | cosine of the CheXbert [CLS] embeddings of prediction and reference | mean | yes (see below) |
| `radgraph` | RadGraph F1: mean of entity F1 and relation F1 (exact sets), RadGraph v1 model | mean | yes (CXR-Report-Metric's `radgraph_combined`) |
| `radgraph_partial` | F1RadGraph "partial" reward, RadGraph-XL (RadEval's `radgraph_partial`) | mean | not ReXrank's: RadEval's |
| `radcliq_v1` | RadCliQ-v1 per report from the four ReXrank scores above | mean (lower is better) | yes |
| `radcliq_v1_inv` | 1/RadCliQ-v1, ReXrank's primary ranking | 1 / mean RadCliQ-v1 | yes |
| `ratescore` | RaTEScore | mean | yes |
| `chexbert_{micro,macro}_f1_{14,5}` | F1 of CheXbert's labels (positive or uncertain = 1) of prediction against reference, micro/macro over the 14 observations or the 5 (cardiomegaly, edema, consolidation, atelectasis, pleural effusion) | pooled over pairs (no per-pair score) | papers' CheXbert F1, RadEval's `f1chexbert_*` |
| `green` | GREEN (7B language model) | mean | GPU only: unavailable on a CPU |

Where cxrcap's numbers can differ from ReXrank's own runs:
- SembScore and CheXbert F1 use RadEval's CheXbert pipeline (a Hugging Face BERT tokenizer, 512
  tokens), not CXR-Report-Metric's `encode.py` with its own tokenisation: same model, same
  [CLS] vector; tokenisation of unusual text may differ.
- RadGraph runs RadEval's vendored copy of radgraph 0.1.18 (patched for transformers 5), not
  PhysioNet's DyGIE checkpoint through AllenNLP; RadEval reproduces radgraph's regression values.
- RadCliQ-v1 applies CXR-Report-Metric's learnt normaliser and coefficients (as RadEval
  transcribes them) to the four scores above, so it uses BERTScore without idf as ReXrank does;
  RadEval's own `radcliq_v1` uses BERTScore with idf over the references. `score(...,
  radcliq_idf=True)` gives RadEval's.
- cxrcap's own `bleu` (`cxrcap.metrics`, sacrebleu) is neither of these BLEUs: on RadEval's test
  pairs sacrebleu's corpus BLEU is 0.1535, pycocoevalcap's BLEU-4 0.1668.

Installing: `pip install -r requirements-clinical.txt` then `pip install --no-deps -r
requirements-clinical-nodeps.txt` (README, "Clinical metrics": RadEval's own dependencies pull
torchvision, and medspacy a spaCy that needs numpy 1). RadEval 2.2.1's vendored RadGraph imports itself as `RadEval` (the package's old name,
jbdel/RadEval issue #27), which fails on case-sensitive file systems: `import_radeval`
makes that name an alias of `radeval`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

HIGHER, LOWER = "higher", "lower"
INSTALL_HINT = ("the clinical metrics need their extra: pip install -r requirements-clinical.txt "
                "&& pip install --no-deps -r requirements-clinical-nodeps.txt")


@dataclass(frozen=True)
class Model:
    """A model a metric downloads: hub id (and file), licence, size."""

    hub_id: str
    licence: str
    size: str


DISTILROBERTA = Model("distilroberta-base", "Apache-2.0", "82M parameters (RoBERTa, 6 layers)")
BERT_BASE = Model("bert-base-uncased", "Apache-2.0", "tokenizer and configuration only")
CHEXBERT = Model("StanfordAIMI/RRG_scorers chexbert.pth", "see the model card (not readable offline)",
                 "110M parameters (BERT-base, 14 heads)")
# A RadGraph archive holds a DyGIE model; the encoder it names is fetched from the hub too.
RADGRAPH_V1 = Model("StanfordAIMI/RRG_scorers radgraph.tar.gz", "see the model card (not readable offline)",
                    "DyGIE over the BERT encoder its configuration names")
RADGRAPH_XL = Model("StanfordAIMI/RRG_scorers radgraph-xl.tar.gz", "see the model card (not readable offline)",
                    "DyGIE over the BERT encoder its configuration names")
RATE_NER = Model("Angelakeke/RaTE-NER-Deberta", "see the model card (not readable offline)",
                 "DeBERTa token classifier (entity tagger)")
BIOLORD = Model("FremyCompany/BioLORD-2023-C", "see the model card (not readable offline)",
                "110M parameters (MPNet-base)")
GREEN_MODEL = Model("StanfordAIMI/GREEN-radllama2-7b", "see the model card (not readable offline)",
                    "7B parameters (Llama 2)")


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    direction: str  # HIGHER or LOWER is better
    models: tuple[Model, ...]
    scorer: str  # the key of SCORERS whose per-pair statistics it reads
    corpus: Callable[[list], float]  # corpus value of the statistics of some pairs (a resample)
    per_pair: Callable[[object], float | None] = lambda stats: stats  # a pair's own score, if any
    needs_gpu: bool = False


@dataclass
class MetricResult:
    """One metric on a corpus. `stats` are the per-pair statistics `corpus` aggregates: resample
    pairs with `resample(indices)` (a bootstrap) without running any model again."""

    metric: Metric
    seconds: float
    per_sample: list[float | None] = field(default_factory=list)
    value: float | None = None
    stats: list = field(default_factory=list, repr=False)
    unavailable: str | None = None  # why it was not computed

    @property
    def key(self) -> str:
        return self.metric.key

    def resample(self, indices: Sequence[int]) -> float:
        return self.metric.corpus([self.stats[i] for i in indices])


class ClinicalMetricsUnavailable(RuntimeError):
    """The extra's packages are not installed; the message says how to install them."""


def _mean(values: list) -> float:
    return float(np.mean(values))


def _coco_bleu(order: int) -> Callable[[list], float]:
    def corpus(stats: list) -> float:
        from pycocoevalcap.bleu.bleu_scorer import BleuScorer

        scorer = BleuScorer(n=4)
        for test, refs in stats:
            scorer.ctest.append(test)
            scorer.crefs.append(refs)
        scores, _ = scorer.compute_score(option="closest", verbose=0)
        return float(scores[order - 1])

    return corpus


def _chexbert_f1(average: str, observations: int) -> Callable[[list], float]:
    def corpus(stats: list) -> float:
        from sklearn.metrics import f1_score

        columns = CHEXBERT_FIVE if observations == 5 else slice(None)
        predicted = np.array([hyp for hyp, _ in stats])[:, columns]
        reference = np.array([ref for _, ref in stats])[:, columns]
        return float(f1_score(reference, predicted, average=average, zero_division=0))

    return corpus


def _inverse_mean(values: list) -> float:
    return float(1 / np.mean(values))


def _none(stats) -> None:
    return None


METRICS = {
    metric.key: metric
    for metric in [
        Metric("bleu2_rexrank", "BLEU-2 (ReXrank)", HIGHER, (), "bleu2_rexrank", _mean),
        *[Metric(f"bleu{n}_coco", f"BLEU-{n} (pycocoevalcap corpus)", HIGHER, (), "coco_bleu", _coco_bleu(n),
                 per_pair=_none) for n in (1, 2, 3, 4)],
        Metric("bertscore", "BERTScore (distilroberta-base, rescaled)", HIGHER, (DISTILROBERTA,), "bertscore", _mean),
        Metric("semb_score", "SembScore (CheXbert cosine)", HIGHER, (BERT_BASE, CHEXBERT), "semb_score", _mean),
        Metric("radgraph", "RadGraph F1 (ReXrank: entities and relations)", HIGHER, (RADGRAPH_V1,), "radgraph", _mean),
        Metric("radgraph_partial", "RadGraph F1 partial (RadEval, RadGraph-XL)", HIGHER, (RADGRAPH_XL,),
               "radgraph_partial", _mean),
        Metric("radcliq_v1", "RadCliQ-v1", LOWER, (DISTILROBERTA, BERT_BASE, CHEXBERT, RADGRAPH_V1),
               "radcliq", _mean),
        Metric("radcliq_v1_inv", "1/RadCliQ-v1 (ReXrank's ranking)", HIGHER,
               (DISTILROBERTA, BERT_BASE, CHEXBERT, RADGRAPH_V1), "radcliq", _inverse_mean, per_pair=_none),
        Metric("ratescore", "RaTEScore", HIGHER, (RATE_NER, BIOLORD), "ratescore", _mean),
        *[Metric(f"chexbert_{average}_f1_{n}", f"CheXbert F1 {average} ({n} observations)", HIGHER,
                 (BERT_BASE, CHEXBERT), "chexbert_labels", _chexbert_f1(average, n), per_pair=_none)
          for n in (14, 5) for average in ("micro", "macro")],
        Metric("green", "GREEN", HIGHER, (GREEN_MODEL,), "green", _mean, needs_gpu=True),
    ]
}
CLINICAL_KEYS = tuple(METRICS)
# RadEval's F1CheXbert.TOP5, as indices of its 14 targets (13 conditions, then No Finding).
CHEXBERT_FIVE = [1, 4, 5, 7, 9]

# RadCliQ-v1: CXR-Report-Metric's learnt normaliser and linear model (radcliq-v1.pkl), in the
# order radgraph, bertscore, semb_score, bleu2 (as RadEval's RadCliQv1.CompositeMetric states them).
RADCLIQ_MEAN = np.array([0.53792312, 0.61757256, 0.76479421, 0.44738335])
RADCLIQ_SCALE = np.array([0.30282584, 0.22430938, 0.25394391, 0.29892717])
RADCLIQ_COEFS = np.array([-3.77083683e-01, -3.70300100e-01, -2.52616218e-01, 4.31504841e-12])
RADCLIQ_INTERCEPT = 2.46655256e-10


def score(
    predictions: list[str],
    references: list[str],
    keys: Sequence[str] = CLINICAL_KEYS,
    *,
    radcliq_idf: bool = False,
) -> dict[str, MetricResult]:
    """The clinical metrics `keys` of paired reports. A metric that needs a GPU on a machine
    without one comes back with `unavailable` set and no value. Raises
    ClinicalMetricsUnavailable when the extra is not installed."""
    unknown = [key for key in keys if key not in METRICS]
    if unknown:
        raise ValueError(f"unknown clinical metric(s) {unknown}: choose from {', '.join(CLINICAL_KEYS)}")
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions and {len(references)} references: "
                         "give at least one pair, one prediction per reference")
    runs = _Runs(list(predictions), list(references), radcliq_idf=radcliq_idf)
    results = {}
    for key in keys:
        metric = METRICS[key]
        if metric.needs_gpu and not _has_gpu():
            results[key] = MetricResult(metric, 0.0, unavailable=f"{metric.label} needs a GPU "
                                        f"({metric.models[0].hub_id}, {metric.models[0].size})")
            continue
        stats, seconds = runs.get(metric.scorer)
        results[key] = MetricResult(metric, seconds, [metric.per_pair(s) for s in stats], metric.corpus(stats), stats)
    return results


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class _Runs:
    """Each scorer runs once per `score` call, however many metrics read it. A scorer's seconds
    include loading its models and the scorers it reads (RadCliQ's four inputs; the CheXbert run
    that SembScore and CheXbert F1 share)."""

    def __init__(self, predictions: list[str], references: list[str], *, radcliq_idf: bool):
        self.predictions, self.references = predictions, references
        self.bertscore_for_radcliq = "bertscore_idf" if radcliq_idf else "bertscore"
        self._done: dict[str, tuple[object, float]] = {}

    def get(self, name: str) -> tuple[object, float]:
        """(statistics, seconds) of scorer `name`."""
        if name not in self._done:
            inputs = self.inputs(name)
            inputs_seconds = sum(self.get(scorer)[1] for scorer in inputs)
            start = time.perf_counter()
            stats = SCORERS[name](self)
            self._done[name] = (stats, time.perf_counter() - start + inputs_seconds)
        return self._done[name]

    def inputs(self, name: str) -> tuple[str, ...]:
        if name == "radcliq":
            return ("radgraph", self.bertscore_for_radcliq, "semb_score", "bleu2_rexrank")
        return ("chexbert",) if name in ("semb_score", "chexbert_labels") else ()


def _bleu2_rexrank(runs: _Runs) -> list[float]:
    from fast_bleu import BLEU

    def tokens(report: str) -> list[str]:  # CXR-Report-Metric's prep_reports
        return [token for token in report.lower().replace(".", " .").split(" ") if token != ""]

    return [
        float(BLEU([tokens(reference)], {"bigram": (1 / 2, 1 / 2)}).get_score([tokens(prediction)])["bigram"][0])
        for prediction, reference in zip(runs.predictions, runs.references)
    ]


def _coco_bleu_stats(runs: _Runs) -> list[tuple]:
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    # The n-gram counts pycocoevalcap's Bleu keeps per pair (what its corpus BLEU sums).
    cooked = [BleuScorer(n=4, test=prediction, refs=[reference])
              for prediction, reference in zip(runs.predictions, runs.references)]
    return [(scorer.ctest[0], scorer.crefs[0]) for scorer in cooked]


def _bertscore(runs: _Runs) -> list[float]:
    return bertscore_f1(runs.predictions, runs.references)


def _bertscore_idf(runs: _Runs) -> list[float]:
    return bertscore_f1(runs.predictions, runs.references, idf=True)


def bertscore_f1(predictions: list[str], references: list[str], *, model_type: str = "distilroberta-base",
                 num_layers: int = 5, idf: bool = False) -> list[float]:
    """Per-pair BERTScore F1 through RadEval's vendored bert_score, baseline-rescaled (ReXrank's
    settings by default; RadEval's own `bertscore` is distilbert-base-uncased, layer 5)."""
    BERTScorer = _library("radeval.metrics.bertscore._vendor").BERTScorer
    scorer = BERTScorer(model_type=model_type, num_layers=num_layers, rescale_with_baseline=True, lang="en",
                        idf=idf, idf_sents=references if idf else None, batch_size=64)
    _, _, f1 = scorer.score(cands=list(predictions), refs=list(references), batch_size=64)
    return [float(value) for value in f1]


def _chexbert(runs: _Runs) -> "_CheXbertOutputs":
    F1CheXbert = _library("radeval.metrics.f1chexbert").F1CheXbert
    labeler = F1CheXbert(device="cuda" if _has_gpu() else "cpu")
    return _CheXbertOutputs(
        hyp_embeddings=np.vstack(labeler.get_embeddings(runs.predictions)),
        ref_embeddings=np.vstack(labeler.get_embeddings(runs.references)),
        hyp_labels=labeler.get_labels(runs.predictions),
        ref_labels=labeler.get_labels(runs.references),
    )


@dataclass(frozen=True)
class _CheXbertOutputs:
    hyp_embeddings: np.ndarray
    ref_embeddings: np.ndarray
    hyp_labels: list[list[int]]
    ref_labels: list[list[int]]


def _semb_score(runs: _Runs) -> list[float]:
    outputs = runs.get("chexbert")[0]
    # As RadEval's semantic_embedding_scores (and CXR-Report-Metric's add_semb_col): cosine per pair.
    dot = np.einsum("nd,nd->n", outputs.ref_embeddings, outputs.hyp_embeddings)
    norms = np.linalg.norm(outputs.ref_embeddings, axis=1) * np.linalg.norm(outputs.hyp_embeddings, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return [float(value) for value in np.where(norms > 0, dot / norms, 0.0)]


def _chexbert_labels(runs: _Runs) -> list[tuple[list[int], list[int]]]:
    outputs = runs.get("chexbert")[0]
    return list(zip(outputs.hyp_labels, outputs.ref_labels))


def _radgraph(runs: _Runs) -> list[float]:
    """CXR-Report-Metric's radgraph_combined: (entity F1 + relation F1) / 2 per pair, RadGraph v1."""
    radcliq = _library("radeval.metrics.RadCliQv1.radcliq")
    compute_f1, extract_entities, extract_relations = radcliq.compute_f1, radcliq.extract_entities, radcliq.extract_relations
    radgraph = _library("radeval.metrics.radgraph").RadGraph(model_type="radgraph")
    hyps, refs = radgraph(runs.predictions), radgraph(runs.references)
    scores = []
    for index in range(len(runs.references)):
        hyp, ref = hyps.get(str(index), {}), refs.get(str(index), {})
        entity_f1 = compute_f1(extract_entities(ref), extract_entities(hyp))
        relation_f1 = compute_f1(extract_relations(ref), extract_relations(hyp))
        scores.append((entity_f1 + relation_f1) / 2)
    return scores


def _radgraph_partial(runs: _Runs) -> list[float]:
    F1RadGraph = _library("radeval.metrics.radgraph").F1RadGraph
    _, rewards, _, _ = F1RadGraph(reward_level="partial", model_type="radgraph-xl")(
        refs=runs.references, hyps=runs.predictions)
    return [float(reward) for reward in rewards]


def _radcliq(runs: _Runs) -> list[float]:
    columns = np.column_stack([runs.get(name)[0] for name in runs.inputs("radcliq")])
    values = (columns - RADCLIQ_MEAN) / RADCLIQ_SCALE @ RADCLIQ_COEFS + RADCLIQ_INTERCEPT
    return [float(value) for value in values]


def _ratescore(runs: _Runs) -> list[float]:
    """RaTEScore per pair. RaTEScore lines up the texts' entities by the position of their
    sentences in one list of all sentences (medspacy's, those of 3 characters or more), so a text
    without such a sentence (an empty caption) would shift every later pair and drop the last.
    Such a pair has no entities on that side, which RaTEScore scores 0.5: it gets 0.5, and only
    the other pairs go to RaTEScore."""
    RaTEScore = _library("radeval.metrics.RaTEScore.scorer").RaTEScore
    sentence_split = _library("radeval.metrics.RaTEScore.utils").sentence_split
    pairs = list(zip(runs.predictions, runs.references))
    scored = [index for index, pair in enumerate(pairs) if all(sentence_split([text])[0] for text in pair)]
    scores = [0.5] * len(pairs)
    if scored:
        values, _, _ = RaTEScore().compute_score(candidate_list=[pairs[i][0] for i in scored],
                                                 reference_list=[pairs[i][1] for i in scored])
        if len(values) != len(scored):
            raise RuntimeError(f"RaTEScore scored {len(values)} of {len(scored)} pairs")
        for index, value in zip(scored, values):
            scores[index] = float(value)
    return scores


def _green(runs: _Runs) -> list[float]:
    GreenMetric = _library("radeval.metrics.green_score.adapter").GreenMetric
    return [float(value) for value in GreenMetric().compute(runs.references, runs.predictions, per_sample=True)["green"]]


SCORERS: dict[str, Callable[[_Runs], list]] = {
    "bleu2_rexrank": _bleu2_rexrank,
    "coco_bleu": _coco_bleu_stats,
    "bertscore": _bertscore,
    "bertscore_idf": _bertscore_idf,  # RadEval's RadCliQ input (score(..., radcliq_idf=True))
    "chexbert": _chexbert,
    "semb_score": _semb_score,
    "chexbert_labels": _chexbert_labels,
    "radgraph": _radgraph,
    "radgraph_partial": _radgraph_partial,
    "radcliq": _radcliq,
    "ratescore": _ratescore,
    "green": _green,
}


def _library(module: str):
    """A module of the extra, or ClinicalMetricsUnavailable naming what to install."""
    try:
        import_radeval()
        return importlib.import_module(module)
    except ImportError as error:
        raise ClinicalMetricsUnavailable(f"{INSTALL_HINT} ({error})") from error


class _RadEvalAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of `RadEval.x` get the module `radeval.x` itself (one module object under both names)."""

    def find_spec(self, name, path=None, target=None):
        if name == "RadEval" or name.startswith("RadEval."):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return importlib.import_module("radeval" + spec.name[len("RadEval"):])

    def exec_module(self, module):
        pass  # already executed as radeval.x


def import_radeval() -> None:
    """Import RadEval 2.2.1 so that its modules work here: its vendored RadGraph names its package
    `RadEval` (aliased to `radeval`), and `radeval.utils` calls `nltk.download("punkt_tab")` at
    import, a network request that none of the metrics here needs (it is skipped)."""
    if "radeval" in sys.modules:
        return
    import nltk

    if not any(isinstance(finder, _RadEvalAlias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RadEvalAlias())
    download, nltk.download = nltk.download, lambda *args, **kwargs: False
    try:
        importlib.import_module("radeval")
    finally:
        nltk.download = download
