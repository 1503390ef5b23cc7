"""Read a whole collection: one output file per image and a summary table; resumable, shardable, fault-tolerant.

    htr batch scans/ --output read/                          # every image under scans/; read/ mirrors its tree
    htr batch "scans/**/*.tif" --output read/ --format page  # PAGE XML (or alto); a glob, quoted
    htr batch manifest.txt --output read/ --shard 3/16       # one path per line; a stable 16th of them
    htr batch pages.parquet --output read/                   # a column of image bytes or paths
    htr batch scans/ --output read/ --engine ray --actors 4  # the same job on Ray Data (RAY_ADDRESS: a cluster)

Inputs: a folder (its images and PDFs, in every subfolder), a glob pattern, a text manifest (one image path per line,
relative to the manifest's folder unless absolute) or a parquet file with an image column (``image``: bytes, or
the Hugging Face ``{bytes, path}`` struct; or ``path``: file paths) and optionally a ``key``/``id`` column naming
each row. Each image's output is ``OUTPUT/<its path relative to the input's folder, suffix replaced>`` (``.json``,
or ``.xml`` for PAGE and ALTO), written atomically: a re-run skips every image whose output exists, so a killed run
(even SIGKILL) loses at most the images being read, and re-running the same command finishes the job. Each page
of a PDF (``pip install pypdfium2``) or of a multi-page TIFF is an image of its own: ``FILE_STEM-pageN`` in the
output's name, ``FILE#page=N`` in the summary. Images that fail (broken, empty, too large) are retried by a re-run
and never stop one.

``--shard I/N`` takes the inputs whose path hashes to I modulo N: N copies with I = 0..N-1 (a SLURM job array, a
Kubernetes indexed job, GNU parallel) share the work with no coordinator and write to the same OUTPUT. The summary
(``OUTPUT/summary.jsonl``, or ``summary-I-of-N.jsonl`` for a shard; ``--summary X.parquet`` for parquet) has a row
per input: path, output, status (``ok`` or ``error``), lines, mean confidence, seconds and the error; the last
line printed says how many images were read, skipped (done before) and failed.

``--engine ray`` runs it as a Ray Data pipeline: inputs streamed, images decoded in tasks, pages split into lines
and read in a pool of ``--actors`` actors that each load the model once (``--cpus-per-actor``,
``--gpus-per-actor``) and write the outputs; ``ray.init()`` joins ``RAY_ADDRESS`` when set, else starts Ray on
this machine. Ray retries the work of an actor that dies. Needs ``pip install "htr[ray]"``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from htr.atomic_file import atomic_write
from htr.batch.job import (  # noqa: F401  (the job's names, also used from here)
    FORMATS,
    BatchConfig,
    BatchInputError,
    Item,
    Row,
    decode,
    in_shard,
    iter_inputs,
    make_recognizer,
    output_path,
    parse_shard,
    read_item,
)


class Journal:
    """The rows of the images read, appended as they finish (one file per shard, flushed per row): what a killed
    run had done is known to the next."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the last line of a run killed while writing it
                    continue
                self.rows[row["path"]] = row
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def add(self, row: Row) -> None:
        data = asdict(row)
        self.rows[row.path] = data
        self._file.write(json.dumps(data, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Counts:
    read: int = 0
    skipped: int = 0
    failed: int = 0


def pending(cfg: BatchConfig, counts: Counts, listed: list[tuple[str, str]]) -> Iterator[tuple[Item, Path]]:
    """This shard's inputs whose output is not there yet, with their output paths; ``listed`` collects (path,
    output) of every input of the shard, ``counts.skipped`` those done before."""
    out = Path(cfg.output)
    claimed: set[Path] = set()
    for item in iter_inputs(cfg.inputs):
        if not in_shard(item.key, cfg.shard):
            continue
        target = output_path(out, item.key, cfg.format)
        listed.append((item.name, str(target)))
        if target in claimed:  # two inputs with one output name (scan.png and scan.jpg): the first keeps it
            listed[-1] = (item.name, "")
            continue
        claimed.add(target)
        if target.is_file() and target.stat().st_size > 0:
            counts.skipped += 1
            continue
        yield item, target


def write_summary(cfg: BatchConfig, listed: list[tuple[str, str]], journal: Journal) -> Path:
    """The summary table: a row per input of the shard (the latest a run recorded; an output found without a record
    is ``ok``), written atomically as JSON Lines or parquet."""
    rows = []
    for source, target in listed:
        row = journal.rows.get(source)
        if not target:
            row = asdict(Row(source, "", "error", error="another input has the same output name"))
        elif row is None or (row["status"] == "error" and Path(target).is_file()):
            row = asdict(Row(source, target, "ok" if Path(target).is_file() else "error",
                             error="" if Path(target).is_file() else "not read"))  # fmt: skip
        rows.append(row)
    path = cfg.summary_path()
    if path.suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        atomic_write(path, lambda f: f.write(buffer.getvalue()))
    else:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def run(cfg: BatchConfig, recognizer=None) -> tuple[Counts, Path]:
    """Read every pending image of the shard (``cfg.engine``), then write the summary; returns the counts and the
    summary's path."""
    counts, listed = Counts(), []
    index, count = cfg.shard
    journal = Journal(Path(cfg.output) / ".htr-batch" / f"journal-{index}-of-{count}.jsonl")
    try:
        todo = pending(cfg, counts, listed)
        if cfg.engine == "ray":
            from htr.batch.ray_engine import run_ray

            rows = run_ray(cfg, todo)
        else:
            rows = run_local(recognizer or make_recognizer(cfg), todo, cfg)
        for row in rows:
            journal.add(row)
            counts.read += row.status == "ok"
            counts.failed += row.status == "error"
    finally:
        journal.close()
    return counts, write_summary(cfg, listed, journal)


def run_local(recognizer, todo: Iterable[tuple[Item, Path]], cfg: BatchConfig) -> Iterator[Row]:
    """Rows of the pending images, read in this process: as many images at once as the network reads calls at once
    (decoding, the line finder and ONNX Runtime release the GIL), at most twice that many waiting."""
    workers = max(1, getattr(recognizer.network, "parallel_calls", 1))

    def work(item: Item, target: Path) -> Row:
        started = time.monotonic()
        try:
            image = decode(item)
        except Exception as error:  # noqa: BLE001 - reported in its row
            image = error
        return read_item(recognizer, item, image, target, cfg.format, cfg.segment, started)

    with ThreadPoolExecutor(workers) as pool:
        running: list[Future] = []
        for item, target in todo:
            running.append(pool.submit(work, item, target))
            if len(running) > 2 * workers:
                yield running.pop(0).result()
        for future in running:
            yield future.result()
