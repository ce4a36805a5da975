"""The whole study in one command: `python -m cxrcap reproduce --data SOURCE --out DIR` (`cxrcap.cli.reproduce`).

The steps, each of which a rerun skips once its output is complete (so an interrupted run
continues where it stopped; a fine-tune resumes from its last checkpoint):

1. data: the train, validation and test splits of SOURCE through `cxrcap.sources` (for a hub
   dataset, only the text and the kept rows' images are read, into the cache), with the counts
   per chest X-ray rule and the licences; split hygiene: a validation row whose id or image
   (SHA-256) is also in test is dropped, and a train row also in validation or test. The kept
   rows become the image folder `DIR/data/` (`metadata.csv` with a split column; images
   hard-linked from the cache, so they take no second copy's space) and `DIR/data.json`.
2. fine-tuning: `python -m finetune --family git|blip --data DIR/data --output-dir
   DIR/checkpoints/<id>` with the seed's recipe, as a subprocess (`cxrcap` never imports
   `finetune`), `--resume` when an interrupted run left checkpoints.
3. report: `python -m cxrcap report --data DIR/data --split test --out DIR` over the four
   variants, the fine-tuned ones read from `DIR/checkpoints/`, plus the two baselines.
4. model cards: each checkpoint's card gets the data's licences (with the non-commercial
   caveats) and its test scores; with `--push-to-hub OWNER/PREFIX`, the checkpoints go to
   `OWNER/PREFIX-git-base-ft` and `OWNER/PREFIX-blip-base-ft` and the results to the dataset
   `OWNER/PREFIX-results`, and the Space variables that point a Space at them are printed.

`python app.py --results DIR` then shows the results and loads the fine-tuned variants from
`DIR/checkpoints/` (`checkpoint_sources`). `--tiny-random --max-steps N` runs the same chain with
tiny random models (CPU, minutes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets

from . import sources
from .errors import first_line
from .files import file_sha256
from .runs import push_folder
from .sources.summary import split_report
from .variants import VARIANTS, get_variant

REPO_ROOT = Path(__file__).resolve().parents[1]  # where `python -m finetune` is found
FAMILIES = ("git", "blip")
OPTIONS_FILE = "reproduce.json"
DATA_FILE = "data.json"
RESULTS_FILE = "results.json"  # written by the report, last: its presence means the report is done
RESULTS_FILES = ("results.md", "results.csv", "results.json", "predictions.csv", "predictions.json",
                 "metrics.png", "metrics.svg", "qualitative.png", "qualitative.svg", DATA_FILE)
_PREFIX = re.compile(r"[\w.-]+/[\w.-]+")

LICENCE_CAVEATS = """\
- ROCO's images come from PubMed Central's open-access articles, each under its article's licence:
  CC BY, CC BY-NC, CC BY-NC-SA, CC BY-NC-ND, and some without a Creative Commons licence (ROCO's
  `licences.txt`). The hub copies' own licence tags (e.g. MIT) do not change that.
- ROCOv2 is distributed for non-commercial use (CC BY-NC-SA 4.0).
- Data under NC licences allow non-commercial use only, ND licences no derivatives: whether a model
  trained on them may be shared or used commercially is for you (and your lawyers) to decide.
  `--licence "CC BY"` keeps only CC BY images, for anyone who must publish a model or figures.
