"""What was read from an image, written as PAGE XML (2019-07-15) or ALTO (4.4) for Transkribus, eScriptorium,
kraken and OCR-D: the image's file name and size, one text region (block) holding the lines in reading order,
each line's polygon, baseline, text and confidence, and its words with their boxes and confidences.

Coordinates are whole pixels of the image, corners inclusive (a box ``(left, top, right, bottom)`` with right and
bottom exclusive becomes the polygon ``left,top right-1,top right-1,bottom-1 left,bottom-1``), as those tools
write them; `htr.pages.page_xml.read_page` reads both formats back.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from htr import __version__
from htr.reading.page_result import Box, Page

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CREATOR = f"htr {__version__} (line-level handwriting recognition: CRNN + CTC)"


def _corners(box: Box, size: tuple[int, int]) -> list[tuple[int, int]]:
    """A box's four corners, clockwise from top left, inclusive and inside the image."""
    width, height = size
    left, top = min(max(box[0], 0), width - 1), min(max(box[1], 0), height - 1)
    right, bottom = min(max(box[2] - 1, left), width - 1), min(max(box[3] - 1, top), height - 1)
    return [(left, top), (right, top), (right, bottom), (left, bottom)]


def _inside(points: list[tuple[int, int]], size: tuple[int, int]) -> list[tuple[int, int]]:
    return [(min(max(int(x), 0), size[0] - 1), min(max(int(y), 0), size[1] - 1)) for x, y in points]


def _points(points: list[tuple[int, int]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def _union(boxes: list[Box]) -> Box:
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _serialise(root: ET.Element) -> bytes:
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n").encode()


def page_xml(result: Page) -> bytes:
    """A PAGE XML 2019-07-15 document (UTF-8 bytes) of a read image (its file name, size and lines)."""
    image_name, size, lines = Path(result.source).name, result.size, result.lines
    ET.register_namespace("", PAGE_NS)
    q = lambda tag: f"{{{PAGE_NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("PcGts"), {f"{{{XSI_NS}}}schemaLocation": f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd"})
    metadata = ET.SubElement(root, q("Metadata"))
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    for tag, text in (("Creator", CREATOR), ("Created", now), ("LastChange", now)):
        ET.SubElement(metadata, q(tag)).text = text
    page = ET.SubElement(root, q("Page"), imageFilename=image_name, imageWidth=str(size[0]), imageHeight=str(size[1]))

    def text_equiv(parent: ET.Element, text: str, confidence: float | None = None) -> None:
        equiv = ET.SubElement(parent, q("TextEquiv"), {} if confidence is None else {"conf": f"{confidence:.4f}"})
        ET.SubElement(equiv, q("Unicode")).text = text

    if not lines:
        return _serialise(root)
    order = ET.SubElement(ET.SubElement(page, q("ReadingOrder")), q("OrderedGroup"), id="reading-order")
    ET.SubElement(order, q("RegionRefIndexed"), index="0", regionRef="r1")
    region = ET.SubElement(page, q("TextRegion"), id="r1")
    ET.SubElement(region, q("Coords"), points=_points(_corners(_union([line.box for line in lines]), size)))
    for i, line in enumerate(lines, 1):
        element = ET.SubElement(region, q("TextLine"), id=f"r1l{i}", custom=f"readingOrder {{index:{i - 1};}}")
        ET.SubElement(element, q("Coords"), points=_points(_corners(line.box, size)))
        ET.SubElement(element, q("Baseline"), points=_points(_inside(line.baseline, size)))
        for j, word in enumerate(line.words, 1):
            word_element = ET.SubElement(element, q("Word"), id=f"r1l{i}w{j}")
            ET.SubElement(word_element, q("Coords"), points=_points(_corners(word.box, size)))
            text_equiv(word_element, word.text, word.confidence)
        text_equiv(element, line.text, line.confidence)
    text_equiv(region, "\n".join(line.text for line in lines))
    return _serialise(root)


def alto_xml(result: Page) -> bytes:
    """An ALTO 4.4 document (UTF-8 bytes) of a read image (its file name, size and lines)."""
    image_name, size, lines = Path(result.source).name, result.size, result.lines
    ET.register_namespace("", ALTO_NS)
    q = lambda tag: f"{{{ALTO_NS}}}{tag}"  # noqa: E731
    root = ET.Element(
        q("alto"), {f"{{{XSI_NS}}}schemaLocation": f"{ALTO_NS} http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"}
    )
    description = ET.SubElement(root, q("Description"))
    ET.SubElement(description, q("MeasurementUnit")).text = "pixel"
    ET.SubElement(ET.SubElement(description, q("sourceImageInformation")), q("fileName")).text = image_name
    processing = ET.SubElement(description, q("OCRProcessing"), ID="htr")
    step = ET.SubElement(processing, q("ocrProcessingStep"))
    ET.SubElement(step, q("processingDateTime")).text = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    software = ET.SubElement(step, q("processingSoftware"))
    ET.SubElement(software, q("softwareName")).text = "htr"
    ET.SubElement(software, q("softwareVersion")).text = __version__
    layout = ET.SubElement(root, q("Layout"))
    page = ET.SubElement(layout, q("Page"), ID="page1", PHYSICAL_IMG_NR="1", WIDTH=str(size[0]), HEIGHT=str(size[1]))
    space = ET.SubElement(page, q("PrintSpace"), HPOS="0", VPOS="0", WIDTH=str(size[0]), HEIGHT=str(size[1]))

    def placed(box: Box) -> dict[str, str]:
        (left, top), _, (right, bottom), _ = _corners(box, size)
        return {"HPOS": str(left), "VPOS": str(top), "WIDTH": str(right - left + 1), "HEIGHT": str(bottom - top + 1)}

    if not lines:
        return _serialise(root)
    block = ET.SubElement(space, q("TextBlock"), ID="r1", **placed(_union([line.box for line in lines])))
    for i, line in enumerate(lines, 1):
        element = ET.SubElement(block, q("TextLine"), ID=f"r1l{i}", BASELINE=_points(_inside(line.baseline, size)),
                                **placed(line.box))  # fmt: skip
        ET.SubElement(ET.SubElement(element, q("Shape")), q("Polygon"), POINTS=_points(_corners(line.box, size)))
        for j, word in enumerate(line.words, 1):
            if j > 1:
                ET.SubElement(element, q("SP"))
            ET.SubElement(element, q("String"), ID=f"r1l{i}w{j}", CONTENT=word.text, WC=f"{word.confidence:.4f}",
                          **placed(word.box))  # fmt: skip
    return _serialise(root)


WRITERS: dict[str, Callable[[Page], bytes]] = {"page": page_xml, "alto": alto_xml}
