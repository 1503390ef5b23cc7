"""How reading and training cope when other busy processes share the CPU.

    python benchmarks/cpu_sharing.py --images path/to/line/images --busy 0 1 2 --repeat 2

Runs each workload as its own process, timed from start to exit, beside 0, 1, ... processes that spin on a
core (`while True: pass`), under three thread settings:
- ``share``: the project's default, threads follow the cores others leave free (``htr.cpu_share``);
- ``all``: ``OMP_NUM_THREADS`` = every core, i.e. PyTorch's own default before ``htr.cpu_share``;
- ``one``: ``OMP_NUM_THREADS=1``.
Workloads: ``predict.py --decoder greedy`` over the images (default decoding with ``--beam``), and 12 training
steps of the default CRNN on random lines (``benchmarks/train_speed.py``). Prints one line per run and a
table of median seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from htr.cpu_share import usable_cores

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = {"share": {}, "all": {"OMP_NUM_THREADS": str(usable_cores())}, "one": {"OMP_NUM_THREADS": "1"}}


def timed(command: list[str], env_update: dict[str, str], busy: int) -> float:
    """Seconds ``command`` takes beside ``busy`` spinning processes."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5)
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env_update
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of line images for predict.py")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="numbers of busy processes")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--beam", action="store_true", help="predict with its default decoding (beam + LM)")
    parser.add_argument("--workloads", nargs="+", default=["predict", "train"], choices=["predict", "train"])
    args = parser.parse_args()
    predict = [sys.executable, "predict.py", args.images] + ([] if args.beam else ["--decoder", "greedy"])
    train = [sys.executable, "benchmarks/train_speed.py", "--heights", "64", "--batch-size", "8", "--steps", "12"]
    commands = {"predict": predict, "train": train}
    print(f"{usable_cores()} cores; {' '.join(predict[1:])} | {' '.join(train[1:])}")
    results: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(args.repeat):
        for workload in args.workloads:
            for busy in args.busy:
                for setting in args.settings:
                    seconds = timed(commands[workload], SETTINGS[setting], busy)
                    results.setdefault((workload, busy, setting), []).append(seconds)
                    print(f"{workload:8s} busy {busy}  {setting:6s} {seconds:6.1f} s", flush=True)
    print("\nmedian seconds | " + " | ".join(args.settings))
    for workload in args.workloads:
        for busy in args.busy:
            cells = [f"{statistics.median(results[(workload, busy, s)]):.1f}" for s in args.settings]
            print(f"{workload} beside {busy} busy | " + " | ".join(cells))


if __name__ == "__main__":
    main()
