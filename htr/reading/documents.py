"""Files of several pages: a PDF's pages (rendered with pypdfium2, an optional dependency) and a TIFF's frames, each
read as an image of its own; any other image is one page.

    for index in range(page_count(path)):
        image = load_page(path, index)
"""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from htr.reading.preprocess import IMAGE_SUFFIXES, WORK_PIXELS, load_image

PDF_SUFFIX = ".pdf"
READABLE_SUFFIXES = IMAGE_SUFFIXES | {PDF_SUFFIX}  # what a folder of inputs is searched for
PDF_DPI = 300  # a PDF page is rendered at this resolution (scans are usually made at 300 dpi), at most WORK_PIXELS
_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one call at a time, whatever the document


def page_name(path: str, index: int) -> str:
    """What page ``index`` (from 0) of a file of several is called in outputs and messages: ``path#page=N``."""
    return f"{path}#page={index + 1}"


def page_stem(stem: str, index: int) -> str:
    """The output file name (without suffix) of page ``index`` of a file of several: ``stem-pageN``."""
    return f"{stem}-page{index + 1}"


def is_pdf(path: str | Path) -> bool:
    return Path(path).suffix.lower() == PDF_SUFFIX


def page_count(path: str | Path) -> int:
    """How many pages ``path`` holds: a PDF's pages, a TIFF's frames, 1 for any other image (an animation is read
    by its first frame). A file that cannot be opened counts as one page: reading it says why."""
    try:
        if is_pdf(path):
            with _PDFIUM:
                document = _pdfium().PdfDocument(str(path))
                try:
                    return max(len(document), 1)
                finally:
                    document.close()
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            with Image.open(path) as image:
                return max(int(getattr(image, "n_frames", 1)), 1)
    except Exception:  # unreadable: load_page gives the reason
        return 1
    return 1


def load_page(path: str | Path, index: int = 0) -> Image.Image:
    """Page ``index`` (from 0) of ``path``: a PDF page rendered in grey at ``PDF_DPI``, or an image's frame."""
    if not is_pdf(path):
        return load_image(path, frame=index)
    with _PDFIUM:
        document = _pdfium().PdfDocument(str(path))
        try:
            if not 0 <= index < len(document):
                raise ValueError(f"the PDF has no page {index + 1} (it has {len(document)})")
            page = document[index]
            width, height = page.get_size()  # points, 1/72 inch
            scale = min(PDF_DPI / 72, (WORK_PIXELS / max(width * height, 1.0)) ** 0.5)
            return page.render(scale=scale, grayscale=True).to_pil().copy()  # the copy outlives the document
        finally:
            document.close()


def _pdfium():
    try:
        import pypdfium2
    except ImportError:
        raise ImportError("reading PDF files needs pypdfium2 (pip install pypdfium2)") from None
    return pypdfium2
