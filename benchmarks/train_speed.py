"""Training throughput (lines/s) of the default CRNN at several input heights, on random line-shaped batches.

    python benchmarks/train_speed.py --heights 64 128 --width-per-64px 850 --batch-size 16

Used to choose the default image height; prints one line per setting.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn.functional import ctc_loss

from htr.cpu_share import CpuShare
from htr.model import CRNN, ModelConfig, count_parameters
from htr.runtime import autocast, prefers_channels_last, resolve_device, resolve_precision


def measure(
    height: int, width: int, batch_size: int, steps: int, precision: str, device: torch.device, share_cpu: bool = True
) -> float:
    torch.manual_seed(0)
    cpu_share = CpuShare(period=2.0) if share_cpu and device.type == "cpu" else None  # as htr.train does
    dtype = resolve_precision(precision, device)
    memory_format = torch.channels_last if prefers_channels_last(device, dtype) else torch.contiguous_format
    model = CRNN(ModelConfig(num_classes=80, height=height)).to(device).to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.rand(batch_size, 1, height, width, device=device).contiguous(memory_format=memory_format)
    targets = torch.randint(1, 80, (batch_size, 40))
    lengths = model.output_lengths(torch.full((batch_size,), width))
    target_lengths = torch.full((batch_size,), 40)
    for step in range(steps + 1):
        if cpu_share is not None:
            cpu_share.update()
        if step == 1:  # the first step warms up kernels and allocators
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device, dtype):
            log_probs, shortcut = model(images)
        loss = ctc_loss(log_probs, targets, lengths, target_lengths) + 0.1 * ctc_loss(
            shortcut, targets, lengths, target_lengths
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = steps * batch_size / (time.perf_counter() - start)
    print(f"height {height:4d}  width {width:5d}  params {count_parameters(model) / 1e6:.2f}M  "
          f"precision {dtype or 'fp32'}  {rate:.1f} lines/s")  # fmt: skip
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heights", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--width-per-64px", type=int, default=850, help="line width at 64 px height (IAM: ~850)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--share-cpu", action=argparse.BooleanOptionalAction, default=True,
                        help="threads follow the cores other processes leave free, as in htr.train")  # fmt: skip
    args = parser.parse_args()
    device = resolve_device(args.device)
    for height in args.heights:
        measure(height, args.width_per_64px * height // 64, args.batch_size, args.steps, args.precision, device,
                args.share_cpu)  # fmt: skip


if __name__ == "__main__":
    main()
