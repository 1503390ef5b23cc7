"""Training-time augmentation as batched tensor operations on the training device.

Works on padded batches from `htr.reading.preprocess.pad_batch` (ink 1.0, paper 0.0, shape (B, 1, H, W)) with the
true widths; every sample draws its own parameters. Geometry (affine, elastic distortion, width rescale) is a
single `grid_sample`; then stroke width, blur, noise and contrast/brightness/gamma.
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
    images = _photometric(_blur(_stroke_width(images, cfg), cfg), cfg)
    columns = torch.arange(images.shape[-1], device=images.device)
    inside = (columns[None, :] < widths[:, None].to(images.device))[:, None, None, :]
    return (images.clamp(0, 1) * inside), widths.cpu()
