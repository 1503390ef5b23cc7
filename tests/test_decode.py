"""Character LM, CTC prefix beam search and confidences, against brute force on tiny inputs."""

import itertools
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from htr.alphabet import BLANK, Alphabet
from htr.checkpoint import atomic_save, model_checkpoint
from htr.lm import BOS, EOS, CharLM, build_lm, choose_interpolation, drop_overlapping, interpolate, load_lm
from htr.model import CRNN, ModelConfig
from htr.reading.beam import LMScorer, beam_search_batch, prefix_beam_search
from htr.reading.decode import Decoder, confidences, greedy_paths
from tests.conftest import random_texts

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the cat sat on the mat", "then the hat", "that is the thing", "a bat, a cat and a rat."]


def sampled_contexts(lm: CharLM, texts: list[str], count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    contexts = [(BOS + text)[: rng.randrange(len(text) + 2)] for text in rng.choices(texts, k=count)]
    return contexts + ["zzz", BOS + "q!", "".join(rng.choices(lm.vocab, k=5))]  # unseen ones too


@pytest.mark.parametrize("smoothing", ["kn", "wb"])
@pytest.mark.parametrize("order", [1, 2, 4, 6])
def test_lm_probabilities_sum_to_one_over_the_vocabulary(smoothing, order):
    texts = random_texts(60, seed=order) + TEXTS
    lm = build_lm(texts, order, smoothing)
    assert EOS in lm.vocab and set("the cat") <= set(lm.vocab)
    for context in sampled_contexts(lm, texts, 50):
        assert math.isclose(np.exp(lm.distribution(context)).sum(), 1.0, rel_tol=1e-9), repr(context)


def backoff_distribution(lm: CharLM, context: str) -> np.ndarray:
    """The backoff rule read straight off the ARPA tables: P(x | h) = P(hx) when the n-gram hx exists, else
    backoff(h) * P(x | h[1:]) (h: the longest suffix of the context that starts some n-gram)."""
    logprobs, backoffs = lm.logprobs, lm.backoffs
    contexts = {g[:-1] for g in logprobs if len(g) > 1}
    context = context[max(0, len(context) - lm.order + 1) :] if lm.order > 1 else ""
    while context and context not in contexts:
        context = context[1:]

    def logprob(history: str, token: str) -> float:
        if history + token in logprobs:
            return logprobs[history + token]
        return -np.inf if not history else backoffs.get(history, 0.0) + logprob(history[1:], token)

    return np.array([logprob(context, token) for token in lm.vocab])


@pytest.mark.parametrize("order", [1, 3, 5])
def test_lm_distributions_follow_the_backoff_rule(order, tmp_path):
    texts = random_texts(80, seed=3) + TEXTS
    lm = build_lm(texts, order)
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(lm.to_arpa())
    for model in (lm, load_lm(arpa), CharLM.from_state(lm.to_state())):
        for context in sampled_contexts(lm, texts, 200):
            np.testing.assert_allclose(model.distribution(context), backoff_distribution(model, context), atol=1e-12)


def test_lm_scorer_states_score_as_their_contexts():
    texts = random_texts(40, seed=5) + TEXTS
    lm = build_lm(texts, 4)
    alphabet = Alphabet("".join(sorted(set("".join(texts)))))
    scorer = LMScorer(lm, alphabet)
    rng = np.random.default_rng(4)
    states = np.full(6, scorer.state(BOS))
    written = [BOS] * 6
    for _ in range(12):
        labels = rng.integers(1, alphabet.num_classes, size=6)
        states = scorer.advance(states, labels)
        written = [w + alphabet.chars[label - 1] for w, label in zip(written, labels)]
        everything = np.arange(alphabet.num_classes)
        for state, context in zip(states, written):
            expected = lm.distribution(context)[[lm.index[EOS]] + [lm.index[c] for c in alphabet.chars]]
            np.testing.assert_array_equal(scorer.scores(np.array([state]), everything)[0], expected)
    start, t = np.array([scorer.state(BOS)]), np.array(alphabet.encode("t"))
    assert scorer.advance(start, t)[0] == scorer.advance(start, t)[0] == scorer.state(BOS + "t")  # one state each


def test_lm_prefers_seen_text_and_its_arpa_and_checkpoint_forms_are_the_same_model(tmp_path):
    lm = build_lm(TEXTS * 3, order=4)
    assert lm.logprob(BOS + "th", "e") > lm.logprob(BOS + "th", "x") > -math.inf
    assert lm.perplexity(["the cat"]) < lm.perplexity(["xqz vwk"])
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(lm.to_arpa())
    assert "<space>" in arpa.read_text() and "\\4-grams:" in arpa.read_text()
    from_arpa, from_state = load_lm(arpa), CharLM.from_state(lm.to_state())
    for context in sampled_contexts(lm, TEXTS, 30):
        expected = lm.distribution(context)
        np.testing.assert_allclose(from_arpa.distribution(context), expected, atol=1e-5)
        np.testing.assert_allclose(from_state.distribution(context), expected, atol=1e-5)


def test_lm_build_command_writes_arpa_and_stores_into_a_checkpoint(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXTS) + "\n\n")
    alphabet = Alphabet.from_texts(TEXTS)
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 8]], rnn_hidden=8,
                         rnn_layers=1)  # fmt: skip
    checkpoint = tmp_path / "model.pth"
    atomic_save(model_checkpoint(CRNN(config), alphabet), checkpoint)
    run = [sys.executable, "-m", "htr.lm"]
    built = subprocess.run([*run, "build", str(text), "-o", str(tmp_path / "lm.arpa"), "--order", "3",
                            "--into", str(checkpoint)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert load_lm(checkpoint).order == 3 and load_lm(tmp_path / "lm.arpa").vocab == load_lm(checkpoint).vocab
    scored = subprocess.run([*run, "perplexity", str(tmp_path / "lm.arpa"), str(text)], cwd=ROOT,
                            capture_output=True, text=True)  # fmt: skip
    assert scored.returncode == 0 and 1 < float(scored.stdout.split()[-1]) < 10
    refused = subprocess.run([*run, "perplexity", str(text), str(text)], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    labels, previous = [], None
    for p in path:
        if p != BLANK and p != previous:
            labels.append(p)
        previous = p
    return tuple(labels)


def brute_force_best(log_probs: np.ndarray, alphabet: Alphabet, lm: CharLM | None, weight: float, bonus: float):
    """The label sequence maximising log P_ctc + weight * log P_lm (end included) + bonus * length."""
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=len(log_probs)):
        labels = collapse(path)
        score = sum(log_probs[t, c] for t, c in enumerate(path))
        totals[labels] = np.logaddexp(totals.get(labels, -np.inf), score)

    def objective(labels):  # noqa: E306
        lm_score = weight * lm.line_logprob(alphabet.decode(labels)) if lm and weight else 0.0
        return totals[labels] + lm_score + bonus * len(labels)

    return list(max(totals, key=objective))


def test_wide_beam_finds_the_exact_best_labelling_with_and_without_lm():
    rng = np.random.default_rng(0)
    alphabet = Alphabet("ab ")
    lm = build_lm(["ab ba", "aa b", "bab a", "a b a b"], order=3)
    scorer = LMScorer(lm, alphabet)
    for trial in range(60):
        log_probs = np.log(rng.dirichlet(np.full(4, 0.5), size=rng.integers(1, 6)))
        weight, bonus = [(0.0, 0.0), (0.6, 0.0), (1.0, 0.5)][trial % 3]
        found = prefix_beam_search(log_probs, alphabet, 1000, scorer, weight, bonus, prune_logp=-np.inf)
        assert found == brute_force_best(log_probs, alphabet, lm, weight, bonus), trial


def peaked_posteriors(rng: np.random.Generator, frames: int, classes: int, peak: float = 0.7) -> np.ndarray:
    """Random posteriors whose best class has at least ``peak`` probability, like a trained network's."""
    probs = rng.dirichlet(np.ones(classes), size=frames) * (1 - peak)
    probs[np.arange(frames), rng.integers(0, classes, size=frames)] += peak
    return np.log(probs)


def test_beam_width_one_without_lm_equals_greedy():
    rng = np.random.default_rng(1)
    alphabet = Alphabet("abcde")
    for _ in range(200):
        log_probs = peaked_posteriors(rng, int(rng.integers(1, 60)), alphabet.num_classes)
        greedy = greedy_paths(log_probs[:, None], [len(log_probs)])[0]
        assert prefix_beam_search(log_probs, alphabet, beam_width=1) == greedy


def test_language_model_resolves_an_ambiguous_character():
    alphabet = Alphabet(" abehtn")
    index = {c: i + 1 for i, c in enumerate(alphabet.chars)}
    # "t", then a frame where "b" looks slightly likelier than "h", then "e", then " ", "c"-less "cat" ending
    frames = [{"t": 0.9}, {}, {"b": 0.5, "h": 0.42}, {}, {"e": 0.9}, {}, {"n": 0.9}]
    log_probs = np.full((len(frames), alphabet.num_classes), 1e-3)
    for t, frame in enumerate(frames):
        for char, p in frame.items():
            log_probs[t, index[char]] = p
        log_probs[t, BLANK] = max(1e-3, 1 - sum(frame.values()))
    log_probs = np.log(log_probs / log_probs.sum(1, keepdims=True))
    greedy = alphabet.decode(greedy_paths(log_probs[:, None], [len(frames)])[0])
    lm = build_lm(["then", "then the", "the hen", "when then"] * 5, order=4)
    decoder = Decoder("beam", beam_width=8, lm=lm, lm_weight=1.0, insertion_bonus=0.0)
    beam = alphabet.decode(decoder.paths(log_probs[:, None], [7], alphabet)[0])
    assert greedy == "tben" and beam == "then"


def test_confidence_is_the_per_character_probability_of_the_text():
    rng = np.random.default_rng(2)
    log_probs = np.log(rng.dirichlet(np.ones(3), size=4))
    path = [1, 2]
    total = -np.inf
    for p in itertools.product(range(3), repeat=4):
        if list(collapse(p)) == path:
            total = np.logaddexp(total, sum(log_probs[t, c] for t, c in enumerate(p)))
    (confidence,) = confidences(log_probs[:, None], [4], [path])
    assert math.isclose(confidence, math.exp(total / 3), rel_tol=1e-5)
    sure = np.log(np.full((20, 6), 0.01) + np.eye(6)[rng.integers(0, 6, 20)])
    unsure = np.log(np.full((20, 6), 1 / 6))
    batch = torch.from_numpy(np.stack([sure, unsure], axis=1)).log_softmax(-1).numpy()
    paths = greedy_paths(batch, [20, 20])
    high, low = confidences(batch, [20, 20], paths)
    assert 0 <= low < 0.5 < high <= 1


def test_confidence_agrees_with_pytorch_ctc_loss_over_a_ragged_batch():
    torch.manual_seed(3)
    frames, classes = 50, 6
    log_probs = (3 * torch.randn(frames, 7, classes)).log_softmax(-1)
    lengths = [50, 31, 50, 12, 5, 40, 50]
    paths = greedy_paths(log_probs.numpy(), lengths)
    paths[2], paths[5] = [1, 1, 2, 3, 3], []  # repeated labels; an empty text
    paths[4], paths[6] = [1, 2, 1, 2, 1, 2], [4] * 30  # need 6 of 5 and 59 of 50 frames: no alignment
    targets = torch.tensor([c for path in paths for c in path])
    nll = torch.nn.functional.ctc_loss(log_probs, targets, torch.tensor(lengths), torch.tensor([len(p) for p in paths]),
                                       reduction="none")  # fmt: skip
    expected = [math.exp(-n / (len(p) + 1)) for n, p in zip(nll.tolist(), paths)]
    got = confidences(log_probs.numpy(), lengths, paths)
    assert got[4] == 0.0 and got[6] == 0.0  # impossible alignments
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-12)


def test_lines_sharing_a_passage_with_held_out_text_are_left_out():
    texts = ["the quick brown fox jumps over", "a lazy dog sleeps", "brown fox jumps over the hill"]
    assert drop_overlapping(texts, ["see the quick brown fox jump"], window=15) == texts[1:]
    assert drop_overlapping(texts, ["nothing shared here at all"], window=15) == texts


def test_lm_build_takes_several_datasets(parquet_dataset, tmp_path):
    import datasets

    from tests.conftest import png_bytes, render_line

    extra = tmp_path / "extra.parquet"  # a train-only source: all of its lines count
    datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(render_line("a cat")), "path": None}] * 5,
                                "text": ["a cat sat"] * 5}).to_parquet(str(extra))  # fmt: skip
    command = ["build", "--dataset", str(parquet_dataset), "--dataset", str(extra), "--exclude-split", "validation",
               "--order", "3", "-o", str(tmp_path / "x.arpa")]  # fmt: skip
    built = subprocess.run([sys.executable, "-m", "htr.lm", *command], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    kept = int(built.stdout.split("\n")[-2].split()[0])  # "N lines -> 3-gram kn: ..."
    left_out = int(built.stdout.split("left out ")[1].split()[0])
    assert kept + left_out == 48 + 5  # every train line of both datasets, less those sharing validation text


def test_lm_build_mixes_with_a_base_lm_at_the_weight_validation_chooses(parquet_dataset, tmp_path):
    from htr.data import load_splits

    base = tmp_path / "base.arpa"
    base.write_text(build_lm(TEXTS, 3).to_arpa(), encoding="utf-8")
    command = [sys.executable, "-m", "htr.lm", "build", "--dataset", str(parquet_dataset), "--order", "3",
               "--mix-with", str(base), "-o", str(tmp_path / "mixed.arpa")]  # fmt: skip
    built = subprocess.run([*command, "--choose-on", str(parquet_dataset)], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    weight = float(built.stdout.split("at weight ")[1].split()[0])
    splits = load_splits(str(parquet_dataset))
    own, validation = build_lm(list(splits["train"]["text"]), 3), list(splits["validation"]["text"])
    assert weight == choose_interpolation(own, load_lm(base), validation)[0] >= 0.5  # its own text's model leads
    expected = interpolate(own, load_lm(base), weight).perplexity(validation)
    assert load_lm(tmp_path / "mixed.arpa").perplexity(validation) == pytest.approx(expected, rel=1e-3)
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)  # auto weight, nothing to choose on
    assert refused.returncode == 2 and "--choose-on" in refused.stderr


def test_a_ragged_batch_is_searched_as_each_line_alone():
    rng = np.random.default_rng(3)
    alphabet = Alphabet("ab ")
    lm = build_lm(["ab ba", "aa b", "bab a", "a b a b"], order=3)
    scorer = LMScorer(lm, alphabet)
    lengths = [int(n) for n in rng.integers(1, 40, size=9)]
    lines = [peaked_posteriors(rng, n, alphabet.num_classes, peak=0.5) for n in lengths]
    batch = np.full((max(lengths), len(lines), alphabet.num_classes), np.log(0.25))  # padding: never read
    for b, line in enumerate(lines):
        batch[: len(line), b] = line
    for width, weight, bonus in [(1, 0.0, 0.0), (4, 0.8, 0.5), (16, 1.0, 1.5)]:
        together = beam_search_batch(batch, lengths, alphabet, width, scorer, weight, bonus)
        assert together == [prefix_beam_search(line, alphabet, width, scorer, weight, bonus) for line in lines]
    scorer.MAX_STATES = 3  # every search starts with a fresh table: the same results
    assert beam_search_batch(batch, lengths, alphabet, 16, scorer, 1.0, 1.5) == together
    assert len(scorer.contexts) > 3


class SlowRandomNetwork:
    """Log-probabilities drawn from each line's own pixels (the same line reads the same in any batch), after a
    random pause, so that batches read in threads finish out of order."""

    def __init__(self, alphabet: Alphabet, parallel_calls: int, fail_on_width: int | None = None) -> None:
        self.config = ModelConfig(num_classes=alphabet.num_classes, height=8)
        self.parallel_calls, self.fail_on_width = parallel_calls, fail_on_width
        self.pauses = random.Random(0)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.pauses.uniform(0, 0.02))
        if images.shape[-1] == self.fail_on_width:
            raise RuntimeError("this batch fails")
        frames = int(self.config.output_lengths(images.shape[-1]))
        out = []
        for image in images:
            seed = int(np.round(image.sum() * 1000)) % 2**32
            logits = 3 * np.random.default_rng(seed).standard_normal((frames, self.config.num_classes))
            out.append(logits - np.log(np.exp(logits).sum(-1, keepdims=True)))
        return np.stack(out, axis=1).astype(np.float32)


