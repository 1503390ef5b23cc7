"""Where the characters and words of a read line are, in the pixels of the image it came from.

`align` finds each decoded text's most likely CTC alignment (Viterbi over the frames: for greedy decoding that
is the best path itself, for beam search the best path of the beam's text). `line_layout` turns it into the
line's box, baseline and its words' and characters' boxes with confidences: a word reaches from the middle of
the space before it to the middle of the space after it (frames × ``ModelConfig.width_factor`` input pixels),
is tightened to the ink inside, and is placed in the original image through the line's
`htr.reading.preprocess.Placement` (the crop and scale of preprocessing, and the line's place on its page).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from htr.alphabet import Alphabet
from htr.reading.decode import ctc_states
from htr.reading.page_result import Box, Line, Word
from htr.reading.preprocess import INK_THRESHOLD, Placement

CORE_SHARE = 0.5  # rows with at least this share of the busiest row's ink are the line's core (x-height)


@dataclass(frozen=True)
class CharSpan:
    """One decoded character: the frames [start, end) its label holds on the best alignment, and its highest
    probability over them."""

    char: str
    start: int
    end: int
    probability: float


def align(
    log_probs: np.ndarray, lengths: Sequence[int], paths: list[list[int]], alphabet: Alphabet
) -> list[list[CharSpan] | None]:
    """The best CTC alignment of each label sequence of ``paths`` to its line's frames, as character spans
    (None when the sequence cannot fit the frames). ``log_probs``: (T, B, C); ``lengths``: B frame counts."""
    log_probs = np.asarray(log_probs, dtype=np.float32)
    frames, batch = log_probs.shape[:2]
    lengths = np.array([int(n) for n in lengths])
    _, labels, valid, can_skip = ctc_states(paths)
    states = labels.shape[1]
    emissions = np.take_along_axis(log_probs, np.broadcast_to(labels, (frames, batch, states)), axis=2)
    emissions = np.where(valid, emissions, -np.inf)
    score = np.full((batch, states), -np.inf, dtype=np.float32)
    score[:, :2] = emissions[0, :, :2]
    back = np.zeros((frames, batch, states), dtype=np.int8)  # 0: same state before, 1: s - 1, 2: s - 2
    none = np.full((batch, 1), -np.inf, dtype=np.float32)
    for t in range(1, frames):
        candidates = np.stack([
            score,
            np.concatenate([none, score[:, :-1]], axis=1),
            np.concatenate([none, none, np.where(can_skip[:, 2:], score[:, :-2], -np.inf)], axis=1),
        ])  # fmt: skip
        choice = candidates.argmax(axis=0)
        running = (t < lengths)[:, None]
        score = np.where(running, np.take_along_axis(candidates, choice[None], axis=0)[0] + emissions[t], score)
        back[t] = np.where(running, choice, 0)
    spans: list[list[CharSpan] | None] = []
    for b, path in enumerate(paths):
        count, length = len(path), int(lengths[b])
        ends = [2 * count] + ([2 * count - 1] if count else [])
        state = max(ends, key=lambda s: score[b, s])
        if not np.isfinite(score[b, state]) or length == 0:
            spans.append(None if count else [])
            continue
        visited = np.empty(length, dtype=np.int64)
        for t in range(length - 1, -1, -1):
            visited[t] = state
            state -= int(back[t, b, state]) if t else 0
        line = []
        for k, label in enumerate(path):
            held = np.flatnonzero(visited == 2 * k + 1)
            peak = float(np.exp(log_probs[held, b, label].max()))
            line.append(CharSpan(alphabet.chars[label - 1], int(held[0]), int(held[-1]) + 1, peak))
        spans.append(line)
    return spans


def _ink_box(ink: np.ndarray, left: int, right: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in input pixels around the ink of columns [left, right); the whole column
    range when there is none."""
    left, right = max(0, left), max(left + 1, min(ink.shape[1], right))
    part = ink[:, left:right]
    cols, rows = np.flatnonzero(part.any(axis=0)), np.flatnonzero(part.any(axis=1))
    if cols.size == 0:
        return left, 0, right, ink.shape[0]
    return left + int(cols[0]), int(rows[0]), left + int(cols[-1]) + 1, int(rows[-1]) + 1


