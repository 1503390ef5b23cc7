"""The field's formats: word positions, PAGE XML / ALTO written by predict.py and read back as datasets."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from htr.alphabet import BLANK, Alphabet
from htr.reading.positions import align, estimate_baseline
from tests.conftest import render_line
from tests.exports import alto_xml, page_of_lines, page_xml, transkribus_2013_page

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "schemas"


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "predict.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def schemas():
    xmlschema = pytest.importorskip("xmlschema")
    return {
        "page": xmlschema.XMLSchema(str(SCHEMAS / "page-2019-07-15.xsd")),
        "alto": xmlschema.XMLSchema(str(SCHEMAS / "alto-4-4.xsd"),  # its xlink import, from the project's copy
                                    locations={"http://www.w3.org/1999/xlink": str(SCHEMAS / "xlink.xsd")}),
    }  # fmt: skip


@pytest.fixture(scope="module")
def handwritten_page(tmp_path_factory) -> tuple[Path, list]:
    """A page of four lines in the bundled handwriting fonts, and their boxes."""
    from htr.synth.render import compose_page
    from tests.test_page_ink import handwritten_lines

    page, boxes = compose_page(handwritten_lines(4, 5), np.random.default_rng(5), gap=(25, 35), margin=40)
    path = tmp_path_factory.mktemp("page") / "letter.png"
    page.save(path)
    return path, boxes


# word positions


def test_alignment_of_the_greedy_text_is_the_best_path():
    rng = np.random.default_rng(0)
    log_probs = np.log(rng.dirichlet(np.ones(6) * 0.3, size=(50, 3))).astype(np.float32)  # (T, B, C)
    lengths = [50, 41, 30]
    best = log_probs.argmax(axis=-1)
    paths = []
    for b, n in enumerate(lengths):
        frames = best[:n, b]
        paths.append([int(c) for i, c in enumerate(frames) if c != BLANK and (i == 0 or c != frames[i - 1])])
    alphabet = Alphabet("abcde")
    for b, (n, spans) in enumerate(zip(lengths, align(log_probs, lengths, paths, alphabet))):
        labelled = np.zeros(n, dtype=np.int64)  # the alignment as a frame path: blank unless a label holds it
        for span, label in zip(spans, paths[b]):
            labelled[span.start : span.end] = label
            assert span.char == alphabet.chars[label - 1] and 0 < span.probability <= 1
        score = log_probs[np.arange(n), b, labelled].sum()
        assert score == pytest.approx(log_probs[:n, b].max(axis=-1).sum(), abs=1e-4)  # as good as the best path


def test_alignment_of_another_text_keeps_order_and_refuses_what_cannot_fit():
    rng = np.random.default_rng(1)
    log_probs = np.log(rng.dirichlet(np.ones(4), size=(12, 2))).astype(np.float32)
    text = [1, 1, 2, 3]  # a doubled letter needs a blank between its two frames
    spans, impossible = align(log_probs, [12, 4], [text, [1, 1, 2, 3]], Alphabet("abc"))
    assert [s.char for s in spans] == ["a", "a", "b", "c"]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:])) and spans[-1].end <= 12
    assert spans[1].start > spans[0].end  # a blank frame between the two a's
    assert impossible is None  # five frames needed, four given


def test_baseline_of_drawn_text():
    from PIL import ImageFont

    font = ImageFont.truetype(str(ROOT / "htr" / "fonts" / "kalam.woff"), 48)
    image = Image.new("L", (900, 110), 0)
    ImageDraw.Draw(image).text((20, 70), "Mighty oaks grow from acorns, you know", font=font, fill=255, anchor="ls")
    x0, y0, x1, y1 = estimate_baseline(np.asarray(image) > 127)
    assert abs(y0 - 70) <= 3 and abs(y1 - 70) <= 3 and x1 - x0 > 600


def test_word_boxes_of_rendered_lines_overlap_the_true_ones():
    """The shipped model on lines drawn in the bundled fonts, whose words' ink boxes are known."""
    from htr.inference import Recognizer
    from htr.metrics import box_iou
    from htr.synth.render import list_fonts, render_text_with_words

    recognizer = Recognizer(ROOT / "handwriting_recognizer_best.pth", "cpu", decoder="greedy")
    rng = np.random.default_rng(2)
    fonts = list_fonts()
    texts = ["the quick brown fox jumps over", "she wrote a long letter to him", "meet me at the station at noon"]
    best = []
    for k in range(12):
        image, truth = render_text_with_words(texts[k % 3], fonts[(5 * k) % len(fonts)], rng, height=70)
        canvas = Image.new("L", (image.width + 100, image.height + 70), int(np.median(np.asarray(image))))
        canvas.paste(image, (60, 40))  # off the origin: boxes must come back in the image's pixels
        (layout,) = recognizer.read_page(canvas, "never").lines
        assert all(0 <= w.confidence <= 1 for w in layout.words)
        shifted = [(a + 60, b + 40, c + 60, d + 40) for a, b, c, d in truth]
        best += [max((box_iou(t, w.box) for w in layout.words), default=0.0) for t in shifted]
    assert np.mean(np.array(best) >= 0.5) >= 0.85  # measured 96% over 150 lines (benchmarks/word_boxes.py)


