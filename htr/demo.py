"""A local web page to try the recognizer: upload a photo or scan of a line or a page (or a PDF or multi-page TIFF,
read a page at a time), or write a line by hand.

    pip install -r requirements-demo.txt
    python -m htr.demo                      # http://127.0.0.1:7860
    python -m htr.demo --checkpoint models/my-model --port 8080

Shows the text, each line's box on the image with its confidence, the less confident words marked, and the
result as JSON, PAGE XML and ALTO files to download. Runs offline (no fonts or scripts fetched at run time);
``--share`` (a public gradio.live link) stays off unless asked for.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

UNSURE = 0.8  # words read with less confidence than this are marked
DECODERS = {"beam search + language model": "beam", "greedy (fastest)": "greedy"}


@dataclass
class DemoResult:
    """What the page shows for one image."""

    text: str
    annotated: Image.Image  # the image with line boxes (and unsure words) drawn
    words: list[tuple[str, str | None]]  # (word or separator, "unsure" or None) for gr.HighlightedText
    files: list[str]  # JSON, PAGE XML and ALTO files of the result
    summary: str


def on_white(image: Image.Image) -> Image.Image:
    """An RGB image; transparent parts (a drawing canvas) become white paper."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, image).convert("RGB")
    return image.convert("RGB")


