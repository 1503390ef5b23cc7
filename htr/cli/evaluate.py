"""``htr evaluate`` (``python -m htr.evaluate``): its command line.

What it does: the docstring of `htr.evaluate`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import logging
import sys

from htr import evaluate as library
from htr.cli.options import (
    add_checkpoint_argument,
    add_decoder_arguments,
    add_device_arguments,
    check_decoder_arguments,
    command_name,
    decoder_options,
)
from htr.cpu_share import CpuShare
from htr.evaluate import confidence_halves, error_rates, read_split, write_lines


def main(argv: list[str] | None = None) -> int:
    from htr.checkpoint import CheckpointError, read_checkpoint
    from htr.data import DEFAULT_DATASET, DatasetSourceError, carve_validation, folder_split, load_splits, source_name
    from htr.hub import record_evaluation
    from htr.reading.decode import make_decoder
    from htr.runtime import resolve_device, resolve_precision

    parser = argparse.ArgumentParser(prog=command_name("htr.evaluate"), description=library.__doc__.split("\n\n")[0])
    add_checkpoint_argument(parser)
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="hub id or local path (see htr.data)")
    parser.add_argument("--split", default="test", help="train, validation or test (see above for datasets without)")
    parser.add_argument("--batch-size", type=int, default=32)
    add_device_arguments(parser, precision="fp32")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N lines (0: all)")
    parser.add_argument("--output", help="write per-line results to this TSV file")
    parser.add_argument("--record", action="store_true",
                        help="store the result in the checkpoint's metrics (its model card shows them)")  # fmt: skip
    add_decoder_arguments(parser, default="greedy")
    args = parser.parse_args(argv)
    check_decoder_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cpu_share = CpuShare(period=2.0)
    try:
        device = resolve_device(args.device)
        checkpoint = read_checkpoint(args.checkpoint)
        decoder = make_decoder(checkpoint, **decoder_options(args))
        splits, split_name, label = load_splits(args.dataset, carve=False), args.split, args.split
        if split_name not in splits and set(splits) == {"train"}:  # no splits of its own
            if split_name == "validation":
                splits["validation"] = carve_validation(splits["train"], 0.1, 0)[1]  # what htr.train holds out
            else:
                split_name, label = "train", "all lines (the dataset has no splits)"
        if split_name not in splits:
            raise DatasetSourceError(f"{args.dataset} has no '{args.split}' split (has {sorted(splits)})")
        references, readings = read_split(
            checkpoint, args.checkpoint, splits[split_name], decoder, device,
            resolve_precision(args.precision, device), split_name, args.batch_size, args.limit or None, cpu_share,
        )  # fmt: skip
    except (CheckpointError, DatasetSourceError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rates = error_rates(references, [r.text for r in readings])
    print(
        f"{label}: {len(references)} lines ({decoder.describe()})  "
        f"CER {100 * rates['cer']:.2f}%  WER {100 * rates['wer']:.2f}%"
    )
    halves = confidence_halves(references, readings)
    print(
        f"  by confidence: lower half CER {100 * halves['low']['cer']:.2f}%, "
        f"upper half CER {100 * halves['high']['cer']:.2f}%"
    )
    if args.output:
        write_lines(args.output, references, readings)
    if args.record:
        dataset, split = source_name(args.dataset), split_name if label == args.split else "all"
        if split == "all" and (named := folder_split(args.dataset)):  # e.g. letters/validation: that split, whole
            dataset, split = named
        entry = {"dataset": dataset, "split": split, "lines": len(references),
                 "decoder": decoder.describe(), "cer": rates["cer"], "wer": rates["wer"]}  # fmt: skip
        if args.limit:
            entry["limit"] = args.limit
        try:
            record_evaluation(args.checkpoint, entry)
        except (CheckpointError, OSError) as error:
            print(f"error: cannot record the result: {error}", file=sys.stderr)
            return 2
        print(f"  recorded in {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
