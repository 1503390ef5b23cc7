"""Synthetic line images that look scanned: pen strokes (online ink) or text in a handwriting font.

Both renderers draw dark ink on light paper with random pen, geometry and scan conditions and return a
grayscale PIL image; training then treats it exactly like a real scan (`htr.reading.preprocess.preprocess`).
All randomness comes from the ``numpy.random.Generator`` passed in, so a seed reproduces an image.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path(__file__).resolve().parents[1] / "fonts"  # htr/fonts
FONT_SUFFIXES = (".ttf", ".otf", ".woff", ".woff2")
SUPERSAMPLE = 2  # strokes are drawn at this multiple of the output size, then downsampled (anti-aliasing)


def _ink_and_paper(rng: np.random.Generator) -> tuple[int, int]:
    paper = int(rng.uniform(185, 255))
    return int(rng.uniform(0, min(110, paper - 70))), paper


def scan_finish(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Scanner look for a grayscale line image: uneven paper, blur and sensor noise."""
    width, height = image.size
    pixels = np.asarray(image, dtype=np.float32)
    coarse = rng.normal(0.0, rng.uniform(0, 6), size=(max(2, height // 16), max(2, width // 16)))
    shade = Image.fromarray(coarse.astype(np.float32)).resize((width, height), Image.Resampling.BICUBIC)
    pixels = pixels + np.asarray(shade, dtype=np.float32)
    radius = rng.uniform(0.0, 1.2) * height / 64
    if radius > 0.2:
        blurred = Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
        pixels = np.asarray(blurred, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, rng.uniform(0, 5), size=pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8), mode="L")


def photo_finish(image: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """A line photographed with a phone instead of scanned: a slight perspective tilt (the camera not square to
    the sheet, which goes on around the line), lower contrast (ink lightened toward the paper), a shadow falling
    across it (brightness down to ~45% at one side), warm paper, a little blur and JPEG compression. Returns an
    RGB image."""
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    height, width = gray.shape
    paper = float(np.percentile(gray, 90))
    margins = ((int(0.2 * height),) * 2, (int(0.05 * width + 0.2 * height),) * 2)  # room for the tilt
    padded = Image.fromarray(np.pad(gray, margins, constant_values=paper), mode="F")
    w, h = padded.size
    dx, dy = strength * rng.uniform(-0.04, 0.04) * w, strength * rng.uniform(-0.08, 0.08) * h
    quad = (0 + dx, 0, 0 - dx, h + dy, w + dx, h - dy, w - dx, 0)  # corners: top-left, bottom-left, ...
    pixels = np.asarray(padded.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR,
                                         fillcolor=paper))  # fmt: skip
    pixels = 1 - (1 - pixels) * (1 - strength * rng.uniform(0.3, 0.55))  # faded ink, flat light
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * np.linspace(-1, 1, w)[None, :] + np.sin(angle) * np.linspace(-1, 1, h)[:, None]
    light = 1 - strength * rng.uniform(0.35, 0.55) * (ramp - ramp.min()) / max(1e-6, np.ptp(ramp))
    rgb = pixels[..., None] * light[..., None] * np.array([1.0, 0.95, 0.85]) * 255  # warm paper under a lamp
    photo = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), mode="RGB")
    photo = photo.filter(ImageFilter.GaussianBlur(strength * rng.uniform(0.3, 1.0) * height / 64))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=int(rng.integers(35, 70)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _smooth(points: np.ndarray) -> np.ndarray:
    """3-tap moving average along a stroke: removes digitiser jitter, keeps the ends."""
    if len(points) < 3:
        return points
    inner = (points[:-2] + points[1:-1] + points[2:]) / 3
    return np.concatenate([points[:1], inner, points[-1:]])


def render_strokes(strokes: list[np.ndarray], rng: np.random.Generator, height: int = 80) -> Image.Image:
    """Draw pen strokes ((N, 2) x, y arrays, y down) as a scanned-looking line about ``height`` px high.

    Random: slant, rotation, horizontal stretch, baseline wobble, pen width with pressure-like variation
    along each stroke, ink and paper grey levels, margins, then `scan_finish`.
    """
    points = np.concatenate(strokes).astype(np.float64)
    top, bottom = np.percentile(points[:, 1], [1, 99])
    scale = height * rng.uniform(0.75, 1.1) / max(bottom - top, 1.0)
    slant, angle = rng.normal(0.0, 0.2), math.radians(rng.normal(0.0, 1.5))
    stretch = rng.uniform(0.8, 1.2)
    wobble_amplitude = rng.uniform(0.0, 0.05) * height
    wobble_period, wobble_phase = rng.uniform(4, 12) * height, rng.uniform(0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    origin = np.array([points[:, 0].min(), (top + bottom) / 2])

    def transform(xy: np.ndarray) -> np.ndarray:
        x, y = (xy[:, 0] - origin[0]) * scale, (xy[:, 1] - origin[1]) * scale
        x = (x - slant * y) * stretch
        x, y = cos * x - sin * y, sin * x + cos * y
        y = y + wobble_amplitude * np.sin(2 * math.pi * x / wobble_period + wobble_phase)
        return np.stack([x, y], axis=1)

    moved = [transform(_smooth(s.astype(np.float64))) for s in strokes]
    every = np.concatenate(moved)
    pen = rng.uniform(0.018, 0.055) * height
    margin = pen + rng.uniform(2, 0.25 * height)
    low = every.min(axis=0) - margin
    size = np.ceil((every.max(axis=0) + margin - low) * SUPERSAMPLE).astype(int)
    ink, paper = _ink_and_paper(rng)
    canvas = Image.new("L", (int(size[0]), int(size[1])), paper)
    draw = ImageDraw.Draw(canvas)
    for stroke in moved:
        xy = (stroke - low) * SUPERSAMPLE
        # pressure: a slow random variation of pen width along the stroke
        pressure = 1.0 + rng.uniform(0, 0.35) * np.sin(np.linspace(0, rng.uniform(1, 6), len(xy)) + rng.uniform(0, 6))
        widths = np.maximum(1.0, pen * SUPERSAMPLE * pressure)
        if len(xy) == 1:
            (x, y), r = xy[0], widths[0] / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
            continue
        for i in range(len(xy) - 1):
            segment = [tuple(xy[i]), tuple(xy[i + 1])]
            draw.line(segment, fill=ink, width=int(round(widths[i])))
            (x, y), r = xy[i + 1], widths[i] / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)  # round joints
    output = (int(math.ceil(size[0] / SUPERSAMPLE)), int(math.ceil(size[1] / SUPERSAMPLE)))
    return scan_finish(canvas.resize(output, Image.Resampling.BOX), rng)


# serif, sans and typewriter faces: letterheads and typed letters
PRINTED_FONTS = ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSans.ttf",
                 "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
                 "STIXGeneralItalic.ttf")  # fmt: skip


