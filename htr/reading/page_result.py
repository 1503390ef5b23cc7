"""What reading an image gives: a `Page` of `Line`s of `Word`s, each with its text, box and confidence.

``htr.inference.Recognizer.read_page`` (and ``page``, for images read in batches) returns a `Page`; predict.py
(``htr read``), the demo, the notebook and the PAGE/ALTO writers (``htr.pages.page_export``) take it, and
`Page.to_json` is the one JSON form of a result. Boxes are ``(left, top, right, bottom)`` in the pixels of the
upright image, right and bottom exclusive; confidences are 0-1 (``htr.reading.decode.confidences``).
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[int, int, int, int]  # left, top, right, bottom in image pixels; right and bottom exclusive


@dataclass(frozen=True)
class Word:
    """A word, or one character of one (``Line.chars``): its text, its box and how sure the model is of it."""

    text: str
    box: Box
    confidence: float

    def to_json(self) -> dict:
        return {"text": self.text, "box": list(self.box), "confidence": self.confidence}


@dataclass(frozen=True)
class Line:
    """A read line on its image: text, confidence, box, baseline (polyline, image pixels), words and characters
    (both empty when it was read without positions)."""

    text: str
    confidence: float
    box: Box
    baseline: list[tuple[int, int]]
    words: list[Word]
    chars: list[Word]


@dataclass(frozen=True)
class Page:
    """An image read: ``source`` (its path or name), ``size`` (width, height, upright), its ``lines`` in reading
    order, and whether it was ``segmented`` into lines (False: read whole, as one line)."""

    source: str
    size: tuple[int, int]
    lines: list[Line]
    segmented: bool

    @property
    def text(self) -> str:
        """The lines' texts, one per line."""
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float:
        """The mean of the lines' confidences (1 for an image without lines)."""
        return sum(line.confidence for line in self.lines) / len(self.lines) if self.lines else 1.0

    def to_json(self) -> dict:
        """Plain data for JSON: path, text and confidence, then each line's text, box, confidence and words when the
        image was segmented, or the words of its one line when it was read whole."""
        result: dict = {"path": self.source, "text": self.text, "confidence": round(self.confidence, 4)}
        if self.segmented:
            result["lines"] = [{"text": line.text, "box": list(line.box), "confidence": round(line.confidence, 4),
                                "words": [word.to_json() for word in line.words]} for line in self.lines]  # fmt: skip
        else:
            result["words"] = [word.to_json() for line in self.lines for word in line.words]
        return result
