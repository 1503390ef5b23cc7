"""Self-describing checkpoints (weights + architecture + alphabet) and atomic writes.

A model checkpoint is a plain dict that ``torch.load(path, weights_only=True)`` reads:
``{"format_version", "model_config", "alphabet", "state_dict", "metrics", "htr_version"}`` and optionally
``"lm"``: a character language model (``htr.lm.CharLM.to_state``) for beam search, and ``"training"``: the
training record of ``htr.train`` (data, recipe, hardware). ``metrics["evaluations"]`` holds what
``htr.evaluate --record`` measured. ``htr.hub`` writes and reads the same dict as a safetensors model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from htr import __version__
from htr.alphabet import Alphabet
from htr.atomic_file import atomic_write
from htr.model import CRNN, ModelConfig
from htr.model_files import FORMAT_VERSION, CheckpointError


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def model_checkpoint(
    model: CRNN, alphabet: Alphabet, metrics: dict | None = None, lm=None, training: dict | None = None
) -> dict:
    """The dict saved as ``handwriting_recognizer_best.pth`` (``lm``: an optional ``htr.lm.CharLM``; ``training``:
    what it was trained on and how, for its model card)."""
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "htr_version": __version__,
        "model_config": model.config.to_dict(),
        "alphabet": alphabet.chars,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": dict(metrics or {}),
    }
    if lm is not None:
        checkpoint["lm"] = lm.to_state()
    if training is not None:
        checkpoint["training"] = training
    return checkpoint


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely (``weights_only=True``); raise CheckpointError with a clear reason.

    ``path`` may also be a model folder or a Hugging Face Hub repo id: the same dict comes back
    (``htr.bundle.open_model`` decides which it is)."""
    from htr.bundle import open_model

    return open_model(path).checkpoint()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[CRNN, Alphabet]:
    """Rebuild the model exactly as trained, in eval mode, with its alphabet."""
    return model_from_checkpoint(read_checkpoint(path), path, device)


def model_from_checkpoint(
    checkpoint: dict, path: str | Path, device: str | torch.device = "cpu"
) -> tuple[CRNN, Alphabet]:
    """The model and alphabet of a checkpoint dict read by ``read_checkpoint`` from ``path``."""
    try:
        model = CRNN(ModelConfig(**checkpoint["model_config"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path}: weights do not match the stored architecture: {error}") from None
    return model.to(device).eval(), Alphabet(checkpoint["alphabet"])


def load_weights_extending_classes(model: CRNN, state_dict: dict[str, torch.Tensor]) -> int:
    """Load trained weights into ``model`` whose alphabet extends the trained one (new characters appended).

    Output layers keep the trained rows for the old classes and the model's fresh initialisation for the new
    ones; every other tensor must match exactly. Returns the number of classes added.
    """
    own = model.state_dict()
    merged, added = {}, None
    for name, value in state_dict.items():
        target = own.get(name)
        if target is None:
            raise CheckpointError(f"weights have a tensor the model lacks: {name}")
        if value.shape != target.shape:
            if added is None:  # the first output tensor that differs says how many classes were added
                added = len(target) - len(value) if value.dim() else 0
            if added <= 0 or not grown_by_rows(value.shape, target.shape, added):
                raise CheckpointError(f"{name}: shape {tuple(value.shape)} cannot grow to {tuple(target.shape)}")
            value = torch.cat([value, target[len(value) :].to(value.dtype)])
        merged[name] = value
    model.load_state_dict(merged)
    return added or 0


def grown_by_rows(old: tuple[int, ...], new: tuple[int, ...], rows: int) -> bool:
    """Whether a tensor of shape ``new`` is one of shape ``old`` with ``rows`` rows appended: an output layer whose
    alphabet grew by ``rows`` characters."""
    return len(old) > 0 and tuple(old[1:]) == tuple(new[1:]) and old[0] + rows == new[0]
