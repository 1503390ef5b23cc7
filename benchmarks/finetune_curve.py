"""The fine-tuning learning curve: CER on a collection's validation pages against the number of its training lines
fine-tuned on (and against CPU minutes), from a model that has never seen the collection's hand, and from scratch.

    python benchmarks/finetune_curve.py --data ../shared/data/hooker-letters --base iam-only.pth \\
        --output runs/finetune-curve --lines 25 50 100 250 500 1000 all --scratch 250 1000 all

Each point is ``htr finetune DATA --max-lines N`` with the plan's defaults (``--minutes`` and any other ``htr
finetune`` option after ``--`` are passed on), written to ``OUTPUT/finetune-N``; ``OUTPUT/scratch-N`` starts from
scratch instead (the base's architecture, alphabet and LM with fresh weights, at ``--scratch-lr``). Points already
done are read back, so a killed run resumes; the table (markdown) and ``curve.png`` are written from every point
done. The first evaluation of the base (and of the fresh weights) is made once and copied to the other points (same
start, same validation pages); its minutes count in each point, and come off the ``--minutes`` budget it is given.

``--self-train R`` adds, for each point of ``--lines`` but "all" (or of ``--self-train-lines``), a run with R
rounds of self-training (``OUTPUT/selftrain-N``): the collection's other training lines, written as line images
without their text to ``OUTPUT/untranscribed-N``, are its ``--unlabelled`` lines (as a user's segmented but
untranscribed pages would be).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def scratch_base(base: str, path: Path) -> str:
    """The base's architecture, alphabet and LM with freshly initialised weights, saved at ``path``."""
    import torch

    from htr.alphabet import Alphabet
    from htr.checkpoint import atomic_save, model_checkpoint, read_checkpoint
    from htr.model import CRNN, ModelConfig

    if not path.is_file():
        state = read_checkpoint(base)
        torch.manual_seed(0)
        model = CRNN(ModelConfig(**state["model_config"]))
        checkpoint = model_checkpoint(model, Alphabet(state["alphabet"]))
        checkpoint["lm"] = state.get("lm")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(checkpoint, path)
    return str(path)


def run_point(data: str, base: str, lines: str, folder: Path, passed: list[str], before: Path | None) -> dict:
    """One ``htr finetune`` run (resumed when it was interrupted); its report, with ``minutes`` counting the first
    evaluation even where it was copied from another point (the budget given to the run is cut by as much)."""
    shared_path = folder / "shared_first_evaluation.json"
    done = (folder / "report.json").is_file()
    if not done:
        folder.mkdir(parents=True, exist_ok=True)
        if before is not None and before.is_file() and not (folder / "before.json").exists():
            shutil.copy(before, folder / "before.json")
            shared_path.write_text(json.dumps({"seconds": json.loads(before.read_text())["seconds"]}))
    shared = json.loads(shared_path.read_text())["seconds"] / 60 if shared_path.is_file() else 0.0
    if not done:
        if shared and "--minutes" in passed:
            at = passed.index("--minutes") + 1
            passed = [*passed[:at], f"{float(passed[at]) - shared:.2f}", *passed[at + 1 :]]
        command = [sys.executable, "-m", "htr.finetune", data, "--output", str(folder), "--base", base, *passed]
        if lines != "all":
            command += ["--max-lines", lines]
        print(" ".join(command), flush=True)
        with open(folder / "finetune.log", "a") as log:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "TQDM_MININTERVAL": "30"}).returncode  # fmt: skip
        if status != 0:
            raise SystemExit(f"htr finetune failed for {lines} lines (status {status}): see {folder / 'finetune.log'}")
    report = json.loads((folder / "report.json").read_text())
    report["minutes"] = round(report["minutes"] + shared, 1)
    return report


def untranscribed_folder(data: str, after: int, folder: Path) -> Path:
    """The training lines of ``data`` after the first ``after`` as PNG files without their text, in ``folder``."""
    from htr.data import load_splits

    if not (folder / "done").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        train = load_splits(data, carve=False)["train"]
        for row in range(after, len(train)):
            (folder / f"{row:06d}.png").write_bytes(train[row]["image"]["bytes"])
        (folder / "done").write_text(f"{len(train) - after} lines\n")
    return folder


