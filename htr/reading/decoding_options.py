"""Decoder defaults and their command-line options, shared by predict.py and htr.evaluate (no heavy imports)."""

from __future__ import annotations

import argparse

DECODERS = ("greedy", "beam")
# Tuned for the shipped model on iam-dev/validation only (README, "Decoding").
DEFAULT_BEAM_WIDTH = 16
DEFAULT_LM_WEIGHT = 0.8
DEFAULT_INSERTION_BONUS = 1.5


def add_decoder_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """``--decoder``, ``--beam-width``, ``--lm``, ``--lm-weight``, ``--insertion-bonus``."""
    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--decoder", choices=("auto",) + DECODERS, default=default,
        help="greedy (best path), beam (prefix beam search with the language model), or auto: beam when the "
        f"checkpoint carries a language model, else greedy (default: {default})",
    )  # fmt: skip
    group.add_argument("--beam-width", type=int, default=DEFAULT_BEAM_WIDTH, help="beam search width")
    group.add_argument(
        "--lm", default="auto", metavar="PATH|none",
        help="character LM for beam search: an ARPA file or a checkpoint with one; none: no LM; "
        "auto (default): the checkpoint's own",
    )  # fmt: skip
    group.add_argument("--lm-weight", type=float, default=DEFAULT_LM_WEIGHT, help="weight of the LM log probability")
    group.add_argument(
        "--insertion-bonus", type=float, default=DEFAULT_INSERTION_BONUS, help="score added per character (beam)"
    )


def check_decoder_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.beam_width < 1:
        parser.error("--beam-width must be at least 1")


def decoder_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for ``htr.inference.Recognizer`` / ``load_decoder``."""
    return {
        "decoder": args.decoder, "beam_width": args.beam_width, "lm": args.lm,
        "lm_weight": args.lm_weight, "insertion_bonus": args.insertion_bonus,
    }  # fmt: skip
