"""Where the shipped models are: the default reader and line finder of every command, decided here once.

They live at the top of a checkout of the repository (beside the ``htr`` package), not inside the package: a
checkout, or ``pip install -e .`` of one, finds them there. An installed copy of ``htr`` outside a checkout finds
them in the working directory, or takes ``HTR_CHECKPOINT`` (any ``--checkpoint``: a ``.pth``, a model folder or a
hub repo id) for the reader.
"""

from __future__ import annotations

import os
from pathlib import Path

READER_NAME = "handwriting_recognizer_best.pth"
LINE_FINDER_NAME = "line_finder.pt"
CHECKOUT = Path(__file__).resolve().parents[1]  # the repository's top, when htr is used from a checkout


def shipped_file(name: str) -> Path:
    """The shipped file ``name`` in the checkout, else in the working directory; the bare name when neither has it
    (loading it then fails with a message saying where the shipped models are)."""
    for folder in (CHECKOUT, Path.cwd()):
        if (folder / name).is_file():
            return folder / name
    return Path(name)


def default_checkpoint() -> str:
    """What ``--checkpoint`` means when not given: ``HTR_CHECKPOINT`` when set, else the shipped reader."""
    return os.environ.get("HTR_CHECKPOINT") or str(shipped_file(READER_NAME))


def default_line_finder() -> Path:
    """The shipped line finder (``line_finder.pt``; its ONNX export ``line_finder.onnx`` lies beside it)."""
    return shipped_file(LINE_FINDER_NAME)
