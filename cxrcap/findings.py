"""Chest findings a caption asserts or denies, with their side: a small rule-based labeller.

n-gram metrics reward "no pneumothorax" for matching "left pneumothorax" word for word; finding
F1 asks instead whether prediction and reference name the same findings. The categories follow
the CheXpert labeller's observations (Irvin et al., 2019), plus a few common chest X-ray extras.

How a caption is read (all rules live in the tables below, not in code branches):

- Mentions: each row of `LEXICON` is a finding name and a regular expression over the lowercased
  caption. Infiltrates, ground glass, reticular markings and densities count as `opacity`;
  pulmonary or vascular congestion as `edema`; tubes, lines, catheters, drains, pacemakers, wires,
  valves, ports and stents as `support device`. `normal` is a statement about the whole study
  ("normal chest x-ray", "no abnormality", "no acute findings").
- Negation (NegEx-style): a mention is negated when a cue ("no", "without", "negative for",
  "absence of", "resolution of", "resolved", ...) precedes it by at most 6 words in the same clause
  (a clause ends at . ; : ( ) or at "but", "with", "which", "however", ...), or when it is followed
  by "has resolved", "was not seen", "is absent" and the like. Resolved findings are negated:
  they are no longer there. Hedged mentions ("suggestive of", "possible") count as asserted.
  Some rows state absence themselves ("normal heart size": no cardiomegaly).
- Laterality: a side word (left, right, bilateral, both, bibasilar, ...) inside the mention, else
  in the 5 words before it, else in a phrase after it ("in the right lower lobe", "bilaterally"),
  never reaching past the clause or past another finding separated from it by other words.
  Findings without a side (cardiomegaly, support devices, ...) have laterality None.
- One finding per (name, negated) and caption: sides seen for it are merged (left + right ->
  bilateral; a side wins over an unstated one).

Matching (`compare_findings`): a predicted finding agrees with a reference finding of the same
name and negation when their sides are equal or one is unstated (an unstated side is not a
contradiction); left vs right, or left vs bilateral, disagree.

F1 (`finding_f1`, `micro_f1`): 2·TP / (2·TP + FP + FN) with TP the agreeing findings, FP the
extra and FN the missing ones; micro-averaged over a corpus by summing the counts. When neither
side names any finding there is nothing to score: no F1 (None; NaN in `micro_f1`'s arrays), shown
as "n/a" — never 1.0, which would read as agreement under two captions of noise. Such a pair adds
nothing to a corpus's counts; a corpus where no pair names a finding has no F1 either.
"""

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# How a lexicon row's polarity is decided.
CONTEXT = "context"  # by negation cues around the mention
ASSERTED = "asserted"  # the pattern itself asserts ("no abnormality" asserts `normal`)
ABSENT = "absent"  # the pattern itself denies ("normal heart size" denies cardiomegaly)


@dataclass(frozen=True)
class LexiconRow:
    name: str
    lateral: bool  # whether a side is meaningful for this finding
    polarity: str
    pattern: str


