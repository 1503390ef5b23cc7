"""Whole-process reading speed and peak memory of predict.py over a folder of line images, beside a baseline.

    python benchmarks/predict_speed.py --dataset ../shared/data/iam-dev --split validation \\
        --baseline ../shared/baseline/baseline_crnn.pth --repeat 3

The split's lines are written as PNG files to a temporary folder (not timed). Each setting then runs as its own
process, timed from start to exit (Python start-up, imports, model load, reading every image, printing), and its
peak resident memory is taken from the OS: predict.py as it runs by default (beam + LM, and greedy; with the
int8 ONNX export beside the checkpoint, ``htr.export``, when there is one made from it), on PyTorch
(``--onnx none``) and on an fp32 ONNX export made first, and the baseline CRNN given by path (run by
``--run-baseline``, its own preprocessing: squashed to 64×512, greedy). Settings take turns ``--repeat`` times.
Prints lines/s (median run) with the range of run times, peak memory, CER and WER per setting, and our speed over
the baseline's. ONNX runs read the ONNX file alone, without PyTorch.

``--cpu native avx2`` runs everything twice: as this CPU is, and acting as an AVX2-only CPU (no AVX-512, no native
bf16): ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2`` for every process, baseline included, checked
by asking PyTorch and oneDNN which instructions they then use (printed). ONNX Runtime has no such switch: its rows
under ``avx2`` still use this CPU's own kernels and are marked so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_VOCAB = " !\"#&'()*+,-./0123456789:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def run_baseline(weights: str, files: list[str], batch_size: int = 32) -> None:
    """The baseline as its README describes it; prints ``path<TAB>text`` per image."""
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

    class BaselineCRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # fmt: skip
            self.map_to_seq = nn.Linear(1024, 64)
            self.rnn = nn.LSTM(64, 128, num_layers=2, bidirectional=True, dropout=0.25)
            self.fc = nn.Linear(256, 80)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.cnn(x)  # (B, 64, 16, 128)
            b, c, h, w = features.shape
            sequence = self.map_to_seq(features.permute(0, 3, 1, 2).reshape(b, w, c * h)).permute(1, 0, 2)
            return self.fc(self.rnn(sequence)[0]).log_softmax(-1)  # (T, B, 80)

    model = BaselineCRNN()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images = [np.asarray(Image.open(f).convert("L").resize((512, 64)), dtype=np.float32) for f in chunk]
            batch = (torch.from_numpy(np.stack(images))[:, None] / 255 - 0.5) / 0.5
            best = model(batch).argmax(-1).T  # (B, T)
            for path, row in zip(chunk, best.tolist()):
                text, previous = [], 0
                for label in row:
                    if label != previous and label != 0:
                        text.append(BASELINE_VOCAB[label - 1])
                    previous = label
                print(f"{path}\t{''.join(text)}")


CPU_KINDS = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
ISA_CHECK = """
import torch
from htr.runtime import cpu_has_native_bf16
with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.inference_mode():
    torch.nn.Conv2d(32, 32, 3)(torch.randn(2, 32, 64, 256))
