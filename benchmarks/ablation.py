"""Ablation arms: the same short training from the same checkpoint, one option changed per arm, validated alike.

    python benchmarks/ablation.py --base runs/letters-large/handwriting_recognizer_best.pth --steps 1200 \\
        --output runs/ablation -- --dataset path/to/iam-dev --dataset path/to/iam-more \\
        --dataset path/to/hooker-letters --dataset-weights "[1, 0.5, 1]" --also-validate path/to/hooker-letters \\
        --batch-size 8 --lr 1e-4 --warmup-steps 50 --lm-order 0 --ema-decay 0.999

Everything after ``--`` is passed to every arm's ``htr.train`` (``--init-from BASE``, ``--max-steps STEPS``,
``--epochs 1`` and the arm's own options are added); the arms (``ARMS`` below, or ``--arms NAME ...``) run one after
another, each in ``OUTPUT/NAME`` (re-running resumes or skips what is done). Training stops at ``--steps`` inside
the epoch, so each arm ends with one validation of its own: its last state's weights (the EMA when there is one)
are validated here with ``htr.train``'s validation sets, and a Markdown table of every arm's validation CER per set
is printed (docs/results.md keeps one row per arm).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ARMS = {  # name -> the options that arm adds to the shared command
    "control": [],
    "show-through": ["--augment-show-through-p", "0.3"],
    "neighbours": ["--augment-neighbour-p", "0.3"],
    "fade-blot": ["--augment-fade-p", "0.2", "--augment-blot-p", "0.2"],
    "stains": ["--augment-stain-p", "0.3"],
    "slant": ["--augment-shear", "0.6"],
}


def evaluate_last_state(folder: Path) -> dict[str, float]:
    """Validation CER per set of the arm's last state (its weight average when it kept one)."""
    import torch

    from htr.alphabet import Alphabet
    from htr.data import LineDataset, load_validation
    from htr.model import CRNN, ModelConfig
    from htr.runtime import resolve_device, resolve_precision
    from htr.train import TrainConfig, unique_names, validation_rates

    state = torch.load(folder / "last_state.pt", map_location="cpu", weights_only=True)
    cfg = TrainConfig(**{k: v for k, v in state["config"].items() if k not in ("model", "augment")})
    model = CRNN(ModelConfig(**state["model_config"]))
    weights = state["model"]
    if state.get("ema"):
        weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    model.load_state_dict(weights)
    alphabet = Alphabet(state["alphabet"])
    sources = [cfg.val_dataset or cfg.dataset[0], *cfg.also_validate]
    splits = [load_validation(source, cfg.val_fraction, cfg.seed) for source in sources]
    names = unique_names(sources)
    sets = [LineDataset(split, alphabet, model.config.height, model.output_length, name, for_training=False)
            for split, name in zip(splits, names)]  # fmt: skip
    device = resolve_device("auto")
    rates = validation_rates(model.to(device), sets, names, alphabet, 16, device, resolve_precision("auto", device))
    return {name: r["cer"] for name, r in rates["sets"].items()} | {"mean": rates["cer"]}


def main() -> None:
    argv = sys.argv[1:]
    shared = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the checkpoint every arm starts from")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps per arm")
    parser.add_argument("--output", required=True, help="folder for the arms' runs and results.json")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    out = Path(args.output)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in args.arms:
        if name in results:
            continue
        folder = out / name
        command = [sys.executable, "-m", "htr.train", *shared, "--init-from", args.base, "--max-steps",
                   str(args.steps), "--epochs", "1", "--output-dir", str(folder), *ARMS[name]]  # fmt: skip
        print(f"arm {name}: {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True)
        results[name] = evaluate_last_state(folder)
        out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
    sets = list(next(iter(results.values()))) if results else []
    print("| arm | " + " | ".join(sets) + " |")
    print("| --- |" + " --- |" * len(sets))
    for name, cers in results.items():
        print(f"| {name} | " + " | ".join(f"{100 * cers[s]:.2f}%" for s in sets) + " |")


if __name__ == "__main__":
    main()
