"""Averaging checkpoints' weights (htr.training.average_checkpoints): the mean, its checks, and the command line."""

import pytest
import torch

from htr.alphabet import Alphabet
from htr.checkpoint import CheckpointError, atomic_save, load_model, model_checkpoint, read_checkpoint
from htr.cli.average import main
from htr.model import CRNN, ModelConfig
from htr.training.average_checkpoints import AVERAGED_KEY, average_checkpoints

SMALL = {"stem_channels": 4, "cnn": ["M", [1, 8], "Mh", [1, 12]], "rnn_hidden": 16, "rnn_layers": 1}
ALPHABET = Alphabet("abc ")


def small_checkpoint(seed: int, alphabet: Alphabet = ALPHABET, **config) -> dict:
    torch.manual_seed(seed)
    model = CRNN(ModelConfig(num_classes=alphabet.num_classes, **{**SMALL, **config}))
    model.train()(torch.rand(2, 1, 64, 96))  # batch-norm statistics move away from their start
    training = {"steps": 10 * seed, "recipe": {"batch size": 8}}
    return model_checkpoint(model.eval(), alphabet, {"val_cer": 0.1 * seed}, training=training)


def test_the_average_is_the_mean_of_every_weight_and_statistic():
    a, b, c = small_checkpoint(1), small_checkpoint(2), small_checkpoint(3)
    averaged = average_checkpoints([a, b, c], ["a.pth", "b.pth", "c.pth"])
    assert averaged["state_dict"].keys() == a["state_dict"].keys()
    floats, moved = 0, 0
    for key, value in averaged["state_dict"].items():
        if value.is_floating_point():
            floats += 1
            expected = (a["state_dict"][key] + b["state_dict"][key] + c["state_dict"][key]) / 3
            assert torch.allclose(value, expected, atol=1e-6), key
            moved += not torch.equal(value, a["state_dict"][key])  # batch norm's scales all start at 1
        else:
            assert torch.equal(value, a["state_dict"][key]), key
    assert floats > 10 and moved > floats // 2 and any("running_mean" in key for key in averaged["state_dict"])
    assert averaged["metrics"] == {}  # a's validation CER described a's weights
    assert averaged["training"]["recipe"] == {"batch size": 8, AVERAGED_KEY: "a.pth, b.pth, c.pth"}
    assert "weights averaged over" not in a["training"]["recipe"]  # the inputs are left as they were


def test_a_base_and_its_fine_tune_with_added_characters_interpolate_by_weight():
    """WiSE-FT: 0.25 base + 0.75 tuned on every shared weight; the new characters keep the tuned model's rows."""
    base, tuned = small_checkpoint(1), small_checkpoint(2, Alphabet("abc &£"))
    averaged = average_checkpoints([base, tuned], ["base.pth", "tuned.pth"], weights=[1, 3])
    assert averaged["alphabet"] == "abc &£" and averaged["model_config"] == tuned["model_config"]
    grown = 0
    for key, value in averaged["state_dict"].items():
        old, new = base["state_dict"][key], tuned["state_dict"][key]
        if not value.is_floating_point():
            assert torch.equal(value, new), key
        elif old.shape == new.shape:
            assert torch.allclose(value, 0.25 * old + 0.75 * new, atol=1e-6), key
        else:
            grown += 1
            assert torch.allclose(value[: len(old)], 0.25 * old + 0.75 * new[: len(old)], atol=1e-6), key
            assert torch.allclose(value[len(old) :], new[len(old) :]), key  # & and £: the tuned model's rows
    assert grown >= 2  # the output layer's weight and bias
    assert averaged["training"]["recipe"][AVERAGED_KEY] == "base.pth × 0.25, tuned.pth × 0.75"
    model = CRNN(ModelConfig(**averaged["model_config"]))
    model.load_state_dict(averaged["state_dict"])  # the result is one whole model of the longer alphabet
    base_only = average_checkpoints([base, tuned], ["base", "tuned"], weights=[1, 0])  # the new rows: tuned's
    for key, value in base_only["state_dict"].items():
        old, new = base["state_dict"][key], tuned["state_dict"][key]
        if value.is_floating_point():
            assert torch.equal(value[: len(old)], old) if old.dim() else torch.equal(value, old), key
            assert torch.equal(value[len(old) :], new[len(old) :]), key
    for weights in ([1], [1, -1], [0, 0], [1, float("nan")]):
        with pytest.raises(CheckpointError, match="one weight per checkpoint"):
            average_checkpoints([base, tuned], ["base", "tuned"], weights=weights)


def test_only_checkpoints_of_one_architecture_and_alphabet_average():
    a = small_checkpoint(1)
    with pytest.raises(CheckpointError, match="another architecture"):
        average_checkpoints([a, small_checkpoint(2, rnn_hidden=24)], ["a", "b"])
    other = dict(small_checkpoint(2), alphabet="abd ")
    with pytest.raises(CheckpointError, match="another alphabet"):
        average_checkpoints([a, other], ["a", "b"])
    with pytest.raises(CheckpointError, match="another alphabet"):  # grown, but not by appending
        average_checkpoints([a, small_checkpoint(2, Alphabet("&abc "))], ["a", "b"])
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([a], ["a"])


def test_the_command_writes_a_checkpoint_that_reads_and_fails_in_one_line(tmp_path, capsys):
    paths = []
    for seed in (1, 2):
        paths.append(str(tmp_path / f"s{seed}.pth"))
        atomic_save(small_checkpoint(seed), paths[-1])
    output = tmp_path / "averaged.pth"
    assert main([*paths, "--weights", "1", "3", "--output", str(tmp_path / "weighted.pth")]) == 0
    assert read_checkpoint(tmp_path / "weighted.pth")["training"]["recipe"][AVERAGED_KEY].endswith("× 0.75")
    assert main([*paths, "--output", str(output)]) == 0
    model, alphabet = load_model(output)
    assert alphabet.chars == ALPHABET.chars
    assert model(torch.rand(1, 1, 64, 96))[0].isfinite().all()
    assert read_checkpoint(output)["training"]["recipe"][AVERAGED_KEY] == ", ".join(paths)
    assert main([paths[0], str(tmp_path / "missing.pth"), "-o", str(tmp_path / "never.pth")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: checkpoint not found") and error.count("\n") == 1
    assert not (tmp_path / "never.pth").exists()