def printed_fonts() -> list[Path]:
    """Printing and typewriter fonts for printed lines (letterheads, typed letters): those matplotlib, a dependency,
    ships (DejaVu: Bitstream Vera licence; STIX: SIL Open Font License), so none is bundled here."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in PRINTED_FONTS if (folder / name).is_file()]


def list_fonts(folder: str | Path = FONT_DIR) -> list[Path]:
    """Font files in ``folder`` (default: the bundled handwriting fonts, see ``htr/fonts/README.md``)."""
    return sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in FONT_SUFFIXES)


@functools.lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _glyph_signature(font: ImageFont.FreeTypeFont, char: str) -> tuple:
    mask = font.getmask(char)
    return mask.size, bytes(np.asarray(mask)) if mask.size[0] * mask.size[1] else b""


@functools.lru_cache(maxsize=64)
def font_coverage(path: str, chars: str) -> frozenset[str]:
    """The characters of ``chars`` that the font draws (not as its missing-glyph box); space always."""
    font = _font(path, 32)
    missing = _glyph_signature(font, "\U0010fffd")
    return frozenset(c for c in chars if c == " " or _glyph_signature(font, c) != missing)


def render_text(
    text: str, font_path: str | Path, rng: np.random.Generator, height: int = 80, printed: bool = False
) -> Image.Image:
    """``text`` in the font at ``font_path``, word by word with random spacing and baseline jitter,
    slanted and rotated a little, on paper with `scan_finish`; about ``height`` px high. ``printed``: as type is
    set, on one baseline with even spacing, upright."""
    return _render_text(text, font_path, rng, height, with_words=False, printed=printed)[0]


def render_text_with_words(
    text: str, font_path: str | Path, rng: np.random.Generator, height: int = 80
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """`render_text` (the same image for the same ``rng`` state) and the box (left, top, right, bottom) of each
    word's ink in it, for testing word positions."""
    return _render_text(text, font_path, rng, height, with_words=True)