- Credit each image as its licence requires (the `credit` column of `data/metadata.csv`)."""


class ReproduceError(RuntimeError):
    """A step cannot run or failed; the message says which and what to do."""


# ---------------------------------------------------------------------------------------------
# Layout of DIR


def checkpoint_dir(out: Path, variant_id: str) -> Path:
    return out / "checkpoints" / variant_id


def checkpoint_sources(results_dir: Path) -> dict[str, str]:
    """Fine-tuned variant id -> its checkpoint folder in a `reproduce` output folder (those present)."""
    return {
        variant.id: str(checkpoint_dir(results_dir, variant.id))
        for variant in VARIANTS.values()
        if variant.fine_tuned and (checkpoint_dir(results_dir, variant.id) / "config.json").is_file()
    }


def use_checkpoints_in(results_dir: Path) -> dict[str, str]:
    """Point each fine-tuned variant at its checkpoint in `results_dir`, unless its variable is set already."""
    used = {}
    for variant_id, folder in checkpoint_sources(results_dir).items():
        variable = get_variant(variant_id).env_var
        if not os.environ.get(variable, "").strip():
            os.environ[variable] = used[variant_id] = folder
    return used


def _finished(folder: Path) -> bool:
    """A fine-tune wrote its last file (`training_log.json`) and removed its checkpoints."""
    return (folder / "training_log.json").is_file() and not any(folder.glob("checkpoint-*"))


# ---------------------------------------------------------------------------------------------
# Step 1: data


@dataclass
class Kept:
    split: sources.SplitData
    rows: list[dict]  # id, caption, license, credit, image path: what goes to DIR/data
    removed: list[str]  # ids dropped by split hygiene


def prepare_data(args: argparse.Namespace) -> dict:
    """Read the three splits, drop rows shared with a later split, write DIR/data and DIR/data.json."""
    splits = {}
    for name in sources.SPLITS:
        split = sources.load_split(args.data, name, licence=args.licence, licences=args.licences)
        rows = split.dataset.cast_column("image", datasets.Image(decode=False)).to_list()
        splits[name] = Kept(split, [{**row, "image": row["image"]["path"]} for row in rows], [])
        print("\n".join(split_report(split, advice=False)), flush=True)
    later: set[str] = set()  # ids and image digests of the splits after this one (test first)
    for name in reversed(sources.SPLITS):
        kept = splits[name]
        keys = [(row["id"], file_sha256(row["image"])) for row in kept.rows]
        kept.removed = [row["id"] for row, (row_id, digest) in zip(kept.rows, keys) if {row_id, digest} & later]
        kept.rows = [row for row, (row_id, digest) in zip(kept.rows, keys) if not {row_id, digest} & later]
        later |= {key for pair in keys for key in pair}
        if kept.removed:
            print(f"split hygiene: {len(kept.removed)} {name} row(s) also in a later split, left out "
                  f"({', '.join(kept.removed[:5])}{', ...' if len(kept.removed) > 5 else ''})")
    for name, kept in splits.items():
        if not kept.rows:
            raise ReproduceError(f"the {name} split of {args.data} has no chest X-ray with an image to use "
                                 f"({kept.split.rows_read} rows read, {kept.split.kept} kept)")
    _write_image_folder(args.out / "data", splits)
    summary = {
        "source": sources.describe_source(args.data),
        "licence_filter": args.licence,
        "licences_file": str(args.licences) if args.licences else None,
        "splits": {name: _split_summary(kept) for name, kept in splits.items()},
    }
    (args.out / DATA_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _split_summary(kept: Kept) -> dict:
    split = kept.split
    return {
        "rows_read": split.rows_read, "rule": split.rule, "rule_counts": split.rule_counts,
        "kept": split.kept, "licence_dropped": split.licence_dropped,
        "missing_images": len(split.missing_images), "removed_by_hygiene": len(kept.removed),
        "used": len(kept.rows),
        "licences": dict(Counter(row["license"] for row in kept.rows)),
        "reading": split.reading,
    }


def _write_image_folder(folder: Path, splits: dict[str, Kept]) -> None:
    """An image folder cxrcap.sources reads (no filter: it holds the chosen rows); images linked, not copied."""
    if folder.exists():
        shutil.rmtree(folder)  # rebuilt from the cache each time: cheap, and never half old
    with_rows = [(name, row) for name, kept in splits.items() for row in kept.rows]
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    lines = []
    for index, (name, row) in enumerate(with_rows):
        image = Path(row["image"])
        safe_id = re.sub(r"[^\w.-]+", "_", row["id"])[:80]
        file_name = f"images/{index:06d}-{safe_id}{image.suffix}"
        try:
            os.link(image, staging / file_name)
        except OSError:  # another file system than the cache's
            shutil.copyfile(image, staging / file_name)
        lines.append({"file_name": file_name, "id": row["id"], "split": name, "caption": row["caption"],
                      "license": row["license"], "source": row["credit"]})
    with open(staging / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    staging.rename(folder)


# ---------------------------------------------------------------------------------------------
# Steps 2 and 3: fine-tuning and the report, as the commands a user would type


def _run(step: str, argv: list[str], env: dict | None = None) -> None:
    print(f"\n== {step}: {' '.join(argv)}", flush=True)
    process = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env)
    if process.returncode != 0:
        raise ReproduceError(f"{step} failed (exit status {process.returncode}; its messages are above). "
                             "Fix the cause and run the same command again: finished steps are kept.")


def finetune(args: argparse.Namespace, family: str, base_sources: dict[str, str]) -> None:
    variant_id = f"{family}-base-ft"
    output = checkpoint_dir(args.out, variant_id)
    if _finished(output):
        print(f"\n== fine-tuning {family}: done already ({output})")
        return
    argv = ["-m", "finetune", "--family", family, "--data", str(args.out / "data"), "--output-dir", str(output)]
    if family + "-base" in base_sources:
        argv += ["--base-model", base_sources[family + "-base"]]
    if args.fast:
        argv.append("--fast")
    if args.max_steps is not None:
        argv += ["--max-steps", str(args.max_steps)]
    if any(output.glob("checkpoint-*")):
        argv.append("--resume")
    _run(f"fine-tuning {family}", argv)


def report(args: argparse.Namespace) -> None:
    env = dict(os.environ)
    for variant_id in ("git-base-ft", "blip-base-ft"):
        env[get_variant(variant_id).env_var] = str(checkpoint_dir(args.out, variant_id))
    argv = ["-m", "cxrcap", "report", "--data", str(args.out / "data"), "--split", "test", "--out", str(args.out)]
    if args.tiny_random:
        argv.append("--tiny-random")
    _run("report", argv, env)


def report_is_current(out: Path) -> bool:
    results = out / RESULTS_FILE
    if not results.is_file():
        return False
    trained = [checkpoint_dir(out, f"{family}-base-ft") / "training_log.json" for family in FAMILIES]
    return all(path.stat().st_mtime <= results.stat().st_mtime for path in trained)


# ---------------------------------------------------------------------------------------------
# Step 4: model cards, the hub


def card_addendum(variant_id: str, summary: dict, results: dict) -> str:
    """The sections `reproduce` adds to a checkpoint's model card: data, licences, test scores."""
    lines = ["", "## Reproduction (python -m cxrcap reproduce)", "",
             f"Data: {summary['source']}. The chest X-rays were chosen here, before fine-tuning: the image folder "
             "`python -m finetune` read holds only them, so it applied no filter of its own."]
    for name, split in summary["splits"].items():
        rule = {"concept": "ROCOv2 concepts C1306645 + C0817096 (`CONCEPT_RULE`)",
                "caption": "the caption rule (`CHEST_XRAY_RULE`)", "none": "no filter"}[split["rule"]]
        licences = ", ".join(f"{name} {count}" for name, count in sorted(split["licences"].items(), key=lambda x: -x[1]))
        lines.append(f"- {name}: {split['used']} chest X-rays used of {split['rows_read']} rows, by {rule}; "
                     f"licences: {licences}")
    if summary["licence_filter"]:
        lines.append(f"- licence filter: only {summary['licence_filter']}")
    lines += ["", "### Licences", "", LICENCE_CAVEATS, ""]
    row = next((row for row in results.get("rows", []) if row.get("name") == variant_id), None)
    if row and row.get("scores"):
        n_images = row.get("n_images")
        lines += [f"### Test scores ({n_images} images of the test split, `cxrcap.metrics`, 95% bootstrap intervals)", "",
                  "| metric | score | 95% CI |", "|---|---|---|"]
        for key, value in row["scores"].items():
            low, high = row.get("ci", {}).get(key, (None, None))
            interval = f"{low:.4f}-{high:.4f}" if low is not None else ""
            lines.append(f"| {key} | {value:.4f} | {interval} |")
        lines += ["", "The whole table, with the base models and two baselines that never look at the image, is in "
                  "the results (`results.md`)."]
    return "\n".join(lines) + "\n"


