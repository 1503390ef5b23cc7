"""An exported network run by ONNX Runtime, without PyTorch (see ``htr.export``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from htr.alphabet import Alphabet
from htr.model_config import ModelConfig


class OnnxNetwork:
    """Images (B, 1, H, W) float32 -> log-probabilities (T, B, C), like ``htr.runtime.TorchNetwork``.

    The export stores the alphabet and architecture in the file's metadata, so it reads on its own."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        if not Path(path).is_file():
            raise ValueError(f"ONNX model not found: {path} (write one with `python -m htr.export`)")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types; the reason follows its "failed:"
            reason = str(error).splitlines()[0].rsplit("failed:", 1)[-1].strip()
            raise ValueError(f"cannot load ONNX model {path}: {reason}") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "alphabet" not in metadata or "model_config" not in metadata:
            raise ValueError(f"{path} has no alphabet/model_config metadata: export it with `python -m htr.export`")
        self.alphabet = Alphabet(metadata["alphabet"])
        self.config = ModelConfig(**json.loads(metadata["model_config"]))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": np.ascontiguousarray(images, dtype=np.float32)})[0]