def test_json_has_every_lines_words(handwritten_page):
    path, boxes = handwritten_page
    result = predict("--format", "json", "--decoder", "greedy", str(path))
    assert result.returncode == 0, result.stderr
    lines = json.loads(result.stdout)["lines"]
    assert len(lines) == len(boxes)
    for line in lines:
        assert " ".join(w["text"] for w in line["words"]) == line["text"]
        left, top, right, bottom = line["box"]
        for word in line["words"]:  # inside its line (a pixel of slack for rounding)
            a, b, c, d = word["box"]
            assert left - 1 <= a < c <= right + 1 and top - 1 <= b < d <= bottom + 1


# PAGE XML and ALTO out


@pytest.mark.parametrize("fmt", ["page", "alto"])
def test_xml_output_validates_against_the_official_schema(fmt, schemas, handwritten_page, tmp_path):
    from htr.pages.page_xml import read_page

    page_path, boxes = handwritten_page
    render_line("a single line here").save(tmp_path / "single.png")
    result = predict(
        "--format", fmt, "--output-dir", str(tmp_path / "out"), str(page_path), str(tmp_path / "single.png")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{page_path} -> {tmp_path / 'out' / 'letter.xml'} ({len(boxes)} lines)",
        f"{tmp_path / 'single.png'} -> {tmp_path / 'out' / 'single.xml'} (1 line)",
    ]
    for name, image, count in (("letter", page_path, len(boxes)), ("single", tmp_path / "single.png", 1)):
        xml = tmp_path / "out" / f"{name}.xml"
        schemas[fmt].validate(str(xml))  # raises on any violation
        page = read_page(xml)
        assert page.image == image.name and page.size == Image.open(image).size and len(page.lines) == count
        assert all(line.text and len(line.baseline) == 2 for line in page.lines)
    text = (tmp_path / "out" / "letter.xml").read_text(encoding="utf-8")
    assert text.count("<Word " if fmt == "page" else "<String ") >= 4 * len(boxes) - 2  # 4 or more words a line


