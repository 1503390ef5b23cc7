"""``htr finetune`` (``python -m htr.finetune``): its command line.

What it does: the docstring of `htr.finetune`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import logging
import sys

from htr import finetune as library
from htr.cli.options import command_name
from htr.finetune import REHEARSE_SHARE, FinetuneConfig, finetune, plan
from htr.shipped import default_checkpoint
from htr.training.self_training import KEEP_SHARE

SIZED = {  # the choices that follow the number of training lines
    "lines_per_epoch": "planned: the training lines, at least 2,000",
    "epochs": "planned: enough epochs for about 12,000 + 8 per training line lines seen",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=command_name("htr.finetune"), description=library.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("data", help="PAGE/ALTO export, labels.tsv folder, or any dataset htr train reads")
    parser.add_argument("--output", required=True, help="folder for the model, the report and the work (resumable)")
    parser.add_argument("--base", default=default_checkpoint(), help="the model to start from (default: the shipped "
                        "one, or HTR_CHECKPOINT): a .pth or a model folder")  # fmt: skip
    parser.add_argument("--minutes", type=float, default=0.0, help="time budget of the whole command (0: none)")
    parser.add_argument("--max-lines", type=int, default=0, help="train on the first N lines only (0: all)")
    parser.add_argument("--split-by", choices=["page", "document"], default="page",
                        help="what the validation lines held out are made of, when the data has no validation "
                        "split (document: the export's top-level folders)")  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of pages (documents) held out")
    parser.add_argument(
        "--min-char-count",
        type=int,
        default=2,
        help="a new character joins the alphabet when the training text has it this often",
    )
    parser.add_argument(
        "--decoder",
        choices=["beam", "greedy"],
        default="beam",
        help="how before and after are measured (beam: with the language model, as htr read)",
    )
    parser.add_argument("--licence", default="", help="the data's licence, for the model card")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="export the ONNX model in fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--self-train",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="rounds of self-training after the fine-tune: the model reads the untranscribed lines "
        "(the export's lines without text, and --unlabelled), and the more confidently read ones "
        "join the training lines; a round is kept only if validation reads better (0: none)",
    )
    parser.add_argument(
        "--unlabelled",
        action="append",
        default=[],
        metavar="PATH",
        help="more untranscribed lines for --self-train: a folder of line images or a PAGE/ALTO "
        "export (every line, its text unused); may be repeated",
    )
    parser.add_argument(
        "--pseudo-share",
        type=float,
        default=KEEP_SHARE,
        help=f"the share of untranscribed lines kept, the most confidently read (default {KEEP_SHARE})",
    )
    parser.add_argument(
        "--rehearse",
        action="append",
        default=[],
        metavar="DATASET",
        help="a dataset of other hands the model should keep reading (e.g. the base's own training data, "
        "Teklia/IAM-line): part of each epoch comes from its training lines, and its validation lines are read "
        "before and after; may be repeated",
    )
    parser.add_argument(
        "--rehearse-share",
        type=float,
        default=REHEARSE_SHARE,
        help=f"the share of each epoch's lines taken from the --rehearse datasets (default {REHEARSE_SHARE})",
    )
    choices = parser.add_argument_group("the plan (chosen from the number of training lines; each may be given)")
    for name, choice in plan(1).items():
        flag = "--" + name.replace("_", "-")
        kind = ({"action": argparse.BooleanOptionalAction} if isinstance(choice.value, bool)
                else {"type": type(choice.value)})  # fmt: skip
        description = SIZED.get(name, f"planned: {choice.value}; {choice.why}")
        choices.add_argument(flag, dest=name, default=None, help=description, **kind)
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in plan(1) if getattr(args, name) is not None}
    cfg = FinetuneConfig(data=args.data, output=args.output, base=args.base, minutes=args.minutes,
                         max_lines=args.max_lines, split_by=args.split_by, val_fraction=args.val_fraction,
                         min_char_count=args.min_char_count, decoder=args.decoder, licence=args.licence,
                         int8=args.int8, seed=args.seed, self_train=args.self_train, unlabelled=args.unlabelled,
                         pseudo_share=args.pseudo_share, rehearse=args.rehearse,
                         rehearse_share=args.rehearse_share, choices=given)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from htr.data import DatasetSourceError
    from htr.model_files import CheckpointError

    try:
        report = finetune(cfg)
    except (DatasetSourceError, CheckpointError, ValueError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: re-run the same command to resume ({args.output})", file=sys.stderr)
        return 130
    before, after = report["before"], report["after"]
    print(f"CER {100 * before['cer']:.2f}% -> {100 * after['cer']:.2f}%, WER {100 * before['wer']:.2f}% -> "
          f"{100 * after['wer']:.2f}% on {after['lines']} validation lines ({after['decoder']}); "
          f"model: {args.output}/model, report: {args.output}/report.md")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
