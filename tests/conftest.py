"""Shared fixtures: small generated line images and datasets (no real handwriting needed)."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

WORDS = "the a of and to in is it on was he for as with his at by be this had not are but from".split()  # noqa: SIM905
TINY_MODEL = [  # command-line flags of a model small enough to train in seconds
    "--model-stem-channels", "8",
    "--model-cnn", '["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]]',
    "--model-rnn-hidden", "32",
    "--model-rnn-layers", "1",
]  # fmt: skip


def render_line(text: str, size: int = 24, ink: int = 20, paper: int = 250) -> Image.Image:
    """A grayscale image of ``text`` in Pillow's built-in font, with a small margin."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (right - left + 16, bottom - top + 12), paper)
    ImageDraw.Draw(image).text((8 - left, 6 - top), text, font=font, fill=ink)
    return image


def side_by_side(call: Callable, arguments: Iterable) -> list:
    """``call`` on each of ``arguments`` in threads, one per core (each call a process of its own: a command the
    test runs), results in order."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(call, arguments))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) for _ in range(n)]


def write_parquet_dataset(folder: Path, n_train: int = 48, n_val: int = 12, n_test: int = 8) -> Path:
    """train/validation/test parquet files in the Hugging Face layout (image struct + text)."""
    import datasets

    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("validation", n_val, 1), ("test", n_test, 2)):
        texts = random_texts(n, seed)
        table = {"image": [{"bytes": png_bytes(render_line(t)), "path": None} for t in texts], "text": texts}
        features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
        datasets.Dataset.from_dict(table, features=features).to_parquet(str(folder / f"{split}.parquet"))
    return folder


@pytest.fixture(scope="session")
def parquet_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_parquet_dataset(tmp_path_factory.mktemp("parquet"))


def stroke_xml(strokes: list[list[tuple[int, int]]]) -> str:
    body = "".join(
        "<Stroke>" + "".join(f'<Point x="{x}" y="{y}" time="0.0"/>' for x, y in s) + "</Stroke>" for s in strokes
    )
    return f'<?xml version="1.0"?><WhiteboardCaptureSession><StrokeSet>{body}</StrokeSet></WhiteboardCaptureSession>'


def zigzag(x0: int, width: int = 300, height: int = 200) -> list[tuple[int, int]]:
    """A pen stroke going up and down across ``width`` units from ``x0``, like a written word."""
    return [(x0 + i * width // 12, 1000 + (height if i % 2 else 0)) for i in range(13)]


def write_iamondb(root):
    """Two forms in the official layout: a01-000u (2 lines; a '#' line and 'Mr .'), and z01-000z with
    more stroke files than transcribed lines (to be skipped)."""
    (root / "lineStrokes/a01/a01-000").mkdir(parents=True)
    (root / "lineStrokes/z01/z01-000").mkdir(parents=True)
    (root / "ascii/a01/a01-000").mkdir(parents=True)
    (root / "ascii/z01/z01-000").mkdir(parents=True)
    ascii_text = (
        "OCR:\n\nA MOVE to stop Mr . Gaitskell from\n\nCSR:\n\nA MOVE to stop Mr . Gaitskell\nan # word\nthird line\n"
    )
    (root / "ascii/a01/a01-000/a01-000u.txt").write_text(ascii_text)
    (root / "ascii/z01/z01-000/z01-000z.txt").write_text("CSR:\n\nonly one line\n")
    (root / "lineStrokes/a01/a01-000/a01-000u-01.xml").write_text(stroke_xml([zigzag(0), zigzag(500)]))
    (root / "lineStrokes/a01/a01-000/a01-000u-02.xml").write_text(stroke_xml([zigzag(0)]))
    (root / "lineStrokes/a01/a01-000/a01-000u-03.xml").write_text(stroke_xml([zigzag(0), [(900, 1100)]]))
    for n in (1, 2):
        (root / f"lineStrokes/z01/z01-000/z01-000z-0{n}.xml").write_text(stroke_xml([zigzag(0)]))
    (root / "writers.tsv").write_text("a01-000u\t10026\nz01-000z\t10091\n")
    return root


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (``item.rep_call``), so fixtures can act on failures (screenshots)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
