"""Precision choices (htr.runtime): bf16 on CPUs with native bf16, unless the environment holds PyTorch below it."""

from pathlib import Path

import pytest
import torch

from htr.runtime import cpu_has_native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.fixture()
def bf16_cpu(monkeypatch):
    """A CPU whose flags say AVX512-BF16, whatever this machine has."""
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "flags : avx2 avx512f avx512_bf16" if str(self) ==
                        "/proc/cpuinfo" else real(self, *a, **k))  # fmt: skip
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_bf16_cpu_autocasts_to_bf16(bf16_cpu):
    assert cpu_has_native_bf16()
    assert resolve_precision("auto", CPU) == torch.bfloat16
    assert resolve_precision("fp32", CPU) is None


HELD_BELOW = [("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core"), ("ATEN_CPU_CAPABILITY", "avx2"),
              ("ATEN_CPU_CAPABILITY", "default")]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), HELD_BELOW)
def test_an_isa_held_below_bf16_reads_in_fp32(bf16_cpu, name, value):
    bf16_cpu.setenv(name, value)  # how benchmarks/predict_speed.py --cpu avx2 acts as an AVX2-only CPU
    assert not cpu_has_native_bf16()
    assert resolve_precision("auto", CPU) is None


def test_an_isa_that_keeps_bf16_still_autocasts(bf16_cpu):
    bf16_cpu.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert cpu_has_native_bf16()
