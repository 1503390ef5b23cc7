"""Distillation: a smaller student learns a trained teacher's CTC posteriors, frame by frame.

Dense targets: every frame of every line carries the teacher's whole distribution over the characters, which
teaches more per line than the transcription alone (Hinton et al., 2015; for CTC, frame-level KL as in Kurata &
Audhkhasi, 2018). Student and teacher must see the same frames: the same image height and pixels per frame.
"""

from __future__ import annotations

from pathlib import Path

import torch

from htr.alphabet import Alphabet
from htr.model_config import ModelConfig

ABSENT = -1e4  # the teacher's log-probability of characters it does not know


class Teacher:
    """A trained checkpoint run without gradients: ``teacher(images)`` gives its log-probabilities (T, B, C) over
    the student's classes (characters the teacher lacks get probability 0). ``state``: the checkpoint's dict, when
    already read (``htr.checkpoint.read_checkpoint``)."""

    def __init__(self, checkpoint: str | Path, student: ModelConfig, alphabet: Alphabet, device: torch.device,
                 channels_last: bool = False, state: dict | None = None) -> None:  # fmt: skip
        from htr.checkpoint import model_from_checkpoint, read_checkpoint

        state = read_checkpoint(checkpoint) if state is None else state
        model, known = model_from_checkpoint(state, checkpoint, device)
        config = model.config
        if (config.height, config.width_factor) != (student.height, student.width_factor):
            raise ValueError(f"teacher {checkpoint}: {config.height} px high, {config.width_factor} px a frame; the "
                             f"student: {student.height} px, {student.width_factor} px (they must match)")  # fmt: skip
        if not alphabet.chars.startswith(known.chars):
            raise ValueError(f"teacher {checkpoint}: its alphabet must begin the student's")
        self.model = model.requires_grad_(False)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.missing = alphabet.num_classes - known.num_classes
        self.alphabet = known

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, sources: list[int] | None = None) -> torch.Tensor:
        """Log-probabilities for ``images`` (``sources`` is for `Teachers`; one teacher reads every line)."""
        log_probs, _ = self.model(images)
        if self.missing:
            log_probs = torch.nn.functional.pad(log_probs, (0, self.missing), value=ABSENT)
        return log_probs


class Teachers:
    """One teacher per training dataset: the lines of dataset i learn from ``by_source[i]`` (e.g. an expert on
    that hand), the others (synthetic lines, datasets without their own) from ``default``. Called like a `Teacher`,
    with each line's dataset index (``sources``; -1: synthetic); each teacher reads only its own lines."""

    def __init__(self, default: Teacher, by_source: list[Teacher | None]) -> None:
        self.default, self.by_source = default, by_source

    def teacher_of(self, source: int) -> Teacher:
        """The teacher of dataset ``source``'s lines (-1, a synthetic line: the default)."""
        own = self.by_source[source] if 0 <= source < len(self.by_source) else None
        return own or self.default

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, sources: list[int] | None = None) -> torch.Tensor:
        if sources is None:
            return self.default(images)
        rows_of: dict[int, tuple[Teacher, list[int]]] = {}
        for row, source in enumerate(sources):
            teacher = self.teacher_of(source)
            rows_of.setdefault(id(teacher), (teacher, []))[1].append(row)
        log_probs = None
        for teacher, rows in rows_of.values():
            part = teacher(images[rows])
            if log_probs is None:
                log_probs = part.new_empty((part.shape[0], len(sources), part.shape[2]))
            log_probs[:, rows] = part
        return log_probs


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(teacher ‖ student) of each frame's distribution, both softened by ``temperature``, averaged over the
    lines' real frames (``lengths``; padding frames do not count) and scaled by temperature² (Hinton et al.)."""
    target = torch.log_softmax(teacher.float() / temperature, -1)
    predicted = torch.log_softmax(student.float() / temperature, -1)
    per_frame = (target.exp() * (target - predicted)).sum(-1)  # (T, B)
    real = torch.arange(per_frame.shape[0], device=per_frame.device)[:, None] < lengths.to(per_frame.device)[None]
    return (per_frame * real).sum() / real.sum().clamp(min=1) * temperature**2
