"""Character and word error rates from rapidfuzz's Levenshtein distance."""

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
