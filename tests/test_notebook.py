"""Execute the notebook headlessly, top to bottom, on tiny generated data."""

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import write_iamondb

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_runs_top_to_bottom(parquet_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HTR_DATASET", str(parquet_dataset))
    monkeypatch.setenv("HTR_OUTPUT_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("HTR_EPOCHS", "1")
    monkeypatch.setenv("HTR_BATCH_SIZE", "8")
    monkeypatch.setenv("HTR_INK", str(write_iamondb(tmp_path / "iamondb")))
    (tmp_path / "text.txt").write_text("the cat sat\non the mat\n")
    monkeypatch.setenv("HTR_FONT_TEXT", str(tmp_path / "text.txt"))
    tiny = {"stem_channels": 8, "cnn": ["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]], "rnn_hidden": 32, "rnn_layers": 1}
    monkeypatch.setenv("HTR_MODEL", json.dumps(tiny))
    monkeypatch.setenv("HTR_FINETUNE_CHOICES", json.dumps({"epochs": 1, "lines_per_epoch": 16}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(ROOT / "handwriting_recognition.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "\n".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "best validation CER" in outputs and "test (greedy): 8 lines, CER" in outputs
    assert "test (beam 16, 6-gram LM" in outputs  # the trained checkpoint carries its LM
    assert "train: 48 real + 96 synthetic lines" in outputs  # ink and font lines joined the real ones
    assert (tmp_path / "run" / "handwriting_recognizer_best.pth").exists()
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # samples, augmentation, synthetic lines, curves, predictions, a page with boxes
    assert "4 lines found" in outputs  # the composed page of test lines was segmented
    assert "fine-tuned on " in outputs and "# Fine-tuning report" in outputs  # the PAGE folder made in the notebook
    assert (tmp_path / "run" / "my_model" / "model" / "model.onnx").is_file()