LEXICON = (
    LexiconRow("pneumothorax", True, CONTEXT, r"(?:hydro|ha?emo)?-?pneumothora(?:x|ces)|ptx"),
    LexiconRow(
        "pleural effusion",
        True,
        CONTEXT,
        r"(?<!pericardial )(?<!pericardial and )(?:pleural |parapneumonic )?effusions?|pleural fluid"
        r"|fluid in the (?:\w+ )?pleural|hydrothorax"
        r"|blunt\w* (?:of )?(?:the )?(?:\w+ )?costophrenic|costophrenic (?:angles? |sinus )?blunt\w*",
    ),
    LexiconRow("consolidation", True, CONTEXT, r"consolidat\w*|air[- ]?bronchograms?"),
    LexiconRow(
        "opacity",
        True,
        CONTEXT,
        r"opacit(?:y|ies)|opacif\w+|infiltrat\w*|ground[- ]glass|(?<!metallic )(?<!bone )densit(?:y|ies)"
        r"|(?:reticul\w*|interstitial) (?:markings?|pattern)|haziness|opaque (?:\w+ )?(?:hemithorax|lungs?)"
        # "shadow" is an opacity unless it names a normal structure's outline
        r"|(?<!cardiac )(?<!heart )(?<!gastric )(?<!hepatic )(?<!mediastinal )(?<!hilar )shadow(?:s|ing)?",
    ),
    LexiconRow(
        "cardiomegaly",
        False,
        CONTEXT,
        r"cardiomegaly|(?:enlarged|increased) (?:cardiac|heart) (?:silhouette|shadow|size)"
        r"|(?:cardiac|heart) (?:enlargement|dilatation|dilation)"
        r"|(?:increase\w*|enlargement) (?:of|in) (?:the )?(?:cardiac|heart) (?:size|silhouette|shadow)"
        r"|increased cardiothoracic ratio",
    ),
    LexiconRow(
        "cardiomegaly",
        False,
        ABSENT,
        r"normal (?:heart|cardiac) (?:size|silhouette)"
        r"|(?:heart|cardiac) (?:size|silhouette) (?:is |was |appears |remains )?normal",
    ),
    LexiconRow("atelectasis", True, CONTEXT, r"atelecta\w+|collaps\w*"),
    LexiconRow(
        "edema",
        True,
        CONTEXT,
        r"o?edema\w*|(?:pulmonary|vascular|venous) (?:venous |vascular )?congestion|kerley",
    ),
    LexiconRow("pneumonia", True, CONTEXT, r"(?:broncho)?pneumoni(?:a|ae|as|c)|pneumonitis"),
    LexiconRow(
        "nodule/mass",
        True,
        CONTEXT,
        r"nodules?|nodular|mass(?:es|-like)?|tumou?rs?|metastas[ie]s|neoplasms?",
    ),
    LexiconRow("fracture", True, CONTEXT, r"(?<!lead )fractur\w*|broken ribs?"),
    LexiconRow(
        "support device",
        False,
        CONTEXT,
        r"tubes?|tracheostomy|ngt|catheters?|cannula\w*|ecmo|picc"
        r"|(?:central|venous|arterial|intravenous|iv|jugular|subclavian) (?:\w+ )?lines?"
        r"|(?:chest|intercostal|pleural|mediastinal|pigtail) drains?"
        r"|pacemakers?|defibrillators?|icd|pacing (?:leads?|wires?)|(?:ventricular|atrial) leads?"
        r"|guide ?wires?|(?:sternotomy|sternal) wires?|port|port-a-cath|stents?"
        r"|(?:prosthetic|replacement) (?:heart |cardiac )?valves?|valve (?:replacement|prosthesis)",
    ),
    LexiconRow(
        "normal",
        False,
        ASSERTED,
        r"normal (?:(?:chest|erect|upright|plain|frontal|pa|ap|control) )*"
        r"(?:x-ray|x ray|radiograph\w*|cxr|film|study|examination)"
        r"|(?:x-ray|x ray|radiograph\w*|cxr|film)\s*[:-]\s*normal(?=\s*(?:[.;,]|$))"
        r"|(?:no|not (?:\w+ )?any) (?:\w+ ){0,2}abnormalit\w*(?!,? except)"
        r"|no (?:\w+ )?abnormal (?:findings?|shadows?)|normal appearance(?! of)"
        r"|no (?:acute|active) (?:\w+ )?(?:findings?|disease|process|abnormalit\w*)"
        r"|unremarkable (?:chest )?(?:x-ray|radiograph\w*|cxr|film|study)"
        r"|(?:x-ray|radiograph\w*|cxr|film|study) (?:is |was )?unremarkable",
    ),
    LexiconRow(
        "pericardial effusion",
        False,
        CONTEXT,
        r"pericardial (?:and pleural )?effusions?|(?:hydro|ha?emo|chylo|pyo)pericardium",
    ),
    LexiconRow("pneumomediastinum", False, CONTEXT, r"pneumomediastinum|mediastinal emphysema"),
    LexiconRow(
        "subcutaneous emphysema",
        False,
        CONTEXT,
        r"(?:subcutaneous|surgical) (?:emphysema|air)",
    ),
    LexiconRow(
        "pneumoperitoneum",
        False,
        CONTEXT,
        r"pneumoperitoneum|free (?:intra-?abdominal |intraperitoneal |sub-?diaphragmatic )?air"
        r"|(?<!gastric )air (?:\w+ )?(?:under|beneath|below) (?:the |both )?(?:\w+ )?(?:hemi-?)?diaphragms?"
        r"|sub-?diaphragmatic (?:free )?air",
    ),
    LexiconRow(
        "enlarged mediastinum",
        False,
        CONTEXT,
        r"(?:widen\w*|enlarge\w*|broaden\w*) (?:of )?(?:the )?(?:upper |superior )?mediastin\w*"
        r"|mediastin\w* (?:widening|enlargement)",
    ),
)

