"""predict.py as a user runs it: formats, input order, bad inputs and bad checkpoints."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from htr.alphabet import Alphabet
from htr.checkpoint import atomic_save, model_checkpoint
from htr.model import CRNN, ModelConfig
from tests.conftest import render_line, side_by_side

ROOT = Path(__file__).resolve().parents[1]


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "predict.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def predict_each(*runs: list[str]) -> list[subprocess.CompletedProcess]:
    """``predict`` with each run's arguments, the runs side by side (one process each), results in order."""
    return side_by_side(lambda args: predict(*args), runs)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 16]],
                         rnn_hidden=16, rnn_layers=1)  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    atomic_save(model_checkpoint(CRNN(config), alphabet), path)
    return str(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name, text in [("b.png", "second"), ("a.png", "first"), ("c.jpg", "third")]:
        render_line(text).convert("RGB").save(folder / name)
    (folder / "notes.txt").write_text("not an image, and not listed from a folder")
    return folder


def test_json_lines_in_input_order_with_folders_and_globs(checkpoint, images):
    result = predict("--checkpoint", checkpoint, "--format", "json", str(images / "c.jpg"), str(images),
                     str(images / "*.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    names = [Path(p).name for p in paths]
    assert names == ["c.jpg", "a.png", "b.png", "c.jpg", "a.png", "b.png"]


def test_broken_and_missing_inputs_fail_alone(checkpoint, images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = predict("--checkpoint", checkpoint, "--format", "tsv", str(images / "a.png"), str(broken),
                     str(tmp_path / "missing.png"), str(images / "b.png"))  # fmt: skip
    assert result.returncode == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(images / "a.png"),
                                                                             str(images / "b.png")]  # fmt: skip
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"{tmp_path / 'missing.png'}: ") and errors[1].startswith(f"{broken}: ")


def test_text_format_prints_one_line_per_image(checkpoint, images):
    result = predict("--checkpoint", checkpoint, str(images / "a.png"), str(images / "b.png"))
    assert result.returncode == 0 and len(result.stdout.split("\n")) == 3  # two lines + final newline


def test_unusable_checkpoint_exits_2_with_advice(tmp_path, images):
    result = predict("--checkpoint", str(tmp_path / "none.pth"), str(images / "a.png"))
    assert result.returncode == 2 and "htr train" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_decoder_options_and_confidence_columns(checkpoint, images, tmp_path):
    lm = tmp_path / "lm.arpa"
    built = subprocess.run([sys.executable, "-m", "htr.lm", "build", "-o", str(lm), str(images / "notes.txt")],
                           cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    a = str(images / "a.png")
    decoders = (["--decoder", "greedy"], ["--decoder", "beam", "--lm", "none"], ["--lm", str(lm)])
    *decoded, missing, bad = predict_each(*(["--checkpoint", checkpoint, "--format", "tsv", *o, a] for o in decoders),
                                          ["--checkpoint", checkpoint, "--lm", str(tmp_path / "nope.arpa"), a],
                                          ["--checkpoint", checkpoint, "--beam-width", "0", a])  # fmt: skip
    for result in decoded:
        assert result.returncode == 0, result.stderr
        path, text, confidence = result.stdout.rstrip("\n").split("\t")
        assert path == a and 0 <= float(confidence) <= 1
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert bad.returncode == 2 and "--beam-width" in bad.stderr


class Payload:
    """A pickle that would create a file when unpickled without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bad_checkpoints_get_one_line_and_exit_2_and_never_run_code(checkpoint, images, tmp_path):
    import torch

    marker = tmp_path / "code_ran"
    data = Path(checkpoint).read_bytes()
    files = {
        "random.pth": random.Random(0).randbytes(4096),  # fixed bytes: the reason below is deterministic
        "truncated.pth": data[: len(data) // 2],
        "empty.pth": b"",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"model_config": {}, "alphabet": "ab", "x": Payload(marker)}, tmp_path / "malicious.pth")
    torch.save(torch.zeros(3), tmp_path / "foreign.pth")
    newer = torch.load(checkpoint, weights_only=True)
    newer["format_version"] = 99
    torch.save(newer, tmp_path / "newer.pth")
    expected = {
        "random.pth": "corrupt", "truncated.pth": "truncated", "empty.pth": "truncated",
        "malicious.pth": "never code", "foreign.pth": "not an htr model checkpoint", "newer.pth": "format 99",
    }  # fmt: skip
    results = predict_each(*(["--checkpoint", str(tmp_path / name), str(images / "a.png")] for name in expected))
    for (name, reason), result in zip(expected.items(), results):
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], (name, result.stderr)
    assert not marker.exists()  # the payload was refused, not executed


def test_every_page_of_a_pdf_and_of_a_tiff_is_read_and_written(checkpoint, images, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    lines = [render_line(text).convert("RGB") for text in ("one", "two", "three")]
    lines[0].save(scans / "scan.tif", save_all=True, append_images=lines[1:2])
    lines[0].save(scans / "letter.pdf", save_all=True, append_images=lines[1:])  # after the TIFF: it leaves settings
    (scans / "broken.pdf").write_bytes(b"%PDF-1.4 and nothing else")
    tsv, xml = predict_each(
        ["--checkpoint", checkpoint, "--format", "tsv", str(scans / "letter.pdf"), str(scans / "broken.pdf"),
         str(scans / "scan.tif"), str(images / "a.png")],
        ["--checkpoint", checkpoint, "--format", "page", "--output-dir", str(tmp_path / "xml"), str(scans)],
    )  # fmt: skip
    assert tsv.returncode == xml.returncode == 1  # the broken PDF, alone
    pdf, tif = scans / "letter.pdf", scans / "scan.tif"
    assert [line.split("\t")[0] for line in tsv.stdout.splitlines()] == [
        f"{pdf}#page=1", f"{pdf}#page=2", f"{pdf}#page=3", f"{tif}#page=1", f"{tif}#page=2", str(images / "a.png")
    ]  # fmt: skip
    assert [line.split(": ")[0] for line in tsv.stderr.strip().splitlines()] == [str(scans / "broken.pdf")]
    written = sorted(p.name for p in (tmp_path / "xml").iterdir())
    assert written == ["letter-page1.xml", "letter-page2.xml", "letter-page3.xml", "scan-page1.xml", "scan-page2.xml"]
    assert 'imageFilename="letter.pdf#page=2"' in (tmp_path / "xml" / "letter-page2.xml").read_text()


def test_random_bytes_never_escape_as_a_traceback(tmp_path):
    from htr.checkpoint import CheckpointError, read_checkpoint

    path = tmp_path / "noise.pth"
    for seed in range(100):  # some make torch's unpickler raise IndexError, UnicodeDecodeError, ...
        path.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(CheckpointError, match="cannot read checkpoint"):
            read_checkpoint(path)


def test_line_finder_option_chooses_how_pages_are_split(checkpoint, tmp_path):
    import torch

    from htr.pages.line_detector import LineDetector
    from htr.synth.render import compose_page

    page, _ = compose_page([render_line(t, paper=255) for t in ("one line", "and two", "and three")],
                           np.random.default_rng(0))  # fmt: skip
    page.save(tmp_path / "page.png")
    everywhere = LineDetector(width=4)
    torch.nn.init.constant_(everywhere.head.bias, 20.0)  # marks the whole page as one line's kernel
    torch.save({"config": everywhere.config, "model": everywhere.state_dict(), "threshold": 0.5,
                "geometry": {"input_side": 512, "end_share": 0.0}}, tmp_path / "finder.pt")  # fmt: skip
    runs = {}
    for finder in ("classical", str(tmp_path / "finder.pt")):
        result = predict("--checkpoint", checkpoint, "--format", "json", "--segment", "always", "--line-finder",
                         finder, str(tmp_path / "page.png"))  # fmt: skip
        assert result.returncode == 0, result.stderr
        runs[finder] = json.loads(result.stdout)["lines"]
    assert len(runs["classical"]) == 3
    (whole,) = runs[str(tmp_path / "finder.pt")]
    assert whole["box"][2] - whole["box"][0] >= 0.9 * page.width
    (tmp_path / "damaged.pt").write_bytes(b"not a finder")
    for name, reason in (("missing.pt", "no such file"), ("damaged.pt", "cannot read it")):
        result = predict("--checkpoint", checkpoint, "--line-finder", str(tmp_path / name), str(tmp_path / "page.png"))
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and reason in result.stderr, result.stderr


def test_ctrl_c_while_images_are_prepared_stops_without_preparing_the_rest(tmp_path):
    import argparse
    import threading
    import time
    from types import SimpleNamespace

    from htr.cli import read as predict_module

    files = []
    for i in range(40):
        render_line("word").save(tmp_path / f"{i:02d}.png")
        files.append(str(tmp_path / f"{i:02d}.png"))
    prepared, lock = [], threading.Lock()

    class InterruptedRecognizer:  # the user presses Ctrl-C while the first image is prepared
        network = SimpleNamespace(parallel_calls=2)

        def prepare_image(self, image, segment):
            with lock:
                prepared.append(image)
                first = len(prepared) == 1
            time.sleep(0.05)
            if first:
                raise KeyboardInterrupt
            return SimpleNamespace(lines=[])  # the other image started beside it may finish first: nothing to read

    args = argparse.Namespace(format="text", segment="auto", overwrite=False, output_dir=None, batch_size=16)
    with pytest.raises(KeyboardInterrupt):
        predict_module.read_chunk(InterruptedRecognizer(), predict_module.sources(files), args, set())
    assert len(prepared) <= 4  # those already started, not all 40
