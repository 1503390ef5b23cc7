"""Reading new line images with a trained checkpoint."""

from __future__ import annotations

import importlib.util
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from htr.alphabet import Alphabet
from htr.batching import bucketed_batches
from htr.bundle import open_model
from htr.cpu_share import CpuShare
from htr.model_config import ModelConfig
from htr.pages.segment import looks_like_one_line, segment_page, side_by_side
from htr.reading.decode import Decoder, confidences, make_decoder
from htr.reading.page_result import Page
from htr.reading.positions import CharSpan, align, line_layout
from htr.reading.preprocess import (
    Placement,
    has_ink,
    ink_map,
    pad_arrays,
    placed_line_array,
    preprocess_array,
    to_grayscale,
    upright_size,
)
from htr.shipped import default_line_finder

DEFAULT_LINE_FINDER = default_line_finder()  # the shipped trained line finder


def _cuda_available() -> bool:
    """Whether PyTorch would read on a GPU; PyTorch is imported only when a GPU driver is visible."""
    from htr.reading.onnx_network import cuda_may_be_present

    if not cuda_may_be_present():
        return False
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Reading:
    """The text of one line, how sure the model is of it (see ``htr.reading.decode.confidences``) and, when asked for,
    where its characters are in the frames (``htr.reading.positions.align``)."""

    text: str
    confidence: float
    chars: list[CharSpan] | None = None


@dataclass
class PreparedImage:
    """The model inputs of an image's text lines, where each lies in the image, the boxes a segmenter found
    (None: read as one line) and the image's size (width, height; upright, as its EXIF orientation says)."""

    lines: list[np.ndarray]
    placements: list[Placement]
    boxes: list[tuple[int, int, int, int]] | None
    size: tuple[int, int]


class Network(Protocol):
    """A network that reads: ``htr.runtime.TorchNetwork`` (PyTorch) or ``htr.reading.onnx_network.OnnxNetwork``."""

    config: ModelConfig
    parallel_calls: int  # how many calls usefully run at once in threads (1: one at a time; see `transcribe`)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Images (B, 1, H, W) float32 -> log-probabilities (T, B, C) float32."""
        ...


def transcribe(
    network: Network, alphabet: Alphabet, widths: list[int], line: Callable[[int], np.ndarray], batch_size: int,
    decoder: Decoder | None = None, pad_to: int = 1, with_positions: bool = False,
) -> list[Reading]:  # fmt: skip
    """Readings of lines ``line(0) .. line(n - 1)`` ((1, H, W) float32 arrays of the given widths), in that order.

    Lines are batched by width to cut padding. Greedy by default. A line without ink reads as empty text with
    confidence 1. ``pad_to``: batch widths are rounded up to a multiple of it (fewer distinct shapes for the
    kernel caches: less memory over many batches). ``with_positions``: each reading's ``chars`` too.

    A network with ``parallel_calls`` > 1 reads that many batches at once in threads, each batch decoded as soon
    as its network call returns, so decoding (mostly Python: one batch at a time) overlaps the network's runs."""
    decoder = decoder or Decoder()
    readings: list[Reading | None] = [None] * len(widths)

    def read_batch(indices: list[int], images: np.ndarray, batch_widths: np.ndarray) -> None:
        log_probs = network(images)
        lengths = network.config.output_lengths(batch_widths)
        paths = decoder.paths(log_probs, lengths, alphabet)  # one batch at a time (the decoder's lock)
        spans = align(log_probs, lengths, paths, alphabet) if with_positions else [None] * len(paths)
        for i, path, confidence, chars in zip(indices, paths, confidences(log_probs, lengths, paths), spans):
            readings[i] = Reading(alphabet.decode(path), confidence, chars)

    def batches() -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        for indices in bucketed_batches(widths, batch_size, seed=None):
            lines = {i: line(i) for i in indices}
            for i in [i for i, image in lines.items() if not has_ink(image)]:  # blank: nothing to read, for sure
                readings[i] = Reading("", 1.0, [] if with_positions else None)
                del lines[i]
            if lines:
                yield list(lines), *pad_arrays(list(lines.values()), multiple=pad_to)

    workers = getattr(network, "parallel_calls", 1)
    if workers <= 1:
        for batch in batches():
            read_batch(*batch)
    else:
        with ThreadPoolExecutor(workers) as pool:
            running: deque[Future] = deque()
            for batch in batches():  # at most one batch waiting beyond those being read: memory stays bounded
                running.append(pool.submit(read_batch, *batch))
                if len(running) > workers:
                    running.popleft().result()
            for future in running:
                future.result()
    return readings  # type: ignore[return-value]


