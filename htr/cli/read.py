"""Read handwritten text lines (or paragraphs and pages, split into lines) from images with a trained checkpoint.

    htr read examples/*.png                       # or: python predict.py examples/*.png
    htr read --format json scans/ "photos/**/*.jpg"
    htr read --format page --output-dir transcriptions/ scans/   # PAGE XML for Transkribus/eScriptorium

PATH is an image file, a PDF, a folder (its images and PDFs, sorted by name) or a glob pattern. Each page of a
PDF (rendered at 300 dpi; needs pypdfium2) and of a multi-page TIFF is read as an image of its own, named
FILE#page=N. Results are printed in input order on stdout; a page's lines are joined by newlines (text), " / "
(tsv), or listed with their boxes (JSON "lines"); JSON gives every line's words with their boxes and confidences.
--format page (PAGE XML 2019-07-15) or alto (ALTO 4.4) writes one XML file per image, IMAGE_STEM.xml (a page of
several: FILE_STEM-pageN.xml) beside it or in --output-dir, and prints "IMAGE -> XML (N lines)"; an existing file
is kept unless --overwrite. An input that cannot be read gets one line on stderr and the others still run. On a
CPU the network runs from the checkpoint's ONNX export beside it (a model folder's model.onnx; the shipped model's
is int8) when it was made from that very checkpoint (--onnx; else PyTorch).
Exit status: 0 when every image was read, 1 when some failed, 2 for usage errors or an unusable checkpoint.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from htr.cli.options import (
    add_checkpoint_argument,
    add_decoder_arguments,
    add_device_arguments,
    check_decoder_arguments,
    command_name,
    decoder_options,
)
from htr.reading.documents import READABLE_SUFFIXES, page_count, page_name, page_stem
from htr.reading.preprocess import failure_reason

CHUNK = 256  # images prepared and read together
XML_FORMATS = ("page", "alto")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=command_name("htr.cli.read") if sys.argv[0].startswith("htr ") else None,
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image file, PDF, folder or glob pattern")
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--format",
        choices=["text", "json", "tsv", "page", "alto"],
        default="text",
        help="text: one line per image; json: JSON Lines with path, text, confidence, lines and words; "
        "tsv: path<TAB>text<TAB>confidence; page / alto: a PAGE XML / ALTO file per image",
    )
    parser.add_argument("--output-dir", metavar="DIR", help="page / alto: write the XML files here (default: beside "
                        "each image)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="page / alto: replace XML files that exist")
    parser.add_argument("--batch-size", type=int, default=16)
    add_device_arguments(parser)
    parser.add_argument(
        "--segment", choices=["auto", "never", "always"], default="auto",
        help="find the text lines of paragraph or page images; auto: when an image holds more than one line",
    )  # fmt: skip
    parser.add_argument(
        "--line-finder", default="auto", metavar="PATH|classical",
        help="how pages are split into lines: a trained line finder (htr.train_line_detector, .pt, or its ONNX "
        "export, .onnx; auto: the shipped line_finder.pt, or its export line_finder.onnx when present and the "
        "network runs in onnxruntime) or classical (ink profiles)",
    )  # fmt: skip
    parser.add_argument(
        "--onnx", default="auto", metavar="MODEL.onnx|auto|none",
        help="run the network with onnxruntime (see htr.export); auto: the checkpoint's own export beside it (X.onnx "
        "made from X.pth, or a model folder's model.onnx: the shipped model's is int8, about 2x faster) when "
        "onnxruntime is installed and the model reads on the CPU with --precision auto; none: PyTorch",
    )  # fmt: skip
    add_decoder_arguments(parser, default="auto")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    check_decoder_arguments(parser, args)
    if (args.output_dir or args.overwrite) and args.format not in XML_FORMATS:
        parser.error("--output-dir and --overwrite go with --format page or alto")
    return args


class Source(NamedTuple):
    """One image to read: page ``index`` (from 0) of file ``path``; ``name``: what its results and messages are
    called (the path, or ``path#page=N`` for a page of a file of several)."""

    path: str
    index: int
    name: str


def expand(path: str) -> tuple[list[str], str | None]:
    """Image and PDF files named by ``path`` (file, folder or glob), or an error reason."""
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in READABLE_SUFFIXES)
        return files, None if files else "folder holds no images"
    if p.exists():
        return [path], None
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if Path(f).is_file())
        return files, None if files else "pattern matches no files"
    return [], "no such file or folder"


def emit(fmt: str, page) -> None:
    """Print the result for one image (an ``htr.reading.page_result.Page``) in ``fmt``: text, tsv or json."""
    if fmt == "json":
        print(json.dumps(page.to_json(), ensure_ascii=False))
    elif fmt == "tsv":
        print(f"{page.source}\t{page.text.replace(chr(10), ' / ')}\t{page.confidence:.4f}")
    else:
        print(page.text)


def sources(files: list[str]) -> list[Source]:
    """The images of ``files``: one per file, one per page of a PDF or a multi-page TIFF."""
    found = []
    for file in files:
        count = page_count(file)
        found.extend(Source(file, i, page_name(file, i) if count > 1 else file) for i in range(count))
    return found


