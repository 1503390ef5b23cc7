"""``htr train-lines`` (``python -m htr.train_line_detector``): train the line finder on pages with line polygons
(PAGE/ALTO), composed pages and composed letters; re-run to resume. See `htr.train_line_detector`."""

from __future__ import annotations

import argparse
import sys

from htr import train_line_detector
from htr.cli.options import add_device_arguments, command_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("htr.train_line_detector"), description=train_line_detector.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pages", action="append", default=[], help="folder of PAGE/ALTO files with images")
    parser.add_argument("--composed", action="append", default=[], help="line dataset to compose pages from")
    parser.add_argument("--composed-pages", type=int, default=300)
    parser.add_argument("--composed-letters", type=int, default=0,
                        help="letters per --composed dataset: letterhead, corner lines, body, signature")  # fmt: skip
    parser.add_argument("--output", required=True, help="the detector file to write")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--width",
        type=int,
        help="channels of the first level (default 16; with --init-from: its "
        "width, or wider: the trained finder widened so that it starts out computing the same map)",
    )
    parser.add_argument("--init-from", help="start from this finder's weights (fine-tuning)")
    parser.add_argument("--held-out", type=float, default=0.06)
    parser.add_argument("--keep-by", choices=["pages", "collections"], default="pages",
                        help="the held-out F1 that picks the best state and threshold: over all held-out lines "
                        "(pages), or the mean of each collection's F1 (collections: each --pages folder, or each "
                        "subfolder of one, and the composed pages)")  # fmt: skip
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="validate and save an exponential moving average of the weights (e.g. 0.998); 0: off",
    )
    add_device_arguments(parser)
    return train_line_detector.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
