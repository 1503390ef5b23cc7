import argparse

import pytest

from htr.cli.train import add_dataclass_arguments, config_from_arguments
from htr.train import TrainConfig, lr_factor


def parse(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig())
    return config_from_arguments(parser.parse_args(argv), TrainConfig())


def test_command_line_maps_onto_nested_config():
    assert parse() == TrainConfig()
    cfg = parse("--epochs", "3", "--model-rnn-layers", "1", "--model-cnn", '["M", [1, 8]]', "--no-use-augment",
                "--augment-shear", "0.1", "--no-model-shortcut")  # fmt: skip
    assert cfg.epochs == 3 and cfg.use_augment is False
    assert cfg.model.rnn_layers == 1 and cfg.model.cnn == ["M", [1, 8]] and cfg.model.shortcut is False
    assert cfg.augment.shear == 0.1 and cfg.augment.rotate == TrainConfig().augment.rotate


def test_datasets_repeat_on_the_command_line():
    assert parse().dataset == ["Teklia/IAM-line"]
    cfg = parse("--dataset", "a", "--dataset", "b", "--dataset-weights", "[1, 0.5]", "--val-dataset", "c")
    assert cfg.dataset == ["a", "b"] and cfg.weights() == [1, 0.5] and cfg.val_dataset == "c"
    assert TrainConfig(dataset="one/path").dataset == ["one/path"]  # a plain string still works
    assert TrainConfig(dataset=["a", "b"]).weights() == [1.0, 1.0]
    with pytest.raises(ValueError, match="2 dataset weights for 1 datasets"):
        TrainConfig(dataset=["a"], dataset_weights=[1, 2])


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 100) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 100) == pytest.approx(1.0)
    assert lr_factor(55, cfg, 100) == pytest.approx(0.55)  # half way through the cosine
    assert lr_factor(100, cfg, 100) == pytest.approx(0.1)
    assert lr_factor(500, cfg, 100) == pytest.approx(0.1)


def test_new_characters_join_the_alphabet_after_the_known_ones_when_frequent_enough():
    from htr.train import extended_alphabet

    texts = ["Kew & Co", "£5 & £3", "a & b", "café"]
    assert extended_alphabet("abc", texts).chars == "abc" + "".join(sorted(set("".join(texts)) - set("abc")))
    frequent = extended_alphabet("abc ", texts, min_count=2)
    assert frequent.chars.startswith("abc ") and "&" in frequent.chars and "£" in frequent.chars
    assert "é" not in frequent.chars and "K" not in frequent.chars  # once each: left out, their lines skipped


def test_validation_sets_get_distinct_names(tmp_path):
    from htr.train import unique_names

    (tmp_path / "a" / "letters").mkdir(parents=True)
    (tmp_path / "b" / "letters").mkdir(parents=True)
    sources = [str(tmp_path / "a" / "letters"), str(tmp_path / "b" / "letters"), "Teklia/IAM-line"]
    assert unique_names(sources) == ["letters", "letters#2", "Teklia/IAM-line"]
