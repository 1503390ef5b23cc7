"""Reading the text lines of PAGE XML and ALTO files (Transkribus, eScriptorium, kraken, OCR-D exports).

`read_page` returns the page's image file name and size and, per text line in reading order, its polygon,
baseline and text (PAGE: ``TextEquiv/Unicode`` of the line; ALTO: its ``String@CONTENT`` joined with spaces).
PAGE's reading order: regions in the order of its ``ReadingOrder`` when it has one, else by Transkribus'
``custom="readingOrder {index:N;}"`` when every region has one, else as written; a region's lines by that
``custom`` index when every line has one, else as written; the lines of a Transkribus table (``TableRegion`` of
``TableCell`` elements) in the table's place, cell by cell, row by row. A line without a polygon gets its ALTO box
(``HPOS``/``VPOS``/``WIDTH``/``HEIGHT``) as one. A line drawn as a baseline alone, whose polygon is only a thin band
along that baseline (what Transkribus writes for it), gets a band along its baseline as high as the page's other
lines are on average instead (`widen_baseline_only_lines`), so that what is cut out of it holds its words; so does
a line with a baseline and no polygon at all (kraken's PAGE for a line without a boundary) where the page has other
lines to measure. `find_image` finds the page's image the way those exports lay them out; `cut_line` cuts a line
out of it for training.
"""

from __future__ import annotations

import re
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Point = tuple[float, float]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")  # the page images such exports hold
THIN_LINE = 0.4  # a line thinner than this share of its page's usual line thickness is thin


@dataclass
class TextLine:
    polygon: list[Point]
    baseline: list[Point] = field(default_factory=list)
    text: str = ""
    from_baseline: bool = False  # its polygon was made from its baseline (`widen_baseline_only_lines`)

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
            shapes = [e for e in element if _local(e.tag) == "Shape"]  # the line's own, not its words'
            shape = next((e for s in shapes for e in s if _local(e.tag) == "Polygon"), None)
            polygon = _alto_points(shape.get("POINTS")) if shape is not None else []
            if len(polygon) < 3 and element.get("WIDTH"):
                x, y = float(element.get("HPOS")), float(element.get("VPOS"))
                right, bottom = x + float(element.get("WIDTH")) - 1, y + float(element.get("HEIGHT")) - 1
                polygon = [(x, y), (right, y), (right, bottom), (x, bottom)]
            if len(polygon) < 3:
                continue
            words = [e.get("CONTENT", "") for e in element if _local(e.tag) == "String"]
            text = " ".join(w for w in words if w)
            lines.append(TextLine(polygon, _alto_points(element.get("BASELINE")), text))
    return PageFile(image, size, lines)


def _region_order(page: ET.Element) -> dict[str, int]:
    """Region id -> position in the page's ``ReadingOrder`` (nested groups flattened in document order)."""
    order = next((e for e in page if _local(e.tag) == "ReadingOrder"), None)
    if order is None:
        return {}
    refs = [e for e in order.iter() if _local(e.tag) in ("RegionRefIndexed", "RegionRef")]
    refs.sort(key=lambda e: int(e.get("index", 0)) if _local(e.tag) == "RegionRefIndexed" else 0)
    return {e.get("regionRef"): k for k, e in enumerate(refs)}


def _custom_order(elements: list[ET.Element]) -> list[ET.Element]:
    """``elements`` sorted by Transkribus' ``custom="readingOrder {index:N;}"`` when each has one, else as given."""
    indices = [re.search(r"readingOrder\s*\{[^}]*index:\s*(\d+)", e.get("custom", "")) for e in elements]
    if not all(indices):
        return elements
    return [e for _, _, e in sorted((int(m.group(1)), k, e) for k, (m, e) in enumerate(zip(indices, elements)))]


def _page_line(element: ET.Element) -> TextLine | None:
    children = {_local(e.tag): e for e in element}
    coords = children.get("Coords")
    polygon = _page_points(coords.get("points")) if coords is not None else []
    baseline = _page_points(children["Baseline"].get("points")) if "Baseline" in children else []
    if len(polygon) < 3:
        if len(baseline) < 2:
            return None
        polygon = list(baseline)  # kraken writes a line without a boundary as its baseline alone: widened later
    unicode = None
    if "TextEquiv" in children:
        unicode = next((e for e in children["TextEquiv"] if _local(e.tag) == "Unicode"), None)
    text = (unicode.text or "") if unicode is not None else ""
    return TextLine(polygon, baseline, text.strip())


