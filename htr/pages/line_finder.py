"""Finding the text lines of a page with a trained line finder: its kernel map, then one box per line.

The finder (``htr.pages.line_detector.LineDetector``, a U-Net trained by ``python -m htr.train_line_detector``)
sees the page's ink map (``htr.reading.preprocess.ink_map``) shrunk to ``INPUT_SIDE`` pixels on its long side and
predicts, at half that size, each line's *kernel*: the middle ``KERNEL_SHARE`` of its height, column by column,
stopping ``END_SHARE`` line heights short of its ends (as text detectors such as PSENet/DBNet shrink their targets,
so that touching lines stay apart). Each connected part of the thresholded map is one line; its box is the part's
box grown back by what it lost. Parts much thinner or fainter than the page's lines are dropped, parts of one line
split at a wide word gap joined, and a page whose letters would be smaller or larger than those the finder was
trained on is scaled to fit them (`network_input`). A finder runs in PyTorch (its ``.pt`` file) or in ONNX Runtime
(its ``.onnx`` export, ``python -m htr.export --line-finder``), where nothing here imports PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from htr.model_files import SOURCE_KEY
from htr.pages.column_rules import column_rules, cut_at_borders

INPUT_SIDE = 1280  # the page's long side the network reads
KERNEL_SHARE = 0.4  # the middle share of a line's height its kernel covers
END_SHARE = 0.25  # the kernel stops this many line heights short of each end (table cells side by side stay apart)
OUTPUT_STRIDE = 2
MIN_KERNEL_AREA = 6  # output pixels; smaller parts are specks
THIN_PART, FAINT_PART = 0.65, 0.5  # parts thinner / fainter than this share of the page's lines are not lines
JOIN_GAP = 0.2  # parts of one line closer than this many line heights are joined (a wide word gap)
SIDE_OVERLAP = 0.5  # parts overlapping by more line heights than this are not side by side (real pages: 0-2 alike)
ROW_OVERLAP = 0.2  # boxes of one row (side by side) share at most this share of the narrower's width
ONNX_METADATA = "line_finder"  # the key of an ONNX export's settings (threshold, geometry) in its metadata
Box = tuple[int, int, int, int]


def network_input(ink: np.ndarray, side: int = INPUT_SIDE,
                  letter_range: tuple[float, float] | None = None) -> tuple[np.ndarray, float]:  # fmt: skip
    """The ink map scaled so its long side is ``side`` and padded to multiples of 32, and the scale factor.

    With ``letter_range`` (the letter heights, in the network's pixels, of the pages it was trained on), a page
    whose letters would come out smaller or larger (a tight crop of a paragraph, a page of tiny writing) is scaled
    so that they fall inside it (its long side then between ``side`` / 2 and 2 × ``side``, but never blown up past
    its own size for that: a word or a short line is read at its own scale, not at ``side`` / 2)."""
    factor = side / max(ink.shape)
    small = _resized(ink, factor)
    if letter_range is not None:
        from htr.pages.page_ink import component_height

        letters = component_height((small > 0.5).astype(np.uint8))
        wanted = factor * min(max(letters, letter_range[0]), letter_range[1]) / letters
        wanted = min(max(wanted, min(0.5 * factor, 1.0)), 2 * factor)
        if abs(wanted / factor - 1) > 0.05:
            factor, small = wanted, _resized(ink, wanted)
    padded = np.zeros((-(-small.shape[0] // 32) * 32, -(-small.shape[1] // 32) * 32), np.float32)
    padded[: small.shape[0], : small.shape[1]] = small
    return padded, factor


def _resized(ink: np.ndarray, factor: float) -> np.ndarray:
    height, width = max(1, round(ink.shape[0] * factor)), max(1, round(ink.shape[1] * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(ink.astype(np.float32), (width, height), interpolation=interpolation)


def boxes_from_kernels(probability: np.ndarray, scale: float, threshold: float = 0.5, ink: np.ndarray | None = None,
                       end_extend: float = END_SHARE, join_gap: float = JOIN_GAP,
                       rules: np.ndarray | None = None) -> list[Box]:  # fmt: skip
    """Line boxes, in pixels of the page the map was made from (``scale``: page pixels per map pixel), one per
    connected part of the thresholded kernel map, grown back to the line's full height; in `reading_order`.

    Parts much thinner than the page's lines (``THIN_PART`` of the area-weighted median thickness: specks, strokes
    of a flourish) are dropped, and with ``ink`` (the page's ink map at the map's size) parts much fainter than
    the page's lines (``FAINT_PART`` of the median: show-through, the edge of a pasted crop). Parts on one line
    less than ``join_gap`` line heights apart (a wide gap between words) are one line. With ``rules`` (the page's
    long vertical rules at the map's size, `htr.pages.column_rules.column_rules`), parts are cut at, and never
    joined across, the rules that the page's writing respects: a ruled table's column borders."""
    borders = None
    if rules is not None:
        probability, borders = cut_at_borders(probability, threshold, rules, MIN_KERNEL_AREA, KERNEL_SHARE)
    mask = (probability > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    parts = [i for i in range(1, count) if stats[i, 4] >= MIN_KERNEL_AREA]
    if not parts:
        return []
    thickness = np.array([stats[i, 4] / stats[i, 2] for i in parts])  # mean kernel height, whatever the skew
    area = stats[parts, 4]
    order = np.argsort(thickness)
    typical = thickness[order][np.searchsorted(np.cumsum(area[order]), area.sum() / 2)]
    keep = thickness >= THIN_PART * typical
    if ink is not None and keep.any():
        strength = np.zeros(len(parts))
        for k in np.flatnonzero(keep):
            x, y, w, h = stats[parts[k], :4]
            strength[k] = np.percentile(ink[y : y + h, x : x + w][labels[y : y + h, x : x + w] == parts[k]], 90)
        keep &= strength >= FAINT_PART * np.median(strength[keep])
    kernels = [[*stats[parts[k], :2], *(stats[parts[k], :2] + stats[parts[k], 2:4]), stats[parts[k], 4]]
               for k in np.flatnonzero(keep)]  # fmt: skip
    boxes = []
    for left, top, right, bottom, kernel_area in join_side_by_side(kernels, join_gap, borders):
        height = kernel_area / (right - left) / KERNEL_SHARE  # the line's, from its kernel's mean thickness
        grow, extend = height * (1 - KERNEL_SHARE) / 2, end_extend * height
        box = (left - extend - 0.5, top - grow, right + extend + 0.5, bottom + grow)
        boxes.append(tuple(int(round(v * scale)) for v in box))
    return reading_order(boxes)


def join_side_by_side(kernels: list[list[float]], gap: float, borders: np.ndarray | None = None) -> list[list[float]]:
    """Kernels ``[left, top, right, bottom, area]`` on one line (each one's vertical span mostly inside the
    other's) less than ``gap`` × the line's height apart, joined; the area is the sum. Kernels that overlap by more
    than ``SIDE_OVERLAP`` line heights are one above the other, not side by side: lines on a slant, whose boxes
    share most of their rows, stay apart; so do kernels with a column border (a map of them) between them."""
    joined: list[list[float]] = []
    for kernel in sorted(kernels, key=lambda k: k[0]):
        for other in joined:
            overlap = min(kernel[3], other[3]) - max(kernel[1], other[1])
            height = max(kernel[4] / (kernel[2] - kernel[0]), other[4] / (other[2] - other[0])) / KERNEL_SHARE
            apart = kernel[0] - other[2]  # negative: they overlap
            side_by_side = -SIDE_OVERLAP * height < apart < gap * height
            if overlap >= 0.7 * min(kernel[3] - kernel[1], other[3] - other[1]) and side_by_side and \
                    not _bordered(borders, kernel, other):  # fmt: skip
                other[:] = [other[0], min(other[1], kernel[1]), max(other[2], kernel[2]), max(other[3], kernel[3]),
                            other[4] + kernel[4]]  # fmt: skip
                break
        else:
            joined.append(list(kernel))
    return joined


def _bordered(borders: np.ndarray | None, kernel: list[float], other: list[float]) -> bool:
    """Whether a column border runs between two kernels side by side (in the rows they share)."""
    if borders is None:
        return False
    left, right = int(min(other[2], kernel[0])) - 1, int(max(other[2], kernel[0])) + 1
    top, bottom = int(max(kernel[1], other[1])), int(min(kernel[3], other[3]))
    return bool(borders[top:bottom, max(0, left) : right].any())


def reading_order(boxes: list[Box]) -> list[Box]:
    """Boxes top to bottom; those side by side (centres less than half a line height apart, and no more than
    ``ROW_OVERLAP`` of the narrower one's width over each other: a table's cells, a date beside a line) left to
    right. Lines one above the other whose boxes share most of their rows (a slanted hand) stay top to bottom."""
    if not boxes:
        return []
    half = 0.5 * float(np.median([b[3] - b[1] for b in boxes]))
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: b[1] + b[3]):
        if rows and (box[1] + box[3]) / 2 - (rows[-1][0][1] + rows[-1][0][3]) / 2 <= half and \
                not any(_over_each_other(box, other) for other in rows[-1]):  # fmt: skip
            rows[-1].append(box)
        else:
            rows.append([box])
    return [box for row in rows for box in sorted(row, key=lambda b: b[0])]


def _over_each_other(box: Box, other: Box) -> bool:
    """Whether two boxes share more than ``ROW_OVERLAP`` of the narrower one's width."""
    shared = min(box[2], other[2]) - max(box[0], other[0])
    return shared > ROW_OVERLAP * min(box[2] - box[0], other[2] - other[0])


class LineFinder:
    """A trained line finder with its threshold and geometry: a checkpoint written by htr.train_line_detector
    (``.pt``, run in PyTorch on ``device``) or its ONNX export (``.onnx``, run in ONNX Runtime on the CPU, on
    ``threads`` threads: ONNX Runtime's choice, all cores, when None)."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        self.device = device
        if str(path).endswith(".onnx"):
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or 0
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            metadata = self.session.get_modelmeta().custom_metadata_map
            settings = metadata.get(ONNX_METADATA)
            self.source_sha256 = metadata.get(SOURCE_KEY)  # of the .pt it was exported from (None: older exports)
            if settings is None:
                raise ValueError(f"{path} is not an exported line finder (no {ONNX_METADATA!r} metadata)")
            state = json.loads(settings)
        else:
            import torch

            from htr.pages.line_detector import LineDetector

            state = torch.load(path, map_location="cpu", weights_only=True)
            self.network = LineDetector(**state["config"]).eval().to(device)
            self.network.load_state_dict(state["model"])
            self.session, self.source_sha256 = None, None
        self.threshold = float(state.get("threshold", 0.5))
        geometry = state.get("geometry", {"input_side": 1024, "end_share": 0.0})  # files from before geometry
        self.input_side, self.end_share = int(geometry["input_side"]), float(geometry["end_share"])
        letter_range = geometry.get("letter_range")  # letter heights it was trained on (older files: none)
        self.letter_range = None if letter_range is None else [float(v) for v in letter_range]
        self.end_extend = float(geometry.get("end_extend", self.end_share))  # chosen on held-out pages (newer files)

    def settings(self) -> dict:
        """What an ONNX export keeps beside the network: threshold and geometry."""
        geometry = {"input_side": self.input_side, "end_share": self.end_share, "end_extend": self.end_extend,
                    "letter_range": self.letter_range}  # fmt: skip
        return {"threshold": self.threshold, "geometry": geometry}

    def logits(self, padded: np.ndarray) -> np.ndarray:
        """The network's (H/2, W/2) kernel logits of one padded (H, W) input."""
        if self.session is not None:
            return self.session.run(None, {"ink": padded[None, None]})[0][0, 0]
        import torch

        with torch.inference_mode():
            logits = self.network(torch.from_numpy(padded)[None, None].to(self.device))
        return logits[0, 0].float().cpu().numpy()

    def probability(self, ink: np.ndarray) -> tuple[np.ndarray, float]:
        """The kernel probability map of a page's ink map, and page pixels per map pixel."""
        probability, scale, _ = self._read(ink)
        return probability, scale

    def _read(self, ink: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """`probability`'s map and scale, and the ink as the network read it (unpadded)."""
        padded, factor = network_input(ink, self.input_side, self.letter_range)
        height, width = (round(s * factor / OUTPUT_STRIDE) for s in ink.shape)
        logits = self.logits(padded)[:height, :width]
        read = padded[: round(ink.shape[0] * factor), : round(ink.shape[1] * factor)]
        return (0.5 + 0.5 * np.tanh(0.5 * logits)).astype(np.float32), OUTPUT_STRIDE / factor, read  # sigmoid

    def boxes(self, ink: np.ndarray) -> list[Box]:
        """Line boxes of a page's ink map, in its pixels, top to bottom."""
        probability, scale, read = self._read(ink)
        small = cv2.resize(ink, probability.shape[::-1], interpolation=cv2.INTER_AREA)
        rules = column_rules(read, probability.shape)
        boxes = boxes_from_kernels(probability, scale, self.threshold, small, self.end_extend, rules=rules)
        clip = lambda b: (max(0, b[0]), max(0, b[1]), min(ink.shape[1], b[2]), min(ink.shape[0], b[3]))  # noqa: E731
        return [clip(b) for b in boxes]
