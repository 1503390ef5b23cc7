"""``htr lm`` (``python -m htr.lm``): its command line.

What it does: the docstring of `htr.lm`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htr import lm as library
from htr.cli.options import command_name
from htr.lm import SMOOTHINGS, CharLM, build_lm, choose_interpolation, drop_overlapping, interpolate, load_lm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=command_name("htr.lm"), description=library.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a character n-gram LM from text")
    build.add_argument("texts", nargs="*", metavar="TEXT", help="text files, one line of text per line")
    build.add_argument("--dataset", action="append", default=[],
                       help="also use the texts of this dataset's split (see htr.data); repeatable")  # fmt: skip
    build.add_argument("--split", default="train", help="the split of --dataset (default: train)")
    build.add_argument("--ink", metavar="IAMONDB", help="also use the texts of an IAM-OnDB folder or archive")
    build.add_argument(
        "--exclude-split", metavar="SPLIT",
        help="leave out lines sharing a 20-character passage with this split of the first --dataset (e.g. validation)",
    )  # fmt: skip
    build.add_argument("--order", type=int, default=6)
    build.add_argument("--smoothing", choices=SMOOTHINGS, default="kn", help="Kneser-Ney or Witten-Bell")
    build.add_argument("--mix-with", metavar="LM",
                       help="interpolate the new model with this one (an ARPA file or a checkpoint with an LM), e.g. "
                       "a base model's LM and the LM of a new collection's text")  # fmt: skip
    build.add_argument("--mix-weight", default="auto",
                       help="the new model's weight in the mixture, or auto (default): the weight that gives the "
                       "validation texts of --choose-on the lowest perplexity")  # fmt: skip
    build.add_argument("--choose-on", action="append", default=[], metavar="DATASET",
                       help="with --mix-weight auto: a dataset whose validation text chooses the weight; "
                       "repeatable")  # fmt: skip
    build.add_argument("-o", "--output", help="write the model as an ARPA file")
    build.add_argument("--into", metavar="CHECKPOINT", help="store the model inside this checkpoint")
    score = commands.add_parser("perplexity", help="per-character perplexity of text files")
    score.add_argument("lm", help="ARPA file or checkpoint")
    score.add_argument("texts", nargs="+", metavar="TEXT")
    args = parser.parse_args(argv)
    from htr.synth.synthetic import read_text_lines  # the project's text-file reader (whitespace collapsed)

    try:
        if args.command == "perplexity":
            print(f"perplexity {load_lm(args.lm).perplexity(read_text_lines(args.texts)):.4f}")
            return 0
        if not (args.output or args.into):
            parser.error("give -o ARPA and/or --into CHECKPOINT")
        texts = read_text_lines(args.texts)
        from htr.data import load_splits, normalize_text

        splits = None  # the first dataset's: --exclude-split refers to it
        for number, dataset in enumerate(args.dataset):
            found = load_splits(dataset, carve=number == 0)  # the others lose no lines to a carved validation
            splits = found if splits is None else splits
            texts += [t for t in map(normalize_text, found[args.split]["text"]) if t]
        if args.ink:
            from htr.synth.iamondb import load_iamondb

            texts += [line.text for line in load_iamondb(args.ink)]
        if args.exclude_split:
            if not args.dataset:
                parser.error("--exclude-split needs --dataset")
            count = len(texts)
            texts = drop_overlapping(texts, map(normalize_text, splits[args.exclude_split]["text"]))
            print(f"left out {count - len(texts)} lines sharing a passage with {args.exclude_split}")
        lm = build_lm(texts, args.order, args.smoothing)
        print(f"{len(texts)} lines -> {args.order}-gram {args.smoothing}: {len(lm.logprobs)} n-grams")
        if args.mix_with:
            lm = mixed(lm, args, parser)
        if args.output:
            Path(args.output).write_text(lm.to_arpa(), encoding="utf-8")
        if args.into:
            from htr.hub import store_lm

            store_lm(args.into, lm)
    except Exception as error:  # one clear line at the command-line edge
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return 0


def mixed(lm: CharLM, args: argparse.Namespace, parser: argparse.ArgumentParser) -> CharLM:
    """``lm`` interpolated with ``--mix-with`` at ``--mix-weight`` (auto: chosen on the ``--choose-on`` validation
    texts), saying the weight and the perplexities."""
    from htr.data import load_validation, normalize_text

    other = load_lm(args.mix_with)
    if args.mix_weight == "auto":
        if not args.choose_on:
            parser.error("--mix-weight auto needs --choose-on DATASET (or give the weight)")
        held_out = [t for d in args.choose_on for t in map(normalize_text, load_validation(d)["text"]) if t]
        weight, perplexities = choose_interpolation(lm, other, held_out)
        print(f"perplexity of {len(held_out)} validation lines by weight: "
              + ", ".join(f"{w}: {p:.3f}" for w, p in perplexities.items()))  # fmt: skip
    else:
        weight = float(args.mix_weight)
    print(f"mixed with {args.mix_with} at weight {weight} (the new model's)")
    return interpolate(lm, other, weight)


if __name__ == "__main__":
    sys.exit(main())
