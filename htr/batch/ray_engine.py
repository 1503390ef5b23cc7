"""``htr batch --engine ray``: the batch job as a Ray Data pipeline (see `htr.batch`).

The pending inputs go to Ray Data in parts (``from_items`` of up to ``ITEMS_PER_PART`` paths, or of parquet rows'
bytes up to ``BYTES_PER_PART``: the driver never holds a whole collection), are decoded in tasks (``map_batches``
of `decode_images`) and read in an actor pool (``map_batches`` with a callable class and ``concurrency``): each
`PageReader` actor loads the model once per part, splits pages into lines, reads them and writes the outputs
itself; only the summary rows come back to the driver. Ray Data's streaming executor bounds what is in flight
(back-pressure), and restarts an actor that dies and retries its work (``max_restarts``, ``max_task_retries``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from htr.batch.job import BatchConfig, Item, Row, decode, make_recognizer, read_item, why_failed

ITEMS_PER_PART = 50_000  # pending inputs handed to Ray Data at a time (the actors load the model once per part)
BYTES_PER_PART = 256 * 2**20  # at most this much image data (parquet inputs) in one part
DECODE_CPUS = 0.25  # each decoding task's share of a CPU: the actors hold the rest


def decode_images(batch: dict) -> dict:
    """Ray task: each row's image decoded (or the reason it could not be), beside its key, source and target."""
    images, errors = [], []
    for key, source, data, page in zip(batch["key"], batch["source"], batch["data"], batch["page"]):
        item = Item(key, source, data if data else None, page if page >= 0 else None)
        try:
            images.append(decode(item))
            errors.append("")
        except Exception as error:  # noqa: BLE001 - the reader turns it into an error row
            images.append(None)
            errors.append(why_failed(item, error))
    return {"key": batch["key"], "source": batch["source"], "page": batch["page"], "target": batch["target"],
            "image": images, "error": errors}  # fmt: skip


class DecodingFailed(Exception):
    """An image that did not decode in its Ray task, carried to the reader with the reason found there."""


class PageReader:
    """Ray actor: the model, loaded once; reads a batch of decoded images and writes their outputs."""

    def __init__(self, cfg: BatchConfig, cores: int) -> None:
        os.environ["HTR_CORES"] = str(max(1, cores))  # ONNX Runtime's threads: this actor's share, not the machine
        self.cfg = cfg
        self.recognizer = make_recognizer(cfg)
        pid_folder = os.environ.get("HTR_BATCH_PID_FOLDER")  # tests find the actors' processes here
        if pid_folder:
            Path(pid_folder, f"{os.getpid()}.pid").write_text(str(os.getpid()))

    def __call__(self, batch: dict) -> dict:
        rows = []
        columns = ("key", "source", "page", "target", "image", "error")
        for key, source, page, target, image, error in zip(*(batch[name] for name in columns)):
            started = time.monotonic()
            if error:
                image = DecodingFailed(error)
            item = Item(key, source, page=page if page >= 0 else None)
            rows.append(asdict(read_item(self.recognizer, item, image, Path(target), self.cfg.format, self.cfg.segment,
                                         started)))  # fmt: skip
        return {name: [row[name] for row in rows] for name in Row.__dataclass_fields__}


def _parts(todo: Iterable[tuple[Item, Path]]) -> Iterator[list[dict]]:
    part: list[dict] = []
    size = 0
    for item, target in todo:
        part.append({"key": item.key, "source": item.source, "data": item.data or b"",
                     "page": -1 if item.page is None else item.page, "target": str(target)})  # fmt: skip
        size += len(item.data or b"")
        if len(part) == ITEMS_PER_PART or size >= BYTES_PER_PART:
            yield part
            part, size = [], 0
    if part:
        yield part


def run_ray(cfg: BatchConfig, todo: Iterable[tuple[Item, Path]]) -> Iterator[Row]:
    """Rows of the pending images, read by a Ray Data pipeline (local Ray, or ``RAY_ADDRESS``'s cluster)."""
    try:
        import ray
    except ImportError:
        raise ImportError('--engine ray needs Ray: pip install "htr[ray]"') from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    total = ray.cluster_resources().get("CPU", 1)
    cpus = cfg.cpus_per_actor or max(0.5, (total - DECODE_CPUS * cfg.actors) / cfg.actors)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    for part in _parts(todo):
        dataset = ray.data.from_items(part)
        dataset = dataset.map_batches(decode_images, batch_size=4, num_cpus=DECODE_CPUS)
        dataset = dataset.map_batches(
            PageReader, fn_constructor_kwargs={"cfg": cfg, "cores": round(cpus)}, batch_size=4,
            concurrency=cfg.actors, num_cpus=cpus, num_gpus=cfg.gpus_per_actor or None,
        )  # fmt: skip
        for values in dataset.iter_rows():
            yield Row(**{name: values[name] for name in Row.__dataclass_fields__})
