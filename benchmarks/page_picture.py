"""Draw the lines predict.py finds on one page of the real-page benchmark (the README's and notebook's picture).

    python benchmarks/page_picture.py --data data/real-pages --collection CREMMA-AN-TestamentsDePoilus --page 13 \\
        --out docs/real_page.jpg --example examples/real_page.jpg

Found lines in red, the collection's ground-truth lines in thin green; ``--example`` also writes the page itself,
shrunk, for the notebook and for trying ``predict.py`` on a real page (the page's licence: see the manifest).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from htr.pages.segment import page_lines
from htr.reading.preprocess import load_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the folder page_segmentation.py extract wrote")
    parser.add_argument("--collection", default="CREMMA-AN-TestamentsDePoilus")
    parser.add_argument("--page", type=int, default=13, help="index in the manifest's list of the collection")
    parser.add_argument("--line-finder", default=str(ROOT / "line_finder.pt"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "real_page.jpg"))
    parser.add_argument("--example", help="also write the page itself, shrunk, here")
    parser.add_argument("--side", type=int, default=1100, help="long side of the written images")
    args = parser.parse_args()
    from benchmarks.page_segmentation import MANIFEST, read_lines
    from htr.pages.line_finder import LineFinder

    manifest = json.loads(MANIFEST.read_text())
    collection = next(c for c in manifest["collections"] if c["repo"].endswith("/" + args.collection))
    page = collection["pages"][args.page]
    folder = Path(args.data) / args.collection
    image = load_image(folder / page["image"]).convert("RGB")
    truth, _, _ = read_lines(folder / page["xml"])
    found = [line.box for line in page_lines(image, LineFinder(args.line_finder))]
    if args.example:
        shrunk = image.copy()
        shrunk.thumbnail((args.side, args.side), Image.Resampling.LANCZOS)
        shrunk.save(args.example, quality=85)
    draw = ImageDraw.Draw(image)
    width = max(2, image.width // 400)
    for box in truth:
        draw.rectangle(box, outline=(0, 170, 0), width=width)
    for box in found:
        draw.rectangle(box, outline=(220, 0, 0), width=2 * width)
    image.thumbnail((args.side, args.side), Image.Resampling.LANCZOS)
    image.save(args.out, quality=85)
    print(f"{args.out}: {collection['repo']}@{collection['commit'][:8]} {page['image']} ({collection['licence']}): "
          f"{len(found)} lines found, {len(truth)} in the ground truth")  # fmt: skip


if __name__ == "__main__":
    main()