FINDING_NAMES = tuple(dict.fromkeys(row.name for row in LEXICON))

_ROWS = tuple((row, re.compile(rf"\b(?:{row.pattern})\b")) for row in LEXICON)

# Negation cues before a mention, and negating phrases after it.
_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|resolution of|resolved|"
    r"disappearance of|clear of|ruled out|rule out|nor|neither)\b"
)
_POST_NEGATION = re.compile(
    r"^\W*(?:\w+\W+){0,2}?(?:has |have |had |was |were |is |are )?"
    r"(?:resolved|disappeared|absent|ruled out|(?:not|no longer) (?:seen|visible|identified|detect\w*|present))\b"
)
_NEGATION_REACH_WORDS = 6
# Where a clause ends: punctuation (not a decimal point) or a word that starts a new statement.
_CLAUSE_BREAK = re.compile(r"[.;:!?()](?!\d)|\b(?:but|however|although|though|with|which|except|while|whereas|yet)\b")

_SIDE_WORDS = {
    "left": re.compile(r"\bleft(?:side)?\b"),
    "right": re.compile(r"\bright(?:side)?\b"),
    "bilateral": re.compile(r"\b(?:bilateral(?:ly)?|both|bi-?basal|bi-?basilar|bi-?apical)\b"),
}
_SIDE_REACH_WORDS = 5
_SIDE = r"(?:left|right|leftside|rightside|both|bilateral)\b"
_SIDE_AFTER = re.compile(
    r"^\W*(?:\w+\W+){0,5}?(?:bilaterally|(?:in|on|of|at|over|involving|within|throughout)\W+"
    rf"(?:\w+\W+){{0,3}}?{_SIDE}(?: and {_SIDE})?)"
)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, order=True)
class Finding:
    name: str
    negated: bool = False
    laterality: str | None = None  # "left", "right", "bilateral" or None

    def __str__(self) -> str:
        words = ["no"] if self.negated else []
        words += [self.laterality] if self.laterality else []
        return " ".join(words + [self.name])


class FindingComparison(NamedTuple):
    agree: frozenset[Finding]  # the prediction's findings that match the reference
    missing: frozenset[Finding]  # the reference's findings the prediction lacks
    extra: frozenset[Finding]  # the prediction's findings the reference lacks


@dataclass(frozen=True)
class _Mention:
    row: LexiconRow
    start: int
    end: int


def extract_findings(caption: str) -> frozenset[Finding]:
    """The findings a caption asserts or denies (see the module docstring for the rules)."""
    if not isinstance(caption, str):
        raise TypeError(f"a caption must be a string, not {type(caption).__name__}")
    text = caption.lower()
    mentions = sorted(
        (_Mention(row, match.start(), match.end()) for row, regex in _ROWS for match in regex.finditer(text)),
        key=lambda mention: mention.start,
    )
    sides: dict[tuple[str, bool], set[str]] = {}
    for index, mention in enumerate(mentions):
        key = (mention.row.name, _is_negated(text, mention))
        found = sides.setdefault(key, set())
        if mention.row.lateral:
            previous = mentions[index - 1] if index > 0 else None
            following = mentions[index + 1] if index + 1 < len(mentions) else None
            side = _laterality(text, mention, previous, following)
            found.update([side] if side else [])
    return frozenset(Finding(name, negated, _merge_sides(found)) for (name, negated), found in sides.items())


