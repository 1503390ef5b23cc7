"""Turning network outputs into text: greedy (best path) or beam search with a character LM, and a confidence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.functional import ctc_loss

from htr.alphabet import BLANK, Alphabet
from htr.beam import LMScorer, prefix_beam_search
from htr.decoding_options import DECODERS, DEFAULT_BEAM_WIDTH, DEFAULT_INSERTION_BONUS, DEFAULT_LM_WEIGHT
from htr.lm import CharLM, load_lm


def greedy_paths(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Collapse repeats and drop blanks of the best path. ``log_probs``: (T, B, C); ``lengths``: (B,)."""
    best = log_probs.argmax(dim=-1).T.cpu()  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != BLANK
    return [row[:n][k[:n]].tolist() for row, k, n in zip(best, keep, lengths.tolist())]


@torch.no_grad()
def confidences(log_probs: torch.Tensor, lengths: torch.Tensor, paths: list[list[int]]) -> list[float]:
    """Per-line confidence in [0, 1]: P(text | image) summed over CTC alignments, per character (geometric
    mean over the text's characters and the end of the line), i.e. ``exp(log P / (len + 1))``."""
    targets = torch.tensor([c for path in paths for c in path], dtype=torch.long)
    target_lengths = torch.tensor([len(path) for path in paths], dtype=torch.long)
    nll = ctc_loss(log_probs.float().cpu(), targets, lengths.cpu(), target_lengths, reduction="none")
    return torch.exp(-nll / (target_lengths + 1)).clamp(0, 1).tolist()


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

    def describe(self) -> str:
        if self.method == "greedy":
            return "greedy"
        lm = f"{self.lm.order}-gram LM weight {self.lm_weight}, bonus {self.insertion_bonus}" if self.lm else "no LM"
        return f"beam {self.beam_width}, {lm}"

    def paths(self, log_probs: torch.Tensor, lengths: torch.Tensor, alphabet: Alphabet) -> list[list[int]]:
        """Label sequences of a batch. ``log_probs``: (T, B, C); ``lengths``: (B,)."""
        if self.method == "greedy":
            return greedy_paths(log_probs, lengths)
        scorer = None
        if self.lm is not None:
            scorer = self._scorers.get(alphabet.chars)
            if scorer is None:
                scorer = self._scorers[alphabet.chars] = LMScorer(self.lm, alphabet)
        frames = log_probs.float().cpu().numpy()
        return [
            prefix_beam_search(
                frames[:n, b],
                alphabet,
                self.beam_width,
                scorer,
                self.lm_weight if scorer else 0.0,
                self.insertion_bonus if scorer else 0.0,
            )  # fmt: skip
            for b, n in enumerate(lengths.tolist())
        ]


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
