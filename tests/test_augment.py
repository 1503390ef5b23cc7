import dataclasses

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


def test_letter_damage_each_does_what_it_says():
    """Show-through and stains lie faintly under the writing, neighbouring lines reach in only from the top or the
    bottom, faded ink is lighter and blotted ink heavier; the padding stays paper."""
    images, widths = pad_batch([preprocess(render_line(t), 64) for t in ["My dear Dyer", "Kew & the rest", "Yours"]])
    off = AugmentConfig(affine_p=0, width_p=0, elastic_p=0, morph_p=0, blur_p=0, noise_p=0, color_p=0)
    paper = images < 0.05

    def damaged(**settings: float) -> torch.Tensor:
        torch.manual_seed(3)
        out, new_widths = augment_batch(images, widths, dataclasses.replace(off, **settings))
        assert torch.equal(new_widths, widths) and out.min() >= 0 and out.max() <= 1
        for image, width in zip(out, widths):
            assert image[..., width:].abs().sum() == 0
        return out

    shown = damaged(show_through_p=1, show_through=0.3)
    assert (shown > images).any() and shown[paper].max() <= 0.3 + 1e-5  # faint, never full ink
    assert (shown >= images - 1e-4).all()  # under the writing: nothing of it is lost
    stained = damaged(stain_p=1, stain=0.2)
    assert (stained[paper] > 0.01).float().mean() > 0.05 and stained[paper].max() <= 0.2 + 1e-5
    reach = 0.35
    neighbours = damaged(neighbour_p=1, neighbour_reach=reach)
    added = ((neighbours - images) > 1e-3).sum(dim=(0, 1, 3))  # pixels made darker, per row
    middle = slice(round(reach * 64) + 1, 64 - round(reach * 64) - 1)
    assert added.sum() > 0 and added[middle].sum() == 0  # only within `reach` of the top or the bottom
    assert damaged(fade_p=1, fade=0.6).sum() < 0.95 * images.sum()
    assert damaged(blot_p=1).sum() > 1.05 * images.sum()
