"""The README's first picture (docs/reading.png, from benchmarks/front_picture.py) is the shipped model's reading."""

from pathlib import Path

from benchmarks.front_picture import CHECKPOINT, example_page, file_sha256, read_page, recorded

PICTURE = Path(__file__).resolve().parents[1] / "docs" / "reading.png"
REDRAW = "redraw it: python benchmarks/front_picture.py"


def test_the_picture_was_drawn_with_the_shipped_model():
    assert recorded(PICTURE)["checkpoint_sha256"] == file_sha256(CHECKPOINT), f"a new model since; {REDRAW}"


def test_the_picture_shows_what_the_shipped_model_reads():
    lines = read_page(example_page())
    assert [text for _, text, _ in lines] == recorded(PICTURE)["lines"], REDRAW
    assert len(lines) == 4  # the page was split into its four example lines
