"""``htr average`` (``python -m htr.training.average_checkpoints``): its command line.

What it does: the docstring of `htr.training.average_checkpoints`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htr.checkpoint import CheckpointError, atomic_save, read_checkpoint
from htr.cli.options import command_name
from htr.training import average_checkpoints as library
from htr.training.average_checkpoints import average_checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("htr.training.average_checkpoints"), description=library.__doc__.split("\n\n")[0]
    )
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or model folders of one architecture")
    parser.add_argument(
        "--weights",
        nargs="+",
        type=float,
        metavar="W",
        help="one weight per checkpoint (scaled to sum to 1; default: equal); e.g. 0.4 0.6: a base and its fine-tune",
    )
    parser.add_argument("--output", "-o", required=True, help="where to write the averaged checkpoint (.pth)")
    args = parser.parse_args(argv)
    try:
        checkpoints = [read_checkpoint(path) for path in args.checkpoints]
        averaged = average_checkpoints(checkpoints, [Path(path).as_posix() for path in args.checkpoints], args.weights)
        atomic_save(averaged, args.output)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kind, characters = "weighted mean" if args.weights else "mean", len(averaged["alphabet"])
    print(f"wrote {args.output}: the {kind} of {len(checkpoints)} checkpoints' weights ({characters} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
