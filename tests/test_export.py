"""ONNX export with a dynamic width: onnxruntime reads like PyTorch at any width and batch size."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from htr.alphabet import Alphabet
from htr.checkpoint import atomic_save, model_checkpoint
from htr.export import export_onnx
from htr.model import CRNN, ModelConfig
from htr.reading.onnx_network import OnnxNetwork
from tests.conftest import render_line

ROOT = Path(__file__).resolve().parents[1]


def test_onnx_matches_pytorch_at_any_width_and_batch(tmp_path):
    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 16]],
                         rnn_hidden=16, rnn_layers=2)  # fmt: skip
    torch.manual_seed(0)
    model = CRNN(config).eval()
    atomic_save(model_checkpoint(model, alphabet), tmp_path / "model.pth")
    export_onnx(tmp_path / "model.pth", tmp_path / "model.onnx")
    network = OnnxNetwork(tmp_path / "model.onnx")
    assert network.alphabet == alphabet and network.config == config  # from the file's metadata
    for batch, width in [(1, 40), (3, 333), (2, 1500)]:
        images = torch.rand(batch, 1, config.height, width)
        expected = model(images)[0].detach().numpy()
        got = network(images.numpy())
        assert got.shape == expected.shape == (model.output_length(width), batch, alphabet.num_classes)
        np.testing.assert_allclose(got, expected, atol=1e-4)

    for i, text in enumerate(["abc", "hello world", "x"]):
        render_line(text).save(tmp_path / f"{i}.png")
    images = [str(tmp_path / f"{i}.png") for i in range(3)]
    checked = subprocess.run(
        [sys.executable, "-m", "htr.export", "--checkpoint", str(tmp_path / "model.pth"), "-o",
         str(tmp_path / "again.onnx"), "--check", *images], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "3/3 texts identical" in checked.stdout
    run = [sys.executable, "predict.py", "--checkpoint", str(tmp_path / "model.pth"), "--decoder", "greedy",
           "--precision", "fp32", "--format", "tsv"]  # fmt: skip
    by_torch = subprocess.run([*run, *images], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert by_torch.returncode == 0, by_torch.stderr
    # greedy with ONNX needs no checkpoint and never imports PyTorch
    without_torch = (
        "import sys, predict; code = predict.main(sys.argv[1:]); "
        "print('PyTorch imported' if 'torch' in sys.modules else 'no PyTorch', file=sys.stderr); sys.exit(code)"
    )
    by_onnx = subprocess.run(
        [sys.executable, "-c", without_torch, "--checkpoint", str(tmp_path / "absent.pth"), "--decoder", "greedy",
         "--format", "tsv", "--onnx", str(tmp_path / "model.onnx"), *images],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert by_onnx.returncode == 0, by_onnx.stderr
    assert by_onnx.stderr.strip() == "no PyTorch"
    texts_and_confidences = [r.split("\t")[1:] for r in by_onnx.stdout.splitlines()]
    assert texts_and_confidences == [r.split("\t")[1:] for r in by_torch.stdout.splitlines()]
    assert len(texts_and_confidences) == 3


def test_unusable_onnx_files_get_one_line_and_exit_2(tmp_path, capsys):
    import onnx

    import predict

    torch.manual_seed(0)
    for name, chars in [("ab", "ab "), ("abc", "abc ")]:
        alphabet = Alphabet(chars)
        config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 8]], rnn_hidden=8,
                             rnn_layers=1, shortcut=False)  # fmt: skip
        atomic_save(model_checkpoint(CRNN(config).eval(), alphabet), tmp_path / f"{name}.pth")
    export_onnx(tmp_path / "ab.pth", tmp_path / "ab.onnx")
    bare = onnx.load(str(tmp_path / "ab.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    render_line("ab").save(tmp_path / "line.png")
    cases = {
        "ab.onnx": (["--checkpoint", str(tmp_path / "abc.pth"), "--decoder", "beam"],
                    f"was not exported from {tmp_path / 'abc.pth'} (their alphabets differ)"),
        "broken.onnx": (["--decoder", "greedy"], "error: cannot load ONNX model"),
        "absent.onnx": (["--decoder", "greedy"], f"error: ONNX model not found: {tmp_path / 'absent.onnx'}"),
        "bare.onnx": (["--decoder", "greedy"], "has no alphabet/model_config metadata"),
    }  # fmt: skip
    for name, (options, message) in cases.items():
        assert predict.main([str(tmp_path / "line.png"), "--onnx", str(tmp_path / name), *options]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1 and message in captured.err, name


def test_onnx_beam_search_with_a_model_folder_never_imports_pytorch(tmp_path):
    from htr import hub
    from htr.checkpoint import read_checkpoint
    from htr.lm import build_lm

    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 16]],
                         rnn_hidden=16, rnn_layers=1)  # fmt: skip
    torch.manual_seed(1)
    lm = build_lm(["the cat sat on the mat", "a dog ran", "hello world"], order=3)
    atomic_save(model_checkpoint(CRNN(config).eval(), alphabet, lm=lm), tmp_path / "model.pth")
    hub.save_pretrained(read_checkpoint(tmp_path / "model.pth"), tmp_path / "folder")
    export_onnx(tmp_path / "model.pth", tmp_path / "model.onnx")
    for i, text in enumerate(["the cat", "hello world"]):
        render_line(text).save(tmp_path / f"{i}.png")
    images = [str(tmp_path / f"{i}.png") for i in range(2)]
    options = ["--decoder", "beam", "--lm-weight", "2", "--format", "tsv"]  # a strong LM: the readings show it
    with_pth = subprocess.run([sys.executable, "predict.py", "--checkpoint", str(tmp_path / "model.pth"), *options,
                               "--onnx", str(tmp_path / "model.onnx"), *images], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)  # fmt: skip  # the LM read from the .pth, with PyTorch
    assert with_pth.returncode == 0, with_pth.stderr
    without_torch = (
        "import sys, predict; code = predict.main(sys.argv[1:]); "
        "print('PyTorch imported' if 'torch' in sys.modules else 'no PyTorch', file=sys.stderr); sys.exit(code)"
    )
    by_onnx = subprocess.run([sys.executable, "-c", without_torch, "--checkpoint", str(tmp_path / "folder"), *options,
                              "--onnx", str(tmp_path / "model.onnx"), *images], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert by_onnx.returncode == 0, by_onnx.stderr
    assert by_onnx.stderr.strip() == "no PyTorch"
    texts = [r.split("\t")[1] for r in by_onnx.stdout.splitlines()]
    assert texts == [r.split("\t")[1] for r in with_pth.stdout.splitlines()] and len(texts) == 2
    greedy = subprocess.run([sys.executable, "predict.py", "--decoder", "greedy", "--format", "tsv", "--onnx",
                             str(tmp_path / "model.onnx"), *images], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert texts != [r.split("\t")[1] for r in greedy.stdout.splitlines()]  # the folder's LM was used
