"""Lines photographed instead of scanned: CER of the same lines clean and put through `htr.synth.render.photo_finish`.

    python benchmarks/photo_lines.py --dataset ../shared/data/iam-dev --split validation

Each line of the split is read as it is and after a simulated phone photo (a shadow across it, faded ink,
warm paper, a slight perspective tilt, blur, JPEG; seeded by the line's position), with predict.py's
preprocessing (``--segment auto``, as predict.py reads any image). Prints CER and WER of both and their ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from htr.data import decode_row_image, load_splits, normalize_text
from htr.inference import Recognizer
from htr.metrics import cer, wer
from htr.synth.render import photo_finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="handwriting_recognizer_best.pth")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--decoder", default="greedy")
    parser.add_argument("--limit", type=int, default=0, help="only the first N lines (0: all)")
    parser.add_argument("--save", type=int, default=0, help="write the first N photos to photo_lines/ to look at")
    args = parser.parse_args()
    split = load_splits(args.dataset)[args.split]
    if args.limit:
        split = split.select(range(min(args.limit, len(split))))
    texts = [normalize_text(t) for t in split["text"]]
    recognizer = Recognizer(args.checkpoint, "cpu", decoder=args.decoder)
    results = {}
    for name in ("clean", "photo"):
        inputs, counts = [], []
        for i, cell in enumerate(split["image"]):
            image = decode_row_image(cell)
            if name == "photo":
                image = photo_finish(image, np.random.default_rng([7, i]))
                if i < args.save:
                    Path("photo_lines").mkdir(exist_ok=True)
                    image.save(f"photo_lines/{i:03d}.jpg")
            found, _ = recognizer.prepare_lines(image, "auto")
            inputs += found
            counts.append(len(found))
        readings = iter(recognizer.read_prepared(inputs))
        hypotheses = [" ".join(next(readings).text for _ in range(count)) for count in counts]
        results[name] = (cer(texts, hypotheses), wer(texts, hypotheses), sum(c > 1 for c in counts))
    (clean_cer, clean_wer, _), (photo_cer, photo_wer, split_photos) = results["clean"], results["photo"]
    print(f"{len(texts)} lines, {recognizer.runtime}, {recognizer.decoder.describe()}: clean CER "
          f"{100 * clean_cer:.2f}% WER {100 * clean_wer:.2f}%; photographed CER {100 * photo_cer:.2f}% WER "
          f"{100 * photo_wer:.2f}% "
          f"(CER ratio {photo_cer / clean_cer:.2f}; {split_photos} photos read as several lines)")  # fmt: skip


if __name__ == "__main__":
    main()