class Recognizer:
    """A loaded model with its alphabet and decoder: ``Recognizer("handwriting_recognizer_best.pth").read([image])``.

    ``precision``: see ``htr.runtime.resolve_precision`` (auto: bf16 on CPUs with native bf16, which reads IAM
    validation twice as fast with the same CER); ``decoder_options``: see ``htr.reading.decode.make_decoder`` (by
    default beam search with the checkpoint's language model when it has one, else greedy); ``cpu_share``: an
    ``htr.cpu_share.CpuShare`` that keeps PyTorch's CPU threads to the free cores (none: PyTorch's default);
    ``onnx``: an ONNX export (``htr.export``) to run in ONNX Runtime instead of PyTorch; auto: the checkpoint's own
    export (``X.onnx`` beside ``X.pth``, a model folder's ``model.onnx``) when it was made from that very checkpoint
    (a hub repo id: its downloaded folder), onnxruntime is installed, the device is
    the CPU and the precision auto (``runtime`` says which runs; ``notes`` why a present export was not used);
    None: PyTorch. ``line_finder``: the trained line finder that splits pages into lines (``htr.pages.line_finder``;
    auto: the shipped ``line_finder.pt``, or its export ``line_finder.onnx`` beside it when present and the network
    runs in ONNX Runtime; None: the classical segmenter of ``htr.pages.segment``)."""

    def __init__(
        self, checkpoint: str | Path, device: str = "auto", precision: str = "auto", onnx: str | Path | None = "auto",
        cpu_share: CpuShare | None = None, line_finder: str | Path | None = "auto", **decoder_options,
    ) -> None:  # fmt: skip
        self.notes: list[str] = []  # one-line remarks for the user (e.g. why an export beside the checkpoint is unused)
        own_lm = decoder_options.get("decoder", "auto") != "greedy" and decoder_options.get("lm", "auto") == "auto"
        # a .pth, a model folder or a hub model, told apart once; not needed for a given export read without its LM
        self.bundle = None if onnx not in ("auto", None) and not own_lm else open_model(checkpoint)
        exported = None
        if onnx == "auto":  # the model's own export when it reads on the CPU as the user left it to us
            on_cpu = device == "cpu" or (device == "auto" and not _cuda_available())
            if on_cpu and precision == "auto":
                exported, note = self.bundle.onnx_network()
                self.notes += [note] if note else []
        elif onnx is not None:
            from htr.reading.onnx_network import OnnxNetwork

            exported = OnnxNetwork(onnx)
        self._device = "cpu"  # the line finder's: the network's when PyTorch runs it
        self.network: Network
        if exported is not None:  # ONNX Runtime runs the network on the CPU; decoding then needs no PyTorch
            self.network, self.alphabet = exported, exported.alphabet
            state = self.bundle.decoding_state(exported) if own_lm else {}  # greedy or a given LM: none needed
            self.runtime = "onnxruntime"
        else:
            from htr.checkpoint import model_from_checkpoint
            from htr.runtime import TorchNetwork, resolve_device, resolve_precision

            resolved = self._device = resolve_device(device)
            state = self.bundle.checkpoint()
            model, self.alphabet = model_from_checkpoint(state, self.bundle.given, resolved)
            self.network = TorchNetwork(model, resolved, resolve_precision(precision, resolved), cpu_share)
            self.runtime = "pytorch"
        self.decoder = make_decoder(state, **decoder_options)
        self._finder_source = None  # the .pt an automatically chosen ONNX finder must have been exported from
        if line_finder == "auto":  # the shipped finder: its ONNX export with an ONNX reader, else in PyTorch
            onnx_finder = DEFAULT_LINE_FINDER.with_suffix(".onnx")
            if exported is not None and onnx_finder.is_file():
                line_finder, self._finder_source = onnx_finder, DEFAULT_LINE_FINDER
            elif DEFAULT_LINE_FINDER.is_file() and importlib.util.find_spec("torch") is not None:
                line_finder = DEFAULT_LINE_FINDER
            else:
                line_finder = None
        if line_finder is not None and not Path(line_finder).is_file():
            raise ValueError(f"line finder {line_finder}: no such file")
        self.line_finder_path = line_finder  # loaded with the first page (single lines never need it)
        self._line_finder = None
        self._loading_finder = threading.Lock()  # pages may be prepared in several threads at once

    def line_finder(self):  # -> htr.pages.line_finder.LineFinder | None
        """The trained line finder, loaded on first use; None: pages go to the classical segmenter."""
        with self._loading_finder:
            return self._load_line_finder()

    def _load_line_finder(self):
        if self._line_finder is None and self.line_finder_path is not None:
            from htr.model_files import made_from
            from htr.pages.line_finder import LineFinder

            # pages are prepared side by side when the network reads side by side (predict.py): the finder gets the
            # network's share of cores per call (60 real pages: 54.7-59.7 s instead of 61.8-63.1; one page alone 0.33 s
            # in the finder, not 0.19); PyTorch readers leave it ONNX Runtime's own count
            threads = getattr(self.network, "threads_per_call", None)
            try:
                self._line_finder = LineFinder(self.line_finder_path, self._device, threads)
                source = self._finder_source
                if source is not None and source.is_file() and not made_from(self._line_finder.source_sha256, source):
                    self.line_finder_path = source  # a stale export: the finder it should mirror, in PyTorch
                    self._line_finder = LineFinder(source, self._device, threads)
            except Exception as error:  # a damaged or foreign file: one clear line, never a traceback
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(f"line finder {self.line_finder_path}: cannot read it ({reason})") from None
        return self._line_finder

    def prepare(self, image: Image.Image) -> np.ndarray:
        """The model's input for one PIL image of a line: a (1, H, W) float32 array."""
        return preprocess_array(image, self.network.config.height)

    def prepare_image(self, image: Image.Image, segment: str = "auto") -> PreparedImage:
        """The model inputs of an image's text lines and where they lie in it.

        ``segment``: ``auto`` (split into lines when more than one is found, one above another), ``always`` or
        ``never``."""
        gray = to_grayscale(image)
        ink = ink_map(gray)
        height = self.network.config.height
        size = upright_size(image)
        scale = max(size) / max(gray.shape)  # to_grayscale may have shrunk a huge image
        if segment == "always" or (segment == "auto" and not looks_like_one_line(ink)):
            lines = segment_page(gray, scale, ink, self.line_finder())  # the page's ink map, made once
            if segment == "auto" and side_by_side([line.box for line in lines]):
                lines = []  # pieces of one short line (a word or two the finder cut apart): read it whole
            if len(lines) > 1 or (segment == "always" and lines):
                arrays, placements = [], []
                for line in lines:
                    array, inner = placed_line_array(line.ink, height)
                    left, top, right, bottom = line.ink_box or line.box  # its ink map stretched over that box
                    on_page = Placement(left, top, (right - left) / max(1, line.ink.shape[1]),
                                        (bottom - top) / max(1, line.ink.shape[0]))  # fmt: skip
                    arrays.append(array)
                    placements.append(inner.within(on_page))
                return PreparedImage(arrays, placements, [line.box for line in lines], size)
        array, inner = placed_line_array(ink, height)
        return PreparedImage([array], [inner.within(Placement(0, 0, scale, scale))], None, size)

    def prepare_lines(self, image: Image.Image, segment: str = "auto") -> tuple[list[np.ndarray], list | None]:
        """The model inputs of an image's text lines, and their boxes (None when not segmented); see
        `prepare_image`."""
        prepared = self.prepare_image(image, segment)
        return prepared.lines, prepared.boxes

    def page(self, prepared: PreparedImage, readings: list[Reading], source: str = "") -> Page:
        """The `Page` of a prepared image whose lines were read (`read_prepared`): each line's box and baseline in
        the image's pixels, and its words and characters when read ``with_positions``."""
        factor = self.network.config.width_factor
        boxes = prepared.boxes or [None] * len(prepared.lines)
        lines = [
            line_layout(r.text, r.confidence, r.chars, line, placement, factor, box)
            for r, line, placement, box in zip(readings, prepared.lines, prepared.placements, boxes)
        ]
        return Page(source, prepared.size, lines, prepared.boxes is not None)

    def read_page(
        self, image: Image.Image, segment: str = "auto", decoder: Decoder | None = None, source: str = ""
    ) -> Page:
        """Read one image (a line, or a page split into lines; see `prepare_image`) into a `Page` with word boxes;
        ``decoder``: this call's (``htr.reading.decode.make_decoder``), else the recognizer's."""
        prepared = self.prepare_image(image, segment)
        return self.page(prepared, self.read_prepared(prepared.lines, with_positions=True, decoder=decoder), source)

    def read_prepared(
        self, lines: list[np.ndarray], batch_size: int = 16, with_positions: bool = False,
        decoder: Decoder | None = None,
    ) -> list[Reading]:  # fmt: skip
        """Readings of preprocessed lines (from ``prepare`` or ``prepare_image``), in input order;
        ``with_positions``: with their characters' frames, for `page`; ``decoder``: this call's, else the
        recognizer's (it is never changed by a call)."""
        widths = [line.shape[-1] for line in lines]
        return transcribe(
            self.network, self.alphabet, widths, lines.__getitem__, batch_size, decoder or self.decoder,
            # PyTorch: predict.py over 390 lines peaks at 676 MiB instead of 907 (fewer shapes for its kernel caches),
            # same speed and CER; ONNX Runtime: 2.2% of the batches is padding instead of 4.6%, 2-3% faster
            pad_to=8 if self.runtime == "onnxruntime" else 64,
            with_positions=with_positions,
        )  # fmt: skip

    def read(self, images: list[Image.Image], batch_size: int = 16) -> list[Reading]:
        """Readings (``.text``, ``.confidence``) of PIL line images, in input order."""
        return self.read_prepared([self.prepare(image) for image in images], batch_size)