def write_cards(out: Path, summary: dict) -> None:
    """Add the reproduction's data, licence caveats and test scores to each checkpoint's model card."""
    from huggingface_hub import ModelCard

    results = json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
    for family in FAMILIES:
        variant_id = f"{family}-base-ft"
        path = checkpoint_dir(out, variant_id) / "README.md"
        card = ModelCard.load(path)
        marker = "\n## Reproduction (python -m cxrcap reproduce)"
        card.text = card.text.split(marker)[0].rstrip("\n") + "\n" + card_addendum(variant_id, summary, results)
        card.data.license = "other"  # mixed image licences, some non-commercial: see the card's Licences section
        card.data.license_name = "research-only-mixed-data-licences"
        card.data.license_link = "LICENSE"  # written beside it: the caveats on their own
        (path.parent / "LICENSE").write_text("This model was trained on images under these terms:\n\n"
                                             + LICENCE_CAVEATS + "\n", encoding="utf-8")
        source = summary["source"]
        if source.startswith("Hugging Face hub dataset "):
            card.data.datasets = [source.removeprefix("Hugging Face hub dataset ")]
        card.save(path)


def hub_repos(prefix: str) -> dict[str, tuple[str, str]]:
    """What goes where: name -> (repo id, repo type)."""
    return {
        **{f"{family}-base-ft": (f"{prefix}-{family}-base-ft", "model") for family in FAMILIES},
        "results": (f"{prefix}-results", "dataset"),
    }


