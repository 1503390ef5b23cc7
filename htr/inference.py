"""Reading new line images with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from htr.checkpoint import load_model
from htr.decode import greedy_decode
from htr.preprocess import pad_batch, preprocess
from htr.runtime import resolve_device


class Recognizer:
    """A loaded model with its alphabet: ``Recognizer("handwriting_recognizer_best.pth").read([image])``."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model, self.alphabet = load_model(checkpoint, self.device)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The model's input for one PIL image: (1, H, W)."""
        return preprocess(image, self.model.config.height)

    @torch.inference_mode()
    def read_prepared(self, lines: list[torch.Tensor], batch_size: int = 16) -> list[str]:
        """Texts of preprocessed lines, in input order; batches are formed by width to cut padding."""
        texts = [""] * len(lines)
        order = sorted(range(len(lines)), key=lambda i: lines[i].shape[-1])
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            images, widths = pad_batch([lines[i] for i in indices])
            log_probs, _ = self.model(images.to(self.device))
            for i, text in zip(indices, greedy_decode(log_probs, self.model.output_lengths(widths), self.alphabet)):
                texts[i] = text
        return texts

    def read(self, images: list[Image.Image], batch_size: int = 16) -> list[str]:
        """Texts of PIL line images, in input order."""
        return self.read_prepared([self.prepare(image) for image in images], batch_size)
