"""Finding the text lines of a paragraph or page image.

Given a trained line finder (``htr.pages.line_finder.LineFinder``, what predict.py uses by default), `segment_page`
returns the lines it finds. Without one (the classical method), `segment_page` first keeps only the writing
(``htr.pages.page_ink``: no shadows, stains, show-through, rulings or sheet edges) and cuts the page into the columns
between vertical rules; in each, `segment_lines` estimates the skew (up to ±6°) from the sharpness of the row
profile of ink, rows with ink form bands, bands split by a faint gap (a dot, an accent, a descender) are merged,
and a band about k lines tall (touching ascenders and descenders) is cut at the k - 1 deepest valleys of its
profile. Boxes that are not writing are dropped. Boxes are given in the original image's pixels, in reading order
(top to bottom within a column, columns left to right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from htr.pages.line_ink import own_ink, stroke_owners
from htr.reading.preprocess import INK_THRESHOLD, ink_map, to_grayscale

if TYPE_CHECKING:
    from htr.pages.line_finder import LineFinder

MAX_SKEW_DEGREES = 6.0
SKEW_STEP_DEGREES = 0.25
ROW_INK_FRACTION = 0.04  # a row belongs to a text band when its ink exceeds this share of a busy row's
MERGE_GAP = 0.15  # bands closer than this × the typical line height are one line (i-dots, accents)
SMALL_BAND = 0.35  # bands shorter than this × the tallest band join their nearest neighbour
SPARSE_BAND = 0.25  # ... and so do bands whose ink density is below this × the densest band's
MIN_LINE_INK, MAX_LINE_INK = 0.02, 0.45  # share of a found line's box that is ink
READ_MARGIN = 0.15  # a found line is read with this many line heights more at each end (a final full stop)
TALL_BAND = 1.5  # bands taller than this × the line pitch hold several touching lines


@dataclass(frozen=True)
class Line:
    """One text line: its ink map (paper 0, ink 1, deskewed) and its box (left, top, right, bottom) in the
    original image's pixels; ``ink_box``: the box its ink map covers there, when not ``box``."""

    ink: np.ndarray
    box: tuple[int, int, int, int]
    ink_box: tuple[int, int, int, int] | None = None


def estimate_skew(ink: np.ndarray, max_points: int = 200_000) -> float:
    """The rotation (degrees, counter-clockwise positive) that makes text lines horizontal."""
    ys, xs = np.nonzero(ink > INK_THRESHOLD)
    if ys.size < 50:
        return 0.0
    step = max(1, ys.size // max_points)
    ys, xs = ys[::step].astype(np.float64), xs[::step].astype(np.float64)
    best_angle, best_score = 0.0, -1.0
    for angle in np.arange(-MAX_SKEW_DEGREES, MAX_SKEW_DEGREES + 1e-9, SKEW_STEP_DEGREES):
        theta = np.deg2rad(angle)
        rows = ys * np.cos(theta) - xs * np.sin(theta)  # row of each ink pixel after rotating the page
        counts = np.bincount((rows - rows.min()).astype(np.int64))
        score = float(np.square(counts, dtype=np.float64).sum())  # peaky profile = lines are horizontal
        if score > best_score * (1 + 1e-6):
            best_angle, best_score = float(angle), score
    return best_angle


def _bands(profile: np.ndarray) -> list[list[int]]:
    """[top, bottom) row ranges where ``profile`` marks ink."""
    rows = np.flatnonzero(profile)
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) > 1)
    starts = np.concatenate([[rows[0]], rows[breaks + 1]])
    ends = np.concatenate([rows[breaks], [rows[-1]]]) + 1
    return [[int(a), int(b)] for a, b in zip(starts, ends)]