def space_variables(prefix: str) -> list[str]:
    """The variables that point a Space (or `python app.py`) at the pushed checkpoints."""
    return [f"{get_variant(variant_id).env_var}={repo_id}"
            for variant_id, (repo_id, _) in hub_repos(prefix).items() if variant_id != "results"]


def results_card(prefix: str, summary: dict) -> str:
    return "\n".join([
        "---", "license: other", "tags: [chest-x-ray, image-captioning, evaluation]", "---",
        f"# Results of the cxrcap study ({prefix})", "",
        "Made by `python -m cxrcap reproduce`: the test-split table of the four variants (GIT and BLIP, base and "
        f"fine-tuned) and two baselines, their predictions and figures. Data: {summary['source']}.", "",
        "## Licences", "", LICENCE_CAVEATS, "",
        "Show them in a cxrcap Space: put these files in its `results/` folder, e.g. "
        f"`hf download {prefix}-results --repo-type dataset --local-dir results`.", "",
    ])


def check_can_push(prefix: str) -> None:
    """Before any work: a well-formed prefix and a token."""
    from huggingface_hub import get_token

    if not _PREFIX.fullmatch(prefix):
        raise ReproduceError(f"--push-to-hub {prefix!r}: expected OWNER/PREFIX, e.g. you/cxrcap")
    if get_token() is None:
        raise ReproduceError("--push-to-hub needs a Hugging Face token: log in with `hf auth login` or set HF_TOKEN")


def push(out: Path, prefix: str, summary: dict) -> None:
    staging = out / ".results-upload"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in RESULTS_FILES:
        if (out / name).is_file():
            shutil.copyfile(out / name, staging / name)
    (staging / "README.md").write_text(results_card(prefix, summary), encoding="utf-8")
    folders = {name: checkpoint_dir(out, name) for name in ("git-base-ft", "blip-base-ft")} | {"results": staging}
    for name, (repo_id, repo_type) in hub_repos(prefix).items():
        try:
            push_folder(folders[name], repo_id, repo_type=repo_type, message="python -m cxrcap reproduce")
        except Exception as error:  # no network, no rights, offline mode: the local results stand either way
            raise ReproduceError(f"pushing {name} to {repo_id} failed ({first_line(error, 200)}); "
                                 f"everything is in {out}: rerun the same command to push again") from None
        print(f"pushed {name} to https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}")
    shutil.rmtree(staging)
