"""Self-training: a fine-tuned reader labels a collection's untranscribed lines, and the lines it reads most
confidently join the transcribed ones for another round of training (pseudo-labelling; `htr finetune
--self-train`). docs/results.md ("Self-training") measures it: from 250 transcribed lines of a letters collection
and 5,319 untranscribed ones, two rounds took validation CER from 30.28% to 27.55%.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datasets

from htr.inference import Reading

if TYPE_CHECKING:
    from htr.reading.decode import Decoder

KEEP_SHARE = 0.5  # the more confident half (measured: its pseudo-labels read at 22% CER, all of them at 32%)


def read_lines(checkpoint: dict, name: str, lines: datasets.Dataset, decoder: str) -> dict[int, Reading]:
    """``checkpoint``'s reading of each line of ``lines`` (text ignored; unreadable images left out), by row, with
    ``decoder`` (beam: with its LM)."""
    from htr.checkpoint import model_from_checkpoint
    from htr.data import LineDataset
    from htr.evaluate import transcribe_dataset
    from htr.runtime import resolve_device, resolve_precision

    device = resolve_device("auto")
    model, alphabet = model_from_checkpoint(checkpoint, name, device)
    prepared = LineDataset(lines, alphabet, model.config.height, model.output_length, "untranscribed lines",
                           for_training=False, unlabelled=True)  # fmt: skip
    readings = transcribe_dataset(model, prepared, alphabet, 32, device, resolve_precision("auto", device),
                                  reading_decoder(checkpoint, decoder))  # fmt: skip
    return dict(zip(prepared.rows, readings))


def reading_decoder(checkpoint: dict, decoder: str) -> Decoder:
    """The decoder ``htr finetune`` reads with: beam search with the checkpoint's LM when asked for and there is
    one, else greedy."""
    from htr.reading.decode import make_decoder

    return make_decoder(checkpoint, decoder="beam" if decoder == "beam" and checkpoint.get("lm") else "greedy")


def most_confident(readings: dict[int, Reading], share: float = KEEP_SHARE) -> list[int]:
    """The rows of the ``share`` of lines read most confidently (lines read as nothing left out), in row order."""
    if not 0 < share <= 1:
        raise ValueError(f"the share of pseudo-labelled lines kept must be in (0, 1], not {share}")
    read = [row for row, reading in readings.items() if reading.text.strip()]
    ranked = sorted(read, key=lambda row: -readings[row].confidence)
    return sorted(ranked[: round(share * len(readings))])


def pseudo_labelled(lines: datasets.Dataset, readings: dict[int, Reading], keep: list[int]) -> datasets.Dataset:
    """Rows ``keep`` of ``lines`` with their readings as text, their group marked as pseudo-labelled."""
    kept = lines.select(keep)
    groups = kept["group"] if "group" in kept.column_names else [str(row) for row in keep]
    kept = kept.remove_columns([c for c in kept.column_names if c != "image"])
    kept = kept.add_column("text", [readings[row].text for row in keep])
    kept = kept.add_column("group", [f"pseudo-labelled: {group}" for group in groups])
    return kept.cast_column("image", datasets.Image(decode=False))
