"""Line-level handwritten text recognition: a CRNN (CNN + BiLSTM + CTC) trained on IAM lines.

The entry points and the modules every stage shares sit here: `data` (loading datasets), `model` and
`model_config`, `checkpoint` and `hub` (model files), `train`, `evaluate`, `inference` (reading new images),
`export` (ONNX), `lm` (character language models), `demo`, `train_line_detector`. The stages have their subpackages:
`reading` (preprocessing, decoding, positions), `pages` (page ink, line finding, PAGE/ALTO), `synth` (rendered lines,
augmentation) and `training` (torchrun, distillation, pruning, weight averaging).

Modules moved into the subpackages are still importable under their old names (``htr.preprocess`` is
``htr.reading.preprocess``), for code written before the move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

__version__ = "0.1.0"

MOVED = {
    **{name: f"htr.reading.{name}" for name in
       ("preprocess", "decode", "beam", "decoding_options", "positions", "onnx_network")},
    **{name: f"htr.pages.{name}" for name in
       ("page_ink", "segment", "line_finder", "line_detector", "page_xml", "page_export")},
    **{name: f"htr.synth.{name}" for name in ("render", "synthetic", "iamondb", "augment")},
    **{name: f"htr.training.{name}" for name in ("distributed", "distillation")},
}  # fmt: skip


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``htr.<old name>`` as the module it moved to (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix == "htr" and name in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name.partition(".")[2]])
        spec.loader_state = module.__spec__  # the import system gives the module this spec: put its own back
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = module.__spec__.loader_state


sys.meta_path.append(_MovedModules())
