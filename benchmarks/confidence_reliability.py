"""How far line confidence tells good lines from bad ones: a reliability table and plot from per-line results.

    python -m htr.evaluate --dataset path/to/hooker-letters/validation --decoder beam --output lines.tsv
    python benchmarks/confidence_reliability.py lines.tsv --bins 10 -o docs/confidence_reliability.png
    python benchmarks/confidence_reliability.py before=base.tsv after=tuned.tsv --bins 5 -o compare.png

Reads the TSV that ``htr.evaluate --output`` writes (reference, hypothesis, confidence, character errors...). Lines
are sorted by confidence and cut into bins of equal line counts; per bin it prints the mean confidence and the line
accuracy (1 - CER over the bin's characters), then the CER of the less and the more confident half of the lines and
the share of all character errors each half holds. Several files (``LABEL=PATH``) are reported one after the
other; with ``-o`` it draws accuracy against confidence for each (a perfectly calibrated confidence lies on the
diagonal).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_results(path: str | Path) -> list[dict]:
    """Rows of an ``htr.evaluate --output`` TSV with confidence and error counts as numbers."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{**r, "confidence": float(r["confidence"]), "char_errors": int(r["char_errors"]),
             "ref_chars": int(r["ref_chars"])} for r in rows]  # fmt: skip


def bins_by_confidence(rows: list[dict], bins: int) -> list[dict]:
    """Equal-count bins of lines in order of confidence: mean confidence, accuracy (1 - CER), lines, errors."""
    ordered = sorted(rows, key=lambda r: r["confidence"])
    out = []
    for k in range(bins):
        part = ordered[k * len(ordered) // bins : (k + 1) * len(ordered) // bins]
        if not part:
            continue
        errors, chars = sum(r["char_errors"] for r in part), sum(r["ref_chars"] for r in part)
        out.append({"lines": len(part), "confidence": sum(r["confidence"] for r in part) / len(part),
                    "accuracy": 1 - errors / max(1, chars), "errors": errors, "chars": chars})  # fmt: skip
    return out


def labelled(argument: str) -> tuple[str, str]:
    """``LABEL=PATH`` or ``PATH`` (labelled by its file name) -> (label, path)."""
    label, sep, path = argument.partition("=")
    return (label, path) if sep and not Path(argument).is_file() else (Path(argument).stem, argument)


def report(rows: list[dict], bins: int) -> list[dict]:
    """Print the reliability table and the two halves of one results file; its bins."""
    print("| lines | mean confidence | accuracy (1 - CER) | character errors |")
    print("| --- | --- | --- | --- |")
    table = bins_by_confidence(rows, bins)
    for b in table:
        print(f"| {b['lines']} | {b['confidence']:.3f} | {b['accuracy']:.3f} | {b['errors']} of {b['chars']} |")
    total_errors = sum(b["errors"] for b in table)
    for name, half in zip(("lower", "upper"), bins_by_confidence(rows, 2)):
        print(f"{name} half of confidence: {half['lines']} lines, CER {100 * (1 - half['accuracy']):.2f}%, "
              f"{100 * half['errors'] / max(1, total_errors):.0f}% of all character errors")  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="per-line TSVs of htr.evaluate --output (LABEL=PATH to name one)")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("-o", "--output", help="save the reliability plot here (PNG)")
    parser.add_argument("--title", default="", help="the plot's title")
    args = parser.parse_args()
    tables = {}
    for label, path in map(labelled, args.results):
        print(f"\n{label} ({path})")
        tables[label] = report(read_results(path), args.bins)
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
        for label, table in tables.items():
            ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], marker="o", label=label)
        ax.set(xlabel="mean line confidence (bins of equal line counts)", ylabel="line accuracy (1 - CER)",
               xlim=(0, 1), ylim=(0, 1), title=args.title or ", ".join(tables))  # fmt: skip
        ax.legend(loc="lower right", fontsize=8)  # under the diagonal: above it is where models lie
        fig.tight_layout()
        fig.savefig(args.output, dpi=120)
        print(f"plot: {args.output}")


if __name__ == "__main__":
    main()
