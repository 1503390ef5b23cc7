"""Grid-search beam width, LM weight and insertion bonus on one split (tune on validation only).

    python benchmarks/tune_decoder.py --dataset ../shared/data/iam-dev --split validation \\
        --lm iam.arpa --beam-width 16 --lm-weight 0.3 0.5 0.7 --insertion-bonus 0 0.5 1

The network runs once (fp32); every decoder setting then decodes the cached outputs. Prints CER, WER and
decoding speed (lines/s, decoding only) per setting, greedy first.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from htr.checkpoint import model_from_checkpoint, read_checkpoint
from htr.data import LineDataset, load_splits
from htr.evaluate import error_rates
from htr.reading.decode import Decoder, make_decoder
from htr.reading.preprocess import pad_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="handwriting_recognizer_best.pth")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--lm", default="auto", help="ARPA file or checkpoint with an LM; auto: the checkpoint's")
    parser.add_argument("--beam-width", type=int, nargs="+", default=[16])
    parser.add_argument("--lm-weight", type=float, nargs="+", default=[0.5])
    parser.add_argument("--insertion-bonus", type=float, nargs="+", default=[0.5])
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    checkpoint = read_checkpoint(args.checkpoint)
    model, alphabet = model_from_checkpoint(checkpoint, args.checkpoint)
    split = load_splits(args.dataset)[args.split]
    dataset = LineDataset(split, alphabet, model.config.height, model.output_length, args.split, for_training=False)
    outputs = []
    for start in range(0, len(dataset), 32):
        images, widths = pad_batch([dataset[i][0] for i in range(start, min(start + 32, len(dataset)))])
        log_probs, _ = model(images)
        outputs.append((log_probs, model.output_lengths(widths)))
    lm = make_decoder(checkpoint, "beam", lm=args.lm).lm

    def run(decoder: Decoder) -> None:
        start = time.perf_counter()
        texts = [alphabet.decode(p) for lp, n in outputs for p in decoder.paths(lp, n, alphabet)]
        seconds = time.perf_counter() - start
        rates = error_rates(dataset.texts, texts)
        print(
            f"{decoder.describe():48s} CER {100 * rates['cer']:6.2f}%  WER {100 * rates['wer']:6.2f}%  "
            f"{len(texts) / seconds:7.1f} lines/s",
            flush=True,
        )

    run(Decoder("greedy"))
    for width, weight, bonus in itertools.product(args.beam_width, args.lm_weight, args.insertion_bonus):
        run(Decoder("beam", width, lm if weight else None, weight, bonus))


if __name__ == "__main__":
    main()
