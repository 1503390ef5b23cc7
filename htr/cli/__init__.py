"""The ``htr`` command: every job of the project as a subcommand (``htr read``, ``htr train``, ...).

    htr read examples/*.png                 # = python predict.py examples/*.png
    htr train --dataset path/to/lines --output-dir runs/mine
    htr COMMAND --help

``pip install .`` (or ``pip install -e .`` in a checkout) installs it; ``python -m htr.cli`` is the same command
without installing. Each subcommand is also ``python -m htr.<module>`` (``htr train`` is ``python -m htr.train``).
"""

from __future__ import annotations

import importlib
import sys

from htr import __version__

# subcommand -> (module whose main(argv) runs it, one line of help)
COMMANDS = {
    "read": ("htr.cli.read", "read lines and pages from images (python predict.py)"),
    "train": ("htr.cli.train", "train or fine-tune a recognizer; re-run to resume (python -m htr.train)"),
    "batch": ("htr.cli.batch", "read a whole collection: resumable, shardable, on Ray (python -m htr.batch)"),
    "finetune": ("htr.cli.finetune", "fine-tune a model on your own pages, with a report (python -m htr.finetune)"),
    "evaluate": ("htr.cli.evaluate", "CER and WER of a model on a dataset split (python -m htr.evaluate)"),
    "export": ("htr.cli.export", "ONNX export of a model (fp32 or int8) or of the line finder (python -m htr.export)"),
    "hub": ("htr.cli.hub", "model folders: export, card, push (python -m htr.hub)"),
    "demo": ("htr.cli.demo", "the browser demo (python -m htr.demo)"),
    "lm": ("htr.cli.lm", "character language models: build, into a model, ARPA (python -m htr.lm)"),
    "train-lines": ("htr.cli.train_lines", "train the line finder (python -m htr.train_line_detector)"),
    "average": ("htr.cli.average", "average the weights of checkpoints"),
    "prune": ("htr.cli.prune", "a trained model without some residual blocks: a student's start"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_line}" for name, (_, help_line) in COMMANDS.items())
    return f"usage: htr COMMAND [options]   (htr COMMAND --help for its options)\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    """Run ``htr COMMAND ...``; returns the command's exit status (2 for an unknown command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"htr {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"htr: unknown command {name!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    sys.argv[0] = f"htr {name}"  # what argparse names in usage lines
    status = importlib.import_module(COMMANDS[name][0]).main(rest)
    return int(status or 0)