def test_lines_read_in_parallel_threads_read_as_one_at_a_time_in_input_order():
    from htr.inference import transcribe

    alphabet = Alphabet("".join(sorted(set("".join(TEXTS)))))
    rng = np.random.default_rng(1)
    widths = rng.integers(16, 160, size=70).tolist()
    lines = [rng.random((1, 8, w), dtype=np.float32) for w in widths]
    for i in (3, 40, 41):  # blank lines: read as empty text, never sent to the network
        lines[i][:] = 0
    decoder = Decoder("beam", 8, build_lm(TEXTS, 3), 0.8, 1.5)
    one_at_a_time = transcribe(SlowRandomNetwork(alphabet, 1), alphabet, widths, lines.__getitem__, 4, decoder)
    for calls in (2, 4):
        in_threads = transcribe(SlowRandomNetwork(alphabet, calls), alphabet, widths, lines.__getitem__, 4, decoder)
        assert in_threads == one_at_a_time
    assert [one_at_a_time[i].text for i in (3, 40, 41)] == ["", "", ""]
    assert sum(bool(r.text) for r in one_at_a_time) > 60
    failing = SlowRandomNetwork(alphabet, 3, fail_on_width=max(widths))
    with pytest.raises(RuntimeError, match="this batch fails"):  # a failed batch is not lost in a thread
        transcribe(failing, alphabet, widths, lines.__getitem__, 4, decoder)
