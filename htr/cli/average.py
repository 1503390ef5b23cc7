"""Average the weights of checkpoints of one model: sittings continued from one another, or one run's states.

Models that share a starting point lie in one basin of the loss; the mean of their weights usually reads at
least as well as the best of them (stochastic weight averaging, Izmailov et al. 2018). Batch-norm statistics are
averaged like the weights; the alphabet, architecture and LM are the first checkpoint's, and its measured
metrics are dropped (they described other weights: measure again with ``htr.evaluate --record``)::

    python -m htr.training.average_checkpoints runs/a/handwriting_recognizer_best.pth \
        runs/b/handwriting_recognizer_best.pth --output averaged.pth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htr.checkpoint import CheckpointError, atomic_save, read_checkpoint
from htr.cli.options import command_name
from htr.training.average_checkpoints import average_checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("htr.training.average_checkpoints"), description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or model folders of one architecture")
    parser.add_argument("--output", "-o", required=True, help="where to write the averaged checkpoint (.pth)")
    args = parser.parse_args(argv)
    try:
        checkpoints = [read_checkpoint(path) for path in args.checkpoints]
        averaged = average_checkpoints(checkpoints, [Path(path).as_posix() for path in args.checkpoints])
        atomic_save(averaged, args.output)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: the mean of {len(checkpoints)} checkpoints' weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
