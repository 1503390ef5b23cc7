"""Model folders (htr.hub): safetensors weights, config, LM and card; folders and hub ids wherever a checkpoint goes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from htr import hub
from htr.alphabet import Alphabet
from htr.checkpoint import CheckpointError, atomic_save, model_checkpoint, read_checkpoint
from htr.cli.hub import main as hub_command
from htr.hub import record_evaluation, store_lm
from htr.inference import Recognizer
from htr.lm import build_lm
from htr.model import CRNN, ModelConfig
from tests.conftest import render_line

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "handwriting_recognizer_best.pth"
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


def card_metadata(folder: Path) -> dict:
    text = (folder / hub.CARD_NAME).read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def shipped_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hub") / "htr-iam"
    assert hub_command(["export", str(SHIPPED), str(folder)]) == 0
    return folder


@pytest.fixture()
def small_checkpoint(tmp_path) -> Path:
    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 16]],
                         rnn_hidden=16, rnn_layers=1)  # fmt: skip
    lm = build_lm(["the cat sat", "a dog ran"], order=3)
    training = {"datasets": ["iam-dev", "my-letters"], "ink": "iamondb.tar.xz", "ink_ratio": 0.5, "steps": 12,
                "lines_seen": 96, "epochs": 2, "hardware": "2-core CPU", "recipe": {"batch size": 8}}  # fmt: skip
    path = tmp_path / "small.pth"
    atomic_save(model_checkpoint(CRNN(config), alphabet, {"val_cer": 0.5, "val_wer": 0.9}, lm, training), path)
    return path


def test_shipped_model_reads_the_same_from_its_folder(shipped_folder):
    assert sorted(os.listdir(shipped_folder)) == sorted(hub.FOLDER_FILES)
    assert sum(f.stat().st_size for f in shipped_folder.iterdir()) < 50 * 2**20
    readings = []
    for checkpoint in (SHIPPED, shipped_folder):
        recognizer = Recognizer(checkpoint, device="cpu", precision="fp32", line_finder=None)
        assert recognizer.decoder.lm is not None  # the LM came along: beam search + LM, as with the .pth
        readings.append([(r.text, r.confidence) for r in recognizer.read([Image.open(p) for p in EXAMPLES])])
    assert readings[0] == readings[1]
    assert len(readings[0]) == len(EXAMPLES) and all(text for text, _ in readings[0])


def test_the_shipped_folder_carries_its_export_and_reads_as_the_pth(shipped_folder):
    """`htr.hub export` of the shipped model (what the README's "Sharing a model" runs, with the runtime
    requirements alone) copies its int8 export in as model.onnx, which the folder then reads with, as the .pth does."""
    shipped = read_checkpoint(SHIPPED)
    config = json.loads((shipped_folder / hub.CONFIG_NAME).read_text())
    assert config == {**hub.folder_config(shipped), "name": "htr-iam"}
    assert (shipped_folder / hub.CARD_NAME).read_text() == hub.model_card(config)
    folder = read_checkpoint(shipped_folder)
    assert all(torch.equal(folder["state_dict"][k], v) for k, v in shipped["state_dict"].items())
    assert folder["lm"]["ngrams"] == shipped["lm"]["ngrams"]
    readings = []
    for checkpoint in (SHIPPED, shipped_folder):
        reader = Recognizer(checkpoint, "cpu", line_finder=None)  # the default: the export beside it, int8
        assert reader.runtime == "onnxruntime" and reader.notes == []
        readings.append([(r.text, r.confidence) for r in reader.read([Image.open(p) for p in EXAMPLES])])
    assert readings[0] == readings[1]


def test_folder_weights_load_with_safetensors_and_json_alone(shipped_folder):
    from safetensors.torch import load_file

    config = json.loads((shipped_folder / hub.CONFIG_NAME).read_text())
    model = CRNN(ModelConfig(**config["model_config"]))
    model.load_state_dict(load_file(shipped_folder / hub.WEIGHTS_NAME))  # strict: every tensor, nothing else
    shipped = torch.load(SHIPPED, weights_only=True)
    assert config["alphabet"] == shipped["alphabet"]
    for name, tensor in shipped["state_dict"].items():
        assert torch.equal(model.state_dict()[name], tensor), name
    lm = load_file(shipped_folder / hub.LM_NAME)
    assert torch.equal(lm["logprobs"], shipped["lm"]["logprobs"])
    assert bytes(lm["ngrams"].numpy()).decode() == shipped["lm"]["ngrams"]


def test_pickles_in_a_folder_are_refused(small_checkpoint, tmp_path):
    folder = tmp_path / "pickled"
    hub.save_pretrained(read_checkpoint(small_checkpoint), folder)
    (folder / hub.WEIGHTS_NAME).unlink()
    (folder / "pytorch_model.bin").write_bytes(small_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="pickled weights .*pytorch_model.bin.*refused"):
        read_checkpoint(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="not an htr model folder"):
        read_checkpoint(folder)


def test_damaged_folders_get_a_clear_error(small_checkpoint, tmp_path):
    folder = hub.save_pretrained(read_checkpoint(small_checkpoint), tmp_path / "m")
    (folder / hub.LM_NAME).write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="cannot read its weights or language model"):
        read_checkpoint(folder)
    config = json.loads((folder / hub.CONFIG_NAME).read_text())
    (folder / hub.CONFIG_NAME).write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        read_checkpoint(folder)
    (folder / hub.CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read it"):
        read_checkpoint(folder)


def test_a_folder_named_after_a_split_is_recorded_as_that_split_of_its_parent(small_checkpoint, tmp_path):
    """``htr.evaluate --dataset letters/validation --record`` (an export laid out by split, one split read alone):
    its lines are letters' validation split, not "all" lines of a dataset called "validation"."""
    from htr.cli.evaluate import main as evaluate
    from htr.data import folder_split
    from tests.conftest import write_parquet_dataset

    folder = write_parquet_dataset(tmp_path / "letters" / "validation", n_train=6, n_val=0, n_test=0)
    for split in ("validation", "test"):
        (folder / f"{split}.parquet").unlink()  # one file of lines: a dataset without splits of its own
    assert folder_split(str(folder)) == ("letters", "validation") and folder_split(str(tmp_path / "letters")) is None
    assert evaluate(["--checkpoint", str(small_checkpoint), "--dataset", str(folder), "--record"]) == 0
    recorded = read_checkpoint(small_checkpoint)["metrics"]["evaluations"]
    assert [(e["dataset"], e["split"], e["lines"]) for e in recorded] == [("letters", "validation", 6)]


