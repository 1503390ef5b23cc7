"""Files of several pages: a PDF's pages rendered at 300 dpi (bounded in size), a TIFF's frames, a clear line when
pypdfium2 is missing or the file is broken."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.reading.documents import load_page, page_count
from htr.reading.preprocess import WORK_PIXELS


def test_pdf_pages_render_at_300_dpi_and_tiff_frames_are_pages(tmp_path):
    white, black = Image.new("L", (300, 60), 255), Image.new("L", (150, 40), 0)
    pdf, tiff, png = tmp_path / "two.pdf", tmp_path / "two.tif", tmp_path / "one.png"
    white.save(tiff, save_all=True, append_images=[black])
    white.save(png)
    white.save(pdf, save_all=True, append_images=[black], resolution=100)  # 3 x 0.6 and 1.5 x 0.4 inches
    assert (page_count(pdf), page_count(tiff), page_count(png)) == (2, 2, 1)
    first, second = load_page(pdf, 0), load_page(pdf, 1)
    assert abs(first.width - 900) <= 1 and abs(first.height - 180) <= 1  # 300 dpi
    assert abs(second.width - 450) <= 1 and abs(second.height - 120) <= 1
    assert np.asarray(first).mean() > 245 and np.asarray(second).mean() < 10  # each page its own content
    assert load_page(tiff, 1).size == (150, 40) and np.asarray(load_page(tiff, 1)).max() == 0
    with pytest.raises(ValueError, match="no page 3"):
        load_page(pdf, 2)
    with pytest.raises(ValueError, match="no page 3"):
        load_page(tiff, 2)


def test_a_huge_pdf_page_is_rendered_smaller_and_a_broken_one_says_so(tmp_path):
    Image.new("L", (200, 200), 128).save(tmp_path / "poster.pdf", resolution=2)  # 100 inches square
    poster = load_page(tmp_path / "poster.pdf")
    assert poster.width * poster.height <= WORK_PIXELS * 1.01 and poster.width > 3000
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 and nothing else")
    assert page_count(broken) == 1  # reading it says why
    with pytest.raises(Exception, match="Failed to load document"):
        load_page(broken)


def test_without_pypdfium2_a_pdf_names_what_to_install(tmp_path, monkeypatch):
    Image.new("L", (50, 20), 255).save(tmp_path / "page.pdf")
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # as if not installed: importing it fails
    with pytest.raises(ImportError, match=r"pip install pypdfium2"):
        load_page(tmp_path / "page.pdf")
    assert page_count(tmp_path / "page.pdf") == 1


def test_the_demo_reads_the_chosen_page_of_a_pdf_and_names_a_missing_one(tmp_path):
    """The demo's Document tab: page N of a PDF is read like an uploaded image, its files name ``FILE#page=N``; a
    page the file lacks or a broken file is one line (the page shows it as an error)."""
    from htr.demo import DemoReader

    root = Path(__file__).resolve().parents[1]
    first, second = (Image.open(root / "examples" / name).convert("L") for name in ("line2.png", "line1.png"))
    first.save(tmp_path / "letter.pdf", save_all=True, append_images=[second], resolution=300)  # drawn 1:1 again
    reader = DemoReader(root / "handwriting_recognizer_best.pth", device="cpu")
    result = reader.read_document(tmp_path / "letter.pdf", 2)
    assert result.text == "Meet me at the station at half past nine."
    assert result.summary.startswith("Page 2 of 2: 1 line read")
    assert '"letter.pdf#page=2"' in Path(result.files[0]).read_text()  # the JSON names the page it read
    with pytest.raises(ValueError, match="letter.pdf has 2 pages: choose 1 to 2"):
        reader.read_document(tmp_path / "letter.pdf", 3)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 and nothing else")
    with pytest.raises(ValueError, match="^cannot read broken.pdf: "):
        reader.read_document(tmp_path / "broken.pdf", 1)