def test_xml_files_are_never_overwritten_unless_asked(handwritten_page, tmp_path):
    page_path, _ = handwritten_page
    other = tmp_path / "elsewhere"
    other.mkdir()
    render_line("same stem").save(other / "letter.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "letter.xml").write_text("mine")
    result = predict("--format", "page", "--output-dir", str(out), str(page_path))
    assert result.returncode == 1 and "exists (--overwrite replaces it)" in result.stderr
    assert (out / "letter.xml").read_text() == "mine"
    result = predict(
        "--format", "alto", "--output-dir", str(out), "--overwrite", str(page_path), str(other / "letter.png")
    )
    assert result.returncode == 1 and len(result.stdout.splitlines()) == 1  # the first one written, the second not
    assert "written for another image of this run" in result.stderr
    assert "<alto" in (out / "letter.xml").read_text()
    assert not list(out.glob(".*.tmp"))
    result = predict("--output-dir", str(out), str(page_path))
    assert result.returncode == 2 and "--format page or alto" in result.stderr


def test_a_page_is_what_reading_returns_and_the_decoder_is_chosen_per_call(handwritten_page):
    """Recognizer.read_page gives a Page of Lines of Words (boxes in the image's pixels); its JSON is predict.py's;
    a call's decoder leaves the recognizer's own decoder as it was."""
    from htr.inference import Recognizer
    from htr.reading.decode import make_decoder
    from htr.reading.page_result import Line, Page, Word

    recognizer = Recognizer(ROOT / "handwriting_recognizer_best.pth", "cpu", line_finder="auto")
    own = recognizer.decoder
    image = Image.open(handwritten_page[0])
    beam = recognizer.read_page(image, source=str(handwritten_page[0]))
    greedy = recognizer.read_page(image, decoder=make_decoder({}, decoder="greedy"))
    assert recognizer.decoder is own and own.lm is not None  # never swapped on the shared object
    assert isinstance(beam, Page) and beam.segmented and len(beam.lines) == 4
    assert all(isinstance(line, Line) and all(isinstance(w, Word) for w in line.words) for line in beam.lines)
    assert beam.text == "\n".join(line.text for line in beam.lines) and len(greedy.lines) == 4
    width, height = beam.size
    assert all(0 <= w.box[0] < w.box[2] <= width and 0 <= w.box[1] < w.box[3] <= height
               for line in beam.lines for w in line.words)  # fmt: skip
    printed = predict("--format", "json", str(handwritten_page[0]))
    assert json.loads(printed.stdout) == beam.to_json()


# PAGE XML and ALTO in


def test_transkribus_and_escriptorium_exports_load_as_line_datasets(tmp_path, caplog):
    from htr.data import decode_row_image, load_splits

    export = tmp_path / "export"
    (export / "page").mkdir(parents=True)
    image, boxes = page_of_lines(["first region line", "second region line", "no text here", "third"])
    image.save(export / "0001.jpg")  # Transkribus: images in the folder, PAGE files in page/
    square = lambda a, b, c, d: [(a, b), (c - 1, b), (c - 1, d - 1), (a, d - 1)]  # noqa: E731  corners inclusive
    regions = [
        ("r2", [(square(*boxes[2]), None), (square(*boxes[3]), "third")]),
        ("r1", [(square(*boxes[0]), "first region line"), (square(*boxes[1]), "second region line")]),
    ]
    (export / "page" / "0001.xml").write_text(page_xml("0001.jpg", image.size, regions, order=["r1", "r2"]))
    (export / "mets.xml").write_text('<?xml version="1.0"?><mets xmlns="http://www.loc.gov/METS/"/>')
    alto_image, alto_boxes = page_of_lines(["an alto line", "and another"])
    (export / "images").mkdir()
    alto_image.save(export / "images" / "scan_7.png")  # eScriptorium: images beside or in a sibling folder
    (export / "alto").mkdir()
    lines = [(alto_boxes[0], ["an", "alto", "line"]), (alto_boxes[1], ["and", "another"])]
    (export / "alto" / "scan_7.xml").write_text(alto_xml("media/scan_7.png", alto_image.size, lines))
    (export / "alto" / "broken.xml").write_text("<alto><Layout>")
    (export / "alto" / "lost.xml").write_text(alto_xml("gone.png", (10, 10), [((0, 0, 9, 9), ["x"])]))
    with caplog.at_level(logging.WARNING, logger="htr.data"):
        train = load_splits(str(export), carve=False)["train"]
    assert sorted(train["text"]) == sorted(["first region line", "second region line", "third", "an alto line",
                                            "and another"])  # fmt: skip
    page_texts = [t for t, g in zip(train["text"], train["group"]) if g.endswith("0001.xml")]
    assert page_texts == ["first region line", "second region line", "third"]  # the page's reading order
    warnings = [r.getMessage() for r in caplog.records]
    assert any("broken.xml" in w and "cannot read" in w for w in warnings)
    assert any("lost.xml" in w and "gone.png" in w for w in warnings)
    first = decode_row_image(train[train["text"].index("first region line")]["image"])
    left, top, right, bottom = boxes[0]
    assert first.size == (right - left, bottom - top)  # the polygon's box, corners inclusive
    validation_pages = set(load_splits(str(export), val_fraction=0.5)["validation"]["group"])
    train_pages = set(load_splits(str(export), val_fraction=0.5)["train"]["group"])
    assert validation_pages and not validation_pages & train_pages  # a page never on both sides


def test_outside_the_polygon_becomes_paper():
    from htr.pages.page_xml import cut_line

    gray = np.full((40, 60), 200, np.uint8)
    gray[:, 30:] = 10  # ink everywhere on the right half
    cut = cut_line(gray, [(0, 0), (59, 0), (0, 39)])  # a triangle: most of the right half is outside it
    assert cut.shape == (40, 60)
    assert cut[39, 59] == 200 and cut[0, 40] == 10  # outside painted with the paper, inside kept


@pytest.mark.parametrize("fmt", ["page", "alto"])
def test_round_trip_through_xml_gives_the_same_lines(fmt, handwritten_page, tmp_path):
    from htr.data import decode_row_image, load_splits
    from htr.pages.page_xml import read_page

    folder = tmp_path / "scans"
    folder.mkdir()
    image = folder / "letter.png"
    image.write_bytes(handwritten_page[0].read_bytes())
    read = predict("--format", "json", "--decoder", "greedy", str(image))
    lines = json.loads(read.stdout)["lines"]
    result = predict("--format", fmt, "--decoder", "greedy", str(image))  # beside the image
    assert result.returncode == 0, result.stderr
    page = read_page(folder / "letter.xml")
    assert [line.box for line in page.lines] == [tuple(line["box"]) for line in lines]
    dataset = load_splits(str(folder), carve=False)["train"]
    assert dataset["text"] == [line["text"] for line in lines]
    for row, line in zip(dataset, lines):
        left, top, right, bottom = line["box"]
        assert decode_row_image(row["image"]).size == (right - left, bottom - top)


def test_evaluate_scores_a_folder_without_splits_whole(tmp_path):
    folder = tmp_path / "lines"
    folder.mkdir()
    texts = ["the garden", "needs water", "before the sun", "is high", "she wrote"]
    for k, text in enumerate(texts):
        render_line(text).save(folder / f"{k}.png")
    (folder / "labels.tsv").write_text("".join(f"{k}.png\t{t}\n" for k, t in enumerate(texts)))
    result = subprocess.run([sys.executable, "-m", "htr.evaluate", "--dataset", str(folder), "--decoder", "greedy"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "all lines (the dataset has no splits): 5 lines" in result.stdout


def test_a_transkribus_2013_export_in_split_folders_loads_as_a_dataset(tmp_path):
    """Shaped like ../shared/data/hooker-letters: train/ and validation/ folders of page JPEGs with their PAGE
    2013 files; custom reading order, untranscribed lines, a polygon that leaves the image, '&' and '£'."""
    from htr.data import decode_row_image, load_splits, load_validation

    export = tmp_path / "letters"
    written = {"train": ["My dear Dyer", "Kew & the rest", "", "send £5 at once"], "validation": ["Yours ever"]}
    for split, texts in written.items():
        (export / split).mkdir(parents=True)
        image, boxes = page_of_lines([t or "unread" for t in texts])
        image.convert("L").save(export / split / f"JDH_{split}.jpg", quality=65)
        polygons = [[(a, b), (c - 1, b), (c - 1, d - 1), (a, d - 1)] for a, b, c, d in boxes]
        polygons[-1] = [(-15, polygons[-1][0][1]), (image.width + 40, polygons[-1][1][1]), *polygons[-1][2:]]
        order = list(range(len(texts)))[::-1]  # written in the file last line first
        lines = [(polygons[k], texts[k], k) for k in order]
        xml = transkribus_2013_page(f"JDH_{split}.jpg", image.size, lines)
        (export / split / f"JDH_{split}.xml").write_text(xml, encoding="utf-8")
    splits = load_splits(str(export))
    assert sorted(splits) == ["train", "validation"]  # the folders' own split: nothing carved
    assert splits["train"]["text"] == ["My dear Dyer", "Kew & the rest", "send £5 at once"]  # reading order
    assert splits["validation"]["text"] == ["Yours ever"]
    assert load_validation(str(export))["text"] == ["Yours ever"]  # the folder's own validation split
    last = decode_row_image(splits["train"][2]["image"])
    image_width = Image.open(export / "train" / "JDH_train.jpg").width
    assert last.width <= image_width  # the polygon was cut at the image's border


def test_a_line_drawn_as_a_baseline_alone_is_cut_out_at_the_pages_line_height(tmp_path, caplog):
    """Transkribus writes a line drawn as a baseline alone with a polygon that is a thin band along that baseline
    (400 of the 6,608 lines of ../shared/data/hooker-letters): such a line gets a band as high as the page's other
    lines are on average (their area over their width), split above and below its baseline as theirs are, so its
    crop holds its words; other thin lines keep their polygons."""
    from htr.data import decode_row_image, load_splits
    from htr.pages.page_xml import read_page

    export = tmp_path / "letters"
    export.mkdir()
    texts = ["My dear Dyer", "the plants came", "in good order", "yours ever"]
    image, boxes = page_of_lines(texts)
    image.convert("L").save(export / "JDH_1.jpg", quality=90)

    def tall_letter(a, b, c, d):  # a polygon that reaches the box's top only around one tall letter, as real ones do
        w, m = c - 1 - a, (b + d) // 2
        return [(a, m), (a + w // 3, m), (a + w // 2, b), (a + 2 * w // 3, m), (c - 1, m), (c - 1, d - 1), (a, d - 1)]

    def mean_height(polygon):  # area over width
        xs, ys = np.array(polygon, float).T
        return 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / (xs.max() - xs.min())

    lines = [(tall_letter(*boxes[k]), texts[k], k) for k in range(len(texts))]
    a, _, c, d = boxes[1]
    baseline = [(float(a + (c - 1 - a) * k // 4), float(d - 5)) for k in range(5)]  # what Transkribus writes for line 1
    lines[1] = (baseline + [(x, y - 12) for x, y in reversed(baseline)], texts[1], 1, baseline)
    a, b, c, d = boxes[3]  # a small line with a polygon of its own (a word between the lines) stays as it is
    lines[3] = ([(a, d - 14), (c - 1, d - 14), (c - 1, d - 1), (a, d - 1)], texts[3], 3)
    (export / "JDH_1.xml").write_text(transkribus_2013_page("JDH_1.jpg", image.size, lines), encoding="utf-8")

    page = read_page(export / "JDH_1.xml")
    assert [line.from_baseline for line in page.lines] == [False, True, False, False]
    others = [lines[0][0], lines[2][0], lines[3][0]]
    height = sorted(mean_height(polygon) for polygon in others)[1]
    above = sorted([(boxes[0][3] - 5) - boxes[0][1], (boxes[2][3] - 5) - boxes[2][1], 9])[1]  # 4 px below: all
    level = boxes[1][3] - 5  # line 1's baseline
    left, top, right, bottom = page.lines[1].box
    assert abs(top - (level - height * above / (above + 4))) <= 1
    assert abs(bottom - (level + height * 4 / (above + 4))) <= 1
    assert (left, right) == (boxes[1][0], boxes[1][2])
    assert page.lines[3].box == (boxes[3][0], boxes[3][3] - 14, boxes[3][2], boxes[3][3])
    assert page.lines[1].polygon != lines[1][0] and page.lines[1].baseline == baseline

    with caplog.at_level(logging.INFO, logger="htr.data"):
        crops = [decode_row_image(row["image"]) for row in load_splits(str(export), carve=False)["train"]]
    assert abs(crops[1].height - (bottom - top)) <= 1 and crops[1].height >= 13 + 6  # not the 13 px band stated
    assert "1 lines drawn as a baseline alone" in caplog.text  # the loader says so


def test_a_line_with_a_baseline_and_no_polygon_is_read_where_the_page_has_lines_to_measure(tmp_path):
    """kraken writes a line without a boundary as a TextLine with a Baseline and no Coords: it is cut out as a band
    along its baseline like a Transkribus baseline-only line, and so is a line whose polygon has no area; on a page
    with no line to measure it is left out, as a line without a polygon always was."""
    from htr.pages.page_xml import read_page

    def line(k: int, coords: bool | str) -> str:
        top, base = 100 * k + 10, 100 * k + 60
        shape = f'<Coords points="10,{top} 500,{top} 500,{base + 20} 10,{base + 20}"/>' if coords else ""
        if coords == "no area":  # a polygon that goes and comes back on itself (seen in lectaurep-repertoires)
            shape = f'<Coords points="10,{top} 500,{top - 5} 10,{top}"/>'
        return (f'<TextLine id="l{k}">{shape}<Baseline points="10,{base} 250,{base} 500,{base}"/>'
                f"<TextEquiv><Unicode>line {k}</Unicode></TextEquiv></TextLine>")  # fmt: skip

    def page(lines: str) -> str:
        return (f'<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"><Page '
                f'imageFilename="p.png" imageWidth="600" imageHeight="600"><TextRegion id="r"><Coords '
                f'points="0,0 599,0 599,599"/>{lines}</TextRegion></Page></PcGts>')  # fmt: skip

    (tmp_path / "mixed.xml").write_text(page(line(0, True) + line(1, False) + line(2, True) + line(3, "no area")))
    lines = read_page(tmp_path / "mixed.xml").lines
    assert [(line.text, line.from_baseline) for line in lines] == [("line 0", False), ("line 1", True),
                                                                    ("line 2", False), ("line 3", True)]  # fmt: skip
    assert lines[1].box == (10, 110, 501, 181)  # 50 px above its baseline and 20 below, as the others
    assert lines[3].box == (10, 310, 501, 381)
    (tmp_path / "bare.xml").write_text(page(line(0, False) + line(1, False)))
    assert read_page(tmp_path / "bare.xml").lines == []


@pytest.mark.parametrize("shape", ["transkribus", "page-2019"])
def test_the_lines_of_a_table_are_read_cell_by_cell_in_the_tables_place(shape, tmp_path):
    """A register exported from Transkribus holds its lines in table cells (TableRegion > TableCell > TextLine;
    PAGE 2019: TableRegion > TextRegion with a TableCellRole): they are lines like any other, in the table's place
    in the reading order, row by row, left to right, whatever order the file writes the cells in."""
    from htr.data import load_splits
    from htr.pages.page_xml import read_page

    texts = ["Register of plants", "Name", "Place", "Hooker", "Kew", "signed"]
    image, boxes = page_of_lines(texts)
    image.convert("L").save(tmp_path / "register.jpg")

    def line(k: int) -> str:
        a, b, c, d = boxes[k]
        return (f'<TextLine id="l{k}"><Coords points="{a},{b} {c - 1},{b} {c - 1},{d - 1} {a},{d - 1}"/>'
                f"<TextEquiv><Unicode>{texts[k]}</Unicode></TextEquiv></TextLine>")  # fmt: skip

    def cell(k: int, row: int, column: int) -> str:
        coords = '<Coords points="0,0 9,0 9,9"/>'
        if shape == "transkribus":
            return f'<TableCell row="{row}" col="{column}" id="c{k}">{coords}{line(k)}</TableCell>'
        return (f'<TextRegion id="c{k}">{coords}<Roles><TableCellRole rowIndex="{row}" columnIndex="{column}"/>'
                f"</Roles>{line(k)}</TextRegion>")  # fmt: skip

    ns = ("http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15" if shape == "transkribus" else
          "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15")  # fmt: skip
    order = "".join(f'<RegionRefIndexed index="{k}" regionRef="{r}"/>' for k, r in enumerate(["r1", "t1", "r2"]))
    cells = cell(4, 1, 1) + cell(1, 0, 0) + cell(3, 1, 0) + cell(2, 0, 1)  # written out of order
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{ns}"><Metadata><Creator>Transkribus</Creator>'
           "</Metadata>"
           f'<Page imageFilename="register.jpg" imageWidth="{image.width}" imageHeight="{image.height}">'
           f'<ReadingOrder><OrderedGroup id="ro">{order}</OrderedGroup></ReadingOrder>'
           f'<TextRegion id="r2"><Coords points="0,0 9,0 9,9"/>{line(5)}</TextRegion>'
           f'<TableRegion id="t1"><Coords points="0,0 9,0 9,9"/>{cells}</TableRegion>'
           f'<TextRegion id="r1"><Coords points="0,0 9,0 9,9"/>{line(0)}</TextRegion></Page></PcGts>')  # fmt: skip
    (tmp_path / "register.xml").write_text(xml, encoding="utf-8")

    assert [line.text for line in read_page(tmp_path / "register.xml").lines] == texts
    assert load_splits(str(tmp_path), carve=False)["train"]["text"] == texts  # all of them trained on
