"""Device, precision and seeding choices, made in one place for training, evaluation and reading."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import torch

from htr.model import CRNN


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 autocast roughly doubles CRNN training speed."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for 'auto'|'fp32'|'bf16'|'fp16' (None = plain fp32).

    auto: bf16 on CUDA GPUs that support it, else fp16 (with a gradient scaler); bf16 on CPUs with native
    bf16 support; fp32 otherwise."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


def prefers_channels_last(device: torch.device, dtype: torch.dtype | None) -> bool:
    """Channels-last convolutions pay off on CUDA and with bf16 on CPU."""
    return device.type == "cuda" or dtype is not None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``dtype``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python's and PyTorch's generators (the project uses no NumPy randomness)."""
    random.seed(seed)
    torch.manual_seed(seed)


class TorchNetwork:
    """A CRNN in eval mode on a device at a precision: images (B, 1, H, W) float32 -> log-probabilities (T, B, C)
    as a float32 array, like ``htr.onnx_network.OnnxNetwork``."""

    def __init__(self, model: CRNN, device: torch.device, dtype: torch.dtype | None = None) -> None:
        self.channels_last = prefers_channels_last(device, dtype)
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        self.config, self.device, self.dtype = model.config, device, dtype

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).to(self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            log_probs, _ = self.model(batch)
        return log_probs.float().cpu().numpy()
