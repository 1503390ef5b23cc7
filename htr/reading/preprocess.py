"""Image preprocessing shared by training, evaluation, the notebook and predict.py.

Any PIL image becomes a (1, H, W) float array (a tensor, for training) of fixed height H, aspect ratio kept,
in which ink is 1.0 and paper 0.0: grayscale with transparency composited on white, light-on-dark inverted,
cropped to the ink (as IAM's line images are), contrast stretched. Because paper is 0.0, padding a batch with
zeros pads with paper.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # PyTorch is imported only where tensors are made: reading with ONNX Runtime needs none
    import torch

MIN_CONTRAST = 48.0  # grey levels; fainter images are not stretched more than this, so paper noise stays small
MIN_WIDTH = 16  # narrower results are stretched to this, so every line yields a few CTC frames
MAX_ASPECT = 32  # lines wider than MAX_ASPECT × height are squeezed horizontally to that width
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm", ".pbm"}
MAX_PIXELS = 64_000_000  # larger images are refused from their header, before any pixel is decoded
WORK_PIXELS = 16_000_000  # larger images are first shrunk (box filter) to about this size, bounding memory
INK_THRESHOLD = 0.5  # an ink-map value above this is ink; an image with none reads as empty text
CROP_MARGIN = 0.0  # room kept around the ink, in ink heights; 0.08 shrank a line with paper around it (docs/reading.md)
_OPENING = threading.Lock()  # load_image's header check, one thread at a time (decoding runs outside it)


class ImageRefused(ValueError):
    """An image that is not read on purpose (too large to decode safely)."""


def load_image(source: str | Path | bytes, frame: int = 0) -> Image.Image:
    """Open an image from a path or encoded bytes and decode its first frame (or frame ``frame``, from 0: a TIFF's
    pages).

    Images over ``MAX_PIXELS`` are refused from their header (a decompression bomb cannot allocate)."""
    with _OPENING, warnings.catch_warnings():  # the warning filters are global: one thread at a time
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            limit = MAX_PIXELS // 1_000_000
            raise ImageRefused(f"image too large to decode safely (over {limit} megapixels)") from None
    try:
        image.seek(frame)  # multi-frame GIF/TIFF/WebP: the first frame unless asked
    except EOFError:
        frames = getattr(image, "n_frames", 1)
        image.close()
        raise ValueError(f"the image has no page {frame + 1} (it has {frames})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise ImageRefused(
            f"image too large to decode safely ({width}×{height}, over {MAX_PIXELS // 1_000_000} megapixels)"
        )
    image.load()
    return image


def failure_reason(file: str, error: Exception) -> str:
    """One line saying why image ``file`` could not be read."""
    if isinstance(error, OSError) and error.strerror:  # permission denied, is a directory, ...
        return error.strerror.lower()
    if os.path.isfile(file) and os.path.getsize(file) == 0:
        return "empty file"
    if type(error).__name__ == "UnidentifiedImageError":
        return "not an image, or a format Pillow cannot read"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def to_grayscale(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 array: EXIF orientation applied, transparency on white, 16-bit scaled down, images over
    ``WORK_PIXELS`` shrunk by an integer factor."""
    gray = _grayscale(ImageOps.exif_transpose(image))
    factor = int(np.ceil(np.sqrt(gray.size / WORK_PIXELS)))
    return np.asarray(Image.fromarray(gray).reduce(factor)) if factor > 1 else gray


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of ``image`` turned as its EXIF orientation says (what `to_grayscale` works on)."""
    turned = image.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap width and height
    return (image.height, image.width) if turned else image.size


def _grayscale(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).clip(0, 65535).astype(np.uint32)
        if image.mode == "I" and values.max(initial=0) <= 255:  # 32-bit integers holding 8-bit values
            return values.astype(np.uint8)
        return ((values * 255 + 32767) // 65535).astype(np.uint8)  # 16-bit: scaled, not clipped
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        return np.clip(values * scale, 0, 255).round().astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"))


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Float32 array with paper 0 and ink 1, whatever the polarity of ``gray``; light that varies across the
    image (a shadow over a photographed line, a darker page edge) is divided out first (`flatten_paper`)."""
    values = gray.astype(np.float32)
    if light_on_dark(values):
        values = 255.0 - values
    values = flatten_paper(values)
    dark, paper = np.percentile(_sample(values), [2, 50])
    return np.clip((paper - values) / max(paper - dark, MIN_CONTRAST), 0.0, 1.0).astype(np.float32)


