"""Resume check: does a run killed after its first checkpoint and resumed end where an uninterrupted one does?

For each family and profile (naive; --fast, with loader workers) this runs `python -m finetune`'s
`run` three times on real chest X-rays of ../shared/data/cxr-examples with tiny random models
(GIT's has dropout, so a lost random state changes its masks): uninterrupted, killed right after
the checkpoint of epoch 1, and resumed with --resume. Printed: the largest relative difference
between the resumed and the uninterrupted run's training and validation losses, and between their
final weights.

    python benchmarks/resume_difference.py                   # both families, both profiles (~1-2 min)
    python benchmarks/resume_difference.py --family git --epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.captioner import quiet_library_logs  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from finetune.__main__ import parse  # noqa: E402
from finetune.train import run  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples"


class Killed(Exception):
    pass


class KillAtFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Killed


def losses(out: Path) -> list[float]:
    history = json.loads((out / "training_log.json").read_text())["log_history"]
    return [entry[key] for entry in history for key in ("loss", "eval_loss") if key in entry]


def max_relative(a: list[float] | torch.Tensor, b: list[float] | torch.Tensor) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()


def resume_difference(family: str, fast: bool, base_model: str, epochs: int, scratch: Path) -> tuple[float, float]:
    """(largest relative loss difference, relative weight difference ||w_r - w_u|| / ||w_u||)."""
    def argv(out: Path, *extra: str) -> list[str]:
        return [*(["--fast"] if fast else []), "--family", family, "--data", str(EXAMPLES), "--base-model", base_model,
                "--output-dir", str(out), "--chest-only", "false", "--max-train-samples", "4",
                "--max-eval-samples", "2", "--num-train-epochs", str(epochs), "--per-device-train-batch-size", "2",
                "--learning-rate", "5e-3", "--eval-max-new-tokens", "4", "--logging-steps", "1", *extra]

    name = f"{family}-{'fast' if fast else 'naive'}"
    uninterrupted, resumed = scratch / f"{name}-uninterrupted", scratch / f"{name}-resumed"
    run(*parse(argv(uninterrupted)))
    try:
        run(*parse(argv(resumed)), callbacks=[KillAtFirstCheckpoint()])
    except Killed:
        pass
    run(*parse(argv(resumed, "--resume")))
    weights = [load_file(str(out / "model.safetensors")) for out in (resumed, uninterrupted)]
    flat = [torch.cat([tensor.flatten().double() for _, tensor in sorted(state.items())]) for state in weights]
    return max_relative(losses(resumed), losses(uninterrupted)), ((flat[0] - flat[1]).norm() / flat[1].norm()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", choices=("git", "blip"), default=["git", "blip"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of one update each (the kill comes after 1)")
    args = parser.parse_args()
    quiet_library_logs()
    sources = tiny_sources([f"{family}-base" for family in args.family])
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for family in args.family:
            for fast in (False, True):
                rows.append((family, "fast" if fast else "naive",
                             *resume_difference(family, fast, sources[f"{family}-base"], args.epochs, Path(scratch))))
    print(f"\nresumed vs uninterrupted, {args.epochs} epochs, killed after epoch 1, torch {torch.__version__}")
    print(f"{'family':<7} {'profile':<8} {'max rel. loss diff':>18} {'rel. weight diff':>17}")
    for family, profile, loss, weight in rows:
        print(f"{family:<7} {profile:<8} {loss:>18.3g} {weight:>17.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