def table(rows: list[dict]) -> str:
    lines = ["| start | training lines | pages | CER before | CER after | WER after | epochs | minutes (2 cores) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in rows:
        report = row["report"]
        before = f"{100 * report['before']['cer']:.2f}%" if row["start"] != "scratch" else "(fresh weights)"
        lines.append(f"| {row['start']} | {report['training lines']:,} | {report['pages']} | {before} | "
                     f"{100 * report['after']['cer']:.2f}% | "
                     f"{100 * report['after']['wer']:.2f}% | {report['epochs']} | {report['minutes']} |")  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for start, marker in (("fine-tuned", "o"), ("self-trained", "^"), ("scratch", "s")):
        points = sorted((r["report"] for r in rows if r["start"] == start), key=lambda r: r["training lines"])
        if not points:
            continue
        cer = [100 * p["after"]["cer"] for p in points]
        axes[0].plot([p["training lines"] for p in points], cer, marker=marker, label=start)
        axes[1].scatter([p["minutes"] for p in points], cer, marker=marker, label=start)
        for point, value in zip(points, cer):  # each point named by its lines: minutes do not grow with them
            axes[1].annotate(f"{point['training lines']:,}", (point["minutes"], value), textcoords="offset points",
                             xytext=(5, 4), fontsize=8)  # fmt: skip
    before = next((100 * r["report"]["before"]["cer"] for r in rows if r["start"] == "fine-tuned"), None)
    for axis in axes:
        if before is not None:
            axis.axhline(before, color="grey", linestyle="--", label="before (the base model)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training lines of the collection")
    axes[1].set_xlabel("minutes of the whole command (2-core CPU)")
    axes[0].set_ylabel("validation CER, % (beam + LM)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a collection with train/ and validation/ (PAGE or ALTO)")
    parser.add_argument("--base", required=True, help="a model that has not seen the collection")
    parser.add_argument("--output", default="runs/finetune-curve")
    parser.add_argument("--lines", nargs="*", default=["25", "50", "100", "250", "500", "1000", "all"])
    parser.add_argument("--scratch", nargs="*", default=[], help="these points also from scratch")
    parser.add_argument("--scratch-lr", default="1e-3", help="peak learning rate from scratch (htr train's default)")
    parser.add_argument("--plot", default="", help="where to write the plot (default: OUTPUT/curve.png)")
    parser.add_argument(
        "--self-train",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also each point with ROUNDS of self-training on the other training lines",
    )
    parser.add_argument(
        "--self-train-lines",
        nargs="+",
        default=None,
        help="the points run with --self-train (default: those of --lines but all)",
    )
    args, passed = parser.parse_known_args()
    passed = [a for a in passed if a != "--"]
    out = Path(args.output)
    rows = []
    starts = [("fine-tuned", "finetune", args.lines, args.base, passed)]
    if args.scratch:
        fresh = scratch_base(args.base, out / "scratch-base.pth")
        starts.append(("scratch", "scratch", args.scratch, fresh, [*passed, "--lr", args.scratch_lr]))
    if args.self_train:
        points = args.self_train_lines or [n for n in args.lines if n != "all"]
        starts.append(("self-trained", "selftrain", points, args.base,
                       [*passed, "--self-train", str(args.self_train)]))  # fmt: skip
    for start, prefix, points, base, given in [s for s in starts if s[2]]:  # starts with points to run
        before = out / f"{prefix}-{points[0]}" / "before.json"  # the first point's first evaluation, shared
        if start == "self-trained" and (out / f"finetune-{points[0]}" / "before.json").is_file():
            before = out / f"finetune-{points[0]}" / "before.json"  # the same start as the fine-tuned points
        for lines in points:
            own = given
            if start == "self-trained":
                unlabelled = untranscribed_folder(args.data, int(lines), out / f"untranscribed-{lines}")
                own = [*given, "--unlabelled", str(unlabelled)]
            report = run_point(args.data, base, lines, out / f"{prefix}-{lines}", own, before)
            rows.append({"start": start, "report": report})
    text = table(rows)
    print(text)
    (out / "curve.md").write_text(text + "\n")
    plot(rows, Path(args.plot) if args.plot else out / "curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
