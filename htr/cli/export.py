"""``htr export`` (``python -m htr.export``): its command line.

What it does: the docstring of `htr.export`, which ``--help`` shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htr import export as library
from htr.checkpoint import CheckpointError
from htr.cli.options import add_checkpoint_argument, command_name
from htr.export import check_line_finder, export_line_finder, export_onnx, quantize_calibrated


def main(argv: list[str] | None = None) -> int:
    from htr.inference import Recognizer
    from htr.reading.preprocess import load_image

    parser = argparse.ArgumentParser(prog=command_name("htr.export"), description=library.__doc__.split("\n\n")[0])
    add_checkpoint_argument(parser, "the model to export")
    parser.add_argument("-o", "--output", help="default: the checkpoint's name with .onnx, beside it (where predict.py "
                        "finds it), or with --line-finder PT, PT's name with .onnx")  # fmt: skip
    parser.add_argument("--check", nargs="*", metavar="IMAGE", help="images to compare (default: examples/*.png, "
                        "with --line-finder examples/real_page.jpg)")  # fmt: skip
    parser.add_argument("--line-finder", metavar="PT", help="export this trained line finder instead of the reader")
    parser.add_argument(
        "--int8", metavar="DATASET",
        help="also quantize the convolutions (calibrated on 64 lines of this dataset's train split, see htr.data) "
        "and the LSTM to int8: about 2.5× faster on CPUs with int8 dot products (VNNI)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    source = args.line_finder or args.checkpoint
    if args.output is None and not (Path(source).is_file() or (Path(source).is_dir() and not args.line_finder)):
        parser.error(f"{source} is not a file or model folder: name the export with -o")
    if args.output is None:
        from htr.model_files import export_location

        args.output = str(Path(source).with_suffix(".onnx") if args.line_finder else export_location(source)[0])
    if args.line_finder:
        try:
            export_line_finder(args.line_finder, args.output)
            print(f"wrote {args.output}")
            pages = args.check or ["examples/real_page.jpg"]
            return 0 if check_line_finder(args.line_finder, args.output, pages) else 1
        except (OSError, ImportError, ValueError, KeyError, RuntimeError) as error:
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 2
    try:
        export_onnx(args.checkpoint, args.output)
        if args.int8:
            from htr.data import load_splits

            quantize_calibrated(args.checkpoint, args.output, load_splits(args.int8)["train"])
    except (CheckpointError, OSError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}" + (" (int8 convolutions and LSTM)" if args.int8 else ""))
    images = args.check if args.check is not None else sorted(str(p) for p in Path("examples").glob("*.png"))
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: not checked (pip install onnxruntime)")
        return 0
    if not images:
        return 0
    lines = [load_image(path) for path in images]
    options = {"device": "cpu", "precision": "fp32", "decoder": "greedy"}
    torch_reader, onnx_reader = (
        Recognizer(args.checkpoint, onnx=None, **options),
        Recognizer(args.checkpoint, onnx=args.output, **options),
    )
    prepared = [torch_reader.prepare(image) for image in lines]
    expected, got = torch_reader.read_prepared(prepared), onnx_reader.read_prepared(prepared)
    same = [a.text == b.text for a, b in zip(expected, got)]
    for path, a, b, ok in zip(images, expected, got, same):
        print(f"{'same' if ok else 'DIFFERENT'}  {path}: {b.text!r}" + ("" if ok else f" (PyTorch: {a.text!r})"))
    worst = max(abs(a.confidence - b.confidence) for a, b in zip(expected, got))
    print(f"onnxruntime vs PyTorch: {sum(same)}/{len(same)} texts identical, confidences within {worst:.1e}")
    return 0 if all(same) or args.int8 else 1  # int8 is expected to differ a little


if __name__ == "__main__":
    sys.exit(main())