def test_card_carries_recorded_metrics_licences_and_training(small_checkpoint, tmp_path):
    record_evaluation(small_checkpoint, {"dataset": "iam-dev", "split": "validation", "lines": 390,
                                         "decoder": "greedy", "cer": 0.0681, "wer": 0.2329})  # fmt: skip
    record_evaluation(
        small_checkpoint,
        {"dataset": "iam-dev", "split": "validation", "lines": 390, "decoder": "greedy", "cer": 0.0679, "wer": 0.2300},
    )  # replaces the first
    record_evaluation(small_checkpoint, {"dataset": "iam-dev", "split": "validation", "lines": 390,
                                         "decoder": "beam 16, 3-gram LM", "cer": 0.0458, "wer": 0.156})  # fmt: skip
    folder = tmp_path / "card-test"
    assert hub_command(["export", str(small_checkpoint), str(folder)]) == 0
    meta = card_metadata(folder)
    results = meta["model-index"][0]["results"]
    values = {(m["name"], r["dataset"]["split"]): m["value"] for r in results for m in r["metrics"]}
    assert values == {("CER (greedy)", "validation"): 6.79, ("WER (greedy)", "validation"): 23.0,
                      ("CER (beam 16, 3-gram LM)", "validation"): 4.58,
                      ("WER (beam 16, 3-gram LM)", "validation"): 15.6}  # fmt: skip
    assert meta["model-index"][0]["name"] == "card-test" and meta["license"] == "other"
    card = (folder / hub.CARD_NAME).read_text()
    assert "`iam-dev` (line images and transcriptions): IAM Handwriting Database: free for non-commercial" in card
    assert "`my-letters` (line images and transcriptions): see the dataset's own terms" in card
    assert "`iamondb.tar.xz` (pen trajectories rendered" in card and "IAM On-Line" in card
    assert "commercial use needs the data owners' permission" in card and "Hardware: 2-core CPU" in card
    assert "| iam-dev | validation | 390 | greedy | 6.79% | 23.00% |" in card
    record_evaluation(folder, {"dataset": "mine", "split": "all", "lines": 5, "decoder": "greedy", "cer": 0.25,
                               "wer": 0.5})  # fmt: skip  # a folder records too: config and card rewritten
    assert len(json.loads((folder / hub.CONFIG_NAME).read_text())["metrics"]["evaluations"]) == 3
    assert "| mine | all | 5 | greedy | 25.00% | 50.00% |" in (folder / hub.CARD_NAME).read_text()


