"""Export a checkpoint's network to ONNX with a dynamic batch and width, and check it against PyTorch.

    python -m htr.export --int8 path/to/iam-dev     # handwriting_recognizer_best.pth -> .onnx beside it, int8
    python -m htr.export --checkpoint my_model.pth  # my_model.onnx (fp32)
    python -m htr.export --checkpoint models/my-model --int8 path/to/iam-dev   # a model folder's model.onnx
    python predict.py --onnx other.onnx examples/*.png
    python -m htr.export --line-finder line_finder.pt   # the page line finder -> line_finder.onnx

The ONNX graph maps images (B, 1, H, W) to log-probabilities (T, B, C); its metadata holds the alphabet, the
architecture, the checkpoint's language model and the SHA-256 of the checkpoint file, so the export reads on its own
(``predict.py --onnx X`` never imports PyTorch for lines, beam search included). An export ``X.onnx`` beside
``X.pth`` (the default output) is what ``predict.py --checkpoint X.pth`` runs on the CPU, as long as ``X.pth`` is
the file it was made from: anything that rewrites the checkpoint (training, ``htr.evaluate --record``, ``htr.lm
build --into``) makes it stale, and PyTorch reads until it is exported again. A model folder's export is its
``model.onnx``, made from its ``model.safetensors`` (recording results or a new LM in the folder keeps it; the
folder's own LM is used); ``python -m htr.hub export X.pth FOLDER`` carries ``X.onnx`` over. After exporting, the
example images (or ``--check`` images) are read with PyTorch and with onnxruntime (when installed) and the texts
compared; the exit status is 1 when they differ (not checked with ``--int8``, whose rounding may change a character:
measure it with ``benchmarks/predict_speed.py``).

``--line-finder`` exports the trained line finder instead (dynamic height and width, its threshold and geometry in
the metadata) and checks that onnxruntime finds the same lines on ``examples/real_page.jpg`` (or ``--check``
pages); an ONNX reader uses ``line_finder.onnx`` beside the shipped ``line_finder.pt`` when it is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htr.checkpoint import CheckpointError, load_model
from htr.cli.options import add_checkpoint_argument, command_name
from htr.export import check_line_finder, export_line_finder, export_onnx, quantize_onnx


def main(argv: list[str] | None = None) -> int:
    from htr.inference import Recognizer
    from htr.reading.preprocess import load_image

    parser = argparse.ArgumentParser(prog=command_name("htr.export"), description=__doc__.split("\n\n")[0])
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
            from htr.data import LineDataset, load_splits

            model, alphabet = load_model(args.checkpoint)
            lines = LineDataset(load_splits(args.int8)["train"], alphabet, model.config.height, model.output_length,
                                "calibration", limit=64, for_training=False)  # fmt: skip
            quantize_onnx(args.output, args.output, [lines[i][0].numpy() for i in range(len(lines))])
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
