"""cxrcap.chest_filter on the real ROCO captions in ../shared/data: the caption rule against hand
labels and on borderline captions, and the concept rule measured against the caption rule."""

import csv
from pathlib import Path

import pytest

from cxrcap import chest_filter

LABELS = Path(__file__).parent / "fixtures" / "chest_filter_labels.csv"
ROCO_FILES = ("captions.txt", "keywords.txt", "cuis.txt")


def roco_columns(roco_dir: Path, split: str, name: str) -> dict[str, list[str]]:
    """id -> tab-separated values of one raw ROCO file, read independently of the module."""
    lines = (roco_dir / split / "radiology" / name).read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0]: [v.strip() for v in line.split("\t")[1:] if v.strip()] for line in lines}


def test_filter_on_hand_labelled_real_captions(roco_dir):
    with LABELS.open(newline="") as file:
        labels = list(csv.DictReader(file))
    assert len(labels) >= 100 and {row["split"] for row in labels} == {"validation", "test"}
    positives = sum(row["chest_xray"] == "1" for row in labels)
    assert positives >= 40 and len(labels) - positives >= 40, "both chest X-rays and hard negatives"
    text = {split: {name: roco_columns(roco_dir, split, name) for name in ROCO_FILES}
            for split in ("validation", "test")}
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for row in labels:
        files = text[row["split"]]
        caption = " ".join(files["captions.txt"][row["id"]])
        predicted = chest_filter.is_chest_xray(caption, files["keywords.txt"][row["id"]], files["cuis.txt"][row["id"]])
        truth = row["chest_xray"] == "1"
        counts[("t" if predicted == truth else "f") + ("p" if predicted else "n")] += 1
    precision = counts["tp"] / (counts["tp"] + counts["fp"])
    recall = counts["tp"] / (counts["tp"] + counts["fn"])
    print(f"chest X-ray filter on {len(labels)} hand-labelled captions: {counts}, "
          f"precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95
    assert recall >= 0.88


@pytest.mark.parametrize("caption, expected", [
    ("CXR on admission.", True),
    ("Chest radiograph showing bilateral effusions.", True),
    ("X-ray of the chest showing a hiatal hernia.", True),
    ("Chest-X-ray 8 weeks after treatment.", True),
    ("PA erect chest (PA) X-ray.", True),
    ("Radiographie du thorax de face.", True),
    ("Postoperative X-ray showing right lung expansion.", True),
    ("Chest CT shows a mass in the right upper lobe.", False),
    ("Chest X-ray and CT of the thorax show nodules.", False),
    ("Chest radiograph (a) and axial MRI (b).", False),
    ("Transthoracic echocardiography of the chest.", False),
    ("Lateral radiograph of the thoracic spine.", False),
    ("Anteroposterior cervico-thoracic radiograph.", False),
    ("Chest radiograph of a dog with pneumonia.", False),
    ("Chest X-ray after pericardiocentesis with a pig-tail catheter.", True),
    ("Abdominal X-ray showing dilated bowel.", False),
    ("Chest computed radiography showing swallowed magnetic beads.", True),
    ("Chest X-ray after a barium swallow.", False),
])
def test_filter_borderline_captions(caption, expected):
    assert chest_filter.is_chest_xray(caption) is expected


def test_filter_uses_keywords_and_cuis():
    assert chest_filter.is_chest_xray("Plain film on admission.", cuis=["C0039985"])  # CUI: plain chest X-ray
    assert not chest_filter.is_chest_xray("Chest X-ray on admission.", cuis=["C0040405"])  # CUI: CT
    assert not chest_filter.is_chest_xray("Chest X-ray on admission.", keywords=["tomography"])
    assert "C0039985" in chest_filter.CHEST_XRAY_RULE and "CT" in chest_filter.CHEST_XRAY_RULE


def test_concept_rule_against_caption_rule_and_hand_labels(roco_dir):
    """On ROCO v1's own CUIs (automatic, from the caption, not ROCOv2's curated ones): how the rules compare."""
    counts = {"rows": 0, "concept": 0, "caption": 0, "both": 0}
    cuis_of, caption_of = {}, {}
    for split in ("validation", "test"):
        folder = roco_dir / split / "radiology"
        for line in (folder / "cuis.txt").read_text(encoding="utf-8").splitlines():
            row_id, *values = line.split("\t")
            cuis_of[row_id] = [value for value in values if value.strip()]
        for line in (folder / "captions.txt").read_text(encoding="utf-8").splitlines():
            row_id, _, caption = line.partition("\t")
            caption_of[row_id] = caption.strip()
    for row_id, caption in caption_of.items():
        by_concept = chest_filter.is_chest_xray_by_concepts(caption, cuis_of.get(row_id, []))
        by_caption = chest_filter.is_chest_xray(caption, (), cuis_of.get(row_id, []))
        counts["rows"] += 1
        counts["concept"] += by_concept
        counts["caption"] += by_caption
        counts["both"] += by_concept and by_caption
    either = counts["concept"] + counts["caption"] - counts["both"]
    agreement = (counts["rows"] - either + counts["both"]) / counts["rows"]
    with LABELS.open(newline="") as file:
        labels = list(csv.DictReader(file))
    scores = {}
    for rule, decide in (("concept", lambda i: chest_filter.is_chest_xray_by_concepts(caption_of[i], cuis_of.get(i, []))),
                         ("caption", lambda i: chest_filter.is_chest_xray(caption_of[i], (), cuis_of.get(i, [])))):
        tp = sum(decide(row["id"]) and row["chest_xray"] == "1" for row in labels)
        predicted = sum(decide(row["id"]) for row in labels)
        positives = sum(row["chest_xray"] == "1" for row in labels)
        scores[rule] = (tp / predicted if predicted else 0.0, tp / positives)
    print(f"ROCO v1 validation+test, {counts['rows']} rows: concept rule {counts['concept']}, caption rule "
          f"{counts['caption']}, both {counts['both']}; agreement {agreement:.4f}, Jaccard {counts['both'] / either:.3f}")
    print("on the hand-labelled captions (precision, recall): "
          + ", ".join(f"{rule} rule {p:.3f} / {r:.3f}" for rule, (p, r) in scores.items()))
    assert agreement > 0.95 and counts["both"] > 0
    assert scores["caption"][0] >= 0.95  # the caption rule as tested above
