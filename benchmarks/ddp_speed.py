"""Training lines/s of one process against N data-parallel processes (torchrun, gloo on the CPU; NCCL on GPUs).

    python benchmarks/ddp_speed.py --dataset path/to/iam-dev --lines 320 --processes 1 2

Each setting trains the default CRNN for one epoch over the first ``--lines`` training lines with the same global
batch, from scratch in a fresh folder, as its own ``htr.train`` process (``torchrun --standalone`` when N > 1), and
reads lines seen and the optimizer loop's wall time (``train_seconds``: no start-up, loading or validation) from
the run's history. On a 2-core CPU expect no speed-up: the figure shows the overhead, not a gain.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(processes: int, args: argparse.Namespace, folder: Path) -> dict:
    train = ["-m", "htr.train", "--dataset", args.dataset, "--output-dir", str(folder), "--epochs", "1",
             "--batch-size", str(args.batch_size), "--max-train-lines", str(args.lines), "--max-val-lines", "16",
             "--lm-order", "0", "--device", args.device, "--warmup-steps", "10"]  # fmt: skip
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]  # fmt: skip
    result = subprocess.run(launcher + train, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{processes} process(es) failed:\n{result.stderr[-2000:]}")
    (entry,) = json.loads((folder / "history.json").read_text())
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a dataset htr.train reads (see htr.data)")
    parser.add_argument("--lines", type=int, default=320, help="training lines per run")
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch (lines per optimizer step)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"{args.lines} lines of {args.dataset}, global batch {args.batch_size}, device {args.device}")
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for processes in args.processes:
            entry = run(processes, args, Path(tmp) / f"n{processes}")
            rate = entry["lines_seen"] / entry["train_seconds"]
            baseline = baseline or rate
            print(f"{processes} process(es): {rate:6.1f} lines/s ({entry['lines_seen']} lines in "
                  f"{entry['train_seconds']:.1f} s, {entry['step']} steps; {rate / baseline:.2f}x the first setting)"
                  f"  {entry['hardware']}")  # fmt: skip


if __name__ == "__main__":
    main()
