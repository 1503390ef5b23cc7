"""Greedy (best path) CTC decoding: the one place that turns network outputs into text."""

from __future__ import annotations

import torch

from htr.alphabet import BLANK, Alphabet


def greedy_paths(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Collapse repeats and drop blanks of the best path. ``log_probs``: (T, B, C); ``lengths``: (B,)."""
    best = log_probs.argmax(dim=-1).T.cpu()  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != BLANK
    return [row[:n][k[:n]].tolist() for row, k, n in zip(best, keep, lengths.tolist())]


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, alphabet: Alphabet) -> list[str]:
    """Text of each sequence in the batch."""
    return [alphabet.decode(path) for path in greedy_paths(log_probs, lengths)]
