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

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from htr.checkpoint import model_from_checkpoint, read_checkpoint
from htr.model import CRNN

OPSET = 17


class _LogProbs(torch.nn.Module):
    """The network without the training-only shortcut head: images -> log-probabilities."""

    def __init__(self, model: CRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[0]


def export_onnx(checkpoint: str | Path, output: str | Path) -> None:
    """Write the checkpoint's network as ONNX (opset 17) with dynamic batch and width axes; the metadata holds the
    alphabet, architecture, language model (when a checkpoint file has one) and the SHA-256 of the checkpoint file
    (of a model folder's weights)."""
    import base64

    from safetensors.torch import save

    from htr.model_files import LM_KEY, LM_ORDER_KEY, SOURCE_KEY, export_location, file_sha256, lm_tensors

    state = read_checkpoint(checkpoint)
    model, alphabet = model_from_checkpoint(state, checkpoint)
    in_folder = Path(checkpoint).is_dir()  # a folder's reader takes its lm.safetensors, not a copy in the export
    example = torch.rand(2, 1, model.config.height, 8 * model.width_factor)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and LSTM batch-size notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogProbs(model).eval(), (example,), str(output), input_names=["images"], output_names=["log_probs"],
            dynamic_axes={"images": {0: "batch", 3: "width"}, "log_probs": {0: "frames", 1: "batch"}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    import onnx

    graph = onnx.load(str(output))
    metadata = {"alphabet": alphabet.chars, "model_config": json.dumps(model.config.to_dict())}
    source = export_location(checkpoint)[1]
    if source.is_file():
        metadata[SOURCE_KEY] = file_sha256(source)
    if state.get("lm") and not in_folder:
        metadata[LM_KEY] = base64.b64encode(save(lm_tensors(state["lm"]))).decode("ascii")
        metadata[LM_ORDER_KEY] = str(int(state["lm"]["order"]))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(output))


def export_line_finder(finder_path: str | Path, output: str | Path) -> None:
    """Write a trained line finder (``htr.train_line_detector``'s ``.pt``) as ONNX with dynamic height and width
    (multiples of 32), its threshold, geometry and the SHA-256 of the ``.pt`` in the metadata."""
    import onnx

    from htr.pages.line_finder import ONNX_METADATA, LineFinder

    finder = LineFinder(finder_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            finder.network.eval(), (torch.rand(1, 1, 256, 384),), str(output), input_names=["ink"],
            output_names=["logits"], dynamic_axes={"ink": {2: "height", 3: "width"}, "logits": {2: "rows", 3: "cols"}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    from htr.model_files import SOURCE_KEY, file_sha256

    graph = onnx.load(str(output))
    graph.metadata_props.add(key=ONNX_METADATA, value=json.dumps(finder.settings()))
    graph.metadata_props.add(key=SOURCE_KEY, value=file_sha256(finder_path))
    onnx.save(graph, str(output))


def check_line_finder(finder_path: str | Path, exported: str | Path, pages: list[str]) -> bool:
    """Whether the export finds the same line boxes as PyTorch on ``pages``; prints each page's count."""
    from htr.pages.line_finder import LineFinder
    from htr.reading.preprocess import ink_map, load_image, to_grayscale

    same = True
    for page in pages:
        ink = ink_map(to_grayscale(load_image(page)))
        expected, got = LineFinder(finder_path).boxes(ink), LineFinder(exported).boxes(ink)
        same &= expected == got
        print(f"{'same' if expected == got else 'DIFFERENT'}  {page}: {len(got)} lines (PyTorch: {len(expected)})")
    return same


def quantize_calibrated(checkpoint: str | Path, export: str | Path, split, lines: int = 64) -> None:
    """Quantize ``export`` (the ONNX export of ``checkpoint``) in place with `quantize_onnx`, calibrated on the first
    ``lines`` lines of ``split`` (a `datasets.Dataset` of image and text)."""
    from htr.checkpoint import load_model
    from htr.data import LineDataset

    model, alphabet = load_model(checkpoint)
    calibration = LineDataset(split, alphabet, model.config.height, model.output_length, "calibration", limit=lines,
                              for_training=False)  # fmt: skip
    quantize_onnx(export, export, [calibration[i][0].numpy() for i in range(len(calibration))])


def quantize_onnx(model_path: str | Path, output: str | Path, calibration: list[np.ndarray], batch: int = 8) -> None:
    """int8 convolutions (static: per-channel weights, activations calibrated on ``calibration`` lines) and
    LSTM (dynamic: int8 weights, activations quantized on the fly); the output layer stays fp32."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from htr.reading.preprocess import pad_arrays

    class Lines(CalibrationDataReader):
        def __init__(self) -> None:
            chunks = [calibration[i : i + batch] for i in range(0, len(calibration), batch)]
            self.batches = iter([{"images": pad_arrays(chunk)[0]} for chunk in chunks])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as folder:
        prepared = str(Path(folder) / "prepared.onnx")
        quant_pre_process(str(model_path), prepared, skip_symbolic_shape=True)
        convolutions = str(Path(folder) / "convolutions.onnx")
        quantize_static(
            prepared, convolutions, Lines(), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv"],
        )  # fmt: skip
        quantize_dynamic(convolutions, str(output), op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)


if __name__ == "__main__":  # python -m htr.export: its command line is htr.cli.export (run, not imported)
    import runpy

    runpy.run_module("htr.cli.export", run_name="__main__", alter_sys=True)
