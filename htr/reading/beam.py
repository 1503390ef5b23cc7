"""CTC prefix beam search with an optional character language model (shallow fusion).

Each hypothesis is a prefix with two probabilities, ending in a blank or in its last character, summed over all
CTC alignments (Hannun et al., 2014). A prefix is ranked by
``log P_ctc(prefix) + lm_weight * log P_lm(prefix) + insertion_bonus * len(prefix)``; at the end of the line the
language model also scores the end of the line. The lines of a batch are searched together, their beams kept in
NumPy arrays (lines × beam slots), so each frame costs a few vector operations for the whole batch; characters
whose frame probability is below ``exp(prune_logp)`` are not tried as extensions, frames where no line tries one
are passed in closed form, and an extension becomes a node only when it wins a place in its line's beam. Each
prefix carries its language-model state, a number: its extensions' LM scores are one lookup in a table of rows
that grows as new contexts are met.
"""

from __future__ import annotations

import numpy as np

from htr.alphabet import BLANK, Alphabet
from htr.lm import BOS, EOS, UNK, CharLM


class LMScorer:
    """A character LM seen through a model's alphabet, its contexts numbered as states: ``scores(states, classes)``
    is the log probability of each class after each state's context (the blank's: the end of the line), and
    ``advance(states, labels)`` the states after one more label. Contexts that the LM backs off to the same n-grams
    share one row of scores; states, transitions and rows are kept from batch to batch, up to ``MAX_STATES``."""

    MAX_STATES = 200_000  # about 100 MB of rows; a search that starts past it starts afresh

    def __init__(self, lm: CharLM, alphabet: Alphabet) -> None:
        self.lm = lm
        self.chars, self.classes = alphabet.chars, alphabet.num_classes
        self.keep = lm.order - 1  # characters of context the LM reads
        unknown = lm.index[UNK]
        self.columns = np.array([lm.index[EOS]] + [lm.index.get(c, unknown) for c in alphabet.chars])
        self.reset()

    def reset(self) -> None:
        self.contexts: list[str] = []  # state -> its context
        self._states: dict[str, int] = {}  # context -> state
        self._next: dict[int, int] = {}  # state * classes + label -> state
        self._row_ids: dict[str, int] = {}  # context the LM backs off to -> row of the table
        self._row_of = np.empty(1024, dtype=np.int64)  # state -> row
        self._table = np.empty((1024, self.classes))

    def state(self, context: str) -> int:
        """The state of a context (text, ``BOS``-prefixed at a line start)."""
        context = context[-self.keep :] if self.keep else ""
        state = self._states.get(context)
        if state is None:
            state = self._states[context] = len(self.contexts)
            self.contexts.append(context)
            key = self.lm.backed_off(context)
            row = self._row_ids.get(key)
            if row is None:
                row = self._row_ids[key] = len(self._row_ids)
                if row == len(self._table):
                    self._table = np.concatenate([self._table, np.empty_like(self._table)])
                self._table[row] = self.lm.distribution(key)[self.columns]
            if state == len(self._row_of):
                self._row_of = np.concatenate([self._row_of, np.empty_like(self._row_of)])
            self._row_of[state] = row
        return state

    def advance(self, states: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The state after each context of ``states`` extended by the matching label of ``labels`` (>= 1)."""
        keys = (states * self.classes + labels).tolist()
        after = self._next
        found = [after.get(key, -1) for key in keys]
        for i, state in enumerate(found):
            if state < 0:
                context, label = divmod(keys[i], self.classes)
                found[i] = after[keys[i]] = self.state(self.contexts[context] + self.chars[label - 1])
        return np.array(found, dtype=np.int64).reshape(np.shape(states))

    def scores(self, states: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Log probability of each of ``classes`` (K,) after each state: shape ``states.shape + (K,)``."""
        return self._table[self._row_of[states][..., None], classes]


class _Prefixes:
    """The prefixes met while decoding, as a tree: node 0 is the empty prefix, every other node one label added to
    its parent, one node per prefix (a prefix that left a beam and comes back gets its old node), so that an
    extension spells a prefix already in a beam exactly when that prefix's parent is the extended node."""

    def __init__(self, classes: int) -> None:
        self.parent, self.label = [-1], [BLANK]
        self.children: dict[int, int] = {}  # parent * classes + label -> node (every node but the root)
        self.classes = classes

    def add(self, parents: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The nodes of the given extensions, made when new."""
        children, count = self.children, len(self.parent)
        keys = (parents * self.classes + labels).tolist()
        nodes = np.array([children.setdefault(key, len(children) + 1) for key in keys], dtype=np.int64)
        new = nodes >= count
        if new.any():  # numbered in order of first appearance
            _, first = np.unique(nodes[new], return_index=True)
            self.parent.extend(parents[new][first].tolist())
            self.label.extend(labels[new][first].tolist())
        return nodes

    def labels(self, node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(self.label[node])
            node = self.parent[node]
        return out[::-1]


def _through_blank_frames(
    frames: np.ndarray, blank_end: np.ndarray, label_end: np.ndarray, last: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The beams' two probabilities (lines × slots) after ``frames`` (R, lines, C + 1; the last class: -inf, for
    the empty prefix's "no label") in which no character is tried: every alignment stays on its last label or moves
    to (and stays in) the blank; closed form over the R frames."""
    stay = np.take_along_axis(frames, np.broadcast_to(last, (len(frames), *last.shape)), axis=2)  # (R, L, S)
    stayed = np.cumsum(stay, axis=0)  # label_end after each frame, less label_end
    before = np.concatenate([np.zeros((1, *last.shape)), stayed[:-1]]) + label_end  # label_end entering each frame
    blanks_from = np.cumsum(frames[::-1, :, BLANK], axis=0)[::-1]  # (R, L): log P(blank in frames t..R-1)
    from_label = np.logaddexp.reduce(before + blanks_from[:, :, None], axis=0)
    return np.logaddexp(blank_end + blanks_from[0][:, None], from_label), label_end + stayed[-1]


def beam_search_batch(
    log_probs: np.ndarray, lengths: list[int], alphabet: Alphabet, beam_width: int = 16,
    scorer: LMScorer | None = None, lm_weight: float = 0.0, insertion_bonus: float = 0.0, prune_logp: float = -8.0,
) -> list[list[int]]:  # fmt: skip
    """Best label sequence of each line of a batch. ``log_probs``: (T, B, C) natural-log CTC posteriors, blank at
    index 0; ``lengths``: each line's frames."""
    lengths = np.asarray(lengths, dtype=np.int64)
    frames = np.array(log_probs[: max(lengths, default=0)], dtype=np.float64)
    count, lines, num_classes = frames.shape
    if not lines or not count:
        return [[] for _ in range(lines)]
    ended = np.arange(count)[:, None] >= lengths[None, :]  # past a line's end: a certain blank, which changes nothing
    frames[ended] = -np.inf
    frames[..., BLANK][ended] = 0.0
    staying = np.concatenate([frames, np.full((count, lines, 1), -np.inf)], axis=2)  # class num_classes: none
    use_lm = scorer is not None and lm_weight != 0.0
    if use_lm and len(scorer.contexts) > scorer.MAX_STATES:
        scorer.reset()
    trie = _Prefixes(num_classes)
    # each line's beam in slots (L, S); an empty slot: node -2, probabilities -inf
    nodes = np.zeros((lines, 1), dtype=np.int64)
    parents = np.full((lines, 1), -1)  # each prefix's parent node
    blank_end = np.zeros((lines, 1))  # log P(prefix, alignment ends in blank)
    label_end = np.full((lines, 1), -np.inf)  # log P(prefix, alignment ends in its last label)
    bonus = np.zeros((lines, 1))  # LM and insertion score of the prefix
    last = np.full((lines, 1), num_classes)  # last label of the prefix (num_classes: none)
    lm_state = np.full((lines, 1), scorer.state(BOS)) if use_lm else None  # each prefix's LM state
    tried = frames[:, :, 1:] > prune_logp
    busy = np.flatnonzero(tried.any(axis=(1, 2)))  # frames where some line tries some character
    rows, t = np.arange(lines)[:, None], 0
    for next_busy in [*busy.tolist(), count]:
        if next_busy > t:  # a run of frames where only the blank and staying put count
            blank_end, label_end = _through_blank_frames(staying[t:next_busy], blank_end, label_end, last)
        if next_busy == count:
            break
        t = next_busy + 1
        frame = frames[next_busy]  # (L, C)
        total = np.logaddexp(blank_end, label_end)
        stay_blank = total + frame[:, :1]
        stay_label = label_end + staying[next_busy][rows, last]
        candidates = np.flatnonzero(tried[next_busy].any(axis=0)) + 1  # ascending; tried by at least one line
        chance = np.where(tried[next_busy][:, candidates - 1], frame[:, candidates], -np.inf)  # (L, K)
        repeat = last[:, :, None] == candidates  # "aa" needs a blank between
        ext = np.where(repeat, blank_end[:, :, None], total[:, :, None]) + chance[:, None, :]  # (L, S, K)
        gain = insertion_bonus + lm_weight * scorer.scores(lm_state, candidates) if use_lm else insertion_bonus
        ext_score = ext + bonus[:, :, None] + gain
        # an extension that spells a prefix already in the beam (its parent extended by its last label) adds its
        # probability there instead of taking a place
        line, extended, child = np.nonzero(parents[:, None, :] == nodes[:, :, None])
        if line.size:
            column = np.searchsorted(candidates, last[line, child]).clip(max=len(candidates) - 1)
            found = candidates[column] == last[line, child]
            line, extended, child, column = line[found], extended[found], child[found], column[found]
            stay_label[line, child] = np.logaddexp(stay_label[line, child], ext[line, extended, column])
            ext_score[line, extended, column] = -np.inf
        slots = nodes.shape[1]
        scores = np.concatenate([np.logaddexp(stay_blank, stay_label) + bonus, ext_score.reshape(lines, -1)], 1)
        keep = np.argpartition(scores, -beam_width, axis=1)[:, -beam_width:] if scores.shape[1] > beam_width \
            else np.broadcast_to(np.arange(scores.shape[1]), scores.shape)  # fmt: skip
        alive = np.take_along_axis(scores, keep, 1) > -np.inf
        source = np.where(keep < slots, keep, (keep - slots) // len(candidates))  # the slot kept or extended
        column = np.maximum(keep - slots, 0) % len(candidates)
        is_new = (keep >= slots) & alive
        nodes, parents, last = nodes[rows, source], parents[rows, source], last[rows, source]
        blank_end, label_end = stay_blank[rows, source], stay_label[rows, source]
        bonus = bonus[rows, source]
        if use_lm:
            lm_state = lm_state[rows, source]
        if is_new.any():
            at = np.nonzero(is_new)
            labels = candidates[column[at]]
            new_nodes = trie.add(nodes[at], labels)
            parents[at], last[at] = nodes[at], labels
            blank_end[at] = -np.inf
            label_end[at] = ext[at[0], source[at], column[at]]
            bonus[at] = bonus[at] + gain[at[0], source[at], column[at]] if use_lm else bonus[at] + insertion_bonus
            nodes[at] = new_nodes
            if use_lm:
                lm_state[at] = scorer.advance(lm_state[at], labels)
        if not alive.all():
            dead = ~alive
            nodes[dead], parents[dead], blank_end[dead], label_end[dead] = -2, -3, -np.inf, -np.inf
    final = np.logaddexp(blank_end, label_end) + bonus
    if use_lm:
        final = final + lm_weight * scorer.scores(lm_state, np.array([BLANK]))[..., 0]
    best = nodes[np.arange(lines), np.argmax(final, axis=1)]
    return [trie.labels(int(node)) for node in best]


def prefix_beam_search(
    log_probs: np.ndarray, alphabet: Alphabet, beam_width: int = 16, scorer: LMScorer | None = None,
    lm_weight: float = 0.0, insertion_bonus: float = 0.0, prune_logp: float = -8.0,
) -> list[int]:  # fmt: skip
    """Best label sequence for one line (``beam_search_batch`` of a batch of one). ``log_probs``: (T, C)."""
    log_probs = np.asarray(log_probs)
    return beam_search_batch(log_probs[:, None], [len(log_probs)], alphabet, beam_width, scorer, lm_weight,
                             insertion_bonus, prune_logp)[0]  # fmt: skip
