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
from htr.model_files import LM_KEY, LM_ORDER_KEY
from htr.reading.onnx_network import OnnxNetwork, export_beside
from tests.conftest import render_line

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_TORCH = (  # python -c: predict.py, then say on stderr whether PyTorch was imported
    "import sys, predict; code = predict.main(sys.argv[1:]); "
    "print('PyTorch imported' if 'torch' in sys.modules else 'no PyTorch', file=sys.stderr); sys.exit(code)"
)


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
    by_onnx = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "--checkpoint", str(tmp_path / "absent.pth"), "--decoder", "greedy",
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


def save_model_with_lm(path: Path, seed: int) -> None:
    """A small random reader of lowercase letters with a 3-gram LM, saved as a checkpoint."""
    from htr.lm import build_lm

    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 16]],
                         rnn_hidden=16, rnn_layers=1)  # fmt: skip
    torch.manual_seed(seed)
    lm = build_lm(["the cat sat on the mat", "a dog ran", "hello world"], order=3)
    atomic_save(model_checkpoint(CRNN(config).eval(), alphabet, lm=lm), path)


def test_onnx_beam_search_with_a_model_folder_never_imports_pytorch(tmp_path):
    """An export without the LM (as older ones): beam search takes the LM of the checkpoint or model folder."""
    import onnx

    from htr import hub
    from htr.checkpoint import read_checkpoint

    save_model_with_lm(tmp_path / "model.pth", seed=1)
    hub.save_pretrained(read_checkpoint(tmp_path / "model.pth"), tmp_path / "folder")
    export_onnx(tmp_path / "model.pth", tmp_path / "with_lm.onnx")
    graph = onnx.load(str(tmp_path / "with_lm.onnx"))  # as exports made before they held the LM
    kept = [p for p in graph.metadata_props if p.key not in (LM_KEY, LM_ORDER_KEY)]
    assert len(kept) == len(graph.metadata_props) - 2
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(tmp_path / "model.onnx"))
    for i, text in enumerate(["the cat", "hello world"]):
        render_line(text).save(tmp_path / f"{i}.png")
    images = [str(tmp_path / f"{i}.png") for i in range(2)]
    options = ["--decoder", "beam", "--lm-weight", "2", "--format", "tsv"]  # a strong LM: the readings show it
    with_pth = subprocess.run([sys.executable, "predict.py", "--checkpoint", str(tmp_path / "model.pth"), *options,
                               "--onnx", str(tmp_path / "model.onnx"), *images], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)  # fmt: skip  # the LM read from the .pth, with PyTorch
    assert with_pth.returncode == 0, with_pth.stderr
    by_onnx = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "--checkpoint", str(tmp_path / "folder"), *options,
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


def test_the_export_beside_a_checkpoint_reads_by_default_until_the_checkpoint_changes(tmp_path):
    from htr.checkpoint import read_checkpoint
    from htr.hub import record_evaluation
    from htr.inference import Recognizer
    from htr.lm import CharLM

    checkpoint, export = tmp_path / "model.pth", tmp_path / "model.onnx"
    save_model_with_lm(checkpoint, seed=2)
    assert Recognizer(checkpoint, "cpu").runtime == "pytorch"  # no export yet
    checked = subprocess.run([sys.executable, "-m", "htr.export", "--checkpoint", str(checkpoint), "--check"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert f"wrote {export}" in checked.stdout  # the default output: beside the checkpoint

    images = [render_line(text) for text in ["the cat", "hello world", "a dog"]]
    options = {"decoder": "beam", "lm_weight": 2.0}  # a strong LM: the readings show it
    by_default = Recognizer(checkpoint, "cpu", **options)
    assert by_default.runtime == "onnxruntime" and by_default.notes == []
    stored = CharLM.from_state(read_checkpoint(checkpoint)["lm"])  # float32 values, as checkpoints keep them
    assert by_default.decoder.lm is not None and by_default.decoder.lm.to_arpa() == stored.to_arpa()  # the export's
    by_torch = Recognizer(checkpoint, "cpu", onnx=None, **options)
    assert by_torch.runtime == "pytorch"
    assert [r.text for r in by_default.read(images)] == [r.text for r in by_torch.read(images)]
    assert Recognizer(checkpoint, "cpu", "fp32").runtime == "pytorch"  # a precision asked for: PyTorch's

    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    files = [str(tmp_path / f"{i}.png") for i in range(len(images))]
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "--checkpoint", str(checkpoint), "--lm-weight", "2",
                          "--format", "tsv", *files], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0 and run.stderr.strip() == "no PyTorch", run.stderr  # beam + LM from the export alone
    assert [r.split("\t")[1] for r in run.stdout.splitlines()] == [r.text for r in by_torch.read(images)]

    record_evaluation(checkpoint, {"dataset": "d", "split": "s", "decoder": "greedy", "lines": 1, "cer": 0.5,
                                   "wer": 0.5})  # fmt: skip  # the checkpoint file changes: the export is stale
    stale = Recognizer(checkpoint, "cpu")
    assert stale.runtime == "pytorch"
    assert len(stale.notes) == 1 and "was not exported from this model.pth" in stale.notes[0]
    assert export_beside(checkpoint)[0] is None


def test_the_shipped_export_is_made_from_the_shipped_checkpoint():
    network, note = export_beside(ROOT / "handwriting_recognizer_best.pth")
    assert note is None, note  # re-export after changing the checkpoint: python -m htr.export --int8 DATASET
    assert network is not None and network.has_lm
    import onnx

    operators = {node.op_type for node in onnx.load(str(network.path)).graph.node}
    assert {"DynamicQuantizeLSTM", "QuantizeLinear"} <= operators  # int8, as measured in docs/reading.md


def test_an_onnx_network_reads_one_batch_per_core_at_once_up_to_a_limit(monkeypatch):
    from htr.reading.onnx_network import MAX_PARALLEL_CALLS

    for cores, calls, threads in ((1, 1, 1), (2, 2, 1), (16, MAX_PARALLEL_CALLS, 16 // MAX_PARALLEL_CALLS)):
        monkeypatch.setattr("htr.cpu_share.usable_cores", lambda cores=cores: cores)
        network = OnnxNetwork(ROOT / "handwriting_recognizer_best.onnx")
        assert network.parallel_calls == calls
        assert network.session.get_session_options().intra_op_num_threads == threads