def xml_target(source: Source, args: argparse.Namespace) -> Path:
    """Where the PAGE/ALTO file of ``source`` goes: IMAGE_STEM.xml, or FILE_STEM-pageN.xml for a page of several."""
    stem = Path(source.path).stem
    stem = page_stem(stem, source.index) if source.name != source.path else stem
    return Path(args.output_dir or Path(source.path).parent) / (stem + ".xml")


def write_xml(target: Path, page, fmt: str) -> None:
    """Write the PAGE/ALTO file of one read image (a ``Page``) atomically and print its one-line summary."""
    from htr.atomic_file import atomic_write
    from htr.pages.page_export import WRITERS

    data = WRITERS[fmt](page)
    atomic_write(target, lambda f: f.write(data))
    count = len(page.lines)
    print(f"{page.source} -> {target} ({count} line{'s' if count != 1 else ''})")


def read_chunk(recognizer, images: list[Source], args: argparse.Namespace, claimed: set[Path]) -> bool:
    """Read and print (or write) ``images`` (lines of all of them batched together by width); True when one
    failed. ``claimed``: XML files this run has written or will write (never two images to one file)."""
    from htr.reading.documents import load_page

    failed = False
    positions = args.format in ("json", *XML_FORMATS)
    wanted: list[tuple[Source, Path | None]] = []  # images to read, and their XML files

    def refuse(image: Source, target: Path | None) -> bool:  # True: its XML file must not be written (said why)
        if target is not None and (target in claimed or (target.exists() and not args.overwrite)):
            why = "written for another image of this run" if target in claimed else "exists (--overwrite replaces it)"
            print(f"{image.name}: not written: {target} {why}", file=sys.stderr)
            return True
        return False

    for image in images:
        target = xml_target(image, args) if args.format in XML_FORMATS else None
        if refuse(image, target):
            failed = True
        else:
            wanted.append((image, target))

    def prepare(image: Source):  # -> htr.inference.PreparedImage
        return recognizer.prepare_image(load_page(image.path, image.index), args.segment)

    read_ok: list[tuple[Source, object, Path | None]] = []  # image, its prepared lines, its XML file
    lines = []
    # as many images at once as the network reads batches at once (ONNX Runtime: one per core; PyTorch: one, as its
    # own threads use the cores): decoding, resizing and the line finder release the GIL
    pool = ThreadPoolExecutor(recognizer.network.parallel_calls)
    try:
        for (image, target), preparing in zip(wanted, [pool.submit(prepare, image) for image, _ in wanted]):
            try:
                prepared = preparing.result()
            except Exception as error:  # any decoding problem: name the file, go on with the others
                print(f"{image.name}: cannot read image: {failure_reason(image.path, error)}", file=sys.stderr)
                failed = True
                continue
            if refuse(image, target):  # an earlier image of this chunk has the same XML file
                failed = True
                continue
            if target is not None:
                claimed.add(target)
            lines.extend(prepared.lines)
            read_ok.append((image, prepared, target))
    finally:  # Ctrl-C: the images not started yet are dropped, not prepared first
        pool.shutdown(cancel_futures=True)
    readings = iter(recognizer.read_prepared(lines, args.batch_size, with_positions=positions))
    for image, prepared, target in read_ok:
        page = recognizer.page(prepared, [next(readings) for _ in prepared.lines], source=image.name)
        if target is None:
            emit(args.format, page)
            continue
        try:
            write_xml(target, page, args.format)
        except OSError as error:
            print(f"{image.name}: cannot write {target}: {failure_reason(str(target), error)}", file=sys.stderr)
            failed = True
    sys.stdout.flush()
    return failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from htr.cpu_share import CpuShare

    cpu_share = CpuShare(period=1.0)  # the model's loading is its first look at what else runs
    from htr.inference import Recognizer  # after parsing, so --help is instant; PyTorch only when it runs the model

    try:
        line_finder = None if args.line_finder == "classical" else args.line_finder
        onnx = None if args.onnx == "none" else args.onnx
        recognizer = Recognizer(args.checkpoint, args.device, args.precision, onnx, cpu_share, line_finder,
                                **decoder_options(args))  # fmt: skip
        for note in recognizer.notes:
            print(f"note: {note}", file=sys.stderr)
        if line_finder not in (None, "auto"):
            recognizer.line_finder()  # a file the user named: check it now, not at the first page
    except (ValueError, OSError, ImportError) as error:  # htr.checkpoint.CheckpointError is a ValueError
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 2
    failed = False
    files: list[str] = []
    for path in args.paths:
        found, reason = expand(path)
        if reason:
            print(f"{path}: {reason}", file=sys.stderr)
            failed = True
        files.extend(found)
    claimed: set[Path] = set()
    images = sources(files)
    for start in range(0, len(images), CHUNK):  # a chunk at a time: memory stays bounded on big folders
        failed |= read_chunk(recognizer, images[start : start + CHUNK], args, claimed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
