"""Reading pages: CER of whole pages read as predict.py reads them vs the same lines cut out and read one by one.

    python benchmarks/page_reading.py --dataset ../shared/data/iam-dev --split validation --lines-per-page 4
    python benchmarks/page_reading.py --pages ../shared/data/hooker-letters/validation

``--dataset``: pages stack consecutive lines of one writer with random gaps (4–40 px) and left offsets (0–80 px) on
white paper; each page is read with ``--segment auto`` (as predict.py does) and its text compared, words joined by
spaces, with the references. Also counts single lines that auto-segmentation would wrongly split.
``--pages``: real page images with their PAGE/ALTO files (a Transkribus or eScriptorium export); each page is read
with ``--segment always`` and its text (lines in the order found, joined by spaces) compared with its transcribed
lines in their reading order; "one by one" reads the transcribed lines cut out by their polygons, as training
and ``htr.evaluate`` cut them. Page CER counts reading-order differences as errors.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from htr.data import decode_row_image, load_splits, normalize_text
from htr.inference import Recognizer
from htr.metrics import cer, wer
from htr.shipped import default_checkpoint
from htr.synth.render import compose_page


def real_pages(args: argparse.Namespace) -> None:
    """Page CER of real pages (``--pages``) against their transcribed lines read one by one."""
    from htr.pages.page_xml import cut_line, find_image, read_page
    from htr.reading.preprocess import load_image, to_grayscale

    pages = []  # (image, line crops, reference page text)
    for xml_path in sorted(Path(args.pages).rglob("*.xml")):
        page = read_page(xml_path)
        image_path = find_image(xml_path, page.image)
        lines = [line for line in page.lines if normalize_text(line.text)]
        if image_path is None or not lines:
            continue
        image = load_image(image_path)
        gray = to_grayscale(image)
        width, height = page.size or (gray.shape[1], gray.shape[0])
        sx, sy = gray.shape[1] / width, gray.shape[0] / height
        crops = [cut_line(gray, [(x * sx, y * sy) for x, y in line.polygon]) for line in lines]
        kept = [(crop, normalize_text(line.text)) for crop, line in zip(crops, lines) if crop is not None]
        pages.append((image, [Image.fromarray(c) for c, _ in kept], [t for _, t in kept]))
    for decoder in args.decoder:
        finder = None if args.line_finder == "classical" else args.line_finder
        recognizer = Recognizer(args.checkpoint, "cpu", line_finder=finder, decoder=decoder)
        page_texts, one_by_one, found_lines = [], [], 0
        for image, crops, _ in pages:
            prepared = recognizer.prepare_image(image, "always")
            found_lines += len(prepared.lines)
            page_texts.append(" ".join(r.text for r in recognizer.read_prepared(prepared.lines)))
            one_by_one.append(" ".join(r.text for r in recognizer.read([*crops])))
        references = [" ".join(texts) for _, _, texts in pages]
        page_cer, line_cer = cer(references, page_texts), cer(references, one_by_one)
        print(f"{recognizer.decoder.describe()}: {len(pages)} pages, {sum(len(t) for *_, t in pages)} transcribed "
              f"lines, {found_lines} found; CER {100 * page_cer:.2f}% as pages vs {100 * line_cer:.2f}% line crops "
              f"(ratio {page_cer / line_cer:.2f}); WER {100 * wer(references, page_texts):.2f}% vs "
              f"{100 * wer(references, one_by_one):.2f}%", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=default_checkpoint())
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a line dataset: pages composed of its lines")
    source.add_argument("--pages", help="a folder of page images with their PAGE/ALTO files")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--lines-per-page", type=int, default=4)
    parser.add_argument("--decoder", nargs="+", default=["greedy", "beam"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--line-finder", default="auto", help="a trained line finder, auto (the shipped one) or classical"
    )
    args = parser.parse_args()
    if args.pages:
        real_pages(args)
        return
    split = load_splits(args.dataset)[args.split]
    images = [decode_row_image(row) for row in split["image"]]
    texts = [normalize_text(t) for t in split["text"]]
    writers = split["writer"] if "writer" in split.column_names else ["?"] * len(texts)
    by_writer = defaultdict(list)
    for i, writer in enumerate(writers):
        by_writer[writer].append(i)
    n = args.lines_per_page
    pages = [idx[k : k + n] for idx in by_writer.values() for k in range(0, len(idx) - n + 1, n)]
    rng = np.random.default_rng(args.seed)
    composed = [compose_page([images[i] for i in page], rng) for page in pages]
    for decoder in args.decoder:
        finder = None if args.line_finder == "classical" else args.line_finder
        recognizer = Recognizer(args.checkpoint, "cpu", line_finder=finder, decoder=decoder)
        single_lines, split_lines = [], 0
        for image in images:
            found, boxes = recognizer.prepare_lines(image, "auto")
            split_lines += boxes is not None
            single_lines.append(recognizer.prepare(image))
        singles = [r.text for r in recognizer.read_prepared(single_lines)]
        page_inputs, counts = [], []
        for page_image, _ in composed:
            found, _ = recognizer.prepare_lines(page_image, "auto")
            page_inputs += found
            counts.append(len(found))
        readings = iter(recognizer.read_prepared(page_inputs))
        page_texts = [" ".join(next(readings).text for _ in range(count)) for count in counts]
        references = [" ".join(texts[i] for i in page) for page in pages]
        one_by_one = [" ".join(singles[i] for i in page) for page in pages]
        page_cer, line_cer = cer(references, page_texts), cer(references, one_by_one)
        print(
            f"{recognizer.decoder.describe()}: {len(pages)} pages of {n} lines, {sum(c == n for c in counts)} "
            f"segmented into exactly {n}; CER {100 * page_cer:.2f}% as pages vs {100 * line_cer:.2f}% one by one "
            f"(ratio {page_cer / line_cer:.2f}); WER {100 * wer(references, page_texts):.2f}% vs "
            f"{100 * wer(references, one_by_one):.2f}%; single lines split by auto: {split_lines} of {len(images)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