def _render_text(
    text: str, font_path: str | Path, rng: np.random.Generator, height: int, with_words: bool, printed: bool = False
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    reference = _font(str(font_path), 100)
    left, top, right, bottom = reference.getbbox(text or "x", anchor="ls")
    size = 100 * height * rng.uniform(0.6, 0.8) / max(bottom - top, 1)  # ink height, whatever the font's em
    font = _font(str(font_path), int(np.clip(size, 8, 4 * height)))
    ink, paper = _ink_and_paper(rng)
    words = text.split(" ")
    space = font.getlength(" ")
    ascent, descent = font.getmetrics()
    jitter = 0.0 if printed else 0.04 * (ascent + descent)
    width = int(sum(font.getlength(w) for w in words) + 2 * space * len(words) + 2 * height)
    canvas = Image.new("L", (width, int(2 * (ascent + descent))), paper)
    masks = [Image.new("L", canvas.size, 0) for _ in words] if with_words else []  # each word's ink alone
    draw = ImageDraw.Draw(canvas)
    x, baseline = 0.5 * height, 0.5 * (ascent + descent) + ascent
    for k, word in enumerate(words):
        position = (x, baseline + rng.normal(0, jitter))
        draw.text(position, word, font=font, fill=ink, anchor="ls")
        if masks:
            ImageDraw.Draw(masks[k]).text(position, word, font=font, fill=255, anchor="ls")
        x += font.getlength(word) + space * (rng.uniform(0.9, 1.3) if printed else rng.uniform(0.7, 1.6))
    slant, angle = (0.0, rng.normal(0, 0.5)) if printed else (rng.normal(0.1, 0.15), rng.normal(0, 1.0))

    def shape(image: Image.Image, fill: int) -> Image.Image:
        image = image.crop((0, 0, int(x + 0.5 * height), image.height))
        image = image.transform(
            (image.width + int(abs(slant) * image.height), image.height), Image.Transform.AFFINE,
            (1, slant, -abs(slant) * image.height if slant > 0 else 0, 0, 1, 0),
            resample=Image.Resampling.BILINEAR, fillcolor=fill,
        )  # fmt: skip
        return image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=fill)

    boxes = [shape(mask, 0).point(lambda v: 255 if v > 127 else 0).getbbox() or (0, 0, 0, 0) for mask in masks]
    return scan_finish(shape(canvas, paper), rng), boxes