class DemoReader:
    """One recognizer for the page, with a decoder per choice (the network is loaded once)."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        from htr.inference import Recognizer
        from htr.reading.decode import make_decoder

        self.recognizer = Recognizer(checkpoint, device=device, decoder="beam")  # with the checkpoint's LM
        self.decoders = {name: self.recognizer.decoder if kind == "beam" else make_decoder({}, decoder=kind)
                         for name, kind in DECODERS.items()}  # fmt: skip
        self.output = Path(tempfile.mkdtemp(prefix="htr-demo-"))
        self.count = 0

    def read(self, image: Image.Image, decoder: str = next(iter(DECODERS)), name: str = "image.png") -> DemoResult:
        """Read an image (a line or a page); ``name`` is the source its JSON, PAGE and ALTO files name."""
        from htr.pages.page_export import WRITERS

        image = on_white(image)
        page = self.recognizer.read_page(image, decoder=self.decoders[decoder], source=name)
        annotated = image.copy()
        draw = ImageDraw.Draw(annotated)
        words: list[tuple[str, str | None]] = []
        for number, line in enumerate(page.lines):
            draw.rectangle(line.box, outline=(0, 160, 60), width=3)
            draw.text((line.box[0] + 4, max(0, line.box[1] - 14)), f"{line.confidence:.0%}", fill=(0, 120, 40))
            for word in line.words:
                unsure = word.confidence < UNSURE
                if unsure:
                    draw.rectangle(word.box, outline=(220, 40, 40), width=2)
                words += [(word.text, "unsure" if unsure else None), (" ", None)]
            if number + 1 < len(page.lines):
                words.append(("\n", None))
        self.count += 1
        stem = self.output / f"reading-{self.count}"
        files = [stem.with_suffix(".json")]
        files[0].write_text(json.dumps(page.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
        for fmt, writer in WRITERS.items():
            path = stem.parent / f"{stem.name}.{fmt}.xml"
            path.write_bytes(writer(page))
            files.append(path)
        unsure = sum(label == "unsure" for _, label in words)
        summary = (f"{len(page.lines)} line{'s' if len(page.lines) != 1 else ''} read, {unsure} word"
                   f"{'s' if unsure != 1 else ''} below {UNSURE:.0%} confidence marked")  # fmt: skip
        return DemoResult(page.text, annotated, words, [str(f) for f in files], summary)

    def read_document(self, path: str | Path, number: int, decoder: str = next(iter(DECODERS))) -> DemoResult:
        """Read page ``number`` (from 1) of a PDF or multi-page TIFF (any other image is one page). Raises
        ValueError with a one-line reason: no such page, a file that cannot be read, pypdfium2 missing for a PDF."""
        from htr.reading.documents import load_page, page_count, page_name

        pages = page_count(path)
        if not 1 <= number <= pages:
            raise ValueError(f"{Path(path).name} has {pages} page{'s' if pages != 1 else ''}: choose 1 to {pages}")
        try:
            image = load_page(path, number - 1)
        except ImportError as error:  # pypdfium2, for a PDF
            raise ValueError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - whatever the decoder says, in one line
            raise ValueError(f"cannot read {Path(path).name}: {error}".splitlines()[0]) from None
        result = self.read(image, decoder, name=page_name(Path(path).name, number - 1))
        result.summary = f"Page {number} of {pages}: {result.summary}"
        return result


def build_app(reader: DemoReader):  # -> gradio.Blocks
    """The page: an upload tab and a drawing tab, a decoder choice, and the results."""
    import gradio as gr

    def run(image, decoder):
        if image is None:
            raise gr.Error("Upload an image or write something first.")
        result = reader.read(image, decoder)
        return result.text, result.annotated, result.words, result.files, result.summary

    def run_document(path, number, decoder):
        if not path:
            raise gr.Error("Upload a PDF or a multi-page TIFF first.")
        try:
            result = reader.read_document(path, int(number or 1), decoder)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return result.text, result.annotated, result.words, result.files, result.summary

    def run_sketch(sketch, decoder):
        image = sketch.get("composite") if isinstance(sketch, dict) else sketch
        if image is None or not image.getbbox():
            raise gr.Error("Write a line on the canvas first.")
        return run(image, decoder)

    with gr.Blocks(title="Handwritten text recognition", analytics_enabled=False) as app:
        gr.Markdown("# Handwritten text recognition\nUpload a photo or scan of a handwritten line or page (or a PDF, "
                    "a page at a time), or write a line with mouse, pen or finger.")  # fmt: skip
        decoder = gr.Radio(list(DECODERS), value=next(iter(DECODERS)), label="Decoder")
        with gr.Tabs():
            with gr.Tab("Upload", id="upload"):
                upload = gr.Image(type="pil", label="Line or page image", sources=["upload", "clipboard"],
                                  elem_id="upload")  # fmt: skip
                read_upload = gr.Button("Read", variant="primary", elem_id="read-upload")
            with gr.Tab("Document", id="document"):
                document = gr.File(label="PDF or multi-page TIFF", file_types=[".pdf", ".tif", ".tiff"],
                                   type="filepath", elem_id="document")  # fmt: skip
                number = gr.Number(label="Page", value=1, precision=0, minimum=1, elem_id="page-number")
                read_document = gr.Button("Read the page", variant="primary", elem_id="read-document")
            with gr.Tab("Write", id="write"):
                brush = gr.Brush(default_size=6, colors=["#000000"], color_mode="fixed")
                sketch = gr.Sketchpad(type="pil", label="Write one line (pick the brush first)", brush=brush,
                                      canvas_size=(1000, 220), elem_id="sketch")  # fmt: skip
                read_sketch = gr.Button("Read", variant="primary", elem_id="read-sketch")
        summary = gr.Markdown(elem_id="summary")
        text = gr.Textbox(label="Text", lines=3, elem_id="text", buttons=["copy"])
        words = gr.HighlightedText(label="Words (less confident ones marked)", color_map={"unsure": "red"},
                                   elem_id="words")  # fmt: skip
        annotated = gr.Image(label="Lines found, with their confidence", elem_id="annotated")
        files = gr.File(label="Download: JSON, PAGE XML, ALTO", file_count="multiple", elem_id="files")
        outputs = [text, annotated, words, files, summary]
        read_upload.click(run, [upload, decoder], outputs)
        read_document.click(run_document, [document, number, decoder], outputs)
        read_sketch.click(run_sketch, [sketch, decoder], outputs)
    return app


if __name__ == "__main__":  # python -m htr.demo: its command line is htr.cli.demo (run, not imported)
    import runpy

    runpy.run_module("htr.cli.demo", run_name="__main__", alter_sys=True)
