"""The README's first picture: the bundled example lines stacked into a page, read by the shipped model.

    python benchmarks/front_picture.py                 # writes docs/reading.png

The page goes through what ``predict.py`` does with a page (split into lines, beam search with the model's
language model); the picture shows each line's box with its confidence and, beneath the page, the text read. The
PNG records the checkpoint's SHA-256 and the lines read, so ``tests/test_front_picture.py`` fails when the model
changes and the picture has not been redrawn.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from htr.atomic_file import atomic_write
from htr.inference import Recognizer
from htr.synth.render import compose_page

ROOT = Path(__file__).resolve().parents[1]

CHECKPOINT = ROOT / "handwriting_recognizer_best.pth"
EXAMPLES = sorted((ROOT / "examples").glob("line*.png"))
GREEN, DARK = (0, 150, 60), (30, 30, 30)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def example_page(seed: int = 5) -> Image.Image:
    """The example lines on one page, with the gaps and indents of `htr.synth.render.compose_page`."""
    lines = [Image.open(path).convert("L") for path in EXAMPLES]
    paper = int(np.median(np.asarray(lines[0])))  # the examples' own paper, so the page looks like one sheet
    page, _ = compose_page(lines, np.random.default_rng(seed), gap=(20, 40), indent=(0, 60), margin=40, paper=paper)
    return page


def read_page(page: Image.Image, checkpoint: Path = CHECKPOINT) -> list[tuple[tuple[int, int, int, int], str, float]]:
    """Each line found on the page: (box, text, confidence), top to bottom."""
    recognizer = Recognizer(checkpoint)
    prepared = recognizer.prepare_image(page)
    readings = recognizer.read_prepared(prepared.lines)
    boxes = prepared.boxes or [(0, 0, *prepared.size)]
    return [(tuple(box), r.text, r.confidence) for box, r in zip(boxes, readings)]


def draw(page: Image.Image, lines: list[tuple[tuple[int, int, int, int], str, float]]) -> Image.Image:
    """The page with numbered boxes, and the text read beneath it."""
    size = max(14, page.width // 55)
    font = ImageFont.load_default(size=size)
    small = ImageFont.load_default(size=int(0.8 * size))
    text_height = (len(lines) + 1) * int(1.6 * size) + size
    picture = Image.new("RGB", (page.width + 5 * size, page.height + text_height), "white")  # room for labels
    picture.paste(page.convert("RGB"), (0, 0))
    pen = ImageDraw.Draw(picture)
    for number, (box, _, confidence) in enumerate(lines, 1):
        pen.rectangle(box, outline=GREEN, width=3)
        pen.text((box[2] + 6, box[1]), f"{number}  {confidence:.0%}", fill=GREEN, font=small)
    y = page.height + size // 2
    pen.line([(20, y), (picture.width - 20, y)], fill=(200, 200, 200), width=2)
    for number, (_, text, _) in enumerate(lines, 1):
        y += int(1.6 * size)
        pen.text((30, y), f"{number}", fill=GREEN, font=font)
        pen.text((30 + 2 * size, y), text, fill=DARK, font=font)
    return picture


def recorded(path: Path) -> dict:
    """What a picture written by this script records: ``checkpoint_sha256`` and ``lines`` (the texts read)."""
    with Image.open(path) as picture:
        return {"checkpoint_sha256": picture.text["checkpoint_sha256"], "lines": json.loads(picture.text["lines"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reading.png")
    args = parser.parse_args()
    page = example_page()
    lines = read_page(page, args.checkpoint)
    info = PngImagePlugin.PngInfo()
    info.add_text("checkpoint_sha256", file_sha256(args.checkpoint))
    info.add_text("lines", json.dumps([text for _, text, _ in lines], ensure_ascii=False))
    picture = draw(page, lines)
    atomic_write(args.out, lambda f: picture.save(f, format="PNG", pnginfo=info, optimize=True))
    print(f"{args.out}: {len(lines)} lines read by {args.checkpoint.name}")
    for _, text, confidence in lines:
        print(f"  {confidence:.0%}  {text}")


if __name__ == "__main__":
    main()