def _cell_position(cell: ET.Element) -> tuple[int, int]:
    """A table cell's (row, column): Transkribus' ``TableCell`` attributes or PAGE 2019's ``TableCellRole``;
    (0, 0) for a region that is no cell."""
    roles = [e for child in cell if _local(child.tag) == "Roles" for e in child if _local(e.tag) == "TableCellRole"]
    role = roles[0] if roles else None
    row = role.get("rowIndex") if role is not None else cell.get("row")
    column = role.get("columnIndex") if role is not None else cell.get("col")
    try:
        return int(row or 0), int(column or 0)
    except ValueError:
        return 0, 0


def _regions_in_order(page: ET.Element) -> list[ET.Element]:
    """The page's text regions and table cells (Transkribus: ``TableRegion`` > ``TableCell`` > ``TextLine``; PAGE
    2019: ``TableRegion`` > ``TextRegion``) in reading order: by the page's ``ReadingOrder``, else by Transkribus'
    ``custom`` index when every one has one, else as written; a cell the order does not name takes its table's
    place, the cells of a table row by row, left to right."""
    regions = [e for e in page.iter() if _local(e.tag) in ("TextRegion", "TableCell")]
    table_of = {cell: table for table in page.iter() if _local(table.tag) == "TableRegion"
                for cell in table.iter() if _local(cell.tag) in ("TextRegion", "TableCell")}  # fmt: skip
    order = _region_order(page)
    anchors = [region if region.get("id") in order else table_of.get(region, region) for region in regions]
    if order:
        place = [order.get(anchor.get("id"), len(order)) for anchor in anchors]
    else:
        position = {anchor: k for k, anchor in enumerate(_custom_order(list(dict.fromkeys(anchors))))}
        place = [position[anchor] for anchor in anchors]  # as written when not every one has an index
    ranked = sorted(range(len(regions)), key=lambda k: (place[k], _cell_position(regions[k]), k))
    return [regions[k] for k in ranked]


def _read_page(root: ET.Element) -> PageFile:
    page = next((e for e in root.iter() if _local(e.tag) == "Page"), None)
    if page is None:
        return PageFile(None, None, [])
    size = (int(page.get("imageWidth")), int(page.get("imageHeight"))) if page.get("imageWidth") else None
    lines = []
    for region in _regions_in_order(page):  # its own lines (not those of regions nested in it: they come on their own)
        own = _custom_order([e for e in region if _local(e.tag) == "TextLine"])
        lines += [line for e in own if (line := _page_line(e))]
    return PageFile(page.get("imageFilename"), size, lines)


def _thickness(polygon: list[Point]) -> float:
    """A polygon's mean height: its area over its width (shoelace formula)."""
    xs, ys = np.array([p[0] for p in polygon]), np.array([p[1] for p in polygon])
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
    return area / max(1.0, float(xs.max() - xs.min()))


def _along_baseline(line: TextLine) -> bool:
    """Whether half the polygon's points or more are points of the line's baseline."""
    points = set(line.polygon)
    return len(line.baseline) >= 2 and len(points & set(line.baseline)) >= len(points) / 2


