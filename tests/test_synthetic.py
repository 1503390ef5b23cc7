"""IAM-OnDB loading, ink and font rendering, the per-epoch synthetic mixture and --init-from."""

import tarfile

import numpy as np
import pytest
import torch

from htr.alphabet import Alphabet
from htr.checkpoint import CheckpointError, load_weights_extending_classes, model_checkpoint
from htr.data import DatasetSourceError
from htr.model import CRNN, ModelConfig
from htr.reading.preprocess import ink_map, preprocess, to_grayscale
from htr.synth.iamondb import load_iamondb, parse_strokes, parse_transcription
from htr.synth.render import font_coverage, list_fonts, render_strokes, render_text
from htr.synth.synthetic import FontRenderer, InkRenderer, render_epoch
from htr.train import TrainConfig, train
from tests.conftest import stroke_xml, write_iamondb, zigzag

TINY = ModelConfig(num_classes=0, stem_channels=8, cnn=["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]],
                   rnn_hidden=32, rnn_layers=1)  # fmt: skip


def test_parsers():
    strokes = parse_strokes(stroke_xml([[(1, 2), (3, 4)], [(5, 6)]]))
    assert [s.tolist() for s in strokes] == [[[1, 2], [3, 4]], [[5, 6]]]
    assert parse_transcription("OCR:\n\nx y\n\nCSR:\n\nfirst line\nsecond\n\n") == ["first line", "second"]
    assert parse_transcription("no header") == []


def test_iamondb_loader_folder_and_archive(tmp_path):
    root = write_iamondb(tmp_path / "iamondb")
    lines = load_iamondb(root)
    assert [(line.id, line.text, line.writer) for line in lines] == [
        ("a01-000u-01", "A MOVE to stop Mr. Gaitskell", "10026"),  # space before '.' removed
        ("a01-000u-03", "third line", "10026"),  # line 2 has '#' (unreadable word); z01-000z skipped
    ]
    assert [len(s) for s in lines[0].strokes] == [13, 13] and lines[0].strokes[0].dtype == np.float32
    assert lines[0].strokes[1][0].tolist() == [500, 1000]

    archive = tmp_path / "iamondb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="iamondb")
    from_archive = load_iamondb(archive)
    assert [(a.id, a.text) for a in from_archive] == [(b.id, b.text) for b in lines]
    assert all(np.array_equal(x, y) for a, b in zip(from_archive, lines) for x, y in zip(a.strokes, b.strokes))
    assert len(load_iamondb(root, limit=1)) == 1

    with pytest.raises(DatasetSourceError, match="no such"):
        load_iamondb(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetSourceError, match="IAM-OnDB layout"):
        load_iamondb(tmp_path / "empty")


def ink_columns(image) -> np.ndarray:
    """Whether each column of a rendered line holds ink, after the same normalisation as training."""
    return (ink_map(to_grayscale(image)) > 0.5).any(axis=0)


def test_render_strokes_draws_the_strokes():
    words = [zigzag(0), zigzag(1200)]  # two "words" with a gap of 3 word-widths between them
    image = render_strokes([np.array(s, dtype=np.float32) for s in words], np.random.default_rng(0), height=80)
    assert image.mode == "L" and 60 <= image.height <= 200
    assert image.width > 3 * image.height  # the line's aspect ratio survives (1500 x 200 units)
    columns = ink_columns(image)
    inked = np.flatnonzero(columns)
    middle = columns[inked[0] + len(columns) // 3 : inked[-1] - len(columns) // 3]
    assert inked.size > 0.3 * image.width and middle.size > 0 and not middle.any()  # ink, and the gap is paper
    again = render_strokes([np.array(s, dtype=np.float32) for s in words], np.random.default_rng(0), height=80)
    assert np.array_equal(np.asarray(image), np.asarray(again))  # a seed reproduces the image
    assert preprocess(image, 64).shape[-2] == 64


def test_render_text_and_font_coverage():
    fonts = list_fonts()
    assert len(fonts) >= 20 and all(f.with_name(f.stem + ".LICENSE.txt").exists() for f in fonts)
    covered = font_coverage(str(fonts[0]), "ab\u4e00 ")
    assert {"a", "b", " "} <= covered and "\u4e00" not in covered  # a CJK glyph is not in a Latin subset
    short = render_text("ab", fonts[0], np.random.default_rng(1))
    long = render_text("ab " * 8, fonts[0], np.random.default_rng(1))
    assert ink_columns(long).sum() > 4 * ink_columns(short).sum() > 0


def test_font_renderer_skips_texts_no_font_draws():
    renderer = FontRenderer(["hello world", "\u4e00\u4e8c", "  "], span_p=0.0)
    assert renderer.texts == ["hello world"]
    image, text = renderer(0, np.random.default_rng(0))
    assert text == "hello world" and ink_columns(image).any()
    with pytest.raises(ValueError, match="no text"):
        FontRenderer(["\u4e00"])


def test_printed_lines_are_set_in_printing_fonts_and_in_capitals_when_asked():
    from htr.synth.render import printed_fonts

    fonts = printed_fonts()
    assert len(fonts) >= 6 and any("Mono" in f.name for f in fonts)  # serif, sans and a typewriter face
    texts = ["The Camp, Sunningdale.", "Royal Gardens, Kew"]
    capitals = FontRenderer(texts, fonts, span_p=0.0, printed=True, capitals_p=1.0)
    lower = FontRenderer(texts, fonts, span_p=0.0, printed=True)
    drawn = [capitals(k, np.random.default_rng(k))[1] for k in range(2)]
    assert drawn == [t.upper() for t in texts]
    image, text = lower(0, np.random.default_rng(0))
    assert text == texts[0] and ink_columns(image).any()


def test_render_epoch_is_reproducible_and_changes_per_epoch(tmp_path):
    ink = InkRenderer(load_iamondb(write_iamondb(tmp_path / "iamondb")))
    fonts = FontRenderer(["one two three", "four five"])
    alphabet = Alphabet.from_texts(ink.texts + fonts.texts)
    parts = [(ink, 3), (fonts, 3)]
    args = (alphabet, 64, lambda width: width // 4)
    first = render_epoch(parts, *args, seed=0, epoch=0, workers=0, progress=False)
    with_workers = render_epoch(parts, *args, seed=0, epoch=0, workers=2, progress=False)
    other_epoch = render_epoch(parts, *args, seed=0, epoch=1, workers=0, progress=False)
    assert len(first) == 6 and first.texts[:3] != [] and set(first.texts[:3]) <= set(ink.texts)
    assert first.texts == with_workers.texts
    assert all(torch.equal(a, b) for a, b in zip(first.images, with_workers.images))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first.images, other_epoch.images))


def test_extending_classes_keeps_trained_rows():
    old = CRNN(ModelConfig(**{**TINY.to_dict(), "num_classes": 5}))
    new = CRNN(ModelConfig(**{**TINY.to_dict(), "num_classes": 7}))
    fresh_rows = new.head.weight[5:].detach().clone()
    assert load_weights_extending_classes(new, old.state_dict()) == 2
    assert torch.equal(new.head.weight[:5], old.head.weight) and torch.equal(new.head.weight[5:], fresh_rows)
    assert torch.equal(new.shortcut.bias[:5], old.shortcut.bias)
    assert torch.equal(new.rnn.weight_ih_l0, old.rnn.weight_ih_l0)
    wider = CRNN(ModelConfig(**{**TINY.to_dict(), "num_classes": 7, "rnn_hidden": 48}))
    with pytest.raises(CheckpointError):
        load_weights_extending_classes(wider, old.state_dict())
    uneven = {**old.state_dict(), "shortcut.bias": torch.zeros(6)}  # one output grown by 1, the others by 2
    with pytest.raises(CheckpointError, match="shortcut.bias"):
        load_weights_extending_classes(new, uneven)


def test_init_from_with_font_mixture(parquet_dataset, tmp_path):
    """Fine-tune a checkpoint whose alphabet lacks 'Q' on real lines + font lines with 'Q' in them."""
    start = CRNN(ModelConfig(**{**TINY.to_dict(), "num_classes": 4}))
    torch.save(model_checkpoint(start, Alphabet("the")), tmp_path / "start.pth")
    text_file = tmp_path / "text.txt"
    text_file.write_text("Quiet the cat\nthe Quay\n")
    config = TrainConfig(dataset=str(parquet_dataset), output_dir=str(tmp_path / "run"), epochs=1, batch_size=8,
                         warmup_steps=1, init_from=str(tmp_path / "start.pth"), font_text=str(text_file),
                         font_ratio=0.5, render_workers=0, max_train_lines=16, max_val_lines=4)  # fmt: skip
    result = train(config, progress=False)
    state = torch.load(result["state_path"], weights_only=True)
    assert state["alphabet"].startswith("the") and "Q" in state["alphabet"]
    assert state["step"] == 3  # (16 real + 8 font lines) / 8
    trained_rows = state["model"]["head.weight"][:4]
    assert not torch.equal(trained_rows, start.head.weight)  # it trained from the start weights...
    assert torch.allclose(trained_rows, start.head.weight, atol=0.05)  # ...a few small steps away