def line_pitch(profile: np.ndarray) -> float | None:
    """The distance between successive text lines, from the first strong peak of the row profile's
    autocorrelation; None when the profile is not periodic (a single line)."""
    centred = profile - profile.mean()
    spectrum = np.fft.rfft(centred, n=2 * len(centred))
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[: len(centred)]
    if correlation[0] <= 0:
        return None
    lags = np.arange(len(correlation))
    peaks = [
        lag for lag in lags[8 : len(correlation) // 2 + 1]
        if correlation[lag] >= correlation[lag - 1] and correlation[lag] >= correlation[min(lag + 1, lags[-1])]
    ]  # fmt: skip
    strong = [lag for lag in peaks if correlation[lag] >= 0.3 * correlation[0]]
    return float(strong[0]) if strong else None


def find_bands(ink: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges of the text lines of a deskewed ink map, top to bottom."""
    profile = ink.sum(axis=1)
    busy = np.percentile(profile[profile > 0], 90) if (profile > 0).any() else 0.0
    bands = _bands(profile > ROW_INK_FRACTION * busy) if busy > 0 else []
    if not bands or _one_wide_band(bands, ink.shape[1]):
        return [tuple(b) for b in bands]  # nothing, or one line
    heights = lambda: np.array([b - a for a, b in bands])  # noqa: E731
    pitch = line_pitch(profile)
    typical = float(np.median(heights())) if pitch is None else min(float(np.median(heights())), pitch)
    merged = [bands[0]]  # close bands: one line (or touching lines, cut below)
    for band in bands[1:]:
        if band[0] - merged[-1][1] < MERGE_GAP * typical:
            merged[-1][1] = band[1]
        else:
            merged.append(band)
    bands = merged

    marked = ink > INK_THRESHOLD
    has_mark = marked.any(axis=1)
    first = np.where(has_mark, marked.argmax(axis=1), ink.shape[1])  # first and last inked column of each row
    last = np.where(has_mark, ink.shape[1] - 1 - marked[:, ::-1].argmax(axis=1), -1)

    def smallness() -> np.ndarray:  # below 1: a fragment (short, or sparse like a row of descenders)
        spans = np.array([max(1, last[a:b].max() - first[a:b].min() + 1) for a, b in bands])
        density = np.array([profile[a:b].sum() for a, b in bands]) / (heights() * spans)
        return np.minimum(heights() / (SMALL_BAND * heights().max()), density / (SPARSE_BAND * density.max()))

    while len(bands) > 1 and smallness().min() < 1:  # fragments join a neighbour
        i = int(smallness().argmin())
        gap_above = bands[i][0] - bands[i - 1][1] if i > 0 else np.inf
        gap_below = bands[i + 1][0] - bands[i][1] if i + 1 < len(bands) else np.inf
        j = i - 1 if gap_above <= gap_below else i + 1
        bands[min(i, j)] = [bands[min(i, j)][0], bands[max(i, j)][1]]
        del bands[max(i, j)]
    step = pitch or float(np.median(heights()))
    window = max(1, int(step // 4))
    smooth = np.convolve(profile, np.ones(window) / window, mode="same")
    result: list[tuple[int, int]] = []
    for top, bottom in bands:  # several touching lines: cut at the deepest valleys near the expected places
        count = max(1, int(round((bottom - top) / step))) if bottom - top > TALL_BAND * step else 1
        cuts = [top]
        for k in range(1, count):
            expected = top + k * (bottom - top) / count
            lo, hi = int(expected - step / 3), int(expected + step / 3) + 1
            cuts.append(lo + int(np.argmin(smooth[lo:hi])))
        cuts.append(bottom)
        result += [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    return result


def _one_wide_band(bands: list, width: int) -> bool:
    """One band of ink rows, at least 5 times as wide as tall: a single line."""
    return len(bands) == 1 and width >= 5 * (bands[0][1] - bands[0][0])


def side_by_side(boxes: list[tuple[int, int, int, int]]) -> bool:
    """Whether the boxes share a stretch of rows: pieces of one line (words a segmenter found apart), not lines."""
    return bool(boxes) and max(b[1] for b in boxes) < min(b[3] for b in boxes)


def looks_like_one_line(ink: np.ndarray) -> bool:
    """A cheap test before deskewing (see ``_one_wide_band``)."""
    return _one_wide_band(find_bands(ink), ink.shape[1])


def segment_lines(ink: np.ndarray, scale: float = 1.0, read_from: np.ndarray | None = None) -> list[Line]:
    """The text lines of a page's ink map, top to bottom. ``scale``: original pixels per ``ink`` pixel.
    ``read_from``: another map of the same page (same shape) to cut the lines' ink from; ``ink`` by default. Each
    line's ink is read without the strokes of the other lines (``htr.pages.line_ink``), on the deskewed page."""
    angle = estimate_skew(ink)
    height, width = ink.shape
    upright, reading = ink, ink if read_from is None else read_from
    if abs(angle) >= SKEW_STEP_DEGREES:
        upright = np.asarray(Image.fromarray(ink).rotate(angle, Image.Resampling.BILINEAR, expand=True))
        reading = np.asarray(Image.fromarray(reading).rotate(angle, Image.Resampling.BILINEAR, expand=True))
    bands = find_bands(upright)
    boxes = []
    for i, (top, bottom) in enumerate(bands):
        pad = (bottom - top) // 4  # ascenders and descenders beyond the band's dense rows
        upper = max(0, top - pad, (bands[i - 1][1] + top) // 2 if i > 0 else 0)
        lower = min(upright.shape[0], bottom + pad, (bottom + bands[i + 1][0]) // 2 if i + 1 < len(bands) else 10**9)
        columns = np.flatnonzero((upright[upper:lower] > INK_THRESHOLD).any(axis=0))
        if columns.size:
            boxes.append((int(columns[0]), upper, int(columns[-1]) + 1, lower))
    owners = stroke_owners(reading, boxes)
    return [
        Line(own_ink(reading, owners, index, box), _box_in_original(box, angle, upright.shape, (height, width), scale))
        for index, box in enumerate(boxes)
    ]


def _box_in_original(box: tuple[int, int, int, int], angle: float, rotated_shape: tuple[int, int],
                     shape: tuple[int, int], scale: float) -> tuple[int, int, int, int]:  # fmt: skip
    """Axis-aligned box, in original pixels, around a box of the page rotated by ``angle`` (PIL, expand)."""
    left, top, right, bottom = box
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]], dtype=np.float64)
    theta = np.deg2rad(angle)
    centre_rotated = np.array([rotated_shape[1], rotated_shape[0]]) / 2
    centre = np.array([shape[1], shape[0]]) / 2
    d = corners - centre_rotated
    # PIL rotates counter-clockwise by ``angle`` on screen (y down); undo it: rotate clockwise
    x = d[:, 0] * np.cos(theta) - d[:, 1] * np.sin(theta) + centre[0]
    y = d[:, 0] * np.sin(theta) + d[:, 1] * np.cos(theta) + centre[1]
    clip = lambda v, hi: int(round(min(max(v, 0), hi) * scale))  # noqa: E731
    return clip(x.min(), shape[1]), clip(y.min(), shape[0]), clip(x.max(), shape[1]), clip(y.max(), shape[0])


def writing_map(gray: np.ndarray, grey: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grey ink map of a page (``grey``, or ``ink_map(gray)`` when not given), the same kept only where
    ``htr.pages.page_ink.layout_ink`` finds writing (no stains, shadows, show-through, rulings or page edges), and the
    map of removed rulings, all at ``gray``'s size."""
    from htr.pages.page_ink import layout_ink

    page = layout_ink(gray)
    size = (gray.shape[1], gray.shape[0])
    grow = np.ones((3, 3), np.uint8)  # the writing's anti-aliased edges
    writing = cv2.dilate(cv2.resize(page.ink, size, interpolation=cv2.INTER_NEAREST), grow)
    rules = cv2.resize(page.rules, size, interpolation=cv2.INTER_NEAREST)
    grey = ink_map(gray) if grey is None else grey
    return grey, grey * writing, rules


def column_strips(rules: np.ndarray, min_width: int) -> list[tuple[int, int]]:
    """[left, right) column ranges between the vertical rules of a page (a table's column borders)."""
    vertical = rules.sum(axis=0) >= 0.3 * rules.shape[0]
    edges = [0] + [int(x) for x in np.flatnonzero(np.diff(vertical.astype(np.int8)) != 0) + 1] + [rules.shape[1]]
    strips = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if not vertical[a] and b - a >= min_width]
    return strips or [(0, rules.shape[1])]


def segment_page(gray: np.ndarray, scale: float = 1.0, grey: np.ndarray | None = None,
                 finder: LineFinder | None = None) -> list[Line]:  # fmt: skip
    """The text lines of a grey page. With ``finder`` (a trained ``htr.pages.line_finder.LineFinder``), the lines it
    finds; without, the page's writing map cut into the columns between vertical rules, each column's lines found
    by `segment_lines`; top to bottom within a column, columns left to right. The lines' ink for reading (a found
    line's box ``READ_MARGIN`` line heights longer at each end) is the page's grey ink map there (the recognizer was
    trained on grey lines, not on binarised ones), with a found line's strokes belonging to other found lines
    cleared (``htr.pages.line_ink``); ``grey``: that map when the caller has made it already."""
    if finder is not None:
        grey = ink_map(gray) if grey is None else grey
        lines, boxes = [], finder.boxes(grey)
        owners = stroke_owners(grey, boxes)
        for index, (left, top, right, bottom) in enumerate(boxes):
            margin = int(READ_MARGIN * (bottom - top))
            wide_left, wide_right = max(0, left - margin), min(grey.shape[1], right + margin)
            lines.append(
                Line(
                    own_ink(grey, owners, index, (wide_left, top, wide_right, bottom)),
                    (int(left * scale), int(top * scale), int(right * scale), int(bottom * scale)),
                    (int(wide_left * scale), int(top * scale), int(wide_right * scale), int(bottom * scale)),
                )
            )
        return lines
    grey, writing, rules = writing_map(gray, grey)
    lines = []
    for left, right in column_strips(rules, min_width=max(20, gray.shape[1] // 50)):
        column = np.ascontiguousarray(writing[:, left:right])
        for line in segment_lines(column, read_from=np.ascontiguousarray(grey[:, left:right])):
            a, b, c, d = line.box
            lines.append(Line(line.ink, (int((a + left) * scale), int(b * scale), int((c + left) * scale),
                                         int(d * scale))))  # fmt: skip
    return _without_fragments(lines)


def _without_fragments(lines: list[Line]) -> list[Line]:
    """Without what is not a line of writing: boxes almost empty of ink (a pencil stroke across the page) or
    nearly solid (a printed stamp, a blot), boxes taller than wide and taller than the median line (a stamp, a
    flourish), and boxes less than half as tall as the median line and not wider than tall (a descender cut off
    by a ruling)."""
    if len(lines) < 2:
        return lines
    median = float(np.median([line.box[3] - line.box[1] for line in lines]))

    def plausible(line: Line) -> bool:
        width, height = line.box[2] - line.box[0], line.box[3] - line.box[1]
        ink = float((line.ink > INK_THRESHOLD).mean()) if line.ink.size else 0.0
        fragment = height < 0.5 * median and width <= height
        blob = height > 1.3 * median and width < height
        return MIN_LINE_INK <= ink <= MAX_LINE_INK and not fragment and not blob

    return [line for line in lines if plausible(line)]


def page_lines(image: Image.Image, finder: LineFinder | None = None) -> list[Line]:
    """The text lines of a page image, boxes in its pixels: with ``finder`` what ``predict.py --segment always``
    reads by default, without it what it reads with ``--line-finder classical``."""
    gray = to_grayscale(image)
    return segment_page(gray, max(image.size) / max(gray.shape), finder=finder)
