"""Device, precision and seeding choices, made in one place for training, evaluation and reading."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from htr.cpu_share import CpuShare, usable_cores
from htr.model import CRNN


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    return torch.device(name)


BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
             "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")  # fmt: skip


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 autocast roughly doubles CRNN training speed, unless
    ``ATEN_CPU_CAPABILITY`` or ``ONEDNN_MAX_CPU_ISA`` hold PyTorch below them (e.g. to act as an AVX2 CPU)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper() not in BF16_ISAS:
        return False
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
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


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """The hardware and precision in a few words, e.g. 'Intel(R) Xeon(R) ..., 2 cores (bf16)'."""
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({precision})"
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
    except OSError:
        names = []
    return f"{names[0] if names else 'CPU'}, {usable_cores()} cores ({precision})"


def seed_everything(seed: int) -> None:
    """Seed Python's and PyTorch's generators (the project uses no NumPy randomness)."""
    random.seed(seed)
    torch.manual_seed(seed)


class TorchNetwork:
    """A CRNN in eval mode on a device at a precision: images (B, 1, H, W) float32 -> log-probabilities (T, B, C)
    as a float32 array, like ``htr.reading.onnx_network.OnnxNetwork``. On the CPU, ``cpu_share`` (optional) keeps the
    thread count at the cores other processes leave free (``htr.cpu_share``). One call at a time (its own threads
    use the cores)."""

    parallel_calls = 1

    def __init__(
        self, model: CRNN, device: torch.device, dtype: torch.dtype | None = None, cpu_share: CpuShare | None = None
    ) -> None:
        self.cpu_share = cpu_share if device.type == "cpu" else None
        self.channels_last = prefers_channels_last(device, dtype)
        self.model = model.to(device, memory_format=torch.channels_last) if self.channels_last else model.to(device)
        self.config, self.device, self.dtype = model.config, device, dtype

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.cpu_share is not None:
            self.cpu_share.update()
        batch = torch.from_numpy(images).to(self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            log_probs, _ = self.model(batch)
        return log_probs.float().cpu().numpy()
