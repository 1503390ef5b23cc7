"""Reading speed (lines/s) of greedy and beam-search decoding: network + decoding + confidence, on real lines.

    python benchmarks/decode_speed.py --dataset ../shared/data/iam-dev --split validation --beam-width 16

Lines are preprocessed first (not timed); each decoder then reads all of them with ``Recognizer.read_prepared``
after one warm-up batch. Also prints the decoding-only speed from cached network outputs, and the CER.
"""

from __future__ import annotations

import argparse
import time

import torch

from htr.data import LineDataset, load_splits
from htr.evaluate import error_rates
from htr.inference import Recognizer
from htr.reading.preprocess import pad_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="handwriting_recognizer_best.pth")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--beam-width", type=int, nargs="+", default=[16])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {args.precision}")
    settings = [("greedy", 1)] + [("beam", width) for width in args.beam_width]
    for method, width in settings:
        recognizer = Recognizer(args.checkpoint, "cpu", args.precision, onnx=None, decoder=method,
                                beam_width=width)  # fmt: skip
        if method == "greedy":
            split = load_splits(args.dataset)[args.split]
            network, alphabet = recognizer.network, recognizer.alphabet
            dataset = LineDataset(split, alphabet, network.config.height, network.config.output_lengths, args.split,
                                  for_training=False)  # fmt: skip
            lines = [dataset[i][0].numpy() for i in range(len(dataset))]
            images, widths = pad_arrays(lines[: args.batch_size])
            # the network's output for one batch, decoded again and again below to time decoding alone
            log_probs = network(images)
        recognizer.read_prepared(lines[: args.batch_size], args.batch_size)  # warm-up
        start = time.perf_counter()
        readings = recognizer.read_prepared(lines, args.batch_size)
        seconds = time.perf_counter() - start
        decode_start = time.perf_counter()
        for _ in range(5):
            recognizer.decoder.paths(log_probs, network.config.output_lengths(widths), alphabet)
        decode_rate = 5 * len(widths) / (time.perf_counter() - decode_start)
        rates = error_rates(dataset.texts, [r.text for r in readings])
        print(
            f"{recognizer.decoder.describe():48s} {len(lines) / seconds:6.1f} lines/s "
            f"(decoding alone {decode_rate:7.1f} lines/s)  "
            f"CER {100 * rates['cer']:.2f}%  WER {100 * rates['wer']:.2f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
