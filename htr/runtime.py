"""Device, precision and seeding choices, made in one place for training, evaluation and reading."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import torch


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