def compare_findings(prediction: str, reference: str) -> FindingComparison:
    """Which findings of the prediction agree with the reference, are missing, or are extra."""
    predicted, expected = extract_findings(prediction), extract_findings(reference)
    agree, matched = set(), set()
    for finding in predicted:
        match = next((ref for ref in expected - matched if _agrees(finding, ref)), None)
        if match is not None:
            agree.add(finding)
            matched.add(match)
    return FindingComparison(
        agree=frozenset(agree), missing=frozenset(expected - matched), extra=frozenset(predicted - agree)
    )


def finding_counts(prediction: str, reference: str) -> tuple[int, int, int]:
    """(agree, extra, missing) counts of a pair: true positives, false positives, false negatives."""
    comparison = compare_findings(prediction, reference)
    return len(comparison.agree), len(comparison.extra), len(comparison.missing)


def finding_f1(prediction: str, reference: str) -> float | None:
    """F1 of the prediction's findings against the reference's; None when neither names any."""
    return f1_or_none(*finding_counts(prediction, reference))


def f1_or_none(tp, fp, fn) -> float | None:
    """`micro_f1` of one set of counts (a pair's, or a corpus's summed) as a number, None where
    no finding was named: the one definition the app, the API, the exports and the report share."""
    value = float(micro_f1(tp, fp, fn))
    return None if math.isnan(value) else value


def micro_f1(tp, fp, fn):
    """2·TP / (2·TP + FP + FN), NaN where all are zero (no finding named); numbers or numpy arrays alike.

    Corpus micro-F1 is this of the counts summed over pairs (see `finding_counts`).
    """
    tp, fp, fn = np.asarray(tp, float), np.asarray(fp, float), np.asarray(fn, float)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.full_like(denominator, np.nan), where=denominator > 0)


def _agrees(predicted: Finding, expected: Finding) -> bool:
    same_side = predicted.laterality == expected.laterality or None in (predicted.laterality, expected.laterality)
    return (predicted.name, predicted.negated) == (expected.name, expected.negated) and same_side


def _is_negated(text: str, mention: _Mention) -> bool:
    if mention.row.polarity != CONTEXT:
        return mention.row.polarity == ABSENT
    clause_before = _clause_before(text, mention.start)
    cues = list(_PRE_NEGATION.finditer(clause_before))
    if cues and len(_WORD.findall(clause_before[cues[-1].end() :])) <= _NEGATION_REACH_WORDS:
        return True
    return bool(_POST_NEGATION.match(_clause_after(text, mention.end)))


def _laterality(text: str, mention: _Mention, previous: _Mention | None, following: _Mention | None) -> str | None:
    """The side stated for a mention: inside it, just before it, or in a phrase after it."""
    side = _side_in(text[mention.start : mention.end])
    if side:
        return side
    # A window stops at another finding named apart from this one ("left effusion and a mass").
    start = mention.start - len(_clause_before(text, mention.start))
    if previous is not None and _WORD.search(text[previous.end : mention.start]):
        start = max(start, previous.end)
    side = _side_in(" ".join(_WORD.findall(text[start : mention.start])[-_SIDE_REACH_WORDS:]))
    if side:
        return side
    after = _clause_after(text, mention.end)
    if following is not None and _WORD.search(text[mention.end : following.start]):
        after = after[: following.start - mention.end]
    match = _SIDE_AFTER.match(after)
    return _side_in(match.group()) if match else None


def _side_in(text: str) -> str | None:
    return _merge_sides({side for side, regex in _SIDE_WORDS.items() if regex.search(text)})


def _merge_sides(sides: set[str]) -> str | None:
    if not sides:
        return None
    return next(iter(sides)) if len(sides) == 1 else "bilateral"


def _clause_before(text: str, position: int) -> str:
    breaks = list(_CLAUSE_BREAK.finditer(text, 0, position))
    return text[breaks[-1].end() if breaks else 0 : position]


def _clause_after(text: str, position: int) -> str:
    found = _CLAUSE_BREAK.search(text, position)
    return text[position : found.start() if found else len(text)]
