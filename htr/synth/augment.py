"""Training-time augmentation as batched tensor operations on the training device.

Works on padded batches from `htr.reading.preprocess.pad_batch` (ink 1.0, paper 0.0, shape (B, 1, H, W)) with the
true widths; every sample draws its own parameters. Geometry (affine, elastic distortion, width rescale) is a
single `grid_sample`; then what old letters bring and IAM lacks (`_letter_damage`: show-through of the back of the
sheet, ascenders and descenders of the neighbouring lines, faded and blotted ink, stains; all off by default),
then stroke width, blur, noise and contrast/brightness/gamma.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Probability (``*_p``) and magnitude of each augmentation."""

    affine_p: float = 0.5
    shear: float = 0.35  # max |shear| as tan(angle): slant of the writing
    rotate: float = 1.5  # max |rotation| in degrees
    scale: float = 0.1  # zoom in [1 - scale, 1 + scale]
    width_p: float = 0.5
    width_scale: float = 0.2  # horizontal stretch in [1 - w, 1 + w]: narrow or wide handwriting
    elastic_p: float = 0.3
    elastic_pixels: float = 2.0  # max displacement of the smooth distortion field, in pixels
    elastic_cells: int = 8  # the field is random on a coarse grid of this many cells along the height
    morph_p: float = 0.3  # erosion or dilation: thinner or thicker strokes (3×3)
    blur_p: float = 0.2
    blur_sigma: float = 1.0  # max Gaussian sigma in pixels
    noise_p: float = 0.2
    noise_std: float = 0.08
    color_p: float = 0.5
    contrast: float = 0.4  # ink intensity in [1 - c, 1]
    brightness: float = 0.1  # paper intensity in [0, b]
    gamma: float = 0.4  # gamma in [1 - g, 1 + g]
    # old letters (off by default; chosen by ablation, docs/results.md)
    show_through_p: float = 0.0  # another line of the batch, mirrored and blurred, shows faintly through the paper
    show_through: float = 0.35  # its strength in [0.1, s] of full ink
    neighbour_p: float = 0.0  # the descenders of the line above or the ascenders of the line below cut in
    neighbour_reach: float = 0.35  # how far into this line they reach, at most, as a share of its height
    fade_p: float = 0.0  # ink fades in patches (a dry pen, old iron-gall ink)
    fade: float = 0.6  # ink intensity down to 1 - fade in the faded patches
    blot_p: float = 0.0  # ink spreads in patches (a blot, a wet nib): thicker, darker strokes there
    stain_p: float = 0.0  # smooth stains and foxing on the paper
    stain: float = 0.3  # their darkness at most, on the ink scale

    def to_dict(self) -> dict:
        return asdict(self)


