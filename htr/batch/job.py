"""One image of a batch job: the inputs and their outputs' names, the configuration, and reading one image into its
output file (shared by the local engine, `htr.batch`, and the Ray one, `htr.batch.ray_engine`)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from htr.atomic_file import atomic_write
from htr.reading.documents import READABLE_SUFFIXES, load_page, page_count, page_name, page_stem
from htr.reading.preprocess import failure_reason, load_image

FORMATS = {"json": ".json", "page": ".xml", "alto": ".xml"}
PARQUET_ROWS = 64  # rows of a parquet input read at a time
PARQUET_KEYS = ("key", "id", "path")  # the first of these columns a parquet input has names its rows


class BatchInputError(ValueError):
    """The input cannot be listed (no such path, an unreadable manifest or parquet file)."""


@dataclass(frozen=True)
class Item:
    """One image of the input: ``key`` (its path relative to the input: what its output is named after), where it is
    (``source``, a file) or its bytes (``data``, from a parquet row); ``page``: which page of a file of several (a
    PDF, a multi-page TIFF), from 0, else None."""

    key: str
    source: str
    data: bytes | None = None
    page: int | None = None

    @property
    def name(self) -> str:
        """What the summary calls it: its source, and the page of a file of several (``FILE#page=N``)."""
        return self.source if self.page is None else page_name(self.source, self.page)


@dataclass
class BatchConfig:
    """What ``htr batch`` reads, where it writes, and how."""

    inputs: str
    output: str
    format: str = "json"
    shard: tuple[int, int] = (0, 1)
    summary: str = ""  # default: OUTPUT/summary.jsonl (summary-I-of-N.jsonl for a shard)
    segment: str = "auto"
    checkpoint: str = ""
    device: str = "auto"
    precision: str = "auto"
    decoder: dict = field(default_factory=dict)  # htr.reading.decode.make_decoder options
    engine: str = "local"  # local | ray
    actors: int = 2
    cpus_per_actor: float = 0.0  # 0: the machine's CPUs shared between the actors
    gpus_per_actor: float = 0.0

    def summary_path(self) -> Path:
        if self.summary:
            return Path(self.summary)
        index, count = self.shard
        return Path(self.output) / ("summary.jsonl" if count == 1 else f"summary-{index}-of-{count}.jsonl")


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N), with 0 <= I < N."""
    index, slash, count = text.partition("/")
    if not slash or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise ValueError(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), not {text!r}")
    return int(index), int(count)


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether ``key`` belongs to shard I of N: a stable hash of the key, so every copy agrees without talking."""
    index, count = shard
    return count == 1 or int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % count == index


def _files_under(folder: Path) -> Iterator[Path]:
    """The image files under ``folder``, every subfolder, in a stable order (sorted per folder)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in READABLE_SUFFIXES:
                yield Path(root) / name


def _relative_items(paths: Iterable[str], root: Path) -> Iterator[Item]:
    for path in paths:
        try:
            key = Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:  # outside the root (a manifest's absolute path elsewhere): its path from the top
            key = Path(path).resolve().as_posix().lstrip("/")
        yield from _pages(Item(key, str(path)))


def _pages(item: Item) -> Iterator[Item]:
    """A file's item, or one item per page of a PDF or multi-page TIFF, keyed ``STEM-pageN`` (its output's name)."""
    count = page_count(item.source)
    if count == 1:
        yield item
        return
    key = Path(item.key)
    for page in range(count):
        yield Item(key.with_name(page_stem(key.stem, page) + key.suffix).as_posix(), item.source, page=page)


def _parquet_items(path: Path) -> Iterator[Item]:
    """Rows of a parquet file as items, ``PARQUET_ROWS`` at a time (memory stays bounded)."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as error:  # noqa: BLE001 - not parquet, damaged: one line
        raise BatchInputError(f"{path}: cannot read it as parquet ({str(error).splitlines()[0]})") from None
    names = table.schema_arrow.names
    image_column = "image" if "image" in names else "path" if "path" in names else None
    if image_column is None:
        raise BatchInputError(f"{path}: needs an 'image' (bytes) or 'path' column; it has {', '.join(names)}")
    key_column = next((c for c in PARQUET_KEYS if c in names), None)
    columns = sorted({image_column, *([key_column] if key_column else [])})
    row = 0
    for batch in table.iter_batches(batch_size=PARQUET_ROWS, columns=columns):
        for values in batch.to_pylist():
            image = values[image_column]
            if isinstance(image, dict):  # the Hugging Face Image struct
                data, source = image.get("bytes"), image.get("path")
            else:
                data, source = (image, None) if isinstance(image, bytes) else (None, image)
            key = str(values[key_column]) if key_column and values[key_column] is not None else f"row-{row:09d}"
            if source and not data and not Path(source).is_absolute():
                source = str(path.parent / source)
            yield Item(key, source or f"{path}#{row}", data)
            row += 1


