"""How well word boxes (``htr.reading.positions``) fit: rendered lines whose words' true boxes are known, and the cost.

    python benchmarks/word_boxes.py --lines 150
    python benchmarks/word_boxes.py --dataset ../shared/data/iam-dev --split validation   # + cost on real lines

Lines of IAM-like text (``--texts``, one per line; default: sentences built into the script) are drawn in each
bundled handwriting font in turn (``htr.synth.render.render_text_with_words``, random size, slant, rotation and scan
noise, seeded), read by the model, and each true word box is matched to the found word box that overlaps it most:
prints the share of words with IoU >= 0.5 (and the mean IoU) per decoder. With ``--dataset``, also the time
``Recognizer.read_prepared`` takes over the split's lines with and without positions (alignment + layout).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from htr.inference import Recognizer
from htr.metrics import box_iou
from htr.synth.render import list_fonts, render_text_with_words

SENTENCES = [
    "A MOVE to stop Mr. Gaitskell from nominating any more Labour life Peers",
    "is to be made at a meeting of Labour MPs tomorrow.",
    "He said that the company would have to look again at its plans",
    "The garden needs water before the sun is high",
    "she had been waiting for him at the station since noon",
    "Though they were old friends, neither of them spoke first",
]


def word_fit(recognizer: Recognizer, texts: list[str], count: int, seed: int) -> tuple[float, float, int]:
    """(share of true words with IoU >= 0.5, mean best IoU, words) over ``count`` rendered lines."""
    rng = np.random.default_rng(seed)
    fonts = list_fonts()
    best = []
    for k in range(count):
        text = texts[int(rng.integers(len(texts)))]
        image, truth = render_text_with_words(text, fonts[k % len(fonts)], rng, height=int(rng.integers(40, 120)))
        layout = recognizer.read_page(image, "never").lines[0]
        best += [max((box_iou(t, w.box) for w in layout.words), default=0.0) for t in truth]
    scores = np.array(best)
    return float((scores >= 0.5).mean()), float(scores.mean()), len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="handwriting_recognizer_best.pth")
    parser.add_argument("--texts", help="text file, one line of text per line (default: built-in sentences)")
    parser.add_argument("--lines", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", help="also time positions over this dataset's lines")
    parser.add_argument("--split", default="validation")
    args = parser.parse_args()
    texts = SENTENCES
    if args.texts:
        texts = [
            t.strip() for t in Path(args.texts).read_text(encoding="utf-8").splitlines() if 20 < len(t.strip()) < 70
        ]
    for decoder in ("greedy", "beam"):
        recognizer = Recognizer(args.checkpoint, "cpu", decoder=decoder)
        share, mean, words = word_fit(recognizer, texts, args.lines, args.seed)
        print(f"{decoder}: {100 * share:.1f}% of {words} words found with IoU >= 0.5 (mean IoU {mean:.3f})")
        if args.dataset:
            from htr.data import decode_row_image, load_splits

            split = load_splits(args.dataset)[args.split]
            prepared = [recognizer.prepare_image(decode_row_image(row["image"]), "never") for row in split]
            lines = [p.lines[0] for p in prepared]
            recognizer.read_prepared(lines[:16])  # warm-up
            for with_positions in (False, True, False, True):
                start = time.perf_counter()
                readings = recognizer.read_prepared(lines, with_positions=with_positions)
                if with_positions:
                    for p, r in zip(prepared, readings):
                        recognizer.page(p, [r])
                took = time.perf_counter() - start
                print(f"  {len(lines)} lines {'with' if with_positions else 'without'} positions: {took:.2f} s")


if __name__ == "__main__":
    main()
