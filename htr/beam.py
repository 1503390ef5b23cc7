"""CTC prefix beam search with an optional character language model (shallow fusion).

Each hypothesis is a prefix with two probabilities, ending in a blank or in its last character, summed over all
CTC alignments (Hannun et al., 2014). A prefix is ranked by
``log P_ctc(prefix) + lm_weight * log P_lm(prefix) + insertion_bonus * len(prefix)``; at the end of the line the
language model also scores the end of the line. The beam is kept in NumPy arrays so each frame costs a few vector
operations; characters whose frame probability is below ``exp(prune_logp)`` are not tried as extensions, and an
extension is only built when it could enter the beam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from htr.alphabet import BLANK, Alphabet
from htr.lm import BOS, EOS, UNK, CharLM


class LMScorer:
    """A character LM seen through a model's alphabet: ``row(context)[c]`` is the log probability of class ``c``
    after ``context``; the blank's slot holds the end-of-line probability."""

    def __init__(self, lm: CharLM, alphabet: Alphabet) -> None:
        self.lm = lm
        unknown = lm.index[UNK]
        self.columns = np.array([lm.index[EOS]] + [lm.index.get(c, unknown) for c in alphabet.chars])
        self._rows: dict[str, np.ndarray] = {}

    def row(self, context: str) -> np.ndarray:
        row = self._rows.get(context)
        if row is None:
            if len(self._rows) > 500_000:
                self._rows.clear()
            row = self._rows[context] = self.lm.distribution(context)[self.columns]
        return row


@dataclass
class _Prefixes:
    """A trie of the prefixes met while decoding one line; node 0 is the empty prefix."""

    parent: list[int]
    label: list[int]
    context: list[str]  # the LM context of each node: the last (order - 1) characters, BOS-prefixed
    children: dict[tuple[int, int], int]

    @classmethod
    def empty(cls) -> _Prefixes:
        return cls([-1], [BLANK], [BOS], {})

    def child(self, node: int, label: int, chars: str, keep: int) -> int:
        key = (node, label)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = len(self.parent)
            self.parent.append(node)
            self.label.append(label)
            context = self.context[node] + chars[label - 1]
            self.context.append(context[-keep:] if keep else "")
        return found

    def labels(self, node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(self.label[node])
            node = self.parent[node]
        return out[::-1]


def prefix_beam_search(
    log_probs: np.ndarray, alphabet: Alphabet, beam_width: int = 16, scorer: LMScorer | None = None,
    lm_weight: float = 0.0, insertion_bonus: float = 0.0, prune_logp: float = -10.0,
) -> list[int]:  # fmt: skip
    """Best label sequence for one line. ``log_probs``: (T, C) natural-log CTC posteriors, blank at index 0."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    num_classes = log_probs.shape[1]
    use_lm = scorer is not None and lm_weight != 0.0
    keep = scorer.lm.order - 1 if scorer is not None else 0
    trie = _Prefixes.empty()
    nodes = np.zeros(1, dtype=np.int64)
    blank_end = np.zeros(1)  # log P(prefix, alignment ends in blank)
    label_end = np.full(1, -np.inf)  # log P(prefix, alignment ends in its last label)
    bonus = np.zeros(1)  # LM and insertion score of the prefix
    last = np.full(1, num_classes)  # last label of the prefix (num_classes: none)
    for frame in log_probs:
        with_none = np.append(frame, -np.inf)
        total = np.logaddexp(blank_end, label_end)
        stay_blank = total + frame[BLANK]
        stay_label = label_end + with_none[last]
        stay_score = np.logaddexp(stay_blank, stay_label) + bonus
        candidates = np.flatnonzero(frame[1:] > prune_logp) + 1
        if candidates.size:
            ext = total[:, None] + frame[candidates][None, :]  # (B, K)
            repeat = last[:, None] == candidates[None, :]
            ext[repeat] = (blank_end[:, None] + frame[candidates][None, :])[repeat]  # "aa" needs a blank between
            gain = np.full(ext.shape, insertion_bonus)
            if use_lm:
                gain += lm_weight * np.stack([scorer.row(trie.context[n]) for n in nodes])[:, candidates]
            ext_score = ext + bonus[:, None] + gain
            cutoff = np.partition(stay_score, -beam_width)[-beam_width] if len(nodes) >= beam_width else -np.inf
            rows, cols = np.nonzero(ext_score > cutoff)
        else:
            rows = cols = ()
        position = {n: i for i, n in enumerate(nodes.tolist())}
        new_nodes, new_label_end, new_bonus, new_last = [], [], [], []
        for i, k in zip(rows, cols):
            label = int(candidates[k])
            child = trie.child(int(nodes[i]), label, alphabet.chars, keep)
            j = position.get(child)
            if j is not None:  # the extension is a prefix already in the beam: add its probability there
                stay_label[j] = np.logaddexp(stay_label[j], ext[i, k])
            else:
                new_nodes.append(child)
                new_label_end.append(ext[i, k])
                new_bonus.append(bonus[i] + gain[i, k])
                new_last.append(label)
        if new_nodes:
            nodes = np.concatenate([nodes, new_nodes])
            blank_end = np.concatenate([stay_blank, np.full(len(new_nodes), -np.inf)])
            label_end = np.concatenate([stay_label, new_label_end])
            bonus = np.concatenate([bonus, new_bonus])
            last = np.concatenate([last, new_last])
        else:
            blank_end, label_end = stay_blank, stay_label
        if len(nodes) > beam_width:
            best = np.argpartition(np.logaddexp(blank_end, label_end) + bonus, -beam_width)[-beam_width:]
            nodes, blank_end, label_end, bonus, last = (a[best] for a in (nodes, blank_end, label_end, bonus, last))
    final = np.logaddexp(blank_end, label_end) + bonus
    if use_lm:
        final = final + lm_weight * np.array([scorer.row(trie.context[n])[BLANK] for n in nodes])
    return trie.labels(int(nodes[np.argmax(final)]))
