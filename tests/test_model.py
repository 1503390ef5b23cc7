import os

import pytest
import torch

from htr.alphabet import Alphabet
from htr.checkpoint import CheckpointError, atomic_save, load_model, model_checkpoint, read_checkpoint
from htr.model import CRNN, ModelConfig

TINY = {"stem_channels": 8, "cnn": ["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]], "rnn_hidden": 16, "rnn_layers": 1}


@pytest.mark.parametrize("config", [ModelConfig(num_classes=10), ModelConfig(num_classes=10, **TINY)])
@pytest.mark.parametrize("width", [16, 17, 63, 64, 255, 1000, 2048])
def test_output_length_matches_the_network(config, width):
    model = CRNN(config).eval()
    log_probs, shortcut = model(torch.rand(2, 1, config.height, width))
    assert shortcut is None  # the shortcut head is for training only
    assert log_probs.shape == (model.output_length(width), 2, 10)
    assert log_probs.shape[0] >= width // model.width_factor


def test_longest_iam_line_fits():
    # The longest IAM line has ~95 characters; at 64 px height it is ~1800 px wide (about 19 px per char).
    model = CRNN(ModelConfig(num_classes=80))
    assert model.output_length(1800) >= 2 * 95


def test_shortcut_head_in_training():
    model = CRNN(ModelConfig(num_classes=7, **TINY)).train()
    log_probs, shortcut = model(torch.rand(3, 1, 64, 100))
    assert shortcut is not None and shortcut.shape == log_probs.shape


def test_checkpoint_round_trip(tmp_path):
    alphabet = Alphabet("abc ")
    model = CRNN(ModelConfig(num_classes=alphabet.num_classes, **TINY)).eval()
    path = tmp_path / "model.pth"
    atomic_save(model_checkpoint(model, alphabet, {"val_cer": 0.5}), path)
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["alphabet"] == "abc " and raw["metrics"]["val_cer"] == 0.5
    loaded, loaded_alphabet = load_model(path)
    assert loaded_alphabet == alphabet and loaded.config == model.config
    x = torch.rand(1, 1, 64, 80)
    assert torch.equal(loaded(x)[0], model(x)[0])
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's 0600


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an htr model checkpoint"):
        read_checkpoint(foreign)
