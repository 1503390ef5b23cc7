"""Synthetic training lines: rendered IAM-OnDB ink, handwriting-font text and printed text, drawn fresh every epoch.

A renderer maps (index, rng) to (PIL image, text). `render_epoch` draws ``count`` lines from each renderer for
one epoch, seeded by (seed, epoch, position), so a resumed epoch gets exactly the same lines whatever the
number of worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from htr.alphabet import Alphabet
from htr.data import LineSet, normalize_text, quantize
from htr.reading.preprocess import preprocess
from htr.synth.iamondb import InkLine
from htr.synth.render import FONT_DIR, font_coverage, list_fonts, render_strokes, render_text

log = logging.getLogger(__name__)

Renderer = Callable[[int, np.random.Generator], tuple[Image.Image, str]]


class InkRenderer:
    """IAM-OnDB lines drawn as scanned ink (`htr.synth.render.render_strokes`)."""

    def __init__(self, lines: Sequence[InkLine]) -> None:
        self.lines = list(lines)
        self.texts = [line.text for line in self.lines]

    def __len__(self) -> int:
        return len(self.lines)

    def __call__(self, index: int, rng: np.random.Generator) -> tuple[Image.Image, str]:
        line = self.lines[index % len(self.lines)]
        return render_strokes(line.strokes, rng), line.text


class FontRenderer:
    """Text lines drawn in handwriting fonts (`htr.synth.render.render_text`); each text uses a random font among
    those that draw all of its characters. With probability ``span_p`` only a random run of its words. ``printed``:
    set as type (``render_text(printed=True)``), in capitals with probability ``capitals_p``: what letterheads and
    typed letters look like, with `htr.synth.render.printed_fonts`."""

    def __init__(
        self, texts: Iterable[str], fonts: Sequence[str | Path] = (), span_p: float = 0.3, printed: bool = False,
        capitals_p: float = 0.0,
    ) -> None:  # fmt: skip
        self.fonts = [str(f) for f in (fonts or list_fonts(FONT_DIR))]
        if not self.fonts:
            raise ValueError("no font files (.ttf/.otf/.woff/.woff2) given")
        texts = [t for t in map(normalize_text, texts) if t]
        chars = "".join(sorted(set("".join(texts) + ("".join(texts).upper() if capitals_p else ""))))
        self.coverage = [font_coverage(f, chars) for f in self.fonts]
        self.texts = [t for t in texts if any(set(t) <= c for c in self.coverage)]
        if len(self.texts) < len(texts):
            log.warning("font lines: %d of %d texts skipped (characters no font draws)",
                        len(texts) - len(self.texts), len(texts))  # fmt: skip
        if not self.texts:
            raise ValueError("no text to render with the given fonts")
        self.span_p = span_p
        self.printed, self.capitals_p = printed, capitals_p

    def __len__(self) -> int:
        return len(self.texts)

    def __call__(self, index: int, rng: np.random.Generator) -> tuple[Image.Image, str]:
        text = self.texts[index % len(self.texts)]
        fonts = [f for f, covered in zip(self.fonts, self.coverage) if set(text) <= covered]
        words = text.split(" ")
        if len(words) > 2 and rng.random() < self.span_p:
            start = int(rng.integers(0, len(words) - 1))
            text = " ".join(words[start : start + int(rng.integers(1, len(words) - start + 1))])
        chosen = int(rng.integers(len(fonts)))
        if self.capitals_p and rng.random() < self.capitals_p:
            capitals = text.upper()
            text = capitals if set(capitals) <= self.coverage[self.fonts.index(fonts[chosen])] else text
        return render_text(text, fonts[chosen], rng, printed=self.printed), text


def read_text_lines(paths: str | Path | Iterable[str | Path]) -> list[str]:
    """Non-empty lines of one or more UTF-8 text files (a comma-separated string is split)."""
    if isinstance(paths, (str, Path)):
        paths = [p for p in str(paths).split(",") if p]
    lines = []
    for path in paths:
        lines += [t for t in map(normalize_text, Path(path).expanduser().read_text(encoding="utf-8").splitlines()) if t]
    return lines


class _EpochLines(torch.utils.data.Dataset):
    """Position i of an epoch's synthetic lines -> (uint8 (1, H, W) line, text), deterministic in (seed, epoch, i)."""

    def __init__(self, parts: Sequence[tuple[Renderer, int]], height: int, seed: int, epoch: int) -> None:
        self.jobs: list[tuple[Renderer, int]] = []
        for k, (renderer, count) in enumerate(parts):
            order = np.random.default_rng([seed, epoch, k]).permutation(len(renderer))
            self.jobs += [(renderer, int(order[i % len(order)])) for i in range(count)]
        self.height, self.seed, self.epoch = height, seed, epoch

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, position: int) -> tuple[torch.Tensor | None, str]:
        renderer, index = self.jobs[position]
        rng = np.random.default_rng([self.seed, self.epoch, 1_000_003, position])
        try:
            image, text = renderer(index, rng)
            line = preprocess(image, self.height)
        except Exception as error:  # a bad font or stroke file must not end an epoch
            return None, f"{type(error).__name__}"
        return quantize(line), text  # uint8: a quarter of the bytes between processes


def render_epoch(
    parts: Sequence[tuple[Renderer, int]],
    alphabet: Alphabet,
    height: int,
    frames_for_width: Callable[[int], int],
    seed: int,
    epoch: int,
    workers: int = 0,
    progress: bool = True,
    share: tuple[int, int] = (0, 1),
) -> LineSet:
    """Render ``count`` lines from each ``(renderer, count)`` for ``epoch``, preprocessed like real scans.

    ``share=(rank, ranks)``: only the positions ``p`` with ``p % ranks == rank`` (each line is the same whoever
    renders it). The result's ``positions`` lists the epoch position of each line kept."""
    rank, ranks = share
    lines = LineSet(alphabet, frames_for_width, f"synthetic lines, epoch {epoch + 1}")
    lines.positions = []
    epoch_lines = _EpochLines(parts, height, seed, epoch)
    positions = range(rank, len(epoch_lines), ranks)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(epoch_lines, positions), batch_size=None,
                                         num_workers=workers)  # fmt: skip
    for position, (image, text) in zip(positions, tqdm(loader, total=len(positions), desc="rendering",
                                                         disable=not progress, leave=False)):  # fmt: skip
        if image is None:
            lines.skipped[f"render error ({text})"] += 1
        elif lines.add(image, text):
            lines.positions.append(position)
    lines.report(len(positions))
    return lines
