"""Where the ink is on a real page: paper that is not white, light that is not even, rulings and specks.

`layout_ink` turns a grey page into a binary map of writing for finding lines (never for reading: the
recognizer still sees grey lines). The paper is estimated by a large grey-level closing (what is left when
dark strokes thinner than the window are filled in), and dividing by it flattens shadows, folds, stains and
uneven light; a threshold on that ratio (Otsu's, with a floor that keeps faint show-through from the back out)
marks ink. Long straight horizontal and vertical runs (printed rulings, table borders, the scanner's edge)
and specks far smaller than writing are removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_INK = 0.12  # darkening below this share of the local paper brightness is never ink (show-through, texture)
MAX_INK = 0.45  # Otsu's threshold on the darkening is capped here: faint handwriting on a page with dark print
WEAK = 0.6  # hysteresis: ink as faint as this share of the strong threshold is kept when it touches strong ink
RULE_LENGTH = 0.05  # straight runs longer than this share of the page's width (height, for vertical ones) ...
RULE_LETTERS = 8  # ... and than this many letter heights are rules


@dataclass(frozen=True)
class PageInk:
    """A page's writing as a binary map (uint8 0/1) at ``scale`` original pixels per map pixel, and the
    removed rulings (``rules``, same shape), which separate table columns."""

    ink: np.ndarray
    rules: np.ndarray
    scale: float


def paper_background(gray: np.ndarray, window: int) -> np.ndarray:
    """Estimated paper brightness at every pixel (float32): a grey closing with a ``window``-pixel square, made at
    a quarter of the resolution, smoothed and brought back to full size."""
    small = cv2.resize(gray, (max(1, gray.shape[1] // 4), max(1, gray.shape[0] // 4)), interpolation=cv2.INTER_AREA)
    size = max(3, window // 4) | 1
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size)))
    closed = cv2.GaussianBlur(closed, (0, 0), size / 2)
    return cv2.resize(closed, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def ink_threshold(dark: np.ndarray) -> float:
    """Otsu's threshold on the darkening of the pixels that are not plain paper, kept within [MIN_INK, MAX_INK]."""
    values = dark[dark > MIN_INK / 2]
    if values.size < 100:
        return MIN_INK
    levels = np.clip(values * 255, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(levels.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.clip(otsu / 255, MIN_INK, MAX_INK))


def hysteresis(dark: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels darker than ``low`` that are connected to one darker than ``high`` (faint strokes of dark letters
    are kept, faint marks alone are not), as uint8 0/1."""
    weak = (dark > low).astype(np.uint8)
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.zeros(count, np.uint8)
    keep[np.unique(labels[dark > high])] = 1
    keep[0] = 0
    return keep[labels].astype(bool)


def component_height(ink: np.ndarray) -> float:
    """Median height of the ink's connected components of a few pixels or more (about a letter's height)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT][stats[1:, cv2.CC_STAT_AREA] >= 10]
    return float(np.median(heights)) if heights.size else 10.0


def straight_runs(ink: np.ndarray, length: int, vertical: bool) -> np.ndarray:
    """The binary ink's straight horizontal (or vertical) runs of at least ``length`` pixels."""
    shape = (1, length) if vertical else (length, 1)  # OpenCV sizes are (width, height)
    return cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, shape))


def remove_rules(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ink without long straight horizontal and vertical runs (longer than ``RULE_LENGTH`` of the page and
    than ``RULE_LETTERS`` letter heights), and those runs."""
    height, width = ink.shape
    letters = RULE_LETTERS * component_height(ink)
    rules = straight_runs(ink, max(15, int(RULE_LENGTH * width), int(letters)), vertical=False) | straight_runs(
        ink, max(15, int(RULE_LENGTH * height), int(letters)), vertical=True
    )
    rules = cv2.dilate(rules, np.ones((5, 3), np.uint8))  # the rules' faint edges too
    return ink & (1 - rules), rules


def remove_specks(ink: np.ndarray, min_area: int) -> np.ndarray:
    """The ink without connected components smaller than ``min_area`` pixels."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    keep = np.zeros(count, np.uint8)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def layout_ink(gray: np.ndarray, max_side: int = 2400) -> PageInk:
    """The writing of a grey page (uint8, dark ink on light paper) as a binary map, rulings and specks removed;
    pages larger than ``max_side`` pixels are worked on shrunk to it."""
    scale = max(1.0, max(gray.shape) / max_side)
    if scale > 1:
        size = (max(1, round(gray.shape[1] / scale)), max(1, round(gray.shape[0] / scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    window = max(15, max(gray.shape) // 40)  # wider than any stroke, narrower than shadows and folds
    background = np.maximum(paper_background(gray, window), 1.0)
    dark = np.clip(1.0 - gray.astype(np.float32) / background, 0.0, 1.0)
    off_page = background < 0.6 * np.median(background)  # the scanner's lid or table around the sheet
    strong = ink_threshold(dark[~off_page])
    faint = ((dark > MIN_INK) & ~off_page).astype(np.uint8)
    _, rules = remove_rules(faint)  # found on the faintest map, where rules run unbroken
    ink = hysteresis(np.where(rules > 0, 0.0, dark), max(MIN_INK, WEAK * strong), strong) & ~off_page
    ink = ink.astype(np.uint8)
    ink = remove_specks(ink, min_area=max(4, (max(gray.shape) // 1000) ** 2 * 4))
    return PageInk(drop_edge_components(ink, off_page, window), rules, scale)


def drop_edge_components(ink: np.ndarray, off_page: np.ndarray, margin: int) -> np.ndarray:
    """The ink without components that come within ``margin`` of the area off the page (dark around the sheet):
    the sheet's edges, torn borders, shadows of the binding."""
    if not off_page.any():
        return ink
    near = cv2.dilate(off_page.astype(np.uint8), np.ones((margin, margin), np.uint8)).astype(bool)
    count, labels = cv2.connectedComponents(ink, connectivity=8)
    touching = np.unique(labels[near & (ink > 0)])
    keep = np.ones(count, np.uint8)
    keep[0] = 0
    keep[touching] = 0
    return keep[labels]
