"""Seconds per report pair of each clinical metric on this CPU, at the real models' size.

    python benchmarks/clinical_metrics.py      (needs the clinical extra; no download)

Builds random-weight scorer models at base size (`cxrcap.clinical_tiny`, `base_size=True`: the
real architectures' shapes, ~3 GB in cxrcap's cache), then, in a fresh process that sees only
them with the hub off, scores RadEval's six test pairs once to warm up (imports), then twice
once and twice six times over (36 pairs), keeping the fastest run of each size. Per pair = the
difference / 30; loading = the rest of the six-pair run (each `clinical.score` call loads its
models). Random weights cost
what trained ones do, except where the work depends on what a model predicts: RadGraph scores
the relations among the entities it finds, RaTEScore embeds each entity it tags, so their
per-pair seconds on random weights can be far from the real ones in either direction. The
vocabularies are the tiny ones (1-2k tokens), so the embedding tables are smaller than the real
ones: memory, not time, differs. Several runs on a shared machine: compare within a run.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from processes import run_python  # noqa: E402
from test_clinical import HYPS, REFS  # noqa: E402

from cxrcap.clinical_tiny import tiny_scorer_env  # noqa: E402

SCRIPT = """
import json, sys
from cxrcap import clinical
hyps, refs = json.loads(sys.argv[1])
clinical.score(hyps, refs)  # pays the imports
fastest = {1: {}, 6: {}}
for repeat in (1, 6, 1, 6):  # the fastest of two runs of each size (the machine is shared)
    for key, result in clinical.score(hyps * repeat, refs * repeat).items():
        if result.unavailable is None:
            fastest[repeat][key] = min(result.seconds, fastest[repeat].get(key, result.seconds))
print("SECONDS " + json.dumps(fastest))
"""


def main() -> None:
    done = run_python("-c", SCRIPT, json.dumps([HYPS, REFS]), timeout=3600, **tiny_scorer_env(base_size=True))
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    runs = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("SECONDS "))[8:])
    print(f"{'metric':24} {'6 pairs s':>10} {'36 pairs s':>11} {'s/pair':>8} {'loading s':>10}")
    for key, six in runs["1"].items():
        per_pair = (runs["6"][key] - six) / (len(REFS) * 5)
        print(f"{key:24} {six:10.2f} {runs['6'][key]:11.2f} {per_pair:8.3f} {six - per_pair * len(REFS):10.2f}")


if __name__ == "__main__":
    main()
