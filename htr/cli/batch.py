"""``htr batch`` (``python -m htr.batch``): its command line.

What it does: the docstring of `htr.batch`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import sys

from htr import batch as library
from htr.cli.options import (
    add_checkpoint_argument,
    add_decoder_arguments,
    add_device_arguments,
    check_decoder_arguments,
    command_name,
    decoder_options,
)


def main(argv: list[str] | None = None) -> int:
    from htr.batch import FORMATS, BatchConfig, BatchInputError, parse_shard, run

    parser = argparse.ArgumentParser(prog=command_name("htr.batch"), description=library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("inputs", help="a folder, a glob pattern (quoted), a manifest of paths or a parquet file")
    parser.add_argument("--output", required=True, help="folder for the outputs (mirroring the input) and summary")
    parser.add_argument("--format", choices=sorted(FORMATS), default="json", help="one file per image (json)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="read only the I-th of N shares (by path hash)")
    parser.add_argument("--summary", default="", help="the summary table: .jsonl or .parquet (default: "
                        "OUTPUT/summary.jsonl, or summary-I-of-N.jsonl for a shard)")  # fmt: skip
    parser.add_argument("--segment", choices=["auto", "never", "always"], default="auto",
                        help="split images into lines (auto: when an image holds more than one)")  # fmt: skip
    add_checkpoint_argument(parser)
    add_device_arguments(parser)
    add_decoder_arguments(parser, default="auto")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: this process; ray: a Ray Data pipeline (pip install 'htr[ray]')")  # fmt: skip
    engine.add_argument("--actors", type=int, default=2, help="ray: reading actors (each loads the model once)")
    engine.add_argument(
        "--cpus-per-actor",
        type=float,
        default=0.0,
        help="ray: CPUs each actor holds (default: the cluster's CPUs shared between them)",
    )
    engine.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: GPUs each actor holds")
    args = parser.parse_args(argv)
    check_decoder_arguments(parser, args)
    if args.actors < 1:
        parser.error("--actors must be at least 1")
    try:
        shard = parse_shard(args.shard)
    except ValueError as error:
        parser.error(str(error))
    cfg = BatchConfig(inputs=args.inputs, output=args.output, format=args.format, shard=shard, summary=args.summary,
                      segment=args.segment, checkpoint=args.checkpoint, device=args.device, precision=args.precision,
                      decoder=decoder_options(args), engine=args.engine, actors=args.actors,
                      cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor)  # fmt: skip
    try:
        counts, summary = run(cfg)
    except (BatchInputError, ValueError, OSError, ImportError) as error:  # CheckpointError is a ValueError
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: re-run the same command to go on ({args.output})", file=sys.stderr)
        return 130
    print(f"read {counts.read}, skipped {counts.skipped} (done before), failed {counts.failed}; summary: {summary}")
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
