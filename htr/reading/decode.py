"""Turning network outputs into text: greedy (best path) or beam search with a character LM, and a confidence."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from htr.alphabet import BLANK, Alphabet
from htr.lm import CharLM, load_lm
from htr.reading.beam import LMScorer, beam_search_batch

DECODERS = ("greedy", "beam")
# Tuned for the shipped model on iam-dev/validation only (README, "Decoding").
DEFAULT_BEAM_WIDTH = 16
DEFAULT_LM_WEIGHT = 0.8
DEFAULT_INSERTION_BONUS = 1.5


def greedy_paths(log_probs: np.ndarray, lengths: Sequence[int]) -> list[list[int]]:
    """Collapse repeats and drop blanks of the best path. ``log_probs``: (T, B, C) array (or CPU tensor);
    ``lengths``: B frame counts."""
    best = np.asarray(log_probs).argmax(axis=-1).T  # (B, T)
    keep = np.ones(best.shape, dtype=bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != BLANK
    return [row[:n][k[:n]].tolist() for row, k, n in zip(best, keep, map(int, lengths))]


def ctc_states(paths: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CTC state sequences of a batch of label sequences (blank, label, blank, ..., label, blank): each
    sequence's label count (B,), each state's class (B, S), which states it has (B, S), and which states may be
    entered from two states back (a label that differs from the one before it) (B, S)."""
    counts = np.array([len(path) for path in paths])
    states = 2 * max(counts, default=0) + 1
    labels = np.full((len(paths), states), BLANK)
    for b, path in enumerate(paths):
        labels[b, 1 : 2 * len(path) : 2] = path
    valid = np.arange(states) < (2 * counts + 1)[:, None]
    can_skip = np.zeros(labels.shape, dtype=bool)
    can_skip[:, 2:] = (labels[:, 2:] != BLANK) & (labels[:, 2:] != labels[:, :-2])
    return counts, labels, valid, can_skip


def confidences(log_probs: np.ndarray, lengths: Sequence[int], paths: list[list[int]]) -> list[float]:
    """Per-line confidence in [0, 1]: P(text | image) summed over CTC alignments, per character (geometric
    mean over the text's characters and the end of the line), i.e. ``exp(log P / (len + 1))``.

    The CTC forward pass over a batch, in probabilities rescaled at every frame (``log_probs``: (T, B, C))."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    frames, batch = log_probs.shape[:2]
    lengths = np.array([int(n) for n in lengths])
    label_counts, labels, valid, can_skip = ctc_states(paths)
    states = labels.shape[1]
    with np.errstate(under="ignore"):
        emissions = np.exp(np.take_along_axis(log_probs, np.broadcast_to(labels, (frames, batch, states)), axis=2))
    emissions *= valid
    alpha = np.zeros((batch, states))
    alpha[:, :2] = emissions[0, :, :2]
    log_scale = np.zeros(batch)
    for t in range(1, frames):
        step = alpha.copy()
        step[:, 1:] += alpha[:, :-1]
        step[:, 2:] += np.where(can_skip[:, 2:], alpha[:, :-2], 0.0)
        step *= emissions[t]
        total = step.sum(axis=1)
        running = (t < lengths) & (total > 0)
        alpha = np.where(running[:, None], step / np.where(running, total, 1.0)[:, None], alpha)
        log_scale += np.log(np.where(running, total, 1.0))
        alpha[(t < lengths) & (total == 0)] = 0.0  # no alignment left: probability 0
    rows = np.arange(batch)
    last = alpha[rows, 2 * label_counts] + np.where(label_counts > 0, alpha[rows, 2 * label_counts - 1], 0.0)
    with np.errstate(divide="ignore"):
        log_p = np.log(last) + log_scale
    return np.exp(log_p / (label_counts + 1)).clip(0.0, 1.0).tolist()


@dataclass
class Decoder:
    """How CTC outputs become label sequences: ``greedy``, or ``beam`` search with an optional character LM."""

    method: str = "greedy"
    beam_width: int = DEFAULT_BEAM_WIDTH
    lm: CharLM | None = None
    lm_weight: float = DEFAULT_LM_WEIGHT
    insertion_bonus: float = DEFAULT_INSERTION_BONUS

    def __post_init__(self) -> None:
        if self.method not in DECODERS:
            raise ValueError(f"unknown decoder {self.method!r} (use {' or '.join(DECODERS)})")
        if self.beam_width < 1:
            raise ValueError("beam width must be at least 1")
        self._scorers: dict[str, LMScorer] = {}
        self._searching = threading.Lock()  # the scorers' tables grow as they are used: one search at a time

    def describe(self) -> str:
        if self.method == "greedy":
            return "greedy"
        lm = f"{self.lm.order}-gram LM weight {self.lm_weight}, bonus {self.insertion_bonus}" if self.lm else "no LM"
        return f"beam {self.beam_width}, {lm}"

    def paths(self, log_probs: np.ndarray, lengths: Sequence[int], alphabet: Alphabet) -> list[list[int]]:
        """Label sequences of a batch. ``log_probs``: (T, B, C) array (or CPU tensor); ``lengths``: B frame counts."""
        if self.method == "greedy":
            return greedy_paths(log_probs, lengths)
        with self._searching:
            scorer = None
            if self.lm is not None:
                scorer = self._scorers.get(alphabet.chars)
                if scorer is None:
                    scorer = self._scorers[alphabet.chars] = LMScorer(self.lm, alphabet)
            return beam_search_batch(
                np.asarray(log_probs), [int(n) for n in lengths], alphabet, self.beam_width, scorer,
                self.lm_weight if scorer else 0.0, self.insertion_bonus if scorer else 0.0,
            )  # fmt: skip


def make_decoder(
    checkpoint: dict, decoder: str = "auto", beam_width: int = DEFAULT_BEAM_WIDTH, lm: str = "auto",
    lm_weight: float = DEFAULT_LM_WEIGHT, insertion_bonus: float = DEFAULT_INSERTION_BONUS,
) -> Decoder:  # fmt: skip
    """The decoder asked for, with the LM of ``checkpoint`` (a dict from ``read_checkpoint``) when ``lm`` is
    ``auto``, none for ``none``, else the ARPA file or checkpoint at path ``lm``. ``auto`` decoder: beam search
    when there is an LM, else greedy."""
    language_model = None
    if decoder == "greedy":  # no language model to load
        return Decoder("greedy", beam_width)
    if lm == "auto" and checkpoint.get("lm"):
        try:
            language_model = CharLM.from_state(checkpoint["lm"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"the checkpoint's language model is unreadable ({error}); try --lm none") from None
    elif lm not in ("auto", "none"):
        language_model = load_lm(lm)
    if decoder == "auto":
        decoder = "beam" if language_model is not None else "greedy"
    return Decoder(decoder, beam_width, language_model, lm_weight, insertion_bonus)
