"""Reading the text lines of PAGE XML and ALTO files (Transkribus, eScriptorium, kraken, OCR-D exports).

`read_page` returns the page's image file name and size and, per text line, its polygon, baseline and text
(PAGE: ``TextEquiv/Unicode`` of the line; ALTO: its ``String@CONTENT`` joined with spaces). A line without a
polygon gets its ALTO box (``HPOS``/``VPOS``/``WIDTH``/``HEIGHT``) as one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

Point = tuple[float, float]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")  # the page images such exports hold


@dataclass
class TextLine:
    polygon: list[Point]
    baseline: list[Point] = field(default_factory=list)
    text: str = ""

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) around the polygon, right/bottom exclusive."""
        xs, ys = [p[0] for p in self.polygon], [p[1] for p in self.polygon]
        return int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1


@dataclass
class PageFile:
    image: str | None  # the image's file name as the XML states it
    size: tuple[int, int] | None  # (width, height) the coordinates refer to
    lines: list[TextLine]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _pairs(values: list[float]) -> list[Point]:
    return list(zip(values[::2], values[1::2]))


def _alto_points(text: str | None) -> list[Point]:
    """ALTO points: ``x y x y ...`` or ``x,y x,y ...``."""
    return _pairs([float(v) for v in (text or "").replace(",", " ").split()])


def _page_points(text: str | None) -> list[Point]:
    """PAGE points: ``x,y x,y ...``."""
    return [(float(x), float(y)) for x, y in (p.split(",") for p in (text or "").split())]


def _read_alto(root: ET.Element) -> PageFile:
    image, size, lines = None, None, []
    for element in root.iter():
        name = _local(element.tag)
        if name == "fileName" and element.text:
            image = element.text.strip()
        elif name == "Page" and element.get("WIDTH"):
            size = (int(float(element.get("WIDTH"))), int(float(element.get("HEIGHT"))))
        elif name == "TextLine":
            shape = next((e for e in element.iter() if _local(e.tag) == "Polygon"), None)
            polygon = _alto_points(shape.get("POINTS")) if shape is not None else []
            if len(polygon) < 3 and element.get("WIDTH"):
                x, y = float(element.get("HPOS")), float(element.get("VPOS"))
                w, h = float(element.get("WIDTH")), float(element.get("HEIGHT"))
                polygon = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
            if len(polygon) < 3:
                continue
            words = [e.get("CONTENT", "") for e in element if _local(e.tag) == "String"]
            text = " ".join(w for w in words if w)
            lines.append(TextLine(polygon, _alto_points(element.get("BASELINE")), text))
    return PageFile(image, size, lines)


def _read_page(root: ET.Element) -> PageFile:
    image, size, lines = None, None, []
    for element in root.iter():
        name = _local(element.tag)
        if name == "Page":
            image = element.get("imageFilename")
            if element.get("imageWidth"):
                size = (int(element.get("imageWidth")), int(element.get("imageHeight")))
        elif name == "TextLine":
            children = {_local(e.tag): e for e in element}
            coords = children.get("Coords")
            polygon = _page_points(coords.get("points")) if coords is not None else []
            if len(polygon) < 3:
                continue
            baseline = children.get("Baseline")
            unicode = None
            if "TextEquiv" in children:
                unicode = next((e for e in children["TextEquiv"] if _local(e.tag) == "Unicode"), None)
            text = (unicode.text or "") if unicode is not None else ""
            lines.append(TextLine(polygon, _page_points(baseline.get("points")) if baseline is not None else [],
                                  text.strip()))  # fmt: skip
    return PageFile(image, size, lines)


def read_page(path: str | Path) -> PageFile:
    """The text lines of a PAGE XML or ALTO file (told apart by the root element)."""
    root = ET.parse(path).getroot()
    return _read_alto(root) if _local(root.tag) == "alto" else _read_page(root)
