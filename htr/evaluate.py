"""Character and word error rates of a checkpoint on a dataset split.

    python -m htr.evaluate --checkpoint handwriting_recognizer_best.pth \\
        --dataset Teklia/IAM-line --split test --decoder beam --output results.tsv

A dataset without splits of its own (a folder of PAGE XML / ALTO files, of images with ``labels.tsv``, or IAM's
layout) is scored whole unless ``--split validation`` asks for the part ``htr.train`` holds out of it (10%, by
page or writer, seed 0). Also reports the error rates of the less and the more confident half of the lines.
"""

from __future__ import annotations

import csv
import logging

import datasets
import torch

from htr.alphabet import Alphabet
from htr.cpu_share import CpuShare
from htr.data import LineDataset
from htr.inference import Reading, transcribe
from htr.metrics import cer, char_errors, wer, word_errors
from htr.model import CRNN
from htr.reading.decode import Decoder
from htr.runtime import TorchNetwork

log = logging.getLogger(__name__)


def transcribe_dataset(
    model: CRNN, dataset: LineDataset, alphabet: Alphabet, batch_size: int,
    device: torch.device, dtype: torch.dtype | None = None, decoder: Decoder | None = None,
    cpu_share: CpuShare | None = None,
) -> list[Reading]:  # fmt: skip
    """Readings of every line of ``dataset`` (greedy unless ``decoder`` says otherwise), in dataset order."""
    was_training = model.training
    model.eval()
    network = TorchNetwork(model, device, dtype, cpu_share)
    readings = transcribe(network, alphabet, dataset.widths, lambda i: dataset[i][0].numpy(), batch_size, decoder)
    model.train(was_training)
    return readings


def read_split(
    checkpoint: dict, name: str, split: datasets.Dataset, decoder: Decoder, device: torch.device,
    dtype: torch.dtype | None = None, split_name: str = "validation", batch_size: int = 32, limit: int | None = None,
    cpu_share: CpuShare | None = None,
) -> tuple[list[str], list[Reading]]:  # fmt: skip
    """The reference texts of a dataset split and a checkpoint dict's readings of its lines (``name`` for errors)."""
    from htr.checkpoint import model_from_checkpoint

    model, alphabet = model_from_checkpoint(checkpoint, name, device)
    lines = LineDataset(split, alphabet, model.config.height, model.output_length, split_name, limit=limit,
                        for_training=False)  # fmt: skip
    return lines.texts, transcribe_dataset(model, lines, alphabet, batch_size, device, dtype, decoder, cpu_share)


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    return {"cer": cer(references, hypotheses), "wer": wer(references, hypotheses)}


def confidence_halves(references: list[str], readings: list[Reading]) -> dict[str, dict[str, float]]:
    """Error rates of the less confident and the more confident half of the lines."""
    order = sorted(range(len(readings)), key=lambda i: readings[i].confidence)
    halves = {"low": order[: len(order) // 2], "high": order[len(order) // 2 :]}
    return {
        name: error_rates([references[i] for i in part], [readings[i].text for i in part])
        for name, part in halves.items()
    }


def write_lines(path: str, references: list[str], readings: list[Reading]) -> None:
    """Per-line results as TSV: reference, hypothesis, confidence, character and word errors."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(
            ["reference", "hypothesis", "confidence", "char_errors", "ref_chars", "word_errors", "ref_words"]
        )
        for ref, r in zip(references, readings):
            writer.writerow([
                ref, r.text, f"{r.confidence:.4f}", char_errors(ref, r.text), len(ref),
                word_errors(ref, r.text), len(ref.split()),
            ])  # fmt: skip


if __name__ == "__main__":  # python -m htr.evaluate: its command line is htr.cli.evaluate (run, not imported)
    import runpy

    runpy.run_module("htr.cli.evaluate", run_name="__main__", alter_sys=True)
