"""predict.py and preprocessing on bad, hostile and awkward images: every input answered, none crashes."""

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from htr.alphabet import Alphabet
from htr.checkpoint import atomic_save, model_checkpoint
from htr.inference import Recognizer
from htr.model import CRNN, ModelConfig
from htr.reading.preprocess import MAX_ASPECT, MIN_WIDTH, WORK_PIXELS, load_image, preprocess, to_grayscale
from tests.conftest import render_line

ROOT = Path(__file__).resolve().parents[1]
HEIGHT = 32


def predict(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "predict.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, height=HEIGHT, stem_channels=8,
                         cnn=["M", [1, 8], "Mh", [1, 8]], rnn_hidden=8, rnn_layers=1)  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    atomic_save(model_checkpoint(CRNN(config), alphabet), path)
    return str(path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` 8-bit grey pixels, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def drop_file_read_privilege() -> tuple[str, ...]:
    """A command prefix under which mode-000 files are unreadable, even for root (CI runs as root)."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    caps = "-dac_override,-dac_read_search"
    return ("setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--")


def test_each_bad_input_gets_one_stderr_line_and_the_rest_are_read(checkpoint, tmp_path):
    good = tmp_path / "good.png"
    render_line("fine").save(good)
    bad = {
        "empty.png": b"",
        "text.png": b"this is a text file, not an image\n",
        "truncated.png": _png(render_line("cut"))[:200],
        "bomb.png": png_claiming(40000, 40000),
        "unreadable.png": _png(render_line("secret")),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    os.chmod(tmp_path / "unreadable.png", 0)
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "readme.txt").write_text("nothing to read")
    inputs = [str(good)] + [str(tmp_path / n) for n in bad] + [str(tmp_path / "missing.png"),
                                                                 str(tmp_path / "no_images"), str(good)]  # fmt: skip
    result = predict("--checkpoint", checkpoint, "--format", "tsv", *inputs, prefix=drop_file_read_privilege())
    assert result.returncode == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [str(good), str(good)]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(inputs) - 2, result.stderr
    reasons = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in errors}
    assert set(reasons) == set(inputs[1:-1])
    assert "too large" in reasons[str(tmp_path / "bomb.png")]
    assert "truncated" in reasons[str(tmp_path / "truncated.png")]
    assert "not an image" in reasons[str(tmp_path / "text.png")]
    assert "permission denied" in reasons[str(tmp_path / "unreadable.png")]
    assert reasons[str(tmp_path / "empty.png")] == "cannot read image: empty file"
    assert reasons[str(tmp_path / "missing.png")] == "no such file or folder"
    assert reasons[str(tmp_path / "no_images")] == "folder holds no images"
    assert "Traceback" not in result.stderr


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_decompression_bomb_is_refused_from_its_header():
    with pytest.raises(ValueError, match="too large"):
        load_image(png_claiming(40000, 40000))
    with pytest.raises(ValueError, match="too large"):
        load_image(png_claiming(9000, 9000))  # 81 megapixels: under Pillow's own error limit, over ours


def encoded(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return load_image(buffer.getvalue())


def awkward_variants(plain: Image.Image) -> dict[str, Image.Image]:
    """The same line stored in ways users' files come in."""
    ink = ImageOps.invert(plain)
    transparent = Image.merge("RGBA", [Image.new("L", plain.size, 0)] * 3 + [ink])  # black ink, transparent paper
    rotated = plain.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, plain.size[::-1], dtype=np.uint8))
    sixteen = Image.fromarray(np.asarray(plain).astype(np.uint16) * 257)
    integers = plain.convert("I")  # 32-bit integers with 8-bit values (some TIFFs)
    return {
        "rgba on transparent": encoded(transparent, "PNG"),
        "palette": encoded(plain.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "cmyk jpeg": encoded(plain.convert("CMYK"), "JPEG", quality=95),
        "16-bit png": encoded(sixteen, "PNG"),
        "32-bit integer tiff": encoded(integers, "TIFF"),
        "exif-rotated jpeg": encoded(rotated.convert("RGB"), "JPEG", quality=95, exif=exif.tobytes()),
        "white on black": encoded(ink, "PNG"),
        "multi-frame gif": encoded(plain, "GIF", save_all=True, append_images=[noise]),
        "multi-page tiff": encoded(plain, "TIFF", save_all=True, append_images=[noise]),
    }


def test_awkward_images_preprocess_like_the_plain_version():
    plain = render_line("awkward files", size=28)
    expected = preprocess(plain, HEIGHT)
    for name, variant in awkward_variants(plain).items():
        line = preprocess(variant, HEIGHT)
        assert line.shape == expected.shape, name
        assert (line - expected).abs().mean() < 0.03, name


def test_degenerate_sizes_are_read_with_bounded_width(checkpoint):
    recognizer = Recognizer(checkpoint, "cpu")
    cases = {
        "1x1": Image.new("L", (1, 1), 0),
        "all white": Image.new("RGB", (400, 60), "white"),
        "very wide": Image.fromarray(np.tile(np.asarray(render_line("wide ")), (1, 400))[:40, :20000]),
        "very tall": Image.fromarray(np.tile(np.asarray(render_line("tall")), (600, 1))[:20000, :40]),
    }
    lines = {name: recognizer.prepare(image) for name, image in cases.items()}
    for name, line in lines.items():
        assert line.shape[:2] == (1, HEIGHT) and MIN_WIDTH <= line.shape[-1] <= MAX_ASPECT * HEIGHT, name
        for part in recognizer.prepare_lines(cases[name], "auto")[0]:  # with page segmentation too
            assert part.shape[:2] == (1, HEIGHT) and MIN_WIDTH <= part.shape[-1] <= MAX_ASPECT * HEIGHT, name
    readings = recognizer.read_prepared(list(lines.values()))
    assert readings[1].text == "" and readings[1].confidence == 1.0  # blank: empty text, not an error
    assert all(isinstance(r.text, str) for r in readings)


def test_huge_images_are_shrunk_before_the_float_work():
    big = Image.new("L", (6000, 4000), 255)  # 24 megapixels
    assert to_grayscale(big).size <= WORK_PIXELS


def test_predict_reads_awkward_files_and_a_blank_one(checkpoint, tmp_path):
    plain = render_line("awkward")
    plain.save(tmp_path / "plain.png")
    transparent = Image.merge("RGBA", [Image.new("L", plain.size, 0)] * 3 + [ImageOps.invert(plain)])
    transparent.save(tmp_path / "rgba.png")
    plain.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.new("L", (300, 50), 255).save(tmp_path / "blank.png")
    names = ["plain.png", "rgba.png", "cmyk.jpg", "blank.png"]
    result = predict("--checkpoint", checkpoint, "--format", "tsv", *[str(tmp_path / n) for n in names])
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [Path(r[0]).name for r in rows] == names
    assert rows[0][1] == rows[1][1] and rows[3][1] == ""  # transparent reads as the plain file; blank is empty


MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"]


@st.composite
def images(draw) -> Image.Image:
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "constant", "stripes"]))
    rng = np.random.default_rng(seed)
    values = {
        "noise": rng.integers(0, 256, (height, width)),
        "constant": np.full((height, width), rng.integers(0, 256)),
        "stripes": (np.arange(width)[None, :] // max(1, width // 7) % 2 * 255).repeat(height, 0),
    }[kind].astype(np.uint8)
    image = Image.fromarray(values)
    if mode in ("I;16", "I"):
        return Image.fromarray(values.astype(np.uint16) * 257) if mode == "I;16" else image.convert("I")
    return image.convert(mode)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=images())
def test_fuzz_any_image_preprocesses_and_reads(image, checkpoint):
    line = preprocess(image, HEIGHT)
    assert line.shape[:2] == (1, HEIGHT) and MIN_WIDTH <= line.shape[-1] <= MAX_ASPECT * HEIGHT
    assert torch.isfinite(line).all() and line.min() >= 0 and line.max() <= 1
    recognizer = _recognizer(checkpoint)
    lines, boxes = recognizer.prepare_lines(image, "auto")  # what predict.py does: pages split into lines
    assert lines and (boxes is None or len(boxes) == len(lines))
    for line in lines:
        assert line.shape[:2] == (1, HEIGHT) and MIN_WIDTH <= line.shape[-1] <= MAX_ASPECT * HEIGHT
    for reading in recognizer.read_prepared(lines):
        assert isinstance(reading.text, str) and 0 <= reading.confidence <= 1


_RECOGNIZERS: dict[str, Recognizer] = {}


def _recognizer(checkpoint: str) -> Recognizer:
    if checkpoint not in _RECOGNIZERS:
        _RECOGNIZERS[checkpoint] = Recognizer(checkpoint, "cpu", precision="fp32")
    return _RECOGNIZERS[checkpoint]
