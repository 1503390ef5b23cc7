"""Reading new line images with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from htr.alphabet import Alphabet
from htr.batching import bucketed_batches
from htr.checkpoint import model_from_checkpoint, read_checkpoint
from htr.decode import Decoder, confidences, make_decoder
from htr.model import CRNN
from htr.preprocess import has_ink, ink_map, line_tensor, pad_batch, preprocess, to_grayscale
from htr.runtime import autocast, prefers_channels_last, resolve_device, resolve_precision
from htr.segment import looks_like_one_line, segment_lines


@dataclass(frozen=True)
class Reading:
    """The text of one line and how sure the model is of it (see ``htr.decode.confidences``)."""

    text: str
    confidence: float


@torch.inference_mode()
def transcribe(
    model: CRNN, alphabet: Alphabet, widths: list[int], line: Callable[[int], torch.Tensor], batch_size: int,
    device: torch.device, dtype: torch.dtype | None = None, decoder: Decoder | None = None,
    network: Callable[[torch.Tensor], tuple] | None = None, pad_to: int = 1,
) -> list[Reading]:  # fmt: skip
    """Readings of lines ``line(0) .. line(n - 1)`` ((1, H, W) tensors of the given widths), in that order.

    Lines are batched by width to cut padding; the model must already be in eval mode. Greedy by default.
    A line without ink reads as empty text with confidence 1. ``network`` replaces ``model``'s forward pass
    (e.g. an ONNX session); ``model`` still gives the frame counts. ``pad_to``: batch widths are rounded up to
    a multiple of it (fewer distinct shapes for the kernel caches: less memory over many batches)."""
    decoder = decoder or Decoder()
    readings: list[Reading | None] = [None] * len(widths)
    for indices in bucketed_batches(widths, batch_size, seed=None):
        lines = {i: line(i) for i in indices}
        for i in [i for i, image in lines.items() if not has_ink(image)]:  # blank: nothing to read, for sure
            readings[i] = Reading("", 1.0)
            del lines[i]
        if not lines:
            continue
        indices = list(lines)
        images, batch_widths = pad_batch(list(lines.values()), multiple=pad_to)
        images = images.to(device)
        if prefers_channels_last(device, dtype) and network is None:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            log_probs, _ = (network or model)(images)
        lengths = model.output_lengths(batch_widths)
        log_probs = log_probs.float().cpu()
        paths = decoder.paths(log_probs, lengths, alphabet)
        for i, path, confidence in zip(indices, paths, confidences(log_probs, lengths, paths)):
            readings[i] = Reading(alphabet.decode(path), confidence)
    return readings  # type: ignore[return-value]


class Recognizer:
    """A loaded model with its alphabet and decoder: ``Recognizer("handwriting_recognizer_best.pth").read([image])``.

    ``precision``: see ``htr.runtime.resolve_precision`` (auto: bf16 on CPUs with native bf16, which reads IAM
    validation twice as fast with the same CER); ``decoder_options``: see ``htr.decode.make_decoder`` (by default
    beam search with the checkpoint's language model when it has one, else greedy)."""

    def __init__(
        self, checkpoint: str | Path, device: str = "auto", precision: str = "auto", onnx: str | Path | None = None,
        **decoder_options,
    ) -> None:  # fmt: skip
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        state = read_checkpoint(checkpoint)
        self.model, self.alphabet = model_from_checkpoint(state, checkpoint, self.device)
        self.network = None
        if onnx is not None:  # onnxruntime runs the network (fp32, CPU); the checkpoint gives everything else
            from htr.export import OnnxNetwork

            self.device, self.dtype = torch.device("cpu"), None
            self.network = OnnxNetwork(onnx, self.alphabet.chars)
        elif prefers_channels_last(self.device, self.dtype):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.decoder = make_decoder(state, **decoder_options)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The model's input for one PIL image of a line: (1, H, W)."""
        return preprocess(image, self.model.config.height)

    def prepare_lines(self, image: Image.Image, segment: str = "auto") -> tuple[list[torch.Tensor], list | None]:
        """The model's inputs for the text lines of an image, and their boxes (None when not segmented).

        ``segment``: ``auto`` (split into lines when more than one is found), ``always`` or ``never``."""
        gray = to_grayscale(image)
        ink = ink_map(gray)
        height = self.model.config.height
        if segment == "always" or (segment == "auto" and not looks_like_one_line(ink)):
            scale = max(image.size) / max(gray.shape)  # to_grayscale may have shrunk a huge image
            lines = segment_lines(ink, scale)
            if len(lines) > 1 or (segment == "always" and lines):
                return [line_tensor(line.ink, height) for line in lines], [line.box for line in lines]
        return [line_tensor(ink, height)], None

    def read_prepared(self, lines: list[torch.Tensor], batch_size: int = 16) -> list[Reading]:
        """Readings of preprocessed lines, in input order."""
        widths = [line.shape[-1] for line in lines]
        return transcribe(
            self.model, self.alphabet, widths, lines.__getitem__, batch_size, self.device, self.dtype, self.decoder,
            self.network, pad_to=64,  # predict.py over 390 lines: peak memory 907 -> 676 MiB, same speed and CER
        )  # fmt: skip

    def read(self, images: list[Image.Image], batch_size: int = 16) -> list[Reading]:
        """Readings (``.text``, ``.confidence``) of PIL line images, in input order."""
        return self.read_prepared([self.prepare(image) for image in images], batch_size)
