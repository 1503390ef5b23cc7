"""Reading new line images with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from htr.alphabet import Alphabet
from htr.batching import bucketed_batches
from htr.checkpoint import load_model
from htr.decode import greedy_decode
from htr.model import CRNN
from htr.preprocess import pad_batch, preprocess
from htr.runtime import autocast, resolve_device


@torch.inference_mode()
def transcribe(
    model: CRNN, alphabet: Alphabet, widths: list[int], line: Callable[[int], torch.Tensor], batch_size: int,
    device: torch.device, dtype: torch.dtype | None = None,
) -> list[str]:  # fmt: skip
    """Greedy texts of lines ``line(0) .. line(n - 1)`` ((1, H, W) tensors of the given widths), in that order.

    Lines are batched by width to cut padding; the model must already be in eval mode."""
    texts = [""] * len(widths)
    for indices in bucketed_batches(widths, batch_size, seed=None):
        images, batch_widths = pad_batch([line(i) for i in indices])
        with autocast(device, dtype):
            log_probs, _ = model(images.to(device))
        for i, text in zip(indices, greedy_decode(log_probs, model.output_lengths(batch_widths), alphabet)):
            texts[i] = text
    return texts


class Recognizer:
    """A loaded model with its alphabet: ``Recognizer("handwriting_recognizer_best.pth").read([image])``."""

    def __init__(self, checkpoint: str | Path, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model, self.alphabet = load_model(checkpoint, self.device)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The model's input for one PIL image: (1, H, W)."""
        return preprocess(image, self.model.config.height)

    def read_prepared(self, lines: list[torch.Tensor], batch_size: int = 16) -> list[str]:
        """Texts of preprocessed lines, in input order."""
        widths = [line.shape[-1] for line in lines]
        return transcribe(self.model, self.alphabet, widths, lines.__getitem__, batch_size, self.device)

    def read(self, images: list[Image.Image], batch_size: int = 16) -> list[str]:
        """Texts of PIL line images, in input order."""
        return self.read_prepared([self.prepare(image) for image in images], batch_size)
