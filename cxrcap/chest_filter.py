"""Which figures are plain human chest radiographs: the caption rule and ROCOv2's concept rule.

`CHEST_XRAY_RULE` and `CONCEPT_RULE` say in words what `is_chest_xray` and
`is_chest_xray_by_concepts` decide; the app's About tab and the model cards quote them. Data
sources apply them in one place (`cxrcap.sources.split`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


CHEST_XRAY_RULE = """\
A figure is kept as a chest X-ray when all three hold:
1. Its caption names a chest radiograph, in one of three ways:
   - "CXR";
   - a chest word (chest, thorax, thoracic, lung; French thorax/thoracique) followed by a
     radiograph word (X-ray, radiograph/radiography, roentgenogram, film, skiagram), with only view
     words between (PA, AP, frontal, lateral, plain, portable, erect, supine, view...):
     "chest X-ray", "chest PA radiograph", "thoracic radiograph";
   - a radiograph word followed within six words by a chest word or a finding that only a chest
     film shows (lung, pulmonary, pneumothorax, hemithorax, mediastinum, pleural, cardiomegaly,
     hilar, costophrenic): "X-ray of the chest", "radiographie du thorax", "X-ray showing
     bilateral pulmonary granuloma";
   or its UMLS CUIs include C0039985 (Plain chest X-ray).
   "Thoracic" next to spine, vertebra, curve, kyphosis or scoliosis, and "cervico-thoracic" or
   "thoraco-lumbar", name the spine, not the chest.
2. Neither caption, keywords nor CUIs name another imaging modality: CT (HRCT, CTA, French TDM,
   ...) or any tomography, MRI/MR/magnetic resonance (French IRM), ultrasound/sonography/Doppler,
   echocardiography, PET, SPECT, scintigraphy/radionuclide/isotope/bone scan, angiography/
   arteriography/venography, DSA, fluoroscopy, mammography, barium or contrast swallow/
   esophagography, bronchography, myelography, urography. A caption naming two
   modalities describes a compound figure or leaves the image's modality unknown, so it is
   dropped, even when it says "chest X-ray".
3. It names no animal (dog, cat, rabbit, calf, monkey, ...): veterinary thoracic radiographs are not
   human chest X-rays.
