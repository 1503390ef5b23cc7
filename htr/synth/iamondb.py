"""The IAM On-Line Handwriting Database (IAM-OnDB) in its official layout: pen strokes + transcriptions.

    root/lineStrokes/a01/a01-000/a01-000u-01.xml    <Stroke><Point x= y= time=/>...</Stroke> per pen-down
    root/ascii/a01/a01-000/a01-000u.txt             the form's lines after the ``CSR:`` header, in order
    root/writers.tsv                                (optional) form id <TAB> writer id

``root`` may also be a ``.tar``/``.tar.gz``/``.tar.xz`` archive holding that layout (at any depth).
"""

from __future__ import annotations

import logging
import re
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from htr.data import DatasetSourceError, normalize_text

log = logging.getLogger(__name__)

_STROKE_NAME = re.compile(r"^(?P<form>.+)-(?P<number>\d+)\.xml$")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[.,;:!?])")


@dataclass
class InkLine:
    """One handwritten line: its pen strokes, each an (N, 2) float32 array of x, y (y grows downwards)."""

    id: str
    text: str
    writer: str
    strokes: list[np.ndarray]


def parse_strokes(xml: bytes | str) -> list[np.ndarray]:
    """The strokes of one ``lineStrokes`` XML file; strokes with no points are dropped."""
    strokes = []
    for stroke in ET.fromstring(xml).iter("Stroke"):
        points = [(float(p.get("x")), float(p.get("y"))) for p in stroke.iter("Point")]
        if points:
            strokes.append(np.asarray(points, dtype=np.float32))
    return strokes


def parse_transcription(text: str) -> list[str]:
    """The lines after the ``CSR:`` header of an ``ascii`` file (blank lines around them dropped)."""
    _, found, rest = text.partition("CSR:")
    if not found:
        return []
    lines = rest.strip("\r\n").splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return [line.strip() for line in lines if line.strip()]


def clean_text(text: str) -> str:
    """Normalise whitespace and drop the space some transcriptions put before punctuation (``Mr .``)."""
    return _SPACE_BEFORE_PUNCTUATION.sub("", normalize_text(text))


def _walk_folder(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".xml", ".txt", ".tsv"):
            yield path.relative_to(root).as_posix(), path.read_bytes()


def _walk_archive(path: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith((".xml", ".txt", ".tsv")):
                yield member.name, archive.extractfile(member).read()


def load_iamondb(source: str | Path, limit: int = 0) -> list[InkLine]:
    """All usable lines of IAM-OnDB at ``source`` (folder or tar archive), sorted by id.

    Skipped, and counted in one log line: forms with more stroke files than transcribed lines (their
    numbering cannot be trusted), lines whose text marks an unreadable word with ``#``, and lines with
    no strokes or no text. ``limit`` keeps only the first N lines (0: all).
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetSourceError(f"{source}: no such IAM-OnDB folder or archive")
    files = _walk_archive(path) if path.is_file() else _walk_folder(path)
    strokes: dict[tuple[str, int], list[np.ndarray]] = {}
    transcriptions: dict[str, list[str]] = {}
    writers: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    for name, data in files:
        parts = PurePosixPath(name).parts
        match = _STROKE_NAME.match(parts[-1])
        if "lineStrokes" in parts and match:
            try:
                strokes[match["form"], int(match["number"])] = parse_strokes(data)
            except ET.ParseError:
                skipped["unreadable stroke file"] += 1
        elif "ascii" in parts and name.endswith(".txt"):
            transcriptions[PurePosixPath(name).stem] = parse_transcription(data.decode("latin-1"))
        elif parts[-1] == "writers.tsv":
            for row in data.decode("utf-8").splitlines():
                form, _, writer = row.partition("\t")
                writers[form.strip()] = writer.strip()
    if not strokes or not transcriptions:
        raise DatasetSourceError(f"{source}: no lineStrokes/**.xml with ascii/**.txt found (IAM-OnDB layout)")

    files_per_form = Counter(form for form, _ in strokes)
    lines = []
    for (form, number), line_strokes in sorted(strokes.items()):
        texts = transcriptions.get(form)
        if texts is None:
            skipped["no transcription"] += 1
        elif files_per_form[form] > len(texts):
            skipped["form with more stroke files than lines"] += 1
        elif number > len(texts) or not clean_text(texts[number - 1]) or not line_strokes:
            skipped["empty line"] += 1
        elif "#" in texts[number - 1]:
            skipped["unreadable word (#)"] += 1
        else:
            text = clean_text(texts[number - 1])
            lines.append(InkLine(f"{form}-{number:02d}", text, writers.get(form, form), line_strokes))
            if limit and len(lines) >= limit:
                break
    if skipped:
        log.warning("IAM-OnDB: skipped %s", ", ".join(f"{n} ({why})" for why, n in skipped.most_common()))
    if not lines:
        raise DatasetSourceError(f"{source}: no usable IAM-OnDB lines")
    return lines
