"""The line finder's network: a U-Net that marks the core of every text line of a page (its training targets:
``htr.train_line_detector.kernel_target``).

How its map becomes lines, and reading with a trained finder (in PyTorch or ONNX Runtime): ``htr.pages.line_finder``.
Trained by ``python -m htr.train_line_detector`` on pages with line polygons (PAGE/ALTO) and composed pages.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )  # fmt: skip


class LineDetector(nn.Module):
    """U-Net: four stride-2 levels below the half-size stem, a dilated bottleneck for context across lines."""

    def __init__(self, width: int = 16):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.config = {"width": width}
        self.stem = _block(1, widths[0], stride=2)  # half size: the output's resolution
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], stride=2) for i in range(4))
        self.context = nn.Sequential(_block(widths[4], widths[4], dilation=2), _block(widths[4], widths[4], dilation=4))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, ink: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) ink maps, H and W multiples of 32 -> (N, 1, H/2, W/2) kernel logits."""
        skips = [self.stem(ink)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = self.context(skips.pop())
        for up in self.up:
            skip = skips.pop()
            x = up(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.head(x)


@torch.no_grad()
def widened(model: LineDetector, width: int) -> LineDetector:
    """A wider copy of ``model`` that computes the same map: every old channel keeps its weights and ignores the
    new channels (their weights into it are zero), the new channels start fresh; training then puts them to use
    (Net2Net-style growth, so a wider finder starts from a trained one instead of from scratch)."""
    old_widths = [model.config["width"] * m for m in (1, 2, 4, 8, 8)]
    new_widths = [width * m for m in (1, 2, 4, 8, 8)]
    if width < model.config["width"]:
        raise ValueError(f"cannot widen a width-{model.config['width']} finder to {width}")
    wide = LineDetector(width)

    def index(levels: list[int]) -> torch.Tensor:
        """Where the old channels of a concatenation of these levels sit among the new ones."""
        parts, offset = [], 0
        for level in levels:
            parts.append(offset + torch.arange(old_widths[level]))
            offset += new_widths[level]
        return torch.cat(parts)

    def block_levels(name: str) -> tuple[list[int], list[int]]:
        """(input levels, output levels) of the convolution or norm ``name`` (e.g. ``up.1.0``)."""
        kind, *rest = name.split(".")
        if kind == "head":
            return [0], []
        block, layer = (int(rest[0]), int(rest[1])) if kind in ("down", "up", "context") else (0, int(rest[0]))
        out = {"stem": 0, "down": block + 1, "context": 4, "up": 3 - block}[kind]
        if layer > 0:  # the second convolution, or a norm: reads the block's own output
            return [out], [out]
        source = {"stem": [], "down": [block], "context": [4], "up": [out + 1, out]}[kind]
        return source, [out]

    new_state = wide.state_dict()
    for key, value in model.state_dict().items():
        module, leaf = key.rsplit(".", 1)
        target = new_state[key]
        if value.dim() == 0:  # num_batches_tracked
            target.copy_(value)
            continue
        inputs, outputs = block_levels(module)
        rows = index(outputs) if outputs else torch.arange(value.shape[0])
        if value.dim() == 1:  # norm weights and statistics, the head's bias
            target[rows] = value
            continue
        columns = index(inputs) if inputs else torch.arange(value.shape[1])
        target[rows] = 0  # old channels read nothing from the new ones ...
        target[rows[:, None], columns] = value  # ... and what they read before
    wide.load_state_dict(new_state)
    return wide


def letter_heights(inks: list[np.ndarray]) -> tuple[float, float]:
    """The 10th and 90th percentiles of the pages' letter heights (uint8 ink maps as the network reads them)."""
    from htr.pages.page_ink import component_height

    heights = [component_height((ink > 127).astype(np.uint8)) for ink in inks]
    return float(np.percentile(heights, 10)), float(np.percentile(heights, 90))
