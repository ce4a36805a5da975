"""Are the heatmaps faithful? The deletion test (issue 13), per method.

    python benchmarks/heatmap_deletion.py                       # the real four variants (weights needed)
    python benchmarks/heatmap_deletion.py --base-random --variants git-base,blip-base --images 2

For each X-ray and variant: caption it (greedy), compute each word's map, then blank (set to the
processor's mean colour, 0 after normalisation) the top `--fraction` of the model-input patches
by that map, or as many random patches (`--draws` draws), and re-score the same caption with one
plain teacher-forced forward pass. The drop in the word's log-probability (the sum over its word
pieces) is reported per method: a faithful map's top patches cost the word more than random ones
("deletion", as in Samek et al., 2017; Petsiuk et al., 2018; Chefer et al., 2021).

What random weights can and cannot show (`--base-random`, `--tiny-random`): the test then checks
the mechanics (the maps point at patches that move this model's log-probabilities, at base size,
in the time given) and whether a method tracks the model's own computation. It cannot show that
maps are faithful for the real models: a random decoder barely depends on the image, and its
attention patterns are not those training produces. Run it with real weights for that.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrcap.captioner import Captioner, DecodeSettings, quiet_library_logs  # noqa: E402
from cxrcap.heatmaps import METHODS, caption_input_ids, compute_heatmaps  # noqa: E402
from cxrcap.images import load_image  # noqa: E402
from cxrcap.lineup import build_captioners  # noqa: E402
from cxrcap.tiny import tiny_sources  # noqa: E402
from cxrcap.variants import parse_variant_ids  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "data" / "cxr-examples" / "images"


def token_log_probs(captioner: Captioner, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token i | tokens before, image) for the caption's tokens: one plain forward pass."""
    model = captioner.model
    with torch.no_grad():
        if captioner.variant.family == "git":
            logits = model(input_ids=input_ids, pixel_values=pixel_values).logits[0, -input_ids.shape[1] :]
        else:
            logits = model(pixel_values=pixel_values, input_ids=input_ids).logits[0]
    log_probs = logits[:-1].float().log_softmax(dim=-1)  # row i predicts token i + 1
    return log_probs[torch.arange(len(log_probs)), input_ids[0, 1:]]


def blanked(pixel_values: torch.Tensor, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The pixel values with the given patch indices (row-major over `grid`) set to 0."""
    rows, cols = grid
    patch_h, patch_w = pixel_values.shape[-2] // rows, pixel_values.shape[-1] // cols
    masked = pixel_values.clone()
    for index in patches.tolist():
        r, c = divmod(index, cols)
        masked[..., r * patch_h : (r + 1) * patch_h, c * patch_w : (c + 1) * patch_w] = 0.0
    return masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=None, help="comma-separated variant ids (default: all four)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--base-random", action="store_true", help="base-size random weights (no download)")
    weights.add_argument("--tiny-random", action="store_true", help="tiny random weights (a smoke test)")
    parser.add_argument("--images", type=int, default=8, help="real X-rays (default 8)")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of patches blanked (default 0.1)")
    parser.add_argument("--draws", type=int, default=3, help="random-patch draws per word (default 3)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quiet_library_logs()
    variant_ids = parse_variant_ids(args.variants)
    if args.base_random:
        sources = tiny_sources(variant_ids, base_size=True)
        captioners = {vid: Captioner(vid, sources[vid], untrained=True) for vid in variant_ids}
    else:
        captioners = build_captioners(variant_ids, tiny_random=args.tiny_random)
    paths = sorted(EXAMPLES.glob("*.jpg"))
    images = [load_image(paths[i * len(paths) // args.images]) for i in range(args.images)]
    generator = torch.Generator().manual_seed(args.seed)
    weights_note = "base-size random" if args.base_random else "tiny random" if args.tiny_random else "real"
    print(f"{weights_note} weights; {len(images)} X-rays; blanking the top {args.fraction:.0%} of patches "
          f"vs {args.draws} random draws; drop = log p(word) before - after (higher: the patches mattered)\n")
    print("| variant | method | words | mean drop, top patches | mean drop, random patches | top > random |")
    print("|---|---|---|---|---|---|")
    for vid, captioner in captioners.items():
        drops = {method: ([], [], []) for method in METHODS}  # top, random, top > random
        for image in images:
            ((caption, token_ids),) = captioner.caption_with_ids([image], DecodeSettings(max_new_tokens=args.max_new_tokens))
            input_ids = caption_input_ids(captioner, caption, token_ids)
            pixel_values = captioner.preprocess([image]).to(captioner.device, captioner.dtype)
            before = token_log_probs(captioner, pixel_values, input_ids)
            for method in METHODS:
                maps = compute_heatmaps(captioner, image, caption, method, token_ids)
                n_blank = max(1, round(args.fraction * maps.grid[0] * maps.grid[1]))
                for word_map, tokens in zip(maps.word_maps, maps.word_tokens):
                    def drop(patches: torch.Tensor) -> float:
                        after = token_log_probs(captioner, blanked(pixel_values, patches, maps.grid), input_ids)
                        return float((before[tokens] - after[tokens]).sum())

                    top = drop(torch.from_numpy(word_map.reshape(-1)).topk(n_blank).indices)
                    random = statistics.mean(
                        drop(torch.randperm(word_map.size, generator=generator)[:n_blank]) for _ in range(args.draws)
                    )
                    drops[method][0].append(top)
                    drops[method][1].append(random)
                    drops[method][2].append(top > random)
        for method, (top, random, wins) in drops.items():
            print(f"| {vid} | {method} | {len(top)} | {statistics.mean(top):+.4f} | {statistics.mean(random):+.4f} "
                  f"| {sum(wins) / len(wins):.0%} |", flush=True)


if __name__ == "__main__":
    main()
