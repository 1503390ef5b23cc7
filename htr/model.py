"""CRNN: residual CNN, max-pooling over the height of each column, BiLSTM stack, linear CTC head.

The CNN is declared as a list, as in Retsinas et al. (2022): ``[n, c]`` stacks n residual blocks of c
channels, ``"M"`` halves height and width, ``"Mh"`` halves the height only. An optional 1D-conv CTC head on
the CNN features (the "CTC shortcut") adds a training signal that speeds up convergence; it is not used
when reading.
"""

from __future__ import annotations

import torch
from torch import nn

from htr.model_config import ModelConfig


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def build_cnn(config: ModelConfig) -> tuple[nn.Sequential, int]:
    """The convolutional feature extractor and its number of output channels."""
    layers: list[nn.Module] = [
        nn.Conv2d(1, config.stem_channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(config.stem_channels),
        nn.ReLU(inplace=True),
    ]
    channels = config.stem_channels
    for item in config.cnn:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        elif item == "Mh":
            layers.append(nn.MaxPool2d((2, 1)))
        else:
            blocks, out_channels = item
            for _ in range(blocks):
                layers.append(ResidualBlock(channels, out_channels))
                channels = out_channels
    return nn.Sequential(*layers), channels


class CRNN(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn, channels = build_cnn(config)
        self.rnn = nn.LSTM(
            channels,
            config.rnn_hidden,
            num_layers=config.rnn_layers,
            bidirectional=True,
            dropout=config.dropout if config.rnn_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.rnn_hidden, config.num_classes)
        self.shortcut = nn.Conv1d(channels, config.num_classes, 3, padding=1) if config.shortcut else None

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        """Number of CTC frames for images of the given widths (before padding)."""
        return self.config.output_lengths(widths)

    def output_length(self, width: int) -> int:
        """Number of CTC frames for one image of ``width`` pixels."""
        return int(self.config.output_lengths(width))

    @property
    def width_factor(self) -> int:
        """Pixels of input width per CTC frame."""
        return self.config.width_factor

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 1, H, W) -> log-probabilities (T, B, C), and the shortcut head's (T, B, C) or None."""
        features = self.cnn(images).amax(dim=2)  # (B, C', T): max over each column's height
        sequence = self.dropout(features.permute(2, 0, 1).float())  # (T, B, C')
        output, _ = self.rnn(sequence)
        log_probs = self.head(self.dropout(output)).float().log_softmax(-1)
        shortcut = None
        if self.shortcut is not None and self.training:
            shortcut = self.shortcut(features).permute(2, 0, 1).float().log_softmax(-1)
        return log_probs, shortcut


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
