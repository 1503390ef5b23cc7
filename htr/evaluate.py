"""Character and word error rates of a checkpoint on a dataset split.

    python -m htr.evaluate --checkpoint handwriting_recognizer_best.pth \\
        --dataset Teklia/IAM-line --split test --output results.tsv
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys

import torch

from htr.alphabet import Alphabet
from htr.data import LineDataset
from htr.inference import transcribe
from htr.metrics import cer, char_errors, wer, word_errors
from htr.model import CRNN

log = logging.getLogger(__name__)


def transcribe_dataset(
    model: CRNN, dataset: LineDataset, alphabet: Alphabet, batch_size: int,
    device: torch.device, dtype: torch.dtype | None = None,
) -> list[str]:  # fmt: skip
    """Greedy transcriptions of every line of ``dataset``, in dataset order."""
    was_training = model.training
    model.eval()
    hypotheses = transcribe(model, alphabet, dataset.widths, lambda i: dataset[i][0], batch_size, device, dtype)
    model.train(was_training)
    return hypotheses


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    return {"cer": cer(references, hypotheses), "wer": wer(references, hypotheses)}


def write_lines(path: str, references: list[str], hypotheses: list[str]) -> None:
    """Per-line results as TSV: reference, hypothesis, character and word errors."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["reference", "hypothesis", "char_errors", "ref_chars", "word_errors", "ref_words"])
        for ref, hyp in zip(references, hypotheses):
            writer.writerow([ref, hyp, char_errors(ref, hyp), len(ref), word_errors(ref, hyp), len(ref.split())])


def main(argv: list[str] | None = None) -> int:
    from htr.checkpoint import CheckpointError, load_model
    from htr.data import DEFAULT_DATASET, DatasetSourceError, load_splits
    from htr.runtime import resolve_device, resolve_precision

    parser = argparse.ArgumentParser(prog="python -m htr.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="handwriting_recognizer_best.pth", help="model checkpoint")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="hub id or local path (see htr.data)")
    parser.add_argument("--split", default="test", help="train, validation or test")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N lines (0: all)")
    parser.add_argument("--output", help="write per-line results to this TSV file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        device = resolve_device(args.device)
        model, alphabet = load_model(args.checkpoint, device)
        splits = load_splits(args.dataset)
        if args.split not in splits:
            raise DatasetSourceError(f"{args.dataset} has no '{args.split}' split (has {sorted(splits)})")
        dataset = LineDataset(
            splits[args.split], alphabet, model.config.height,
            model.output_length, args.split,
            limit=args.limit or None, for_training=False,
        )  # fmt: skip
    except (CheckpointError, DatasetSourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hypotheses = transcribe_dataset(
        model, dataset, alphabet, args.batch_size, device, resolve_precision(args.precision, device)
    )
    rates = error_rates(dataset.texts, hypotheses)
    print(f"{args.split}: {len(dataset)} lines  CER {100 * rates['cer']:.2f}%  WER {100 * rates['wer']:.2f}%")
    if args.output:
        write_lines(args.output, dataset.texts, hypotheses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