def _sample(values: np.ndarray, size: int = 4096) -> np.ndarray:
    """An evenly spaced sample of about ``size`` of the values: enough for percentiles, at a fraction of the cost."""
    flat = values.ravel()
    return flat[:: max(1, flat.size // size)]


def light_on_dark(values: np.ndarray) -> bool:
    """Whether the minority (the ink) is brighter than the paper, judged on the image less its smooth light (so
    that a shadow across the paper does not count): its bright tail is longer than its dark one."""
    import cv2

    detail = values
    if min(values.shape) >= 8:
        sigma = max(3.0, min(values.shape) / 6)
        shrink = max(1.0, sigma / 4)  # the smooth light, blurred on a smaller copy (fast for whole pages)
        small = cv2.resize(values, (max(1, round(values.shape[1] / shrink)), max(1, round(values.shape[0] / shrink))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        light = cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / shrink), (values.shape[1], values.shape[0]),
                           interpolation=cv2.INTER_LINEAR)  # fmt: skip
        detail = values - light
    dark, middle, bright = np.percentile(_sample(detail), [2, 50, 98])
    return bool(bright - middle > middle - dark)


def flatten_paper(values: np.ndarray) -> np.ndarray:
    """Dark-on-light grey values (float32) divided by the paper's estimated brightness (a grey closing wider
    than the strokes, ``htr.pages.page_ink.paper_background``) and scaled back to the paper's median level: even
    paper stays as it is, a shadow or gradient is removed."""
    from htr.pages.page_ink import paper_background

    if min(values.shape) < 8:
        return values
    window = max(15, min(min(values.shape) // 3, max(values.shape) // 40))
    background = np.maximum(paper_background(values.clip(0, 255).astype(np.uint8), window), 1.0)
    return values / background * float(np.median(_sample(background)))


@dataclass(frozen=True)
class Placement:
    """Where a preprocessed line lies in the image it was cut from: input pixel (x, y) is image pixel
    (x0 + x * sx, y0 + y * sy)."""

    x0: float = 0.0
    y0: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def point(self, x: float, y: float) -> tuple[float, float]:
        return self.x0 + x * self.sx, self.y0 + y * self.sy

    def box(self, left: float, top: float, right: float, bottom: float) -> tuple[int, int, int, int]:
        """A box (left, top, right, bottom; right/bottom exclusive) in image pixels, rounded outwards."""
        (a, b), (c, d) = self.point(left, top), self.point(right, bottom)
        return int(np.floor(a)), int(np.floor(b)), int(np.ceil(c)), int(np.ceil(d))

    def within(self, outer: Placement) -> Placement:
        """This placement seen through ``outer`` (this one's image is ``outer``'s input)."""
        return Placement(outer.x0 + self.x0 * outer.sx, outer.y0 + self.y0 * outer.sy,
                         self.sx * outer.sx, self.sy * outer.sy)  # fmt: skip


def ink_bounds(
    ink: np.ndarray, threshold: float = INK_THRESHOLD, margin: float = CROP_MARGIN
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around the pixels above ``threshold``, plus one pixel and ``margin`` × their
    height on each side (clipped to the image); the whole image when it has no ink."""
    rows = np.flatnonzero((ink > threshold).any(axis=1))
    cols = np.flatnonzero((ink > threshold).any(axis=0))
    if rows.size == 0:
        return 0, 0, ink.shape[1], ink.shape[0]
    pad = int(margin * (rows[-1] - rows[0] + 1)) + 1
    top, bottom = max(0, rows[0] - pad), min(ink.shape[0], rows[-1] + pad + 1)
    left, right = max(0, cols[0] - pad), min(ink.shape[1], cols[-1] + pad + 1)
    return int(left), int(top), int(right), int(bottom)


def scaled_width(width: int, height: int, target_height: int, max_width: int | None = None) -> int:
    """Width after scaling an image of (width, height) to ``target_height``, capped at ``max_width``."""
    new_width = max(MIN_WIDTH, round(width * target_height / max(1, height)))
    return min(new_width, max_width) if max_width else new_width


def preprocess_array(image: Image.Image, height: int) -> np.ndarray:
    """A PIL line image -> (1, height, W) float32 array, ink 1.0 on paper 0.0 (see module docstring)."""
    return line_array(ink_map(to_grayscale(image)), height)


def preprocess(image: Image.Image, height: int) -> torch.Tensor:
    """``preprocess_array`` as a tensor (for training)."""
    import torch

    return torch.from_numpy(preprocess_array(image, height))


def line_array(ink: np.ndarray, height: int) -> np.ndarray:
    """An ink map (paper 0, ink 1) of one line -> cropped to the ink and scaled to a (1, height, W) float32 array."""
    return placed_line_array(ink, height)[0]


def placed_line_array(ink: np.ndarray, height: int) -> tuple[np.ndarray, Placement]:
    """`line_array`, and where its pixels lie in ``ink`` (for word positions)."""
    left, top, right, bottom = ink_bounds(ink)
    ink = ink[top:bottom, left:right]
    width = scaled_width(ink.shape[1], ink.shape[0], height, MAX_ASPECT * height)
    resized = Image.fromarray(np.ascontiguousarray(ink)).resize((width, height), Image.Resampling.BILINEAR)
    placement = Placement(left, top, ink.shape[1] / width, ink.shape[0] / height)
    return np.asarray(resized, dtype=np.float32).clip(0.0, 1.0)[None], placement


def has_ink(line: np.ndarray | torch.Tensor) -> bool:
    """Whether a preprocessed line holds any ink (a blank image reads as empty text)."""
    return bool((line > INK_THRESHOLD).any())


def pad_arrays(images: list[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Stack (1, H, W_i) arrays into (B, 1, H, max W_i rounded up to ``multiple``), padded on the right with
    paper (0), and their widths."""
    widths = np.array([im.shape[-1] for im in images], dtype=np.int64)
    batch = np.zeros((len(images), 1, images[0].shape[-2], -(-int(widths.max()) // multiple) * multiple),
                     dtype=images[0].dtype)  # fmt: skip
    for i, im in enumerate(images):
        batch[i, :, :, : im.shape[-1]] = im
    return batch, widths


def pad_batch(images: list[torch.Tensor], multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``pad_arrays`` for CPU tensors."""
    import torch

    batch, widths = pad_arrays([im.numpy() for im in images], multiple)
    return torch.from_numpy(batch), torch.from_numpy(widths)


def to_display(image: torch.Tensor) -> np.ndarray:
    """(1, H, W) or (H, W) ink tensor -> uint8 array, dark ink on white, for plots."""
    return ((1.0 - image.squeeze(0).float().clamp(0, 1)) * 255).round().byte().cpu().numpy()
