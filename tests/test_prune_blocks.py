"""Dropping residual blocks (htr.training.prune_blocks): the kept weights, the network it leaves, its checks."""

import pytest
import torch

from htr.alphabet import Alphabet
from htr.checkpoint import atomic_save, load_model, model_checkpoint, model_from_checkpoint, read_checkpoint
from htr.cli.prune import main
from htr.model import CRNN, ModelConfig
from htr.training.prune_blocks import prune_blocks

ALPHABET = Alphabet("abc ")
LARGE = ["M", [2, 8], "Mh", [3, 12]]
SMALL = ["M", [1, 8], "Mh", [2, 12]]


def trained_checkpoint() -> dict:
    torch.manual_seed(0)
    model = CRNN(ModelConfig(num_classes=ALPHABET.num_classes, stem_channels=4, cnn=LARGE, rnn_hidden=16,
                             rnn_layers=1))  # fmt: skip
    model.train()(torch.rand(2, 1, 64, 96))  # batch-norm statistics of their own
    return model_checkpoint(model.eval(), ALPHABET, {"val_cer": 0.1}, training={"steps": 5})


def test_a_stage_keeps_its_first_blocks_and_the_network_reads_as_without_the_dropped_ones():
    checkpoint = trained_checkpoint()
    # layers: stem 0-2, "M" 3, [2, 8] 4-5, "Mh" 6, [3, 12] 7-9. Blocks 5 and 9 are the ones to go: make them
    # identities (their last batch norm outputs zero), so the full network computes what the pruned one must
    for layer in (5, 9):
        for name in ("weight", "bias"):
            checkpoint["state_dict"][f"cnn.{layer}.body.4.{name}"].zero_()
    full, _ = model_from_checkpoint(checkpoint, "full")
    pruned = prune_blocks(checkpoint, SMALL)
    small, _ = model_from_checkpoint(pruned, "pruned")
    assert small.config.cnn == SMALL and checkpoint["model_config"]["cnn"] == LARGE  # the input is left as it was
    images = torch.rand(3, 1, 64, 80)
    with torch.no_grad():
        assert torch.allclose(small(images)[0], full(images)[0], atol=1e-5)
    renamed = {"cnn.5.": "cnn.6.", "cnn.6.": "cnn.7.", "cnn.7.": "cnn.8."}  # pruned name: original name
    for key, value in pruned["state_dict"].items():
        old = next((was + key[len(now) :] for now, was in renamed.items() if key.startswith(now)), key)
        assert torch.equal(value, checkpoint["state_dict"][old]), key
    assert len(pruned["state_dict"]) == len(checkpoint["state_dict"]) - 2 * len(full.cnn[5].state_dict())
    assert pruned["metrics"] == {} and "2 residual block(s) dropped" in pruned["training"]["note"]


@pytest.mark.parametrize("cnn", [
    ["M", [3, 8], "Mh", [2, 12]],  # more blocks than it had
    ["M", [1, 16], "Mh", [2, 12]],  # other channels
    ["Mh", [1, 8], "Mh", [2, 12]],  # another pooling
    ["M", [0, 8], "Mh", [2, 12]],  # a stage without blocks
    ["M", [1, 8]],  # a stage fewer
])  # fmt: skip
def test_only_fewer_blocks_of_the_same_stages_can_be_asked_for(cnn):
    with pytest.raises(ValueError, match="with fewer blocks per stage"):
        prune_blocks(trained_checkpoint(), cnn)


def test_the_command_writes_a_readable_checkpoint_and_fails_in_one_line(tmp_path, capsys):
    source, output = tmp_path / "large.pth", tmp_path / "small.pth"
    atomic_save(trained_checkpoint(), source)
    assert main([str(source), "--cnn", '["M", [1, 8], "Mh", [2, 12]]', "-o", str(output)]) == 0
    model, alphabet = load_model(output)
    assert model.config.cnn == SMALL and alphabet.chars == ALPHABET.chars
    assert read_checkpoint(output)["state_dict"].keys() == model.state_dict().keys()
    capsys.readouterr()
    for cnn in ('["M", [1, 8], "Mh"', '["M", [1, 16], "Mh", [2, 12]]'):
        assert main([str(source), "--cnn", cnn, "-o", str(tmp_path / "never.pth")]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1
    assert not (tmp_path / "never.pth").exists()
