"""Throughput and peak memory of reading a folder of pages: predict.py, htr batch in one process, and htr batch on
a local Ray with 1 and 2 actors, on the same images; and what a million pages would cost at that rate.

    python benchmarks/batch_speed.py --pages ../shared/data/hooker-letters/validation --composed 40 \\
        --lines-from ../shared/data/iam-dev --work /tmp/batch-speed

The inputs are copied into ``WORK/inputs``: the page images of ``--pages`` (JPEG/PNG) and ``--composed`` pages
made of ``--lines-from``'s validation lines (``htr.synth.render.compose_page``). Each way of reading runs as its own
process tree, from nothing (model loading and Ray's start included), ``--repeats`` times (the best is kept); peak
memory is the largest sum of the resident memory of the process and all its descendants (Ray's raylet and workers
included), sampled every 0.1 s. The cost per million pages is computed from the best pages/s of ``htr batch`` on
this machine's cores: core-hours = 10^6 / (pages/s per core) / 3600, times ``--core-hour-price``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack += children.get(current, [])
    return total


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, peak tree memory and stdout of a command."""
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.1)
    out = process.stdout.read()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed with status {process.returncode}")
    return time.monotonic() - start, peak, out


def make_inputs(args: argparse.Namespace, folder: Path) -> int:
    """Copy the real pages and compose the synthetic ones into ``folder``; returns the number of images."""
    from htr.data import decode_row_image, load_splits
    from htr.synth.render import compose_page

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    if args.pages:
        for image in sorted(Path(args.pages).iterdir()):
            if image.suffix.lower() in (".jpg", ".jpeg", ".png"):
                shutil.copy(image, folder / f"real-{image.name}")
                count += 1
    if args.composed:
        lines = load_splits(args.lines_from)["validation"]
        rng = np.random.default_rng(0)
        for k in range(args.composed):
            rows = rng.choice(len(lines), size=int(rng.integers(8, 16)), replace=False)
            page, _ = compose_page([decode_row_image(lines[int(i)]["image"]).convert("L") for i in rows], rng)
            page.convert("L").save(folder / f"composed-{k:03d}.jpg", quality=90)
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", help="a folder of real page images")
    parser.add_argument("--composed", type=int, default=0, help="this many composed pages too")
    parser.add_argument("--lines-from", help="the dataset whose validation lines the composed pages are made of")
    parser.add_argument("--work", default="/tmp/batch-speed")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--core-hour-price", type=float, default=0.05, help="USD per CPU core-hour (vCPU)")
    parser.add_argument("--skip", nargs="*", default=[], help="ways to leave out: predict local ray1 ray2")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    images = make_inputs(args, work / "inputs")
    python = sys.executable
    ways = {
        "predict": ("predict.py (text)", [python, "predict.py", str(work / "inputs")]),
        "local": ("htr batch", [python, "-m", "htr.batch", str(work / "inputs"), "--output", "{out}"]),
        "ray1": ("htr batch --engine ray --actors 1",
                 [python, "-m", "htr.batch", str(work / "inputs"), "--output", "{out}", "--engine", "ray", "--actors",
                  "1"]),
        "ray2": ("htr batch --engine ray --actors 2",
                 [python, "-m", "htr.batch", str(work / "inputs"), "--output", "{out}", "--engine", "ray", "--actors",
                  "2"]),
    }  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    results, lines = {}, None
    for name, (label, command) in ways.items():
        if name in args.skip:
            continue
        best = None
        for repeat in range(args.repeats):
            out = work / f"out-{name}-{repeat}"
            seconds, peak, _ = timed([part.replace("{out}", str(out)) for part in command], root)
            if lines is None and (out / "summary.jsonl").is_file():
                rows = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
                lines = sum(row["lines"] or 0 for row in rows)
            best = min(best or (seconds, peak), (seconds, peak))
        results[name] = {"label": label, "seconds": round(best[0], 1), "peak_mib": round(best[1] / 2**20)}
    cores = len(os.sched_getaffinity(0))
    flags = Path("/proc/cpuinfo").read_text()
    cpu = "AVX512-BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    print(f"{images} images ({lines} lines), {cores} cores ({cpu}):\n")
    print("| way | seconds | pages/s | lines/s | peak memory |\n| --- | --- | --- | --- | --- |")
    for result in results.values():
        rate = images / result["seconds"]
        line_rate = f"{lines / result['seconds']:.1f}" if lines else "?"
        print(f"| {result['label']} | {result['seconds']} | {rate:.2f} | {line_rate} | {result['peak_mib']} MiB |")
    if "local" in results:
        per_core = images / results["local"]["seconds"] / cores
        core_hours = 1e6 / per_core / 3600
        print(f"\nhtr batch: {per_core:.3f} pages/s per core -> {core_hours:,.0f} core-hours per million pages, "
              f"${core_hours * args.core_hour_price:,.0f} at ${args.core_hour_price}/core-hour")  # fmt: skip
        for name in ("ray1", "ray2"):
            if name in results:
                print(f"{results[name]['label']}: {results['local']['seconds'] / results[name]['seconds']:.2f}x the "
                      "pages/s of htr batch in one process")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
