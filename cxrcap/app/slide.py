"""A comparison as one 1600x900 slide: the X-ray with its credit on the left, the ground truth and
each variant's caption with its scores on the right, the disclaimer along the foot.

The layout is computed from the content, never from fixed spacing: every text is measured in its
font and wrapped to its column; the right column's fonts shrink step by step, down to a floor,
until every block fits, and the credit's until the X-ray keeps a useful size. Only at the floor
are the longest captions cut, with "…" (the CSV beside the slide has them whole); scores, the
credit (an image's licence and source) and the disclaimer are never cut. `layout()` returns the
boxes it placed, which `render()` draws, so a test can check that none overlaps another or
leaves the canvas.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1600, 900
MARGIN, GUTTER = 40, 40
LEFT_WIDTH = 560  # the X-ray's column
RIGHT_X = MARGIN + LEFT_WIDTH + GUTTER
RIGHT_WIDTH = WIDTH - MARGIN - RIGHT_X
MIN_IMAGE_HEIGHT = 320  # the credit's font shrinks before the X-ray gets smaller than this
ELLIPSIS = " …"


@dataclass(frozen=True)
class Style:
    size: int  # font size in pixels, as large as there is room for
    floor: int  # never smaller: still readable on a projected slide
    bold: bool = False
    colour: str = "#222"


STYLES = {
    "title": Style(24, 13, bold=True, colour="#000"),
    "caption": Style(21, 12),
    "scores": Style(18, 12, colour="#555"),
    "credit": Style(16, 11, colour="#444"),
    "footer": Style(15, 15, colour="#a00"),
}


@dataclass(frozen=True)
class Box:
    """One placed thing: the X-ray, or a text (`kind` in STYLES) as the lines it is drawn in."""

    kind: str
    x: int
    y: int
    width: int  # text: the widest line as measured, so the box is what gets inked
    height: int
    lines: tuple[str, ...] = ()
    size: int = 0
    cut: bool = False  # the text did not fit whole and ends with ELLIPSIS

    @property
    def bottom(self) -> int:
        return self.y + self.height


@functools.lru_cache(maxsize=64)
def font(bold: bool, size: int) -> ImageFont.FreeTypeFont:
    # DejaVu Sans, as matplotlib ships it (the report's figures use it too): wide Unicode coverage.
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def line_height(kind: str, size: int) -> int:
    ascent, descent = font(STYLES[kind].bold, size).getmetrics()
    return ascent + descent + size // 6


@functools.lru_cache(maxsize=256)  # the layout tries sizes and line budgets: each text is wrapped once per size
def wrap(text: str, kind: str, size: int, width: int) -> tuple[str, ...]:
    """`text` in lines no wider than `width` pixels: at spaces, and inside a word only when the
    word alone is wider (a long URL in a credit)."""
    measure = font(STYLES[kind].bold, size).getlength
    lines = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if measure(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            while measure(line) > width:
                cut = len(line) - 1
                while cut > 1 and measure(line[:cut]) > width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        if line:
            lines.append(line)
    return tuple(lines)


def text_box(kind: str, text: str, x: int, y: int, width: int, size: int, max_lines: int | None = None) -> Box:
    """`text` wrapped at `width` from (x, y); with `max_lines`, cut to that many, ending in ELLIPSIS."""
    measure = font(STYLES[kind].bold, size).getlength
    lines = list(wrap(text, kind, size, width))
    cut = max_lines is not None and len(lines) > max_lines
    if cut:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and measure(last + ELLIPSIS) > width:
            last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
        lines[-1] = last + ELLIPSIS
    widest = max((measure(line) for line in lines), default=0)
    return Box(kind, x, y, int(widest) + 1, len(lines) * line_height(kind, size), tuple(lines), size, cut)


def layout(image_size: tuple[int, int], blocks: list[tuple[str, str, str]], credit: str, footer: str) -> list[Box]:
    """Place the X-ray (`image_size`), its `credit`, the (title, caption, scores) `blocks` and the
    `footer` on the slide; returns every box, the X-ray's first."""
    footer_box = text_box("footer", footer, MARGIN, 0, WIDTH - 2 * MARGIN, STYLES["footer"].size)
    footer_box = replace(footer_box, y=HEIGHT - MARGIN - footer_box.height)
    bottom = footer_box.y - GUTTER // 2
    return [*_left_column(image_size, credit, MARGIN, bottom), *_right_column(blocks, MARGIN, bottom), footer_box]


