"""Ink and lines on pages that are not clean white paper: uneven light, texture, show-through, ruling."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from htr.pages.page_ink import layout_ink
from htr.pages.segment import segment_page
from htr.reading.preprocess import to_grayscale
from htr.synth.render import compose_page
from tests.conftest import random_texts, render_line


def overlap(a, b) -> float:
    """Intersection over the smaller box's area (found boxes hug the ink; the true ones have the line image's
    margins)."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def handwritten_lines(count: int, seed: int) -> list[Image.Image]:
    """Lines of five to nine words in the bundled handwriting fonts (``htr.synth.render.render_text``)."""
    from htr.synth.render import list_fonts, render_text

    rng = np.random.default_rng(seed)
    fonts = list_fonts()
    texts = [" ".join(random_texts(4, seed * 10 + k)) for k in range(count)]
    lines = [render_text(t, fonts[int(rng.integers(len(fonts)))], rng, height=56) for t in texts]
    return [ImageOps.autocontrast(line, cutoff=1) for line in lines]  # dark ink on white, like the default lines


def real_looking_page(seed: int, lines: list[Image.Image] | None = None) -> tuple[np.ndarray, list, np.ndarray]:
    """Written lines (by default four in Pillow's font) on paper with a shadow gradient, texture, the mirrored
    writing of the back showing through, blue-grey ruling under every line and a vertical margin rule; returns the
    grey page, the lines' boxes and a mask of where only the show-through is."""
    rng = np.random.default_rng(seed)
    handwritten = lines is not None  # then the back shows handwriting of the same size too
    if lines is None:
        lines = [render_line(t, size=int(rng.integers(26, 32)), paper=255) for t in random_texts(4, seed + 10)]
    page, boxes = compose_page(lines, rng, gap=(30, 40), indent=(60, 80), margin=60)
    clean = np.asarray(page, dtype=np.float64) / 255  # 1 paper, ~0.08 ink
    height, width = clean.shape
    back_lines = [render_line(t, size=28, paper=255) for t in random_texts(4, seed + 20)]
    if handwritten:
        back_lines = handwritten_lines(len(lines), seed + 20)
    back = np.asarray(
        compose_page(
            back_lines,
            rng,
            gap=(30, 40),
            indent=(60, 80),
            margin=60,
        )[0].resize((width, height))
    )
    show_through = 1 - np.asarray(back, dtype=np.float64)[:, ::-1] / 255  # mirrored, 0 paper .. 1 ink
    light = np.linspace(1.0, 0.55, width)[None, :] * np.linspace(1.0, 0.8, height)[:, None]  # a shadow
    paper = light * (0.93 + 0.03 * rng.standard_normal((height, width)))  # texture
    value = paper * (1 - 0.12 * show_through)  # the back's writing, faint
    for _, _, _, bottom in boxes:  # ruling on the baseline of every line
        value[bottom - 4 : bottom - 2, :] *= 0.72
    value[:, 40:42] *= 0.7  # the margin rule
    value = np.where(clean < 0.6, paper * clean * 1.6, value)  # the writing on top
    only_back = (show_through > 0.3) & (clean > 0.9)
    return np.clip(value * 255, 0, 255).astype(np.uint8), boxes, only_back


@pytest.mark.parametrize("seed", range(3))
def test_layout_ink_keeps_writing_and_drops_shadow_show_through_and_rules(seed):
    gray, boxes, only_back = real_looking_page(seed)
    page = layout_ink(gray)
    ink = page.ink.astype(bool)
    writing = np.zeros_like(ink)
    for left, top, right, bottom in boxes:
        writing[top:bottom, left:right] = True
    assert ink[~writing].mean() < 0.002  # nothing from shadow, texture, show-through or ruling outside the lines
    assert ink[only_back].mean() < 0.01
    assert page.rules[:, 40:42].mean() > 0.5  # the margin rule was found as a rule over most of its length
    assert ink[writing].mean() > 0.02  # the writing is there
    otsu, global_ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    assert global_ink.astype(bool)[~writing].mean() > 0.05  # what one global threshold marks as ink there


@pytest.mark.parametrize("seed", range(3))
def test_lines_found_on_a_real_looking_page(seed):
    gray, boxes, _ = real_looking_page(seed)
    lines = segment_page(gray)
    assert len(lines) == len(boxes)
    assert all(overlap(line.box, box) >= 0.8 for line, box in zip(lines, boxes))
    assert all(line.ink.dtype == np.float32 and 0 < line.ink.max() <= 1 for line in lines)  # grey, for reading


def test_table_columns_are_read_apart():
    """Two columns of lines separated by a vertical table border: lines are not joined across it."""
    rng = np.random.default_rng(3)
    left, left_boxes = compose_page([render_line(t, paper=255) for t in random_texts(3, 1)], rng, gap=(20, 30))
    right, right_boxes = compose_page([render_line(t, paper=255) for t in random_texts(3, 2)], rng, gap=(20, 30))
    height = max(left.height, right.height)
    page = Image.new("L", (left.width + right.width + 10, height), 255)
    page.paste(left, (0, 0))
    page.paste(right, (left.width + 10, 0))
    page.paste(0, (left.width + 4, 0, left.width + 6, height))  # the column border
    lines = segment_page(to_grayscale(page))
    truth = left_boxes + [(a + left.width + 10, b, c + left.width + 10, d) for a, b, c, d in right_boxes]
    assert len(lines) == 6
    assert all(max(overlap(line.box, box) for box in truth) >= 0.8 for line in lines)


@pytest.fixture(scope="module")
def shipped_finder():
    from htr.inference import DEFAULT_LINE_FINDER
    from htr.pages.line_finder import LineFinder

    return LineFinder(DEFAULT_LINE_FINDER)


@pytest.mark.parametrize("seed", range(3))
def test_shipped_line_finder_on_a_real_looking_handwritten_page(seed, shipped_finder):
    gray, boxes, _ = real_looking_page(seed, handwritten_lines(6, seed))
    lines = segment_page(gray, finder=shipped_finder)
    assert len(lines) == len(boxes)  # no line lost or doubled, none made of ruling, shadow or show-through
    assert all(overlap(line.box, box) >= 0.7 for line, box in zip(lines, boxes))
    assert all(line.ink.dtype == np.float32 and 0 < line.ink.max() <= 1 for line in lines)  # grey, for reading


def test_shipped_line_finder_reads_table_cells_apart(shipped_finder):
    """Two columns of lines side by side with a border between: six lines, row by row."""
    rng = np.random.default_rng(3)
    left, left_boxes = compose_page(handwritten_lines(3, 1), rng, gap=(20, 30))
    right, right_boxes = compose_page(handwritten_lines(3, 2), rng, gap=(20, 30))
    height = max(left.height, right.height)
    page = Image.new("L", (left.width + right.width + 10, height), 255)
    page.paste(left, (0, 0))
    page.paste(right, (left.width + 10, 0))
    page.paste(0, (left.width + 4, 0, left.width + 6, height))  # the column border
    lines = segment_page(to_grayscale(page), finder=shipped_finder)
    truth = left_boxes + [(a + left.width + 10, b, c + left.width + 10, d) for a, b, c, d in right_boxes]
    assert len(lines) == 6
    assert all(max(overlap(line.box, box) for box in truth) >= 0.7 for line in lines)
