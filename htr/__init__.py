"""Line-level handwritten text recognition: a CRNN (CNN + BiLSTM + CTC) trained on IAM lines.

One module per stage: `data` (loading), `preprocess`, `augment`, `model`, `decode`, `metrics`,
`checkpoint`, `train`, `evaluate` and `inference` (reading new images).
"""

__version__ = "0.1.0"
