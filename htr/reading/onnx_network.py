"""An exported network run by ONNX Runtime, without PyTorch (see ``htr.export``).

An export made from a checkpoint file ``X.pth`` and saved as ``X.onnx`` beside it (or, for a model folder of
``htr.hub``, saved in it as ``model.onnx``) is that checkpoint's fast CPU reader: ``export_beside`` finds it, and
accepts it only when the checkpoint is still the one it was made from (the SHA-256 of the checkpoint file, or of the
folder's ``model.safetensors``, is in the export's metadata), so a retrained checkpoint never reads through a stale
export."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import numpy as np

from htr.alphabet import Alphabet
from htr.model_config import ModelConfig
from htr.model_files import LM_KEY, LM_ORDER_KEY, SOURCE_KEY, export_location, lm_from_tensors, made_from

MAX_PARALLEL_CALLS = 8  # each call holds its own activations (predict.py's second call: about 125 MiB at peak)


class OnnxNetwork:
    """Images (B, 1, H, W) float32 -> log-probabilities (T, B, C), like ``htr.runtime.TorchNetwork``.

    The export stores the alphabet and architecture in the file's metadata, so it reads on its own; exports of
    checkpoints with a language model hold it too (`decoding_state`), and `source_sha256` names the checkpoint
    file it was made from (None for older exports).

    ``htr.inference.transcribe`` runs ``parallel_calls`` calls at once in threads (one per core this process may
    use, at most ``MAX_PARALLEL_CALLS``, each on its share of the cores: one core each on machines of up to 8), so
    that decoding overlaps the network: on 2 cores, predict.py reads 390 IAM lines (int8, beam + LM) in 7.9-8.2 s
    instead of 9.2-9.3 s with one call at a time on two threads."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        from htr.cpu_share import usable_cores

        if not Path(path).is_file():
            raise ValueError(f"ONNX model not found: {path} (write one with `python -m htr.export`)")
        cores = usable_cores()
        self.parallel_calls = min(cores, MAX_PARALLEL_CALLS)
        self.threads_per_call = max(1, cores // self.parallel_calls)  # calls run side by side instead
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads_per_call
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types; the reason follows its "failed:"
            reason = str(error).splitlines()[0].rsplit("failed:", 1)[-1].strip()
            raise ValueError(f"cannot load ONNX model {path}: {reason}") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "alphabet" not in metadata or "model_config" not in metadata:
            raise ValueError(f"{path} has no alphabet/model_config metadata: export it with `python -m htr.export`")
        self.path = Path(path)
        self.alphabet = Alphabet(metadata["alphabet"])
        self.config = ModelConfig(**json.loads(metadata["model_config"]))
        self.source_sha256: str | None = metadata.get(SOURCE_KEY)
        self._lm = (metadata[LM_KEY], int(metadata[LM_ORDER_KEY])) if LM_KEY in metadata else None

    @property
    def has_lm(self) -> bool:
        return self._lm is not None

    def decoding_state(self) -> dict:
        """What decoding needs, as in a checkpoint dict: the ``alphabet`` and, when the export holds one, the
        ``lm`` state (``htr.lm.CharLM.from_state`` reads it). ValueError in one line when the LM is damaged."""
        state: dict = {"alphabet": self.alphabet.chars}
        if self._lm is not None:
            from safetensors.numpy import load

            try:
                state["lm"] = lm_from_tensors(load(base64.b64decode(self._lm[0])), self._lm[1])
            except Exception as error:  # damaged base64 or safetensors: one line
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(f"{self.path}: its language model is unreadable ({reason})") from None
        return state

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": np.ascontiguousarray(images, dtype=np.float32)})[0]


def export_beside(checkpoint: str | Path) -> tuple[OnnxNetwork | None, str | None]:
    """The ONNX export of a checkpoint (``X.onnx`` beside ``X.pth``, or a model folder's ``model.onnx``), when
    onnxruntime is installed and the export was made from this very checkpoint; else None, with a one-line note when
    an export is there but cannot serve (stale, unreadable, or onnxruntime missing)."""
    path = Path(checkpoint)
    if not (path.is_file() or path.is_dir()) or path.suffix == ".onnx":
        return None, None
    candidate, source = export_location(path)
    if not candidate.is_file() or not source.is_file():
        return None, None
    if importlib.util.find_spec("onnxruntime") is None:
        return None, f"{candidate} is not used: onnxruntime is not installed (pip install onnxruntime)"
    try:
        network = OnnxNetwork(candidate)
    except ValueError as error:
        return None, f"{candidate} is not used: {error}"
    if not made_from(network.source_sha256, source):
        return None, (
            f"{candidate} was not exported from this {source.name} (retrained?): reading with PyTorch; "
            f"`python -m htr.export --checkpoint {path} [--int8 DATASET]` brings it up to date"
        )
    return network, None


def cuda_may_be_present() -> bool:
    """Whether this machine may have an NVIDIA GPU (its driver is visible), checked without importing PyTorch."""
    import shutil

    return Path("/proc/driver/nvidia").exists() or Path("/dev/dxg").exists() or shutil.which("nvidia-smi") is not None
