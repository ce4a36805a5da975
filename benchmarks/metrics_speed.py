"""How fast cxrcap.metrics scores captions, on real ROCO chest X-ray captions.

    python benchmarks/metrics_speed.py [--roco ../shared/data/roco] [--pairs 200]

Prints:
- the WordNet load that `warm_up()` takes off the first live score;
- `score()` per pair after warm-up (target: at most 20 ms) against a naive baseline measured in
  the same run: the libraries called the way a first script calls them (a new RougeScorer and a
  new BLEU per call, nltk's global WordNet, plain `meteor_score`), as a ratio;
- `corpus_scores` + `bootstrap_ci` (1,000 resamples) for 4 variants of the given number of pairs.
"""

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import sacrebleu
from nltk.tokenize import word_tokenize
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from cxrcap import metrics  # noqa: E402
from cxrcap.findings import finding_f1  # noqa: E402

ROCO = REPO.parent / "shared" / "data" / "roco"
CHEST_XRAY = re.compile(r"chest (?:x-?ray|x ray|radiograph|film)|\bcxr\b", re.IGNORECASE)
VARIANTS = 4


def chest_captions(roco_dir: Path, split: str) -> list[str]:
    lines = (roco_dir / split / "radiology" / "captions.txt").read_text(encoding="utf-8").splitlines()
    captions = (line.split("\t", 1)[1].strip() for line in lines)
    return sorted({caption for caption in captions if CHEST_XRAY.search(caption)}, key=str.lower)


def naive_score(prediction: str, reference: str) -> dict[str, float]:
    rouge = rouge_scorer.RougeScorer(list(metrics.ROUGE_KEYS)).score(reference, prediction)
    return {
        "bleu": sacrebleu.sentence_bleu(prediction, [reference]).score / 100,
        **{key: rouge[key].fmeasure for key in metrics.ROUGE_KEYS},
        "meteor": meteor_score(
            [word_tokenize(reference, preserve_line=True)], word_tokenize(prediction, preserve_line=True)
        ),
        "finding_f1": finding_f1(prediction, reference),
    }


def per_pair_ms(scorer, pairs: list[tuple[str, str]]) -> list[float]:
    times = []
    for prediction, reference in pairs:
        started = time.perf_counter()
        scorer(prediction, reference)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roco", type=Path, default=ROCO, help="ROCO folder with {validation,test}/radiology")
    parser.add_argument("--pairs", type=int, default=200, help="caption pairs per variant")
    args = parser.parse_args()

    references = chest_captions(args.roco, "test")[: args.pairs]
    candidates = chest_captions(args.roco, "validation")
    variants = [candidates[shift : shift + len(references)] for shift in range(VARIANTS)]
    pairs = list(zip(variants[0], references))

    started = time.perf_counter()
    metrics.warm_up(background=False)
    print(f"WordNet load (taken off the first live score by warm_up): {time.perf_counter() - started:.1f} s")

    naive_score(*pairs[0])  # one call each before timing: imports and caches settle
    metrics.score(*pairs[0])
    naive = per_pair_ms(naive_score, pairs)
    ours = per_pair_ms(metrics.score, pairs)
    print(f"score() on {len(pairs)} real ROCO chest X-ray caption pairs (ms per pair):")
    for name, times in (("cxrcap.metrics.score", ours), ("naive library calls", naive)):
        p95 = statistics.quantiles(times, n=20)[-1]
        print(f"  {name:22} mean {statistics.mean(times):6.2f}  median {statistics.median(times):6.2f}  p95 {p95:6.2f}")
    ratios = (statistics.mean(naive) / statistics.mean(ours), statistics.median(naive) / statistics.median(ours))
    print(f"  naive / ours: {ratios[0]:.2f}x (mean), {ratios[1]:.2f}x (median); target <= 20 ms per pair")

    started = time.perf_counter()
    for predictions in variants:
        metrics.corpus_scores(predictions, references)
        metrics.bootstrap_ci(predictions, references, n_resamples=1000)
    print(
        f"corpus_scores + bootstrap_ci (1000 resamples), {VARIANTS} variants x {len(references)} pairs: "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
