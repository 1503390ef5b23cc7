"""``htr hub`` (``python -m htr.hub``): its command line.

What it does: the docstring of `htr.hub`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from htr import hub as library
from htr.checkpoint import read_checkpoint
from htr.cli.options import command_name
from htr.hub import carry_export, folder_config, model_card, push, save_pretrained
from htr.model_files import FOLDER_FILES, CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=command_name("htr.hub"), description=library.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a checkpoint (.pth or folder) as a model folder")
    export.add_argument("checkpoint")
    export.add_argument("folder")
    export.add_argument("--name", help="the model's name in its card (default: the folder's name)")
    card = commands.add_parser("card", help="print the model card of a checkpoint or folder")
    card.add_argument("checkpoint")
    upload = commands.add_parser("push", help="upload a model folder to the Hugging Face Hub (needs a token)")
    upload.add_argument("folder")
    upload.add_argument("repo_id")
    upload.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "push":
            print(push(args.folder, args.repo_id, args.private))
            return 0
        checkpoint = read_checkpoint(args.checkpoint)
        if args.command == "card":
            print(model_card(folder_config(checkpoint)), end="")
            return 0
        folder = Path(args.folder)
        if folder.exists() and not folder.is_dir():
            raise CheckpointError(f"{folder} exists and is not a folder")
        checkpoint["name"] = args.name or folder.resolve().name
        save_pretrained(checkpoint, folder)
        note = carry_export(args.checkpoint, folder)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.name in FOLDER_FILES)
        print(f"{args.checkpoint} -> {folder}/ ({size / 2**20:.1f} MiB: {', '.join(sorted(os.listdir(folder)))})"
              + (f"; {note}" if note else ""))  # fmt: skip
    except (CheckpointError, OSError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # hub errors on push (no token, no rights): one line
        print(f"error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
