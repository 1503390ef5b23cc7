import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from htr.reading.preprocess import MAX_ASPECT, pad_batch, preprocess, to_grayscale
from tests.conftest import render_line

HEIGHT = 64


def test_fixed_height_and_aspect_ratio_kept():
    image = render_line("aspect ratio")
    out = preprocess(image, HEIGHT)
    assert out.shape[:2] == (1, HEIGHT)
    # Cropping to the ink removes at most the margins, so the aspect ratio stays close to the original's.
    assert out.shape[2] / HEIGHT == pytest.approx(image.width / image.height, rel=0.35)
    wider = preprocess(image.resize((image.width * 2, image.height)), HEIGHT)
    assert wider.shape[2] == pytest.approx(2 * out.shape[2], rel=0.05)  # no squashing to a fixed width


def test_paper_around_a_line_does_not_shrink_its_writing():
    """A line on a larger sheet (a user's loose crop, a photo) reaches the network as its tight crop does, the
    crop IAM's training lines have."""
    line = render_line("paper all around", size=40, ink=100, paper=215)
    tight = line.crop(line.point(lambda v: 255 if v < 160 else 0).getbbox())  # cropped to its ink, as IAM's are
    sheet = Image.new("L", (tight.width + 160, tight.height + 90), 215)
    sheet.paste(tight, (70, 40))
    cropped, loose = preprocess(tight, HEIGHT), preprocess(sheet, HEIGHT)
    assert abs(loose.shape[-1] - cropped.shape[-1]) < 0.06 * cropped.shape[-1]  # a pixel of room; 8% was 16% off
    assert loose.mean().item() == pytest.approx(cropped.mean().item(), rel=0.1)  # the writing fills the height as much


def test_ink_is_one_and_paper_zero():
    out = preprocess(render_line("ink"), HEIGHT)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out.mean() < 0.5  # mostly paper


def test_light_on_dark_is_inverted():
    image = render_line("inverted text")
    assert torch.allclose(preprocess(ImageOps.invert(image), HEIGHT), preprocess(image, HEIGHT), atol=1e-5)


def test_transparent_background_is_composited_on_white():
    image = render_line("alpha")
    rgba = Image.new("RGBA", image.size, (0, 0, 0, 0))  # fully transparent *black* paper
    rgba.putalpha(ImageOps.invert(image))  # ink opaque black
    assert torch.allclose(preprocess(rgba, HEIGHT), preprocess(image, HEIGHT), atol=0.02)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    image = render_line("sixteen")
    wide = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    assert np.array_equal(to_grayscale(wide), np.asarray(image))


def test_very_wide_lines_are_capped():
    out = preprocess(Image.new("L", (20000, 40), 255), HEIGHT)
    assert out.shape[-1] == MAX_ASPECT * HEIGHT


def test_pad_batch_pads_right_with_paper():
    a, b = preprocess(render_line("short"), HEIGHT), preprocess(render_line("a longer line"), HEIGHT)
    batch, widths = pad_batch([a, b])
    assert batch.shape == (2, 1, HEIGHT, max(a.shape[-1], b.shape[-1]))
    assert widths.tolist() == [a.shape[-1], b.shape[-1]]
    assert torch.equal(batch[0, :, :, : a.shape[-1]], a)
    assert batch[0, :, :, a.shape[-1] :].abs().sum() == 0


@pytest.mark.parametrize("seed", range(6))
def test_a_photographed_line_preprocesses_like_its_scan(seed):
    """A shadow across the line, faded ink, warm paper, tilt, blur and JPEG (`photo_finish`): the model's input
    keeps the scan's polarity, size and ink columns."""
    import numpy as np

    from htr.reading.preprocess import ink_map, preprocess_array
    from htr.synth.render import photo_finish

    line = render_line("the quick brown fox jumps", size=40, ink=100, paper=215)  # a grey scan, like IAM
    line = line.crop(line.point(lambda v: 255 if v < 160 else 0).getbbox())  # cropped to its ink, like IAM's lines
    photo = photo_finish(line, np.random.default_rng(seed))
    clean, shot = preprocess_array(line, 64)[0], preprocess_array(photo, 64)[0]
    assert shot.mean() < 0.3  # mostly paper: not inverted by the shadow
    assert abs(shot.shape[1] - clean.shape[1]) < 0.25 * clean.shape[1]

    def inked_columns(line: np.ndarray) -> float:
        return float((line > 0.5).any(axis=0).mean())

    assert abs(inked_columns(shot) - inked_columns(clean)) < 0.15  # the same writing, none lost to the shadow
    assert abs(shot.mean() - clean.mean()) < 0.5 * clean.mean()
    shadowed = np.asarray(photo.convert("L"), dtype=np.float32)
    assert (ink_map(shadowed) > 0.5).mean() < 0.2  # the dark side of the paper is not taken for ink