print("ATen kernels", torch.backends.cpu.get_cpu_capability(), "| native bf16 autocast", cpu_has_native_bf16())
"""


def instructions(env: dict[str, str]) -> str:
    """What PyTorch and oneDNN use under ``env``: ATen's kernel level, bf16 choice and oneDNN's ISA line."""
    result = subprocess.run([sys.executable, "-c", ISA_CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=True)  # fmt: skip
    onednn = next((field.removeprefix("isa:") for line in result.stdout.splitlines() if "onednn_verbose" in line
                   for field in line.split(",") if field.startswith("isa:")), "?")  # fmt: skip
    return f"{result.stdout.splitlines()[-1]} | oneDNN {onednn}"


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak resident memory (MiB) and stdout of one process."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in (0, 1):
            raise RuntimeError(f"{command} exited with {process.returncode}")
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="handwriting_recognizer_best.pth")
    parser.add_argument("--dataset")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--baseline", help="the baseline's state_dict (not part of this project)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting; the median time is reported")
    parser.add_argument("--cpu", nargs="+", choices=list(CPU_KINDS), default=["native"],
                        help="this CPU as it is, and/or acting as an AVX2-only CPU")  # fmt: skip
    parser.add_argument("--run-baseline", nargs="+", metavar=("WEIGHTS", "IMAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_baseline:
        run_baseline(args.run_baseline[0], args.run_baseline[1:])
        return
    if not args.dataset:
        parser.error("--dataset is required")
    from htr.data import decode_row_image, load_splits, normalize_text

    split = load_splits(args.dataset)[args.split]
    references: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        for i, (image, text) in enumerate(zip(split["image"], split["text"])):
            path = os.path.join(folder, f"{i:05d}.png")
            decode_row_image(image).save(path)
            references[path] = normalize_text(text)
        files = sorted(references)
        from htr.reading.onnx_network import export_beside

        shipped, note = export_beside(args.checkpoint)  # what predict.py runs by default on a CPU
        onnx_path = os.path.join(folder, "model.onnx")
        export = [sys.executable, "-m", "htr.export", "--checkpoint", args.checkpoint, "--check", "-o", onnx_path]
        subprocess.run(export, cwd=ROOT, check=True, capture_output=True)
        predict = [sys.executable, "predict.py", "--checkpoint", args.checkpoint, "--format", "tsv", folder]
        default = "int8 ONNX beside the checkpoint" if shipped else "PyTorch: no usable export beside the checkpoint"
        settings = {
            "ours, PyTorch, greedy": [*predict, "--onnx", "none", "--decoder", "greedy"],
            "ours, PyTorch, beam 16 + LM": [*predict, "--onnx", "none"],
            "ours, ONNX Runtime fp32, greedy": [*predict, "--decoder", "greedy", "--onnx", onnx_path],
            "ours, ONNX Runtime fp32, beam 16 + LM": [*predict, "--onnx", onnx_path],
            "ours, default runtime, greedy": [*predict, "--decoder", "greedy"],
            "ours, default (beam 16 + LM)": predict,
        }
        onnx_runs = {name for name in settings if "ONNX" in name or (shipped and "default" in name)}
        if args.baseline:
            settings["baseline CRNN (0.7M, 64x512 squashed), greedy"] = [
                sys.executable, __file__, "--run-baseline", args.baseline, *files,
            ]  # fmt: skip
        print(f"{len(files)} line images from {args.dataset} ({args.split}); {os.cpu_count()} CPUs; whole process; "
              f"median of {args.repeat} run(s), settings taken in turn; default runtime: {default}")  # fmt: skip
        if note:
            print(f"note: {note}")
        for kind in args.cpu:
            env = {**os.environ, **CPU_KINDS[kind]}
            print(f"\n--cpu {kind}: {instructions(env)}", flush=True)
            report(settings, env, files, references, args.repeat, onnx_runs if kind != "native" else set())


def report(settings: dict[str, list[str]], env: dict[str, str], files: list[str], references: dict[str, str],
           repeat: int, native_kernels: set[str]) -> None:  # fmt: skip
    """Run every setting ``repeat`` times in turn under ``env``; print speed, memory, CER and WER of each;
    ``native_kernels``: the settings that ignore ``env``'s instruction limits (ONNX Runtime)."""
    from htr.metrics import cer, wer

    runs: dict[str, list[float]] = {name: [] for name in settings}
    results: dict[str, tuple[float, str]] = {}
    for _ in range(repeat):
        for name, command in settings.items():
            seconds, memory, stdout = timed(command, env)
            runs[name].append(seconds)
            results[name] = max(memory, results.get(name, (0.0, ""))[0]), stdout
    rates = {}
    for name, (memory, stdout) in results.items():
        seconds = statistics.median(runs[name])
        texts = dict(line.split("\t")[:2] for line in stdout.splitlines() if "\t" in line)
        hypotheses = [texts.get(f, "") for f in files]
        truth = [references[f] for f in files]
        rates[name] = len(files) / seconds
        errors = f"CER {100 * cer(truth, hypotheses):5.2f}%  WER {100 * wer(truth, hypotheses):5.2f}%"
        spread = f"{min(runs[name]):5.1f}-{max(runs[name]):5.1f} s"
        mark = "  (this CPU's own kernels)" if name in native_kernels else ""
        print(f"{name:48s} {rates[name]:6.1f} lines/s  ({spread})  peak {memory:6.0f} MiB  {errors}{mark}",
              flush=True)  # fmt: skip
    base = next((rate for name, rate in rates.items() if name.startswith("baseline")), None)
    if base:
        for name, rate in rates.items():
            if name.startswith("ours"):
                print(f"{name}: {rate / base:.2f}× the baseline's speed")


if __name__ == "__main__":
    main()