def compose_page(
    lines: list[Image.Image], rng: np.random.Generator, gap: tuple[int, int] = (4, 40),
    indent: tuple[int, int] = (0, 80), margin: int = 30, paper: int = 255,
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:  # fmt: skip
    """Line images stacked into one page with random gaps and left offsets; returns the page and each line's box
    (left, top, right, bottom). For testing and demonstrating line segmentation."""
    gray = [line.convert("L") for line in lines]
    gaps = rng.integers(gap[0], gap[1] + 1, size=len(gray))
    offsets = rng.integers(indent[0], indent[1] + 1, size=len(gray))
    width = max(g.width + int(o) for g, o in zip(gray, offsets)) + 2 * margin
    height = sum(g.height for g in gray) + int(gaps[1:].sum()) + 2 * margin
    page = Image.new("L", (width, height), paper)
    boxes, top = [], margin
    for i, (line, offset) in enumerate(zip(gray, offsets)):
        top += int(gaps[i]) if i else 0
        left = margin + int(offset)
        page.paste(line, (left, top))
        boxes.append((left, top, left + line.width, top + line.height))
        top += line.height
    return page, boxes


def compose_letter(
    printed: list[Image.Image], corner: list[Image.Image], body: list[Image.Image], closing: list[Image.Image],
    rng: np.random.Generator, paper: int = 250,
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:  # fmt: skip
    """A letter's page, as archives hold them: ``printed`` letterhead lines centred at the top, ``corner`` lines
    (a date, an address) at the right, the ``body`` from the left margin with indents, and ``closing`` lines (the
    closing and the signature) towards the right at the end. Returns the page and each line's ink box, in that
    order (letterhead, corner, body, closing): the reading order of a letter. For training and testing line
    finders."""
    gray = [[line.convert("L") for line in part] for part in (printed, corner, body, closing)]
    margin = int(rng.integers(30, 80))
    body_width = max([g.width for g in gray[2]], default=400)
    width = max([body_width + 2 * margin + 80] + [g.width + 2 * margin for part in gray for g in part])
    gap = lambda: int(rng.integers(6, 30))  # noqa: E731
    height = 2 * margin + sum(g.height + 30 for part in gray for g in part) + 60
    page = Image.new("L", (width, height), paper)
    boxes, top = [], margin
    for line in gray[0]:  # letterhead: centred
        left = (width - line.width) // 2 + int(rng.integers(-20, 21))
        boxes.append(_paste(page, line, left, top))
        top += line.height + gap()
    top += int(rng.integers(10, 50))
    for line in gray[1]:  # date and address: at the right
        left = width - margin - line.width - int(rng.integers(0, 40))
        boxes.append(_paste(page, line, max(margin, left), top))
        top += line.height + gap()
    for k, line in enumerate(gray[2]):  # the body: a salutation, then indented paragraphs now and then
        indent = int(rng.integers(20, 80)) if k == 0 or rng.random() < 0.15 else int(rng.integers(0, 12))
        boxes.append(_paste(page, line, margin + indent, top))
        top += line.height + gap()
    for line in gray[3]:  # closing and signature: towards the right
        left = int(rng.uniform(0.35, 0.6) * width)
        boxes.append(_paste(page, line, min(left, width - margin - line.width), top))
        top += line.height + gap()
    return page.crop((0, 0, width, min(height, top + margin))), boxes


def _paste(page: Image.Image, line: Image.Image, left: int, top: int) -> tuple[int, int, int, int]:
    """Paste a line's ink onto the page's paper (the line's own paper lifted to white, so no rectangle shows) and
    return the box of its ink on the page."""
    values = np.asarray(line, dtype=np.float32)
    dark, paper = np.percentile(values, [1, 60])
    lifted = np.clip((values - dark) / max(paper - dark, 1.0), 0, 1)  # ink 0, paper 1 (and above)
    lifted = (255 * np.where(lifted > 0.8, 1.0, lifted / 0.8) ** 1.5).astype(np.uint8)  # paper noise gone
    ink = np.argwhere(lifted < 128)
    region = page.crop((left, top, left + line.width, top + line.height))
    page.paste(ImageChops.darker(region, Image.fromarray(lifted)), (left, top))
    if not len(ink):
        return left, top, left + line.width, top + line.height
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0)
    return left + int(x0), top + int(y0), left + int(x1) + 1, top + int(y1) + 1
