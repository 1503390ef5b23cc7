"""A CRNN's architecture as plain data (no PyTorch): stored in checkpoints and ONNX exports alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TypeVar

Widths = TypeVar("Widths")  # an int, or an integer array or tensor


@dataclass
class ModelConfig:
    """Architecture of a CRNN; saved in every checkpoint so it can be rebuilt exactly."""

    num_classes: int  # characters + CTC blank
    height: int = 64  # input image height in pixels
    stem_channels: int = 32  # a stride-2 3×3 convolution before the residual blocks
    cnn: list = field(default_factory=lambda: ["M", [2, 64], "Mh", [2, 128], "Mh", [2, 256]])
    rnn_hidden: int = 256  # per direction
    rnn_layers: int = 2
    dropout: float = 0.2
    shortcut: bool = True  # auxiliary CTC head on the CNN features, training only

    def to_dict(self) -> dict:
        return asdict(self)

    def output_lengths(self, widths: Widths) -> Widths:
        """Number of CTC frames for images of the given widths (before padding): an int, array or tensor."""
        lengths = (widths + 1) // 2  # stem: 3×3, stride 2, padding 1
        for item in self.cnn:
            if item == "M":
                lengths = lengths // 2
        return lengths

    @property
    def width_factor(self) -> int:
        """Pixels of input width per CTC frame."""
        return 2 ** (1 + sum(item == "M" for item in self.cnn))