def test_repo_ids_are_told_from_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.is_repo_id("teklia/htr-iam") and hub.is_repo_id("someone/model@v1.0")
    assert not hub.is_repo_id("runs/best.pth") and not hub.is_repo_id("handwriting_recognizer_best.pth")
    assert not hub.is_repo_id("runs/long/handwriting_recognizer_best.pth") and not hub.is_repo_id("/abs/x")
    (tmp_path / "runs" / "long").mkdir(parents=True)
    assert not hub.is_repo_id("runs/long")  # an existing local folder is never sent to the hub


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "unreachable endpoint"])
def test_a_repo_id_offline_is_one_line_and_exit_2(offline, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    if offline == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # what a machine without internet meets: the connection is refused
        env.pop("HF_HUB_OFFLINE", None)
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    result = subprocess.run([sys.executable, "predict.py", "--checkpoint", "someone/htr-model", str(EXAMPLES[0])],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "someone/htr-model" in lines[0] and "Hugging Face Hub" in lines[0], result.stderr


def test_a_folder_carries_the_checkpoints_current_export_and_reads_with_it(small_checkpoint, tmp_path):
    from htr.export import export_onnx
    from htr.lm import CharLM

    images = [render_line(text) for text in ["the cat", "a dog ran"]]
    export_onnx(small_checkpoint, small_checkpoint.with_suffix(".onnx"))  # X.onnx beside X.pth, made from it
    folder = tmp_path / "with-onnx"
    assert hub_command(["export", str(small_checkpoint), str(folder)]) == 0
    assert sorted(os.listdir(folder)) == sorted(hub.FOLDER_FILES)  # model.onnx among them
    from_file, from_folder = Recognizer(small_checkpoint, "cpu"), Recognizer(folder, "cpu")
    assert from_file.runtime == from_folder.runtime == "onnxruntime" and from_folder.notes == []
    assert [r.text for r in from_folder.read(images)] == [r.text for r in from_file.read(images)]
    lm = from_folder.decoder.lm
    assert lm is not None and lm.to_arpa() == CharLM.from_state(read_checkpoint(folder)["lm"]).to_arpa()

    record_evaluation(folder, {"dataset": "d", "split": "s", "decoder": "greedy", "lines": 1, "cer": 0.5,
                               "wer": 0.5})  # fmt: skip  # same weights: the export still serves
    new_lm = build_lm(["zebra zone", "lazy zoo"], order=2)
    store_lm(folder, new_lm)  # the folder's new LM is the one used, not the copy an export may hold
    again = Recognizer(folder, "cpu")
    stored = CharLM.from_state(read_checkpoint(folder)["lm"]).to_arpa()  # float32, as folders keep it
    assert again.runtime == "onnxruntime" and again.decoder.lm.to_arpa() == stored != lm.to_arpa()

    other = read_checkpoint(small_checkpoint)
    other["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in other["state_dict"].items()}
    hub.save_pretrained(other, folder)  # other weights: the export no longer describes the network
    assert not (folder / hub.ONNX_NAME).exists() and Recognizer(folder, "cpu").runtime == "pytorch"


def test_a_stale_export_is_neither_carried_nor_pushed(small_checkpoint, tmp_path, capsys):
    from htr.export import export_onnx

    export_onnx(small_checkpoint, small_checkpoint.with_suffix(".onnx"))
    record_evaluation(small_checkpoint, {"dataset": "d", "split": "s", "decoder": "greedy", "lines": 1, "cer": 0.5,
                                         "wer": 0.5})  # fmt: skip  # the .pth changed after its export
    folder = tmp_path / "stale"
    assert hub_command(["export", str(small_checkpoint), str(folder)]) == 0
    assert "is stale" in capsys.readouterr().out and not (folder / hub.ONNX_NAME).exists()
    export_onnx(small_checkpoint, folder / hub.ONNX_NAME)  # records the .pth, not the folder's weights
    stale = Recognizer(folder, "cpu")
    assert stale.runtime == "pytorch" and "was not exported from this model.safetensors" in stale.notes[0]
    with pytest.raises(CheckpointError, match="not made from this folder's weights"):
        hub.push(folder, "someone/model")  # refused before any network use
    assert hub_command(["push", str(folder), "someone/model"]) == 2


def test_htr_export_of_a_folder_writes_its_model_onnx(small_checkpoint, tmp_path):
    folder = hub.save_pretrained(read_checkpoint(small_checkpoint), tmp_path / "m")
    result = subprocess.run([sys.executable, "-m", "htr.export", "--checkpoint", str(folder), "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote {folder / hub.ONNX_NAME}" in result.stdout
    recognizer = Recognizer(folder, "cpu")
    assert recognizer.runtime == "onnxruntime" and recognizer.notes == []


def test_a_hub_models_export_serves_from_the_hub_cache(small_checkpoint, tmp_path):
    """A repo id offline, its folder in the hub cache (as snapshot_download leaves it): its model.onnx reads."""
    from htr.export import export_onnx

    export_onnx(small_checkpoint, small_checkpoint.with_suffix(".onnx"))
    revision = "0" * 40
    cache = tmp_path / "hf" / "hub" / "models--someone--small"
    assert hub_command(["export", str(small_checkpoint), str(cache / "snapshots" / revision)]) == 0
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    code = "from htr.inference import Recognizer; r = Recognizer('someone/small', 'cpu'); print(r.runtime, r.notes)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnxruntime", "[]"]
