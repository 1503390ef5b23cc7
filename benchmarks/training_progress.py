"""Validation CER against training lines seen, over the sittings of one or more training runs.

    python benchmarks/training_progress.py runs/long --start-lines 94584 --start-cer 0.1077 -o docs/progress.png

Reads each run folder's ``history.json`` (written by ``htr.train`` after every epoch); runs given one after
another are chained (a run started with ``--init-from`` the previous one's best continues its line count).
``--start-lines``/``--start-cer``: where the first run started (e.g. the lines the model it was initialised
from had seen, and its CER). Prints a Markdown table with one row per sitting (a sitting is one process of
``htr.train``: an interrupted run resumed later is the next sitting) and saves the plot: one curve per
validation set for runs validated on several (``--also-validate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def sittings(history: list[dict]) -> list[dict]:
    """One summary per sitting: epochs, last step, lines seen, training hours, hardware, best CER/WER so far."""
    rows: dict[int, dict] = {}
    best = None
    for entry in history:
        if best is None or entry["val_cer"] < best["val_cer"]:
            best = entry
        row = rows.setdefault(entry.get("sitting", 1), {"epochs": 0, "hardware": entry.get("hardware", "?")})
        row.update(epochs=row["epochs"] + 1, step=entry["step"], lines_seen=entry.get("lines_seen"),
                   hours=entry.get("train_seconds", 0) / 3600, best_cer=best["val_cer"], best_wer=best["val_wer"],
                   last_cer=entry["val_cer"])  # fmt: skip
    return [{"sitting": k, **v} for k, v in sorted(rows.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="training output folders, in the order they were trained")
    parser.add_argument("--start-lines", type=int, default=0, help="lines seen before the first run")
    parser.add_argument("--start-cer", type=float, help="validation CER before the first run (a fraction)")
    parser.add_argument("-o", "--output", help="save the plot here (PNG)")
    args = parser.parse_args()

    offset, xs, ys, raw, by_set = args.start_lines, [], [], [], {}
    if args.start_cer is not None:
        xs, ys = [offset], [args.start_cer]
    print("| run | sitting | epochs | steps | lines seen | hours | hardware | best val CER | best val WER |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        history = json.loads((Path(run) / "history.json").read_text())
        for row in sittings(history):
            lines = offset + (row["lines_seen"] or 0)
            print(f"| {Path(run).name} | {row['sitting']} | {row['epochs']} | {row['step']:,} | {lines:,} | "
                  f"{row['hours']:.2f} | {row['hardware']} | {100 * row['best_cer']:.2f}% | "
                  f"{100 * row['best_wer']:.2f}% |")  # fmt: skip
        for entry in history:
            if entry.get("lines_seen") is None:
                continue
            xs.append(offset + entry["lines_seen"])
            ys.append(entry["val_cer"])
            if "val_cer_raw" in entry:
                raw.append((offset + entry["lines_seen"], entry["val_cer_raw"]))
            for name, figures in entry.get("val", {}).items():
                by_set.setdefault(name, []).append((offset + entry["lines_seen"], figures["cer"]))
        offset = xs[-1] if xs else offset
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        if len(by_set) > 1:  # each validation set, not their mean
            for name, points in by_set.items():
                ax.plot([x / 1e3 for x, _ in points], [100 * y for _, y in points], "o-", label=name, markersize=3)
        else:
            ax.plot([x / 1e3 for x in xs], [100 * y for y in ys], "o-", label="validated model", markersize=3)
        if raw and len(by_set) <= 1:
            ax.plot([x / 1e3 for x, _ in raw], [100 * y for _, y in raw], "x", label="raw weights (without EMA)",
                    markersize=4, alpha=0.6)  # fmt: skip
        ax.set_xlabel("training lines seen (thousands)")
        ax.set_ylabel("validation CER, greedy (%)")
        ax.set_title("validation sets" if len(by_set) > 1 else "iam-dev validation (390 lines, 24 unseen writers)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.output, dpi=120)
        print(f"plot: {args.output}")


if __name__ == "__main__":
    main()