def _chance(p: float, n: int, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


def _uniform(low: float, high: float, n: int, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def _geometry(images: torch.Tensor, widths: torch.Tensor, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Shear, rotation, zoom, width rescale and elastic distortion in one resampling."""
    n, _, height, _ = images.shape
    device = images.device
    on = _chance(cfg.affine_p, n, device).float()
    shear = _uniform(-cfg.shear, cfg.shear, n, device) * on
    angle = _uniform(-cfg.rotate, cfg.rotate, n, device) * on * math.pi / 180
    zoom = 1 + _uniform(-cfg.scale, cfg.scale, n, device) * on
    stretch = 1 + _uniform(-cfg.width_scale, cfg.width_scale, n, device) * _chance(cfg.width_p, n, device).float()
    new_widths = (widths.to(device) * stretch).round().clamp(min=8).long()
    out_width = int(new_widths.max())
    # Output pixel (x, y) relative to the sample's centre -> input pixel, both in pixels.
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2
    xs = torch.arange(out_width, device=device, dtype=torch.float32) + 0.5
    x = (xs[None, None, :] - new_widths[:, None, None] / 2) / stretch[:, None, None]  # (B, 1, W')
    y = ys[None, :, None].expand(n, height, 1)  # (B, H, 1)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    x, y = (cos * x + sin * y) / zoom[:, None, None], (-sin * x + cos * y) / zoom[:, None, None]
    x = x + shear[:, None, None] * y  # slant: shift each row in proportion to its height
    elastic = _chance(cfg.elastic_p, n, device).float()[:, None, None, None]
    cells = (cfg.elastic_cells, max(2, round(cfg.elastic_cells * out_width / height)))
    field = torch.randn(n, 2, *cells, device=device) * cfg.elastic_pixels / 2 * elastic
    field = F.interpolate(field, size=(height, out_width), mode="bicubic", align_corners=False)
    x = x + field[:, 0] + widths.to(device)[:, None, None] / 2
    y = y + field[:, 1] + height / 2
    in_width = images.shape[-1]
    grid = torch.stack((2 * x / in_width - 1, 2 * y / height - 1), dim=-1)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, new_widths


def _patches(n: int, height: int, width: int, cells: int, device: torch.device) -> torch.Tensor:
    """(n, 1, height, width) smooth random field in [0, 1], zero on about two thirds of each line: soft patches
    about ``height / cells`` across."""
    grid = torch.randn(n, 1, cells, max(2, round(cells * width / height)), device=device)
    field = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
    field = field / field.flatten(1).std(dim=1).clamp(min=1e-6)[:, None, None, None]  # unit spread per line
    return ((field - 0.4) / 1.2).clamp(0, 1)


def _neighbours(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Another line of the batch moved up (its descenders reach this line's top) or down (its ascenders reach the
    bottom) by between 1 - reach and 1 - reach / 3 of the height: what a box or a loose polygon catches."""
    n, _, height, width = images.shape
    device = images.device
    other = images.roll(1, dims=0)
    reach = _uniform(cfg.neighbour_reach / 3, cfg.neighbour_reach, n, device)
    shift = ((1 - reach) * height).round().long()  # rows the other line moves by
    rows = torch.arange(height, device=device)[None, :]
    above = _chance(0.5, n, device)[:, None]
    source = torch.where(above, rows + shift[:, None], rows - shift[:, None])  # (B, H): row of `other` shown
    valid = ((source >= 0) & (source < height)).float()[:, None, :, None]
    index = source.clamp(0, height - 1)[:, None, :, None].expand(n, 1, height, width)
    return torch.gather(other, 2, index) * valid


def _letter_damage(images: torch.Tensor, widths: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Show-through, neighbouring lines, faded and blotted ink and stains, each with its own probability."""
    n, _, height, width = images.shape
    device = images.device
    if not any((cfg.show_through_p, cfg.neighbour_p, cfg.fade_p, cfg.blot_p, cfg.stain_p)):
        return images
    x = images
    if cfg.fade_p:
        on = _chance(cfg.fade_p, n, device)[:, None, None, None].float()
        x = x * (1 - cfg.fade * (_patches(n, height, width, 2, device) * 2).clamp(0, 1) * on)
    if cfg.blot_p:
        on = _chance(cfg.blot_p, n, device)[:, None, None, None].float()
        spread = F.max_pool2d(F.avg_pool2d(x, 3, stride=1, padding=1), 3, stride=1, padding=1)
        mask = (_patches(n, height, width, 3, device) * 3).clamp(0, 1) * on
        x = torch.maximum(x, spread * mask)
    behind = torch.zeros_like(x)  # what lies under the writing: drawn only where it is darker than the paper
    if cfg.show_through_p:
        on = _chance(cfg.show_through_p, n, device)[:, None, None, None].float()
        other = images.roll(-1, dims=0)
        columns = torch.arange(width, device=device)
        mirrored_at = (widths.to(device)[:, None] - 1 - columns[None, :]).clamp(0, width - 1)  # each line's own
        mirrored = torch.gather(other, 3, mirrored_at[:, None, None, :].expand(n, 1, height, width))  # width
        mirrored = F.avg_pool2d(mirrored, 3, stride=1, padding=1)  # seen through paper: soft
        behind = torch.maximum(behind, mirrored * _uniform(0.1, cfg.show_through, n, device)[:, None, None, None] * on)
    if cfg.stain_p:
        on = _chance(cfg.stain_p, n, device)[:, None, None, None].float()
        strength = _uniform(0.05, cfg.stain, n, device)[:, None, None, None]
        behind = torch.maximum(behind, _patches(n, height, width, 2, device) * strength * on)
    if cfg.neighbour_p:
        on = _chance(cfg.neighbour_p, n, device)[:, None, None, None].float()
        x = torch.maximum(x, _neighbours(images, cfg) * on)
    return torch.maximum(x, behind)


def _stroke_width(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    dilated = F.max_pool2d(images, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-images, 3, stride=1, padding=1)
    on = _chance(cfg.morph_p, len(images), images.device)[:, None, None, None]
    thicker = _chance(0.5, len(images), images.device)[:, None, None, None]
    return torch.where(on, torch.where(thicker, dilated, eroded), images)


def _blur(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    n, device = len(images), images.device
    sigma = _uniform(0.3, max(0.3, cfg.blur_sigma), n, device)
    radius = max(1, math.ceil(2 * cfg.blur_sigma))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    x = images.transpose(0, 1)  # (1, B, H, W): one group per sample
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=n)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=n)
    on = _chance(cfg.blur_p, n, device)[:, None, None, None]
    return torch.where(on, x.transpose(0, 1), images)


def _photometric(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    n, device = len(images), images.device
    on = _chance(cfg.color_p, n, device).float()[:, None, None, None]
    gamma = 1 + _uniform(-cfg.gamma, cfg.gamma, n, device)[:, None, None, None] * on
    ink = 1 - _uniform(0, cfg.contrast, n, device)[:, None, None, None] * on
    paper = _uniform(0, cfg.brightness, n, device)[:, None, None, None] * on
    x = paper + (ink - paper) * images.clamp(0, 1) ** gamma
    noisy = _chance(cfg.noise_p, n, device)[:, None, None, None]
    return x + torch.randn_like(x) * cfg.noise_std * noisy


@torch.no_grad()
def augment_batch(images: torch.Tensor, widths: torch.Tensor, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly augment a padded batch; returns the new batch and widths (the width may change)."""
    images, widths = _geometry(images.float(), widths, cfg)
    images = _letter_damage(images, widths, cfg)
    images = _photometric(_blur(_stroke_width(images, cfg), cfg), cfg)
    columns = torch.arange(images.shape[-1], device=images.device)
    inside = (columns[None, :] < widths[:, None].to(images.device))[:, None, None, :]
    return (images.clamp(0, 1) * inside), widths.cpu()
