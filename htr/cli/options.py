"""Options every command shares, declared once: the model (``--checkpoint``, by default the shipped one), the device
and precision, and decoding; and the name a command goes by in its usage line."""

from __future__ import annotations

import argparse
import sys

from htr.reading.decode import DECODERS, DEFAULT_BEAM_WIDTH, DEFAULT_INSERTION_BONUS, DEFAULT_LM_WEIGHT
from htr.shipped import default_checkpoint


def command_name(module: str) -> str:
    """How the running command is spelled in its usage line: ``htr NAME`` under the ``htr`` command, else
    ``python -m MODULE``."""
    return sys.argv[0] if sys.argv[0].startswith("htr ") else f"python -m {module}"


def add_checkpoint_argument(parser: argparse.ArgumentParser, help: str = "the model") -> None:
    """``--checkpoint``: a .pth, a model folder or a hub repo id; by default ``HTR_CHECKPOINT`` or the shipped model."""
    parser.add_argument("--checkpoint", default=default_checkpoint(),
                        help=f"{help}: a .pth, a model folder or a hub repo id (default: the shipped model, or "
                        "HTR_CHECKPOINT)")  # fmt: skip


def add_device_arguments(parser: argparse.ArgumentParser, precision: str = "auto") -> None:
    """``--device`` (auto, cpu, cuda) and ``--precision`` (auto: bf16 where the hardware has it natively)."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=precision,
                        help=f"auto: bf16 where the hardware has it natively, else fp32 ({precision})")  # fmt: skip


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