def _sizes(kind: str) -> range:
    """A text's font sizes, largest first, down to its floor."""
    return range(STYLES[kind].size, STYLES[kind].floor - 1, -1)


def _left_column(image_size: tuple[int, int], credit: str, top: int, bottom: int) -> list[Box]:
    """The X-ray, as large as the column allows, with its credit right under it."""
    gap = 12
    credit_box = None
    if credit:
        for size in _sizes("credit"):
            credit_box = text_box("credit", credit, MARGIN, 0, LEFT_WIDTH, size)
            if bottom - top - gap - credit_box.height >= MIN_IMAGE_HEIGHT:
                break
        else:  # longer than any licence line: keep what leaves the X-ray its least height
            lines = max(1, (bottom - top - gap - MIN_IMAGE_HEIGHT) // line_height("credit", credit_box.size))
            credit_box = text_box("credit", credit, MARGIN, 0, LEFT_WIDTH, credit_box.size, max_lines=lines)
    room = bottom - top - (gap + credit_box.height if credit_box else 0)
    width, height = image_size
    scale = min(LEFT_WIDTH / width, room / height)
    shown = (max(1, round(width * scale)), max(1, round(height * scale)))
    image_box = Box("image", MARGIN + (LEFT_WIDTH - shown[0]) // 2, top, *shown)
    if credit_box is None:
        return [image_box]
    return [image_box, replace(credit_box, y=image_box.bottom + gap)]


def _right_column(blocks: list[tuple[str, str, str]], top: int, bottom: int) -> list[Box]:
    """Every block whole at the largest sizes that fit; at the floor, the longest captions cut."""
    kinds = ("title", "caption", "scores")
    for step in range(max(len(_sizes(kind)) for kind in kinds)):
        sizes = {kind: max(STYLES[kind].floor, STYLES[kind].size - step) for kind in kinds}
        boxes = _stack(blocks, top, sizes)
        if boxes[-1].bottom <= bottom:
            return boxes
    # At the floor (the last `sizes`): take away the overflowing lines, one at a time from the
    # longest caption (each keeps one line at least).
    allowed = [len(wrap(text, "caption", sizes["caption"], RIGHT_WIDTH)) for _, text, _ in blocks]
    for _ in range(-(-(boxes[-1].bottom - bottom) // line_height("caption", sizes["caption"]))):
        if max(allowed) == 1:
            break
        allowed[allowed.index(max(allowed))] -= 1
    return _stack(blocks, top, sizes, allowed)


def _stack(blocks, top: int, sizes: dict[str, int], max_lines: list[int] | None = None) -> list[Box]:
    """The blocks one under another from `top`: title, caption, scores; a gap between blocks
    that shrinks with the fonts."""
    boxes, y = [], top
    gap = sizes["caption"] // 2
    for index, (title, text, scores) in enumerate(blocks):
        for kind, content in (("title", title), ("caption", text), ("scores", scores)):
            if not content:
                continue
            limit = max_lines[index] if max_lines and kind == "caption" else None
            box = text_box(kind, content, RIGHT_X, y, RIGHT_WIDTH, sizes[kind], limit)
            boxes.append(box)
            y = box.bottom + 2
        y += gap
    return boxes


def render(image: Image.Image, boxes: list[Box]) -> Image.Image:
    """Draw the laid-out `boxes`, with `image` in the image box, on a white slide."""
    slide = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(slide)
    for box in boxes:
        if box.kind == "image":
            slide.paste(image.convert("RGB").resize((box.width, box.height), Image.Resampling.LANCZOS), (box.x, box.y))
            continue
        style = STYLES[box.kind]
        step = line_height(box.kind, box.size)
        for number, line in enumerate(box.lines):
            draw.text((box.x, box.y + number * step), line, font=font(style.bold, box.size), fill=style.colour)
    return slide


def draw_slide(image: Image.Image, blocks: list[tuple[str, str, str]], credit: str, footer: str) -> Image.Image:
    """The slide: `layout` then `render`."""
    return render(image, layout(image.size, blocks, credit, footer))
