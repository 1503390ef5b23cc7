"""Line segmentation on pages composed from generated lines: straight, with random gaps and offsets, and skewed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.pages.segment import estimate_skew, find_bands, looks_like_one_line, segment_lines
from htr.reading.preprocess import ink_map, to_grayscale
from htr.synth.render import compose_page
from tests.conftest import random_texts, render_line

ROOT = Path(__file__).resolve().parents[1]


def make_page(count: int, seed: int, gap: tuple[int, int] = (4, 40)):
    rng = np.random.default_rng(seed)
    texts = random_texts(count, seed)
    lines = [render_line(t, size=int(rng.integers(22, 32)), paper=255) for t in texts]
    return compose_page(lines, rng, gap=gap)


def overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return max(0, width) * max(0, height) / smaller


@pytest.mark.parametrize("seed", range(6))
def test_composed_pages_give_every_line_in_reading_order(seed):
    page, truth = make_page(count=3 + seed % 4, seed=seed)
    lines = segment_lines(ink_map(to_grayscale(page)))
    assert len(lines) == len(truth)
    for line, box in zip(lines, truth):
        assert overlap(line.box, box) > 0.6, (line.box, box)


def test_touching_lines_are_cut_at_the_valley():
    page, truth = make_page(count=4, seed=11, gap=(-10, -8))  # boxes overlap: only a few blank rows between lines
    lines = segment_lines(ink_map(to_grayscale(page)))
    assert len(lines) == 4
    centres = [(b[1] + b[3]) / 2 for b in truth]
    assert all(line.box[1] <= c <= line.box[3] for line, c in zip(lines, centres))


@pytest.mark.parametrize("angle", [-4.0, 2.5])
def test_skewed_page_is_straightened_and_boxes_map_back(angle):
    page, truth = make_page(count=5, seed=3)
    skewed = page.rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=255)
    ink = ink_map(to_grayscale(skewed))
    assert abs(estimate_skew(ink) + angle) <= 0.5
    lines = segment_lines(ink)
    assert len(lines) == 5
    theta = np.deg2rad(angle)  # where each true line centre lands on the skewed page
    cx, cy = page.width / 2, page.height / 2
    for line, box in zip(lines, truth):
        x, y = (box[0] + box[2]) / 2 - cx, (box[1] + box[3]) / 2 - cy
        sx = x * np.cos(theta) + y * np.sin(theta) + skewed.width / 2
        sy = -x * np.sin(theta) + y * np.cos(theta) + skewed.height / 2
        assert line.box[0] <= sx <= line.box[2] and line.box[1] <= sy <= line.box[3], (line.box, sx, sy)


def test_a_single_line_is_not_split():
    line = render_line("just one line, with descenders: gjpqy", size=30, paper=255)
    ink = ink_map(to_grayscale(line))
    assert looks_like_one_line(ink) and len(find_bands(ink)) == 1
    assert len(segment_lines(ink)) == 1


def test_predict_reads_a_page_as_lines_with_boxes(tmp_path):
    from htr.alphabet import Alphabet
    from htr.checkpoint import atomic_save, model_checkpoint
    from htr.model import CRNN, ModelConfig

    alphabet = Alphabet("abcdefghijklmnopqrstuvwxyz ")
    config = ModelConfig(num_classes=alphabet.num_classes, stem_channels=8, cnn=["M", [1, 8], "Mh", [1, 8]],
                         rnn_hidden=8, rnn_layers=1)  # fmt: skip
    atomic_save(model_checkpoint(CRNN(config), alphabet), tmp_path / "model.pth")
    page, truth = make_page(count=3, seed=4)
    page.save(tmp_path / "page.png")
    render_line("one line").save(tmp_path / "line.png")
    run = [sys.executable, "predict.py", "--checkpoint", str(tmp_path / "model.pth"), "--format", "json"]
    result = subprocess.run([*run, str(tmp_path / "page.png"), str(tmp_path / "line.png")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    page_result, line_result = map(json.loads, result.stdout.splitlines())
    assert len(page_result["lines"]) == 3 and "lines" not in line_result
    assert page_result["text"] == "\n".join(line["text"] for line in page_result["lines"])
    assert all(overlap(line["box"], box) > 0.6 for line, box in zip(page_result["lines"], truth))
    never = subprocess.run([*run, "--segment", "never", str(tmp_path / "page.png")], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert never.returncode == 0 and "lines" not in json.loads(never.stdout)


def test_sparse_descenders_below_a_blank_row_stay_with_their_line():
    body = np.asarray(render_line("symbolises the bitterness against us", size=30, paper=255))
    height, width = body.shape
    image = np.full((height + 24, width), 255, np.uint8)
    image[:height] = body
    for x in range(20, width - 20, 90):  # loops of g, y, p: thin strokes below a gap, spread along the line
        image[height + 3 : height + 22, x : x + 3] = 0
    ink = ink_map(image)
    assert len(find_bands(ink)) == 1 and len(segment_lines(ink)) == 1


def test_pieces_found_side_by_side_are_read_as_one_line(monkeypatch):
    """A short line the finder cut into pieces on one row (as it did with iam-dev's "gin punch.") is read whole;
    lines one above another are still split."""
    import htr.inference
    from htr.inference import Recognizer
    from htr.pages.segment import Line, side_by_side

    assert side_by_side([(0, 10, 5, 20), (8, 14, 12, 24)]) and not side_by_side([(0, 0, 9, 10), (0, 12, 9, 20)])
    assert not side_by_side([])
    image = render_line("gin punch")
    found = {"boxes": [(4, 8, 30, 20), (40, 9, 70, 22), (80, 12, 90, 18)]}

    def pieces(gray, scale, ink, finder):
        return [Line(ink[top:bottom, left:right], (left, top, right, bottom))
                for left, top, right, bottom in found["boxes"]]  # fmt: skip

    monkeypatch.setattr(htr.inference, "segment_page", pieces)
    monkeypatch.setattr(htr.inference, "looks_like_one_line", lambda ink: False)
    recognizer = Recognizer(Path(__file__).resolve().parents[1] / "handwriting_recognizer_best.pth", decoder="greedy")
    assert recognizer.prepare_image(image).boxes is None  # one line, the whole image
    assert len(recognizer.prepare_image(image, segment="always").boxes) == 3
    found["boxes"] = [(4, 2, 90, 14), (4, 16, 90, 28)]
    assert len(recognizer.prepare_image(image).boxes) == 2


def test_a_letter_with_a_printed_letterhead_yields_every_line_in_a_letters_order():
    """A letter composed here (htr.synth.render.compose_letter): a printed letterhead and a printed line under it,
    a handwritten date at the right, the body, the closing and the signature towards the right. The shipped line
    finder gives each of them its own line (covering 80% of its ink), in the letter's reading order."""
    from htr.pages.line_finder import LineFinder
    from htr.pages.segment import page_lines
    from htr.synth.render import compose_letter, list_fonts, printed_fonts, render_text

    rng = np.random.default_rng(0)
    hand, printed = list_fonts()[0], printed_fonts()
    letterhead = [render_text("THE CAMP, SUNNINGDALE.", printed[0], rng, height=70, printed=True),
                  render_text("Telegraphic Address: Kew", printed[2], rng, height=40, printed=True)]  # fmt: skip
    body = [render_text(t, hand, rng, height=70) for t in ["My dear Dyer", "I send you the proofs of the paper",
                                                            "which I hope you will find in order"]]  # fmt: skip
    closing = [render_text("Ever yours", hand, rng, height=60), render_text("J. D. Hooker", hand, rng, height=70)]
    page, truth = compose_letter(letterhead, [render_text("May 12. 1898", hand, rng, height=60)], body, closing, rng)
    found = [line.box for line in page_lines(page, LineFinder(ROOT / "line_finder.onnx"))]

    def covered(ink: tuple, box: tuple) -> float:
        width = max(0, min(ink[2], box[2]) - max(ink[0], box[0]))
        height = max(0, min(ink[3], box[3]) - max(ink[1], box[1]))
        return width * height / ((ink[2] - ink[0]) * (ink[3] - ink[1]))

    owners = [max(range(len(found)), key=lambda k: covered(ink, found[k])) for ink in truth]
    assert [round(covered(ink, found[k]), 2) >= 0.8 for ink, k in zip(truth, owners)] == [True] * len(truth)
    assert owners == sorted(set(owners))  # one found line each, in the letter's order (letterhead first)


def test_a_descender_reaching_into_the_strip_below_is_read_with_its_own_line():
    """The classical segmenter cuts neighbouring lines' strips between them; a long descender of the upper line
    crossing that cut stays with the upper line and is cleared from the lower one (htr.pages.line_ink)."""
    texts = ("a quick brown fox jumps over the lazy dog again", "while seven mice run under the old barn door now")
    lines = [render_line(text, size=26, paper=255) for text in texts]
    page, (upper_box, lower_box) = compose_page(lines, np.random.default_rng(0), gap=(8, 8), indent=(0, 0))
    gray = np.array(page)
    reach = lower_box[1] + (lower_box[3] - lower_box[1]) // 4  # into the top of the line below, short of its core
    clear = [x for x in range(60, 580) if (gray[lower_box[1] - 8 : reach + 4, x - 2 : x + 6] > 128).all()]
    x = clear[len(clear) // 2]  # a column with no text of either line where the stroke crosses between them
    gray[(upper_box[1] + upper_box[3]) // 2 : reach, x : x + 3] = 20  # from the upper line's core downwards
    upper, lower = segment_lines(ink_map(gray))
    assert lower.box[1] < reach  # the stroke's end lies in the lower line's strip
    stroke_in = lambda line: line.ink[: reach - line.box[1], x - line.box[0] : x - line.box[0] + 3]  # noqa: E731
    assert (stroke_in(lower) == 0).all()
    assert (stroke_in(upper) > 0).any()