def iter_inputs(spec: str) -> Iterator[Item]:
    """The images of an input (folder, glob, manifest or parquet file), streamed in a stable order."""
    path = Path(spec).expanduser()
    if path.is_dir():
        yield from _relative_items(map(str, _files_under(path)), path)
    elif path.is_file() and path.suffix.lower() == ".parquet":
        yield from _parquet_items(path)
    elif path.is_file() and path.suffix.lower() in READABLE_SUFFIXES:
        yield from _pages(Item(path.name, str(path)))
    elif path.is_file():  # a manifest: one path per line
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise BatchInputError(f"{path}: cannot read it as a list of image paths ({error})") from None
        paths = [str(path.parent / line.strip()) for line in lines if line.strip() and not line.startswith("#")]
        yield from _relative_items(paths, path.parent)
    elif glob.has_magic(spec):
        root = Path(spec.split("*")[0].split("?")[0].split("[")[0] or ".")
        root = root if root.is_dir() else root.parent
        files = sorted(f for f in glob.glob(spec, recursive=True) if Path(f).is_file())
        yield from _relative_items(files, root)
    else:
        raise BatchInputError(f"{spec}: no such file or folder")


def output_path(output: Path, key: str, fmt: str) -> Path:
    """Where the result of the image ``key`` goes: the same relative path under ``output``, with the format's suffix."""
    relative = Path(key)
    return output / relative.parent / (relative.stem + FORMATS[fmt])


@dataclass
class Row:
    """One line of the summary."""

    path: str
    output: str
    status: str  # ok | error
    lines: int | None = None
    confidence: float | None = None
    seconds: float | None = None
    error: str = ""


def render(page, fmt: str) -> bytes:  # page: htr.reading.page_result.Page
    """The output file's bytes of a read image."""
    if fmt == "json":
        return (json.dumps(page.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
    from htr.pages.page_export import WRITERS

    return WRITERS[fmt](page)


def decode(item: Item):  # -> PIL.Image.Image
    """The item's image, decoded (refused from its header when too large), or its page rendered."""
    return load_image(item.data) if item.data is not None else load_page(item.source, item.page or 0)


def why_failed(item: Item, error: Exception) -> str:
    """One line saying why the item's image could not be read (`failure_reason`; bytes have no file to look at)."""
    return failure_reason(item.source if item.data is None else "", error)


def read_item(recognizer, item: Item, image, target: Path, fmt: str, segment: str, started: float) -> Row:
    """Read one decoded image (or the error that stopped its decoding) and write its output atomically; never
    raises for a bad image. Each image's lines are read in batches of their own, so an image reads the same
    whatever else is read beside it."""
    try:
        if isinstance(image, Exception):
            raise image
        prepared = recognizer.prepare_image(image, segment)
        readings = recognizer.read_prepared(prepared.lines, with_positions=True)
        page = recognizer.page(prepared, readings, source=item.key)
        data = render(page, fmt)
        atomic_write(target, lambda f: f.write(data))
    except Exception as error:  # noqa: BLE001 - one image's failure is a row, never a stop
        return Row(
            item.name,
            str(target),
            "error",
            seconds=round(time.monotonic() - started, 3),
            error=why_failed(item, error),
        )
    return Row(item.name, str(target), "ok", len(page.lines), round(page.confidence, 4),
               round(time.monotonic() - started, 3))  # fmt: skip


def make_recognizer(cfg: BatchConfig):  # -> htr.inference.Recognizer
    from htr.inference import Recognizer

    return Recognizer(cfg.checkpoint, cfg.device, cfg.precision, **cfg.decoder)