Abbreviations (CT, MR, PET, US...) count only in capitals, as radiology writes them; keywords
(lower-cased caption words in ROCO) can add full modality and animal words only."""

_CHEST_WORD = (
    r"(?<![\w-])(?:chest|thorax|thoracic|thoracique|lungs?)\b"
    r"(?![\s-]+(?:spine|spinal|vertebra\w*|curves?|kyphosis|scoliosis))"
)
_RADIOGRAPH_WORD = r"\b(?:x-?rays?|xray|radiograph\w*|roentgenogra\w*|films?|skiagra\w*)\b"
_VIEW_WORD = (
    r"(?:pa|ap|plain|frontal|lateral|portable|erect|supine|upright|bedside|posteroanterior|"
    r"postero-anterior|anteroposterior|antero-posterior|digital|simple|standard|conventional|"
    r"computed|views?|images?|de face)"
)
_CHEST_FINDING = (
    r"(?<![\w-])(?:chest|thorax|thoracique|lungs?|pulmonary|pulmonaire|pneumothora\w*|"
    r"hemi-?\s?thorax|mediastin\w*|pleural|cardiomegaly|hilar|costophrenic)\b"
)
_CHEST_RADIOGRAPH = re.compile(
    rf"\bcxrs?\b"
    rf"|{_CHEST_WORD}(?:\W+{_VIEW_WORD})*\W+{_RADIOGRAPH_WORD}"
    rf"|{_RADIOGRAPH_WORD}(?:\W+\w+){{0,6}}?\W+{_CHEST_FINDING}",
    re.IGNORECASE,
)
_OTHER_MODALITY_WORD = re.compile(
    r"\b(?:\w*tomogra\w*|magnetic resonance|ultraso\w*|sonogra\w*|doppler|echocardiogra\w*|"
    r"[eé]chogra\w*|scintigra\w*|radionuclide|isotope|bone scan|angiogra\w*|arteriogra\w*|"
    r"venogra\w*|aortogra\w*|fluorosc\w*|mammogra\w*|barium (?:swallow|meal|enema|study)|"
    r"(?:contrast|gastrografin) swallow|swallow study|o?esophagogra\w*|bronchography|myelogra\w*|"
    r"urogra\w*)\b",
    re.IGNORECASE,
)
_OTHER_MODALITY_ABBREVIATION = re.compile(
    r"\b(?:CT|HRCT|CECT|MDCT|MSCT|NCCT|CBCT|CTA|CTPA|MR|MRI|MRA|US|USG|PET|SPECT|DSA|TDM|IRM)\b"
)
_ANIMAL = re.compile(
    r"\b(?:dogs?|canine|puppy|cats?|feline|kitten|rabbits?|rats?|mice|mouse|murine|pigs?|piglets?|"
    r"porcine|swine|sheep|lambs?|ovine|goats?|calf|calves|heifers?|cows?|bovine|cattle|horses?|"
    r"equine|foals?|monkeys?|macaques?|primates?|ferrets?|birds?|parrots?|veterinary)\b(?!-)",
    re.IGNORECASE,
)
_CHEST_XRAY_CUIS = frozenset({"C0039985"})  # Plain chest X-ray
_OTHER_MODALITY_CUIS = frozenset({
    "C0040405",  # X-Ray Computed Tomography
    "C0040395",  # Tomography
    "C0024485",  # Magnetic Resonance Imaging
    "C0041618",  # Ultrasonography
    "C0013516",  # Echocardiography
    "C0032743",  # Positron-Emission Tomography
    "C0002978",  # Angiogram
    "C0016356",  # Fluoroscopy
    "C0024671",  # Mammography
})


def _excluded(caption: str, keywords: Sequence[str], cuis: set[str]) -> bool:
    """Rules 2 and 3 of `CHEST_XRAY_RULE`: another modality named, or an animal."""
    words = " ".join([caption, *keywords])
    other_modality = (
        bool(_OTHER_MODALITY_WORD.search(words))
        or bool(_OTHER_MODALITY_ABBREVIATION.search(caption))
        or bool(cuis & _OTHER_MODALITY_CUIS)
    )
    return other_modality or bool(_ANIMAL.search(words))


def is_chest_xray(caption: str, keywords: Sequence[str] = (), cuis: Sequence[str] = ()) -> bool:
    """Whether a figure is a plain human chest radiograph, by `CHEST_XRAY_RULE`."""
    cuis = set(cuis)
    named = bool(_CHEST_RADIOGRAPH.search(caption)) or bool(cuis & _CHEST_XRAY_CUIS)
    return named and not _excluded(caption, keywords, cuis)


CHEST_XRAY_CONCEPTS = ("C1306645", "C0817096")  # ROCOv2's curated "Plain x-ray" and "Chest"
CONCEPT_RULE = f"""\
Where a source has ROCOv2's curated UMLS concepts (a `cui` column), a figure is kept as a chest
X-ray when its concepts include both {CHEST_XRAY_CONCEPTS[0]} (Plain x-ray, the modality) and
{CHEST_XRAY_CONCEPTS[1]} (Chest, the body region), and its caption passes rules 2 and 3 of the
caption rule (no other modality named: a compound figure; no animal). ROCOv2's modality and
region concepts were curated by hand (Rückert et al., Scientific Data 11, 688, 2024), so they
replace rule 1; a source without concepts uses the caption rule."""


def is_chest_xray_by_concepts(caption: str, cuis: Sequence[str]) -> bool:
    """Whether a figure is a plain human chest radiograph, by `CONCEPT_RULE`."""
    cuis = set(cuis)
    return cuis.issuperset(CHEST_XRAY_CONCEPTS) and not _excluded(caption, (), cuis)
