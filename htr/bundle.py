"""A model as ``--checkpoint`` names it, resolved once: `open_model` turns a ``.pth`` file, a model folder or a hub
repo id into a `ModelBundle`, the one place that tells them apart.

A bundle knows where the model is (``path``: the file, the folder, or a hub model's folder in the hub cache) and
what kind it is, and reads its parts when asked, each once: the whole checkpoint dict (weights, architecture,
alphabet, LM, metrics and training record; PyTorch for a ``.pth``), its ONNX export when that was made from this
very model (``X.onnx`` beside ``X.pth``, a folder's ``model.onnx``), and what decoding needs (alphabet and LM),
read without PyTorch where the model allows. Reading with the export therefore never imports PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from htr.model_files import (
    CheckpointError,
    download,
    export_location,
    is_repo_id,
    read_checkpoint_file,
    read_for_decoding,
    read_pretrained,
)

if TYPE_CHECKING:
    from htr.reading.onnx_network import OnnxNetwork


@dataclass
class ModelBundle:
    """A located model: ``given`` (as the user named it), ``path`` (local) and ``kind`` (file, folder or hub)."""

    given: str
    path: Path
    kind: str
    _checkpoint: dict | None = field(default=None, repr=False)

    @property
    def export_path(self) -> Path:
        """Where this model's ONNX export belongs (it may not be there)."""
        return export_location(self.path)[0]

    def checkpoint(self) -> dict:
        """The checkpoint dict (``htr.checkpoint.model_checkpoint``'s layout), read on first use."""
        if self._checkpoint is None:
            self._checkpoint = read_checkpoint_file(self.path) if self.kind == "file" else read_pretrained(self.path)
        return self._checkpoint

    def onnx_network(self) -> tuple[OnnxNetwork | None, str | None]:
        """The model's current ONNX export, loaded in ONNX Runtime, or None with a one-line note when an export is
        there but cannot serve (stale, unreadable, onnxruntime missing); see ``htr.reading.onnx_network``."""
        from htr.reading.onnx_network import export_beside

        return export_beside(self.path)

    def decoding_state(self, exported: OnnxNetwork | None = None) -> dict:
        """The ``alphabet`` and, when the model has one, the ``lm`` state, as in a checkpoint dict. Without PyTorch
        for a folder (its own LM, even when its export holds one: the folder's may be newer) and for a ``.pth``
        whose ``exported`` network holds the LM; else from the checkpoint. ValueError when ``exported`` was made
        from another model (their alphabets differ)."""
        if self.kind != "file":
            state = read_for_decoding(self.path)
        elif exported is not None and exported.has_lm:
            return exported.decoding_state()
        else:
            state = self.checkpoint()
        if exported is not None and state["alphabet"] != exported.alphabet.chars:
            raise ValueError(f"{exported.path} was not exported from {self.given} (their alphabets differ)")
        return state


def open_model(spec: str | Path) -> ModelBundle:
    """Locate what ``--checkpoint`` names: an existing folder is a model folder, an ``owner/name[@revision]`` that is
    no local path a hub model (downloaded once into the hub cache), anything else a checkpoint file.
    CheckpointError in one line when it cannot be found."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelBundle(text, path, "folder")
    if is_repo_id(text):
        return ModelBundle(text, download(text), "hub")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path} (the shipped model, handwriting_recognizer_best.pth, is at the top of a "
            "checkout of the repository; pass --checkpoint or set HTR_CHECKPOINT for another, or train one with "
            "`htr train` or the notebook)"
        )
    return ModelBundle(text, path, "file")
