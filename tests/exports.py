"""PAGE and ALTO files shaped like the exports of Transkribus and eScriptorium, and pages of rendered lines."""

import numpy as np
from PIL import Image

from tests.conftest import render_line

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"


def page_xml(image: str, size: tuple[int, int], regions: list[tuple[str, list[tuple[list, str | None]]]],
             order: list[str] | None = None) -> str:  # fmt: skip
    """A PAGE file shaped like a Transkribus export: regions holding lines (polygon, baseline, text)."""
    points = lambda ps: " ".join(f"{x},{y}" for x, y in ps)  # noqa: E731
    body = ""
    if order:
        refs = "".join(f'<RegionRefIndexed index="{k}" regionRef="{r}"/>' for k, r in enumerate(order))
        body += f'<ReadingOrder><OrderedGroup id="ro">{refs}</OrderedGroup></ReadingOrder>'
    for region_id, lines in regions:
        body += f'<TextRegion id="{region_id}"><Coords points="0,0 1,0 1,1"/>'
        for k, (polygon, text) in enumerate(lines):
            ys = [y for _, y in polygon]
            baseline = f'<Baseline points="{polygon[0][0]},{max(ys) - 4} {polygon[1][0]},{max(ys) - 4}"/>'
            equiv = f"<TextEquiv><Unicode>{text}</Unicode></TextEquiv>" if text is not None else ""
            body += f'<TextLine id="{region_id}l{k}"><Coords points="{points(polygon)}"/>{baseline}{equiv}</TextLine>'
        body += "</TextRegion>"
    return (f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{PAGE_NS}"><Metadata><Creator>t</Creator>'
            f"<Created>2024-01-01T00:00:00</Created><LastChange>2024-01-01T00:00:00</LastChange></Metadata>"
            f'<Page imageFilename="{image}" imageWidth="{size[0]}" imageHeight="{size[1]}">{body}</Page>'
            "</PcGts>")  # fmt: skip


def alto_xml(image: str, size: tuple[int, int], lines: list[tuple[tuple, list[str]]]) -> str:
    """An ALTO file shaped like an eScriptorium export: polygons, baselines, strings with spaces between."""
    body = ""
    for k, ((left, top, right, bottom), words) in enumerate(lines):
        strings = "<SP/>".join(f'<String CONTENT="{w}" HPOS="{left}" VPOS="{top}" WIDTH="5" HEIGHT="5"/>'
                               for w in words)  # fmt: skip
        polygon = f"{left} {top} {right} {top} {right} {bottom} {left} {bottom}"
        body += (f'<TextLine ID="l{k}" BASELINE="{left} {bottom - 4} {right} {bottom - 4}" HPOS="{left}" '
                 f'VPOS="{top}" WIDTH="{right - left}" HEIGHT="{bottom - top}"><Shape><Polygon POINTS="{polygon}"/>'
                 f"</Shape>{strings}</TextLine>")  # fmt: skip
    return (f'<?xml version="1.0" encoding="UTF-8"?><alto xmlns="{ALTO_NS}"><Description><MeasurementUnit>pixel'
            f"</MeasurementUnit><sourceImageInformation><fileName>{image}</fileName></sourceImageInformation>"
            f'</Description><Layout><Page ID="p" PHYSICAL_IMG_NR="1" WIDTH="{size[0]}" HEIGHT="{size[1]}">'
            f'<PrintSpace><TextBlock ID="b">{body}</TextBlock></PrintSpace></Page></Layout></alto>')  # fmt: skip


def page_of_lines(texts: list[str]) -> tuple[Image.Image, list]:
    from htr.synth.render import compose_page

    return compose_page([render_line(t, paper=255) for t in texts], np.random.default_rng(len(texts)), gap=(20, 30))


def transkribus_2013_page(image: str, size: tuple[int, int], lines: list[tuple]) -> str:
    """A PAGE file as Transkribus exported the shared letters: the 2013 namespace, its metadata, regions and lines
    ordered by ``custom="readingOrder {index:N;}"`` (lines written here out of that order), ``<Unicode></Unicode>``
    for lines nobody transcribed. ``lines``: (polygon, text, index) or (polygon, text, index, baseline); without
    one, the baseline runs 4 px above the polygon's bottom."""
    from xml.sax.saxutils import escape

    points = lambda ps: " ".join(f"{round(x)},{round(y)}" for x, y in ps)  # noqa: E731
    body = ""
    for polygon, text, index, *given in lines:
        ys = [y for _, y in polygon]
        baseline = given[0] if given else [(polygon[0][0], max(ys) - 4), (polygon[1][0], max(ys) - 4)]
        body += (f'<TextLine id="r1l{index}" custom="readingOrder {{index:{index};}}">'
                 f'<Coords points="{points(polygon)}"/><Baseline points="{points(baseline)}"/>'
                 f"<TextEquiv><Unicode>{escape(text)}</Unicode></TextEquiv></TextLine>")  # fmt: skip
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15"
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><PcGts xmlns="{ns}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Metadata><Creator>Transkribus</Creator>'
            "<Created>2020-06-16T22:20:44.298-04:00</Created><LastChange>2020-06-19T00:07:02.663+02:00</LastChange>"
            '<TranskribusMetadata docId="1" pageId="2" pageNr="1" status="DONE"/></Metadata>'
            f'<Page imageFilename="{image}" imageWidth="{size[0]}" imageHeight="{size[1]}">'
            '<ReadingOrder><OrderedGroup id="ro_1" caption="Regions reading order">'
            '<RegionRefIndexed index="0" regionRef="r1"/></OrderedGroup></ReadingOrder>'
            '<TextRegion orientation="0.0" id="r1" custom="readingOrder {index:0;}">'
            f'<Coords points="0,0 {size[0]},0 {size[0]},{size[1]} 0,{size[1]}"/>{body}'
            "<TextEquiv><Unicode></Unicode></TextEquiv></TextRegion></Page></PcGts>")  # fmt: skip
