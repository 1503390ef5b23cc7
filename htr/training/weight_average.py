"""An exponential moving average of a model's weights (and buffers), validated and saved instead of the raw ones."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """``torch.optim.swa_utils.AveragedModel`` keeping ``decay`` of the average at each update (its batch-norm
    statistics averaged too); None when ``decay`` is 0 (no average)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
