"""Line-level handwritten text recognition: a CRNN (CNN + BiLSTM + CTC) trained on IAM lines.

The entry points and the modules every stage shares sit here: `data` (loading datasets), `model` and
`model_config`, `checkpoint` and `hub` (model files), `shipped` (where the shipped models are), `train`,
`evaluate`, `inference` (reading new images), `export` (ONNX), `lm` (character language models), `demo`,
`train_line_detector`. The stages have their subpackages: `reading` (preprocessing, decoding, positions), `pages`
(page ink, line finding, PAGE/ALTO), `synth` (rendered lines, augmentation) and `training` (torchrun,
distillation, pruning, weight averaging); `cli` is the ``htr`` command.
"""

__version__ = "0.1.0"
