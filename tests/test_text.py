import pytest
import torch

from htr.alphabet import BLANK, Alphabet
from htr.metrics import cer, wer
from htr.reading.decode import greedy_paths


def test_alphabet_round_trip():
    alphabet = Alphabet.from_texts(["hello world", "Hi!"])
    assert alphabet.chars == " !Hdehilorw"
    assert alphabet.num_classes == len(alphabet.chars) + 1
    assert alphabet.decode(alphabet.encode("hello world")) == "hello world"
    assert BLANK not in alphabet.encode("hello world")
    assert Alphabet(alphabet.chars) == alphabet  # rebuilt from the string stored in checkpoints


def test_alphabet_rejects_unknown_characters():
    alphabet = Alphabet("abc")
    assert not alphabet.covers("abd")
    with pytest.raises(KeyError):
        alphabet.encode("abd")


def one_hot_log_probs(paths: list[list[int]], classes: int) -> torch.Tensor:
    """(T, B, C) log-probabilities whose best path is each of ``paths`` (padded with blanks)."""
    steps = max(map(len, paths))
    probs = torch.full((steps, len(paths), classes), 0.01)
    for b, path in enumerate(paths):
        for t in range(steps):
            probs[t, b, path[t] if t < len(path) else BLANK] = 1.0
    return probs.log_softmax(-1)


def test_greedy_collapses_repeats_and_drops_blanks():
    alphabet = Alphabet("ablo")  # a=1 b=2 l=3 o=4
    paths = [[0, 3, 3, 0, 3, 4, 4, 0], [1, 1, 1, 0, 2, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]]
    log_probs = one_hot_log_probs(paths, alphabet.num_classes)
    assert greedy_paths(log_probs.numpy(), [8, 8, 8]) == [[3, 3, 4], [1, 2], []]
    assert [alphabet.decode(p) for p in greedy_paths(log_probs.numpy(), [8, 8, 8])] == ["llo", "ab", ""]


def test_greedy_ignores_frames_beyond_length():
    alphabet = Alphabet("ab")
    log_probs = one_hot_log_probs([[1, 0, 2, 2]], alphabet.num_classes)
    assert [alphabet.decode(p) for p in greedy_paths(log_probs.numpy(), [2])] == ["a"]


def test_error_rates_on_known_pairs():
    assert cer(["abcd"], ["abcd"]) == 0.0
    assert cer(["abcd"], ["abxd"]) == pytest.approx(1 / 4)  # one substitution
    assert cer(["abcd", "ef"], ["abc", "efgh"]) == pytest.approx(3 / 6)  # corpus level: 1 + 2 edits / 6
    assert wer(["the cat sat"], ["the cat sat"]) == 0.0
    assert wer(["the cat sat", "on it"], ["the hat sat", "on"]) == pytest.approx(2 / 5)
    assert cer(["abc"], [""]) == 1.0
