import torch

from htr.reading.preprocess import pad_batch, preprocess
from htr.synth.augment import AugmentConfig, augment_batch
from tests.conftest import render_line


def test_augmentation_keeps_shapes_range_and_padding():
    torch.manual_seed(0)
    images, widths = pad_batch([preprocess(render_line(t), 64) for t in ["short", "a much longer line", "mid"]])
    config = AugmentConfig(affine_p=1, width_p=1, elastic_p=1, morph_p=1, blur_p=1, noise_p=1, color_p=1)
    out, new_widths = augment_batch(images, widths, config)
    assert out.shape[:3] == (3, 1, 64) and out.shape[-1] == int(new_widths.max())
    assert out.min() >= 0 and out.max() <= 1
    for image, width in zip(out, new_widths):
        assert image[..., width:].abs().sum() == 0  # padding stays paper
        assert image[..., :width].sum() > 0  # the line survives
    ratio = new_widths.float() / widths.float()
    assert ((ratio > 0.75) & (ratio < 1.25)).all()


def test_zero_probabilities_change_nothing():
    images, widths = pad_batch([preprocess(render_line(t), 64) for t in ["one", "two lines"]])
    off = AugmentConfig(affine_p=0, width_p=0, elastic_p=0, morph_p=0, blur_p=0, noise_p=0, color_p=0)
    out, new_widths = augment_batch(images, widths, off)
    assert torch.equal(new_widths, widths)
    assert torch.allclose(out, images, atol=1e-4)
