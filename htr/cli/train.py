"""``htr train`` (``python -m htr.train``): its command line.

What it does: the docstring of `htr.train`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys

from htr import train as library
from htr.checkpoint import CheckpointError
from htr.cli.options import command_name
from htr.train import TrainConfig, train


def add_dataclass_arguments(parser: argparse.ArgumentParser, config: object, prefix: str = "") -> None:
    """One ``--option`` per dataclass field, default from ``config``; nested dataclasses get a prefix."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            add_dataclass_arguments(parser, value, prefix=f"{prefix}{f.name}-")
            continue
        if f.name == "num_classes":
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        dest = (prefix + f.name).replace("-", "_")
        if f.metadata.get("repeat"):
            parser.add_argument(flag, dest=dest, action="append", default=None, help=f"repeatable; default: {value}")
        elif isinstance(value, bool):
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, list):
            parser.add_argument(flag, dest=dest, type=json.loads, default=value, help=f"JSON, default {value}")
        else:
            parser.add_argument(flag, dest=dest, type=type(value), default=value, help=f"default: {value}")


def config_from_arguments(args: argparse.Namespace, config: object, prefix: str = "") -> object:
    """Inverse of `add_dataclass_arguments`."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            values[f.name] = config_from_arguments(args, value, prefix=f"{prefix}{f.name}_")
        elif f.name != "num_classes":
            given = getattr(args, prefix + f.name)
            values[f.name] = value if given is None and f.metadata.get("repeat") else given
    return dataclasses.replace(config, **values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=command_name("htr.train"),
        description=library.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_arguments(parser, TrainConfig())
    cfg = config_from_arguments(parser.parse_args(argv), TrainConfig())
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING, format="%(message)s")
    from htr.data import DatasetSourceError

    try:
        result = train(cfg)
    except (DatasetSourceError, CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if not main_rank:
        return 0
    if math.isinf(result["best_cer"]):
        print("no validation yet (stopped inside the first epoch); re-run to resume")
    else:
        print(f"best validation CER {100 * result['best_cer']:.2f}%: {result['best_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