def estimate_baseline(ink: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in input pixels: the line the writing rests on, fitted through the bottom of the core
    (the rows holding at least ``CORE_SHARE`` of the busiest row's ink) of stretches about two line heights
    wide. ``ink``: (H, W) boolean."""
    height = ink.shape[0]
    cols = np.flatnonzero(ink.any(axis=0))
    if cols.size == 0:
        return 0.0, 0.75 * height, float(ink.shape[1]), 0.75 * height
    left, right = int(cols[0]), int(cols[-1]) + 1
    xs, ys, weights = [], [], []
    for start in range(left, right, 2 * height):
        part = ink[:, start : min(right, start + 2 * height)]
        profile = np.convolve(part.sum(axis=1), np.ones(3) / 3, mode="same")
        if profile.max() <= 0:
            continue
        xs.append(start + part.shape[1] / 2)
        ys.append(float(np.flatnonzero(profile >= CORE_SHARE * profile.max())[-1] + 1))
        weights.append(float(part.sum()))
    if len(xs) >= 2:
        slope, intercept = np.polyfit(xs, ys, 1, w=np.sqrt(weights))
    else:
        slope, intercept = 0.0, ys[0]
    return float(left), float(intercept + slope * left), float(right), float(intercept + slope * right)


def line_layout(
    text: str, confidence: float, spans: list[CharSpan] | None, line: np.ndarray, placement: Placement,
    width_factor: int, box: Box | None = None,
) -> Line:  # fmt: skip
    """A read line on its image. ``spans``: its characters (`align`; None: no word positions); ``line``: its
    (1, H, W) model input; ``placement``: where that input lies in the image; ``box``: the line's box there when
    a segmenter found it (else the input's extent)."""
    ink = line[0] > INK_THRESHOLD
    height, width = ink.shape
    spans = spans or []
    x0, y0, x1, y1 = estimate_baseline(ink)
    baseline = [tuple(round(v) for v in placement.point(x0, y0)), tuple(round(v) for v in placement.point(x1, y1))]

    def located(members: list[CharSpan], left: float, right: float) -> Word:
        mean_log = np.mean([np.log(max(s.probability, 1e-12)) for s in members])
        edges = _ink_box(ink, round(left), round(right))
        return Word("".join(s.char for s in members), inside(placement.box(*edges)), round(float(np.exp(mean_log)), 4))

    def inside(word: Box) -> Box:  # a segmenter's line is read a little beyond its box: its words stay in the box
        if box is None:
            return word
        a, b = min(max(word[0], box[0]), box[2] - 1), min(max(word[1], box[1]), box[3] - 1)
        return a, b, max(a + 1, min(word[2], box[2])), max(b + 1, min(word[3], box[3]))

    # a character's columns: from halfway between its frames and the previous character's to halfway to the next
    cuts = [0.0] + [(a.end + b.start) / 2 * width_factor for a, b in zip(spans, spans[1:])] + [float(width)]
    chars = [located([s], cuts[i], cuts[i + 1]) for i, s in enumerate(spans) if s.char != " "]
    # a word's: from the middle of the space before it to the middle of the space after it
    words, first, left = [], 0, 0.0
    for stop in [i for i, s in enumerate(spans) if s.char == " "] + [len(spans)]:
        right = (spans[stop].start + spans[stop].end) / 2 * width_factor if stop < len(spans) else float(width)
        if stop > first:
            words.append(located(spans[first:stop], left, right))
        first, left = stop + 1, right
    return Line(text, confidence, box or placement.box(0, 0, width, height), baseline, words, chars)
