"""The exported slide: laid out from its content, 1 to 5 cards with long captions and a long
credit; no block overlaps another or leaves the canvas, and every caption, score and the credit
is drawn whole."""

import itertools

import numpy as np
import pytest
from PIL import Image

from cxrcap.app import slide
from cxrcap.app.comparison import Comparison
from cxrcap.captioner import CaptionResult, DecodeSettings
from cxrcap.variants import VARIANTS

WORDS = ("bilateral patchy airspace opacities lower zones small left pleural effusion blunting costophrenic "
         "angle normal cardiac silhouette no pneumothorax endotracheal tube tip four centimetres above carina "
         "lines tubes expected degenerative changes thoracic spine free air under diaphragm").split()
# A CC BY example's credit of four lines and more, with a long unbroken URL: its licence and source must show.
CREDIT = ("CC BY 4.0, ieee8023/covid-chestxray-dataset (snapshot hida6/covid-chestxray-dataset@584034aa7f:"
          "images/41182_2020_203_Fig3_HTML.jpg); orig https://tropmedhealth.biomedcentral.com/articles/"
          "10.1186/s41182-020-00203-0; figure 3 of Nguyen et al., Tropical Medicine and Health 48 (2020), "
          "under the Creative Commons Attribution 4.0 International licence; changes: re-encoded")


def long_caption(seed: int, words: int = 70) -> str:
    """~100 tokens of a chest caption, different for each seed."""
    return " ".join(itertools.islice(itertools.cycle(WORDS[seed:] + WORDS[:seed]), words)) + f" (variant {seed})"


def comparison_of(cards: int, ground_truth: str) -> Comparison:
    comparison = Comparison(ground_truth, DecodeSettings(num_beams=8, max_new_tokens=100))
    for seed, variant_id in enumerate(list(VARIANTS)[:cards]):
        comparison.add(CaptionResult(variant_id, long_caption(seed), 1.0, untrained=True, int8=True))
    return comparison


def non_space(text: str) -> str:
    return "".join(text.split())


def overlap(a: slide.Box, b: slide.Box) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.bottom and b.y < a.bottom


@pytest.fixture(scope="module")
def xray(cxr_image):
    from cxrcap.images import load_image

    return load_image(cxr_image)


def check_placed(boxes: list[slide.Box]) -> None:
    for box in boxes:
        assert 0 <= box.x and box.x + box.width <= slide.WIDTH and 0 <= box.y and box.bottom <= slide.HEIGHT, box
    for a, b in itertools.combinations(boxes, 2):
        assert not overlap(a, b), (a, b)


def check_inked_inside(picture: Image.Image, boxes: list[slide.Box]) -> None:
    """Every pixel that is not the white page lies in a box (a 2 px margin for anti-aliasing)."""
    inked = np.asarray(picture.convert("L")) < 250
    for box in boxes:
        inked[max(0, box.y - 2):box.bottom + 2, max(0, box.x - 2):box.x + box.width + 2] = False
    assert not inked.any(), f"ink outside every box at (row, column) {np.argwhere(inked)[0]}"


def test_five_long_cards_and_a_long_credit_leave_the_slide_margins_blank(xray):
    # Seen from the PNG alone: text that runs off the page is ink at its edge.
    picture = np.asarray(comparison_of(5, long_caption(9, words=80)).to_slide(xray, CREDIT).convert("L"))
    margin = slide.MARGIN // 2
    for edge in (picture[:margin], picture[-margin:], picture[:, :margin], picture[:, -margin:]):
        assert edge.min() >= 250


@pytest.mark.parametrize("cards", [1, 2, 3, 4, 5])
def test_every_caption_score_and_the_credit_are_drawn_whole_and_nothing_overlaps(xray, cards):
    comparison = comparison_of(cards, long_caption(9, words=80))
    credit, blocks = f"Image: {CREDIT}", comparison.slide_lines()
    boxes = slide.layout(xray.size, blocks, credit, comparison.slide_footer())
    check_placed(boxes)
    by_kind = {kind: [box for box in boxes if box.kind == kind] for kind in slide.STYLES}
    assert not any(box.cut for box in boxes)
    assert [non_space(" ".join(box.lines)) for box in by_kind["caption"]] == [non_space(text) for _, text, _ in blocks]
    assert [non_space(" ".join(box.lines)) for box in by_kind["scores"]] == [non_space(s) for *_, s in blocks if s]
    assert len(by_kind["scores"]) == cards and all("Finding F1" in " ".join(box.lines) for box in by_kind["scores"])
    assert [non_space(" ".join(box.lines)) for box in by_kind["credit"]] == [non_space(credit)]
    assert non_space(" ".join(by_kind["footer"][0].lines)) == non_space(comparison.slide_footer())
    image = next(box for box in boxes if box.kind == "image")
    assert image.height >= slide.MIN_IMAGE_HEIGHT  # the X-ray stays large enough to read
    assert min(box.size for box in by_kind["caption"]) >= slide.STYLES["caption"].floor
    picture = slide.render(xray, boxes)
    assert picture.size == (1600, 900)
    assert comparison.to_slide(xray, CREDIT).tobytes() == picture.tobytes()  # the boxes are the slide's
    check_inked_inside(picture, boxes)


def test_a_ground_truth_too_long_for_any_font_is_cut_visibly_scores_and_credit_never(xray):
    comparison = comparison_of(5, "chest " * 900)  # 5,400 characters
    blocks = comparison.slide_lines()
    boxes = slide.layout(xray.size, blocks, f"Image: {CREDIT}", comparison.slide_footer())
    check_placed(boxes)
    captions = [box for box in boxes if box.kind == "caption"]
    assert captions[0].cut and captions[0].lines[-1].endswith(slide.ELLIPSIS)
    assert all(box.size == slide.STYLES["caption"].floor for box in captions)
    assert len(captions[0].lines) > 1 and all(not box.cut for box in captions[1:])  # the longest gives way first
    assert len([box for box in boxes if box.kind == "scores"]) == 5
    assert not any(box.cut for box in boxes if box.kind in ("scores", "credit", "footer", "title"))
    check_inked_inside(slide.render(xray, boxes), boxes)


def test_a_short_comparison_keeps_the_largest_fonts(xray):
    comparison = Comparison("", DecodeSettings())
    comparison.add(CaptionResult("git-base", "chest x-ray", 0.1))
    boxes = slide.layout(xray.size, comparison.slide_lines(), "", comparison.slide_footer())
    check_placed(boxes)
    assert {box.kind: box.size for box in boxes if box.kind in ("title", "caption")} == {
        "title": slide.STYLES["title"].size, "caption": slide.STYLES["caption"].size}
    assert not [box for box in boxes if box.kind in ("credit", "scores")]


def test_a_credit_longer_than_any_licence_line_keeps_the_xray_readable(xray):
    comparison = comparison_of(5, "chest radiograph")
    boxes = slide.layout(xray.size, comparison.slide_lines(), "Image: " + "source " * 800, comparison.slide_footer())
    check_placed(boxes)
    credit = next(box for box in boxes if box.kind == "credit")
    assert credit.cut and credit.size == slide.STYLES["credit"].floor
    assert next(box for box in boxes if box.kind == "image").height >= slide.MIN_IMAGE_HEIGHT
