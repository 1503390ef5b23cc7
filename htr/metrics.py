"""Character and word error rates from rapidfuzz's Levenshtein distance; line boxes matched by IoU."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein


def char_errors(reference: str, hypothesis: str) -> int:
    """Character edit distance (insertions + deletions + substitutions)."""
    return Levenshtein.distance(reference, hypothesis)


def word_errors(reference: str, hypothesis: str) -> int:
    """Word edit distance over whitespace-split words."""
    return Levenshtein.distance(reference.split(), hypothesis.split())


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Total character edits / total reference characters (corpus-level, as in the literature)."""
    edits = sum(char_errors(r, h) for r, h in zip(references, hypotheses, strict=True))
    return edits / max(1, sum(len(r) for r in references))


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Total word edits / total reference words."""
    edits = sum(word_errors(r, h) for r, h in zip(references, hypotheses, strict=True))
    return edits / max(1, sum(len(r.split()) for r in references))


Box = Sequence[float]  # left, top, right, bottom


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_matches(found: Sequence[Box], truth: Sequence[Box], threshold: float = 0.5) -> list[tuple[int, int]]:
    """(found index, true index) pairs matched one to one with IoU >= ``threshold``, best pairs first."""
    pairs = sorted(((box_iou(f, t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)), reverse=True)
    used_found, used_truth, matches = set(), set(), []
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
            matches.append((i, j))
    return matches


def matched_boxes(found: Sequence[Box], truth: Sequence[Box], threshold: float = 0.5) -> int:
    """How many found boxes match a true box one to one with IoU >= ``threshold`` (`box_matches`)."""
    return len(box_matches(found, truth, threshold))
