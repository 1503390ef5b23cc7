"""Train a tiny model on generated lines, interrupt, resume, evaluate and predict, as a user would."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from htr.checkpoint import load_model
from htr.lm import load_lm
from htr.model import ModelConfig
from htr.train import TrainConfig, train
from tests.conftest import TINY_MODEL, render_line

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_train_interrupt_resume_evaluate_predict(parquet_dataset, tmp_path):
    out = tmp_path / "run"
    tiny = ModelConfig(num_classes=0, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]],
                       rnn_hidden=32, rnn_layers=1)  # fmt: skip
    config = TrainConfig(dataset=str(parquet_dataset), output_dir=str(out), epochs=2, batch_size=8, max_steps=4,
                         warmup_steps=2, model=tiny)  # fmt: skip
    first = train(config, progress=False)  # 48 lines / 8 = 6 steps per epoch: stops inside epoch 1
    state = torch.load(out / "last_state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 0, 4)
    assert first["history"] == [] and not (out / "handwriting_recognizer_best.pth").exists()

    resumed = run("-m", "htr.train", "--dataset", str(parquet_dataset), "--output-dir", str(out), "--epochs", "2",
                  "--batch-size", "8", "--warmup-steps", "2", *TINY_MODEL)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "step 4" in resumed.stderr
    state = torch.load(out / "last_state.pt", weights_only=True)
    assert (state["step"], state["epoch"]) == (12, 2)  # continued from step 4, not restarted
    assert [h["step"] for h in state["history"]] == [6, 12]
    best = out / "handwriting_recognizer_best.pth"
    model, alphabet = load_model(best)
    assert model.config.rnn_hidden == 32 and set(alphabet.chars) >= set("the and")

    results = tmp_path / "lines.tsv"
    evaluated = run("-m", "htr.evaluate", "--checkpoint", str(best), "--dataset", str(parquet_dataset),
                    "--split", "test", "--output", str(results))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test: 8 lines" in evaluated.stdout and "CER" in evaluated.stdout and "WER" in evaluated.stdout
    assert len(results.read_text().splitlines()) == 1 + 8
    assert load_lm(best).order == 6  # training stored an LM of its training texts in the checkpoint
    beam = run("-m", "htr.evaluate", "--checkpoint", str(best), "--dataset", str(parquet_dataset), "--split", "test",
               "--decoder", "beam", "--beam-width", "4")  # fmt: skip
    assert beam.returncode == 0, beam.stderr
    assert "test: 8 lines (beam 4, 6-gram LM" in beam.stdout and "lower half CER" in beam.stdout

    image = tmp_path / "line.png"
    render_line("the cat").save(image)
    predicted = run("predict.py", "--checkpoint", str(best), "--format", "json", str(image), str(image))
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(image), str(image)] and all(isinstance(r["text"], str) for r in rows)
    assert all(0 <= r["confidence"] <= 1 for r in rows)

    # share it: record the evaluation, export a model folder, read with the folder as the checkpoint
    training = torch.load(best, weights_only=True)["training"]
    assert training["datasets"] == [parquet_dataset.name] and training["steps"] == 6 * training["epochs"]
    assert "cores" in training["hardware"] and training["recipe"]["batch size"] == 8
    recorded = run("-m", "htr.evaluate", "--checkpoint", str(best), "--dataset", str(parquet_dataset), "--split",
                   "test", "--record")  # fmt: skip
    assert recorded.returncode == 0 and f"recorded in {best}" in recorded.stdout, recorded.stderr
    cer = float(recorded.stdout.split("CER ")[1].split("%")[0])
    folder = tmp_path / "my-model"
    exported = run("-m", "htr.hub", "export", str(best), str(folder))
    assert exported.returncode == 0, exported.stderr
    card = (folder / "README.md").read_text()
    results = yaml.safe_load(card.split("---\n")[1])["model-index"][0]["results"]
    assert {m["name"]: m["value"] for r in results for m in r["metrics"]}["CER (greedy)"] == cer
    assert f"`{parquet_dataset.name}` (line images and transcriptions)" in card
    from_folder = run("predict.py", "--checkpoint", str(folder), "--format", "json", str(image), str(image))
    assert from_folder.returncode == 0, from_folder.stderr
    assert from_folder.stdout == predicted.stdout


def test_two_datasets_weighted_with_a_weight_average(parquet_dataset, tmp_path):
    import datasets

    from tests.conftest import png_bytes

    extra = tmp_path / "extra"  # a train-only source drawn twice per epoch
    extra.mkdir()
    datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(render_line("a cat")), "path": None}] * 4,
                                "text": ["a cat"] * 4}).to_parquet(str(extra / "train.parquet"))  # fmt: skip
    letters = tmp_path / "letters"  # a second validation set, read every epoch beside the first
    letters.mkdir()
    texts = ["to you", "yes"]
    datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(render_line(t)), "path": None} for t in texts],
                                "text": texts}).to_parquet(str(letters / "validation.parquet"))  # fmt: skip
    out = tmp_path / "run"
    tiny = ModelConfig(num_classes=0, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]],
                       rnn_hidden=32, rnn_layers=1)  # fmt: skip
    config = TrainConfig(dataset=[str(parquet_dataset), str(extra)], dataset_weights=[1, 2], output_dir=str(out),
                         epochs=1, batch_size=8, warmup_steps=2, model=tiny, ema_decay=0.9, lm_order=0,
                         device="cpu", also_validate=[str(letters)])  # fmt: skip
    (first,) = train(config, progress=False)["history"]
    assert first["lines_seen"] == 48 + 2 * 4 and first["step"] == 7  # 56 lines of batch 8
    per_set = first["val"]
    assert sorted(per_set) == sorted([parquet_dataset.name, "letters"])
    assert first["val_cer"] == pytest.approx((per_set["letters"]["cer"] + per_set[parquet_dataset.name]["cer"]) / 2)
    assert first["sitting"] == 1 and "cores" in first["hardware"] and first["train_seconds"] > 0
    assert isinstance(first["val_cer_raw"], float)  # the raw weights are validated beside their average
    state = torch.load(out / "last_state.pt", weights_only=True)
    saved = torch.load(out / "handwriting_recognizer_best.pth", weights_only=True)["state_dict"]
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)  # the checkpoint holds the average
    assert not all(torch.equal(saved[k], state["model"][k]) for k in saved if k.endswith("weight"))
    history = train(dataclasses.replace(config, epochs=2), progress=False)["history"]  # a second sitting
    assert [h["sitting"] for h in history] == [1, 2] and history[1]["lines_seen"] == 2 * 56
