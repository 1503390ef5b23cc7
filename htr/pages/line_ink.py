"""Each found line's ink without its neighbours' strokes.

On a letter the lines sit close: the box around one line also holds the descenders of the line above and the
ascenders of the line below, and a recognizer trained on lines cut out by their polygons reads them as letters
(the hooker-letters validation pages: 38.0% greedy CER on the lines found with the plain box, 31.3% with the
neighbours' strokes removed, 32.0% on the transcribed polygons). Every stroke (a connected part of the page's ink)
belongs to the line whose core it touches (the middle ``KERNEL_SHARE`` of the line's box, where the finder's
kernel lies); a stroke touching several cores (a descender joined to an ascender below) is split between them,
each pixel going to the nearest core; one touching none (an i-dot, a full stop beyond the box's end, a word written
between the lines) goes to the line whose core is nearest, counting the distance up or down and sideways. A line is
then read without the strokes of the others.
"""

from __future__ import annotations

import cv2
import numpy as np

from htr.pages.line_finder import KERNEL_SHARE, Box
from htr.reading.preprocess import INK_THRESHOLD

FRINGE = 2  # pixels around another line's strokes cleared with them (their grey edge)


def stroke_owners(ink: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """(H, W) int32 map of an ink map (paper 0, ink 1): for each ink pixel 1 + the index in ``boxes`` of the line
    it belongs to; 0 for paper (and everywhere when there are no boxes)."""
    if not boxes:
        return np.zeros(ink.shape, np.int32)
    count, strokes, stats, centroids = cv2.connectedComponentsWithStats(
        (ink > INK_THRESHOLD).astype(np.uint8), connectivity=8
    )
    cores = np.zeros(ink.shape, np.int32)
    for index, (left, top, right, bottom) in enumerate(boxes):
        shrink = round((bottom - top) * (1 - KERNEL_SHARE) / 2)
        cores[top + shrink : max(top + shrink, bottom - shrink), left:right] = index + 1
    spans = np.array(boxes, dtype=np.float64)
    centres = (spans[:, 1] + spans[:, 3]) / 2
    touching = (strokes > 0) & (cores > 0)
    pairs = np.unique(strokes[touching].astype(np.int64) * (len(boxes) + 1) + cores[touching])
    stroke_of, line_of = pairs // (len(boxes) + 1), pairs % (len(boxes) + 1)  # line_of: 1 + the box's index
    cores_touched = np.bincount(stroke_of, minlength=count)
    owner_of = np.zeros(count, np.int32)
    single = cores_touched[stroke_of] == 1
    owner_of[stroke_of[single]] = line_of[single]
    unclaimed = np.flatnonzero(cores_touched == 0)[1:]  # [0] is the paper
    for chunk in np.array_split(unclaimed, max(1, len(unclaimed) // 4096)):
        # the nearest core: up or down from the stroke's centre, and sideways from its ends
        left, right = stats[chunk, 0:1], stats[chunk, 0:1] + stats[chunk, 2:3]
        sideways = np.maximum(0, np.maximum(spans[:, 0] - right, left - spans[:, 2]))
        owner_of[chunk] = (np.abs(centres - centroids[chunk, 1:2]) + sideways).argmin(axis=1) + 1
    owners = owner_of[strokes]
    for stroke in np.flatnonzero(cores_touched > 1):  # each pixel to the nearest core the stroke touches
        left, top, width, height = stats[stroke, :4]
        ys, xs = np.nonzero(strokes[top : top + height, left : left + width] == stroke)
        ys, xs, candidates = ys + top, xs + left, line_of[stroke_of == stroke] - 1
        under = (spans[candidates, 0] <= xs[:, None]) & (xs[:, None] < spans[candidates, 2])
        distance = np.abs(ys[:, None] - centres[candidates]) + np.where(under, 0, ink.shape[0])
        owners[ys, xs] = candidates[distance.argmin(axis=1)] + 1
    return owners


def own_ink(ink: np.ndarray, owners: np.ndarray, index: int, window: Box) -> np.ndarray:
    """The ink map of ``window`` (left, top, right, bottom) with the strokes of lines other than ``index`` (and
    ``FRINGE`` pixels around them) turned to paper."""
    left, top, right, bottom = window
    crop, owner = ink[top:bottom, left:right].copy(), owners[top:bottom, left:right]
    others = ((owner > 0) & (owner != index + 1)).astype(np.uint8)
    if others.any():
        size = 2 * FRINGE + 1
        others = cv2.dilate(others, np.ones((size, size), np.uint8)).astype(bool) & (owner != index + 1)
        crop[others] = 0
    return crop
