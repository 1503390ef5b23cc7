"""Character n-gram language models: built from text, saved as ARPA, queried as a distribution per context.

Tokens are characters; a line is scored as ``<s> c1 c2 ... cn </s>``. Two smoothings: interpolated modified
Kneser-Ney (``kn``, the default) and interpolated Witten-Bell (``wb``). Both are exact backoff models, written
in the standard ARPA backoff format (log10 probabilities, the space character spelled ``<space>``) that n-gram
toolkits read; inside a checkpoint the same n-grams are kept in a compact form (see ``CharLM.to_state``).

    python -m htr.lm build train.txt -o iam.arpa --order 6
    python -m htr.lm build --dataset path/to/iam-dev --exclude-split validation -o iam.arpa \\
        --into handwriting_recognizer_best.pth
    python -m htr.lm perplexity iam.arpa validation.txt
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

BOS, EOS, UNK = "\x02", "\x03", "\x1a"  # one-character stand-ins for <s>, </s>, <unk>
ARPA_NAMES = {BOS: "<s>", EOS: "</s>", UNK: "<unk>", " ": "<space>"}
ARPA_TOKENS = {name: token for token, name in ARPA_NAMES.items()}
LOG10 = math.log(10)
SMOOTHINGS = ("kn", "wb")


class CharLM:
    """A backoff character n-gram model: ``logprobs`` maps n-gram strings to natural-log probabilities,
    ``backoffs`` maps contexts to natural-log backoff weights. Every vocabulary token has a unigram.

    Queried through arrays: each context (an n-gram's first n - 1 characters) has an id, its backoff weight and
    the run of its continuations (vocabulary index, log probability) in two flat arrays."""

    def __init__(self, order: int, logprobs: dict[str, float], backoffs: dict[str, float]) -> None:
        self._setup(order, list(logprobs), np.fromiter(logprobs.values(), np.float64, len(logprobs)),
                    list(backoffs), np.fromiter(backoffs.values(), np.float64, len(backoffs)))  # fmt: skip

    def _setup(self, order: int, grams: list[str], values: np.ndarray, backoff_grams: list[str],
               backoff_values: np.ndarray) -> None:  # fmt: skip
        if order < 1:
            raise ValueError("an n-gram model has order >= 1")
        if len(grams) != len(values) or len(backoff_grams) != len(backoff_values):
            raise ValueError("language model state is inconsistent")
        self.order = order
        self._grams, self._values = grams, values
        self._backoff_grams, self._backoff_values = backoff_grams, backoff_values
        self.vocab = "".join(sorted(g for g in grams if len(g) == 1 and g != BOS))  # tokens that can follow
        if EOS not in self.vocab or UNK not in self.vocab:
            raise ValueError("a character LM needs </s> and <unk> among its unigrams")
        self.index = {token: i for i, token in enumerate(self.vocab)}
        tokens = np.array([self.index.get(g[-1], -1) for g in grams])  # -1: <s>, never predicted
        ids: dict[str, int] = {}
        context_of = np.array([ids.setdefault(g[:-1], len(ids)) for g in grams], dtype=np.int64)
        kept = np.flatnonzero(tokens >= 0)
        by_context = kept[np.argsort(context_of[kept], kind="stable")]
        self._ids = ids  # contexts that have n-grams
        self._starts = np.searchsorted(context_of[by_context], np.arange(len(ids) + 1))
        self._tokens, self._logprobs = tokens[by_context], values[by_context]
        self._backoffs = np.zeros(len(ids))
        for context, value in zip(backoff_grams, backoff_values.tolist()):
            if context in ids:
                self._backoffs[ids[context]] = value
        self._cache: dict[str, np.ndarray] = {}

    @property
    def logprobs(self) -> dict[str, float]:
        return dict(zip(self._grams, self._values.tolist()))

    @property
    def backoffs(self) -> dict[str, float]:
        return dict(zip(self._backoff_grams, self._backoff_values.tolist()))

    def backed_off(self, context: str) -> str:
        """The context whose n-grams ``distribution(context)`` reads: the longest suffix of its last ``order - 1``
        characters that has n-grams."""
        context = context[max(0, len(context) - self.order + 1) :] if self.order > 1 else ""
        while context and context not in self._ids:
            context = context[1:]
        return context

    def distribution(self, context: str) -> np.ndarray:
        """Natural-log probability of each ``vocab`` token after ``context`` (text, ``BOS``-prefixed at a line
        start); sums to 1 in probability."""
        context = self.backed_off(context)
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        i = self._ids.get(context)
        values = self.distribution(context[1:]) + self._backoffs[i] if context else np.full(len(self.vocab), -np.inf)
        if i is not None:  # (the empty context of a model without n-grams has none)
            start, end = self._starts[i], self._starts[i + 1]
            values[self._tokens[start:end]] = self._logprobs[start:end]
        values.flags.writeable = False
        if len(self._cache) > 200_000:  # bounded memory over very long batches
            self._cache.clear()
        self._cache[context] = values
        return values

    def logprob(self, context: str, token: str) -> float:
        """Natural-log probability of one token (a character, ``EOS``; unknown characters count as ``UNK``)."""
        return float(self.distribution(context)[self.index.get(token, self.index[UNK])])

    def line_logprob(self, text: str) -> float:
        """Natural-log probability of a whole line, end of line included."""
        context, total = BOS, 0.0
        for token in text + EOS:
            total += self.logprob(context, token)
            context += token
        return total

    def perplexity(self, texts: Iterable[str]) -> float:
        """Per-character perplexity (end of line counted as a character)."""
        total, count = 0.0, 0
        for text in texts:
            total += self.line_logprob(text)
            count += len(text) + 1
        return math.exp(-total / max(1, count))

    def to_arpa(self) -> str:
        logprobs, backoffs = self.logprobs, self.backoffs
        by_order: dict[int, list[str]] = defaultdict(list)
        for gram in logprobs:
            by_order[len(gram)].append(gram)
        lines = ["\\data\\"] + [f"ngram {n}={len(by_order[n])}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for gram in sorted(by_order[n]):
                fields = [f"{logprobs[gram] / LOG10:.6f}", " ".join(ARPA_NAMES.get(c, c) for c in gram)]
                if gram in backoffs:
                    fields.append(f"{backoffs[gram] / LOG10:.6f}")
                lines.append("\t".join(fields))
        return "\n".join(lines + ["", "\\end\\", ""])

    @classmethod
    def from_arpa(cls, text: str) -> CharLM:
        """Parse an ARPA backoff model whose tokens are single characters (plus <s>, </s>, <unk>, <space>)."""
        logprobs: dict[str, float] = {}
        backoffs: dict[str, float] = {}
        order, n = 0, 0
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                n = int(line[1:].split("-")[0])
                order = max(order, n)
                continue
            fields = line.split()
            if n == 0 or len(fields) not in (n + 1, n + 2):
                raise ValueError(f"ARPA line {number} is malformed: {line[:60]!r}")
            tokens = [ARPA_TOKENS.get(t, t) for t in fields[1 : n + 1]]
            if any(len(t) != 1 for t in tokens):
                raise ValueError(f"ARPA line {number}: not a character model (token {fields[1]!r})")
            gram = "".join(tokens)
            logprobs[gram] = float(fields[0]) * LOG10
            if len(fields) == n + 2:
                backoffs[gram] = float(fields[n + 1]) * LOG10
        if not logprobs:
            raise ValueError("no n-grams found: not an ARPA file")
        return cls(order, logprobs, backoffs)

    def to_state(self) -> dict:
        """A compact form for checkpoints (``torch.load(weights_only=True)`` reads it): n-gram strings joined
        by newlines with float32 natural-log values."""
        import torch

        return {
            "order": self.order,
            "ngrams": "\n".join(self._grams),
            "logprobs": torch.tensor(self._values, dtype=torch.float32),
            "backoff_ngrams": "\n".join(self._backoff_grams),
            "backoffs": torch.tensor(self._backoff_values, dtype=torch.float32),
        }

    @classmethod
    def from_state(cls, state: dict) -> CharLM:
        """The model of ``to_state`` (values: tensors or NumPy arrays)."""

        def names(keys: str) -> list[str]:
            return keys.split("\n") if keys else []

        lm = cls.__new__(cls)
        lm._setup(int(state["order"]), names(state["ngrams"]), np.asarray(state["logprobs"], dtype=np.float64),
                  names(state["backoff_ngrams"]), np.asarray(state["backoffs"], dtype=np.float64))  # fmt: skip
        return lm


def count_ngrams(texts: Iterable[str], order: int) -> list[Counter]:
    """``counts[k]``: occurrences of every k-gram of ``<s> text </s>`` (the lone ``<s>`` excluded)."""
    counts = [Counter() for _ in range(order + 1)]
    for text in texts:
        line = BOS + text + EOS
        for k in range(1, order + 1):
            counts[k].update(line[i : i + k] for i in range(len(line) - k + 1))
    counts[1].pop(BOS, None)
    return counts


def kneser_ney_discounts(counts: Counter) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ from the count-of-counts (Chen & Goodman, 1998)."""
    n = Counter(c for c in counts.values() if c <= 4)
    n1, n2, n3, n4 = (n[i] for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:  # too little text for the estimate: common fixed discounts
        return 0.5, 1.0, 1.5
    y = n1 / (n1 + 2 * n2)
    discounts = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(min(max(d, 0.05), i + 1 - 0.05) for i, d in enumerate(discounts))  # type: ignore[return-value]


def build_lm(texts: Iterable[str], order: int = 6, smoothing: str = "kn") -> CharLM:
    """An interpolated ``order``-gram model of ``texts`` (one line each), as an exact backoff model."""
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r} (use {' or '.join(SMOOTHINGS)})")
    counts = count_ngrams(texts, order)
    if not counts[1]:
        raise ValueError("no text to build a language model from")
    vocab = sorted(set(counts[1]) | {EOS, UNK})
    if smoothing == "kn":  # lower orders count distinct left neighbours, except n-grams that start a line
        for k in range(order - 1, 0, -1):
            continuations = Counter(g[1:] for g in counts[k + 1])
            counts[k] = Counter({g: c if g[0] == BOS else continuations[g] for g, c in counts[k].items()})
    probs: dict[str, float] = {}  # linear probabilities while building
    gammas: dict[str, float] = {}  # interpolation weight of the lower order, per context

    def lower(context: str, token: str) -> float:
        weight = 1.0
        while True:
            p = probs.get(context + token)
            if p is not None:
                return weight * p
            if not context:
                return weight / len(vocab)
            weight *= gammas.get(context, 1.0)
            context = context[1:]

    for k in range(1, order + 1):
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # context -> [sum, lower-order mass]
        discount: dict[str, float] = {}
        if smoothing == "kn":
            d = kneser_ney_discounts(counts[k])
            discount = {g: d[min(c, 3) - 1] for g, c in counts[k].items()}
        for gram, c in counts[k].items():
            total = totals[gram[:-1]]
            total[0] += c
            total[1] += discount[gram] if smoothing == "kn" else 1  # WB: distinct followers
        if smoothing == "wb":
            totals = {h: [s + t, t] for h, (s, t) in totals.items()}
        level = {}
        for gram, c in counts[k].items():
            norm, mass = totals[gram[:-1]]
            seen = (c - discount[gram]) / norm if smoothing == "kn" else c / norm
            level[gram] = seen + mass / norm * lower(gram[1:-1], gram[-1])
        gammas.update({h: mass / norm for h, (norm, mass) in totals.items() if h})
        if k == 1:
            root_gamma = totals[""][1] / totals[""][0]
            level.update({t: root_gamma / len(vocab) for t in vocab if t not in level})
        probs.update(level)
    probs[BOS] = 10.0**-99  # ARPA convention: <s> is a unigram that is never predicted
    return CharLM(
        order,
        {g: math.log(p) for g, p in probs.items()},
        {h: math.log(g) for h, g in gammas.items()},
    )


def interpolate(first: CharLM, second: CharLM, weight: float) -> CharLM:
    """The mixture ``weight * first + (1 - weight) * second`` as one backoff model (static interpolation, as SRILM's
    ``-mix-lm`` writes it): every n-gram of either model gets the mixed probability of its context, and each context's
    backoff weight is set so that its distribution sums to 1 over the union of both vocabularies (a token one model
    lacks has probability 0 in it)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"interpolation weight {weight} is not in [0, 1]")
    order = max(first.order, second.order)
    vocab = "".join(sorted(set(first.vocab) | set(second.vocab)))
    index = {token: i for i, token in enumerate(vocab)}
    places = [np.array([index[t] for t in lm.vocab]) for lm in (first, second)]

    def mixed(context: str) -> np.ndarray:  # the two models' probabilities after ``context``, mixed, over ``vocab``
        total = np.zeros(len(vocab))
        for lm, place, share in zip((first, second), places, (weight, 1.0 - weight)):
            if share > 0:
                total[place] += share * np.exp(lm.distribution(context))
        return total

    grams = sorted(set(first.logprobs) | set(second.logprobs), key=lambda g: (len(g), g))
    by_context: dict[str, list[str]] = defaultdict(list)
    for gram in grams:
        if gram != BOS:
            by_context[gram[:-1]].append(gram[-1])
    by_context[""] = list(vocab)  # every token has a unigram
    logprobs: dict[str, float] = {BOS: math.log(10.0**-99)}
    backoffs: dict[str, float] = {}
    new: dict[str, np.ndarray] = {}  # the mixed model's distribution per context, built shortest context first

    def distribution(context: str) -> np.ndarray:
        while context not in new:
            context = context[1:]
        return new[context]

    for context in sorted(by_context, key=len):
        probs = mixed(context)
        tokens = np.array([index[t] for t in by_context[context]])
        if context:
            lower = distribution(context[1:])
            left = max(1e-12, 1.0 - probs[tokens].sum())
            alpha = left / max(1e-12, 1.0 - lower[tokens].sum())
            values = alpha * lower
            values[tokens] = probs[tokens]
            backoffs[context] = math.log(alpha)
        else:
            values = probs
        new[context] = values
        for token in by_context[context]:
            logprobs[context + token] = math.log(max(values[index[token]], 1e-300))
    return CharLM(order, logprobs, backoffs)


def choose_interpolation(
    first: CharLM, second: CharLM, texts: list[str], weights: Iterable[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
) -> tuple[float, dict[float, float]]:
    """The weight of ``first`` in `interpolate` that gives ``texts`` the lowest perplexity, and each weight's
    perplexity (of the exact mixture, which the interpolated model equals on every n-gram either model has)."""
    known = set(first.vocab) | set(second.vocab)
    probs = []  # per token of texts: (first's probability, second's)
    for text in texts:
        context = BOS
        for token in text + EOS:
            token = token if token in known else UNK
            probs.append([math.exp(lm.distribution(context)[lm.index[token]]) if token in lm.index else 0.0
                          for lm in (first, second)])  # fmt: skip
            context += token
    table = np.array(probs).reshape(-1, 2)
    perplexities = {w: float(np.exp(-np.mean(np.log(np.maximum(table @ [w, 1 - w], 1e-300))))) for w in weights}
    return min(perplexities, key=perplexities.get), perplexities


def drop_overlapping(texts: list[str], held_out: Iterable[str], window: int = 20) -> list[str]:
    """``texts`` without the lines that share a passage of ``window`` characters with ``held_out`` (so that an
    LM does not know the evaluation text)."""
    passages = {t[i : i + window] for t in held_out for i in range(max(1, len(t) - window + 1))}
    return [t for t in texts if not any(t[i : i + window] in passages for i in range(max(1, len(t) - window + 1)))]


def load_lm(path: str | Path) -> CharLM:
    """A language model from an ARPA file or from a checkpoint (file, model folder or hub id) that carries one."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
        if head.startswith(b"\\data\\"):
            return CharLM.from_arpa(path.read_text(encoding="utf-8"))
    from htr.checkpoint import read_checkpoint

    state = read_checkpoint(path).get("lm")
    if state is None:
        raise ValueError(f"{path} is a checkpoint without a language model")
    return CharLM.from_state(state)


if __name__ == "__main__":  # python -m htr.lm: its command line is htr.cli.lm (run, not imported)
    import runpy

    runpy.run_module("htr.cli.lm", run_name="__main__", alter_sys=True)
