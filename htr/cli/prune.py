"""``htr prune`` (``python -m htr.training.prune_blocks``): its command line.

What it does: the docstring of `htr.training.prune_blocks`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from htr.checkpoint import CheckpointError, atomic_save, model_from_checkpoint, read_checkpoint
from htr.cli.options import command_name
from htr.model import count_parameters
from htr.training import prune_blocks as library
from htr.training.prune_blocks import prune_blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("htr.training.prune_blocks"), description=library.__doc__.split("\n\n")[0]
    )
    parser.add_argument("checkpoint", help="the trained checkpoint file or model folder")
    parser.add_argument("--cnn", required=True, help='the smaller CNN as JSON, e.g. \'["M", [1, 64], "Mh", ...]\'')
    parser.add_argument("--output", "-o", required=True, help="where to write the pruned checkpoint (.pth)")
    args = parser.parse_args(argv)
    try:
        cnn = json.loads(args.cnn)
        pruned = prune_blocks(read_checkpoint(args.checkpoint), cnn)
        model, _ = model_from_checkpoint(pruned, args.output)
        atomic_save(pruned, args.output)
    except json.JSONDecodeError as error:
        print(f"error: --cnn is not JSON: {error}", file=sys.stderr)
        return 2
    except (CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    source = Path(args.checkpoint).name
    print(f"wrote {args.output}: {count_parameters(model):,} parameters, cnn {json.dumps(cnn)} (from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