def widen_baseline_only_lines(lines: list[TextLine]) -> list[TextLine]:
    """The page's lines, each line drawn as a baseline alone given a band along its baseline as high as the page's
    other lines are on average (the median of their area over their width; a band as high as their peaks would take
    in the neighbouring lines' strokes: the shipped reader read the letters' 344 such training lines at 41% CER
    greedy that way, 29% this way), split above and below the baseline as their extents are (medians). A line is
    taken for one when its polygon runs along its baseline (half its points are baseline points) or has no area,
    and is thinner than ``THIN_LINE`` of the page's usual line (the larger of the median line thickness and 0.7 of
    the median distance between baselines). Lines stay as they are where the page has no other line to measure."""
    with_baseline = [line for line in lines if len(line.baseline) >= 2]
    if len(with_baseline) < 2:
        return lines
    thickness = {id(line): _thickness(line.polygon) for line in with_baseline}
    level = {id(line): statistics.median(y for _, y in line.baseline) for line in with_baseline}
    usual = statistics.median(thickness.values())
    levels = sorted(level.values())
    steps = [b - a for a, b in zip(levels, levels[1:]) if b > a]
    usual = max(usual, 0.7 * statistics.median(steps)) if steps else usual
    thin = {id(line) for line in with_baseline if (_along_baseline(line) or thickness[id(line)] == 0)
            and thickness[id(line)] < THIN_LINE * usual}  # fmt: skip
    others = [line for line in with_baseline if id(line) not in thin]
    if not thin or not others:
        return lines
    above = statistics.median(level[id(line)] - min(y for _, y in line.polygon) for line in others)
    below = statistics.median(max(y for _, y in line.polygon) - level[id(line)] for line in others)
    height = statistics.median(thickness[id(line)] for line in others)
    above, below = height * above / max(1e-6, above + below), height * below / max(1e-6, above + below)
    widened = []
    for line in lines:
        if id(line) in thin:
            polygon = [(x, max(0.0, y - above)) for x, y in line.baseline]
            polygon += [(x, y + below) for x, y in reversed(line.baseline)]
            line = TextLine(polygon, line.baseline, line.text, from_baseline=True)
        widened.append(line)
    return widened


def read_page(path: str | Path) -> PageFile:
    """The text lines of a PAGE XML or ALTO file (told apart by the root element). Raises ``NotLayoutFile``
    for other XML (a METS file, Transkribus' ``metadata.xml``) and ``xml.etree.ElementTree.ParseError`` for
    broken XML."""
    root = ET.parse(path).getroot()
    kind = _local(root.tag)
    if kind not in ("alto", "PcGts"):
        raise NotLayoutFile(f"{path}: <{kind}> is neither PAGE XML (PcGts) nor ALTO")
    page = _read_alto(root) if kind == "alto" else _read_page(root)
    lines = widen_baseline_only_lines(page.lines)
    page.lines = [line for line in lines if len(line.polygon) >= 3 and _thickness(line.polygon) > 0]  # not a stroke
    return page


class NotLayoutFile(ValueError):
    """An XML file that is neither PAGE nor ALTO."""


def find_image(xml_path: str | Path, stated: str | None) -> Path | None:
    """The image a PAGE/ALTO file describes: the file it names (by its base name, which may be a path or URL)
    beside the XML, in the folder above (Transkribus puts the XML in ``page/``) or in a sibling folder of the
    XML's (``images/`` next to ``alto/``); else an image with the XML's stem beside it or above it."""
    xml_path = Path(xml_path)
    folders = [xml_path.parent, xml_path.parent.parent]
    folders += sorted(p for p in xml_path.parent.parent.iterdir() if p.is_dir() and p != xml_path.parent)
    names = [Path(stated.replace("\\", "/").rsplit("/", 1)[-1]).name] if stated else []
    candidates = [folder / name for name in names for folder in folders]
    candidates += [folder / (xml_path.stem + s) for folder in folders[:2] for s in IMAGE_SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


def cut_line(gray: np.ndarray, polygon: list[Point]) -> np.ndarray | None:
    """The box around ``polygon`` (image pixels) cut out of a grey page, outside the polygon painted with the
    paper's grey (the 90th percentile of the box: ink is the darker minority); None when the box is empty."""
    import cv2

    points = np.round(np.array(polygon, dtype=np.float64)).astype(np.int32)
    left, top = np.maximum(points.min(axis=0), 0)
    right, bottom = np.minimum(points.max(axis=0) + 1, [gray.shape[1], gray.shape[0]])
    if right <= left or bottom <= top:
        return None
    crop = gray[top:bottom, left:right].copy()
    mask = np.zeros(crop.shape, dtype=np.uint8)
    cv2.fillPoly(mask, [points - [left, top]], 1)
    crop[mask == 0] = int(np.percentile(crop, 90))
    return crop
